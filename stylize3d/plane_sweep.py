"""Depth from images alone by plane-sweep stereo, to seed a reconstruction that has neither depth nor points.

For a reference view, fronto-parallel planes at inverse-uniform depths are swept through the scene; each pixel
is warped into the nearest few views at every depth, the colour difference is box-filtered over a small patch,
and the best two neighbours' costs (the others may be occluded) pick the depth. A pixel keeps its depth only if
the match is good, distinct (its cost well below the median over depths) and the pixel is not the background
colour (flat white sky matches everywhere). Unknown depth is 0, as in nerfstudio's depth maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .cameras import Cameras, unproject_depth


def neighbour_views(cameras: Cameras, ref: int, count: int, candidates: list[int]) -> list[int]:
    """The ``count`` candidate views closest to ``ref`` by camera centre, ``ref`` itself excluded."""
    others = [c for c in candidates if c != ref]
    d = (cameras.centers[others] - cameras.centers[ref]).norm(dim=1)
    return [others[i] for i in d.argsort()[:count].tolist()]


@torch.no_grad()
def sweep_depth(images: list[torch.Tensor], cameras: Cameras, ref: int, neighbours: list[int], near: float,
                far: float, planes: int = 96, patch: int = 5, max_cost: float = 0.05,
                distinct: float = 0.5, background: torch.Tensor | None = None) -> torch.Tensor:
    """[H, W] z-depth of view ``ref`` (0 where unknown) from photo-consistency with ``neighbours``."""
    H, W = cameras.height, cameras.width
    ref_img = images[ref].permute(2, 0, 1)[None]  # [1, 3, H, W]
    c2w = cameras.camtoworlds[ref]
    inv = torch.linspace(1.0 / near, 1.0 / far, planes)
    costs = torch.empty(planes, H, W)
    for i, d in enumerate((1.0 / inv).tolist()):
        pts = unproject_depth(torch.full((H, W), d), cameras.Ks[ref], c2w)  # [H, W, 3]
        per_view = []
        for n in neighbours:
            cam = pts @ cameras.viewmats[n][:3, :3].T + cameras.viewmats[n][:3, 3]
            z = cam[..., 2].clamp_min(1e-6)
            K = cameras.Ks[n]
            u, v = K[0, 0] * cam[..., 0] / z + K[0, 2], K[1, 1] * cam[..., 1] / z + K[1, 2]
            grid = torch.stack([u / W * 2 - 1, v / H * 2 - 1], -1)[None]
            warped = F.grid_sample(images[n].permute(2, 0, 1)[None], grid, align_corners=False)
            diff = (warped - ref_img).abs().mean(1, keepdim=True)  # [1, 1, H, W]
            diff = F.avg_pool2d(diff, patch, stride=1, padding=patch // 2, count_include_pad=False)[0, 0]
            outside = (grid[0].abs() > 1).any(-1) | (cam[..., 2] <= 0)
            per_view.append(diff.masked_fill(outside, 1.0))
        stacked = torch.stack(per_view)  # [V, H, W]
        best = stacked.topk(min(2, len(neighbours)), dim=0, largest=False).values
        costs[i] = best.mean(0)
    best_cost, idx = costs.min(0)
    depth = (1.0 / inv)[idx]
    keep = (best_cost < max_cost) & (best_cost < distinct * costs.median(0).values)
    keep &= (idx > 0) & (idx < planes - 1)  # a minimum at the end of the range is no minimum
    if background is not None:
        keep &= (images[ref] - background.to(images[ref])).abs().amax(-1) > 0.04
    return torch.where(keep, depth, torch.zeros(()))
