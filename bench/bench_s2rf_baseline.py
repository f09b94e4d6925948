"""Ours vs an S2RF-style baseline on the same scene, object, style image and step budget.

    python bench/bench_s2rf_baseline.py [--object cube] [--iters N] [--json out.json]

S2RF-style (arXiv 2309.01252): every Gaussian's appearance is trainable and the style loss is applied to the
2D-masked renders of the object. Ours: only the object's Gaussians (selected in 3D) are trainable. Both use
the same cached renderer, backbone, losses and step count; colour transfer is off in both for a like-for-like
comparison (ours with its default colour transfer is reported too). Exit code 1 if ours loses on leakage or
on consistency.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--object", default="cube")
    ap.add_argument("--style", default=str(ROOT / "assets/styles/mosaic.png"))
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--size", type=int, default=None, help="render size (default: the CLI default)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from stylize3d.backbones import judge_backbone, load_backbone
    from stylize3d.blend_cache import BlendCache
    from stylize3d.pipeline import RunOptions, TargetSpec, evaluate, resolve_targets
    from stylize3d.scenes import load_scene
    from stylize3d.stylize import StylizeConfig, stylize

    loaded = load_scene("builtin", args.size or RunOptions().size)
    cache = BlendCache.build(loaded.scene, loaded.cameras, loaded.background)
    targets = resolve_targets(loaded, [TargetSpec(styles=[args.style], object=args.object)], cache)
    backbone = load_backbone("auto")
    judge = judge_backbone(backbone.name)
    base = StylizeConfig() if args.iters is None else replace(StylizeConfig(), iters=args.iters)
    everything = torch.ones(loaded.scene.num_gaussians, dtype=torch.bool)
    runs = {
        "ours (3D selection)": (replace(base, color_transfer=False), None),
        "S2RF-style (2D mask, all trainable)": (replace(base, color_transfer=False), everything),
        "ours + colour transfer (default)": (base, None),
    }
    results = {}
    for name, (cfg, trainable) in runs.items():
        t0 = time.perf_counter()
        out = stylize(loaded.scene, cache, targets, backbone, cfg, trainable=trainable)
        seconds = time.perf_counter() - t0
        metrics, _, _, _ = evaluate(cache, loaded.cameras, loaded.scene, out.scene, targets, backbone, judge, cfg)
        changed = int((out.scene.sh0 != loaded.scene.sh0).reshape(len(everything), -1).any(1).sum())
        results[name] = {"seconds": seconds, "changed_gaussians": changed, **metrics}

    print(f"builtin scene, object {args.object}, {base.iters} iters, {len(cache)} views at {cache.width}px, "
          f"backbone {backbone.name}, judge {judge.name}")
    cols = [("seconds", "time s", "{:.1f}"), ("changed_gaussians", "changed G", "{:d}"),
            ("leakage_psnr_db", "leak PSNR dB", "{:.1f}"), ("consistency_short_rmse", "short RMSE", "{:.4f}"),
            ("consistency_long_rmse", "long RMSE", "{:.4f}"), ("nnfm_after", "NNFM after", "{:.3f}"),
            ("judge_gram_after", "judge Gram", "{:.2e}")]
    print(f"{'method':<38s}" + "".join(f"{c[1]:>14s}" for c in cols))
    for name, r in results.items():
        print(f"{name:<38s}" + "".join(f"{c[2].format(r[c[0]]):>14s}" for c in cols))
    ours, s2rf = results["ours (3D selection)"], results["S2RF-style (2D mask, all trainable)"]
    wins_leak = ours["leakage_psnr_db"] > s2rf["leakage_psnr_db"]
    holds_cons = (ours["consistency_short_rmse"] <= s2rf["consistency_short_rmse"] * 1.05
                  and ours["consistency_long_rmse"] <= s2rf["consistency_long_rmse"] * 1.05)
    print(f"ours wins on leakage: {wins_leak}; not worse on consistency (within 5%): {holds_cons}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if wins_leak and holds_cons else 1


if __name__ == "__main__":
    sys.exit(main())
