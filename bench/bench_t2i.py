"""Text-to-image speed, measured side by side in one run (ratios; absolute times on a noisy machine are context).

1. Architectures with random weights at the papers' 1024^2 token counts (a 128x128 latent, 64x64 = 4,096 tokens
   after 2x2 patches): SnapGen++ 0.4B vs a PixArt-alpha-style full-attention DiT of similar size (diffusers'
   ``PixArtTransformer2DModel``), and SnapGen's U-Net vs diffusers' SDXL ``UNet2DConditionModel`` config.
2. ASSA vs full attention alone at 4k / 16k / 64k tokens (16 heads x 64).
3. The shipped default model: parameters, ms per denoising step, seconds per image.

    python bench/bench_t2i.py [--only arch,attention,default] [--device cpu|cuda] [--json bench/results/t2i.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from generators.attention import ASSA, Attention
from generators.models import SnapGenDiT, SnapGenUNet
from generators.models.snapgen_dit import FULL_SIZE


def _time(fn, repeats: int, device: str) -> list[float]:
    out = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return out


def _params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def pixart_like(hidden: int = 1152, layers: int = 19):
    """PixArt-alpha's DiT (28 x 1152 is 0.6B); ``layers`` trims it to the size it is compared with."""
    from diffusers import PixArtTransformer2DModel

    return PixArtTransformer2DModel(sample_size=128, in_channels=4, out_channels=8, patch_size=2,
                                    num_layers=layers, num_attention_heads=16, attention_head_dim=hidden // 16,
                                    cross_attention_dim=hidden, caption_channels=2304, norm_type="ada_norm_single",
                                    use_additional_conditions=False)


def sdxl_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=128, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), layers_per_block=2,
        transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048, attention_head_dim=(5, 10, 20),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816)


def bench_arch(device: str, repeats: int, dtype) -> dict:
    rows = {}
    x = torch.randn(1, 4, 128, 128, device=device, dtype=dtype)
    ctx = torch.randn(1, 77, 2304, device=device, dtype=dtype)
    t = torch.tensor([500.0], device=device)
    pairs = {
        "snapgen++_0.4b": lambda: SnapGenDiT(**FULL_SIZE["0.4b"], cross_attention_dim=2304),
        "pixart_alpha_like": pixart_like,
        "snapgen_unet": lambda: SnapGenUNet(cross_attention_dim=2048),
        "sdxl_unet": sdxl_unet,
    }
    for name, make in pairs.items():
        model = make().to(device=device, dtype=dtype).eval()
        c = ctx[..., :2048] if "unet" in name else ctx
        if name == "sdxl_unet":
            kw = {"added_cond_kwargs": {"text_embeds": torch.randn(1, 1280, device=device, dtype=dtype),
                                        "time_ids": torch.zeros(1, 6, device=device, dtype=dtype)}}
        elif name == "pixart_alpha_like":
            kw = {"added_cond_kwargs": {"resolution": None, "aspect_ratio": None}}
        else:
            kw = {}
        with torch.inference_mode():
            def fn(m=model, c=c, kw=kw):
                return m(x, timestep=t, encoder_hidden_states=c, **kw)

            fn()  # warm-up
            times = _time(fn, repeats, device)
        rows[name] = {"params_m": round(_params(model) / 1e6, 1), "s_per_step": round(statistics.median(times), 3),
                      "runs": [round(v, 3) for v in times]}
        print(f"{name:>20s}: {rows[name]['params_m']:7.1f}M  {rows[name]['s_per_step']:.3f} s/step", flush=True)
        del model
    rows["ratio_pixart_over_snapgen++"] = round(rows["pixart_alpha_like"]["s_per_step"] / rows["snapgen++_0.4b"]["s_per_step"], 2)
    rows["ratio_sdxl_over_snapgen_unet"] = round(rows["sdxl_unet"]["s_per_step"] / rows["snapgen_unet"]["s_per_step"], 2)
    rows["size_ratio_sdxl_over_snapgen_unet"] = round(rows["sdxl_unet"]["params_m"] / rows["snapgen_unet"]["params_m"], 2)
    return rows


def bench_attention(device: str, repeats: int, dtype, sides=(64, 128, 256)) -> dict:
    """ASSA (B=16 blocks, r=1, 2x2-compressed global K/V, GQA 8 KV heads) against a full-attention layer with the
    same projections, 16 heads x 64 (both whole modules, input to output)."""
    rows = {}
    for side in sides:
        n = side * side
        assa = ASSA(1024, heads=16, kv_heads=8, blocks=16, radius=1).to(device=device, dtype=dtype).eval()
        plain = Attention(1024, heads=16, kv_heads=8).to(device=device, dtype=dtype).eval()
        x = torch.randn(1, n, 1024, device=device, dtype=dtype)
        with torch.inference_mode():
            def full(plain=plain, x=x):  # the same projections, one softmax over all tokens
                return plain(x)

            def sparse(assa=assa, x=x, side=side):
                return assa(x, side)

            if n <= 16384 or device != "cpu":  # a 64k-token warm-up costs minutes on a CPU
                full()
                sparse()
            tf, ts = _time(full, repeats, device), _time(sparse, repeats, device)
        rows[f"{n}"] = {"full_ms": round(statistics.median(tf) * 1e3, 2), "assa_ms": round(statistics.median(ts) * 1e3, 2),
                        "ratio_full_over_assa": round(statistics.median(tf) / statistics.median(ts), 2)}
        print(f"{n:>6d} tokens: full {rows[f'{n}']['full_ms']:.1f} ms, ASSA {rows[f'{n}']['assa_ms']:.1f} ms", flush=True)
    return rows


def bench_default(device: str, repeats: int) -> dict:
    from generators.pipelines.loading import DEFAULT_T2I, generate, load_t2i

    pipe = load_t2i(DEFAULT_T2I, device=device)
    steps = 20
    generate(pipe, "a pattern of blue and white waves", steps=2)
    times = _time(lambda: generate(pipe, "a pattern of blue and white waves", steps=steps), repeats, device)
    per_image = statistics.median(times)
    one = _time(lambda: generate(pipe, "a pattern of blue and white waves", steps=1), repeats, device)
    per_step = (per_image - statistics.median(one)) / (steps - 1)
    return {"params_m": round(_params(pipe.denoiser) / 1e6, 2), "vae_params_m": round(_params(pipe.vae) / 1e6, 2),
            "image_px": pipe.image_size, "steps": steps, "s_per_image": round(per_image, 3),
            "ms_per_step": round(per_step * 1e3, 1), "threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="arch,attention,default")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--tokens", default="4096,16384,65536", help="attention sizes (square maps)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    report = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu",
              "threads": torch.get_num_threads(), "dtype": str(dtype), "torch": torch.__version__}
    parts = args.only.split(",")
    if "attention" in parts:
        sides = [int(int(n) ** 0.5) for n in args.tokens.split(",")]
        report["attention"] = bench_attention(args.device, args.repeats, dtype, sides)
    if "default" in parts and (Path(__file__).resolve().parents[1] / "assets/models/pocket-t2i/model_index.json").is_file():
        report["default_model"] = bench_default(args.device, args.repeats)
        print(json.dumps(report["default_model"]))
    if "arch" in parts:
        report["architectures_1024px"] = bench_arch(args.device, args.repeats, dtype)
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
