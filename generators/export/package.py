"""A pipeline as an iOS app's ``Resources/`` folder: one package per component, the tokenizer files, and a
``manifest.json`` that says how to drive them (inputs, outputs, shapes, dtypes, scheduler timesteps, guidance,
bits, sizes and the checks that were run). Core ML (``.mlpackage``) or Core AI (``.aimodel``).

The caller hands in an empty folder; the app's front ends make the write atomic around it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

from .components import Component, image_components, video_components

FILE_NAMES = {"text_encoder": "TextEncoder", "denoiser": "Denoiser", "decoder": "VAEDecoder"}
MANIFEST_FORMAT = "pocket-studio-export/1"
Progress = Callable[[float, str], None]


def components_for(pipe, kind: str, width_mult: float = 1.0) -> list[Component]:
    from ..pipelines.base import PocketPipeline
    from ..pipelines.text_to_video import PocketTextToVideoPipeline

    if not isinstance(pipe, PocketPipeline):
        raise ValueError(f"export covers the project's own pipelines (SnapGen, SnapGen++, S2DiT), not a "
                         f"{type(pipe).__name__}")
    is_video = isinstance(pipe, PocketTextToVideoPipeline)
    if kind not in ("image", "video"):
        raise ValueError(f"--model {kind!r}: image or video")
    if (kind == "video") != is_video:
        raise ValueError(f"--model {kind}: the source is a {type(pipe).__name__}")
    if kind == "video":
        if width_mult != 1.0:
            raise ValueError("--width-mult: the video model has one width")
        return video_components(pipe)
    guidance = getattr(pipe, "sampling_defaults", {}).get("guidance_scale", 4.0)
    return image_components(pipe, width_mult, guidance)


def sampling_manifest(pipe, kind: str) -> dict:
    """What the app's loop needs: Euler steps x <- x + (sigma_next - sigma) * velocity on these sigmas, the
    denoiser's ``timestep`` input = sigma * num_train_timesteps, guidance u + g (c - u) on a batch of 2."""
    defaults = getattr(pipe, "sampling_defaults", {})
    steps = int(defaults.get("num_inference_steps", 4 if kind == "video" else 20))
    guidance = float(defaults.get("guidance_scale", 1.0 if kind == "video" else 4.0))
    sched = pipe.scheduler
    sched.set_timesteps(steps)
    out = {"scheduler": type(sched).__name__, "shift": float(sched.config.shift),
           "num_train_timesteps": int(sched.config.num_train_timesteps), "num_inference_steps": steps,
           "timesteps": [round(float(t), 4) for t in sched.timesteps],
           "sigmas": [round(float(s), 6) for s in sched.sigmas], "guidance_scale": guidance,
           "denoiser_batch": 2 if guidance > 1.0 else 1, "update": "latents += (sigma_next - sigma) * velocity"}
    if kind == "video":
        out["stream"] = ("per chunk: latents ~ N(0, 1); for each timestep call Denoiser with the current caches; "
                         "then call it once with timestep 0 on the finished chunk and keep the new_* caches it "
                         "returns; time_cos/time_sin = cos/sin(frames_so_far * rope_time_frequencies); a new "
                         "stream starts from all-zero caches")
    return out


def tokenizer_manifest(pipe, folder: Path) -> dict:
    from ..text_encoder import MAX_PROMPT_TOKENS

    pipe.tokenizer.save_pretrained(folder)
    return {"folder": folder.name, "files": sorted(p.name for p in folder.iterdir()),
            "max_length": MAX_PROMPT_TOKENS, "padding": "max_length", "pad_token_id": int(pipe.tokenizer.pad_token_id or 0),
            "class": type(pipe.tokenizer).__name__}


