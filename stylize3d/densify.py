"""Adaptive density control of 3DGS (Kerbl et al. 2023), in gsplat's ``DefaultStrategy`` layout.

Gaussians whose projected centre keeps a large average screen-space gradient sit where the image is
under-reconstructed: small ones are cloned (a copy at the same place, which then drifts apart), large ones are
split into two smaller ones sampled inside them. Nearly transparent and oversized Gaussians are pruned. An
optional periodic opacity reset lets pruning remove floaters that only survive by being opaque.

Parameters live in a ``ParameterDict`` (``means [N,3], scales [N,3], quats [N,4], opacities [N], sh0 [N,1,3],
shN [N,K,3]``) with one Adam optimizer per parameter, so each operation edits a parameter and its Adam moments
with the same index operation (new Gaussians start with zero moments).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from stylize3d.rasterize import quat_to_rotmat

logger = logging.getLogger(__name__)

Params = torch.nn.ParameterDict
Optimizers = dict[str, torch.optim.Optimizer]


@dataclass(frozen=True)
class DensifyConfig:
    start: int = 100
    """First step that densifies (the gradient statistics need a few views first)."""
    stop_fraction: float = 0.6
    """Densify and prune until this fraction of the iterations, then only optimise."""
    every: int = 100
    """Steps between densify-and-prune rounds."""
    grad_threshold: float = 0.0002
    """Average screen-space gradient norm (in NDC units, as 3DGS) above which a Gaussian is cloned or split."""
    grow_scale3d: float = 0.01
    """Gaussians whose largest scale is at most this times the scene scale are cloned, larger ones split."""
    prune_opacity: float = 0.005
    """Gaussians less opaque than this are pruned."""
    prune_scale3d: float = 0.1
    """Gaussians whose largest scale exceeds this times the scene scale are pruned."""
    reset_every: int = 0
    """Steps between opacity resets (to 2 * prune_opacity); 0 = never (short CPU runs do better without)."""
    max_gaussians: int = 30_000
    """No growth beyond this many Gaussians (keeps CPU steps bounded)."""


@dataclass
class DensifyState:
    """Running screen-space statistics per Gaussian since the last densify round."""

    grad2d: torch.Tensor  # [N] summed norm of the NDC gradient of the projected mean
    count: torch.Tensor  # [N] views in which the Gaussian was visible

    @classmethod
    def zeros(cls, n: int, device: torch.device | str = "cpu") -> DensifyState:
        return cls(torch.zeros(n, device=device), torch.zeros(n, device=device))

    def update(self, means2d_grad: torch.Tensor, radii: torch.Tensor, width: int, height: int) -> None:
        """Accumulate one view: ``means2d_grad`` [N, 2] in pixels, ``radii`` [N] (0 = not visible)."""
        grad = means2d_grad.detach() * torch.tensor([width / 2.0, height / 2.0], device=means2d_grad.device)
        visible = radii > 0
        self.grad2d += torch.where(visible, grad.norm(dim=-1), torch.zeros_like(self.grad2d))
        self.count += visible.float()

    def apply(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.grad2d, self.count = fn(self.grad2d), fn(self.count)


def _edit(params: Params, optimizers: Optimizers, param_fn: Callable[[str, torch.Tensor], torch.Tensor],
          moment_fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Replace every parameter by ``param_fn(name, p)`` and its Adam moments by ``moment_fn(m)``."""
    for name in list(params.keys()):
        old = params[name]
        new = torch.nn.Parameter(param_fn(name, old.data), requires_grad=old.requires_grad)
        opt = optimizers[name]
        state = opt.state.pop(old, None)
        if state is not None:
            for key in ("exp_avg", "exp_avg_sq"):
                state[key] = moment_fn(state[key])
            opt.state[new] = state
        opt.param_groups[0]["params"] = [new]
        params[name] = new


@torch.no_grad()
def duplicate(params: Params, optimizers: Optimizers, state: DensifyState, mask: torch.Tensor) -> None:
    """Append a copy of each Gaussian in ``mask`` [N] (the copies start with zero Adam moments)."""
    sel = torch.nonzero(mask).squeeze(1)
    _edit(params, optimizers, lambda _, p: torch.cat([p, p[sel]]),
          lambda m: torch.cat([m, torch.zeros_like(m[sel])]))
    state.apply(lambda t: torch.cat([t, t[sel]]))


