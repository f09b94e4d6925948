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
from .atomic import atomic_output_dir, check_parent
from .backbones import judge_backbone, load_backbone
from .blend_cache import BlendCache
from .gaussians import BACKGROUND_LABEL
from .labels import labels_from_masks, selection_coverage
from .metrics import OWN_PIXEL, leakage, own_pixels, style_distances, warp_error
from .scenes import LoadedScene, load_scene
from .selection import box_overreach, scene_segments, select_box, select_click, select_object
from .stylize import StyleTarget, StylizeConfig, load_style, style_features, stylize

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
        parts = []
        if self.object is not None:
            parts.append(str(self.object))
        if self.box is not None:
            parts.append("box(" + ",".join(f"{v:g}" for v in self.box) + ")")
        if self.click is not None:
            parts.append(f"click(view={self.click[0]}, x={self.click[1]}, y={self.click[2]})")
        return " + ".join(parts) or "a target with no object, box or click"


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


MAX_TARGETS = 16  # objects (or boxes, clicks) in one run
MAX_STYLES_PER_TARGET = 8


def _check_spec(spec: TargetSpec) -> None:
    if sum(x is not None for x in (spec.object, spec.box, spec.click)) != 1:
        raise ValueError(f"{spec.describe()}: give exactly one of an object, a box or a click")
    if not spec.styles:
        raise ValueError(f"{spec.describe()}: no style image given")
    if len(spec.styles) > MAX_STYLES_PER_TARGET:
        raise ValueError(f"{spec.describe()}: {len(spec.styles)} styles, at most {MAX_STYLES_PER_TARGET} per object")


def check_targets(specs: Sequence[TargetSpec]) -> None:
    """Cheap checks of a plan before any heavy work: its size, each target's kind, and that every style decodes."""
    if len(specs) > MAX_TARGETS:
        raise ValueError(f"{len(specs)} objects in one run: at most {MAX_TARGETS}")
    for spec in specs:
        _check_spec(spec)
        for s in spec.styles:
            load_style(s)


def resolve_targets(loaded: LoadedScene, specs: Sequence[TargetSpec], cache: BlendCache | None) -> list[StyleTarget]:
    """Selections + decoded style images for each spec (errors name the offending object or file)."""
    targets = []
    segments = None  # one segmentation of an unlabelled scene serves every click
    for spec in specs:
        _check_spec(spec)
        styles = [load_style(s) for s in spec.styles]
        name, notes = spec.describe(), []
        if spec.object is not None:
            mask = select_object(loaded.scene, spec.object)
            name = loaded.scene.object_names[loaded.scene.object_id(spec.object)]
        elif spec.box is not None:
            mask = select_box(loaded.scene, spec.box)
            big = int(box_overreach(loaded.scene, spec.box).sum())
            if big:
                notes.append(f"left out {big} Gaussians centred in the box whose footprint reaches far outside it")
        else:
            view, x, y = spec.click
            if cache is None or not 0 <= view < len(cache):
                raise ValueError(f"click on view {view}: the scene has {len(loaded.cameras)} views")
            if segments is None and not (loaded.scene.labels != BACKGROUND_LABEL).any():
                segments = scene_segments(loaded.scene)
            mask, oid = select_click(loaded.scene, cache[view].weights, cache.width, x, y, segments)
            if oid >= 0:
                name = loaded.scene.object_names.get(oid, name)
            else:
                notes.append("unlabelled scene: the 3D segment under the click (floor removed, then DBSCAN)")
        share = float(mask.float().mean())
        if share > 0.5:
            notes.append(f"selects {share:.0%} of the scene's Gaussians")
        for note in notes:
            logger.warning("%s: %s", name, note)
        targets.append(StyleTarget(name, mask, styles, [Path(str(s)).name for s in spec.styles], notes))
    return targets


