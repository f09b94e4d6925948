"""The 3D Stylize tab: pick a scene, click objects, give each a style, run with a live preview, get exports."""

import gradio as gr

from stylize3d.builtin_scene import builtin_object_names
from stylize3d.pipeline import RunOptions
from stylize3d.reconstruct import ReconstructConfig
from stylize3d.stylize import LIMITS

from .scene_inputs import BUILTIN, RECONSTRUCT, SCENE_SOURCES, UPLOAD
from .services import Services
from .stylize_handlers import DEFAULTS, SIZES, StylizeHandlers

EXAMPLES = [
    [["cube", "sphere"], "cube = mosaic\nsphere = waves"],
    [["torus"], "torus = embers"],
    [["cone", "cylinder"], "cone = strokes\ncylinder = dots"],
    [["knot"], "knot = mosaic + embers"],
]

HELP = """**1.** Load a scene (or reconstruct one from a dataset) · **2.** Click objects in the view (or tick them) · **3.** Click a style for each ·
**4.** Stylize. Everything else in the scene stays exactly as it was."""


def build(services: Services, demo: gr.Blocks, shared: dict) -> None:
    """Lay out the tab inside ``demo`` and wire its events (the built-in scene shows on page load). Puts the
    style history gallery in ``shared["history"]`` for tabs that add to it."""
    styles = services.builtin_styles()
    c: dict[str, gr.components.Component] = {}
    gr.Markdown(HELP)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            with gr.Row():
                source = gr.Radio(SCENE_SOURCES, value=BUILTIN, label="Scene", elem_id="scene-source")
                upload = gr.File(
                    label="3DGS .ply or nerfstudio dataset .zip",
                    file_types=[".ply", ".zip"],
                    elem_id="scene-upload",
                    height=120,
                )
            load_btn = gr.Button("Load scene", elem_id="load-scene")
            scene_progress = gr.HTML("", elem_id="scene-progress", padding=False)  # reconstruction progress
            c["view"] = gr.Image(
                label="Scene view: click an object to select it",
                interactive=False,
                elem_id="view",
                height=420,
                buttons=[],
                format="png",  # exact pixels: the default webp is lossy
            )
            legend = gr.HTML(elem_id="legend")
            with gr.Row():
                camera = gr.Slider(
                    0, 47, value=0, step=1, label="Camera", elem_id="camera", info="Orbit around the scene"
                )
                show_all = gr.Checkbox(value=True, label="Show object colours", elem_id="show-objects")
            examples = gr.Dataset(
                components=["textbox", "textbox"],
                type="index",
                samples=[[", ".join(o), p.replace("\n", "; ")] for o, p in EXAMPLES],
                headers=["Objects", "Styles"],
                label="Try one (built-in scene)",
                elem_id="examples",
            )
        with gr.Column(scale=2):
            objects = gr.CheckboxGroup(
                builtin_object_names(),  # so API callers can stylize the built-in scene straight away
                label="Objects to stylize",
                elem_id="objects",
                info="Click objects in the view, or tick them here",
            )
            with gr.Row():
                active = gr.Dropdown(
                    [],
                    label="Style for",
                    elem_id="active-object",
                    info="The object the next style click applies to",
                )
                box = gr.Textbox(
                    label="3D box (optional)",
                    placeholder="x0,y0,z0,x1,y1,z1",
                    elem_id="box",
                    info="Gaussians inside an axis-aligned box",
                )
            gallery = gr.Gallery(
                [(str(p), n) for n, p in styles.items()],
                label="Built-in styles: click one for the object in 'Style for'",
                columns=3,
                height=290,
                object_fit="cover",
                allow_preview=False,
                elem_id="style-gallery",
            )
            plan = gr.Textbox(
                label="Style per object",
                lines=3,
                elem_id="plan",
                info="Filled in as you click; one line per object: object = style [+ style]",
            )
            add = gr.Checkbox(
                value=False, label="Add to the object's styles instead of replacing", elem_id="add-style"
            )
            with gr.Row(equal_height=True):
                style_upload = gr.File(
                    label="...or upload a style image",
                    file_types=["image"],
                    height=110,
                    elem_id="style-upload",
                )
                c["history"] = gr.Gallery(
                    [],
                    label="Studio history (click to use as a style)",
                    columns=4,
                    height=110,
                    allow_preview=False,
                    elem_id="history",
                )
            with gr.Row(equal_height=True):
                run_btn = gr.Button("Stylize", variant="primary", elem_id="run", scale=1, min_width=110)
                cancel_btn = gr.Button("Stop early", variant="stop", elem_id="cancel", scale=1, min_width=110)
            progress_bar = gr.HTML("", elem_id="progress", padding=False)  # the progress bar lives here alone
            c["status"] = gr.Markdown("Load a scene to begin.", elem_id="status")
            with gr.Accordion("Settings", open=False):
                iters = gr.Slider(
                    5,
                    400,
                    value=DEFAULTS.iters,
                    step=5,
                    label="Iterations",
                    elem_id="iters",
                    info="More steps: stronger style, longer run",
                )
                style_w = gr.Slider(
                    0.1,
                    5.0,
                    value=DEFAULTS.style_weight,
                    step=0.1,
                    label="Style weight",
                    info="Weight of the NNFM style loss",
                )
                content_w = gr.Number(
                    value=DEFAULTS.content_weight,
                    minimum=0.0,
                    maximum=LIMITS["content_weight"][1],
                    label="Content weight",
                    info="Keeps the object's structure (ARF: ~1e-3)",
                )
                size = gr.Dropdown(
                    SIZES,
                    value=RunOptions.size,
                    label="Render size (px)",
                    elem_id="size",
                    info="Larger is sharper and slower",
                )
                recon_iters = gr.Slider(
                    50, 5000, value=ReconstructConfig.iters, step=50, label="Reconstruction steps",
                    elem_id="recon-iters", info="Training steps when reconstructing a scene from a dataset",
                )
                seed = gr.Number(value=DEFAULTS.seed, precision=0, minimum=0, maximum=LIMITS["seed"][1],
                                 label="Seed")
    with gr.Row(equal_height=False):
        c["compare"] = gr.ImageSlider(label="Before / after", elem_id="compare", max_height=360, scale=2,
                                      format="png")
        c["renders"] = gr.Gallery(label="Stylized views", columns=4, height=360, elem_id="renders", scale=3)
    with gr.Row(equal_height=False):
        c["orbit"] = gr.Video(label="Orbit", elem_id="orbit", height=300)
        c["splats"] = gr.Model3D(label="Stylized Gaussians (drag to orbit; the .ply is in the zip)",
                                 elem_id="splats", height=300)
        with gr.Column():
            c["download"] = gr.File(label="Download everything (zip with manifest)", elem_id="download")
            c["manifest"] = gr.JSON(label="Manifest", elem_id="manifest", open=False)

    h = StylizeHandlers(services)

    names = ["view", "status", "compare", "renders", "orbit", "splats", "download", "manifest", "history"]
    outputs = [c[n] for n in names]

    def stylize(
        scene_source: str,
        scene_file: str | None,
        objects: list[str],
        box: str,
        style_plan: str,
        style_image: str | None,
        iterations: int,
        style_weight: float,
        content_weight: float,
        size: int,
        seed: int,
        camera: int,
        request: gr.Request,
        progress=gr.Progress(),
    ):
        """Stylize the objects of a scene (API: /stylize). style_plan lines: 'object = style [+ style]'."""
        for update in h.run_handler(
            scene_source,
            scene_file,
            objects,
            box,
            style_plan,
            style_image,
            iterations,
            style_weight,
            content_weight,
            size,
            seed,
            camera,
            request,
            progress,
        ):
            yield {c[k]: v for k, v in update.items()}

    scene_outputs = [c["view"], camera, objects, plan, active, c["status"], legend]
    demo.load(h.load_scene_handler, [source, upload, size], scene_outputs, api_visibility="private")
    load_btn.click(
        h.load_scene_handler,
        [source, upload, size],
        scene_outputs,
        api_name="load_scene",
        concurrency_id="light",
    )

    def reconstruct(scene_source: str, scene_file: str | None, size: int, steps: int, request: gr.Request,
                    progress=gr.Progress()):
        """Train Gaussians on an uploaded nerfstudio dataset .zip, then show them (API: /reconstruct)."""
        return h.reconstruct_handler(scene_source, scene_file, size, steps, request, progress)

    load_btn.click(reconstruct, [source, upload, size, recon_iters], scene_outputs, api_name="reconstruct",
                   concurrency_limit=services.config.concurrency, concurrency_id="stylize",
                   show_progress_on=[scene_progress])
    upload.upload(lambda s: s if s == RECONSTRUCT else UPLOAD, source, source, api_visibility="private")
    camera.release(
        h.view_handler, [camera, objects, show_all], c["view"], api_name="view", concurrency_id="light"
    )
    show_all.change(h.view_handler, [camera, objects, show_all], c["view"], api_visibility="private")
    # clicks and ticks update the plan themselves; .input (not .change) so a programmatic update of the list
    # (a click, an example) never re-runs the plan logic with a stale plan
    c["view"].select(
        h.click_handler, [objects, plan, active, box, camera, show_all], [objects, c["view"], plan, active],
        api_visibility="private",
    )
    plan_inputs = [objects, plan, active, camera, show_all, box]
    objects.input(h.objects_handler, plan_inputs, [plan, active, c["view"]], api_visibility="private")
    box.blur(h.objects_handler, plan_inputs, [plan, active, c["view"]], api_visibility="private")

    def example(index: int, camera_index: int, show: bool, request: gr.Request):
        objs, plan_text = EXAMPLES[index]
        return h.example_handler(list(objs), plan_text, camera_index, show, request)

    examples.click(example, [examples, camera, show_all], [objects, plan, active, c["view"]],
                   api_visibility="private")
    gallery.select(h.gallery_handler, [plan, active, add], plan, api_visibility="private")
    style_upload.upload(
        h.upload_style_handler, [plan, active, add, style_upload], [plan, style_upload], api_visibility="private"
    )
    c["history"].select(h.history_handler, [plan, active, add], plan, api_visibility="private")
    inputs = [source, upload, objects, box, plan, style_upload]
    settings = [iters, style_w, content_w, seed]
    run_btn.click(h.validate_handler, inputs + settings, run_btn, api_visibility="private").success(
        stylize,
        inputs + [iters, style_w, content_w, size, seed, camera],
        outputs,
        api_name="stylize",
        concurrency_limit=services.config.concurrency,
        concurrency_id="stylize",
        show_progress_on=[progress_bar],
    ).then(lambda: gr.update(interactive=True, value="Stylize"), None, run_btn, api_visibility="private")
    cancel_btn.click(h.cancel_handler, None, c["status"], api_name="cancel", concurrency_id="light")
    shared["history"] = c["history"]
