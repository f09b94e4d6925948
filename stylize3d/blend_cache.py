"""Per-view blend-weight cache for appearance-only optimisation.

When geometry is frozen, a view's image is linear in the Gaussians' colours: ``rgb = W @ colors + T * bg`` with
W the sparse [H*W, N] matrix of blend weights ``w_i = alpha_i * T_i``. Computing W once per view turns every
later render into a sparse matrix product, with exact gradients w.r.t. the colours (and so the SH coefficients).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from stylize3d.cameras import Cameras
from stylize3d.gaussians import GaussianScene
from stylize3d.rasterize import blend_weights, camera_center, csr_from_triplets, normalize_depth, project
from stylize3d.sh import eval_sh

logger = logging.getLogger(__name__)


class _ConstSparseMatmul(torch.autograd.Function):
    """``W @ dense`` with a constant CSR ``W``; the backward uses a precomputed CSR transpose, which is ~10x
    faster on CPU than autograd through ``torch.sparse.mm`` (measured with torch 2.14)."""

    @staticmethod
    def forward(ctx, weights: torch.Tensor, weights_t: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        ctx.weights_t = weights_t
        return weights @ dense

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, None, ctx.weights_t @ grad.contiguous()


def transpose_csr(weights: torch.Tensor) -> torch.Tensor:
    """CSR [R, N] -> CSR [N, R] holding the same values."""
    crow, cols, vals = weights.crow_indices(), weights.col_indices(), weights.values()
    rows = torch.repeat_interleave(torch.arange(weights.shape[0], device=crow.device), crow.diff())
    return csr_from_triplets(cols, rows, vals, (weights.shape[1], weights.shape[0]))


@dataclass
class CachedView:
    """One view's frozen blending state."""

    weights: torch.Tensor  # sparse CSR [H*W, N] blend weights (row = y * W + x)
    weights_t: torch.Tensor  # sparse CSR [N, H*W], for the backward pass
    alpha: torch.Tensor  # [H, W] accumulated opacity
    depth: torch.Tensor  # [H, W] expected depth, normalised by alpha (0 where alpha ~ 0)
    dirs: torch.Tensor  # [N, 3] unit directions camera centre -> mean, for SH colours

    @property
    def nnz(self) -> int:
        return int(self.weights.values().numel())


class BlendCache:
    """Frozen-geometry renderer over a fixed set of cameras (see module docstring)."""

    def __init__(self, views: list[CachedView], width: int, height: int, background: torch.Tensor) -> None:
        self.views = views
        self.width, self.height = width, height
        self.background = background  # [3]

    @classmethod
    @torch.no_grad()
    def build(cls, scene: GaussianScene, cameras: Cameras, background: torch.Tensor | None = None,
              progress: Callable[[int, int], None] | None = None) -> BlendCache:
        """Rasterize every view's blend weights once (torch tile rasterizer, on the scene's device).

        ``progress(done, total)`` is called after each view.
        """
        dev, dtype = scene.means.device, scene.means.dtype
        bg = torch.zeros(3, device=dev, dtype=dtype) if background is None else \
            torch.as_tensor(background, device=dev, dtype=dtype)
        if bg.shape != (3,):
            raise ValueError(f"background has shape {tuple(bg.shape)}, expected [3]")
        opacities = torch.sigmoid(scene.opacities)
        views = []
        for i in range(len(cameras)):
            viewmat = cameras.viewmats[i].to(device=dev, dtype=dtype)
            K = cameras.Ks[i].to(device=dev, dtype=dtype)
            proj = project(scene.means, scene.quats, scene.scales, viewmat, K, cameras.width, cameras.height)
            bw = blend_weights(proj, opacities, cameras.width, cameras.height)
            dirs = torch.nn.functional.normalize(scene.means - camera_center(viewmat), dim=-1)
            views.append(CachedView(weights=bw.weights, weights_t=transpose_csr(bw.weights), alpha=bw.alpha,
                                    depth=normalize_depth(bw.depth, bw.alpha), dirs=dirs))
            if progress is not None:
                progress(i + 1, len(cameras))
        cache = cls(views, cameras.width, cameras.height, bg)
        logger.info("blend cache: %d views, %d weights, %.1f MB", len(cache), cache.nnz, cache.memory_bytes() / 2**20)
        return cache

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, view_idx: int) -> CachedView:
        return self.views[view_idx]

    def render_colors(self, view_idx: int, colors: torch.Tensor, background: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """[H, W, 3] image of view ``view_idx`` for per-Gaussian colours [N, 3], differentiable w.r.t. them."""
        view = self.views[view_idx]
        n = view.weights.shape[1]
        if colors.ndim != 2 or colors.shape[0] != n:
            raise ValueError(f"colors has shape {tuple(colors.shape)}, expected [{n}, C]")
        bg = self.background if background is None else torch.as_tensor(background).to(colors)
        acc = _ConstSparseMatmul.apply(view.weights, view.weights_t, colors.to(view.weights.dtype))  # [HW, C]
        rgb = acc.reshape(self.height, self.width, -1)
        return rgb + (1 - view.alpha)[..., None] * bg.to(rgb)

    def render(self, view_idx: int, sh0: torch.Tensor, shN: torch.Tensor,
               background: torch.Tensor | None = None) -> torch.Tensor:
        """[H, W, 3] image from SH coefficients sh0 [N, 1, 3] and shN [N, K, 3] (view-dependent colour)."""
        colors = eval_sh(torch.cat([sh0, shN], dim=1), self.views[view_idx].dirs)  # [N, 3]
        return self.render_colors(view_idx, colors, background)

    @property
    def nnz(self) -> int:
        """Stored blend weights over all views."""
        return sum(v.nnz for v in self.views)

    def memory_bytes(self) -> int:
        """Bytes held by the cache (both CSR copies, alpha, depth, dirs)."""
        total = 0
        for v in self.views:
            for w in (v.weights, v.weights_t):
                total += sum(t.numel() * t.element_size() for t in (w.crow_indices(), w.col_indices(), w.values()))
            total += sum(t.numel() * t.element_size() for t in (v.alpha, v.depth, v.dirs))
        return total
