"""The scene type: 3D Gaussians in the layout of 3DGS / splatfacto, plus per-Gaussian object labels.

Parameters are stored in their unconstrained form (log-scales, logit opacities, unnormalised quaternions),
exactly as the standard 3DGS ``.ply`` holds them, so that a read/write round trip is bitwise exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import torch

SH_C0 = 0.28209479177387814
BACKGROUND_LABEL = 0  # ground plane / unlabelled Gaussians


def num_sh_bases(degree: int) -> int:
    return (degree + 1) ** 2


def sh_degree_from_bases(bases: int) -> int:
    degree = int(round(math.sqrt(bases))) - 1
    if num_sh_bases(degree) != bases or not 0 <= degree <= 3:
        raise ValueError(f"{bases} SH coefficients per channel is not (d+1)^2 for a degree d in 0..3")
    return degree


@dataclass
class GaussianScene:
    """Gaussians in world space (OpenCV-style camera conventions live in ``cameras.py``).

    quats are (w, x, y, z) like 3DGS' ``rot_0..3``; labels index ``object_names`` (0 is the background).
    """

    means: torch.Tensor  # [N, 3]
    scales: torch.Tensor  # [N, 3] log-scales
    quats: torch.Tensor  # [N, 4] wxyz, not necessarily normalised
    opacities: torch.Tensor  # [N] logits
    sh0: torch.Tensor  # [N, 1, 3] DC coefficients
    shN: torch.Tensor  # [N, K, 3] higher-order coefficients, K = (degree+1)^2 - 1
    labels: torch.Tensor = None  # [N] int64 object ids
    object_names: dict[int, str] = field(default_factory=lambda: {BACKGROUND_LABEL: "background"})

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        if self.labels is None:
            self.labels = torch.zeros(n, dtype=torch.long)
        expected = {
            "means": (n, 3),
            "scales": (n, 3),
            "quats": (n, 4),
            "opacities": (n,),
            "labels": (n,),
        }
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"GaussianScene.{name} has shape {got}, expected {shape}")
        if self.sh0.shape != (n, 1, 3):
            raise ValueError(f"GaussianScene.sh0 has shape {tuple(self.sh0.shape)}, expected ({n}, 1, 3)")
        if self.shN.ndim != 3 or self.shN.shape[0] != n or self.shN.shape[2] != 3:
            raise ValueError(f"GaussianScene.shN has shape {tuple(self.shN.shape)}, expected ({n}, K, 3)")
        sh_degree_from_bases(self.shN.shape[1] + 1)

    @property
    def num_gaussians(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_bases(self.shN.shape[1] + 1)

    @property
    def sh_coeffs(self) -> torch.Tensor:
        """[N, (d+1)^2, 3]"""
        return torch.cat([self.sh0, self.shN], dim=1)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)}

    def to(self, device: torch.device | str) -> GaussianScene:
        return replace(self, **{k: v.to(device) for k, v in self.tensors().items()})

    def clone(self) -> GaussianScene:
        return replace(self, **{k: v.detach().clone() for k, v in self.tensors().items()},
                       object_names=dict(self.object_names))

    def subset(self, mask: torch.Tensor) -> GaussianScene:
        return replace(self, **{k: v[mask] for k, v in self.tensors().items()})

    def object_id(self, name_or_id: str | int) -> int:
        """Resolve an object name (case-insensitive) or numeric id, with a clear error listing the choices."""
        key = str(name_or_id).strip()
        if key.lstrip("-").isdigit() and int(key) in self.object_names:
            return int(key)
        for oid, name in self.object_names.items():
            if name.lower() == key.lower():
                return oid
        choices = ", ".join(f"{oid}:{name}" for oid, name in sorted(self.object_names.items()))
        if not (self.labels != BACKGROUND_LABEL).any():
            raise ValueError(f"unknown object {name_or_id!r}: this scene has no object labels (only {choices}; "
                             "it came without instance masks): select with --box x0,y0,z0,x1,y1,z1 or "
                             "--click VIEW,X,Y instead")
        raise ValueError(f"unknown object {name_or_id!r}; this scene has: {choices}")

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Robust axis-aligned bounds (1st..99th percentile) so stray floaters don't inflate orbits."""
        lo = torch.quantile(self.means.float(), 0.01, dim=0)
        hi = torch.quantile(self.means.float(), 0.99, dim=0)
        return lo, hi

    def check_finite(self, source: str = "scene") -> None:
        for name, t in self.tensors().items():
            if t.is_floating_point() and not torch.isfinite(t).all():
                bad = int((~torch.isfinite(t)).reshape(t.shape[0], -1).any(dim=1).sum())
                raise ValueError(f"{source}: {bad} Gaussians have NaN/inf values in '{name}'")
