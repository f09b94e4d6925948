"""The Export tab: take the studio's image or video generator to an iPhone as Core ML packages (fp16 or
palettized) or Core AI assets, see each part's size and checks, download the ``Resources/`` folder as a zip.

Models by name, as the Image and Video tabs offer them; "This session's model" is the one this session last
used in either tab. Exports run through the shared job runner (progress, one heavy job per session).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import gradio as gr

from generators.export.package import SUMMARY_COLUMNS, export_pipeline, summary_rows
from generators.pipelines.loading import folder_widths, is_video_folder, load_t2i, load_t2v
from stylize3d.atomic import atomic_open, atomic_output_dir

from . import image_tab, video_tab
from .jobs import run_job, with_progress
from .model_choices import load_choice
from .public_errors import public_message
from .services import Services

TAB = "export"
SESSION = "This session's model"
TARGETS = {"Core ML": "coreml", "Core AI": "coreai"}
BITS = ["16", "8", "6", "4"]
NO_MODEL = ("No generator to export here: this checkout ships none yet and the studio was started without "
            "--model-dir. Start it with --model-dir PIPELINE_FOLDER to offer one.")


def model_choices(services: Services) -> dict[str, Path]:
    """Name shown -> folder: the Image tab's models, then the Video tab's (same names as there)."""
    return {**image_tab.model_choices(services), **video_tab.model_choices(services)}


def session_model(session, choices: dict[str, Path]) -> str:
    if session.last_model not in choices:
        raise gr.Error("this session has not used a model yet: make an image or a video first, or pick a model")
    return session.last_model


def zip_folder(folder: Path, path: Path) -> Path:
    with atomic_open(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                z.write(file, file.relative_to(folder))
    return path


class ExportHandlers:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.choices = model_choices(services)

    def model_handler(self, name: str):
        folder = self.choices.get(name)
        widths = folder_widths(folder) if folder is not None and not is_video_folder(folder) else (1.0,)
        return gr.update(choices=[f"{w:g}" for w in widths], value=f"{widths[-1]:g}", visible=len(widths) > 1)

    def target_handler(self, target: str):
        core_ml = TARGETS.get(target) == "coreml"
        return gr.update(interactive=core_ml, value=None if not core_ml else "16")

    def export_handler(self, model: str, width: str, bits: str, target: str, request: gr.Request,
                       progress=gr.Progress()):
        """Export; returns (table of parts, status, zip)."""
        session = self.services.sessions.get(getattr(request, "session_hash", None))
        try:
            if target not in TARGETS:
                raise ValueError(f"target {target!r}: choose {' or '.join(TARGETS)}")
            kind_target = TARGETS[target]
            bits_n = int(bits or 16) if kind_target == "coreml" else 16
            width_mult = float(width or 1.0)
        except (TypeError, ValueError) as err:
            raise gr.Error(public_message(err)) from err
        name = session_model(session, self.choices) if model == SESSION else model
        if name not in self.choices:
            raise gr.Error(NO_MODEL if not self.choices else f"unknown model {name!r}: choose one of {', '.join(self.choices)}")
        video = is_video_folder(self.choices[name])
        kind = "video" if video else "image"

        def work(emit, should_stop):
            emit("progress", 0, 100, "loading the model")
            pipe, lock = load_choice(self.services, self.choices, name, "t2v" if video else "t2i",
                                     load_t2v if video else load_t2i, NO_MODEL)
            folder = session.new_dir("export")

            def on_progress(fraction: float, message: str) -> None:
                emit("progress", int(fraction * 100), 100, message)

            with lock, atomic_output_dir(folder) as tmp:
                manifest = export_pipeline(pipe, kind, tmp, kind_target, bits_n, width_mult, source=name,
                                           progress=on_progress)
            return manifest, zip_folder(folder, folder.with_suffix(".zip"))

        manifest, zipped = with_progress(run_job(self.services, session, "export", work), progress)
        what = f"{target} {'fp16' if bits_n == 16 else f'{bits_n}-bit palettized'}"
        failed = manifest["failed"]
        status = (f"Exported **{name}** as {what}: {manifest['total_size_bytes'] / 2**20:.1f} MB in "
                  f"{manifest['seconds']:.0f} s. The zip holds `Resources/` with `manifest.json` (inputs, shapes, "
                  "scheduler timesteps, guidance and these checks)."
                  + (f" **Did not convert: {', '.join(failed)}** (the table names the op); the rest is in the zip."
                     if failed else ""))
        return summary_rows(manifest), status, str(zipped)


def build(services: Services, demo: gr.Blocks, shared: dict) -> None:
    h = ExportHandlers(services)
    names = ([SESSION] if h.choices else []) + list(h.choices) or ["(none)"]
    gr.Markdown("Take a generator to an iPhone: Core ML packages (iOS 17, fp16 or k-means palettized to 8, 6 or 4 "
                "bits, with the Neural-Engine layout of Apple's ml-stable-diffusion) or Core AI assets. Each part "
                "is checked here: the re-authored model against the original, palettized weights against fp16 "
                "(PSNR, dB)." + ("" if h.choices else f"\n\n**{NO_MODEL}**"))
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            model = gr.Dropdown(names, value=names[min(1, len(names) - 1)], label="Model", elem_id="export-model",
                                interactive=len(names) > 1)
            width = gr.Radio(["1"], value="1", label="Width (elastic)", visible=False, elem_id="export-width")
            target = gr.Radio(list(TARGETS), value="Core ML", label="Target", elem_id="export-target")
            bits = gr.Radio(BITS, value="16", label="Weight bits (Core ML)", elem_id="export-bits",
                            info="16: fp16; 8 / 6 / 4: palettized (Apple recommends >= 6 without calibration)")
            go = gr.Button("Export", variant="primary", elem_id="export-go", interactive=bool(h.choices))
            progress_bar = gr.HTML("", elem_id="export-progress", padding=False)
        with gr.Column(scale=3):
            table = gr.Dataframe(headers=SUMMARY_COLUMNS, value=[], interactive=False, elem_id="export-table",
                                 label="Parts (re-authored dB: Neural-Engine model vs the original; palettized dB: "
                                       "decompressed weights vs fp16; PSNR in torch on the same inputs)")
            status = gr.Markdown("", elem_id="export-status")
            download = gr.File(label="Download (zip)", elem_id="export-zip", interactive=False)
    model.change(h.model_handler, model, width, api_visibility="private")
    target.change(h.target_handler, target, bits, api_visibility="private")
    go.click(h.export_handler, [model, width, bits, target], [table, status, download], api_name="export",
             concurrency_limit=services.config.concurrency, concurrency_id="export", show_progress_on=[progress_bar])
