"""Time one appearance-optimisation step (forward + backward of an L2 loss w.r.t. SH colours) two ways:
re-rasterizing with the torch tile rasterizer, and re-rendering from the blend-weight cache.

    python bench/bench_cache.py [--num-gaussians 5000] [--size 128] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import torch

from stylize3d.blend_cache import BlendCache
from stylize3d.cameras import Cameras, orbit_cameras
from stylize3d.gaussians import GaussianScene
from stylize3d.rasterize import camera_center, project, rasterize_tiles
from stylize3d.sh import eval_sh

logger = logging.getLogger("bench_cache")


def random_scene(num_gaussians: int, seed: int = 0, sh_degree: int = 3) -> GaussianScene:
    """A blob of Gaussians in the unit ball, sized so that ~5k of them cover a 128^2 view with some overlap."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(num_gaussians, 3, generator=g), dim=-1)
    means = dirs * torch.rand(num_gaussians, 1, generator=g) ** (1 / 3)
    k = (sh_degree + 1) ** 2 - 1
    return GaussianScene(
        means=means,
        scales=torch.log(torch.rand(num_gaussians, 3, generator=g) * 0.04 + 0.01),
        quats=torch.randn(num_gaussians, 4, generator=g),
        opacities=torch.randn(num_gaussians, generator=g) + 1.0,
        sh0=torch.randn(num_gaussians, 1, 3, generator=g) * 0.5,
        shN=torch.randn(num_gaussians, k, 3, generator=g) * 0.05,
    )


def _time_steps(step, repeats: int) -> tuple[float, float]:
    """Median (forward, backward) seconds of ``step() -> loss`` after one warm-up call."""
    fwd, bwd = [], []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        loss = step()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if i > 0:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
    return statistics.median(fwd), statistics.median(bwd)


def run_benchmark(scene: GaussianScene, cameras: Cameras, repeats: int = 5, view: int = 0) -> dict:
    """Per-step timings of both paths on ``cameras[view]``; the scene's geometry is held fixed."""
    W, H = cameras.width, cameras.height
    viewmat, K = cameras.viewmats[view], cameras.Ks[view]
    sh0 = scene.sh0.clone().requires_grad_()
    shN = scene.shN.clone().requires_grad_()
    target = torch.rand(H, W, 3, generator=torch.Generator().manual_seed(1))
    opacities = torch.sigmoid(scene.opacities)
    dirs = scene.means - camera_center(viewmat)

    def raster_step() -> torch.Tensor:
        proj = project(scene.means, scene.quats, scene.scales, viewmat, K, W, H)
        colors = eval_sh(torch.cat([sh0, shN], dim=1), dirs)
        return ((rasterize_tiles(proj, colors, opacities, W, H).rgb - target) ** 2).mean()

    t0 = time.perf_counter()
    cache = BlendCache.build(scene, cameras[view])
    build_s = time.perf_counter() - t0

    def cache_step() -> torch.Tensor:
        return ((cache.render(0, sh0, shN) - target) ** 2).mean()

    with torch.no_grad():
        diff = float((cache.render(0, sh0, shN) - rasterize_tiles(
            project(scene.means, scene.quats, scene.scales, viewmat, K, W, H),
            eval_sh(torch.cat([sh0, shN], dim=1), dirs), opacities, W, H).rgb).abs().max())
    raster_f, raster_b = _time_steps(raster_step, repeats)
    cache_f, cache_b = _time_steps(cache_step, repeats)
    return {
        "num_gaussians": scene.num_gaussians, "width": W, "height": H, "repeats": repeats,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "rasterize_forward_s": raster_f, "rasterize_backward_s": raster_b, "rasterize_step_s": raster_f + raster_b,
        "cache_forward_s": cache_f, "cache_backward_s": cache_b, "cache_step_s": cache_f + cache_b,
        "cache_build_s": build_s, "cache_nnz": cache.nnz, "cache_mb": cache.memory_bytes() / 2**20,
        "max_abs_diff": diff, "speedup": (raster_f + raster_b) / (cache_f + cache_b),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-gaussians", type=int, default=5000)
    parser.add_argument("--size", type=int, default=128, help="image width and height")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    scene = random_scene(args.num_gaussians, args.seed)
    cameras = orbit_cameras(torch.zeros(3), 3.0, 1, args.size, args.size)
    r = run_benchmark(scene, cameras, args.repeats)
    logger.info("%d Gaussians, %dx%d, %d threads, median of %d steps (torch %s)", r["num_gaussians"], r["width"],
                r["height"], r["threads"], r["repeats"], r["torch"])
    logger.info("%-22s %10s %10s %10s", "path", "fwd ms", "bwd ms", "step ms")
    for name in ("rasterize", "cache"):
        logger.info("%-22s %10.1f %10.1f %10.1f", "rasterize_tiles" if name == "rasterize" else "blend cache",
                    1e3 * r[f"{name}_forward_s"], 1e3 * r[f"{name}_backward_s"], 1e3 * r[f"{name}_step_s"])
    logger.info("speedup %.1fx (goal >= 5x); cache build %.2f s, %d weights, %.1f MB; max |diff| %.2e",
                r["speedup"], r["cache_build_s"], r["cache_nnz"], r["cache_mb"], r["max_abs_diff"])
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(r, indent=2))
        logger.info("wrote %s", args.json)


if __name__ == "__main__":
    main()
