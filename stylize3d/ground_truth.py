"""Ground-truth RGB, depth and instance masks of a Gaussian scene whose Gaussians *are* the ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .blend_cache import BlendCache
from .cameras import Cameras
from .gaussians import GaussianScene
from .labels import pixel_labels


@dataclass
class GroundTruth:
    images: list[np.ndarray]  # [H, W, 3] uint8
    masks: list[np.ndarray]  # [H, W] uint8 object ids
    depths: list[np.ndarray]  # [H, W] float32, 0 where nothing is hit


def render_ground_truth(scene: GaussianScene, cameras: Cameras, background: torch.Tensor,
                        cache: BlendCache | None = None) -> GroundTruth:
    cache = cache or BlendCache.build(scene, cameras, background)
    images, masks, depths = [], [], []
    H, W = cameras.height, cameras.width
    with torch.no_grad():
        for v in range(len(cameras)):
            rgb = cache.render(v, scene.sh0, scene.shN)
            images.append((rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy())
            masks.append(pixel_labels(cache[v].weights, scene.labels, H, W).to(torch.uint8).numpy())
            depth = torch.where(cache[v].alpha > 0.5, cache[v].depth, torch.zeros_like(cache[v].depth))
            depths.append(depth.float().numpy())
    return GroundTruth(images, masks, depths)
