"""On CUDA: render the same scene with gsplat and with the torch tile rasterizer; print max/mean abs difference
and ms per frame of each. Exits 0 with "skipped: no CUDA" elsewhere.

    python bench/gpu_check.py [--num-gaussians 20000] [--size 256] [--json out.json]

Two opacity settings: "low" (opacities <= 0.3), where both renderers follow identical rules, and "full"
(the bench scene's opacities), where the known differences show (alpha clamp 0.999 in gsplat vs 0.99 here;
gsplat evaluates a Gaussian over whole tiles, the torch twin only inside its 3-sigma square).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from stylize3d.cameras import orbit_cameras
from stylize3d.rasterize import render

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cache import random_scene  # noqa: E402

logger = logging.getLogger("gpu_check")


def _ms_per_frame(fn, frames: int) -> float:
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(frames):
        fn()
    torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - t0) / frames


def check(scene, cameras, label: str) -> dict:
    """Torch path first, so its numbers are out even if gsplat then fails to build or run."""
    bg = torch.tensor([0.1, 0.2, 0.3], device="cuda")
    outs, grads, ms = {}, {}, {}
    for backend, frames in (("torch", 3), ("gsplat", 10)):
        sh0 = scene.sh0.detach().clone().requires_grad_()
        outs[backend] = render(replace(scene, sh0=sh0), cameras, 0, background=bg, backend=backend)
        grads[backend] = torch.autograd.grad(outs[backend].rgb.square().sum(), sh0)[0]
        with torch.no_grad():
            ms[backend] = _ms_per_frame(lambda b=backend: render(scene, cameras, 0, background=bg, backend=b), frames)
        logger.info("%-5s %-6s %.2f ms per frame", label, backend, ms[backend])
    a, b = outs["gsplat"], outs["torch"]
    r = {"label": label, "gsplat_ms": ms["gsplat"], "torch_ms": ms["torch"]}
    for name in ("rgb", "alpha", "depth"):
        d = (getattr(a, name) - getattr(b, name)).detach().abs()
        r[f"{name}_max_abs_diff"], r[f"{name}_mean_abs_diff"] = float(d.max()), float(d.mean())
    g = (grads["gsplat"] - grads["torch"]).abs()
    r["sh0_grad_max_abs_diff"], r["sh0_grad_max_abs"] = float(g.max()), float(grads["torch"].abs().max())
    logger.info("%-5s rgb max %.2e mean %.2e | alpha max %.2e | depth max %.2e | grad sh0 max %.2e (of %.2e)",
                label, r["rgb_max_abs_diff"], r["rgb_mean_abs_diff"], r["alpha_max_abs_diff"],
                r["depth_max_abs_diff"], r["sh0_grad_max_abs_diff"], r["sh0_grad_max_abs"])
    return r


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-gaussians", type=int, default=20000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not torch.cuda.is_available():
        logger.info("skipped: no CUDA")
        return 0
    logger.info("%s, torch %s, %d Gaussians at %dx%d", torch.cuda.get_device_name(), torch.__version__,
                args.num_gaussians, args.size, args.size)
    cameras = orbit_cameras(torch.zeros(3), 3.0, 1, args.size, args.size)
    scene = random_scene(args.num_gaussians).to("cuda")
    results = [check(scene, cameras, "full")]
    low = torch.rand(args.num_gaussians, generator=torch.Generator().manual_seed(2)) * 0.25 + 0.05
    scene = replace(scene, opacities=torch.logit(low).to("cuda"))
    results.append(check(scene, cameras, "low"))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
