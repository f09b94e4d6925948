"""Score a streaming video pipeline: per-frame ShapesEval, the described motion, flicker (``motion_eval``).

    pocket-studio eval motion --model DIR [--frames 8] [--steps N] [--guidance G] [--per-direction 4] --out r.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data.procedural_video import video_prompts
from .motion_eval import evaluate_video, summarise
from .run_shapes_eval import hash_prompt


def evaluate_video_pipeline(pipe, metas: list[dict], frames: int = 8, clips_per_prompt: int = 2, steps: int = 4,
                            guidance: float = 1.0, seed: int = 0, show: bool = True) -> dict:
    results, t0 = [], time.time()
    for m in tqdm(metas, desc="motion-eval", disable=not show):
        for k in range(clips_per_prompt):
            gen = torch.Generator().manual_seed(seed * 100_003 + hash_prompt(m["prompt"]) * 7 + k)
            clip = pipe(m["prompt"], num_frames=frames, num_inference_steps=steps, guidance_scale=guidance,
                        generator=gen).frames
            results.append({**evaluate_video(clip, m), "prompt": m["prompt"], "direction": m["direction"],
                            "held_out": m.get("held_out", False), "index": k})
    summary = summarise(results)
    summary.update(frames=frames, steps=steps, guidance=guidance, clips_per_prompt=clips_per_prompt,
                   seconds=round(time.time() - t0, 1))
    return {"summary": summary, "results": results}


def load_for_eval(folder: Path):
    from ..pipelines.loading import load_t2v

    if (folder / "model_index.json").is_file():
        pipe = load_t2v(folder)
    else:
        from ..training.train_t2v import pipeline_from_video_checkpoint
        pipe = pipeline_from_video_checkpoint(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    from ..pipelines.loading import read_sampling

    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path, help="video pipeline folder, or a training checkpoint")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--steps", type=int, default=None, help="default: the folder's sampling.json, else 4")
    p.add_argument("--guidance", type=float, default=None, help="default: the folder's sampling.json, else 1")
    p.add_argument("--per-direction", type=int, default=4, help="seen prompts per direction (held-out on top)")
    p.add_argument("--clips-per-prompt", type=int, default=2)
    p.add_argument("--out", type=Path, help="JSON report")
    args = p.parse_args(argv)
    pipe = load_for_eval(args.model)
    sampling = read_sampling(args.model)
    steps = args.steps if args.steps is not None else sampling.get("num_inference_steps", 4)
    guidance = args.guidance if args.guidance is not None else sampling.get("guidance_scale", 1.0)
    report = evaluate_video_pipeline(pipe, video_prompts(args.per_direction), args.frames, args.clips_per_prompt,
                                     steps, guidance)
    print(json.dumps(report["summary"], indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
