"""Train the streaming video denoiser (S2DiT) on procedural moving-shape clips by flow matching.

    pocket-studio train t2v --out runs/t2v-teacher --mode teacher --steps 6000
    accelerate launch -m app.cli train t2v ...      # the same script on several processes / GPUs

``--mode teacher``: one chunk is the whole clip, so the network is bidirectional (the many-step teacher that
the 2-in-1 distillation starts from). ``--mode causal``: chunk-causal with an independent noise level per chunk
(diffusion forcing), a streaming model trained directly. Clips are pre-encoded once, frame by frame, with the
image autoencoder. EMA, checkpoints, ``--resume`` and the loss log as for the image model.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data.procedural_video import ProceduralVideoDataset, render_video
from .common import (
    LossLog,
    carried_note,
    config_from_args,
    cosine_lr,
    resume_checkpoint,
    resume_models,
    save_checkpoint,
)
from .train_t2i import ema_update, load_vae, vae_encode


@dataclass
class T2VTrainConfig:
    out: str = "runs/t2v-teacher"
    """Output folder: cache, checkpoints, loss log and the final pipeline in ``OUT/pipeline``."""
    resume: bool = False
    resume_from: str = ""
    """With ``--resume`` and no checkpoint in OUT yet: start from this one (e.g. a carried checkpoint)."""
    mode: str = "teacher"
    """teacher (bidirectional: one chunk = the clip) or causal (chunk-causal, a noise level per chunk)."""
    vae: str = "assets/models/pocket-vae"
    text_encoder: str = ""
    model_config: str = ""
    """JSON (inline or a file) of the S2DiT config; empty: the default size."""
    frames: int = 8
    image_size: int = 128
    samples: int = 4096
    batch_size: int = 8
    steps: int = 6000
    lr: float = 5e-4
    warmup: int = 200
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    cfg_dropout: float = 0.1
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 0
    cpu: bool = False

    def __post_init__(self):
        if self.mode not in ("teacher", "causal"):
            raise ValueError(f"mode must be teacher or causal, not {self.mode!r}")
        if min(self.steps, self.batch_size, self.samples, self.frames) < 1 or not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError("steps, batch_size, samples, frames and lr must be positive")
        if not 0 <= self.cfg_dropout < 1 or not 0 <= self.ema_decay < 1:
            raise ValueError("cfg_dropout and ema_decay must lie in [0, 1)")


def model_config(cfg: T2VTrainConfig, context_dim: int, latent_channels: int, latent_hw: tuple) -> dict:
    from ..models.s2dit import DEFAULT_CONFIG

    extra = dict(DEFAULT_CONFIG)
    if cfg.model_config:
        text = cfg.model_config
        extra.update(json.loads(text) if text.strip().startswith("{") else json.loads(Path(text).read_text()))
    extra.update(in_channels=latent_channels, out_channels=latent_channels, cross_attention_dim=context_dim,
                 sample_size=tuple(latent_hw))
    if cfg.mode == "teacher":
        extra["chunk_frames"] = cfg.frames
    if cfg.frames % extra["chunk_frames"]:
        raise ValueError(f"{cfg.frames} frames are not whole chunks of {extra['chunk_frames']}")
    return extra


@torch.no_grad()
def build_video_cache(cfg, vae, tokenizer, encoder, rank: int, world: int, show: bool) -> dict:
    """Latents (N, C, T, h, w), caption ids and one text-state table for this process's share (cached)."""
    from ..text_encoder import encode_text

    n = cfg.samples // world
    path = Path(cfg.out) / "cache" / f"clips-{cfg.seed}-{cfg.image_size}-{cfg.frames}-{n}-{rank}-of-{world}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    ds = ProceduralVideoDataset(frames=cfg.frames, size=cfg.image_size, seed=cfg.seed * 1000 + rank)
    latents, captions = [], []
    for start in tqdm(range(0, n, 8), desc="encode clips", disable=not show):
        scenes = [ds.scene(i) for i in range(start, min(n, start + 8))]
        clips = torch.stack([torch.from_numpy(render_video(s, cfg.frames, cfg.image_size)) for s in scenes])
        b, t = clips.shape[:2]
        x = clips.reshape(b * t, *clips.shape[2:]).permute(0, 3, 1, 2).float() / 127.5 - 1
        z = vae_encode(vae, x)
        latents.append(z.reshape(b, t, *z.shape[1:]).permute(0, 2, 1, 3, 4).half())
        captions += [s.caption for s in scenes]
    unique = [""] + sorted(set(captions))
    index = {c: i for i, c in enumerate(unique)}
    states = torch.cat([encode_text(tokenizer, encoder, unique[i:i + 256]) for i in range(0, len(unique), 256)])
    cache = {"latents": torch.cat(latents), "caption_ids": torch.tensor([index[c] for c in captions]),
             "text_states": states.half(), "captions": unique}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(cache, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return cache


def video_flow_loss(model, x0: torch.Tensor, ctx: torch.Tensor, gen: torch.Generator, chunk_frames: int,
                    per_chunk: bool) -> torch.Tensor:
    """Velocity regression at logit-normal sigmas: one per clip, or one per chunk (diffusion forcing)."""
    b, _, t = x0.shape[:3]
    sigma = torch.sigmoid(torch.randn(b, t // chunk_frames if per_chunk else 1, generator=gen))
    sigma = sigma.repeat_interleave(t // sigma.shape[1], dim=1).to(x0.device)  # (B, T)
    eps = torch.randn(x0.shape, generator=gen).to(x0.device)
    s = sigma.view(b, 1, t, 1, 1)
    pred = model(s * eps + (1 - s) * x0, sigma * 1000, ctx, chunk_frames=chunk_frames).sample
    return (pred.float() - (eps - x0)).pow(2).mean()


def pipeline_from_video_checkpoint(ckpt: str | Path):
    """The EMA weights of a video checkpoint, with the VAE and text encoder its run used."""
    from ..models import S2DiT
    from ..pipelines import PocketTextToVideoPipeline
    from ..text_encoder import load_text_encoder

    ckpt = Path(ckpt)
    cfg = json.loads((ckpt / "state.json").read_text())["config"]
    tokenizer, encoder = load_text_encoder(cfg["text_encoder"] or None)
    return PocketTextToVideoPipeline.assemble(S2DiT.from_pretrained(ckpt / "ema").eval(), load_vae(cfg["vae"]),
                                              tokenizer, encoder)


def train(cfg: T2VTrainConfig) -> Path:
    from accelerate import Accelerator

    from ..models import S2DiT
    from ..text_encoder import load_text_encoder

    acc = Accelerator(cpu=cfg.cpu)
    out = Path(cfg.out)
    ckpt = resume_checkpoint(out, cfg.resume, cfg.resume_from)  # a wrong name fails before the cache
    vae = load_vae(cfg.vae)
    tokenizer, encoder = load_text_encoder(cfg.text_encoder or None)
    cache = build_video_cache(cfg, vae, tokenizer, encoder, acc.process_index, acc.num_processes,
                              acc.is_main_process)
    latents, caption_ids, states = cache["latents"], cache["caption_ids"], cache["text_states"]
    model = S2DiT(**model_config(cfg, states.shape[-1], latents.shape[1], latents.shape[-2:]))
    chunk = int(model.config.chunk_frames)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    start, restart = resume_models(ckpt, {"denoiser": model, "ema": ema}, opt)
    model, opt = acc.prepare(model, opt)
    log = LossLog(out, enabled=acc.is_main_process)
    if acc.is_main_process:
        n_params = sum(p.numel() for p in acc.unwrap_model(model).parameters())
        print(f"t2v ({cfg.mode}): {n_params / 1e6:.2f}M parameters, {len(latents)} clips {tuple(latents.shape[1:])}, "
              f"chunks of {chunk} frames, from step {start}"
              + carried_note(restart, cfg.warmup))
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="t2v", disable=not acc.is_main_process)
    t0 = time.time()
    for step in bar:
        rng = random.Random(cfg.seed * 9973 + step * 131 + acc.process_index)
        gen = torch.Generator().manual_seed(cfg.seed * 7 + step * 2 + acc.process_index * 1_000_003)
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, cfg.steps, cfg.warmup, cfg.lr, restart=restart)
        idx = torch.tensor([rng.randrange(len(latents)) for _ in range(cfg.batch_size)])
        ids = caption_ids[idx].clone()
        ids[torch.rand(len(ids), generator=gen) < cfg.cfg_dropout] = 0
        x0, ctx = latents[idx].float().to(acc.device), states[ids].float().to(acc.device)
        loss = video_flow_loss(model, x0, ctx, gen, chunk, per_chunk=cfg.mode == "causal")
        acc.backward(loss)
        acc.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema_update(ema, acc.unwrap_model(model), cfg.ema_decay if step > cfg.warmup else 0.0)
        if step % cfg.log_every == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
            log.write(step, loss=loss.item(), lr=opt.param_groups[0]["lr"])
        if acc.is_main_process and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
            save_checkpoint(out, step + 1, {"denoiser": acc.unwrap_model(model), "ema": ema}, opt,
                            {"config": asdict(cfg), "kind": "t2v", "wall_s_this_run": round(time.time() - t0, 1)})
        acc.wait_for_everyone()
    final = out / "pipeline"
    if acc.is_main_process:
        from ..pipelines import PocketTextToVideoPipeline

        pipe = PocketTextToVideoPipeline.assemble(ema, vae, tokenizer=tokenizer, text_encoder=encoder)
        pipe.save_pretrained(final, include_text_encoder=bool(cfg.text_encoder))
        steps, guidance = (28, 4.0) if cfg.mode == "teacher" else (20, 4.0)
        (final / "sampling.json").write_text(json.dumps({"num_inference_steps": steps, "guidance_scale": guidance}))
        print(f"t2v: pipeline saved to {final}")
    acc.wait_for_everyone()
    return final


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    train(config_from_args(T2VTrainConfig, argv, "Train the streaming video denoiser on procedural clips.", prog))


if __name__ == "__main__":
    main()
