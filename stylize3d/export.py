"""Writing a stylization's results: per-view PNGs, a before/after grid, an orbit video, the stylized ``.ply``
and a JSON manifest. Everything goes into a temp folder that is renamed into place only when complete."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from .images import save_png, to_uint8
from .ply import write_ply

logger = logging.getLogger(__name__)


def grid_image(rows: list[list[torch.Tensor]], pad: int = 4) -> np.ndarray:
    """Tile rows of [H, W, 3] images (same size) into one uint8 image with white gutters."""
    h, w = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y:y + h, x:x + w] = to_uint8(img)
    return out


def pick_views(num_views: int, count: int) -> list[int]:
    """``count`` views spread evenly around the orbit."""
    count = min(count, num_views)
    return [int(math.floor(i * num_views / count)) for i in range(count)]


def write_video(path: Path, frames: list[torch.Tensor], fps: int = 12) -> None:
    """H.264 MP4 (even sizes padded) through imageio-ffmpeg's bundled ffmpeg."""
    import imageio.v2 as imageio

    arrs = [to_uint8(f) for f in frames]
    h, w = arrs[0].shape[:2]
    ph, pw = h + h % 2, w + w % 2
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=8, macro_block_size=1,
                            ffmpeg_log_level="error", output_params=["-pix_fmt", "yuv420p"]) as writer:
        for a in arrs:
            if (ph, pw) != (h, w):
                a = np.pad(a, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
            writer.append_data(a)


def write_renders(out: Path, after: list[torch.Tensor]) -> None:
    (out / "renders").mkdir(parents=True, exist_ok=True)
    for v, img in enumerate(after):
        save_png(out / "renders" / f"view_{v:03d}.png", img)


def write_grid(out: Path, before: list[torch.Tensor], after: list[torch.Tensor], count: int = 6) -> None:
    views = pick_views(len(after), count)
    save_png(out / "grid.png", grid_image([[before[v] for v in views], [after[v] for v in views]]))


def write_manifest(out: Path, manifest: dict) -> None:
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, allow_nan=False, default=_json_default))


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"manifest: cannot serialise {type(obj).__name__}")


def write_scene(out: Path, scene) -> None:
    write_ply(out / "stylized.ply", scene)
