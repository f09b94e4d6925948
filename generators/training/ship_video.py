"""Ship a distilled streaming student as the studio's video model: copy its pipeline into ``assets/models/NAME``
(with ``--decoder``, a ``TinyVAEDecoder`` in place of the VAE), score it and its teacher on the same prompts and seeds
(``eval motion``), and write its model card.

    python -m generators.training.ship_video --run runs/t2v-dmd --teacher runs/t2v-teacher/pipeline \\
        --decoder runs/tiny-dec/decoder --out assets/models/pocket-t2v --command "pocket-studio distill t2v-dmd ..."
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.procedural_video import video_prompts
from ..evaluation.run_motion_eval import evaluate_video_pipeline
from ..pipelines.loading import load_t2v, read_sampling
from .common import atomic_folder, latest_checkpoint
from .ship import _loss_summary, label_grid

STRIP_PROMPTS = ["a red circle moving right", "two blue squares moving up", "a yellow star moving left",
                 "a green triangle moving down"]


def strip(pipes: dict, frames: int, path: Path, seed: int = 0) -> None:
    """One row per (prompt, model): the clip's frames side by side, for the README and the log."""
    cells, captions = [], []
    for prompt in STRIP_PROMPTS:
        for name, (pipe, steps, guidance) in pipes.items():
            clip = pipe(prompt, num_frames=frames, num_inference_steps=steps, guidance_scale=guidance,
                        generator=torch.Generator().manual_seed(seed)).frames
            cells += [Image.fromarray(f) for f in clip]
            captions += [f"{name}: {prompt}" if i == 0 else f"t={i}" for i in range(len(clip))]
    path.parent.mkdir(parents=True, exist_ok=True)
    label_grid(cells, captions, cols=frames).save(path)


def reused_teacher(card_path: Path | None, teacher: Path, student: dict) -> dict | None:
    """The teacher's figures from an earlier card, when it scored the same teacher on as many clips of as many
    frames; None (score it again) otherwise."""
    if card_path is None:
        return None
    t = json.loads(Path(card_path).read_text())["teacher"]
    same = (t["folder"] == str(teacher) and t["summary"]["clips"] == student["clips"]
            and t["summary"]["frames"] == student["frames"])
    if not same:
        raise SystemExit(f"ship: {card_path} scored another teacher or other prompts: drop --teacher-card")
    return {"summary": t["summary"]}


def card_markdown(card: dict) -> str:
    s, t, tr = card["motion_eval"], card["teacher"], card["training"]
    rows = "\n".join(f"| {k} | {s[k]} | {t['summary'][k]} |" for k in ("frame_accuracy", "motion_accuracy", "flicker"))
    return f"""# Pocket T2V (the studio's streaming video model)

S2DiT (`generators/models/s2dit.py`: LinConv hybrid attention and stride self-attention in a sandwich layout),
{card['denoiser_params_m']}M parameters, chunk-causal with {card['chunk_frames']}-frame chunks and explicit caches,
{card['default_steps']} steps per chunk at guidance 1, {card['frame_px'][0]}x{card['frame_px'][1]} frames decoded by
a {card['decoder_params_k']}k-parameter `{card['decoder']}` for the pocket VAE's latents. The MiniLM text encoder
loads from its PyPI package.

**Made by** the 2-in-1 distillation of a bidirectional teacher (`{t['folder']}`, {t['summary']['steps']} steps,
guidance {t['summary']['guidance']:g}) trained here on procedural moving-shape clips: `{tr['command']}`
({tr['steps']} steps, {tr['train_wall_s_logged'] / 60:.0f} min logged). Every run: `docs/t2v_training_log.md`.

**Motion eval** (`pocket-studio eval motion`; {s['clips']} clips of {s['frames']} frames, the same prompts and seeds
for both):

| | this model | teacher |
|---|---|---|
{rows}

Held-out combinations: frame accuracy {s['held_out'].get('frame_accuracy')}, motion {s['held_out'].get('motion_accuracy')}
(teacher {t['summary']['held_out'].get('frame_accuracy')}, {t['summary']['held_out'].get('motion_accuracy')}).
Reproduce: `pocket-studio eval motion --model assets/models/{card['folder_name']}`. Per-clip verdicts: `motion_eval.json`.
"""


