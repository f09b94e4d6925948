"""The Export tab, as a visitor and an API caller meet it (tiny random models the operator names with
``--model-dir``): make an image, export "this session's model", see the parts' sizes and checks, download a
zip whose manifest matches; Core AI for the video model over the API; bad requests named."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from .studio_server import start_server
from .test_studio_browser import CHROMIUM, DOCS, _browser, _open, _settle, _wait_text
from .test_t2i_pipeline import text_encoder, tiny_pipeline  # noqa: F401 - fixture
from .test_t2v_pipeline import tiny_video_pipeline

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def export_server(tmp_path_factory, scene_cache, text_encoder):  # noqa: F811
    models = tmp_path_factory.mktemp("models")
    tiny_pipeline(text_encoder).save_pretrained(models / "tiny-t2i", include_text_encoder=False)
    tiny_video_pipeline(text_encoder).save_pretrained(models / "tiny-s2dit", include_text_encoder=False)
    server = start_server(tmp_path_factory.mktemp("studio"), scene_cache, "--model-dir", str(models / "tiny-t2i"),
                          "--model-dir", str(models / "tiny-s2dit"))
    yield server
    server.stop()


def test_export_api_core_ai_video_and_bad_requests(export_server):
    client = Client(export_server.url, verbose=False)
    with pytest.raises(AppError, match="has not used a model"):
        client.predict("This session's model", "1", "16", "Core ML", api_name="/export")
    with pytest.raises(AppError, match="unknown model|not in the list of choices"):
        client.predict("/etc/passwd", "1", "16", "Core ML", api_name="/export")
    table, status, zipped = client.predict("tiny-s2dit", "1", None, "Core AI", api_name="/export")
    assert "Exported **tiny-s2dit** as Core AI fp16" in status
    rows = table["data"] if isinstance(table, dict) else table
    assert [r[0] for r in rows] == ["text_encoder", "denoiser", "decoder"]
    assert [r[1] for r in rows] == ["TextEncoder.aimodel", "Denoiser.aimodel", "VAEDecoder.aimodel"]
    with zipfile.ZipFile(zipped) as z:
        m = json.loads(z.read("Resources/manifest.json"))
        assert m["model"] == "video" and m["target"] == "coreai" and "Resources/Denoiser.aimodel/main.mlirb" in z.namelist()
    inputs = m["components"]["denoiser"]["inputs"]
    assert [c["name"] for c in inputs[:2]] == ["latents", "timestep"] and inputs[5]["role"] == "b0_kv"


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Chromium at {CHROMIUM}")
def test_make_an_image_then_export_this_sessions_model_in_the_browser(export_server):
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = _open(browser, export_server.url)
            page.get_by_role("tab", name="Image").click()
            page.click("#t2i-model input")  # the operator's tiny model, not the shipped default (slow to convert)
            page.get_by_role("option", name="tiny-t2i").click()
            box = "#t2i-steps input[type=number]"
            page.fill(box, "2")
            page.press(box, "Enter")
            page.click("#t2i-generate")
            _wait_text(page, "#t2i-status", "Made 2 images", 120)
            page.get_by_role("tab", name="Export").click()
            page.click("#export-model input")
            page.get_by_role("option", name="This session's model").click()
            page.get_by_label("8", exact=True).check()
            page.click("#export-go")
            _wait_text(page, "#export-status", "Exported", 500)
            _settle(page)
            assert "tiny-t2i" in page.inner_text("#export-status") and "8-bit palettized" in page.inner_text("#export-status")
            _wait_text(page, "#export-table", "Denoiser.mlpackage", 30)
            assert "TextEncoder.mlpackage" in page.inner_text("#export-table")
            page.screenshot(path=str(DOCS / "studio_export.png"), full_page=True)
            link = page.locator("#export-zip a").first
            body = page.request.get(link.get_attribute("href")).body()
            with zipfile.ZipFile(io.BytesIO(body)) as z:
                m = json.loads(z.read("Resources/manifest.json"))
            assert m["bits"] == 8 and m["target"] == "coreml" and m["failed"] == []
            assert m["components"]["denoiser"]["checks"]["reauthored_vs_original_psnr_db"] >= 35
        finally:
            browser.close()
