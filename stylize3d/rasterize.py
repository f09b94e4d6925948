"""Gaussian splatting for CPU and CUDA: EWA projection, a vectorised PyTorch tile rasterizer, its slow reference
twin, per-pixel blend weights, and ``render`` (gsplat on CUDA, the tile rasterizer elsewhere).

gsplat has no CPU path, so the tile rasterizer is what runs on CPU. Blending rules shared by both twins (gsplat's,
except that a Gaussian touches only pixels whose centre lies inside its square ``mean2d +- radius`` and that alpha
is clamped at 3DGS' 0.99 rather than gsplat 1.4's 0.999):
front to back by camera depth; ``alpha = min(0.99, opacity * exp(-0.5 * d^T conic d))``, skipped below 1/255
(a numerically negative quadratic form is not skipped, unlike gsplat, so results stay continuous);
``w_i = alpha_i * T_i``; a pixel stops before the Gaussian that would take T to 1e-4 or below;
``rgb = sum w_i c_i + T * background``, ``alpha = 1 - T``, ``depth = sum w_i z_i`` (unnormalised).
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylize3d.cameras import Cameras
from stylize3d.gaussians import GaussianScene
from stylize3d.sh import eval_sh

logger = logging.getLogger(__name__)

ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
T_MIN = 1e-4
BACKENDS = ("auto", "torch", "gsplat")


@dataclass
class Projection:
    """Per-Gaussian screen-space footprint for one camera (gsplat's ``fully_fused_projection`` outputs)."""

    means2d: torch.Tensor  # [N, 2] pixel coordinates (pixel (x, y) has its centre at x + 0.5, y + 0.5)
    conics: torch.Tensor  # [N, 3] inverse 2D covariance (a, b, c): [[a, b], [b, c]]
    depths: torch.Tensor  # [N] camera-space z
    radii: torch.Tensor  # [N] int32, 0 = culled

    @property
    def num_gaussians(self) -> int:
        return self.means2d.shape[0]


@dataclass
class RenderOutput:
    rgb: torch.Tensor  # [H, W, 3]
    alpha: torch.Tensor  # [H, W] accumulated opacity 1 - T
    depth: torch.Tensor  # [H, W] sum_i w_i z_i (unnormalised; see ``normalized_depth``)

    def normalized_depth(self, eps: float = 1e-6) -> torch.Tensor:
        return normalize_depth(self.depth, self.alpha, eps)


@dataclass
class BlendWeights:
    """Detached per-pixel blend weights of one view: the basis of ``BlendCache``."""

    weights: torch.Tensor  # sparse CSR [H*W, N], w_i per pixel (row = y * W + x)
    alpha: torch.Tensor  # [H, W]
    depth: torch.Tensor  # [H, W] unnormalised, like RenderOutput.depth


def normalize_depth(depth: torch.Tensor, alpha: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Expected depth ``depth / alpha`` where alpha > eps, else 0 ([H, W] -> [H, W])."""
    return torch.where(alpha > eps, depth / alpha.clamp_min(eps), torch.zeros_like(depth))


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """[N, 4] wxyz (any norm) -> [N, 3, 3] rotation matrices (gsplat's ``_quat_to_rotmat``)."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    R = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1)
    return R.reshape(quats.shape[:-1] + (3, 3))


def project(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, viewmat: torch.Tensor,
            K: torch.Tensor, width: int, height: int, near: float = 0.01, eps2d: float = 0.3) -> Projection:
    """EWA-project Gaussians (``scales`` are log-scales, ``quats`` wxyz) into one pinhole camera, like gsplat."""
    n = means.shape[0]
    for name, t, shape in (("means", means, (n, 3)), ("quats", quats, (n, 4)), ("scales", scales, (n, 3)),
                           ("viewmat", viewmat, (4, 4)), ("K", K, (3, 3))):
        if tuple(t.shape) != shape:
            raise ValueError(f"project: {name} has shape {tuple(t.shape)}, expected {shape}")
    # 1. world -> camera
    R_cw, t_cw = viewmat[:3, :3], viewmat[:3, 3]
    means_c = means @ R_cw.T + t_cw  # [N, 3]
    M = quat_to_rotmat(quats) * torch.exp(scales)[:, None, :]  # [N, 3, 3] R diag(s)
    covars_c = R_cw @ (M @ M.transpose(1, 2)) @ R_cw.T  # [N, 3, 3]
    # 2. perspective Jacobian, with gsplat's clamp of off-screen points to 1.3x the field of view
    tx, ty, tz = means_c.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    tx_c = tz * torch.clamp(tx / tz, min=-(cx / fx + 0.3 * tan_fovx), max=(width - cx) / fx + 0.3 * tan_fovx)
    ty_c = tz * torch.clamp(ty / tz, min=-(cy / fy + 0.3 * tan_fovy), max=(height - cy) / fy + 0.3 * tan_fovy)
    zeros = torch.zeros_like(tz)
    J = torch.stack([fx / tz, zeros, -fx * tx_c / (tz * tz),
                     zeros, fy / tz, -fy * ty_c / (tz * tz)], dim=-1).reshape(n, 2, 3)
    cov2d = J @ covars_c @ J.transpose(1, 2) + eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
    means2d = torch.stack([fx * tx / tz + cx, fy * ty / tz + cy], dim=-1)  # [N, 2]
    # 3. conic and 3-sigma radius
    det_raw = cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] * cov2d[:, 1, 0]
    det = det_raw.clamp_min(1e-10)
    conics = torch.stack([cov2d[:, 1, 1] / det, -0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0]) / det,
                          cov2d[:, 0, 0] / det], dim=-1)  # [N, 3]
    with torch.no_grad():
        b = 0.5 * (cov2d[:, 0, 0] + cov2d[:, 1, 1])
        radius = torch.ceil(3.0 * torch.sqrt(b + torch.sqrt(torch.clamp(b * b - det, min=0.01))))
        mx, my = means2d[:, 0], means2d[:, 1]
        visible = ((det_raw > 0) & (tz > near) & (mx + radius > 0) & (mx - radius < width)
                   & (my + radius > 0) & (my - radius < height))
        radii = torch.where(visible, radius, torch.zeros_like(radius)).to(torch.int32)
    return Projection(means2d=means2d, conics=conics, depths=tz, radii=radii)


