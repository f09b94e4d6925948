"""The 3D Stylize tab: pick a scene, click objects, give each a style, run with a live preview, get exports."""

import gradio as gr

from stylize3d.builtin_scene import builtin_object_names
from stylize3d.pipeline import RunOptions
from stylize3d.reconstruct import ReconstructConfig

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


def build(services: Services, demo: gr.Blocks) -> None:
    """Lay out the tab inside ``demo`` and wire its events (the built-in scene shows on page load)."""
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
                    height=90,
                )
            load_btn = gr.Button("Load scene", elem_id="load-scene")
            c["view"] = gr.Image(
                label="Scene view: click an object to select it",
                interactive=False,
                elem_id="view",
                height=420,
                buttons=[],
            )
            legend = gr.HTML(elem_id="legend")
            with gr.Row():
                camera = gr.Slider(
                    0, 47, value=0, step=1, label="Camera", elem_id="camera", info="Orbit around the scene"
                )
                show_all = gr.Checkbox(value=True, label="Show object colours", elem_id="show-objects")
        with gr.Column(scale=2):
            objects = gr.CheckboxGroup(
                builtin_object_names(),  # so API callers can stylize the built-in scene straight away
                label="Objects to stylize",
                elem_id="objects",
                info="Click objects in the view, or tick them here",
            )
            box = gr.Textbox(
                label="3D box (optional)",
                placeholder="x0,y0,z0,x1,y1,z1",
                elem_id="box",
                info="Stylize the Gaussians inside an axis-aligned box (world units)",
            )
            active = gr.Dropdown(
                [],
                label="Style for",
                elem_id="active-object",
                info="The object the next style click applies to",
            )
            gallery = gr.Gallery(
                [(str(p), n) for n, p in styles.items()],
                label="Built-in styles",
                columns=3,
                height=230,
                object_fit="cover",
                allow_preview=False,
                elem_id="style-gallery",
            )
            add = gr.Checkbox(
                value=False, label="Add to the object's styles instead of replacing", elem_id="add-style"
            )
            style_upload = gr.Image(
                label="...or upload a style image",
                type="filepath",
                sources=["upload"],
                height=120,
                elem_id="style-upload",
            )
            c["history"] = gr.Gallery(
                [],
                label="Studio history (click to use as a style)",
                columns=5,
                height=100,
                allow_preview=False,
                elem_id="history",
            )
            plan = gr.Textbox(
                label="Style per object",
                lines=3,
                elem_id="plan",
                info="Filled in as you click; one line per object: object = style [+ style]",
            )
            gr.Examples(EXAMPLES, [objects, plan], label="Try one (built-in scene)", examples_per_page=4)
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
                seed = gr.Number(value=DEFAULTS.seed, precision=0, label="Seed")
            with gr.Row():
                run_btn = gr.Button("Stylize", variant="primary", elem_id="run")
                cancel_btn = gr.Button("Stop early", variant="stop", elem_id="cancel")
            c["status"] = gr.Markdown("Load a scene to begin.", elem_id="status")
    with gr.Row():
        c["compare"] = gr.ImageSlider(label="Before / after", elem_id="compare", max_height=420)
        c["renders"] = gr.Gallery(label="Stylized views", columns=6, height=360, elem_id="renders")
    with gr.Row():
        c["orbit"] = gr.Video(label="Orbit", elem_id="orbit", height=320)
        c["splats"] = gr.Model3D(label="Stylized Gaussians (.ply)", elem_id="splats", height=320)
    with gr.Row():
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
                   concurrency_limit=services.config.concurrency, concurrency_id="stylize")
    upload.upload(lambda s: s if s == RECONSTRUCT else UPLOAD, source, source, api_visibility="private")
    camera.release(
        h.view_handler, [camera, objects, show_all], c["view"], api_name="view", concurrency_id="light"
    )
    show_all.change(h.view_handler, [camera, objects, show_all], c["view"], api_visibility="private")
    c["view"].select(
        h.click_handler, [objects, camera, show_all], [objects, c["view"]], api_visibility="private"
    )
    objects.change(
        h.objects_handler,
        [objects, plan, active, camera, show_all, box],
        [plan, active, c["view"]],
        api_visibility="private",
    )
    box.blur(
        h.objects_handler,
        [objects, plan, active, camera, show_all, box],
        [plan, active, c["view"]],
        api_visibility="private",
    )
    gallery.select(h.gallery_handler, [plan, active, add], plan, api_visibility="private")
    style_upload.upload(
        h.upload_style_handler, [plan, active, add, style_upload], plan, api_visibility="private"
    )
    c["history"].select(h.history_handler, [plan, active, add], plan, api_visibility="private")
    inputs = [source, upload, objects, box, plan, style_upload]
    run_btn.click(h.validate_handler, inputs, None, api_visibility="private").success(
        stylize,
        inputs + [iters, style_w, content_w, size, seed, camera],
        outputs,
        api_name="stylize",
        concurrency_limit=services.config.concurrency,
        concurrency_id="stylize",
    )
    cancel_btn.click(h.cancel_handler, None, c["status"], api_name="cancel", concurrency_id="light")
