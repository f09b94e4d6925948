"""The Image tab: a prompt becomes an image in a few steps from a compact on-device model; "Use as style" hands
it to the 3D Stylize tab (it appears there as ``history:N``).

Models: the shipped ones ("Fast", the 4-step distilled student, and "Quality", its teacher), or a diffusers pipeline folder the operator named with ``--model-dir`` (visitors
pick by name, never by path). Each loads once, on first use, into the studio's shared model cache.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from generators.pipelines.loading import (
    MAX_GUIDANCE,
    MAX_IMAGES,
    MAX_STEPS,
    check_request,
    describe,
    folder_widths,
    generate,
    is_video_folder,
    load_t2i,
    read_sampling,
    shipped,
)
from stylize3d.atomic import atomic_open

from .jobs import run_job, with_progress
from .model_choices import load_choice, named_folders
from .public_errors import public_message
from .services import Services

TAB = "image"
EXAMPLES = [
    "a pattern of blue and white waves",
    "a pattern of red and yellow stripes",
    "a pattern of green and black mosaic tiles",
    "orange brush strokes on blue",
    "a photo of a red circle left of a blue square",
    "a photo of three yellow stars",
]


def model_choices(services: Services) -> dict[str, Path]:
    """Name shown -> folder: the shipped models first (those this checkout has), then the operator's."""
    return named_folders({f"{name} (shipped)": folder for name, folder in shipped().items()},
                         services.config.model_dirs, lambda f: not is_video_folder(f))  # video: the Video tab


def sampling_of(folder: Path | None) -> tuple[int, float]:
    try:
        found = read_sampling(folder) if folder is not None else {}
    except ValueError:
        found = {}  # loading the model names the broken file
    return int(found.get("num_inference_steps", 20)), float(found.get("guidance_scale", 4.0))


NO_MODEL = ("No text-to-image model here: this checkout ships none yet (it is still in training), and the studio "
            "was started without --model-dir. Start it with --model-dir PIPELINE_FOLDER to offer one.")


class ImageHandlers:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.choices = model_choices(services)

    def _pipe(self, name: str):
        return load_choice(self.services, self.choices, name, "t2i", load_t2i, NO_MODEL)

    def model_handler(self, name: str):
        """A model's widths, and its own step count and guidance (a distilled student: few steps, guidance 1)."""
        folder = self.choices.get(name)
        widths = folder_widths(folder)
        steps, guidance = sampling_of(folder)
        return (gr.update(choices=[f"{w:g}" for w in widths], value=f"{widths[-1]:g}", visible=len(widths) > 1),
                gr.update(value=steps), gr.update(value=guidance))

    def generate_handler(self, prompt: str, negative: str, steps: float, guidance: float, seed: float, width: str,
                         model: str, count: float, request: gr.Request, progress=gr.Progress()):
        """Generate images; they join the session's gallery. Returns (gallery, status)."""
        session = self.services.sessions.get(getattr(request, "session_hash", None))
        try:
            steps, seed, count = int(steps), int(seed), int(count)
            width_mult = float(width or 1.0)
            check_request(prompt, negative or "", steps, guidance, seed, count)
        except (TypeError, ValueError) as err:
            raise gr.Error(public_message(err)) from err
        state = session.tab(TAB)
        session.last_model = model

        def work(emit, should_stop):
            emit("progress", 0, steps, "loading the model")
            pipe, lock = self._pipe(model)

            def on_step(i, total):
                emit("progress", i, total, f"step {i}/{total}")

            with lock:  # a pipeline's scheduler keeps per-call state: one generation per model at a time
                images, info = generate(pipe, prompt, negative or "", steps, float(guidance), seed, count,
                                        width_mult, on_step=on_step)
            return images, info, describe(pipe, self.choices[model])

        images, info, label = with_progress(run_job(self.services, session, "generation", work), progress)
        folder = session.new_dir("image")
        folder.mkdir(parents=True, exist_ok=True)
        items = state.setdefault("images", [])
        for i, img in enumerate(images):
            path = folder / f"{i}.png"
            with atomic_open(path) as f:
                img.save(f, format="PNG")
            items.append((str(path), f"{prompt[:60]} (seed {seed}, #{i + 1})"))
        state["selected"] = len(items) - 1
        status = (f"Made {len(images)} image{'s' * (len(images) > 1)} with **{label}**: {info['steps']} step{'s' * (info['steps'] != 1)}, "
                  f"guidance {info['guidance']:g}, seed {info['seed']}, width {info['width_mult']:g}x, "
                  f"{info['seconds']:.1f} s. Select one and press **Use as style** to stylize a 3D object with it.")
        return list(items), status  # "Use as style" takes the newest unless another is clicked

    def select_handler(self, evt: gr.SelectData, request: gr.Request):
        session = self.services.sessions.get(getattr(request, "session_hash", None))
        session.tab(TAB)["selected"] = int(evt.index)

    def use_as_style_handler(self, request: gr.Request):
        """Add the selected image to the session's style history; returns (history gallery, status)."""
        session = self.services.sessions.get(getattr(request, "session_hash", None))
        state = session.tab(TAB)
        items, selected = state.get("images", []), state.get("selected")
        if not items or selected is None or not 0 <= selected < len(items):
            raise gr.Error("no image yet: generate one first")
        path = items[selected][0]
        if path not in session.history:
            session.history.append(path)
        n = session.history.index(path)
        return list(session.history), (f"Added as style **history:{n}**: in the 3D Stylize tab, click it under "
                                       "*Studio history* after selecting an object.")


