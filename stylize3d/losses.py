"""Style losses of ARF (arXiv 2206.06360): nearest-neighbour feature matching (NNFM), content and TV terms,
plus Gram statistics for metrics.

Shapes: render features ``[B, C, h, w]``; a style feature bank ``[C, M]`` (the features of one or several style
images, flattened and concatenated: several style images for one object are simply pooled). An optional mask
``[B, 1, H, W]`` (any resolution; area-downsampled to the feature grid) restricts the loss to one object.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

EPS = 1e-8
CHUNK_ELEMENTS = 1 << 22  # similarity entries computed at once (16 MiB in float32)


def style_feature_bank(style_feats: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Flatten and concatenate style features (each ``[B, C, h, w]``, ``[C, h, w]`` or ``[C, M]``) -> ``[C, M]``."""
    if isinstance(style_feats, torch.Tensor):
        style_feats = [style_feats]
    if len(style_feats) == 0:
        raise ValueError("style_feats must hold at least one feature tensor")
    bank = []
    for f in style_feats:
        if f.ndim == 4:
            f = f.permute(1, 0, 2, 3).flatten(1)  # [C, B*h*w]
        elif f.ndim == 3:
            f = f.flatten(1)
        elif f.ndim != 2:
            raise ValueError(
                f"style features must be [B, C, h, w], [C, h, w] or [C, M], got {tuple(f.shape)}"
            )
        bank.append(f)
    channels = {f.shape[0] for f in bank}
    if len(channels) != 1:
        raise ValueError(f"style features disagree on the channel count: {sorted(channels)}")
    return torch.cat(bank, dim=1)


def mask_weights(mask: torch.Tensor | None, feats: torch.Tensor) -> torch.Tensor | None:
    """Mask ``[B, 1, H, W]`` (or ``[B, H, W]``) -> per-feature weights ``[B, 1, h, w]`` on the feature grid.

    Area averaging keeps the fraction of each feature cell that lies on the object, so cells on the boundary
    count partially and cells wholly outside count zero.
    """
    if mask is None:
        return None
    if mask.ndim == 3:
        mask = mask[:, None]
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] != feats.shape[0]:
        raise ValueError(f"mask must be [B, 1, H, W] with B={feats.shape[0]}, got {tuple(mask.shape)}")
    mask = mask.to(feats.dtype)
    if mask.shape[-2:] != feats.shape[-2:]:
        mask = F.adaptive_avg_pool2d(mask, feats.shape[-2:])
    return mask.detach()


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values [B, h, w]`` under ``weights [B, 1, h, w]``; 0 (with a graph) when the mask is empty."""
    if weights is None:
        return values.mean()
    w = weights[:, 0].expand_as(values)
    total = w.sum()
    if total <= 0:
        return (values * 0.0).sum()
    return (values * w).sum() / total


@torch.no_grad()
def nearest_neighbours(
    queries: torch.Tensor, bank: torch.Tensor, chunk: int = CHUNK_ELEMENTS
) -> torch.Tensor:
    """Index into ``bank [C, M]`` of the highest-cosine entry for each query ``[N, C]`` -> ``[N]``.

    Chunked over both queries and bank so that memory stays ~``chunk`` floats whatever N and M are.
    """
    q = F.normalize(queries, dim=1, eps=EPS)  # [N, C]
    b = F.normalize(bank, dim=0, eps=EPS)  # [C, M]
    n, m = q.shape[0], b.shape[1]
    m_step = max(1, min(m, chunk))
    n_step = max(1, chunk // m_step)
    best = torch.empty(n, dtype=torch.long, device=q.device)
    for i in range(0, n, n_step):
        qi = q[i : i + n_step]
        best_val = torch.full((qi.shape[0],), -float("inf"), device=q.device, dtype=q.dtype)
        best_idx = torch.zeros(qi.shape[0], dtype=torch.long, device=q.device)
        for j in range(0, m, m_step):
            val, idx = (qi @ b[:, j : j + m_step]).max(dim=1)
            better = val > best_val
            best_val = torch.where(better, val, best_val)
            best_idx = torch.where(better, idx + j, best_idx)
        best[i : i + n_step] = best_idx
    return best


def nnfm_loss(
    render_feats: torch.Tensor,
    style_feats: torch.Tensor | Sequence[torch.Tensor],
    mask: torch.Tensor | None = None,
    chunk: int = CHUNK_ELEMENTS,
) -> torch.Tensor:
    """ARF's NNFM: mean over (masked) render features of 1 - cosine to their nearest style feature.

    The nearest neighbour is searched without gradient (as in ARF); the gradient pulls each render feature
    towards its match. ``style_feats``: a bank ``[C, M]`` or feature maps (see ``style_feature_bank``).
    """
    if render_feats.ndim != 4:
        raise ValueError(f"render_feats must be [B, C, h, w], got {tuple(render_feats.shape)}")
    bank = style_feature_bank(style_feats).detach().to(render_feats.dtype)  # [C, M]
    b, c, h, w = render_feats.shape
    if bank.shape[0] != c:
        raise ValueError(f"style features have {bank.shape[0]} channels, render features {c}")
    weights = mask_weights(mask, render_feats)
    queries = render_feats.permute(0, 2, 3, 1).reshape(-1, c)  # [B*h*w, C]
    if weights is not None:  # only search for features that count
        keep = weights.reshape(-1) > 0
        idx = torch.zeros(queries.shape[0], dtype=torch.long, device=queries.device)
        if keep.any():
            idx[keep] = nearest_neighbours(queries[keep], bank, chunk)
    else:
        idx = nearest_neighbours(queries, bank, chunk)
    target = bank.t()[idx]  # [B*h*w, C]
    cos = F.cosine_similarity(queries, target, dim=1, eps=EPS).view(b, h, w)
    return _weighted_mean(1.0 - cos, weights)


@torch.no_grad()
def nnfm_distance(
    render_feats: torch.Tensor,
    style_feats: torch.Tensor | Sequence[torch.Tensor],
    mask: torch.Tensor | None = None,
) -> float:
    """NNFM as a metric (lower = closer to the style)."""
    return float(nnfm_loss(render_feats, style_feats, mask))


def content_loss(
    feats: torch.Tensor, feats_ref: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Feature MSE to the unstylized render ``[B, C, h, w]`` (averaged over channels and masked positions)."""
    if feats.shape != feats_ref.shape:
        raise ValueError(f"feats {tuple(feats.shape)} and feats_ref {tuple(feats_ref.shape)} differ in shape")
    sq = ((feats - feats_ref.detach()) ** 2).mean(dim=1)  # [B, h, w]
    return _weighted_mean(sq, mask_weights(mask, feats))


