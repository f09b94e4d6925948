"""The studio in a real (headless Chromium) browser, clicked as a first-time visitor clicks it.

The engine is called in the test itself to know where the objects are and what the untouched scene looks like,
so the assertions are about what the page shows and what it exports: the chosen object changed, every pixel its
Gaussians do not reach is bit-identical, the picture on the page is the exported view, style clicks land on the
object just selected, examples keep their styles, bad files are named and forgotten. Also writes the README
screenshots ``docs/studio_*.png``.
"""

from __future__ import annotations

import io
import json
import logging
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright import sync_api  # noqa: E402 - declared test dependency: must import
from scipy import ndimage

from .studio_server import ROOT, studio_server  # noqa: F401 - fixture

logger = logging.getLogger(__name__)

CHROMIUM = Path("/usr/bin/chromium")
CHROME_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEW_SIZE = 192  # the page loads the built-in scene at the size dropdown's default
RUN_SIZE = 128
ITERS = 10
DOCS = ROOT / "docs"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Chromium at {CHROMIUM}"),
]

IMG_READY = """sel => { const i = document.querySelector(sel);
    return !!i && i.complete && i.naturalWidth > 0; }"""
TRACKERS_IDLE = """() => [...document.querySelectorAll('[data-testid="status-tracker"]')]
    .every(t => t.classList.contains('hide'))"""


def _engine_view(size: int):
    """(scene, preview of view 0, cube id) straight from the engine, as the server computes them."""
    from stylize3d.preview import preview_view
    from stylize3d.scenes import load_scene

    loaded = load_scene("builtin", size)
    view = preview_view(loaded.scene, loaded.cameras, 0, loaded.background)
    return loaded.scene, view, loaded.scene.object_id("cube")


def _deepest_pixel(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the mask pixel farthest from its border: a click there cannot miss."""
    dist = ndimage.distance_transform_edt(mask)
    y, x = np.unravel_index(int(np.argmax(dist)), mask.shape)
    assert dist[y, x] >= 3, f"the cube is too small to click reliably (inner radius {dist[y, x]:.1f} px)"
    return int(x), int(y)


def _click_natural(page, selector: str, nx: float, ny: float) -> None:
    """Click natural-image pixel (nx, ny) of an <img>: Gradio scales by r = min(w/nw, h/nh, 1), centred."""
    box = page.locator(selector).bounding_box()
    nw, nh = page.eval_on_selector(selector, "i => [i.naturalWidth, i.naturalHeight]")
    r = min(box["width"] / nw, box["height"] / nh, 1.0)
    x0 = box["x"] + (box["width"] - nw * r) / 2
    y0 = box["y"] + (box["height"] - nh * r) / 2
    page.mouse.click(x0 + nx * r, y0 + ny * r)


def _wait_text(page, selector: str, text: str, timeout_s: float) -> None:
    """Wait for ``text`` in the element's text (or value), failing early with any error toast the page shows."""
    js = """([sel, text]) => { const e = document.querySelector(sel);
        return !!e && ((e.value ?? '') + e.innerText).includes(text); }"""
    handle = None
    step_ms = 1000
    for _ in range(int(timeout_s * 1000 / step_ms)):
        try:
            handle = page.wait_for_function(js, arg=[selector, text], timeout=step_ms)
            break
        except sync_api.TimeoutError:
            pass
        toasts = page.locator(".toast-body.error, .toast-wrap .error").all_inner_texts()
        if toasts:
            pytest.fail(f"the page shows an error while waiting for {text!r} in {selector}: {toasts}")
    if handle is None:
        got = page.eval_on_selector(selector, "e => (e.value ?? '') + e.innerText")
        pytest.fail(f"{selector} never contained {text!r} within {timeout_s:.0f} s; it shows {got!r}")


def _settle(page, timeout_s: float = 30) -> None:
    """Wait until no component shows a pending overlay, twice (events chain: click -> .change -> ...)."""
    for _ in range(2):
        page.wait_for_function(TRACKERS_IDLE, timeout=timeout_s * 1000)
        page.wait_for_timeout(300)


def _set_dropdown(page, elem_id: str, value: str) -> None:
    page.click(f"#{elem_id} input")
    page.locator(f"#{elem_id} [role=option][aria-label='{value}']").click()
    page.wait_for_function(
        "([sel, v]) => document.querySelector(sel).value === v", arg=[f"#{elem_id} input", value]
    )


def _set_slider(page, elem_id: str, value: int, tries: int = 10) -> None:
    """Type ``value`` into a slider's number box until its range input shows it.

    A slider in a closed accordion mounts when the accordion opens; on a busy machine its first effects can run
    after the typing and put the default back, so the value is typed again until it holds.
    """
    number, slider = f"#{elem_id} input[type=number]", f"#{elem_id} input[type=range]"
    page.wait_for_selector(slider, state="visible")
    held = "([sel, v]) => document.querySelector(sel).value === v"
    for _ in range(tries):
        page.fill(number, str(value))
        page.press(number, "Enter")
        try:
            page.wait_for_function(held, arg=[slider, str(value)], timeout=2_000)
            page.wait_for_timeout(500)  # still held after the component's pending effects?
            if page.evaluate(held, [slider, str(value)]):
                return
        except sync_api.TimeoutError:
            pass
    got = page.eval_on_selector(slider, "e => e.value")
    pytest.fail(f"the {elem_id} slider shows {got} after typing {value} {tries} times")


def studio_server_builtin_ply() -> Path:
    from stylize3d.builtin_scene import builtin_scene_dir

    return builtin_scene_dir() / "scene.ply"


def _fetch(page, url: str) -> bytes:
    resp = page.request.get(url)
    assert resp.ok, f"GET {url} -> {resp.status}"
    return resp.body()


def _browser(pw):
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROME_ARGS)


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.wait_for_function(IMG_READY, arg="#view img", timeout=60_000)
    _settle(page)
    return page


