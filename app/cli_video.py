"""The video commands of ``pocket-studio``: ``search-sandwich`` (S2DiT's budget-aware layout search)."""

from __future__ import annotations

import json
from pathlib import Path

from .cli_types import device, finite


def register(sub) -> None:
    s = sub.add_parser("search-sandwich", help="measure S2DiT blocks on a device and choose the layout for a budget")
    s.set_defaults(run=_cmd_search)
    s.add_argument("--budget-ms", type=finite, required=True, help="latency budget of the whole denoiser per chunk")
    s.add_argument("--device", type=device, default="cpu", help="cpu (default) or cuda")
    s.add_argument("--config", default="default",
                   help="default (the shipped video model's), full (paper scale, 512x288), or a JSON file")
    s.add_argument("--latent", default=None, help="latent HxW per frame (default: the config's own)")
    s.add_argument("--max-per-type", type=int, default=6, help="most blocks of one type in one stage (default 6)")
    s.add_argument("--repeats", type=int, default=5)
    s.add_argument("--json", type=Path, help="also write the measurements and the layout here")


def _cmd_search(args) -> int:
    from generators.models.s2dit import DEFAULT_CONFIG, FULL_SIZE
    from generators.search import SearchSpace, measure, search

    if args.budget_ms <= 0:
        raise ValueError(f"--budget-ms must be > 0, not {args.budget_ms:g}")
    if not 1 <= args.max_per_type <= 24:
        raise ValueError(f"--max-per-type must lie in 1..24, not {args.max_per_type}")
    if args.config in ("default", "full"):
        overrides = DEFAULT_CONFIG if args.config == "default" else FULL_SIZE
    else:
        try:
            overrides = json.loads(Path(args.config).read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"--config {args.config}: {err}") from None
    config = {**_defaults(), **overrides}
    latent = tuple(config["sample_size"])
    if args.latent:
        try:
            latent = tuple(int(v) for v in args.latent.lower().split("x"))
            assert len(latent) == 2 and min(latent) > 0
        except (ValueError, AssertionError):
            raise ValueError(f"--latent {args.latent}: write it as HxW, e.g. 36x64") from None
    from stylize3d.reconstruct import resolve_device

    args.device = resolve_device(args.device)
    lat = measure(config, latent, args.device, args.repeats)
    space = SearchSpace(lat, max_per_type=args.max_per_type, stages=len(config["stage_scales"]))
    best = search(space, args.budget_ms)
    print(f"per-block latency on {args.device}, latent {latent[0]}x{latent[1]}, width {config['hidden_size']}, "
          f"{config['chunk_frames']} frames per chunk:")
    for (stage, kind), ms in sorted(lat.items()):
        print(f"  stage {stage} (1/{config['stage_scales'][stage]} res) {kind}: {ms:.2f} ms")
    if best is None:
        cheapest = sum(min(lat[(s, t)] for t in ("lcha", "ssa")) for s in range(space.stages))
        raise ValueError(f"no layout fits {args.budget_ms:g} ms: one block per stage already takes {cheapest:.1f} ms")
    print(f"layout for {args.budget_ms:g} ms: {best['layout']} -> {best['latency_ms']:.2f} ms, proxy {best['proxy']:.3f}")
    if args.json:
        from stylize3d.atomic import atomic_open

        with atomic_open(args.json) as f:
            f.write(json.dumps({"device": args.device, "latent": list(latent), "budget_ms": args.budget_ms,
                                "latency_ms": {f"{s}:{k}": v for (s, k), v in lat.items()}, **best},
                               indent=1).encode())
    return 0


def _defaults() -> dict:
    import inspect

    from generators.models.s2dit import S2DiT

    return {k: p.default for k, p in inspect.signature(S2DiT.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}
