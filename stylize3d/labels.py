"""Object labels between pixels and Gaussians, both ways, through each view's cached blend weights.

A view's weights W [H*W, N] say how much each Gaussian contributes to each pixel, so
- Gaussians -> pixels: per-pixel object = argmax over objects of W @ onehot(labels);
- pixels -> Gaussians (multi-view voting): votes [N, L] = sum over views of W^T @ onehot(mask).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from .gaussians import BACKGROUND_LABEL

logger = logging.getLogger(__name__)


def _onehot(labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels.clamp_min(0), num_labels).float()


def object_coverage(weights: torch.Tensor, labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """[H*W, L] summed blend weight of each object's Gaussians at each pixel."""
    return torch.sparse.mm(weights, _onehot(labels, num_labels))


def pixel_labels(weights: torch.Tensor, labels: torch.Tensor, height: int, width: int,
                 min_alpha: float = 0.5) -> torch.Tensor:
    """[H, W] long instance mask: the object with the most blend weight; background where coverage is thin."""
    num_labels = int(labels.max()) + 1
    cov = object_coverage(weights, labels, num_labels)  # [HW, L]
    best, idx = cov.max(dim=1)
    idx[cov.sum(dim=1) < min_alpha] = BACKGROUND_LABEL
    del best
    return idx.reshape(height, width)


def selection_coverage(weights: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """[H*W] blend weight of the selected Gaussians (``selected`` [N] bool) at each pixel."""
    return torch.sparse.mm(weights, selected.float()[:, None])[:, 0]


def labels_from_masks(view_weights: list[torch.Tensor], masks: list[torch.Tensor], num_gaussians: int,
                      min_votes: float = 1e-3) -> torch.Tensor:
    """[N] long labels by multi-view voting: each pixel votes for its mask's object with each Gaussian's weight.

    Gaussians that no view sees (total vote below ``min_votes``) stay background.
    """
    if len(view_weights) != len(masks):
        raise ValueError(f"labels_from_masks: {len(view_weights)} views but {len(masks)} masks")
    num_labels = int(max(int(m.max()) for m in masks)) + 1
    votes = torch.zeros(num_gaussians, num_labels)
    for w, m in zip(view_weights, masks):
        if m.numel() != w.shape[0]:
            raise ValueError(f"labels_from_masks: mask of {m.numel()} pixels for a view of {w.shape[0]} pixels")
        votes += torch.sparse.mm(w.t(), _onehot(m.reshape(-1).long(), num_labels))
    labels = votes.argmax(dim=1)
    labels[votes.sum(dim=1) < min_votes] = BACKGROUND_LABEL
    logger.info("voted labels for %d Gaussians over %d views (%d unseen)", num_gaussians, len(masks),
                int((votes.sum(dim=1) < min_votes).sum()))
    return labels


def vote_labels(render_colors: Callable[[int, torch.Tensor], torch.Tensor], masks: Sequence[torch.Tensor],
                num_gaussians: int, min_votes: float = 1e-3) -> torch.Tensor:
    """[N] long labels by multi-view voting, through any differentiable renderer.

    ``render_colors(view, colors [N, 3]) -> [H, W, 3]`` renders per-Gaussian colours (black background). Its
    gradient with respect to the colours is W^T g for a view's blend weights W, so with g = one-hot(mask) it is
    exactly stylize3d.labels' vote W^T onehot(mask), without ever forming W (3 labels per backward pass).
    """
    num_labels = int(max(int(m.max()) for m in masks)) + 1
    votes = None
    for v, mask in enumerate(masks):
        onehot = F.one_hot(mask.long().clamp_min(0), num_labels).float()  # [H, W, L]
        for c0 in range(0, num_labels, 3):
            chunk = onehot[..., c0:c0 + 3]
            colors = torch.zeros(num_gaussians, 3, device=mask.device, requires_grad=True)
            img = render_colors(v, colors)  # [H, W, 3]
            if img.shape[:2] != mask.shape:
                raise ValueError(f"vote_labels: view {v} renders {tuple(img.shape[:2])}, mask is {tuple(mask.shape)}")
            (grad,) = torch.autograd.grad((img[..., : chunk.shape[-1]] * chunk.to(img)).sum(), colors)
            if votes is None:
                votes = torch.zeros(num_gaussians, num_labels, device=grad.device)
            votes[:, c0:c0 + chunk.shape[-1]] += grad[:, : chunk.shape[-1]]
    labels = votes.argmax(dim=1)
    labels[votes.sum(dim=1) < min_votes] = BACKGROUND_LABEL
    return labels


def transfer_labels(src_means: torch.Tensor, src_labels: torch.Tensor, dst_means: torch.Tensor) -> torch.Tensor:
    """[M] labels of the nearest source Gaussian centre for each destination centre (scipy KD-tree)."""
    from scipy.spatial import cKDTree

    _, idx = cKDTree(src_means.detach().cpu().double().numpy()).query(dst_means.detach().cpu().double().numpy())
    return src_labels.cpu()[torch.from_numpy(idx)].to(dst_means.device)
