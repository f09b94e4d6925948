"""Appearance-only, per-object stylization: the training loop, readable in one sitting (nanoGPT style).

Geometry is frozen, so every view's blend weights come from a ``BlendCache`` and a step is a sparse product,
a backbone forward/backward and an Adam update of the *selected* Gaussians' SH coefficients only. The other
Gaussians' tensors are never written to, which is what makes leakage exactly zero.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .backbones import FeatureBackbone
from .blend_cache import BlendCache
from .color_transfer import fit_color_transfer
from .gaussians import SH_C0, GaussianScene
from .images import load_image, resize_long_side
from .labels import selection_coverage
from .losses import content_loss, nnfm_loss, tv_loss

logger = logging.getLogger(__name__)


@dataclass
class StyleTarget:
    """One object (a selection of Gaussians) and the style image(s) it should take."""

    name: str
    mask: torch.Tensor  # [N] bool
    styles: list[torch.Tensor]  # each [H, W, 3] in [0, 1]
    style_names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the user should know about the selection


STYLE_MAX_SIDE = 1024  # style images are shrunk to this on load; features use ``style_long_side`` (256)
STYLE_MIN_SIDE = 16  # smaller images carry no texture for the backbone's stride-16 features


def load_style(source) -> torch.Tensor:
    """A style image [H, W, 3] in [0, 1], shrunk on load; errors name the file (folder, too small, corrupt)."""
    return load_image(source, max_side=STYLE_MAX_SIDE, min_side=STYLE_MIN_SIDE)


# (low, high) of the numeric settings: finite, and far from what overflows a float or a seed
LIMITS = {"iters": (0, 10_000), "lr": (1e-6, 10.0), "style_weight": (0.0, 1e3), "content_weight": (0.0, 1e3),
          "tv_weight": (0.0, 1e3), "views_per_step": (1, 64), "color_transfer_floor": (0.0, 1.0),
          "style_long_side": (16, 2048), "seed": (0, 2**32 - 1)}


@dataclass(frozen=True)
class StylizeConfig:
    iters: int = 120
    """Optimisation steps."""
    lr: float = 0.05
    """Adam learning rate on the SH coefficients (a step of 0.05 moves a colour by ~0.014)."""
    style_weight: float = 1.0
    """Weight of the NNFM style loss."""
    content_weight: float = 1e-3
    """Weight of the feature MSE to the unstylized render (ARF: ~1e-3)."""
    tv_weight: float = 0.0
    """Weight of the image total variation inside the objects."""
    views_per_step: int = 2
    """Views rendered per step."""
    color_transfer: bool = True
    """Match each object's colours to its style before and after optimisation (ARF)."""
    color_transfer_floor: float = 0.04
    """Floor on the object's colour-covariance eigenvalues (squared colour units) in the colour transfer: a
    near-flat object would otherwise have its faint noise amplified into speckle."""
    style_long_side: int = 256
    """Style images are resized to this long side before feature extraction."""
    seed: int = 0
    """Seed for the choice of views."""
    view_dependent: bool = False
    """Also train the higher SH bands. Off by default: a style is a diffuse appearance, and per-view colour
    lets the optimiser paint each view differently, which breaks multi-view consistency (measured: long-range
    warp RMSE ~10x the unstylized scene's with it on)."""

    def __post_init__(self) -> None:
        for name, (lo, hi) in LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not lo <= value <= hi:
                raise ValueError(f"{name.replace('_', ' ')} must be a finite number in [{lo:g}, {hi:g}], got {value!r}")


@dataclass
class StylizeResult:
    scene: GaussianScene
    losses: list[float]
    seconds: float
    stopped_early: bool = False


def to_bchw(img: torch.Tensor) -> torch.Tensor:
    """[H, W, 3] -> [1, 3, H, W]"""
    return img.permute(2, 0, 1)[None]


@torch.no_grad()
def style_features(backbone: FeatureBackbone, styles: list[torch.Tensor], long_side: int) -> torch.Tensor:
    """[C, M] features of all style images of one object, pooled (several styles per object)."""
    feats = []
    for img in styles:
        f = backbone(to_bchw(resize_long_side(img, long_side)))  # [1, C, h, w]
        feats.append(f[0].flatten(1))
    return torch.cat(feats, dim=1)


def _fit_side(x: torch.Tensor, max_side: int) -> torch.Tensor:
    """[1, C, H, W] shrunk so its long side is at most ``max_side`` (ARF renders at half size for the backbone)."""
    h, w = x.shape[-2:]
    if max(h, w) <= max_side:
        return x
    size = (max(1, round(h * max_side / max(h, w))), max(1, round(w * max_side / max(h, w))))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@torch.no_grad()
