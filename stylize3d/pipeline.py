"""One stylization run from user inputs to an export folder; shared by the command line and the studio.

Cheap validation first (style files, output folder, object names), then the heavy stages, each timed:
scene -> caching -> optimisation -> metrics -> export. Nothing is written unless the whole run succeeds.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import export
from .atomic import atomic_output_dir
from .backbones import judge_backbone, load_backbone
from .blend_cache import BlendCache
from .images import load_image
from .labels import labels_from_masks, selection_coverage
from .metrics import leakage, style_distances, warp_error
from .scenes import LoadedScene, load_scene
from .selection import select_box, select_click, select_object
from .stylize import StyleTarget, StylizeConfig, style_features, stylize

logger = logging.getLogger(__name__)

Progress = Callable[[str, float, str], None]  # (stage, fraction in [0, 1], message)


@dataclass
class TargetSpec:
    """What to stylize (exactly one of object / box / click) and with which style image(s)."""

    styles: list[str | Path]
    object: str | None = None
    box: tuple[float, ...] | None = None
    click: tuple[int, int, int] | None = None  # (view, x, y) in render pixels

    def describe(self) -> str:
        if self.object is not None:
            return str(self.object)
        if self.box is not None:
            return "box(" + ",".join(f"{v:g}" for v in self.box) + ")"
        return f"click(view={self.click[0]}, x={self.click[1]}, y={self.click[2]})"


@dataclass(frozen=True)
class RunOptions:
    scene: str = "builtin"
    """'builtin', a 3DGS .ply, or a nerfstudio dataset folder."""
    size: int = 192
    """Render size (long side, pixels) for optimisation and exports."""
    backbone: str = "auto"
    """'auto' (VGG16 if its weights are local, else EfficientNet-Lite0), 'vgg16', 'effnet-lite0'."""
    backbone_weights: str | None = None
    """Path to VGG16 weights (torchvision's vgg16-397923af.pth)."""
    video: bool = True
    """Write orbit.mp4."""
    overwrite: bool = False
    """Replace a non-empty output folder."""
    stylize: StylizeConfig = field(default_factory=StylizeConfig)


def _noop(stage: str, frac: float, msg: str) -> None:
    pass


def resolve_targets(loaded: LoadedScene, specs: Sequence[TargetSpec], cache: BlendCache | None) -> list[StyleTarget]:
    """Selections + decoded style images for each spec (errors name the offending object or file)."""
    targets = []
    for spec in specs:
        if sum(x is not None for x in (spec.object, spec.box, spec.click)) != 1:
            raise ValueError(f"{spec.describe()}: give exactly one of an object, a box or a click")
        if not spec.styles:
            raise ValueError(f"{spec.describe()}: no style image given")
        styles = [load_image(s) for s in spec.styles]
        name = spec.describe()
        if spec.object is not None:
            mask = select_object(loaded.scene, spec.object)
            name = loaded.scene.object_names[loaded.scene.object_id(spec.object)]
        elif spec.box is not None:
            mask = select_box(loaded.scene, spec.box)
        else:
            view, x, y = spec.click
            if cache is None or not 0 <= view < len(cache):
                raise ValueError(f"click on view {view}: the scene has {len(loaded.cameras)} views")
            mask, oid = select_click(loaded.scene, cache[view].weights, cache.width, x, y)
            if oid >= 0:
                name = loaded.scene.object_names.get(oid, name)
        targets.append(StyleTarget(name, mask, styles, [Path(str(s)).name for s in spec.styles]))
    return targets


def _consistency(cache: BlendCache, cameras, renders, region) -> dict[str, float]:
    depths = [cache[v].depth for v in range(len(cache))]
    alphas = [cache[v].alpha for v in range(len(cache))]
    return {
        "short": warp_error(renders, depths, alphas, cameras, gap=1, region=region),
        "long": warp_error(renders, depths, alphas, cameras, gap=7, region=region),
    }


def run(specs: Sequence[TargetSpec], out_dir: str | Path, options: RunOptions = RunOptions(),
        progress: Progress = _noop, should_stop: Callable[[], bool] | None = None,
        preview: Callable[[int, torch.Tensor], None] | None = None, preview_every: int = 10,
        preview_view: int = 0) -> dict:
    """Stylize and export; returns the manifest. Raises ValueError on bad input, before writing anything.

    ``should_stop()`` ends the optimisation early (the results so far are still exported);
    ``preview(step, image [H,W,3])`` receives view ``preview_view`` every ``preview_every`` steps.
    """
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    out_dir = Path(out_dir)
    # 0. cheap checks: the style files decode, the output folder is usable
    for spec in specs:
        for s in spec.styles:
            load_image(s)
    if not specs:
        raise ValueError("nothing to stylize: give at least one --object/--box with a --style")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not options.overwrite:
        raise ValueError(f"output folder {out_dir} is not empty (use --overwrite to replace it)")

    # 1. scene
    t = time.perf_counter()
    progress("scene", 0.0, f"loading scene {options.scene}")
    loaded = load_scene(options.scene, options.size)
    scene = loaded.scene
    for spec in specs:  # unknown names and empty boxes fail before the expensive caching
        if spec.object is not None:
            scene.object_id(spec.object)
        elif spec.box is not None:
            select_box(scene, spec.box, clean=False)
    timings["scene_s"] = time.perf_counter() - t

    # 2. cache blend weights of every view (geometry is frozen from here on)
    t = time.perf_counter()
    cache = BlendCache.build(scene, loaded.cameras, loaded.background,
                             progress=lambda i, n: progress("caching", i / n, f"view {i}/{n}"))
    if loaded.masks is not None and int(scene.labels.max()) == 0:
        scene.labels = labels_from_masks([v.weights for v in cache.views], loaded.masks, scene.num_gaussians)
    timings["caching_s"] = time.perf_counter() - t

    # 3. selection, backbone, style features
    t = time.perf_counter()
    targets = resolve_targets(loaded, specs, cache)
    backbone = load_backbone(options.backbone, options.backbone_weights)
    judge = judge_backbone(backbone.name)
    logger.info("NNFM backbone: %s (judged with %s)", backbone.name, judge.name)
    timings["selection_s"] = time.perf_counter() - t

    # 4. optimisation
    t = time.perf_counter()
    cfg = options.stylize

    def on_step(step: int, total: int, loss: float, render_view) -> None:
        progress("optimisation", step / total, f"step {step}/{total} loss {loss:.4f}")
        if preview is not None and (step % preview_every == 0 or step == total):
            preview(step, render_view(preview_view))

    result = stylize(scene, cache, targets, backbone, cfg, callback=on_step, should_stop=should_stop)
    timings["optimisation_s"] = time.perf_counter() - t

    # 5. metrics
    t = time.perf_counter()
    progress("metrics", 0.0, "measuring leakage, consistency and style")
    metrics, per_object, before, after = evaluate(cache, loaded.cameras, scene, result.scene, targets, backbone, judge, cfg)
    timings["metrics_s"] = time.perf_counter() - t

    # 6. export (atomically)
    manifest = {
        "scene": loaded.source,
        "num_gaussians": scene.num_gaussians,
        "num_views": len(cache),
        "render_size": [cache.width, cache.height],
        "backbone": backbone.name,
        "judge_backbone": judge.name,
        "seed": cfg.seed,
        "settings": asdict(cfg),
        "objects": [{"name": tg.name, "gaussians": int(tg.mask.sum()), "styles": tg.style_names,
                     **o} for tg, o in zip(targets, per_object)],
        "styles": sorted({s for tg in targets for s in tg.style_names}),
        "stopped_early": result.stopped_early,
        "final_loss": result.losses[-1] if result.losses else None,
        "metrics": metrics,
        "platform": {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()},
    }
    t = time.perf_counter()
    progress("export", 0.0, f"writing {out_dir}")
    with atomic_output_dir(out_dir, overwrite=options.overwrite) as tmp:
        export.write_renders(tmp, after)
        export.write_grid(tmp, before, after)
        export.write_scene(tmp, result.scene)
        timings["export_s"] = time.perf_counter() - t
        if options.video:
            t = time.perf_counter()
            export.write_video(tmp / "orbit.mp4", after)
            timings["export_orbit_s"] = time.perf_counter() - t
        timings["total_s"] = time.perf_counter() - t_all
        timings["total_without_orbit_s"] = timings["total_s"] - timings.get("export_orbit_s", 0.0)
        manifest["timings"] = timings
        export.write_manifest(tmp, manifest)
    progress("done", 1.0, f"wrote {out_dir}")
    return manifest


@torch.no_grad()
def evaluate(cache: BlendCache, cameras, scene_before, scene_after, targets: list[StyleTarget], backbone, judge,
             cfg: StylizeConfig):
    """(metrics, per-object style metrics, renders before, renders after) over every cached view."""
    before = [cache.render(v, scene_before.sh0, scene_before.shN) for v in range(len(cache))]
    after = [cache.render(v, scene_after.sh0, scene_after.shN) for v in range(len(cache))]
    selected = torch.stack([tg.mask for tg in targets]).any(0)
    H, W = cache.height, cache.width
    region = [(selection_coverage(cache[v].weights, selected) > 0.5).reshape(H, W) for v in range(len(cache))]
    metrics = leakage(cache, before, after, selected)
    cons_after, cons_before = _consistency(cache, cameras, after, region), _consistency(cache, cameras, before, region)
    metrics.update({
        "consistency_short_rmse": cons_after["short"], "consistency_long_rmse": cons_after["long"],
        "consistency_short_rmse_unstylized": cons_before["short"],
        "consistency_long_rmse_unstylized": cons_before["long"],
    })
    per_object = _style_metrics(cache, targets, before, after, backbone, judge, cfg)
    for key in ("nnfm_before", "nnfm_after", "judge_nnfm_before", "judge_nnfm_after", "judge_gram_before",
                "judge_gram_after"):
        metrics[key] = sum(o[key] for o in per_object) / len(per_object)
    return metrics, per_object, before, after


def _style_metrics(cache, targets, before, after, backbone, judge, cfg, max_views: int = 8) -> list[dict]:
    out = []
    for tg in targets:
        covs = [selection_coverage(cache[v].weights, tg.mask).reshape(cache.height, cache.width)
                for v in range(len(cache))]
        views = [v for v in range(len(cache)) if (covs[v] > 0.5).sum() >= 16]
        views = views[:: max(1, len(views) // max_views)][:max_views]
        m = {}
        for tag, net in (("", backbone), ("judge_", judge)):
            sf = style_features(net, tg.styles, cfg.style_long_side)
            b = style_distances(net, [before[v] for v in views], [covs[v] for v in views], sf)
            a = style_distances(net, [after[v] for v in views], [covs[v] for v in views], sf)
            m.update({f"{tag}nnfm_before": b["nnfm"], f"{tag}nnfm_after": a["nnfm"],
                      f"{tag}gram_before": b["gram"], f"{tag}gram_after": a["gram"]})
        out.append(m)
    return out