def main(argv: list[str] | None = None) -> None:
    from ..models.tiny_decoder import TinyVAEDecoder

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="a t2v-dmd (or t2v-ode) distillation folder")
    p.add_argument("--teacher", type=Path, required=True, help="the teacher's pipeline folder, scored beside it")
    p.add_argument("--decoder", type=Path, help="a TinyVAEDecoder folder (default: keep the student's VAE)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--command", default="", help="the distillation command, for the card")
    p.add_argument("--per-direction", type=int, default=4)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--strip", type=Path, default=Path("docs/t2v_samples.png"))
    p.add_argument("--teacher-card", type=Path, help="a model_card.json shipped from the same teacher with the same "
                   "prompts: its teacher figures are reused (they are deterministic) instead of scored again")
    args = p.parse_args(argv)
    student = load_t2v(args.run / "pipeline")
    teacher = load_t2v(args.teacher)
    if args.decoder:
        student.register_modules(vae=TinyVAEDecoder.from_pretrained(args.decoder).eval())
    ckpt = latest_checkpoint(args.run)
    if ckpt is None:
        p.error(f"--run {args.run}: no checkpoint-STEP folder")
    state = json.loads((ckpt / "state.json").read_text())
    steps = read_sampling(args.run / "pipeline").get("num_inference_steps", 4)
    t_sampling = read_sampling(args.teacher)
    t_steps, t_guidance = t_sampling.get("num_inference_steps", 28), t_sampling.get("guidance_scale", 4.0)
    metas = video_prompts(args.per_direction)
    with atomic_folder(args.out) as tmp:
        student.denoiser.half()  # half the bytes in assets/; loading upcasts to fp32
        student.vae.half()
        student.save_pretrained(tmp, include_text_encoder=False)
        (tmp / "sampling.json").write_text(json.dumps({"num_inference_steps": steps, "guidance_scale": 1.0}))
        shipped = load_t2v(tmp)  # score what ships, as it loads
        report = evaluate_video_pipeline(shipped, metas, args.frames, steps=steps, guidance=1.0)
        t_report = reused_teacher(args.teacher_card, args.teacher, report["summary"])
        if t_report is None:
            t_report = evaluate_video_pipeline(teacher, metas, args.frames, steps=t_steps, guidance=t_guidance)
        card = {"model": f"{steps}-step streaming S2DiT student (2-in-1 distillation)", "folder_name": args.out.name,
                "denoiser_params_m": round(sum(q.numel() for q in shipped.denoiser.parameters()) / 1e6, 2),
                "decoder_params_k": round(sum(q.numel() for q in shipped.vae.parameters()) / 1e3),
                "decoder": type(shipped.vae).__name__, "chunk_frames": shipped.chunk_frames,
                "frame_px": list(shipped.frame_size()), "default_steps": steps, "stored_dtype": "fp16",
                "training": {"command": args.command, "steps": state["step"], "config": state["config"],
                             **_loss_summary(args.run)},
                "motion_eval": report["summary"],
                "teacher": {"folder": str(args.teacher), "summary": t_report["summary"]}}
        (tmp / "model_card.json").write_text(json.dumps(card, indent=1))
        (tmp / "README.md").write_text(card_markdown(card))
        (tmp / "motion_eval.json").write_text(json.dumps(report["results"], indent=0))
    again = load_t2v(args.out)
    strip({"student": (again, steps, 1.0), "teacher": (teacher, t_steps, t_guidance)}, args.frames, args.strip)
    print(json.dumps({k: card[k] for k in ("model", "motion_eval")} | {"teacher": card["teacher"]["summary"]},
                     indent=1, default=lambda o: float(np.asarray(o))))


if __name__ == "__main__":
    main()
