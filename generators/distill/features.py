"""Intermediate features of a denoiser by forward hooks, and the learned projectors that compare two of them.

Feature KD (SnapGen) and the discriminator of adversarial guidance both read a network's inner maps without
changing its code: a ``FeatureTap`` records the outputs of named modules during a forward pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def default_feature_layers(model: nn.Module) -> list[str]:
    """The bottleneck and the first two decoder stages: where layout and objects are decided."""
    name = type(model).__name__
    if name == "SnapGenUNet":
        return ["mid_res2"] + [f"up.{i}.res.{len(model.up[i]['res']) - 1}" for i in range(min(2, len(model.up)))]
    if name == "SnapGenDiT":
        return [f"middle.{len(model.middle) - 1}", f"up.{len(model.up) // 2}"]
    if name == "UNet2DConditionModel":
        return ["mid_block", "up_blocks.0", "up_blocks.1"]
    raise ValueError(f"{name}: name its feature layers (feature_layers=...)")


def as_map(t) -> torch.Tensor:
    """A module output as (B, C, H, W): tuples give their first tensor, token sequences become square maps."""
    if isinstance(t, (tuple, list)):
        t = t[0]
    if t.dim() == 4:
        return t
    if t.dim() == 3:
        b, n, c = t.shape
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"feature with {n} tokens is not a square map")
        return t.transpose(1, 2).reshape(b, c, side, side)
    raise ValueError(f"feature of shape {tuple(t.shape)} is neither a map nor a token sequence")


class FeatureTap:
    """``with FeatureTap(model, names) as tap: model(...)`` -> ``tap.features`` in the order of ``names``."""

    def __init__(self, model: nn.Module, names: list[str]):
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ValueError(f"{type(model).__name__} has no modules {missing}")
        self.modules = [modules[n] for n in names]
        self.found: dict[int, torch.Tensor] = {}
        self.handles = []

    def __enter__(self) -> "FeatureTap":
        self.found.clear()
        for i, m in enumerate(self.modules):
            self.handles.append(m.register_forward_hook(lambda _m, _i, out, i=i: self.found.__setitem__(i, as_map(out))))
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    @property
    def features(self) -> list[torch.Tensor]:
        return [self.found[i] for i in range(len(self.modules))]


class Projectors(nn.Module):
    """One 1x1 conv per level from the student's channels to the teacher's, resized to the teacher's map."""

    def __init__(self, student_channels: list[int], teacher_channels: list[int]):
        super().__init__()
        if len(student_channels) != len(teacher_channels):
            raise ValueError(f"{len(student_channels)} student feature layers for {len(teacher_channels)} teacher ones")
        self.proj = nn.ModuleList(nn.Conv2d(s, t, 1) for s, t in zip(student_channels, teacher_channels))

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for p, s, t in zip(self.proj, student, teacher):
            y = p(s.float())
            if y.shape[-2:] != t.shape[-2:]:
                y = F.interpolate(y, size=t.shape[-2:], mode="bilinear", align_corners=False)
            out.append(y)
        return out
