"""The distillation losses of SnapGen (multi-level KD, adversarial guidance) and SnapGen++ (K-DMD).

All act on flow-matching quantities (``v = eps - x0``, ``x0 = x_t - s * v``); the teacher is frozen and reached
only through ``torch.no_grad`` or inputs, never through its parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .features import Projectors


def timestep_scaled_mse(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """MSE per sample divided by the target's energy at that sample's timestep.

    The teacher's velocities and features change in magnitude by orders across timesteps, so a plain MSE lets
    a few timesteps drive the gradient; SnapGen scales the KD terms per timestep. Dividing by the detached
    target energy of each sample gives every timestep the same weight.
    """
    dims = tuple(range(1, pred.dim()))
    err = (pred.float() - target.float()).pow(2).mean(dims)
    scale = target.detach().float().pow(2).mean(dims) + eps
    return (err / scale).mean()


def feature_kd(projectors: Projectors, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    projected = projectors(student, teacher)
    return torch.stack([timestep_scaled_mse(p, t.detach()) for p, t in zip(projected, teacher)]).mean()


class DiscriminatorHeads(nn.Module):
    """Small conv heads on frozen teacher features (one per level), logits averaged: SnapGen's adversarial
    guidance judges the student's outputs in the teacher's feature space."""

    def __init__(self, channels: list[int], hidden: int = 64):
        super().__init__()

        def head(c: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(c, hidden, 3, padding=1), nn.GroupNorm(min(8, hidden), hidden), nn.SiLU(),
                                 nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.SiLU(), nn.Conv2d(hidden, 1, 1))

        self.heads = nn.ModuleList(head(c) for c in channels)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Per-sample logits (B,)."""
        return torch.stack([h(f.float()).mean(dim=(1, 2, 3)) for h, f in zip(self.heads, features)]).mean(0)


def discriminator_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def generator_adversarial(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def dmd_loss(x0: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """Distribution matching as DMD2 writes it: the gradient on ``x0`` is ``(p_real - p_fake) / mean|p_real|``
    with ``p = x0 - x0_pred`` (teacher = real score, critic = fake score), applied through an MSE to a detached
    target so that autograd carries exactly that gradient (times 1/numel)."""
    p_real = x0.detach() - x0_real
    p_fake = x0.detach() - x0_fake
    grad = (p_real - p_fake) / p_real.abs().mean(dim=tuple(range(1, x0.dim())), keepdim=True).clamp_min(1e-6)
    grad = torch.nan_to_num(grad)
    return 0.5 * F.mse_loss(x0.float(), (x0 - grad).detach().float())

