"""The generator commands of ``pocket-studio``: ``generate``, ``train {t2i,vae,t2v}``, ``distill {kd,adv,kdmd,t2v-ode,t2v-dmd}``
and ``eval {shapes,motion}``.

``train``, ``distill`` and ``eval`` hand their flags to the engine's script, whose flags come from its config dataclass (so
``accelerate launch -m app.cli train t2i ...`` runs the same script on several processes).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .cli_types import finite

TRAINERS = {"t2i": "generators.training.train_t2i", "vae": "generators.training.train_vae",
            "t2v": "generators.training.train_t2v"}
EVALS = {"shapes": "generators.evaluation.run_shapes_eval", "motion": "generators.evaluation.run_motion_eval"}
DISTILLERS = {m: ("generators.distill.train_distill", ["--method", m]) for m in ("kd", "adv", "kdmd")} | {
    f"t2v-{s}": ("generators.distill.train_distill_video", ["--stage", s]) for s in ("ode", "dmd")}
"""Entries are a module, or (module, leading flags) when one script serves several kinds."""
PASSTHROUGH = ("train", "distill", "eval")


def register(sub) -> None:
    g = sub.add_parser("generate", help="make images from a text prompt")
    g.set_defaults(run=_cmd_generate)
    g.add_argument("--prompt", required=True, help="what to draw, e.g. 'a pattern of blue and white waves'")
    g.add_argument("--negative-prompt", default="", help="what to steer away from")
    g.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's own: 4 for Fast, 20 for Quality)")
    g.add_argument("--guidance", type=finite, default=None, help="classifier-free guidance (default: the model's own: 1 for Fast, 4 for Quality)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--width-mult", type=finite, default=1.0, help="elastic width of a SnapGen++ model: 0.375, 0.5, 1")
    g.add_argument("--n", type=int, default=1, help="number of images (IMAGE-0.png, IMAGE-1.png, ... when > 1)")
    g.add_argument("--model", default=None, help="fast or quality (the shipped models; default: fast when shipped), or a diffusers pipeline folder")
    g.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    g.add_argument("--out", required=True, help="output .png (written atomically)")

    for name, table, what in (("train", TRAINERS, "train a model"), ("eval", EVALS, "evaluate a model"),
                              ("distill", DISTILLERS, "distil a teacher into a few-step or smaller student")):
        p = sub.add_parser(name, help=f"{what} ({', '.join(table)}); flags: pocket-studio {name} KIND --help",
                           add_help=False)
        p.add_argument("kind", choices=sorted(table))
        p.set_defaults(run=_cmd_passthrough, table=table)


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """``[-v] train KIND FLAGS...`` -> (``[-v] train KIND``, FLAGS) for the engine's script to parse; other
    commands -> (argv, None)."""
    i = 0
    while i < len(argv) and argv[i] in ("-v", "--verbose"):
        i += 1
    if i < len(argv) and argv[i] in PASSTHROUGH:
        return argv[:i + 2], argv[i + 2:]
    return argv, None


def _cmd_passthrough(args, rest: list[str]) -> int:
    import importlib

    entry = args.table[args.kind]
    name, lead = entry if isinstance(entry, tuple) else (entry, [])
    importlib.import_module(name).main(lead + rest, prog=f"pocket-studio {args.command} {args.kind}")
    return 0


def _outputs(out: str, n: int) -> list[Path]:
    path = Path(out)
    if path.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: give a .png file name")
    if path.is_dir():
        raise ValueError(f"--out {out} is a folder")
    return [path] if n == 1 else [path.with_name(f"{path.stem}-{i}.png") for i in range(n)]


def _cmd_generate(args) -> int:
    from tqdm import tqdm

    from generators.pipelines.loading import check_request, describe, generate, load_t2i
    from stylize3d.atomic import atomic_open, check_parent

    check_request(args.prompt, args.negative_prompt, args.steps, args.guidance, args.seed, args.n)
    outs = _outputs(args.out, args.n)
    check_parent(outs[0])
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        raise ValueError(f"--device {args.device}: use cpu or cuda")
    pipe = load_t2i(args.model, device=args.device)
    bar = tqdm(total=1, file=sys.stderr, desc="generate")

    def on_step(i: int, total: int) -> None:
        bar.total = total
        bar.n = i
        bar.refresh()

    with bar:
        images, info = generate(pipe, args.prompt, args.negative_prompt, args.steps, args.guidance, args.seed,
                                args.n, args.width_mult, on_step=on_step)
    for img, path in zip(images, outs):
        with atomic_open(path) as f:
            img.save(f, format="PNG")
    print(f"wrote {', '.join(str(p) for p in outs)}: model {describe(pipe, args.model)}, {info['steps']} step{'s' * (info['steps'] != 1)}, "
          f"guidance {info['guidance']:g}, seed {info['seed']}, width {info['width_mult']:g}x, {info['seconds']:.2f} s")
    return 0
