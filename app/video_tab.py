"""The Video tab: frames stream into the page while the video is made, for a set length or until Stop, at a
constant cost per chunk; the clip downloads as MP4 (what was made, when stopped) and any frame can become a
style in the 3D Stylize tab (``history:N``).

Models: the shipped streaming model, or video pipeline folders the operator named with ``--model-dir``
(visitors pick by name, never by path); each loads once into the studio's shared model cache.
"""

from __future__ import annotations

import time
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from generators.pipelines.loading import (
    SHIPPED_VIDEO,
    check_request,
    is_video_folder,
    load_t2v,
    read_sampling,
    stream_video,
)
from stylize3d.atomic import atomic_open

from .jobs import run_job
from .model_choices import load_choice, named_folders
from .public_errors import public_message
from .services import Services
from .video_file import FPS, StreamingMP4

TAB = "video"
MAX_FRAMES = 240
"""The length slider's end; "keep going" runs until Stop (or the pipeline's own limit)."""
EXAMPLES = ["a red circle moving left", "two blue squares moving up", "a yellow star moving right",
            "three green triangles moving down"]
NO_MODEL = ("No streaming video model here: assets/models/pocket-t2v is missing from this checkout, and the studio "
            "was started without a video pipeline in --model-dir.")


def _shown(frame: np.ndarray, side: int = 320) -> np.ndarray:
    """A small frame enlarged by whole pixels for the page (the MP4 and the style keep the model's size)."""
    k = max(1, side // max(frame.shape[:2]))
    return np.repeat(np.repeat(frame, k, axis=0), k, axis=1)


def model_choices(services: Services) -> dict[str, Path]:
    shipped = {"Pocket S2DiT (shipped)": SHIPPED_VIDEO} if is_video_folder(SHIPPED_VIDEO) else {}
    return named_folders(shipped, services.config.model_dirs, is_video_folder)


class VideoHandlers:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.choices = model_choices(services)

    def _pipe(self, name: str):
        return load_choice(self.services, self.choices, name, "t2v", load_t2v, NO_MODEL)

    def video_handler(self, prompt: str, seed: float, frames: float, keep_going: bool, model: str,
                      request: gr.Request):
        """Stream a clip; yields (latest frame, status, MP4 once finished)."""
        session = self.services.sessions.get(getattr(request, "session_hash", None))
        try:
            seed, frames = int(seed), int(frames)
            check_request(prompt, "", 4, 1.0, seed, 1)
            if not 1 <= frames <= MAX_FRAMES:
                raise ValueError(f"length must lie in 1..{MAX_FRAMES} frames, not {frames}")
        except (TypeError, ValueError) as err:
            raise gr.Error(public_message(err)) from err
        state = session.tab(TAB)
        session.last_model = model
        folder = session.new_dir("video")
        folder.mkdir(parents=True, exist_ok=True)
        mp4 = folder / "clip.mp4"

        def work(emit, should_stop):
            emit("status", "loading the model")
            pipe, lock = self._pipe(model)
            sampling = read_sampling(self.choices[model])
            steps = sampling.get("num_inference_steps", 4)
            guidance = sampling.get("guidance_scale", 1.0)
            chunks = None if keep_going else -(-frames // pipe.chunk_frames)
            made, t0 = 0, time.perf_counter()
            with lock, StreamingMP4(mp4) as writer:
                for chunk in stream_video(pipe, prompt, chunks, steps, guidance, seed):
                    chunk = chunk if keep_going else chunk[:frames - made]
                    writer.append(chunk)
                    made += len(chunk)
                    emit("frames", chunk, made, made / (time.perf_counter() - t0))
                    if should_stop():
                        break
            return made, time.perf_counter() - t0, should_stop(), steps

        job = run_job(self.services, session, "video", work)
        last, state["last_frame"] = None, None
        try:
            while True:
                event = next(job)
                if event[0] == "status":
                    yield gr.update(), f"{event[1]}...", gr.update()
                elif event[0] == "frames":
                    _, chunk, made, fps = event
                    last = chunk[-1]
                    state["last_frame"] = last
                    yield _shown(last), f"{made} frames, **{fps:.1f} frames/s** (live)", gr.update()
                elif event[0] == "waiting":
                    yield gr.update(), "waiting for a free slot (the studio is busy)...", gr.update()
        except StopIteration as done:
            made, seconds, stopped, steps = done.value
        status = (f"{'Stopped after' if stopped else 'Made'} {made} frames in {seconds:.1f} s "
                  f"({made / max(seconds, 1e-9):.1f} frames/s, {steps} steps per chunk); the MP4 plays at {FPS} fps. "
                  "Press **Use frame as style** to stylize a 3D object with the last frame.")
        yield (_shown(last) if last is not None else gr.update()), status, (str(mp4) if mp4.is_file() else None)

    def stop_handler(self, request: gr.Request):
        session = self.services.sessions.get(getattr(request, "session_hash", None))
        if not session.busy.locked():
            return "Nothing is running: there is nothing to stop."
        session.stop.set()
        return "Stopping after this chunk; the MP4 keeps what was made."

    def use_frame_handler(self, request: gr.Request):
        session = self.services.sessions.get(getattr(request, "session_hash", None))
        frame = session.tab(TAB).get("last_frame")
        if frame is None:
            raise gr.Error("no frame yet: make a video first")
        folder = session.new_dir("frame")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "frame.png"
        with atomic_open(path) as f:
            Image.fromarray(np.asarray(frame)).save(f, format="PNG")
        session.history.append(str(path))
        n = len(session.history) - 1
        return list(session.history), (f"Added the last frame as style **history:{n}**: in the 3D Stylize tab, "
                                       "click it under *Studio history* after selecting an object.")


def build(services: Services, demo: gr.Blocks, shared: dict) -> None:
    h = VideoHandlers(services)
    names = list(h.choices) or ["(none)"]
    gr.Markdown("Type what moves: frames appear while the video is being made, chunk by chunk at a constant cost, "
                "for the length you set or until you press Stop."
                + ("" if h.choices else f"\n\n**{NO_MODEL}**"))
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            prompt = gr.Textbox(label="Prompt", value=EXAMPLES[0], lines=2, max_length=2000, elem_id="t2v-prompt")
            examples = gr.Dataset(components=[gr.Textbox(visible=False)], samples=[[e] for e in EXAMPLES],
                                  label="Try one", elem_id="t2v-examples")
            with gr.Row():
                seed = gr.Number(0, precision=0, minimum=0, label="Seed", elem_id="t2v-seed")
                frames = gr.Slider(2, MAX_FRAMES, value=24, step=1, label="Length (frames)", elem_id="t2v-frames")
            keep = gr.Checkbox(False, label="Keep going until Stop", elem_id="t2v-keep")
            model = gr.Dropdown(names, value=names[0], label="Model", elem_id="t2v-model", interactive=len(names) > 1)
            with gr.Row():
                go = gr.Button("Start", variant="primary", elem_id="t2v-start", interactive=bool(h.choices))
                stop = gr.Button("Stop", variant="stop", elem_id="t2v-stop")
        with gr.Column(scale=3):
            live = gr.Image(label="Live", type="numpy", height=320, elem_id="t2v-live", format="png")
            status = gr.Markdown("", elem_id="t2v-status")
            clip = gr.Video(label="Clip (MP4)", elem_id="t2v-clip", height=240)
            use = gr.Button("Use frame as style", elem_id="t2v-use")
    examples.click(lambda i: EXAMPLES[i], examples, prompt, api_visibility="private")
    go.click(h.video_handler, [prompt, seed, frames, keep, model], [live, status, clip], api_name="video",
             concurrency_limit=services.config.concurrency, concurrency_id="generate")
    stop.click(h.stop_handler, None, status, api_name="stop_video", concurrency_id="light")
    use.click(h.use_frame_handler, None, [shared["history"], status], api_name="use_frame_as_style",
              concurrency_id="light")