def reference_features(reference: torch.Tensor, backbone, max_side: int = 512) -> torch.Tensor:
    """Backbone features of an unstylized render [H, W, 3]: constant per view, so callers may cache them."""
    return backbone(_fit_side(reference.permute(2, 0, 1)[None], max_side))


def view_losses(rgb: torch.Tensor, reference: torch.Tensor | None, coverage: torch.Tensor, backbone,
                style_feats: Sequence[torch.Tensor], style_weight: float = 1.0, content_weight: float = 1e-3,
                tv_weight: float = 0.0, max_side: int = 512,
                ref_feats: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """stylize3d's per-object losses on one view: render ``rgb`` and unstylized ``reference`` [H, W, 3] (or its
    ``reference_features``), each object's share of every pixel ``coverage`` [H, W, T], style features per
    object [C, M]."""
    img = _fit_side(rgb.permute(2, 0, 1)[None], max_side)  # [1, 3, h, w]
    cov = _fit_side(coverage.permute(2, 0, 1)[None], max_side)  # [1, T, h, w]
    feats = backbone(img)
    if ref_feats is None:
        ref_feats = reference_features(reference, backbone, max_side)
    zero = img.sum() * 0.0  # keeps the graph when no object is in view
    out = {"style_loss": zero, "content_loss": zero}
    if tv_weight > 0:
        out["tv_loss"] = zero
    for t, feats_t in enumerate(style_feats):
        m = cov[:, t:t + 1]
        if float(m.sum()) < 1.0:
            continue
        out["style_loss"] = out["style_loss"] + style_weight * nnfm_loss(feats, feats_t, m)
        out["content_loss"] = out["content_loss"] + content_weight * content_loss(feats, ref_feats, m)
        if tv_weight > 0:
            out["tv_loss"] = out["tv_loss"] + tv_weight * tv_loss(img, m)
    return out


def linear_transform_sh(sh0: torch.Tensor, shN: torch.Tensor, A: torch.Tensor, b: torch.Tensor):
    """Apply colour' = A @ colour + b exactly to SH (the DC term carries the +0.5 offset and b)."""
    rgb_dc = SH_C0 * sh0 + 0.5  # [M, 1, 3]
    new_dc = rgb_dc @ A.T + b
    return (new_dc - 0.5) / SH_C0, shN @ A.T


def _object_pixels(cache: BlendCache, sh0, shN, mask: torch.Tensor, views, min_coverage: float):
    """[P, 3] rendered colours of the pixels an object covers in the given views."""
    out = []
    for v in views:
        cov = selection_coverage(cache[v].weights, mask)
        rgb = cache.render(v, sh0, shN).reshape(-1, 3)
        out.append(rgb[cov >= min_coverage])
    return torch.cat(out)


def _views_seeing(cache: BlendCache, mask: torch.Tensor, min_pixels: int = 16) -> list[int]:
    return [v for v in range(len(cache)) if int((selection_coverage(cache[v].weights, mask) > 0.5).sum()) >= min_pixels]


def _color_transfer(cache, sh0, shN, target: StyleTarget, views, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit on the object's rendered pixels -> the style's pixels, and apply to its Gaussians' SH."""
    src = _object_pixels(cache, sh0, shN, target.mask, views, 0.5)
    dst = torch.cat([s.reshape(-1, 3) for s in target.styles])
    A, b = fit_color_transfer(src, dst, floor=floor)
    new0, newN = linear_transform_sh(sh0[target.mask], shN[target.mask], A, b)
    sh0, shN = sh0.clone(), shN.clone()
    sh0[target.mask], shN[target.mask] = new0, newN
    return sh0, shN


def stylize(scene: GaussianScene, cache: BlendCache, targets: list[StyleTarget], backbone: FeatureBackbone,
            config: StylizeConfig = StylizeConfig(),
            callback: Callable[[int, int, float, Callable[[int], torch.Tensor]], None] | None = None,
            should_stop: Callable[[], bool] | None = None,
            trainable: torch.Tensor | None = None) -> StylizeResult:
    """Stylize each target's Gaussians; returns a new scene whose other Gaussians keep their exact values.

    ``callback(step, total, loss, render_view)`` is called every step (drives progress bars); ``render_view(v)``
    renders view ``v`` as it is now (live previews).
    ``trainable`` [N] bool overrides which Gaussians may change (default: the targets' own); the losses
    always look at the targets' pixels. Only the S2RF-style baseline in ``bench/`` widens it.
    """
    t0 = time.perf_counter()
    if not targets:
        raise ValueError("stylize: no objects selected")
    overlap = torch.stack([t.mask for t in targets]).sum(0) > 1
    if overlap.any():
        raise ValueError(f"stylize: {int(overlap.sum())} Gaussians are selected for more than one style")
    selected = torch.stack([t.mask for t in targets]).any(0) if trainable is None else trainable  # [N]
    gen = torch.Generator().manual_seed(config.seed)

    # 1. where each object is visible, and the style features per object
    target_views = [_views_seeing(cache, t.mask) for t in targets]
    for t, views in zip(targets, target_views):
        if not views:
            raise ValueError(f"object {t.name!r} is not visible in any view")
    style_feats = [style_features(backbone, t.styles, config.style_long_side) for t in targets]

    # 2. colour transfer before (ARF): start from the style's palette
    sh0, shN = scene.sh0, scene.shN
    if config.color_transfer:
        for t, views in zip(targets, target_views):
            sh0, shN = _color_transfer(cache, sh0, shN, t, views[:: max(1, len(views) // 8)],
                                           config.color_transfer_floor)

    # 3. only the selected Gaussians' SH are leaves; the rest are the scene's own (untouched) tensors
    sel_idx = torch.nonzero(selected)[:, 0]
    p0 = sh0[sel_idx].clone().requires_grad_(True)
    pN = shN[sel_idx].clone()
    if not config.view_dependent:
        pN.zero_()
    pN.requires_grad_(config.view_dependent)
    opt = torch.optim.Adam([p0, pN] if config.view_dependent else [p0], lr=config.lr)
    base_sh0, base_shN = scene.sh0, scene.shN
    all_views = sorted({v for views in target_views for v in views})
    cov_cache: dict[int, torch.Tensor] = {}
    ref_cache: dict[int, torch.Tensor] = {}

    def full_sh():
        return base_sh0.index_put((sel_idx,), p0), base_shN.index_put((sel_idx,), pN)

    @torch.no_grad()
    def render_now(view: int) -> torch.Tensor:
        """[H, W, 3] the current state of a view, for live previews."""
        return cache.render(view, *full_sh()).clamp(0, 1)

    losses, stopped = [], False
    for step in range(config.iters):
        if should_stop is not None and should_stop():
            stopped = True
            logger.info("stopped early at step %d", step)
            break
        views = [all_views[i] for i in torch.randperm(len(all_views), generator=gen)[: config.views_per_step]]
        s0, sN = full_sh()
        loss = torch.zeros(())
        for v in views:
            if v not in cov_cache:  # each object's share of every pixel; the losses weight cells by it
                cov_cache[v] = torch.stack([selection_coverage(cache[v].weights, t.mask) for t in targets], -1
                                           ).reshape(cache.height, cache.width, len(targets))  # [H, W, T]
            if v not in ref_cache:  # the unstylized view never changes: its features are computed once
                ref_cache[v] = reference_features(cache.render(v, base_sh0, base_shN), backbone)
            parts = view_losses(cache.render(v, s0, sN), None, cov_cache[v], backbone, style_feats,
                                config.style_weight, config.content_weight, config.tv_weight,
                                ref_feats=ref_cache[v])
            loss = loss + sum(parts.values())
        opt.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
            opt.step()
        losses.append(float(loss.detach()))
        if callback is not None:
            callback(step + 1, config.iters, losses[-1], render_now)

    # 4. colour transfer after: the stylized renders take the style's exact colour statistics
    with torch.no_grad():
        s0, sN = full_sh()
        if config.color_transfer:
            for t, views in zip(targets, target_views):
                s0, sN = _color_transfer(cache, s0, sN, t, views[:: max(1, len(views) // 8)],
                                           config.color_transfer_floor)
        # write back only the selected rows, so the rest stays bitwise the input
        out0, outN = scene.sh0.clone(), scene.shN.clone()
        out0[sel_idx], outN[sel_idx] = s0[sel_idx], sN[sel_idx]
    result_scene = scene.clone()
    result_scene.sh0, result_scene.shN = out0, outN
    seconds = time.perf_counter() - t0
    logger.info("stylized %d objects (%d Gaussians) in %.1f s", len(targets), len(sel_idx), seconds)
    return StylizeResult(result_scene, losses, seconds, stopped)
