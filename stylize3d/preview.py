"""What the studio shows of a scene: one view, its per-pixel objects, and a tinted overlay of them.

Kept in the engine so the UI only displays arrays; a single view's blend weights are cheap (~0.1 s) and give
both the picture and the pixel -> object map that clicks need.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
import torch

from .blend_cache import BlendCache
from .cameras import Cameras
from .gaussians import BACKGROUND_LABEL, GaussianScene
from .labels import pixel_labels


@dataclass
class ViewPreview:
    rgb: torch.Tensor  # [H, W, 3] in [0, 1]
    labels: torch.Tensor  # [H, W] long object ids
    weights: torch.Tensor  # sparse CSR [H*W, N] blend weights of this view

    @property
    def width(self) -> int:
        return self.rgb.shape[1]


@torch.no_grad()
def preview_view(scene: GaussianScene, cameras: Cameras, index: int, background: torch.Tensor) -> ViewPreview:
    if not 0 <= index < len(cameras):
        raise ValueError(f"view {index} is out of range: the scene has {len(cameras)} views")
    cache = BlendCache.build(scene, cameras[index], background)
    rgb = cache.render(0, scene.sh0, scene.shN).clamp(0, 1)
    labels = pixel_labels(cache[0].weights, scene.labels, cameras.height, cameras.width)
    return ViewPreview(rgb, labels, cache[0].weights)


def object_colors(num: int) -> np.ndarray:
    """[num, 3] uint8 well-separated hues (golden-ratio steps), one per object id."""
    out = np.zeros((max(num, 1), 3), np.uint8)
    for i in range(num):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75, 1.0)
        out[i] = (r * 255, g * 255, b * 255)
    return out


TINT = 0.25  # overlay strength of an object's colour in the view
SELECTED_TINT = TINT  # selection shows as an outline, so the legend colour still matches


def legend_colors(scene: GaussianScene) -> dict[int, tuple[int, int, int]]:
    """Object id -> the colour the object shows in the overlay (its mean colour tinted as ``overlay`` tints it),
    so a legend swatch looks like the object on screen, not like the bare tint."""
    from .sh import sh0_to_rgb

    colors = object_colors(int(scene.labels.max()) + 1).astype(np.float32) / 255
    rgb = sh0_to_rgb(scene.sh0[:, 0]).clamp(0, 1)
    out = {}
    for oid in scene.object_names:
        m = scene.labels == oid
        if oid == BACKGROUND_LABEL or not m.any():
            continue
        mean = rgb[m].mean(0).numpy()
        out[oid] = tuple(int(v * 255 + 0.5) for v in (1 - TINT) * mean + TINT * colors[oid])
    return out


def overlay(rgb: torch.Tensor, labels: torch.Tensor, selected: set[int] = frozenset(), show_all: bool = True,
            tint: float = TINT, selected_tint: float = SELECTED_TINT, highlight: np.ndarray | None = None
            ) -> np.ndarray:
    """[H, W, 3] uint8: objects lightly tinted in their colour, selected ones strongly, with a white outline.

    ``highlight`` [H, W] bool marks extra selected pixels (segments clicked on an unlabelled scene)."""
    img = rgb.clamp(0, 1).numpy().astype(np.float32)
    lab = labels.numpy()
    if highlight is not None and highlight.any():
        lab = lab.copy()
        extra = int(lab.max()) + 1
        lab[highlight] = extra
        selected = set(selected) | {extra}
    colors = object_colors(int(lab.max()) + 1).astype(np.float32) / 255
    for oid in np.unique(lab):
        if oid == BACKGROUND_LABEL:
            continue
        m = lab == oid
        a = selected_tint if oid in selected else (tint if show_all else 0.0)
        img[m] = (1 - a) * img[m] + a * colors[oid]
    if selected:
        sel = np.isin(lab, list(selected))
        edge = np.zeros_like(sel)
        edge[1:, :] |= sel[1:, :] != sel[:-1, :]
        edge[:, 1:] |= sel[:, 1:] != sel[:, :-1]
        img[edge] = 1.0
    return (img * 255 + 0.5).astype(np.uint8)
