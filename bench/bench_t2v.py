"""Streaming video speed, measured side by side in one run (ratios; absolute times on a noisy machine are context).

1. ``fps``: frames per second of the default streaming pipeline at its native size (4 steps, guidance 1, decode
   included), with the tiny decoder and with the full VAE side by side (``fps`` is the decoder the default has):
   the shipped model when this checkout has it, else the default config with random weights (speed does not depend
   on the weights; the JSON says which).
2. ``chunks``: time per chunk at chunk 2 and chunk 100 of one stream (constant cost: the caches do not grow).
3. ``lcha``: the whole LCHA block vs softmax attention alone (SDPA: flash attention on a GPU) at 16k and 64k
   tokens, 16 heads x 64.
4. ``full``: the paper-scale configuration (512x288) with random weights, streaming frames per second.

    python bench/bench_t2v.py [--only fps,chunks,lcha,full] [--device cpu|cuda] [--json bench/results/t2v_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from generators.models import S2DiT
from generators.models.s2dit import DEFAULT_CONFIG, FULL_SIZE
from generators.video_attention import LCHA

ROOT = Path(__file__).resolve().parents[1]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def default_pipeline(device: str, dtype=torch.float32, chunk_frames: int | None = None):
    from generators.pipelines import PocketTextToVideoPipeline
    from generators.pipelines.loading import SHIPPED_VIDEO, load_t2v

    if (SHIPPED_VIDEO / "model_index.json").is_file() and chunk_frames is None:
        return load_t2v(SHIPPED_VIDEO, device=device), "shipped"
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    den = S2DiT(**{**DEFAULT_CONFIG, **({"chunk_frames": chunk_frames} if chunk_frames else {})})
    vae = AutoencoderKL.from_pretrained(ROOT / "assets" / "models" / "pocket-vae")
    return PocketTextToVideoPipeline.assemble(den.eval(), vae.eval()).to(device), \
        "default config, random weights"


def stream_times(pipe, chunks: int, device: str) -> list[float]:
    times = []
    stream = pipe.stream("a red circle moving left", num_chunks=chunks, generator=torch.Generator().manual_seed(0))
    while True:
        _sync(device)
        t0 = time.perf_counter()
        try:
            next(stream)
        except StopIteration:
            return times
        _sync(device)
        times.append(time.perf_counter() - t0)


def with_decoder(pipe, which: str):
    """The same pipeline (shared denoiser) decoding with the full ``AutoencoderKL`` or the ``TinyVAEDecoder``
    (the shipped one when the pipeline has it, else a random one of the default size: speed needs no weights)."""
    from diffusers import AutoencoderKL

    from generators.models import TinyVAEDecoder
    from generators.pipelines import PocketTextToVideoPipeline

    full = AutoencoderKL.from_pretrained(ROOT / "assets" / "models" / "pocket-vae").eval()
    if which == "full":
        vae = pipe.vae if isinstance(pipe.vae, AutoencoderKL) else full
    elif isinstance(pipe.vae, TinyVAEDecoder):
        vae = pipe.vae
    else:
        torch.manual_seed(0)
        vae = TinyVAEDecoder(scaling_factor=full.config.scaling_factor, shift_factor=full.config.shift_factor).eval()
    return PocketTextToVideoPipeline(pipe.denoiser, vae.to(pipe.device), pipe.scheduler.__class__.from_config(
        pipe.scheduler.config), pipe.tokenizer, pipe.text_encoder)


def bench_fps(device: str, chunks: int = 12, chunk_frames: int | None = None) -> dict:
    """Streaming frames per second with either decoder, the two streams' chunks interleaved (side by side)."""
    from generators.models import TinyVAEDecoder

    pipe, what = default_pipeline(device, chunk_frames=chunk_frames)
    pipes = {k: with_decoder(pipe, k) for k in ("tiny", "full")}
    streams = {k: p.stream("a red circle moving left", num_chunks=chunks, generator=torch.Generator().manual_seed(0))
               for k, p in pipes.items()}
    times = {k: [] for k in pipes}
    for _ in range(chunks):
        for k, stream in streams.items():
            _sync(device)
            t0 = time.perf_counter()
            next(stream)
            _sync(device)
            times[k].append(time.perf_counter() - t0)
    f = pipe.chunk_frames
    h, w = pipe.frame_size()
    fps = {k: f * len(t[2:]) / sum(t[2:]) for k, t in times.items()}  # the first chunks warm up
    own = "tiny" if isinstance(pipe.vae, TinyVAEDecoder) else "full"  # the decoder the default has
    print(f"default ({what}): {h}x{w}, {f} frames per chunk: {fps['tiny']:.1f} frames/s with the tiny decoder, "
          f"{fps['full']:.1f} with the full VAE ({fps['tiny'] / fps['full']:.2f}x); the default decodes with the "
          f"{own} one: {fps[own]:.1f} frames/s", flush=True)
    return {"model": what, "frame_size": [h, w], "chunk_frames": f, "steps": 4, "fps": round(fps[own], 2),
            "decoder": type(pipes[own].vae).__name__, "fps_tiny_decoder": round(fps["tiny"], 2),
            "fps_full_vae": round(fps["full"], 2), "ratio_tiny_over_full": round(fps["tiny"] / fps["full"], 2),
            "s_per_chunk_tiny_decoder": [round(t, 4) for t in times["tiny"][2:]],
            "s_per_chunk_full_vae": [round(t, 4) for t in times["full"][2:]],
            "params_m": round(sum(p.numel() for p in pipe.denoiser.parameters()) / 1e6, 2)}


