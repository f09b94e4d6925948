"""Object labels between pixels and Gaussians, both ways, through each view's cached blend weights.

A view's weights W [H*W, N] say how much each Gaussian contributes to each pixel, so
- Gaussians -> pixels: per-pixel object = argmax over objects of W @ onehot(labels);
- pixels -> Gaussians (multi-view voting): votes [N, L] = sum over views of W^T @ onehot(mask).
"""

from __future__ import annotations

import logging

import torch

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
