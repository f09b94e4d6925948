"""The 3D commands of ``pocket-studio``: ``scene objects``, ``stylize`` and ``reconstruct``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from stylize3d.pipeline import RunOptions, TargetSpec
from stylize3d.reconstruct import ReconstructConfig
from stylize3d.selection import parse_box
from stylize3d.stylize import StylizeConfig

from .cli_types import device, finite


class _Ordered(argparse.Action):
    """Keeps --object/--box/--click/--style in command-line order so each --style follows its object."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = getattr(namespace, "ordered", None) or []
        items.append((self.dest, values))
        namespace.ordered = items


def _targets(ordered: list[tuple[str, str]]) -> list[TargetSpec]:
    targets: list[TargetSpec] = []
    for kind, value in ordered:
        if kind == "style":
            if not targets:
                raise ValueError(f"--style {value}: give an --object, --box or --click before its style")
            targets[-1].styles.append(value)
        elif kind == "object":
            targets.append(TargetSpec(styles=[], object=value))
        elif kind == "box":
            targets.append(TargetSpec(styles=[], box=parse_box(value)))
        elif kind == "click":
            try:
                view, x, y = (int(v) for v in value.split(","))
            except ValueError as err:
                raise ValueError(f"--click {value!r}: expected VIEW,X,Y (three integers)") from err
            targets.append(TargetSpec(styles=[], click=(view, x, y)))
    for t in targets:
        if not t.styles:
            raise ValueError(f"{t.describe()}: no --style given for it")
    if not targets:
        raise ValueError("nothing to stylize: give at least one --object (or --box/--click) followed by --style")
    return targets


def register(sub) -> None:
    scene = sub.add_parser("scene", help="inspect scenes")
    scene.set_defaults(run=_cmd_objects)
    scene_sub = scene.add_subparsers(dest="scene_command", required=True, parser_class=type(scene))
    objects = scene_sub.add_parser("objects", help="list a scene's objects (names and ids)")
    objects.add_argument("--scene", default="builtin", help="builtin | PATH.ply | DATASET_DIR")
    objects.add_argument("--json", action="store_true", help="print JSON")

    st = sub.add_parser("stylize", help="stylize objects of a scene and export the results")
    st.set_defaults(run=_cmd_stylize)
    st.add_argument("--scene", default="builtin", help="builtin | PATH.ply | DATASET_DIR (default: builtin)")
    st.add_argument("--object", action=_Ordered, help="object name or id (repeatable; each followed by --style)")
    st.add_argument("--box", action=_Ordered, help="select Gaussians in a 3D box x0,y0,z0,x1,y1,z1")
    st.add_argument("--click", action=_Ordered, help="select the object under pixel X,Y of view VIEW: VIEW,X,Y")
    st.add_argument("--style", action=_Ordered, help="style image for the preceding object (repeatable)")
    d = StylizeConfig()
    st.add_argument("--iters", type=int, default=d.iters, help=f"optimisation steps (default {d.iters})")
    st.add_argument("--size", type=int, default=RunOptions.size, help=f"render size in pixels (default {RunOptions.size})")
    st.add_argument("--seed", type=int, default=d.seed, help="random seed (default 0)")
    st.add_argument("--lr", type=finite, default=d.lr, help=f"learning rate (default {d.lr})")
    st.add_argument("--style-weight", type=finite, default=d.style_weight)
    st.add_argument("--content-weight", type=finite, default=d.content_weight)
    st.add_argument("--no-color-transfer", action="store_true", help="skip ARF's colour transfer")
    st.add_argument("--backbone", default="auto", choices=["auto", "vgg16", "effnet-lite0"])
    st.add_argument("--vgg-weights", default=None, help="path to torchvision's vgg16-397923af.pth")
    st.add_argument("--no-video", action="store_true", help="skip orbit.mp4")
    st.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    st.add_argument("--out", required=True, help="output folder (written atomically)")

    rc = sub.add_parser("reconstruct", help="train labelled 3D Gaussians from a nerfstudio dataset")
    rc.set_defaults(run=_cmd_reconstruct)
    rd = ReconstructConfig()
    rc.add_argument("--data", required=True, help="nerfstudio dataset folder (transforms.json, images, masks)")
    rc.add_argument("--out", required=True, help="output .ply (written atomically)")
    rc.add_argument("--iters", type=int, default=rd.iters, help=f"optimisation steps (default {rd.iters})")
    rc.add_argument("--size", type=int, default=rd.size, help=f"training image long side (default {rd.size})")
    rc.add_argument("--seed", type=int, default=rd.seed, help="random seed (default 0)")
    rc.add_argument("--holdout-every", type=int, default=rd.holdout_every,
                    help=f"hold out every K-th view for the PSNR, 0 = none (default {rd.holdout_every})")
    rc.add_argument("--device", type=device, default="auto", help="auto | cpu | cuda[:N] (auto: cuda when available)")


