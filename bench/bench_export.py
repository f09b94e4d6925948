"""Core ML package sizes and checks per bit width, measured by exporting (nothing estimated).

1. ``--only full``: a paper-scale SnapGen U-Net (~379M parameters, random weights, a 128x128 latent = 1024^2
   images) as the iOS 17 denoiser package at fp16 and k-means palettized to 8 / 6 / 4 bits: package size and
   PSNR of the model with the decompressed palettized weights against fp16 weights (torch, the package's LUTs).
   Apple's SDXL U-Net for comparison: 5.2 GB fp16 -> 1.46 GB at 4.5 bits.
2. ``--only model --source DIR``: every part of a pipeline (text encoder, denoiser, decoder) at each width,
   as ``pocket-studio export-coreml`` writes them, with the re-authoring PSNR.

    python bench/bench_export.py --only full [--json bench/results/export_full.json]
    python bench/bench_export.py --only model --source assets/models/pocket-t2i [--json ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from generators.export.ane import reauthor_unet
from generators.export.checks import fp16_weights, reauthoring_psnr, with_state, worst_psnr
from generators.export.components import Component, DenoiserStep
from generators.export.coreml import convert, decompressed_state, export_program, inspect_package, palettize
from generators.models import SnapGenUNet

BITS = (8, 6, 4)


def full_size_component() -> Component:
    torch.manual_seed(0)
    den = SnapGenUNet(sample_size=128, cross_attention_dim=1024).eval()  # the paper's defaults: ~379M
    for p in den.parameters():  # conv_out starts at zero: give every weight a value, as a trained model has
        if p.dim() > 1 and not p.abs().sum():
            torch.nn.init.normal_(p, std=0.02)
    inputs = {"sample": torch.randn(1, 4, 128, 128), "timestep": torch.full((1,), 500.0),
              "encoder_hidden_states": torch.randn(1, 77, 1024)}
    return Component("denoiser", DenoiserStep(reauthor_unet(den)), inputs, ["velocity"],
                     reference=DenoiserStep(den).eval())


def sweep(component: Component, work: Path, log) -> dict:
    """fp16 and each palettized width of one component: sizes, PSNR, seconds."""
    t0 = time.perf_counter()
    program = export_program(component)
    ml = convert(component, program)
    fp16 = work / f"{component.name}-fp16.mlpackage"
    ml.save(str(fp16))
    spec = inspect_package(fp16)
    row = {"params_m": round(sum(p.numel() for p in component.module.parameters()) / 1e6, 1),
           "fp16_bytes": spec["size_bytes"], "convert_s": round(time.perf_counter() - t0, 1),
           "reauthored_vs_original_psnr_db": _r(reauthoring_psnr(component)), "bits": {}}
    log(f"{component.name}: fp16 {spec['size_bytes'] / 2**20:.1f} MB in {row['convert_s']:.0f} s")
    reference = fp16_weights(component.module)
    for bits in BITS:
        t0 = time.perf_counter()
        path = work / f"{component.name}-{bits}bit.mlpackage"
        palettize(ml, bits).save(str(path))
        size = inspect_package(path)["size_bytes"]
        state, tables, mapped = decompressed_state(path, program, component.module)
        score = worst_psnr(reference, with_state(component.module, state), component.inputs)
        row["bits"][str(bits)] = {"bytes": size, "ratio_to_fp16": round(size / spec["size_bytes"], 3),
                                  "palettized_vs_fp16_psnr_db": _r(score), "tables": tables, "tables_checked": mapped,
                                  "seconds": round(time.perf_counter() - t0, 1)}
        log(f"{component.name}: {bits}-bit {size / 2**20:.1f} MB ({size / spec['size_bytes']:.1%}), {_r(score)} dB")
        shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(fp16, ignore_errors=True)
    return row


def _r(x):
    return None if x is None else round(float(x), 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=("full", "model"), required=True)
    p.add_argument("--source", type=Path, help="pipeline folder for --only model")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.0f}s] {msg}", flush=True)

    result = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
              "torch": torch.__version__}
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        if args.only == "full":
            result["full_size_snapgen_unet"] = sweep(full_size_component(), Path(tmp), log)
            result["apple_sdxl_unet_reference"] = {"fp16_gb": 5.2, "4.5bit_gb": 1.46}
        else:
            from generators.export.components import image_components
            from generators.pipelines.loading import load_t2i

            pipe = load_t2i(args.source)
            guidance = pipe.sampling_defaults.get("guidance_scale", 4.0)
            result["source"] = str(args.source)
            result["parts"] = {c.name: sweep(c, Path(tmp), log) for c in image_components(pipe, 1.0, guidance)}
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