def _consistency(cache: BlendCache, cameras, renders, region) -> dict[str, tuple[float | None, int]]:
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
    if not specs:
        raise ValueError("nothing to stylize: give at least one --object/--box with a --style")
    check_targets(specs)
    check_parent(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not options.overwrite:
        raise ValueError(f"output folder {out_dir} is not empty (use --overwrite to replace it)")

    # 1. scene
    t = time.perf_counter()
    progress("scene", 0.0, f"loading scene {options.scene}")
    loaded = load_scene(options.scene, options.size)
    scene = loaded.scene
    cams = loaded.cameras
    for spec in specs:  # unknown names, empty boxes and clicks off the views fail before the expensive caching
        if spec.object is not None:
            scene.object_id(spec.object)
        elif spec.box is not None:
            select_box(scene, spec.box, clean=False)
        elif spec.click is not None:
            view, x, y = spec.click
            if not 0 <= view < len(cams):
                raise ValueError(f"click on view {view}: the scene has {len(cams)} views (0..{len(cams) - 1})")
            if not (0 <= x < cams.width and 0 <= y < cams.height):
                raise ValueError(f"click at pixel ({x}, {y}) is outside the {cams.width}x{cams.height} views "
                                 f"(--size {options.size})")
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
                     "notes": tg.notes, **o} for tg, o in zip(targets, per_object)],
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
    """(metrics, per-object style metrics, renders before, renders after) over every cached view.

    A metric that cannot be measured is None, with its reason under ``metrics["unmeasured"]``; ``metrics["pixels"]``
    says how many pixels (or views) each one was measured on.
    """
    before = [cache.render(v, scene_before.sh0, scene_before.shN) for v in range(len(cache))]
    after = [cache.render(v, scene_after.sh0, scene_after.shN) for v in range(len(cache))]
    selected = torch.stack([tg.mask for tg in targets]).any(0)
    H, W = cache.height, cache.width
    region = [own_pixels(cache, v, selected).reshape(H, W) for v in range(len(cache))]
    metrics = leakage(cache, before, after, selected)
    pixels, unmeasured = metrics["pixels"], metrics["unmeasured"]
    for tag, renders in (("", after), ("_unstylized", before)):
        for gap_name, (rmse, n) in _consistency(cache, cameras, renders, region).items():
            key = f"consistency_{gap_name}_rmse{tag}"
            metrics[key], pixels[key] = rmse, n
            if rmse is None:
                unmeasured[key] = ("no pixel of the selection is seen in two views "
                                   f"{1 if gap_name == 'short' else 7} apart (with known depth)")
    per_object = _style_metrics(cache, targets, before, after, backbone, judge, cfg)
    for key in ("nnfm_before", "nnfm_after", "judge_nnfm_before", "judge_nnfm_after", "judge_gram_before",
                "judge_gram_after"):
        vals = [o[key] for o in per_object if o[key] is not None]
        metrics[key] = sum(vals) / len(vals) if vals else None
        pixels[key] = sum(o["pixels"] for o in per_object)
        if not vals:
            unmeasured[key] = "no selected object covers 16 pixels of any view"
    return metrics, per_object, before, after


def _style_metrics(cache, targets, before, after, backbone, judge, cfg, max_views: int = 8) -> list[dict]:
    out = []
    for tg in targets:
        covs = [selection_coverage(cache[v].weights, tg.mask).reshape(cache.height, cache.width)
                for v in range(len(cache))]
        views = [v for v in range(len(cache)) if (covs[v] >= OWN_PIXEL).sum() >= 16]
        views = views[:: max(1, len(views) // max_views)][:max_views]
        m = {"style_views": len(views), "pixels": int(sum(int((covs[v] >= OWN_PIXEL).sum()) for v in views))}
        for tag, net in (("", backbone), ("judge_", judge)):
            if not views:
                m.update({f"{tag}{k}": None for k in ("nnfm_before", "nnfm_after", "gram_before", "gram_after")})
                continue
            sf = style_features(net, tg.styles, cfg.style_long_side)
            b = style_distances(net, [before[v] for v in views], [covs[v] for v in views], sf)
            a = style_distances(net, [after[v] for v in views], [covs[v] for v in views], sf)
            m.update({f"{tag}nnfm_before": b["nnfm"], f"{tag}nnfm_after": a["nnfm"],
                      f"{tag}gram_before": b["gram"], f"{tag}gram_after": a["gram"]})
        if not views:
            m["unmeasured"] = "the object covers fewer than 16 pixels in every view"
        out.append(m)
    return out