def _cmd_objects(args) -> int:
    from stylize3d.scenes import load_scene

    scene = load_scene(args.scene, 64).scene
    counts = {oid: int((scene.labels == oid).sum()) for oid in scene.object_names}
    if args.json:
        print(json.dumps({"scene": args.scene, "objects": [
            {"id": oid, "name": name, "gaussians": counts[oid]} for oid, name in sorted(scene.object_names.items())]},
            indent=2))
    else:
        for oid, name in sorted(scene.object_names.items()):
            print(f"{oid:3d}  {name:<16s} {counts[oid]:7d} Gaussians")
    return 0


def _cmd_stylize(args) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from stylize3d.pipeline import run

    targets = _targets(getattr(args, "ordered", None) or [])
    cfg = replace(StylizeConfig(), iters=args.iters, seed=args.seed, lr=args.lr, style_weight=args.style_weight,
                  content_weight=args.content_weight, color_transfer=not args.no_color_transfer)
    options = RunOptions(scene=args.scene, size=args.size, backbone=args.backbone,
                         backbone_weights=args.vgg_weights, video=not args.no_video, overwrite=args.overwrite,
                         stylize=cfg)
    bar = tqdm(total=1000, file=sys.stderr, bar_format="{desc:<14s}{percentage:3.0f}%|{bar:30}| {postfix}")

    def progress(stage: str, frac: float, msg: str) -> None:
        bar.set_description_str(stage, refresh=False)
        bar.n = int(frac * 1000)
        bar.set_postfix_str(msg, refresh=True)

    with logging_redirect_tqdm(), bar:
        manifest = run(targets, args.out, options, progress=progress)
    m, tm = manifest["metrics"], manifest["timings"]
    print(f"wrote {args.out}: backbone {manifest['backbone']}, leakage PSNR {_fmt(m['leakage_psnr_db'], '.1f')} dB "
          f"({m['pixels']['leakage']:,} px), NNFM {_fmt(m['nnfm_before'])} -> {_fmt(m['nnfm_after'])}, "
          f"consistency short/long RMSE {_fmt(m['consistency_short_rmse'], '.4f')}/"
          f"{_fmt(m['consistency_long_rmse'], '.4f')}, total {tm['total_s']:.1f} s")
    for key, reason in m.get("unmeasured", {}).items():
        print(f"  not measured: {key}: {reason}")
    for obj in manifest["objects"]:
        for note in obj.get("notes", []):
            print(f"  note: {obj['name']}: {note}")
    return 0


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _cmd_reconstruct(args) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from stylize3d.reconstruct import reconstruct, resolve_device

    cfg = replace(ReconstructConfig(), iters=args.iters, size=args.size, seed=args.seed,
                  holdout_every=args.holdout_every)
    device = resolve_device(args.device)
    bar = tqdm(total=cfg.iters, file=sys.stderr, desc="reconstruct")

    def progress(step: int, total: int, msg: str) -> None:
        bar.n = step
        bar.set_postfix_str(msg, refresh=True)

    with logging_redirect_tqdm(), bar:
        stats = reconstruct(args.data, args.out, cfg, device=device, progress=progress)
    held_out = "n/a" if stats["psnr"] is None else f"{stats['psnr']:.2f} dB"
    print(f"wrote {stats['out']}: {stats['num_gaussians']} Gaussians, held-out PSNR {held_out} "
          f"({stats['held_out_views']} views), {stats['seconds']:.1f} s")
    if stats.get("advice"):
        print(f"warning: {stats['advice']}", file=sys.stderr)
    return 0
