"""Numbers that say whether stylization worked: leakage, multi-view consistency, style distance.

Consistency warps with the scene's own depth and poses instead of optical flow (the Gaussians of the built-in
scene are its ground truth, so their rendered depth is the true depth).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .blend_cache import BlendCache
from .cameras import Cameras, unproject_depth
from .labels import selection_coverage
from .losses import gram_distance, nnfm_distance

PSNR_CAP_DB = 100.0  # reported when the compared pixels are bitwise identical (the true value is infinite)


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB for images in [0, 1]; capped at ``PSNR_CAP_DB`` (identical images)."""
    return PSNR_CAP_DB if mse == 0.0 else min(PSNR_CAP_DB, 10 * math.log10(1.0 / mse))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1]; capped at ``PSNR_CAP_DB`` for identical inputs."""
    return psnr_from_mse(float(((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean()) if a.numel() else 0.0)


@torch.no_grad()
def leakage(cache: BlendCache, before: list[torch.Tensor], after: list[torch.Tensor],
            selected: torch.Tensor) -> dict[str, float]:
    """PSNR and max difference, after vs before, over the pixels the selected Gaussians do not touch."""
    a, b = [], []
    for v in range(len(cache)):
        untouched = selection_coverage(cache[v].weights, selected) <= 0  # [HW]
        a.append(after[v].reshape(-1, 3)[untouched])
        b.append(before[v].reshape(-1, 3)[untouched])
    a, b = torch.cat(a), torch.cat(b)
    return {
        "leakage_psnr_db": psnr(a, b),
        "leakage_max_abs_diff": float((a.clamp(0, 1) - b.clamp(0, 1)).abs().max()) if a.numel() else 0.0,
        "leakage_pixels": int(a.shape[0]),
    }


def warp_error(renders: list[torch.Tensor], depths: list[torch.Tensor], alphas: list[torch.Tensor],
               cameras: Cameras, gap: int, region: list[torch.Tensor] | None = None,
               depth_tol: float = 0.03) -> float:
    """RMSE between view t and view t-gap warped into t, over pixels visible in both.

    renders [H,W,3], depths [H,W] (z-depth), alphas [H,W]; ``region`` optionally restricts to [H,W] bool masks
    of view t (e.g. the stylized objects).
    """
    H, W = cameras.height, cameras.width
    c2ws = cameras.camtoworlds
    sq, count = 0.0, 0
    for t in range(gap, len(cameras)):
        s = t - gap
        valid = alphas[t] > 0.5
        if region is not None:
            valid &= region[t]
        pts = unproject_depth(depths[t], cameras.Ks[t], c2ws[t])  # [H, W, 3]
        cam = pts @ cameras.viewmats[s][:3, :3].T + cameras.viewmats[s][:3, 3]
        z = cam[..., 2]
        K = cameras.Ks[s]
        u = K[0, 0] * cam[..., 0] / z.clamp_min(1e-6) + K[0, 2]
        v = K[1, 1] * cam[..., 1] / z.clamp_min(1e-6) + K[1, 2]
        grid = torch.stack([u / W * 2 - 1, v / H * 2 - 1], -1)[None]  # [1, H, W, 2]
        src = F.grid_sample(renders[s].permute(2, 0, 1)[None], grid, align_corners=False)[0].permute(1, 2, 0)
        src_depth = F.grid_sample(depths[s][None, None], grid, mode="nearest", align_corners=False)[0, 0]
        src_alpha = F.grid_sample(alphas[s][None, None], grid, mode="nearest", align_corners=False)[0, 0]
        valid &= (z > 0) & (grid[0].abs() < 1).all(-1) & (src_alpha > 0.5)
        valid &= (src_depth - z).abs() <= depth_tol * z  # occlusion test
        diff = (src - renders[t]).clamp(-1, 1)[valid]
        sq += float((diff**2).sum())
        count += int(valid.sum()) * 3
    return math.sqrt(sq / count) if count else float("nan")


@torch.no_grad()
def style_distances(backbone, renders: list[torch.Tensor], coverages: list[torch.Tensor],
                    style_feats: torch.Tensor) -> dict[str, float]:
    """NNFM and Gram distance of an object's rendered features to its style features [C, M].

    renders [H,W,3] and coverages [H,W] (the object's blend weight) of several views, judged together.
    """
    imgs = torch.stack(renders).permute(0, 3, 1, 2)  # [V, 3, H, W]
    masks = torch.stack(coverages)[:, None].float()  # [V, 1, H, W]
    feats = backbone(imgs)
    return {
        "nnfm": nnfm_distance(feats, style_feats, masks),
        "gram": gram_distance(feats, style_feats, mask_a=masks),
    }
