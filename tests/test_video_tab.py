"""The Video tab, as a visitor and an API caller meet it (a tiny random streaming model the operator names with
``--model-dir``): frames stream in, the MP4 holds what was made, Stop keeps a valid clip, a frame becomes a
style, and bad requests are named."""

from __future__ import annotations

import imageio.v3 as iio
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from .studio_server import start_server
from .test_studio_browser import CHROMIUM, _browser, _open, _settle, _wait_text
from .test_t2i_pipeline import text_encoder  # noqa: F401 - fixture
from .test_t2v_pipeline import tiny_video_pipeline

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def video_server(tmp_path_factory, scene_cache, text_encoder):  # noqa: F811
    folder = tmp_path_factory.mktemp("models") / "tiny-s2dit"
    tiny_video_pipeline(text_encoder).save_pretrained(folder, include_text_encoder=False)
    server = start_server(tmp_path_factory.mktemp("studio"), scene_cache, "--model-dir", str(folder))
    yield server
    server.stop()


def test_video_api_streams_a_clip_and_refuses_bad_requests(video_server):
    client = Client(video_server.url, verbose=False)
    frame, status, clip = client.predict("a red circle moving left", 3, 5, False, "tiny-s2dit", api_name="/video")
    assert "Made 5 frames" in status
    path = clip["video"] if isinstance(clip, dict) else clip
    assert iio.imread(path, plugin="pyav").shape == (5, 16, 16, 3)
    for args, message in [(("", 3, 5, False), "empty"), (("a red circle", 3, 0, False), "length|less than"),
                          (("a red circle", -1, 5, False), "seed|less than")]:
        with pytest.raises(AppError, match=message):
            client.predict(*args, "tiny-s2dit", api_name="/video")
    with pytest.raises(AppError, match="unknown model|not in the list of choices"):
        client.predict("a red circle", 3, 5, False, "/etc/passwd", api_name="/video")
    history, status = client.predict(api_name="/use_frame_as_style")
    assert "history:0" in status and len(history) == 1


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Chromium at {CHROMIUM}")
def test_stream_until_stop_in_the_browser_and_use_a_frame_as_style(video_server):
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = _open(browser, video_server.url)
            page.get_by_role("tab", name="Video").click()
            page.fill("#t2v-prompt textarea", "two blue squares moving up")
            page.check("#t2v-keep input")
            page.click("#t2v-start")
            _wait_text(page, "#t2v-status", "frames/s** (live)".replace("**", ""), 120)
            page.wait_for_selector("#t2v-live img", timeout=30_000)
            page.click("#t2v-stop")
            _wait_text(page, "#t2v-status", "Stopped after", 60)
            _settle(page)
            assert page.locator("#t2v-clip video").count() == 1
            page.click("#t2v-use")
            _wait_text(page, "#t2v-status", "history:", 30)
            page.get_by_role("tab", name="3D Stylize").click()
            page.wait_for_selector("#history img", timeout=30_000)
        finally:
            browser.close()
