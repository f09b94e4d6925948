"""``pocket-studio`` command line: ``scene objects``, ``stylize`` and ``reconstruct`` (the studio is ``app.py``)."""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from dataclasses import replace

from .pipeline import RunOptions, TargetSpec
from .reconstruct import ReconstructConfig
from .selection import parse_box
from .stylize import StylizeConfig

logger = logging.getLogger("pocket_studio")


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


class _Parser(argparse.ArgumentParser):
    """Every usage error ends with the same ``pocket-studio: error: ...`` line (and exit 2) as a runtime one."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"pocket-studio: error: {self.prog.removeprefix('pocket-studio').strip()}"
                     f"{': ' if self.prog != 'pocket-studio' else ''}{message}\n")


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _device(text: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: use auto, cpu, cuda or cuda:N")
    return text


# options whose value may start with '-' (``--box -1,-1,0,1,1,2``, ``--lr -inf``): argparse would take it for an
# option and say "expected one argument" instead of what is wrong with the value
_SIGNED_VALUES = ("--box", "--click", "--lr", "--style-weight", "--content-weight", "--seed", "--iters", "--size")


def _join_signed_values(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        if argv[i] in _SIGNED_VALUES and i + 1 < len(argv) and re.match(r"-(\d|\.|inf|nan)", argv[i + 1], re.I):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pocket-studio", description="Pocket Studio: per-object 3D stylization.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    scene = sub.add_parser("scene", help="inspect scenes")
    scene_sub = scene.add_subparsers(dest="scene_command", required=True)
    objects = scene_sub.add_parser("objects", help="list a scene's objects (names and ids)")
    objects.add_argument("--scene", default="builtin", help="builtin | PATH.ply | DATASET_DIR")
    objects.add_argument("--json", action="store_true", help="print JSON")

    st = sub.add_parser("stylize", help="stylize objects of a scene and export the results")
    st.add_argument("--scene", default="builtin", help="builtin | PATH.ply | DATASET_DIR (default: builtin)")
    st.add_argument("--object", action=_Ordered, help="object name or id (repeatable; each followed by --style)")
    st.add_argument("--box", action=_Ordered, help="select Gaussians in a 3D box x0,y0,z0,x1,y1,z1")
    st.add_argument("--click", action=_Ordered, help="select the object under pixel X,Y of view VIEW: VIEW,X,Y")
    st.add_argument("--style", action=_Ordered, help="style image for the preceding object (repeatable)")
    d = StylizeConfig()
    st.add_argument("--iters", type=int, default=d.iters, help=f"optimisation steps (default {d.iters})")
    st.add_argument("--size", type=int, default=RunOptions.size, help=f"render size in pixels (default {RunOptions.size})")
    st.add_argument("--seed", type=int, default=d.seed, help="random seed (default 0)")
    st.add_argument("--lr", type=_finite, default=d.lr, help=f"learning rate (default {d.lr})")
    st.add_argument("--style-weight", type=_finite, default=d.style_weight)
    st.add_argument("--content-weight", type=_finite, default=d.content_weight)
    st.add_argument("--no-color-transfer", action="store_true", help="skip ARF's colour transfer")
    st.add_argument("--backbone", default="auto", choices=["auto", "vgg16", "effnet-lite0"])
    st.add_argument("--vgg-weights", default=None, help="path to torchvision's vgg16-397923af.pth")
    st.add_argument("--no-video", action="store_true", help="skip orbit.mp4")
    st.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    st.add_argument("--out", required=True, help="output folder (written atomically)")

    rc = sub.add_parser("reconstruct", help="train labelled 3D Gaussians from a nerfstudio dataset")
    rd = ReconstructConfig()
    rc.add_argument("--data", required=True, help="nerfstudio dataset folder (transforms.json, images, masks)")
    rc.add_argument("--out", required=True, help="output .ply (written atomically)")
    rc.add_argument("--iters", type=int, default=rd.iters, help=f"optimisation steps (default {rd.iters})")
    rc.add_argument("--size", type=int, default=rd.size, help=f"training image long side (default {rd.size})")
    rc.add_argument("--seed", type=int, default=rd.seed, help="random seed (default 0)")
    rc.add_argument("--holdout-every", type=int, default=rd.holdout_every,
                    help=f"hold out every K-th view for the PSNR, 0 = none (default {rd.holdout_every})")
    rc.add_argument("--device", type=_device, default="auto", help="auto | cpu | cuda[:N] (auto: cuda when available)")
    return p


def _cmd_objects(args) -> int:
    from .scenes import load_scene

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

    from .pipeline import run

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
    import torch
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from .reconstruct import reconstruct

    cfg = replace(ReconstructConfig(), iters=args.iters, size=args.size, seed=args.seed,
                  holdout_every=args.holdout_every)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
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


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(_join_signed_values(list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as exit_:  # usage errors (already printed) and --help, as a return code
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "scene":
            return _cmd_objects(args)
        if args.command == "reconstruct":
            return _cmd_reconstruct(args)
        return _cmd_stylize(args)
    except (ValueError, OSError) as err:
        print(f"pocket-studio: error: {err}", file=sys.stderr)
        return 2
    except MemoryError:
        print("pocket-studio: error: out of memory: try a smaller --size or fewer views", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - one error line, the traceback only with -v
        logger.debug("unexpected error", exc_info=True)
        print(f"pocket-studio: error: unexpected {type(err).__name__}: {err} (run with -v for the traceback)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
