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


# a quarter turn about +x: z-up (ours, nerfstudio's) -> y-down (OpenCV / COLMAP, what 3DGS viewers such as
# gsplat.js expect): (x, y, z) -> (x, -z, y)
_Z_UP_TO_Y_DOWN = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
_Z_UP_TO_Y_DOWN_QUAT = torch.tensor([math.sqrt(0.5), math.sqrt(0.5), 0.0, 0.0])  # wxyz of the same rotation
VIEWER_RADIUS = 1.3  # gsplat.js (Gradio's Model3D) orbits the origin at distance 5 and ignores camera_position


def _quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of wxyz quaternions (broadcasting)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def viewer_scene(scene, radius: float = VIEWER_RADIUS):
    """A copy of ``scene`` for a web viewer: turned y-down, centred on its opaque Gaussians and scaled to
    ``radius``, so the viewer's default orbit looks at the objects from outside with the ground level. Higher SH
    bands are dropped (a rotated scene would need them rotated too): the preview shows the view-independent
    colour; the exported ``stylized.ply`` is untouched."""
    out = scene.clone()
    means = scene.means @ _Z_UP_TO_Y_DOWN.T
    solid = torch.sigmoid(scene.opacities) > 0.5
    core = means[solid] if int(solid.sum()) >= 16 else means
    lo, hi = torch.quantile(core, 0.02, dim=0), torch.quantile(core, 0.98, dim=0)
    k = radius / max(float((hi - lo).norm() / 2), 1e-6)
    out.means = (means - (lo + hi) / 2) * k
    out.scales = scene.scales + math.log(k)
    out.quats = _quat_mul(_Z_UP_TO_Y_DOWN_QUAT, torch.nn.functional.normalize(scene.quats, dim=-1))
    out.shN = torch.zeros_like(scene.shN)
    return out


def write_viewer_ply(src: Path, dst: Path) -> Path:
    """``viewer_scene`` of the ``.ply`` at ``src`` written (atomically) to ``dst``."""
    from .ply import read_ply

    write_ply(dst, viewer_scene(read_ply(src)))
    return Path(dst)