def tv_loss(img: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels ``[B, C, H, W]``; with a mask, only pairs inside it."""
    if img.ndim != 4:
        raise ValueError(f"img must be [B, C, H, W], got {tuple(img.shape)}")
    dx = ((img[..., :, 1:] - img[..., :, :-1]) ** 2).mean(dim=1)  # [B, H, W-1]
    dy = ((img[..., 1:, :] - img[..., :-1, :]) ** 2).mean(dim=1)  # [B, H-1, W]
    if mask is None:
        return dx.mean() + dy.mean()
    m = mask_weights(mask, img)[:, 0]  # [B, H, W]
    wx, wy = m[..., :, 1:] * m[..., :, :-1], m[..., 1:, :] * m[..., :-1, :]
    return _weighted_mean(dx, wx[:, None]) + _weighted_mean(dy, wy[:, None])


def _as_feature_set(
    feats: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``[B, C, h, w]`` or ``[C, M]`` -> (``[C, N]`` features, ``[N]`` weights)."""
    if feats.ndim == 2:
        if mask is not None:
            raise ValueError("a mask needs [B, C, h, w] features")
        return feats, torch.ones(feats.shape[1], dtype=feats.dtype, device=feats.device)
    if feats.ndim != 4:
        raise ValueError(f"features must be [B, C, h, w] or [C, M], got {tuple(feats.shape)}")
    weights = mask_weights(mask, feats)
    flat = feats.permute(1, 0, 2, 3).flatten(1)  # [C, B*h*w]
    w = torch.ones_like(flat[0]) if weights is None else weights.permute(1, 0, 2, 3).reshape(-1)
    return flat, w


def gram_matrix(feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Gram matrix ``[C, C]`` of features ``[B, C, h, w]`` or ``[C, M]``, averaged over (masked) positions, so
    that images of different sizes compare."""
    flat, w = _as_feature_set(feats, mask)
    total = w.sum()
    if total <= 0:
        raise ValueError("mask selects no feature positions")
    return (flat * w) @ flat.t() / total


def gram_distance(
    feats_a: torch.Tensor,
    feats_b: torch.Tensor,
    mask_a: torch.Tensor | None = None,
    mask_b: torch.Tensor | None = None,
) -> float:
    """Mean squared difference of the two Gram matrices (Gatys' style distance); symmetric, 0 when equal."""
    with torch.no_grad():
        ga, gb = gram_matrix(feats_a, mask_a), gram_matrix(feats_b, mask_b)
        if ga.shape != gb.shape:
            raise ValueError(f"feature channel counts differ: {ga.shape[0]} vs {gb.shape[0]}")
        return float(((ga - gb) ** 2).mean())
