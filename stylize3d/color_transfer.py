"""Linear colour transfer (ARF / S2RF): an affine map x -> A x + b that gives the source colours the target's
mean and covariance. ARF applies it to the content before NNFM (so the loss only has to move texture) and
again after; here it is applied to an object's colours only.
"""

from __future__ import annotations

import torch


def _check_rgb(name: str, rgb: torch.Tensor) -> torch.Tensor:
    if rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise ValueError(f"{name} must be [..., 3] colours, got {tuple(rgb.shape)}")
    rgb = rgb.reshape(-1, 3)
    if rgb.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 colours to have a covariance, got {rgb.shape[0]}")
    return rgb


def _mean_cov(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = rgb.mean(dim=0)  # [3]
    centred = rgb - mean
    return mean, centred.t() @ centred / rgb.shape[0]  # [3], [3, 3]


def _sym_power(cov: torch.Tensor, power: float, floor: float) -> torch.Tensor:
    """cov^power for a symmetric PSD matrix, eigenvalues floored so flat colour sets do not blow up."""
    evals, evecs = torch.linalg.eigh(cov)
    return evecs @ torch.diag(evals.clamp_min(floor) ** power) @ evecs.t()


def fit_color_transfer(
    source_rgb: torch.Tensor, target_rgb: torch.Tensor, floor: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Colours ``[N, 3]`` and ``[M, 3]`` -> (A ``[3, 3]``, b ``[3]``) with A = Ct^1/2 Cs^-1/2 (symmetric roots).

    Computed in float64. Exact (up to ``floor`` on the covariance eigenvalues, in squared colour units) when both
    covariances are non-degenerate.
    """
    src = _check_rgb("source_rgb", source_rgb).double()
    tgt = _check_rgb("target_rgb", target_rgb).to(src.device).double()
    mu_s, cov_s = _mean_cov(src)
    mu_t, cov_t = _mean_cov(tgt)
    a = _sym_power(cov_t, 0.5, floor) @ _sym_power(cov_s, -0.5, floor)  # [3, 3]
    b = mu_t - a @ mu_s  # [3]
    dtype = source_rgb.dtype if source_rgb.is_floating_point() else torch.float32
    return a.to(dtype), b.to(dtype)


def apply_color_transfer(
    rgb: torch.Tensor, a: torch.Tensor, b: torch.Tensor, clamp: bool = True
) -> torch.Tensor:
    """Apply x -> A x + b to colours ``[..., 3]``; clamped to [0, 1] unless ``clamp`` is False."""
    if rgb.shape[-1] != 3 or a.shape != (3, 3) or b.shape != (3,):
        raise ValueError(
            f"need rgb [..., 3], A [3, 3], b [3]; got {tuple(rgb.shape)}, {tuple(a.shape)}, {tuple(b.shape)}"
        )
    out = rgb @ a.t().to(rgb.dtype) + b.to(rgb.dtype)
    return out.clamp(0.0, 1.0) if clamp else out