def bench_chunks(device: str, chunks: int = 100) -> dict:
    pipe, what = default_pipeline(device)
    pipe.set_progress_bar_config(disable=True)
    times = stream_times(pipe, chunks, device)
    early, late = statistics.median(times[1:4]), statistics.median(times[-3:])  # chunks 2-4 vs 98-100
    print(f"chunk 2: {times[1] * 1e3:.1f} ms, chunk 100: {times[-1] * 1e3:.1f} ms; medians of chunks 2-4 vs "
          f"98-100: {early * 1e3:.1f} vs {late * 1e3:.1f} ms ({late / early:.2f}x)", flush=True)
    return {"model": what, "chunk_2_ms": round(times[1] * 1e3, 2), "chunk_100_ms": round(times[-1] * 1e3, 2),
            "median_2_4_ms": round(early * 1e3, 2), "median_98_100_ms": round(late * 1e3, 2),
            "ratio_late_over_early": round(late / early, 3), "all_ms": [round(t * 1e3, 1) for t in times]}


def bench_lcha(device: str, repeats: int, dtype, grids=((16, 32, 32), (16, 64, 64))) -> dict:
    """The whole LCHA block (projections, kernel, 3D RoPE, linear attention, conv branch, gate) against softmax
    attention alone on the same token count."""
    rows = {}
    for t, h, w in grids:
        n = t * h * w
        lcha = LCHA(1024, heads=16).to(device=device, dtype=dtype).eval()
        x = torch.randn(1, t, h, w, 1024, device=device, dtype=dtype)
        q = torch.randn(1, 16, n, 64, device=device, dtype=dtype)
        with torch.inference_mode():
            def full(q=q):
                return torch.nn.functional.scaled_dot_product_attention(q, q, q)

            def linear(lcha=lcha, x=x, t=t):
                return lcha(x, chunk_frames=t)  # one chunk: bidirectional, as the softmax side

            res = {}
            for name, fn in (("softmax", full), ("lcha", linear)):
                big = n > 16384 and device == "cpu"  # a 64k-token softmax takes minutes on a CPU: no warm-up, one run
                if not big:
                    fn()  # warm-up
                runs = []
                for _ in range(1 if big else repeats):
                    _sync(device)
                    t0 = time.perf_counter()
                    fn()
                    _sync(device)
                    runs.append(time.perf_counter() - t0)
                res[name] = statistics.median(runs) * 1e3
        rows[str(n)] = {"softmax_ms": round(res["softmax"], 2), "lcha_block_ms": round(res["lcha"], 2),
                        "ratio_softmax_over_lcha": round(res["softmax"] / res["lcha"], 2)}
        print(f"{n:>6d} tokens: softmax attention {res['softmax']:.1f} ms, LCHA block {res['lcha']:.1f} ms", flush=True)
    return rows


def bench_full(device: str, dtype, chunks: int = 4) -> dict:
    from diffusers import AutoencoderKL

    from generators.pipelines import PocketTextToVideoPipeline

    torch.manual_seed(0)
    den = S2DiT(**FULL_SIZE)
    vae = AutoencoderKL(latent_channels=16, block_out_channels=(128, 256, 512, 512),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    pipe = PocketTextToVideoPipeline.assemble(den.eval(), vae.eval()).to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    times = stream_times(pipe, chunks, device)[1:]
    f = pipe.chunk_frames
    fps = f * len(times) / sum(times)
    h, w = pipe.frame_size()
    print(f"paper scale {w}x{h}: {sum(p.numel() for p in den.parameters()) / 1e6:.0f}M, {fps:.2f} frames/s", flush=True)
    return {"frame_size": [h, w], "params_m": round(sum(p.numel() for p in den.parameters()) / 1e6, 1),
            "fps": round(fps, 3), "s_per_chunk": [round(t, 3) for t in times], "dtype": str(dtype)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="fps,chunks,lcha,full")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunk-frames", type=int, default=None, help="fps: the default config at another chunk length")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    out = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
           "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"}
    only = set(args.only.split(","))
    if "fps" in only:
        out["fps"] = bench_fps(args.device, chunk_frames=args.chunk_frames)
    if "chunks" in only:
        out["chunks"] = bench_chunks(args.device)
    if "lcha" in only:
        out["lcha"] = bench_lcha(args.device, args.repeats, dtype)
    if "full" in only:
        out["full"] = bench_full(args.device, dtype)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
