"""The export commands of ``pocket-studio``: ``export-coreml`` and ``export-coreai`` (an iOS app's
``Resources/`` folder with a manifest), written atomically: the folder appears complete or not at all."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from .cli_types import finite


def register(sub) -> None:
    for target, title in (("coreml", "Core ML packages (.mlpackage, iOS 17; fp16 or palettized)"),
                          ("coreai", "Core AI assets (.aimodel, fp16)")):
        p = sub.add_parser(f"export-{target}", help=f"export the image or video generator as {title}")
        p.set_defaults(run=_cmd_export, target=target)
        p.add_argument("--model", choices=("image", "video"), default="image", help="which generator (default image)")
        p.add_argument("--source", default=None,
                       help="a pipeline folder, or fast / quality (default: the shipped image model, or the shipped "
                            "video model)")
        p.add_argument("--width-mult", type=finite, default=1.0, help="an elastic SnapGen++ model's width (default 1)")
        if target == "coreml":
            p.add_argument("--bits", type=int, choices=(16, 8, 6, 4), default=16,
                           help="16: fp16 weights; 8 / 6 / 4: k-means palettized (default 16)")
        p.add_argument("--out", type=Path, required=True, help="output folder (gets Resources/ and a manifest)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def load_source(kind: str, source: str | None):
    """(pipeline, the folder it came from) for an export; clear errors when nothing is shipped yet."""
    from generators.pipelines.loading import load_t2i, load_t2v, resolve_model, resolve_video, shipped

    if kind == "video":
        return load_t2v(source), resolve_video(source)
    if source is None and not shipped():
        raise ValueError("no image model is shipped in this checkout yet: give --source PIPELINE_FOLDER")
    return load_t2i(source), resolve_model(source)


def export(kind: str, source: str | None, out: Path, target: str, bits: int = 16, width_mult: float = 1.0,
           overwrite: bool = False, progress=None) -> dict:
    """Load, export into a temporary sibling of ``out``, move it into place; the manifest."""
    from generators.export.package import export_pipeline
    from stylize3d.atomic import atomic_output_dir, check_parent

    check_parent(out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"{out} already exists: pass --overwrite to replace it")
    pipe, folder = load_source(kind, source)
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        return export_pipeline(pipe, kind, tmp, target=target, bits=bits, width_mult=width_mult,
                               source=str(folder), progress=progress)


def _cmd_export(args) -> int:
    os.environ.setdefault("TQDM_DISABLE", "1")  # coremltools draws a bar per pass; we print one line per part
    started = time.perf_counter()

    def progress(fraction: float, message: str) -> None:
        print(f"[{fraction:4.0%} {time.perf_counter() - started:6.0f}s] {message}", file=sys.stderr, flush=True)

    from generators.export.package import summary_rows

    manifest = export(args.model, args.source, args.out, args.target, getattr(args, "bits", 16), args.width_mult,
                      args.overwrite, progress)
    print(json.dumps({"out": str(args.out / "Resources"), "bits": manifest["bits"],
                      "total_mb": round(manifest["total_size_bytes"] / 2**20, 2),
                      "components": summary_rows(manifest), "failed": manifest["failed"]}, indent=1))
    return 1 if manifest["failed"] else 0