def build(services: Services, demo: gr.Blocks, shared: dict) -> None:
    h = ImageHandlers(services)
    names = list(h.choices) or ["(none)"]
    widths = folder_widths(h.choices[names[0]]) if h.choices else (1.0,)
    first_steps, first_guidance = sampling_of(h.choices.get(names[0]))
    gr.Markdown("Type a prompt, get an image from a compact on-device model in a few steps. The shipped models "
                "were trained here on shapes and textures (Fast: 4 steps, distilled from Quality): textures make good "
                "styles for 3D objects."
                + ("" if h.choices else f"\n\n**{NO_MODEL}**"))
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            prompt = gr.Textbox(label="Prompt", value=EXAMPLES[0], lines=2, max_length=2000, elem_id="t2i-prompt")
            negative = gr.Textbox(label="Negative prompt", value="", elem_id="t2i-negative", max_length=2000)
            examples = gr.Dataset(components=[gr.Textbox(visible=False)], samples=[[e] for e in EXAMPLES],
                                  label="Try one", elem_id="t2i-examples")
            with gr.Row():
                steps = gr.Slider(1, MAX_STEPS, value=first_steps, step=1, label="Steps", elem_id="t2i-steps")
                guidance = gr.Slider(0, MAX_GUIDANCE, value=first_guidance, step=0.5, label="Guidance", elem_id="t2i-guidance")
            with gr.Row():
                seed = gr.Number(0, precision=0, minimum=0, label="Seed", elem_id="t2i-seed")
                count = gr.Slider(1, MAX_IMAGES, value=2, step=1, label="Images", elem_id="t2i-count")
            with gr.Row():
                model = gr.Dropdown(names, value=names[0], label="Model", elem_id="t2i-model",
                                    interactive=len(names) > 1)
                width = gr.Radio([f"{w:g}" for w in widths], value=f"{widths[-1]:g}", label="Width (elastic)",
                                 visible=len(widths) > 1, elem_id="t2i-width")
            go = gr.Button("Generate", variant="primary", elem_id="t2i-generate", interactive=bool(h.choices))
            progress_bar = gr.HTML("", elem_id="t2i-progress", padding=False)
        with gr.Column(scale=3):
            gallery = gr.Gallery([], label="This session's images", columns=4, height=360, format="png",
                                 elem_id="t2i-gallery")
            use = gr.Button("Use as style", elem_id="t2i-use")
            status = gr.Markdown("", elem_id="t2i-status")
    examples.click(lambda i: EXAMPLES[i], examples, prompt, api_visibility="private")
    model.change(h.model_handler, model, [width, steps, guidance], api_visibility="private")
    go.click(h.generate_handler, [prompt, negative, steps, guidance, seed, width, model, count], [gallery, status],
             api_name="generate", concurrency_limit=services.config.concurrency, concurrency_id="generate",
             show_progress_on=[progress_bar])
    gallery.select(h.select_handler, None, None, api_visibility="private")
    use.click(h.use_as_style_handler, None, [shared["history"], status], api_name="use_as_style",
              concurrency_id="light")
