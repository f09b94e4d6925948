"""Real spherical harmonics up to degree 3, with the constants and sign convention of 3DGS / gsplat.

Colours are ``max(sum_k c_k Y_k(dir) + 0.5, 0)``: the +0.5 offset is why the DC term of a colour ``rgb`` is
``(rgb - 0.5) / C0`` (``rgb_to_sh0``), as in 3DGS' ``.ply`` files and nerfstudio's splatfacto.
"""

from __future__ import annotations

import torch

from stylize3d.gaussians import SH_C0

SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def sh_bases(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """[N, (degree+1)^2] basis values Y_k(dir) for unit ``dirs`` [N, 3] (3DGS ordering and signs)."""
    if not 0 <= degree <= 3:
        raise ValueError(f"sh degree must be in 0..3, got {degree}")
    x, y, z = dirs.unbind(-1)  # [N] each
    bases = [torch.full_like(x, SH_C0)]
    if degree > 0:
        bases += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree > 1:
        xx, yy, zz = x * x, y * y, z * z
        bases += [SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2.0 * zz - xx - yy), SH_C2[3] * x * z,
                  SH_C2[4] * (xx - yy)]
    if degree > 2:
        bases += [SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * x * y * z, SH_C3[2] * y * (4 * zz - xx - yy),
                  SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
                  SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy)]
    return torch.stack(bases, dim=-1)


def eval_sh(sh_coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """[N, 3] colours from coefficients [N, (d+1)^2, 3] seen along ``dirs`` [N, 3] (normalised here).

    ``dirs`` point from the camera centre to each Gaussian, as in gsplat's ``rasterization``.
    """
    if sh_coeffs.ndim != 3 or sh_coeffs.shape[-1] != 3:
        raise ValueError(f"sh_coeffs must be [N, K, 3], got {tuple(sh_coeffs.shape)}")
    if dirs.shape != (sh_coeffs.shape[0], 3):
        raise ValueError(f"dirs must be [{sh_coeffs.shape[0]}, 3], got {tuple(dirs.shape)}")
    bases_count = sh_coeffs.shape[1]
    degree = round(bases_count ** 0.5) - 1
    if (degree + 1) ** 2 != bases_count:
        raise ValueError(f"sh_coeffs has {bases_count} coefficients per channel, not (d+1)^2")
    if degree > 0:
        dirs = torch.nn.functional.normalize(dirs, dim=-1)
    bases = sh_bases(degree, dirs.to(sh_coeffs.dtype))  # [N, K]
    rgb = torch.einsum("nk,nkc->nc", bases, sh_coeffs)  # [N, 3]
    return torch.clamp_min(rgb + 0.5, 0.0)


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    """DC coefficient for a colour, [..., 3] -> [..., 3] (inverse of ``sh0_to_rgb``)."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: torch.Tensor) -> torch.Tensor:
    """View-independent colour of a DC coefficient, [..., 3] -> [..., 3] (before the clamp at 0)."""
    return sh0 * SH_C0 + 0.5
