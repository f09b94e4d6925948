"""Finding and loading a text-to-image backend: the shipped default, or any local diffusers pipeline folder.

Nothing here downloads: folders are read with ``local_files_only``. A folder that is not a pipeline, or whose
weights do not fit their config or hold NaNs, is a ``ValueError`` naming the folder and the part.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .text_to_image import PocketTextToImagePipeline, check_prompt
from .text_to_video import PocketTextToVideoPipeline

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {"Fast": ROOT / "assets" / "models" / "pocket-t2i-fast", "Quality": ROOT / "assets" / "models" / "pocket-t2i"}
"""The shipped models by name (trained here; model cards beside them): the few-step distilled student first."""
SHIPPED_VIDEO = ROOT / "assets" / "models" / "pocket-t2v"
"""The shipped streaming video model (4-step causal student)."""
DEFAULT_T2I = SHIPPED["Quality"]
"""The trained teacher, which the student is distilled from."""


def pipeline_class(folder: str | Path) -> str | None:
    """The ``_class_name`` a pipeline folder's ``model_index.json`` names (None when unreadable)."""
    try:
        return json.loads((Path(folder) / "model_index.json").read_text()).get("_class_name")
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return None


def is_video_folder(folder: str | Path) -> bool:
    return pipeline_class(folder) == PocketTextToVideoPipeline.__name__


def shipped() -> dict[str, Path]:
    """The shipped models this checkout has, by name."""
    return {name: path for name, path in SHIPPED.items() if (path / "model_index.json").is_file()}


def resolve_model(folder: str | Path | None) -> Path:
    """None -> the default (Fast when shipped, else Quality); ``fast`` / ``quality`` -> that shipped model
    (unless a folder of that name exists); anything else is a folder."""
    if folder is None:
        return next(iter(shipped().values()), DEFAULT_T2I)
    named = {k.lower(): v for k, v in SHIPPED.items()}
    if str(folder).lower() in named and not Path(folder).is_dir():
        return named[str(folder).lower()]
    return Path(folder)

MAX_STEPS, MAX_GUIDANCE, MAX_IMAGES = 100, 20.0, 16


def _check_finite(pipe, folder: Path) -> None:
    for name, module in pipe.components.items():
        if isinstance(module, torch.nn.Module):
            for pname, p in module.named_parameters():
                if not torch.isfinite(p).all():
                    raise ValueError(f"{folder}: {name} weight {pname} holds NaN or infinite values (a broken checkpoint)")


def load_t2i(folder: str | Path | None = None, device: str = "cpu"):
    """A pipeline from a local folder (ours or any diffusers text-to-image pipeline); the default when None."""
    return load_pipeline(resolve_model(folder), device)


def resolve_video(folder: str | Path | None) -> Path:
    return Path(folder) if folder is not None else SHIPPED_VIDEO


def load_t2v(folder: str | Path | None = None, device: str = "cpu"):
    """Our streaming video pipeline from a local folder; the shipped one when None."""
    if folder is None and not (SHIPPED_VIDEO / "model_index.json").is_file():
        raise ValueError(f"no streaming video model is shipped in {SHIPPED_VIDEO} yet: name a pipeline folder")
    folder = resolve_video(folder)
    pipe = load_pipeline(folder, device)
    if not isinstance(pipe, PocketTextToVideoPipeline):
        raise ValueError(f"{folder}: a {type(pipe).__name__}, not a streaming video pipeline")
    return pipe


