"""Train 3D Gaussians from a nerfstudio dataset (3DGS, Kerbl et al. 2023), small enough for a CPU.

One loop, read top to bottom: load the views (every ``holdout_every``-th one held out and never trained on),
initialise Gaussians, then per step render one random training view, take L1 + D-SSIM against its image, step
one Adam per parameter (3DGS' learning rates; the means' decays exponentially), and every few steps clone /
split / prune (``densify.py``). At the end, label every Gaussian from the dataset's instance masks by
multi-view voting and write a labelled ``.ply`` atomically.

Initialisation: when the dataset has depth maps, the depth pixels of a few training views are unprojected to
surface points coloured by their pixels (already close to the answer, so a short CPU run suffices); without
depth, points are drawn uniformly in a ball around the point the cameras look at (least-squares intersection
of their optical axes), as wide as the views are at that distance, in the images' mean colour.

Rendering is the project's torch tile rasterizer on CPU and gsplat on CUDA (``resolve_backend``); both give the
screen-space means whose gradients drive densification.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stylize3d.atomic import check_parent
from stylize3d.cameras import Cameras, unproject_depth
from stylize3d.densify import DensifyConfig, DensifyState, densify_and_prune, reset_opacities
from stylize3d.gaussians import BACKGROUND_LABEL, GaussianScene, num_sh_bases
from stylize3d.labels import labels_from_masks
from stylize3d.metrics import psnr_from_mse
from stylize3d.nerfstudio_data import NerfstudioDataset, read_dataset
from stylize3d.plane_sweep import neighbour_views, sweep_depth
from stylize3d.ply import write_ply
from stylize3d.rasterize import blend_weights, camera_center, project, rasterize_tiles, resolve_backend
from stylize3d.sh import eval_sh, rgb_to_sh0

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]  # (step, total, message)


@dataclass(frozen=True)
class ReconstructConfig:
    iters: int = 1000
    """Optimisation steps (one view each)."""
    size: int = 128
    """Training resolution: the long side of the images, in pixels (never enlarged)."""
    seed: int = 0
    """Seed for the view order, initialisation and splits."""
    holdout_every: int = 8
    """Every K-th view (0, K, 2K, ...) is held out for the PSNR, never trained on; 0 holds out nothing."""
    sh_degree: int = 3
    """SH degree of the result; the active degree grows by one every ``sh_degree_interval`` steps."""
    sh_degree_interval: int = 300
    """Steps between SH degree increases (3DGS: 1000 of 30k)."""
    init_points: int = 6000
    """Initial Gaussians (from depth pixels, or random in the cameras' focus region without depth)."""
    init_views: int = 8
    """Training views whose depth maps (or stereo depth, without them) seed the initial points."""
    stereo_init: bool = True
    """Without a point cloud or depth maps, seed the points by plane-sweep stereo (else random in a ball)."""
    init_opacity: float = 0.5
    """Initial opacity (3DGS uses 0.1 for its sparse SfM points; depth points already cover the surfaces)."""
    means_lr: float = 1.6e-4
    """Learning rate of the means, times the scene scale; decays exponentially to ``means_lr_final``."""
    means_lr_final: float = 1.6e-6
    """Final learning rate of the means, times the scene scale."""
    scales_lr: float = 5e-3
    """Learning rate of the log-scales."""
    quats_lr: float = 1e-3
    """Learning rate of the quaternions."""
    opacities_lr: float = 5e-2
    """Learning rate of the opacity logits."""
    sh0_lr: float = 2.5e-3
    """Learning rate of the DC colour coefficients."""
    shN_lr: float = 2.5e-3 / 20
    """Learning rate of the higher SH coefficients."""
    ssim_weight: float = 0.2
    """Weight of D-SSIM in the loss (1 - w) * L1 + w * (1 - SSIM); 0 = plain L1."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Colour behind the Gaussians (white, like the built-in scene's images)."""
    tile_size: int = 8
    """Tile size of the torch rasterizer (8 is faster than 16 for small images on CPU)."""
    eval_every: int = 400
    """Steps between held-out PSNR log lines (0 = only before and after)."""
    label_views: int = 32
    """Training views (evenly spaced) whose instance masks vote for the labels."""
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    """Clone / split / prune schedule."""

    def __post_init__(self) -> None:
        for name in ("iters", "holdout_every", "eval_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"ReconstructConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("size", "init_points", "init_views", "sh_degree_interval", "tile_size", "label_views"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ReconstructConfig.{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.sh_degree <= 3:
            raise ValueError(f"ReconstructConfig.sh_degree must be in 0..3, got {self.sh_degree}")
        if not 0 < self.init_opacity < 1:
            raise ValueError(f"ReconstructConfig.init_opacity must be in (0, 1), got {self.init_opacity}")


# ----------------------------------------------------------------------------------------------- setup


def split_views(num_views: int, holdout_every: int) -> tuple[list[int], list[int]]:
    """(train, held-out) view indices: views 0, K, 2K, ... are held out (nerfstudio / 3DGS' ``llffhold``)."""
    test = list(range(0, num_views, holdout_every)) if holdout_every and num_views > 1 else []
    train = [i for i in range(num_views) if i not in set(test)]
    return train, test


def scene_scale(cameras: Cameras) -> float:
    """3DGS' camera extent: 1.1 x the largest distance of a camera centre from their mean."""
    centers = cameras.centers
    return 1.1 * max(float((centers - centers.mean(0)).norm(dim=1).max()), 1e-3)


def focus_point(cameras: Cameras) -> torch.Tensor:
    """[3] the point closest to all optical axes (least squares), pulled weakly towards the cameras' mean
    centre plus their mean viewing direction times the scene scale, so parallel axes stay well posed."""
    centers = cameras.centers.double()  # [C, 3]
    dirs = F.normalize(torch.linalg.inv(cameras.viewmats.double())[:, :3, 2], dim=-1)  # [C, 3] optical axes
    P = torch.eye(3, dtype=torch.float64) - dirs[:, :, None] * dirs[:, None, :]  # [C, 3, 3] projections
    prior = centers.mean(0) + F.normalize(dirs.mean(0), dim=0) * scene_scale(cameras)
    reg = 1e-6 * len(cameras)
    A = P.sum(0) + reg * torch.eye(3, dtype=torch.float64)
    b = (P @ centers[:, :, None]).sum(0)[:, 0] + reg * prior
    return torch.linalg.solve(A, b).float()


def _focus_ball(cams: Cameras) -> tuple[torch.Tensor, float, float]:
    """(centre, radius, median camera distance) of the region the cameras look at."""
    center = focus_point(cams)
    dist = float((cams.centers - center).norm(dim=1).median())
    half_fov = math.atan(0.5 * max(cams.width / cams.Ks[:, 0, 0].min(), cams.height / cams.Ks[:, 1, 1].min()))
    return center, dist * math.tan(half_fov), dist


def _pixels_to_points(data: NerfstudioDataset, views: list[int], depths: list[torch.Tensor]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    pts, rgb = [], []
    for v, depth in zip(views, depths):
        valid = depth > 0  # [H, W]
        pts.append(unproject_depth(depth, data.cameras.Ks[v], torch.linalg.inv(data.cameras.viewmats[v]))[valid])
        rgb.append(data.images[v][valid])
    return torch.cat(pts), torch.cat(rgb)


def _remove_outliers(pts: torch.Tensor, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """open3d statistical outlier removal (stereo mismatches float in free space)."""
    import open3d as o3d

    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts.double().numpy()))
    _, keep = pcd.remove_statistical_outlier(nb_neighbors=16, std_ratio=1.5)
    keep = torch.as_tensor(np.asarray(keep, dtype=np.int64))
    return pts[keep], rgb[keep]


def _init_points(data: NerfstudioDataset, train: list[int], cfg: ReconstructConfig,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(means [N, 3], rgb [N, 3], where they came from) for the initial Gaussians, from the best source the dataset offers: its
    ``ply_file_path`` point cloud (COLMAP's), its depth maps, plane-sweep stereo on its images, else random."""
    cams = data.cameras
    views = [train[round(i)] for i in np.linspace(0, len(train) - 1, min(cfg.init_views, len(train)))]
    found, source = None, ""
    if data.points is not None and len(data.points[0]) >= 4:
        found, source = data.points, "the dataset's point cloud (ply_file_path)"
    elif data.depths is not None:
        found, source = _pixels_to_points(data, views, [data.depths[v] for v in views]), \
            f"the depth maps of {len(views)} views"
        if len(found[0]) < 4:
            logger.warning("init: the depth maps hold fewer than 4 valid pixels; trying stereo")
            found = None
    center, radius, dist = _focus_ball(cams)
    if found is None and len(train) >= 2 and cfg.stereo_init:
        bg = torch.tensor(cfg.background)
        depths = [sweep_depth(data.images, cams, v, neighbour_views(cams, v, 4, train), near=0.3 * dist,
                              far=dist + 2 * radius, background=bg) for v in views]
        pts, rgb = _pixels_to_points(data, views, depths)
        if len(pts) >= 64:
            found, source = _remove_outliers(pts, rgb), f"plane-sweep stereo on {len(views)} views"
    if found is not None:
        pts, rgb = found
        pick = torch.randperm(len(pts), generator=gen)[:cfg.init_points]
        logger.info("init: %d points from %s", len(pick), source)
        return pts[pick].float(), rgb[pick].float(), source
    dirs = F.normalize(torch.randn(cfg.init_points, 3, generator=gen), dim=-1)
    pts = center + dirs * radius * torch.rand(cfg.init_points, 1, generator=gen) ** (1 / 3)
    mean_rgb = torch.stack([im.reshape(-1, 3).mean(0) for im in data.images]).mean(0)
    logger.warning("init: no points, depth or usable stereo: %d random points in a ball of radius %.3g around %s "
                   "(expect a slow start)", cfg.init_points, radius, [round(float(c), 3) for c in center])
    return pts, mean_rgb.expand(cfg.init_points, 3).clone(), "random points (no point cloud, depth or stereo)"


def _knn_log_scales(means: torch.Tensor, k: int = 3) -> torch.Tensor:
    """[N] log of the mean distance to the ``k`` nearest other points (3DGS' initial isotropic scale)."""
    from scipy.spatial import cKDTree

    pts = means.double().numpy()
    dist, _ = cKDTree(pts).query(pts, k=min(k, len(pts) - 1) + 1)
    d = torch.from_numpy(np.atleast_2d(dist)[:, 1:].mean(1)).float()
    return torch.log(d.clamp_min(1e-7))


def init_params(data: NerfstudioDataset, train: list[int], cfg: ReconstructConfig, gen: torch.Generator,
                device: torch.device) -> tuple[torch.nn.ParameterDict, str]:
    """(initial Gaussian parameters, their source): isotropic, identity rotation, opacity ``init_opacity``, DC
    colour only."""
    means, rgb, source = _init_points(data, train, cfg, gen)
    n = len(means)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    tensors = {
        "means": means,  # [N, 3]
        "scales": _knn_log_scales(means)[:, None].repeat(1, 3),  # [N, 3]
        "quats": quats,  # [N, 4]
        "opacities": torch.full((n,), math.log(cfg.init_opacity / (1 - cfg.init_opacity))),  # [N]
        "sh0": rgb_to_sh0(rgb)[:, None, :],  # [N, 1, 3]
        "shN": torch.zeros(n, num_sh_bases(cfg.sh_degree) - 1, 3),  # [N, K, 3]
    }
    return torch.nn.ParameterDict({k: torch.nn.Parameter(v.float().to(device)) for k, v in tensors.items()}), source


def make_optimizers(params: torch.nn.ParameterDict, cfg: ReconstructConfig, scale: float
                    ) -> dict[str, torch.optim.Adam]:
    """One Adam per parameter (so densification can edit each one's moments), eps 1e-15 as 3DGS."""
    lrs = {"means": cfg.means_lr * scale, "scales": cfg.scales_lr, "quats": cfg.quats_lr,
           "opacities": cfg.opacities_lr, "sh0": cfg.sh0_lr, "shN": cfg.shN_lr}
    return {k: torch.optim.Adam([params[k]], lr=lrs[k], eps=1e-15) for k in params.keys()}


# ------------------------------------------------------------------------------------------ render & loss


def render_train(params: torch.nn.ParameterDict, cameras: Cameras, index: int, sh_degree: int,
                 background: torch.Tensor, backend: str, tile_size: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rgb [H, W, 3], means2d with a retained grad [(1,) N, 2], radii [N]) of one view."""
    viewmat, K = cameras.viewmats[index].to(background), cameras.Ks[index].to(background)
    W, H = cameras.width, cameras.height
    coeffs = torch.cat([params["sh0"], params["shN"]], dim=1)[:, :num_sh_bases(sh_degree)]  # [N, B, 3]
    if backend == "gsplat":
        from gsplat import rasterization

        rgb, _, info = rasterization(params["means"], params["quats"], torch.exp(params["scales"]),
                                     torch.sigmoid(params["opacities"]), coeffs, viewmat[None], K[None], W, H,
                                     sh_degree=sh_degree, backgrounds=background[None], packed=False)
        if info["means2d"].requires_grad:
            info["means2d"].retain_grad()
        return rgb[0], info["means2d"], info["radii"][0]
    proj = project(params["means"], params["quats"], params["scales"], viewmat, K, W, H)
    if proj.means2d.requires_grad:
        proj.means2d.retain_grad()
    colors = eval_sh(coeffs, params["means"] - camera_center(viewmat))  # [N, 3]
    out = rasterize_tiles(proj, colors, torch.sigmoid(params["opacities"]), W, H, background, tile_size)
    return out.rgb, proj.means2d, proj.radii


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of two [H, W, 3] images in [0, 1] with a Gaussian window (as 3DGS' loss)."""
    x = torch.arange(window, dtype=a.dtype, device=a.device) - window // 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(3, 1, window, window)
    a, b = a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None]  # [1, 3, H, W]

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, padding=window // 2, groups=3)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean()


@torch.no_grad()
def evaluate(params: torch.nn.ParameterDict, data: NerfstudioDataset, views: list[int], sh_degree: int,
             background: torch.Tensor, backend: str, tile_size: int) -> float:
    """PSNR (dB) over ``views``, all pixels pooled."""
    if not views:
        return float("nan")
    mse = 0.0
    for v in views:
        rgb, _, _ = render_train(params, data.cameras, v, sh_degree, background, backend, tile_size)
        mse += float(((rgb.clamp(0, 1) - data.images[v].to(rgb)) ** 2).mean())
    mse /= len(views)
    return psnr_from_mse(mse)


# ------------------------------------------------------------------------------------------------ labels


def label_scene(scene: GaussianScene, cameras: Cameras, masks: list[torch.Tensor], max_views: int = 32
                ) -> torch.Tensor:
    """[N] labels by multi-view voting of the instance masks through each view's blend weights (on CPU).

    The weights are what ``BlendCache`` holds, built here without its transposes and at most ``max_views``
    views (evenly spaced) so memory stays bounded on long captures.
    """
    scene = scene.to("cpu")
    pick = sorted({round(i) for i in np.linspace(0, len(cameras) - 1, min(max_views, len(cameras)))})
    opacities = torch.sigmoid(scene.opacities)
    weights = []
    for i in pick:
        proj = project(scene.means, scene.quats, scene.scales, cameras.viewmats[i], cameras.Ks[i],
                       cameras.width, cameras.height)
        weights.append(blend_weights(proj, opacities, cameras.width, cameras.height).weights)
    return labels_from_masks(weights, [masks[i].long() for i in pick], scene.num_gaussians)


def object_names_for(labels: torch.Tensor, names: dict[int, str] | None) -> dict[int, str]:
    """The dataset's names for the labels in use (plus background), ``object <id>`` where it has none."""
    names = dict(names or {})
    out = {BACKGROUND_LABEL: names.get(BACKGROUND_LABEL, "background")}
    for oid in sorted((set(labels.unique().tolist()) | set(names)) - {BACKGROUND_LABEL}):
        out[oid] = names.get(oid, f"object {oid}")
    return out


# ----------------------------------------------------------------------------------------------- training

LOW_PSNR_DB = 20.0  # below this a held-out view is visibly wrong: say so


def low_psnr_advice(psnr: float, init_source: str, steps: int) -> str:
    """What to tell a user whose reconstruction stayed blurry, from what it started from."""
    tips = [f"more steps (ran {steps})"]
    if "random" in init_source:
        tips.insert(0, "a point cloud (run COLMAP, e.g. `ns-process-data images`, which writes ply_file_path) "
                       "or depth maps: the images alone gave no usable stereo")
    tips.append("more views with overlap, and a static scene with fixed exposure")
    return (f"held-out PSNR {psnr:.1f} dB is low (< {LOW_PSNR_DB:.0f} dB): the Gaussians do not match the "
            f"held-out views well; started from {init_source}. What would help: " + "; ".join(tips) + ".")



def train(data: NerfstudioDataset, cfg: ReconstructConfig, device: torch.device | str = "cpu",
          progress: Progress | None = None, should_stop: Callable[[], bool] | None = None
          ) -> tuple[GaussianScene, dict]:
    """Optimise Gaussians on ``data``'s training views; returns the labelled scene and stats."""
    t_start = time.perf_counter()
    device = torch.device(device)
    backend = resolve_backend("auto", device)
    gen = torch.Generator().manual_seed(cfg.seed)
    bg = torch.tensor(cfg.background, dtype=torch.float32, device=device)
    train_views, test_views = split_views(len(data), cfg.holdout_every)
    if not train_views:
        raise ValueError(f"{data.root}: no training views left after holding out every {cfg.holdout_every}th")
    images = [im.to(device) for im in data.images]

    # 1. initial Gaussians and optimizers
    scale = scene_scale(data.cameras)
    params, init_source = init_params(data, train_views, cfg, gen, device)
    optimizers = make_optimizers(params, cfg, scale)
    state = DensifyState.zeros(len(params["means"]), device)
    dcfg = cfg.densify
    densify_until = int(dcfg.stop_fraction * cfg.iters)
    lr_decay = (cfg.means_lr_final / cfg.means_lr) ** (1.0 / max(cfg.iters, 1))
    psnr_init = evaluate(params, data, test_views, 0, bg, backend, cfg.tile_size)
    logger.info("reconstruct: %d training / %d held-out views at %dx%d, %d Gaussians, scene scale %.3g, "
                "held-out PSNR %.2f dB at init, backend %s", len(train_views), len(test_views),
                data.cameras.width, data.cameras.height, len(params["means"]), scale, psnr_init, backend)

    # 2. optimisation: one random training view per step
    order: list[int] = []
    step, loss_ema, stopped = 0, float("nan"), False
    for step in range(1, cfg.iters + 1):
        if should_stop is not None and should_stop():
            stopped = True
            step -= 1
            logger.info("reconstruct: stopped at step %d of %d", step, cfg.iters)
            break
        if not order:
            order = [train_views[i] for i in torch.randperm(len(train_views), generator=gen).tolist()]
        v = order.pop()
        degree = min(cfg.sh_degree, (step - 1) // cfg.sh_degree_interval)
        rgb, means2d, radii = render_train(params, data.cameras, v, degree, bg, backend, cfg.tile_size)
        loss = (1 - cfg.ssim_weight) * (rgb - images[v]).abs().mean()
        if cfg.ssim_weight > 0:
            loss = loss + cfg.ssim_weight * (1 - ssim(rgb, images[v]))
        loss.backward()
        loss_val = float(loss.detach())
        loss_ema = loss_val if math.isnan(loss_ema) else 0.9 * loss_ema + 0.1 * loss_val
        if step <= densify_until:
            state.update(means2d.grad.reshape(-1, 2), radii, data.cameras.width, data.cameras.height)
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        optimizers["means"].param_groups[0]["lr"] *= lr_decay

        # 3. densify / prune, optional opacity reset
        if dcfg.start <= step <= densify_until and step % dcfg.every == 0:
            densify_and_prune(params, optimizers, state, dcfg, scale, gen)
        if dcfg.reset_every and step <= densify_until and step % dcfg.reset_every == 0:
            reset_opacities(params, optimizers, 2 * dcfg.prune_opacity)

        msg = f"loss {loss_ema:.4f}, {len(params['means'])} Gaussians"
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.iters and test_views:
            p = evaluate(params, data, test_views, degree, bg, backend, cfg.tile_size)
            msg += f", held-out PSNR {p:.2f} dB"
            logger.info("step %d/%d: %s", step, cfg.iters, msg)
        if progress is not None:
            progress(step, cfg.iters, msg)
    t_train = time.perf_counter() - t_start

    # 4. final numbers, labels from the instance masks, the scene
    degree = min(cfg.sh_degree, max(step - 1, 0) // cfg.sh_degree_interval)
    psnr_final = evaluate(params, data, test_views, degree, bg, backend, cfg.tile_size)
    with torch.no_grad():
        shN = params["shN"].detach().clone()
        shN[:, num_sh_bases(degree) - 1:] = 0  # bands never switched on carry no signal
        scene = GaussianScene(means=params["means"].detach(), scales=params["scales"].detach(),
                              quats=params["quats"].detach(), opacities=params["opacities"].detach(),
                              sh0=params["sh0"].detach(), shN=shN,
                              labels=torch.full((len(params["means"]),), BACKGROUND_LABEL, dtype=torch.long,
                                                device=device)).to("cpu")
    if data.masks is not None:
        t0 = time.perf_counter()
        scene.labels = label_scene(scene, data.cameras[train_views], [data.masks[v] for v in train_views],
                                   cfg.label_views)
        logger.info("labels from the instance masks in %.1f s", time.perf_counter() - t0)
    scene.object_names = object_names_for(scene.labels, data.object_names)
    stats = {
        "psnr": None if math.isnan(psnr_final) else round(psnr_final, 3),
        "psnr_init": None if math.isnan(psnr_init) else round(psnr_init, 3),
        "seconds": round(time.perf_counter() - t_start, 2),
        "train_seconds": round(t_train, 2),
        "num_gaussians": scene.num_gaussians,
        "iters": step,
        "stopped_early": stopped,
        "train_views": len(train_views),
        "held_out_views": len(test_views),
        "image_size": [data.cameras.width, data.cameras.height],
        "backend": backend,
        "labelled": data.masks is not None,
    }
    logger.info("reconstruct: held-out PSNR %.2f -> %.2f dB, %d Gaussians, %.1f s", psnr_init, psnr_final,
                scene.num_gaussians, stats["seconds"])
    stats["init"] = init_source
    if stats["psnr"] is not None and stats["psnr"] < LOW_PSNR_DB:
        stats["advice"] = low_psnr_advice(stats["psnr"], init_source, step)
        logger.warning("%s", stats["advice"])
    return scene, stats


def resolve_device(name: str = "auto") -> str:
    """``auto`` -> cuda when available, else cpu; a CUDA device asked for without CUDA is an error."""
    device = ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    return device


def reconstruct(dataset_dir: str | os.PathLike, out_ply: str | os.PathLike,
                config: ReconstructConfig = ReconstructConfig(), device: torch.device | str = "cpu",
                progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> dict:
    """Train Gaussians on a nerfstudio dataset and write them, labelled, to ``out_ply`` (atomically).

    ``progress(step, total, message)`` after every step; ``should_stop()`` ends training early (the result so
    far is still labelled and written). Returns stats: psnr (held-out, dB), seconds, num_gaussians, ...
    """
    out_ply = Path(out_ply)
    if out_ply.suffix.lower() != ".ply":
        raise ValueError(f"output {out_ply} must end in .ply")
    if out_ply.is_dir():
        raise ValueError(f"output {out_ply} is a folder")
    check_parent(out_ply)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} requested but CUDA is not available")
    torch.manual_seed(config.seed)
    data = read_dataset(dataset_dir, downscale_to=config.size)
    scene, stats = train(data, config, device, progress, should_stop)
    write_ply(out_ply, scene)
    stats["out"] = str(out_ply)
    return stats
