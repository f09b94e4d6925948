"""Score a text-to-image pipeline on ShapesEval: generate 4 images per prompt, judge each by GenEval's rules.

    python -m generators.evaluation.run_shapes_eval --model DIR [--steps 20] [--per-task 16] --out report.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .shapes_eval import evaluate_image, ground_truth, prompts, score


def evaluate_pipeline(pipe, metas: list[dict], images_per_prompt: int = 4, steps: int = 20,
                      guidance: float = 4.0, seed: int = 0, batch: int = 32, width_mult: float = 1.0,
                      keep_images: int = 0, show: bool = True) -> dict:
    """Per-image results and GenEval's summary; ``keep_images`` first images are returned for a picture."""
    jobs = [(m, k) for m in metas for k in range(images_per_prompt)]
    results, kept = [], []
    t0 = time.time()
    for i in tqdm(range(0, len(jobs), batch), desc="shapes-eval", disable=not show):
        chunk = jobs[i:i + batch]
        gens = [torch.Generator().manual_seed(seed * 100_003 + hash_prompt(m["prompt"]) * 7 + k) for m, k in chunk]
        kw = {"width_mult": width_mult} if width_mult != 1.0 else {}
        images = pipe([m["prompt"] for m, _ in chunk], num_inference_steps=steps, guidance_scale=guidance,
                      generator=gens, output_type="np", **kw).images
        for (m, k), img in zip(chunk, images):
            u8 = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
            ok, reason = evaluate_image(u8, m)
            results.append({"prompt": m["prompt"], "tag": m["tag"], "held_out": m.get("held_out", False),
                            "index": k, "correct": ok, "reason": reason})
            if len(kept) < keep_images:
                kept.append((m["prompt"], u8))
    summary = score(results)
    summary.update(steps=steps, guidance=guidance, seed=seed, images_per_prompt=images_per_prompt,
                   seconds=round(time.time() - t0, 1))
    return {"summary": summary, "results": results, "images": kept}


@torch.no_grad()
def evaluate_autoencoder(vae, size: int = 128, per_task: int = 8, seeds: int = 2) -> dict:
    """ShapesEval of the renderer's ground truth passed through encode -> decode: the score a perfect denoiser
    would reach on this latent space (the renderer itself scores ~1)."""
    results = []
    metas = prompts(per_task)
    for seed in range(seeds):
        imgs = np.stack([ground_truth(m, size, seed) for m in metas])
        for i in range(0, len(metas), 32):
            x = torch.from_numpy(imgs[i:i + 32]).permute(0, 3, 1, 2).float() / 127.5 - 1
            z = vae.encode(x.to(vae.device, vae.dtype)).latent_dist.mean
            y = vae.decode(z).sample.float().clamp(-1, 1).cpu()
            u8 = ((y + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
            for m, im in zip(metas[i:i + 32], u8):
                ok, reason = evaluate_image(im, m)
                results.append({"tag": m["tag"], "held_out": m.get("held_out", False), "correct": ok,
                                "reason": reason})
    return score(results)


def hash_prompt(text: str) -> int:
    """A stable small integer per prompt (Python's ``hash`` changes between runs)."""
    return sum((i + 1) * ord(c) for i, c in enumerate(text)) % 1_000_003


def load_for_eval(folder: Path):
    """A pipeline folder, a training checkpoint (its EMA weights) or a distillation checkpoint (its student)."""
    from ..pipelines import PocketTextToImagePipeline

    if (folder / "model_index.json").is_file():
        pipe = PocketTextToImagePipeline.from_pretrained(folder)
    elif json.loads((folder / "state.json").read_text()).get("kind") == "distill":
        from ..distill.train_distill import pipeline_from_distill_checkpoint
        pipe = pipeline_from_distill_checkpoint(folder)
    else:
        from ..training.train_t2i import pipeline_from_checkpoint
        pipe = pipeline_from_checkpoint(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    from ..pipelines.loading import read_sampling

    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path, help="pipeline folder, or a training checkpoint folder")
    p.add_argument("--steps", type=int, default=None, help="default: the folder's sampling.json, else 20")
    p.add_argument("--guidance", type=float, default=None, help="default: the folder's sampling.json, else 4")
    p.add_argument("--per-task", type=int, default=16, help="prompts per task (held-out prompts come on top)")
    p.add_argument("--images-per-prompt", type=int, default=4)
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0, help="another seed draws other images of the same prompts "
                   "(e.g. to choose sampling settings apart from the reported score)")
    p.add_argument("--out", type=Path, help="JSON report")
    args = p.parse_args(argv)
    if args.seed < 0:
        p.error(f"--seed must be >= 0, not {args.seed}")
    pipe = load_for_eval(args.model)
    sampling = read_sampling(args.model)
    steps = args.steps if args.steps is not None else sampling.get("num_inference_steps", 20)
    guidance = args.guidance if args.guidance is not None else sampling.get("guidance_scale", 4.0)
    report = evaluate_pipeline(pipe, prompts(args.per_task), args.images_per_prompt, steps, guidance,
                               seed=args.seed, width_mult=args.width_mult)
    print(json.dumps(report["summary"], indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({k: v for k, v in report.items() if k != "images"}, indent=1))


if __name__ == "__main__":
    main()
