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
OWN_PIXEL = 0.5  # a pixel is an object's when its Gaussians give at least this share of the pixel's colour


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB for images in [0, 1]; capped at ``PSNR_CAP_DB`` (identical images)."""
    return PSNR_CAP_DB if mse == 0.0 else min(PSNR_CAP_DB, 10 * math.log10(1.0 / mse))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """PSNR in dB of images in [0, 1]; capped at ``PSNR_CAP_DB`` for identical inputs; None for no pixels."""
    if a.numel() == 0:
        return None
    return psnr_from_mse(float(((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean()))


def own_pixels(cache: BlendCache, view: int, selected: torch.Tensor) -> torch.Tensor:
    """[H*W] bool: pixels where the selected Gaussians are what you see (``OWN_PIXEL`` of the colour or more)."""
    return selection_coverage(cache[view].weights, selected) >= OWN_PIXEL


@torch.no_grad()
def leakage(cache: BlendCache, before: list[torch.Tensor], after: list[torch.Tensor],
            selected: torch.Tensor) -> dict:
    """After vs before outside the selection, in two regions:

    - ``leakage_*``: every pixel that is not the selection's own (``own_pixels``), so a selected Gaussian's
      halo over the floor counts as leakage;
    - ``untouched_*``: pixels no selected Gaussian reaches at all, where an appearance-only edit must be exact.

    Values over an empty region are None; ``unmeasured`` says why, ``pixels`` how many pixels each used.
    """
    a, b, ua, ub = [], [], [], []
    for v in range(len(cache)):
        cov = selection_coverage(cache[v].weights, selected)  # [HW]
        leak, untouched = cov < OWN_PIXEL, cov <= 0
        flat_a, flat_b = after[v].reshape(-1, 3), before[v].reshape(-1, 3)
        a.append(flat_a[leak]), b.append(flat_b[leak]), ua.append(flat_a[untouched]), ub.append(flat_b[untouched])
    out: dict = {"pixels": {}, "unmeasured": {}}
    for tag, x, y in (("leakage", torch.cat(a), torch.cat(b)), ("untouched", torch.cat(ua), torch.cat(ub))):
        n = int(x.shape[0])
        out["pixels"][tag] = n
        out[f"{tag}_psnr_db"] = psnr(x, y)
        out[f"{tag}_max_abs_diff"] = float((x.clamp(0, 1) - y.clamp(0, 1)).abs().max()) if n else None
        if not n:
            out["unmeasured"][f"{tag}_psnr_db"] = out["unmeasured"][f"{tag}_max_abs_diff"] = (
                f"no {'pixel outside the selection' if tag == 'leakage' else 'pixel the selection does not reach'}"
                " in any view")
    out["leakage_pixels"] = out["pixels"]["leakage"]
    return out


def warp_error(renders: list[torch.Tensor], depths: list[torch.Tensor], alphas: list[torch.Tensor],
               cameras: Cameras, gap: int, region: list[torch.Tensor] | None = None,
               depth_tol: float = 0.03) -> tuple[float | None, int]:
    """(RMSE, pixels) between view t and view t-gap warped into t, over pixels visible in both.

    renders [H,W,3], depths [H,W] (z-depth), alphas [H,W]; ``region`` optionally restricts to [H,W] bool masks
    of view t (e.g. the stylized objects). The RMSE is None when no pixel could be compared.
    """
    H, W = cameras.height, cameras.width
    c2ws = cameras.camtoworlds
    sq, count = 0.0, 0
    for t in range(gap, len(cameras)):
        s = t - gap
        valid = alphas[t] > 0.5
        if region is not None:
            valid &= region[t]
        if not valid.any():
            continue
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
        count += int(valid.sum())
    return (math.sqrt(sq / (3 * count)) if count else None), count


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