def _click_object(page, view, scene, name: str) -> None:
    x, y = _deepest_pixel(view.labels.numpy() == scene.object_id(name))
    scale = max(1, 512 // view.labels.shape[1])
    _click_natural(page, "#view img", (x + 0.5) * scale, (y + 0.5) * scale)
    _settle(page)


def _click_style(page, name: str) -> None:
    page.locator("#style-gallery button.thumbnail-item", has_text=name).click()
    _settle(page)


def _toasts(page) -> list[str]:
    return page.locator(".toast-body").all_inner_texts()


def test_style_clicks_go_to_the_object_just_selected_and_examples_keep_theirs(studio_server, tmp_path):  # noqa: F811
    from app.stylize_tab import EXAMPLES

    scene, view, _ = _engine_view(VIEW_SIZE)
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = _open(browser, studio_server.url)
            # 1. cube, mosaic, sphere, waves: each style goes to the object clicked just before it
            _click_object(page, view, scene, "cube")
            _click_style(page, "mosaic")
            _click_object(page, view, scene, "sphere")
            assert page.input_value("#active-object input") == "sphere"
            _click_style(page, "waves")
            assert page.input_value("#plan textarea").strip() == "cube = mosaic\nsphere = waves"
            # the plan sits right under the gallery, visible without scrolling away from it
            gallery, plan = page.locator("#style-gallery").bounding_box(), page.locator("#plan").bounding_box()
            assert 0 <= plan["y"] - (gallery["y"] + gallery["height"]) < 40, (gallery, plan)
            assert plan["y"] + plan["height"] < 1000, "the plan is below the first screen"
            page.screenshot(path=str(DOCS / "studio_plan.png"))

            # 2. every "Try one" row applies its own styles
            for objects, plan_text in EXAMPLES:
                page.locator("#examples tr", has_text=plan_text.replace("\n", "; ")).click()
                _settle(page)
                assert page.input_value("#plan textarea").strip() == plan_text, objects
                checked = page.eval_on_selector_all("#objects input:checked", "es => es.map(e => e.name)")
                assert sorted(checked) == sorted(objects)

            # 3. "Stop early" with nothing running says so
            page.click("#cancel")
            _wait_text(page, "#status", "nothing to stop", 20)

            # 4. a text file named .png as style: named (no server path), dropped from the box
            fake = tmp_path / "fake.png"
            fake.write_text("this is not an image")
            page.set_input_files("#style-upload input[type=file]", str(fake))
            page.wait_for_function("() => [...document.querySelectorAll('.toast-body')]"
                                   ".some(t => t.innerText.includes('fake.png'))", timeout=30_000)
            _settle(page)
            toast = next(t for t in _toasts(page) if "fake.png" in t)
            assert "not a readable image" in toast and "/" not in toast.split("fake.png")[0][-40:], toast
            assert "ComponentProcessingError" not in page.content()
            assert page.locator("#style-upload a[href]").count() == 0, "the bad file is still in the box"
        finally:
            browser.close()


def test_failed_reconstruction_keeps_the_scene_and_says_what_failed(studio_server, tmp_path):  # noqa: F811
    broken = tmp_path / "capture.zip"
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("capture/readme.txt", "no transforms.json here")
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = _open(browser, studio_server.url)
            src = page.get_attribute("#view img", "src")
            page.get_by_label("Reconstruct from a dataset .zip").check()
            page.set_input_files("#scene-upload input[type=file]", str(broken))
            _settle(page)
            page.click("#load-scene")
            _wait_text(page, "#status", "Reconstruction failed", 60)
            status = page.inner_text("#status")
            assert "capture.zip" in status and "no transforms.json" in status and "built-in scene" in status
            assert "Reconstructing" not in status
            _settle(page)
            assert page.get_attribute("#view img", "src") == src, "the view was blanked or replaced"
            assert page.locator("#objects input[name=cube]").count() == 1
        finally:
            browser.close()


def test_click_select_style_and_stylize_in_browser(studio_server, tmp_path):  # noqa: F811 - fixture
    from stylize3d.images import to_uint8
    from stylize3d.labels import selection_coverage

    _, view192, cube = _engine_view(VIEW_SIZE)
    x, y = _deepest_pixel(view192.labels.numpy() == cube)
    scale = max(1, 512 // VIEW_SIZE)  # the studio upscales the view by this integer factor

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROME_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(studio_server.url)

            # 1. the built-in scene shows by itself
            page.wait_for_function(IMG_READY, arg="#view img", timeout=60_000)
            nat = page.eval_on_selector("#view img", "i => [i.naturalWidth, i.naturalHeight]")
            assert nat == [VIEW_SIZE * scale] * 2, f"view image is {nat}, expected {VIEW_SIZE * scale} px square"
            assert page.locator("#objects input[name=cube]").count() == 1
            assert not page.locator("#objects input[name=cube]").is_checked()

            # 2. click the cube: it is ticked, gets the first style, and the view shows it selected
            src_before = page.get_attribute("#view img", "src")
            _click_natural(page, "#view img", (x + 0.5) * scale, (y + 0.5) * scale)
            page.wait_for_function(
                "() => document.querySelector('#objects input[name=cube]').checked", timeout=30_000
            )
            _wait_text(page, "#plan textarea", "cube = dots", 30)
            page.wait_for_function(
                "s => { const i = document.querySelector('#view img'); "
                "return i.src !== s && i.complete && i.naturalWidth > 0; }",
                arg=src_before,
                timeout=30_000,
            )
            checked = page.eval_on_selector_all("#objects input:checked", "es => es.map(e => e.name)")
            assert checked == ["cube"], f"the click ticked {checked}, expected only the cube"
            _settle(page)
            DOCS.mkdir(exist_ok=True)
            page.screenshot(path=str(DOCS / "studio_select.png"))

            # 3. click the mosaic style: it is assigned to the active object (the cube)
            page.locator("#style-gallery button.thumbnail-item", has_text="mosaic").click()
            _wait_text(page, "#plan textarea", "cube = mosaic", 30)
            assert page.input_value("#plan textarea").strip() == "cube = mosaic"

            # 4. a .ply chosen but never loaded: what is stylized is what is on screen, and the page says so
            other = tmp_path / "other.ply"
            other.write_bytes((studio_server_builtin_ply()).read_bytes())
            page.set_input_files("#scene-upload input[type=file]", str(other))
            _settle(page)

            # 5. small settings, then run: progress shows on the status only, the live view stays visible
            page.get_by_role("button", name="Settings").click()
            _set_slider(page, "iters", ITERS)
            _set_dropdown(page, "size", str(RUN_SIZE))
            page.click("#run")
            page.wait_for_function("() => document.querySelector('#run').disabled", timeout=30_000)
            covered = page.evaluate("""() => [...document.querySelectorAll('#view [data-testid="status-tracker"]')]
                .some(t => !t.classList.contains('hide') && t.offsetHeight > 0)""")
            assert not covered, "a progress overlay covers the live view"
            _wait_text(page, "#status", "Done", 180)
            page.wait_for_function("() => !document.querySelector('#run').disabled", timeout=30_000)
            page.wait_for_function(IMG_READY, arg="#view img", timeout=30_000)
            page.wait_for_function(IMG_READY, arg="#compare img", timeout=30_000)
            _settle(page)
            page.screenshot(path=str(DOCS / "studio_result.png"), full_page=True)

            status = page.inner_text("#status")
            assert "stopped early" not in status
            assert "Stylized the scene on screen" in status and "other.ply" in status, status
            shown = np.asarray(Image.open(io.BytesIO(_fetch(page, page.get_attribute("#view img", "src"))))
                               .convert("RGB"))
            srcs = page.eval_on_selector_all("#compare img", "es => es.map(e => e.src)")
            assert len(set(srcs)) >= 2, f"the before/after slider shows {srcs}"
            assert page.locator("#renders img").count() >= 1
            zip_url = page.get_attribute("#download a[href]", "href")
            archive = _fetch(page, zip_url)
            if zip_url.startswith("/"):
                zip_url = studio_server.url.rstrip("/") + zip_url
            # 6. closing the tab ends the session: its results stop being downloadable
            page.close()
            outsider = pw.request.new_context()
            gone = False
            for _ in range(60):
                try:
                    code = outsider.get(zip_url).status
                except sync_api.Error:  # the file vanished mid-transfer: the clean-up is under way, ask again
                    code = None
                if code in (403, 404):
                    gone = True
                    break
                time.sleep(0.5)
            outsider.dispose()
            assert gone, f"{zip_url} is still downloadable after the tab closed"
        finally:
            browser.close()

    # 5. the exported render changed inside the cube and nowhere the cube's Gaussians do not reach
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        names = set(zf.namelist())
        assert {"manifest.json", "renders/view_000.png"} <= names, sorted(names)[:20]
        manifest = json.loads(zf.read("manifest.json"))
        after = np.asarray(Image.open(io.BytesIO(zf.read("renders/view_000.png"))).convert("RGB"))
    assert manifest["render_size"] == [RUN_SIZE, RUN_SIZE]
    assert manifest["settings"]["iters"] == ITERS
    assert [(o["name"], o["styles"]) for o in manifest["objects"]] == [("cube", ["mosaic.png"])]

    scene, view, cube = _engine_view(RUN_SIZE)
    before = to_uint8(view.rgb)  # [H, W, 3] uint8, the unstylized render
    assert after.shape == before.shape, (after.shape, before.shape)
    k = shown.shape[0] // after.shape[0]  # the page shows the view upscaled by an integer factor
    assert k >= 1 and np.array_equal(shown[::k, ::k], after), "the page does not show the exported view"
    diff = np.abs(after.astype(np.float32) - before.astype(np.float32)).mean(-1) / 255  # [H, W]
    inside = view.labels.numpy() == cube
    outside = ~ndimage.binary_dilation(inside, iterations=3)  # skip anti-aliased edges
    untouched = (selection_coverage(view.weights, scene.labels == cube) <= 0).reshape(diff.shape).numpy()
    logger.info("inside %.4f, outside mean %.2e, untouched %.0f%% max %.4f",
                diff[inside].mean(), diff[outside].mean(), 100 * untouched.mean(), diff[untouched].max())
    assert diff[inside].mean() > 0.05, f"the cube barely changed: mean |diff| {diff[inside].mean():.4f}"
    assert diff[outside].mean() < 1 / 255, f"pixels away from the cube changed: {diff[outside].mean():.4f}"
    assert untouched.mean() > 0.5
    assert diff[untouched].max() == 0, "pixels no cube Gaussian reaches must be bit-identical"
