"""The video commands of ``pocket-studio``: ``video`` (stream a clip to MP4) and ``search-sandwich`` (S2DiT's
budget-aware layout search)."""

from __future__ import annotations

import json
from pathlib import Path

from .cli_types import device, finite

MAX_FRAMES = 20_000


def register(sub) -> None:
    v = sub.add_parser("video", help="stream a video from a text prompt into an MP4")
    v.set_defaults(run=_cmd_video)
    v.add_argument("--prompt", required=True, help="what moves, e.g. 'two blue squares moving left'")
    v.add_argument("--frames", type=int, default=16, help="frames to make (default 16; whole chunks)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--steps", type=int, default=None, help="denoising steps per chunk (default: the model's, 4)")
    v.add_argument("--guidance", type=finite, default=None, help="classifier-free guidance (default: the model's, 1)")
    v.add_argument("--model", default=None, help="a streaming video pipeline folder (default: the shipped one)")
    v.add_argument("--device", type=device, default="cpu")
    v.add_argument("--out", required=True, help="output .mp4 (Ctrl-C keeps what was made)")

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


def _cmd_video(args) -> int:
    import time

    from tqdm import tqdm

    from generators.pipelines.loading import (
        check_request,
        load_t2v,
        read_sampling,
        resolve_video,
        stream_video,
    )
    from stylize3d.atomic import check_parent
    from stylize3d.reconstruct import resolve_device

    from .video_file import StreamingMP4

    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"--out {out}: the clip is written as .mp4")
    check_parent(out)
    if not 1 <= args.frames <= MAX_FRAMES:
        raise ValueError(f"--frames must lie in 1..{MAX_FRAMES}, not {args.frames}")
    folder = resolve_video(args.model)
    sampling = read_sampling(folder) if folder.is_dir() else {}
    steps = args.steps if args.steps is not None else sampling.get("num_inference_steps", 4)
    guidance = args.guidance if args.guidance is not None else sampling.get("guidance_scale", 1.0)
    check_request(args.prompt, "", steps, guidance, args.seed, 1)
    pipe = load_t2v(args.model, device=resolve_device(args.device))
    chunks = -(-args.frames // pipe.chunk_frames)
    made, t0 = 0, time.perf_counter()
    stream = stream_video(pipe, args.prompt, chunks, steps, guidance, args.seed)
    with StreamingMP4(out) as mp4, tqdm(total=args.frames, desc="video", unit="frame") as bar:
        try:
            for frames in stream:
                frames = frames[:args.frames - made]
                mp4.append(frames)
                made += len(frames)
                bar.update(len(frames))
        except KeyboardInterrupt:
            print(f"stopped: keeping the {made} frames made", flush=True)
    seconds = time.perf_counter() - t0
    print(f"wrote {out}: {made} frames {pipe.frame_size()[1]}x{pipe.frame_size()[0]}, {steps} steps, guidance "
          f"{guidance:g}, seed {args.seed}, {seconds:.1f} s ({made / max(seconds, 1e-9):.1f} frames/s)")
    return 0