def export_pipeline(pipe, kind: str, out: Path, target: str = "coreml", bits: int = 16, width_mult: float = 1.0,
                    source: str = "", progress: Progress | None = None) -> dict:
    """Write ``out/Resources`` for ``pipe`` and return the manifest (also written as ``manifest.json``)."""
    from .checks import reauthoring_psnr

    if target not in ("coreml", "coreai"):
        raise ValueError(f"target {target!r}: coreml or coreai")
    if bits not in (16, 8, 6, 4):
        raise ValueError(f"--bits {bits}: 16, 8, 6 or 4")
    if target == "coreai" and bits != 16:
        raise ValueError("--bits: the Core AI export writes fp16 (palettization is Core ML's)")
    if target == "coreai":
        import importlib.util

        if importlib.util.find_spec("coreai_torch") is None:
            raise ValueError("Core AI export needs coreai-torch 0.4.3 and coreai-core (CPython 3.11 wheels): "
                             "pip install coreai-torch==0.4.3")
    progress = progress or (lambda f, msg: None)
    resources = Path(out) / "Resources"
    resources.mkdir(parents=True, exist_ok=True)
    comps = components_for(pipe, kind, width_mult)
    entries, started = {}, time.perf_counter()
    for i, comp in enumerate(comps):
        progress(i / len(comps), f"{comp.name}: exporting ({i + 1}/{len(comps)})")
        t0 = time.perf_counter()
        checks = {"reauthored_vs_original_psnr_db": _round(reauthoring_psnr(comp))}
        try:
            if target == "coreml":
                from .coreml import write_coreml

                entry = write_coreml(comp, resources / f"{FILE_NAMES[comp.name]}.mlpackage", bits, checks)
            else:
                from .coreai import write_coreai

                entry = write_coreai(comp, resources / f"{FILE_NAMES[comp.name]}.aimodel", checks)
        except CONVERSION_ERRORS as err:  # keep what converts; say what did not, and which op
            entry = {"converted": False, "error": _first_line(err), "failing_op": failing_op(err)}
            progress((i + 1) / len(comps), f"{comp.name}: did not convert ({entry['failing_op'] or 'see manifest'})")
        entry.update({"checks": checks, "notes": comp.notes, "seconds": round(time.perf_counter() - t0, 1)})
        entries[comp.name] = entry
    progress(0.97, "tokenizer and manifest")
    manifest = {
        "format": MANIFEST_FORMAT, "target": target, "model": kind, "source": source,
        "pipeline": type(pipe).__name__, "denoiser_class": type(pipe.denoiser).__name__,
        "bits": bits, "width_mult": width_mult,
        "deployment_target": "iOS17" if target == "coreml" else "iOS27 (Core AI)",
        "tokenizer": tokenizer_manifest(pipe, resources / "tokenizer"),
        "sampling": sampling_manifest(pipe, kind), "components": entries,
        "total_size_bytes": sum(e.get("size_bytes", 0) for e in entries.values()),
        "failed": [name for name, e in entries.items() if e.get("converted") is False],
        "seconds": round(time.perf_counter() - started, 1),
    }
    if kind == "image":
        manifest["image_size"] = int(pipe.image_size)
    else:
        h, w = pipe.frame_size()
        manifest["frame_size"] = [h, w]
    (resources / "manifest.json").write_text(json.dumps(manifest, indent=1, allow_nan=False))
    progress(1.0, "done")
    return manifest


SUMMARY_COLUMNS = ["part", "file", "MB", "re-authored dB", "palettized dB", "ops"]
"""re-authored dB: PSNR of the Neural-Engine model against the original; palettized dB: of the decompressed
palettized weights against fp16 weights (both in torch, on the same inputs)."""


def summary_rows(manifest: dict) -> list[list]:
    """One row of text per component (:data:`SUMMARY_COLUMNS`), or why it did not convert."""
    rows = []
    for name, e in manifest["components"].items():
        checks = e.get("checks", {})
        if e.get("converted") is False:
            rows.append([name, "-", "-", "-", "-", f"did not convert: {e.get('failing_op') or e.get('error')}"])
            continue
        db = [checks.get("reauthored_vs_original_psnr_db"), checks.get("palettized_vs_fp16_psnr_db")]
        rows.append([name, e["file"], f"{e['size_bytes'] / 2**20:.2f}", *("-" if v is None else f"{v:.1f}" for v in db),
                     str(sum(e["ops"].values()))])
    return rows


CONVERSION_ERRORS = (NotImplementedError, ValueError, RuntimeError, TypeError, AssertionError, KeyError)
_OP_PATTERNS = (r"Unsupported fx node \S+, kind (\S+)", r"converting '([^']+)' op", r"(aten\.[\w.]+)",
                r"op[ \"']+(\w+)[\"']? (?:is )?not (?:supported|implemented)", r"`(\w+)` op")


def failing_op(err: BaseException) -> str | None:
    """The op a converter names in its error, when it names one."""
    text = f"{err}"
    for pattern in _OP_PATTERNS:
        found = re.search(pattern, text)
        if found:
            return found.group(1).rstrip(".")
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:400] if text else ''}"


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 2)