def load_pipeline(folder: Path, device: str = "cpu"):
    """Any local diffusers pipeline folder, ours by class name; named errors for what is not one."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # loading bars: noise next to the generation's own progress
    transformers_logging.disable_progress_bar()
    folder = Path(folder)
    index = folder / "model_index.json"
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such model folder")
    if not index.is_file():
        raise ValueError(f"{folder}: not a diffusers pipeline folder (no model_index.json)")
    try:
        class_name = json.loads(index.read_text()).get("_class_name")
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{index}: not valid JSON ({err})") from None
    try:
        ours = {c.__name__: c for c in (PocketTextToImagePipeline, PocketTextToVideoPipeline)}
        if class_name in ours:
            pipe = ours[class_name].from_pretrained(folder, local_files_only=True)
        else:
            from diffusers import DiffusionPipeline

            pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True)
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, EnvironmentError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{folder}: could not load the pipeline: {first[:300]}") from None
    _check_finite(pipe, folder)
    pipe.set_progress_bar_config(disable=True)
    pipe.sampling_defaults = read_sampling(folder)
    return pipe.to(device)


def read_sampling(folder: Path) -> dict:
    """``sampling.json`` beside a pipeline (a distilled student writes its step count and guidance there)."""
    path = Path(folder) / "sampling.json"
    if not path.is_file():
        return {}
    try:
        found = json.loads(path.read_text())
        steps, guidance = found.get("num_inference_steps"), found.get("guidance_scale")
        check_request("x", "", steps, guidance)
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a valid sampling file ({err})") from None
    return {k: v for k, v in (("num_inference_steps", steps), ("guidance_scale", guidance)) if v is not None}


def describe(pipe, folder: str | Path | None = None) -> str:
    folder = resolve_model(folder)
    denoiser = getattr(pipe, "denoiser", None) or getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    params = sum(p.numel() for p in denoiser.parameters()) / 1e6 if denoiser is not None else float("nan")
    return f"{folder.name} ({type(pipe).__name__}, {type(denoiser).__name__} {params:.1f}M)"


def widths(pipe) -> tuple[float, ...]:
    return getattr(pipe, "widths", (1.0,))


def folder_widths(folder: str | Path | None = None) -> tuple[float, ...]:
    """The elastic widths a pipeline folder's denoiser runs at, read from its config without loading weights."""
    config = resolve_model(folder) / "denoiser" / "config.json"
    try:
        found = json.loads(config.read_text()).get("widths") or (1.0,)
        return tuple(sorted(float(w) for w in found))
    except (OSError, ValueError, TypeError):
        return (1.0,)


def check_request(prompt, negative_prompt: str = "", steps: int | None = 20, guidance: float | None = 4.0,
                  seed: int = 0, n: int = 1) -> None:
    """Everything about a request that can be judged before a model is loaded (None: the model's default)."""
    check_prompt(prompt)
    check_prompt(negative_prompt, "negative_prompt", allow_empty=True)
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS):
        raise ValueError(f"steps must be a whole number in 1..{MAX_STEPS}, not {steps!r}")
    if guidance is not None and (not isinstance(guidance, (int, float)) or not 0 <= float(guidance) <= MAX_GUIDANCE):
        raise ValueError(f"guidance must be a number in [0, {MAX_GUIDANCE:g}], not {guidance!r}")
    if not isinstance(n, int) or not 1 <= n <= MAX_IMAGES:
        raise ValueError(f"number of images must lie in 1..{MAX_IMAGES}, not {n!r}")
    if not isinstance(seed, int) or not 0 <= seed < 2 ** 63:
        raise ValueError(f"seed must be a whole number in [0, 2^63), not {seed!r}")


def generate(pipe, prompt: str, negative_prompt: str = "", steps: int | None = None, guidance: float | None = None,
             seed: int = 0, n: int = 1, width_mult: float = 1.0, on_step=None) -> tuple[list, dict]:
    """(PIL images, what ran) for one prompt with any backend; ``on_step(i, total)`` after each step and may
    raise to cancel. Defaults: the folder's ``sampling.json``, else 20 steps and guidance 4 for ours, 4 and 0
    otherwise."""
    ours = isinstance(pipe, PocketTextToImagePipeline)
    defaults = getattr(pipe, "sampling_defaults", None) or {}
    steps = steps if steps is not None else defaults.get("num_inference_steps", 20 if ours else 4)
    guidance = guidance if guidance is not None else defaults.get("guidance_scale", 4.0 if ours else 0.0)
    check_request(prompt, negative_prompt, steps, guidance, seed, n)
    if width_mult not in widths(pipe):
        raise ValueError(f"width {width_mult:g}x: this model runs at {', '.join(f'{w:g}x' for w in widths(pipe))}")

    def callback(p, i, t, kw):
        if on_step is not None:
            on_step(i + 1, steps)
        return {}

    kwargs = dict(prompt=prompt, num_inference_steps=steps, guidance_scale=float(guidance),
                  num_images_per_prompt=n, generator=torch.Generator().manual_seed(seed),
                  callback_on_step_end=callback)
    if negative_prompt and (ours or guidance > 1):
        kwargs["negative_prompt"] = negative_prompt
    if ours:
        kwargs["width_mult"] = width_mult
    t0 = time.perf_counter()
    images = pipe(**kwargs).images
    return images, {"steps": steps, "guidance": float(guidance), "seed": seed, "width_mult": width_mult,
                    "seconds": round(time.perf_counter() - t0, 2)}


def stream_video(pipe, prompt: str, chunks: int | None, steps: int, guidance: float, seed: int = 0):
    """The pipeline's chunk stream for one prompt and seed (``chunks=None``: until the caller stops)."""
    check_request(prompt, "", steps, guidance, seed, 1)
    return pipe.stream(prompt, chunks, steps, float(guidance), generator=torch.Generator().manual_seed(seed))
