"""The Image tab, as a visitor and an API caller meet it: a prompt becomes images that are the model's own
pixels, "Use as style" puts one into the 3D Stylize tab as ``history:N``, and bad requests are named."""

from __future__ import annotations

import io

import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from generators.pipelines.loading import (
    DEFAULT_T2I,
    generate,
    load_t2i,
    read_sampling,
    resolve_model,
    shipped,
)

from .studio_server import start_server, studio_server  # noqa: F401 - fixture
from .test_studio_browser import CHROMIUM, _browser, _click_object, _engine_view, _open, _settle, _wait_text
from .test_t2i_pipeline import _standard_sd_folder, text_encoder  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(300)
needs_model = pytest.mark.skipif(not (DEFAULT_T2I / "model_index.json").is_file(), reason="no shipped model")

PROMPT = "a pattern of red and yellow stripes"
SHIPPED = f"{next(iter(shipped()), 'Quality')} (shipped)"
"""The default model's name in the tab (Fast once the distilled student ships)."""


@pytest.fixture(scope="module")
def expected():
    """What the shipped model makes for PROMPT, seed 5, 6 steps, guidance 4: computed here, not by the server."""
    images, _ = generate(load_t2i(), PROMPT, steps=6, guidance=4.0, seed=5, n=2)
    return [np.asarray(im) for im in images]


@pytest.fixture(scope="module")
def expected_default():
    """What the default model makes for PROMPT, seed 5, at its own steps and guidance (a visitor's first image)."""
    own = read_sampling(resolve_model(None))
    steps, guidance = own.get("num_inference_steps", 20), own.get("guidance_scale", 4.0)
    images, _ = generate(load_t2i(), PROMPT, steps=steps, guidance=guidance, seed=5, n=2)
    return steps, [np.asarray(im) for im in images]


@needs_model
def test_generate_api_returns_the_models_images_and_refuses_bad_requests(studio_server, expected):  # noqa: F811
    client = Client(studio_server.url, verbose=False)
    gallery, status = client.predict(PROMPT, "", 6, 4.0, 5, "1", SHIPPED, 2, api_name="/generate")
    assert "Made 2 images" in status and "6 steps" in status
    got = [np.asarray(Image.open(item["image"]).convert("RGB")) for item in gallery]
    assert len(got) == 2
    for g, e in zip(got, expected):  # PNG on the page: the model's pixels (up to float rounding across threads)
        assert g.shape == e.shape and np.abs(g.astype(int) - e).max() <= 2
    # refused by the handler, or by Gradio's own component checks (which name the value and the bound)
    for args, message in [(("", "", 6, 4.0, 5), "empty"), ((PROMPT, "", 0, 4.0, 5), "steps|less than minimum"),
                          ((PROMPT, "", 6, 99.0, 5), "guidance|greater than maximum"),
                          (("x" * 3000, "", 6, 4.0, 5), "characters|length")]:
        with pytest.raises(AppError, match=message):
            client.predict(*args, "1", SHIPPED, 1, api_name="/generate")
    with pytest.raises(AppError, match="unknown model|not in the list of choices"):  # a path is no model name
        client.predict(PROMPT, "", 2, 4.0, 5, "1", "/etc/passwd", 1, api_name="/generate")
    _, status = client.predict(PROMPT, "", 2, 4.0, 1, "1", SHIPPED, 1, api_name="/generate")
    assert "Made 1 image" in status  # still serving


@needs_model
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Chromium at {CHROMIUM}")
def test_generate_in_the_browser_and_use_it_as_a_style(studio_server, expected_default):  # noqa: F811
    from playwright import sync_api

    scene, view, _ = _engine_view(192)
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = _open(browser, studio_server.url)
            page.get_by_role("tab", name="Image").click()
            page.fill("#t2i-prompt textarea", PROMPT)
            steps, expected = expected_default
            assert page.input_value("#t2i-steps input[type=number]") == str(steps)  # the model's own
            page.fill("#t2i-seed input[type=number]", "5")
            page.press("#t2i-seed input[type=number]", "Enter")
            page.click("#t2i-generate")
            _wait_text(page, "#t2i-status", "Made 2 images", 120)
            _settle(page)
            thumbs = page.locator("#t2i-gallery img")
            assert thumbs.count() >= 2
            src = thumbs.first.get_attribute("src")
            shown = np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))
            assert any(np.abs(shown.astype(int) - e).max() <= 2 for e in expected), "the page shows the model's pixels"
            page.click("#t2i-use")
            _wait_text(page, "#t2i-status", "history:0", 30)
            page.get_by_role("tab", name="3D Stylize").click()
            page.wait_for_selector("#history img", timeout=30_000)
            _click_object(page, view, scene, "cube")
            page.locator("#history button.thumbnail-item").first.click()
            _settle(page)
            assert page.input_value("#plan textarea").strip() == "cube = history:0"
        finally:
            browser.close()


def test_operator_model_folders_are_offered_by_name(tmp_path, scene_cache, text_encoder):  # noqa: F811
    folder = _standard_sd_folder(tmp_path / "sd-tiny", text_encoder)
    server = start_server(tmp_path / "studio", scene_cache, "--model-dir", str(folder))
    try:
        client = Client(server.url, verbose=False)
        gallery, status = client.predict("a red circle", "", 2, 0.0, 1, "1", "sd-tiny", 1, api_name="/generate")
        assert "StableDiffusionPipeline" in status and len(gallery) == 1
    finally:
        server.stop()


def test_fast_is_the_default_and_quality_stays_available(tmp_path, monkeypatch, text_encoder):  # noqa: F811
    """With both shipped models present (tiny stand-ins here), no flags means Fast at its own few steps."""
    import json
    import shutil
    from types import SimpleNamespace

    from app import image_tab
    from generators.pipelines import loading

    from .test_t2i_pipeline import tiny_pipeline

    quality, fast = tmp_path / "pocket-t2i", tmp_path / "pocket-t2i-fast"
    tiny_pipeline(text_encoder).save_pretrained(quality, include_text_encoder=False)
    shutil.copytree(quality, fast)
    (fast / "sampling.json").write_text(json.dumps({"num_inference_steps": 4, "guidance_scale": 1.0}))
    monkeypatch.setattr(loading, "SHIPPED", {"Fast": fast, "Quality": quality})
    assert loading.resolve_model(None) == fast and loading.resolve_model("Quality") == quality
    _, info = loading.generate(loading.load_t2i(), "a red circle")
    assert (info["steps"], info["guidance"]) == (4, 1.0)
    services = SimpleNamespace(config=SimpleNamespace(model_dirs=(str(quality),)))
    handlers = image_tab.ImageHandlers(services)
    assert list(handlers.choices) == ["Fast (shipped)", "Quality (shipped)", "pocket-t2i"]
    _, steps, guidance = handlers.model_handler("Quality (shipped)")
    assert (steps["value"], guidance["value"]) == (20, 4.0)
    _, steps, guidance = handlers.model_handler("Fast (shipped)")
    assert (steps["value"], guidance["value"]) == (4, 1.0)
    shutil.rmtree(fast)  # a checkout without the student falls back to the teacher
    assert loading.resolve_model(None) == quality