@torch.no_grad()
def split(params: Params, optimizers: Optimizers, state: DensifyState, mask: torch.Tensor,
          generator: torch.Generator | None = None) -> None:
    """Replace each Gaussian in ``mask`` by two, sampled from it, with scales divided by 1.6 (as 3DGS)."""
    sel, rest = torch.nonzero(mask).squeeze(1), torch.nonzero(~mask).squeeze(1)
    scales = torch.exp(params["scales"].data[sel])  # [S, 3]
    rot = quat_to_rotmat(params["quats"].data[sel])  # [S, 3, 3]
    noise = torch.randn(2, len(sel), 3, generator=generator).to(scales)  # CPU generator: same draws everywhere
    offsets = torch.einsum("sij,sj,bsj->bsi", rot, scales, noise)  # [2, S, 3]

    def param_fn(name: str, p: torch.Tensor) -> torch.Tensor:
        if name == "means":
            new = (p[sel] + offsets).reshape(-1, 3)
        elif name == "scales":
            new = torch.log(scales / 1.6).repeat(2, 1)
        else:
            new = p[sel].repeat(2, *[1] * (p.dim() - 1))
        return torch.cat([p[rest], new])

    _edit(params, optimizers, param_fn, lambda m: torch.cat([m[rest], torch.zeros_like(m[sel]).repeat(
        2, *[1] * (m.dim() - 1))]))
    state.apply(lambda t: torch.cat([t[rest], t[sel].repeat(2)]))


@torch.no_grad()
def remove(params: Params, optimizers: Optimizers, state: DensifyState, mask: torch.Tensor) -> None:
    """Drop the Gaussians in ``mask`` [N]."""
    keep = torch.nonzero(~mask).squeeze(1)
    _edit(params, optimizers, lambda _, p: p[keep], lambda m: m[keep])
    state.apply(lambda t: t[keep])


@torch.no_grad()
def reset_opacities(params: Params, optimizers: Optimizers, value: float) -> None:
    """Clamp opacities to at most ``value`` and clear their Adam moments."""
    p = params["opacities"]
    p.data.clamp_(max=float(torch.logit(torch.tensor(value))))
    st = optimizers["opacities"].state.get(p)
    if st:
        st["exp_avg"].zero_()
        st["exp_avg_sq"].zero_()


@torch.no_grad()
def densify_and_prune(params: Params, optimizers: Optimizers, state: DensifyState, cfg: DensifyConfig,
                      scene_scale: float, generator: torch.Generator | None = None) -> dict[str, int]:
    """One 3DGS refinement round: clone / split by average screen gradient, then prune; resets ``state``.

    Returns the counts ``{"cloned", "split", "pruned", "total"}``.
    """
    n = params["means"].shape[0]
    grads = state.grad2d / state.count.clamp_min(1)  # [N]
    max_scale = torch.exp(params["scales"].data).max(dim=-1).values  # [N]
    high = grads > cfg.grad_threshold
    room = max(0, cfg.max_gaussians - n)
    if int(high.sum()) > room:  # keep only the strongest candidates
        order = torch.argsort(torch.where(high, grads, torch.full_like(grads, -1.0)), descending=True)
        high = torch.zeros_like(high)
        high[order[:room]] = True
    small = max_scale <= cfg.grow_scale3d * scene_scale
    is_clone, is_split = high & small, high & ~small
    n_clone, n_split = int(is_clone.sum()), int(is_split.sum())
    if n_clone:
        duplicate(params, optimizers, state, is_clone)
    if n_split:
        is_split = torch.cat([is_split, torch.zeros(n_clone, dtype=torch.bool, device=is_split.device)])
        split(params, optimizers, state, is_split, generator)
    opacity = torch.sigmoid(params["opacities"].data)
    too_big = torch.exp(params["scales"].data).max(dim=-1).values > cfg.prune_scale3d * scene_scale
    is_prune = (opacity < cfg.prune_opacity) | too_big
    n_prune = int(is_prune.sum())
    if n_prune:
        remove(params, optimizers, state, is_prune)
    state.grad2d.zero_()
    state.count.zero_()
    total = params["means"].shape[0]
    logger.debug("densify: %d cloned, %d split, %d pruned -> %d Gaussians", n_clone, n_split, n_prune, total)
    return {"cloned": n_clone, "split": n_split, "pruned": n_prune, "total": total}