def _check_raster_inputs(proj: Projection, colors: torch.Tensor, opacities: torch.Tensor,
                         background: torch.Tensor | None) -> torch.Tensor:
    n = proj.num_gaussians
    if colors.ndim != 2 or colors.shape[0] != n:
        raise ValueError(f"colors has shape {tuple(colors.shape)}, expected [{n}, C]")
    if tuple(opacities.shape) != (n,):
        raise ValueError(f"opacities has shape {tuple(opacities.shape)}, expected [{n}] (already activated)")
    if background is None:
        return torch.zeros(colors.shape[1], dtype=colors.dtype, device=colors.device)
    background = torch.as_tensor(background, dtype=colors.dtype, device=colors.device)
    if tuple(background.shape) != (colors.shape[1],):
        raise ValueError(f"background has shape {tuple(background.shape)}, expected [{colors.shape[1]}]")
    return background


def _tile_bins(proj: Projection, width: int, height: int, tile_size: int):
    """Gaussians intersecting each tile, front to back: (gids [P], starts [T], counts [T]) in CSR style.

    A tile gets a Gaussian when any pixel centre in it may lie in the Gaussian's square (one pixel of slack;
    the per-pixel test in ``_composite`` is exact).
    """
    tiles_x, tiles_y = -(-width // tile_size), -(-height // tile_size)
    dev = proj.means2d.device
    ids = torch.nonzero(proj.radii > 0).squeeze(1)
    ids = ids[torch.argsort(proj.depths.detach()[ids], stable=True)]
    m = proj.means2d.detach()[ids]  # [V, 2]
    r = proj.radii[ids].to(m.dtype)[:, None]
    lo = torch.ceil(m - r - 0.5).long() - 1  # [V, 2] first pixel (x, y)
    hi = torch.floor(m + r - 0.5).long() + 1
    size = torch.tensor([width, height], device=dev)
    keep = ((lo < size) & (hi >= 0) & (lo <= hi)).all(dim=1)
    ids, lo, hi = ids[keep], lo[keep], hi[keep]
    lo = torch.minimum(lo.clamp_min(0), size - 1) // tile_size
    hi = torch.minimum(hi.clamp_min(0), size - 1) // tile_size
    span = hi - lo + 1  # [V, 2] tiles in x, y
    counts_g = span[:, 0] * span[:, 1]
    g = torch.repeat_interleave(torch.arange(len(ids), device=dev), counts_g)  # [P]
    k = torch.arange(len(g), device=dev) - torch.repeat_interleave(torch.cumsum(counts_g, 0) - counts_g, counts_g)
    tile = (lo[g, 1] + k // span[g, 0]) * tiles_x + lo[g, 0] + k % span[g, 0]
    tile, order = torch.sort(tile, stable=True)  # stable: keeps depth order inside a tile
    gids = ids[g[order]]
    counts = torch.bincount(tile, minlength=tiles_x * tiles_y)
    return gids, torch.cumsum(counts, 0) - counts, counts


def _composite(proj: Projection, opacities: torch.Tensor, width: int, height: int, tile_size: int,
               chunk_elems: int = 1 << 19) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (tiles [t], gids [t, M], weights [t, P, M]) for chunks of non-empty tiles.

    Tiles are taken in decreasing order of Gaussian count and each chunk is padded to its own maximum M, so
    padding stays small; padded slots point at a dummy Gaussian N with opacity 0. P = tile_size^2 pixels,
    row-major inside the tile; pixels outside the image get zero weight. The quadratic form is split into
    per-column and per-row parts ([t, 1, ts, M] and [t, ts, 1, M]) so only a few passes touch [t, P, M]; the
    square and image-bounds tests are folded in as -inf exponents.
    """
    n, dev, dtype = proj.num_gaussians, proj.means2d.device, proj.means2d.dtype
    gids_all, starts, counts = _tile_bins(proj, width, height, tile_size)
    tiles_x, ts = -(-width // tile_size), tile_size
    params = torch.cat([proj.means2d, proj.conics, opacities.to(dtype)[:, None],
                        proj.radii.to(dtype)[:, None]], dim=1)  # [N, 7]
    params = torch.cat([params, torch.zeros_like(params[:1])])  # [N + 1, 7], dummy Gaussian N
    offs = torch.arange(ts, device=dev)
    neg_inf = torch.tensor(float("-inf"), dtype=dtype, device=dev)
    tile_order = torch.argsort(counts, descending=True, stable=True)
    tile_order = tile_order[counts[tile_order] > 0].tolist()
    i = 0
    while i < len(tile_order):
        m_max = int(counts[tile_order[i]])
        t = max(1, chunk_elems // (ts * ts * m_max))
        tiles = torch.tensor(tile_order[i:i + t], device=dev)
        i += t
        slot = torch.arange(m_max, device=dev)
        idx = (starts[tiles, None] + slot).clamp_max(len(gids_all) - 1)
        gids = torch.where(slot < counts[tiles, None], gids_all[idx], n)  # [t, M]
        mx, my, a, b, c, op, r = params[gids].unbind(-1)  # [t, M] each
        x = (tiles % tiles_x)[:, None] * ts + offs  # [t, ts] pixel columns
        y = (tiles // tiles_x)[:, None] * ts + offs  # [t, ts] pixel rows
        dx = (x.to(dtype) + 0.5)[:, :, None] - mx[:, None, :]  # [t, ts, M]
        dy = (y.to(dtype) + 0.5)[:, :, None] - my[:, None, :]
        ex = torch.where((dx.abs() <= r[:, None]) & (x < width)[:, :, None], -0.5 * a[:, None] * dx * dx, neg_inf)
        ey = torch.where((dy.abs() <= r[:, None]) & (y < height)[:, :, None], -0.5 * c[:, None] * dy * dy, neg_inf)
        # exponent [t, ts(rows), ts(cols), M] = -0.5 (a dx^2 + 2 b dx dy + c dy^2)
        expo = (ey[:, :, None] + ex[:, None]) - (b[:, None] * dx)[:, None] * dy[:, :, None]
        alpha = torch.clamp_max(op[:, None, None] * torch.exp(expo), ALPHA_MAX).reshape(len(tiles), ts * ts, -1)
        alpha = torch.where(alpha >= ALPHA_MIN, alpha, torch.zeros_like(alpha))  # [t, P, M]
        trans = torch.cumprod(1 - alpha, dim=-1)  # T after each Gaussian
        t_before = torch.cat([torch.ones_like(trans[..., :1]), trans[..., :-1]], dim=-1)
        # a pixel stops before the Gaussian that takes T to T_MIN or below (T is monotone: a prefix stays)
        w = torch.where(trans.detach() > T_MIN, alpha * t_before, torch.zeros_like(alpha))
        yield tiles, gids, w


def _tiles_to_image(x: torch.Tensor, width: int, height: int, tile_size: int) -> torch.Tensor:
    """[tiles, P, C] -> [H, W, C]."""
    tiles_x, tiles_y = -(-width // tile_size), -(-height // tile_size)
    x = x.reshape(tiles_y, tiles_x, tile_size, tile_size, -1).permute(0, 2, 1, 3, 4)
    return x.reshape(tiles_y * tile_size, tiles_x * tile_size, -1)[:height, :width]


def rasterize_tiles(proj: Projection, colors: torch.Tensor, opacities: torch.Tensor, width: int, height: int,
                    background: torch.Tensor | None = None, tile_size: int = 16) -> RenderOutput:
    """Differentiable tile rasterizer (autograd reaches means/quats/scales through ``proj``, colours, opacities).

    ``colors`` [N, C] (C = 3 for an RGB image), ``opacities`` [N] in [0, 1].
    """
    background = _check_raster_inputs(proj, colors, opacities, background)
    num_tiles = -(-width // tile_size) * -(-height // tile_size)
    P, C = tile_size * tile_size, colors.shape[1]
    ones = torch.ones_like(colors[:, :1])
    feats = torch.cat([colors, proj.depths[:, None].to(colors.dtype), ones], dim=1)  # [N, C + 2]
    feats = torch.cat([feats, torch.zeros_like(feats[:1])])  # dummy Gaussian N
    tiles_l, out_l = [], []
    for tiles, gids, w in _composite(proj, opacities, width, height, tile_size):
        tiles_l.append(tiles)
        out_l.append(torch.bmm(w, feats[gids]))  # [t, P, C + 2]: sum w c, sum w z, sum w
    acc = feats.new_zeros(num_tiles, P, C + 2)
    if tiles_l:
        acc = acc.index_put((torch.cat(tiles_l),), torch.cat(out_l))
    acc = _tiles_to_image(acc, width, height, tile_size)  # [H, W, C + 2]
    alpha = acc[..., C + 1]  # sum of weights = 1 - T (telescoping)
    rgb = acc[..., :C] + (1 - alpha)[..., None] * background
    return RenderOutput(rgb=rgb, alpha=alpha, depth=acc[..., C])


def rasterize_reference(proj: Projection, colors: torch.Tensor, opacities: torch.Tensor, width: int,
                        height: int, background: torch.Tensor | None = None, tile_size: int = 16) -> RenderOutput:
    """Slow, obvious twin of ``rasterize_tiles`` for tests: gsplat's per-pixel loop, vectorised over all pixels
    and looping over Gaussians front to back. ``tile_size`` is ignored (same signature)."""
    background = _check_raster_inputs(proj, colors, opacities, background)
    dtype, dev = proj.means2d.dtype, proj.means2d.device
    ys, xs = torch.meshgrid(torch.arange(height, device=dev, dtype=dtype) + 0.5,
                            torch.arange(width, device=dev, dtype=dtype) + 0.5, indexing="ij")
    xs, ys = xs.reshape(-1), ys.reshape(-1)  # [HW] pixel centres
    T = torch.ones_like(xs)
    done = torch.zeros_like(xs, dtype=torch.bool)
    rgb = colors.new_zeros(len(xs), colors.shape[1])
    depth = torch.zeros_like(xs)
    for i in torch.argsort(proj.depths.detach(), stable=True).tolist():
        r = float(proj.radii[i])
        if r <= 0:
            continue
        dx, dy = xs - proj.means2d[i, 0], ys - proj.means2d[i, 1]
        a, b, c = proj.conics[i]
        maha = a * dx * dx + 2 * b * dx * dy + c * dy * dy
        alpha = torch.clamp_max(opacities[i] * torch.exp(-0.5 * maha), ALPHA_MAX)
        touch = ~done & (dx.abs() <= r) & (dy.abs() <= r) & (alpha >= ALPHA_MIN)
        next_T = T * (1 - alpha)
        stop = touch & (next_T <= T_MIN)
        done = done | stop
        use = touch & ~stop
        w = torch.where(use, alpha * T, torch.zeros_like(T))
        rgb = rgb + w[:, None] * colors[i]
        depth = depth + w * proj.depths[i]
        T = torch.where(use, next_T, T)
    rgb = rgb + T[:, None] * background
    return RenderOutput(rgb=rgb.reshape(height, width, -1), alpha=(1 - T).reshape(height, width),
                        depth=depth.reshape(height, width))


@torch.no_grad()
def blend_weights(proj: Projection, opacities: torch.Tensor, width: int, height: int,
                  tile_size: int = 16) -> BlendWeights:
    """Detached per-pixel blend weights as a sparse CSR [H*W, N] matrix, so ``W @ colors`` re-renders a view."""
    n, dev = proj.num_gaussians, proj.means2d.device
    if tuple(opacities.shape) != (n,):
        raise ValueError(f"opacities has shape {tuple(opacities.shape)}, expected [{n}] (already activated)")
    tiles_x = -(-width // tile_size)
    local = torch.arange(tile_size * tile_size, device=dev)
    rows_l, cols_l, vals_l = [], [], []
    for tiles, gids, w in _composite(proj, opacities, width, height, tile_size):
        x = (tiles % tiles_x)[:, None] * tile_size + local % tile_size  # [t, P]
        y = (tiles // tiles_x)[:, None] * tile_size + local // tile_size
        ti, pi, mi = torch.nonzero(w > 0, as_tuple=True)
        rows_l.append(y[ti, pi] * width + x[ti, pi])
        cols_l.append(gids[ti, mi])
        vals_l.append(w[ti, pi, mi])
    rows = torch.cat(rows_l) if rows_l else torch.zeros(0, dtype=torch.long, device=dev)
    cols = torch.cat(cols_l) if cols_l else torch.zeros(0, dtype=torch.long, device=dev)
    vals = torch.cat(vals_l) if vals_l else torch.zeros(0, dtype=proj.means2d.dtype, device=dev)
    weights = csr_from_triplets(rows, cols, vals, (height * width, n))
    feats = torch.stack([proj.depths.to(vals.dtype), torch.ones_like(proj.depths, dtype=vals.dtype)], dim=1)
    depth, alpha = (weights @ feats).reshape(height, width, 2).unbind(-1)  # [H, W] each; alpha = sum w
    return BlendWeights(weights=weights, alpha=alpha, depth=depth)


def csr_from_triplets(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor,
                      size: tuple[int, int]) -> torch.Tensor:
    """Sparse CSR matrix from unique (row, col, value) triplets in any order."""
    order = torch.argsort(rows * size[1] + cols)
    crow = torch.zeros(size[0] + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=size[0]), 0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
        warnings.filterwarnings("ignore", message=".*[Ss]parse invariant checks are implicitly disabled.*")
        return torch.sparse_csr_tensor(crow, cols[order], vals[order], size, check_invariants=False)


def camera_center(viewmat: torch.Tensor) -> torch.Tensor:
    """[4, 4] world -> camera -> [3] camera centre in world space."""
    return -viewmat[:3, :3].T @ viewmat[:3, 3]


def gsplat_available() -> bool:
    return importlib.util.find_spec("gsplat") is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    """'auto' -> 'gsplat' on CUDA when gsplat imports, else 'torch'; refuses gsplat off CUDA."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "gsplat" if device.type == "cuda" and gsplat_available() else "torch"
    if backend == "gsplat" and device.type != "cuda":
        raise ValueError(f"backend 'gsplat' needs CUDA tensors (gsplat has no CPU path); scene is on {device}")
    return backend


def render(scene: GaussianScene, cameras: Cameras, index: int, background: torch.Tensor | None = None,
           colors: torch.Tensor | None = None, backend: str = "auto") -> RenderOutput:
    """Render view ``index``; colours default to the scene's SH seen from the camera centre.

    ``colors`` [N, 3] overrides SH (already activated). ``background`` [3] defaults to black.
    """
    if not 0 <= index < len(cameras):
        raise ValueError(f"camera index {index} out of range for {len(cameras)} cameras")
    dev, dtype = scene.means.device, scene.means.dtype
    viewmat = cameras.viewmats[index].to(device=dev, dtype=dtype)
    K = cameras.Ks[index].to(device=dev, dtype=dtype)
    W, H = cameras.width, cameras.height
    bg = torch.zeros(3, device=dev, dtype=dtype) if background is None else \
        torch.as_tensor(background, device=dev, dtype=dtype)
    if resolve_backend(backend, dev) == "gsplat":
        return _render_gsplat(scene, viewmat, K, W, H, bg, colors)
    proj = project(scene.means, scene.quats, scene.scales, viewmat, K, W, H)
    if colors is None:
        colors = eval_sh(scene.sh_coeffs, scene.means - camera_center(viewmat))
    return rasterize_tiles(proj, colors, torch.sigmoid(scene.opacities), W, H, bg)


def _render_gsplat(scene: GaussianScene, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int,
                   bg: torch.Tensor, colors: torch.Tensor | None) -> RenderOutput:
    from gsplat import rasterization

    feats, degree = (scene.sh_coeffs, scene.sh_degree) if colors is None else (colors, None)
    out, alphas, _ = rasterization(
        scene.means, scene.quats, torch.exp(scene.scales), torch.sigmoid(scene.opacities), feats,
        viewmat[None], K[None], width, height, sh_degree=degree, backgrounds=bg[None], render_mode="RGB+D",
    )
    return RenderOutput(rgb=out[0, ..., :3], alpha=alphas[0, ..., 0], depth=out[0, ..., 3])
