"""Train the project's autoencoder: a diffusers ``AutoencoderKL`` on the procedural images.

The result is a plain diffusers VAE folder, so a real one (e.g. SD's) drops in unchanged. Trained on random
crops (the network is fully convolutional; a 64 px crop costs a quarter of a 128 px image), L1 + MSE + a small
KL. At the end ``scaling_factor``/``shift_factor`` are set so latents have zero mean and unit variance, as
diffusers pipelines expect.

``--init VAE_DIR --decoder-only`` fine-tunes the decoder of a trained VAE with its encoder frozen: the latent
space (and its scaling) does not move, so a denoiser trained on it stays valid while its images sharpen.

``--init VAE_DIR --tiny-decoder`` trains a ``TinyVAEDecoder`` (diffusers' ``DecoderTiny``, TAESD's decoder) on the
frozen encoder's latents: a several times cheaper decoder for the same latent space, for the streaming video model.

    python -m generators.training.train_vae --out runs/vae [--resume]
    python -m generators.training.train_vae --out runs/vae-dec --init runs/vae/vae --decoder-only --edge-weight 1
    python -m generators.training.train_vae --out runs/tiny-dec --init assets/models/pocket-vae --tiny-decoder
    accelerate launch --multi_gpu --num_processes 2 -m app.cli train vae --out runs/vae
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import ProceduralDataset, render_scene
from .common import LossLog, config_from_args, cosine_lr, latest_checkpoint, load_optimizer, save_checkpoint


@dataclass
class VAETrainConfig:
    out: str = "runs/vae"
    """Output folder: checkpoints, loss log, and the final ``vae/``."""
    resume: bool = False
    image_size: int = 128
    crop: int = 64
    block_out_channels: tuple = (32, 48, 64, 128)
    latent_channels: int = 4
    norm_num_groups: int = 8
    bank: int = 2048
    """Images rendered once per process and cropped at random."""
    batch_size: int = 16
    steps: int = 2000
    lr: float = 1e-3
    warmup: int = 100
    kl_weight: float = 1e-6
    foreground_weight: float = 5.0
    """Loss weight of pixels that differ from the crop's median colour: shapes cover a few percent of an image,
    and without it an early VAE gets the grey background right and the shapes' colours wrong."""
    edge_weight: float = 0.0
    """Weight of an L1 loss on image gradients (foreground-weighted too): keeps corners of stars and diamonds
    sharp, which a per-pixel loss blurs and ShapesEval's shape detector then rejects."""
    init: str = ""
    """A trained VAE folder to start from (its architecture replaces the fields above)."""
    decoder_only: bool = False
    """With ``init``: train the decoder only; encoder, latent space and scaling stay as they are."""
    tiny_decoder: bool = False
    """With ``init``: train a new ``TinyVAEDecoder`` for the init VAE's latents (the whole VAE frozen); the result
    is ``OUT/decoder``."""
    tiny_width: int = 32
    tiny_blocks: tuple = (3, 2, 1, 0)
    """``DecoderTiny`` blocks per stage, lowest resolution first."""
    checkpoint_every: int = 250
    log_every: int = 25
    seed: int = 0
    cpu: bool = False

    def __post_init__(self):
        if self.decoder_only and not self.init:
            raise ValueError("--decoder-only needs --init: the trained VAE whose decoder is fine-tuned")
        if self.tiny_decoder and (not self.init or self.decoder_only):
            raise ValueError("--tiny-decoder needs --init (the VAE whose latents it decodes) and no --decoder-only")
        if self.tiny_width < 1 or min(self.tiny_blocks, default=-1) < 0:
            raise ValueError("tiny_width must be positive and tiny_blocks non-negative")
        if self.crop > self.image_size or self.image_size % 2 ** (len(self.block_out_channels) - 1):
            raise ValueError("crop must fit the image, and the image must divide by the VAE's downsampling")
        if self.steps < 1 or self.batch_size < 1 or not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError("steps, batch_size and lr must be positive")


def build_vae(cfg: VAETrainConfig):
    from diffusers import AutoencoderKL

    n = len(cfg.block_out_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(cfg.block_out_channels),
                         layers_per_block=1, latent_channels=cfg.latent_channels, norm_num_groups=cfg.norm_num_groups,
                         sample_size=cfg.image_size)


def render_bank(n: int, size: int, seed: int) -> torch.Tensor:
    ds = ProceduralDataset(size=size, seed=seed)
    imgs = np.stack([render_scene(ds.scene(i), size) for i in tqdm(range(n), desc="render", leave=False)])
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()  # uint8


def _batch(bank: torch.Tensor, rng: random.Random, b: int, crop: int) -> torch.Tensor:
    out = []
    size = bank.shape[-1]
    for _ in range(b):
        img = bank[rng.randrange(len(bank))]
        y, x = rng.randrange(size - crop + 1), rng.randrange(size - crop + 1)
        img = img[:, y:y + crop, x:x + crop]
        if rng.random() < 0.5:
            img = img.flip(-1)
        out.append(img)
    return torch.stack(out).float() / 127.5 - 1


@torch.no_grad()
def latent_stats(vae, bank: torch.Tensor, n: int = 256) -> tuple[float, float]:
    zs = [vae.encode(bank[i:i + 32].float() / 127.5 - 1).latent_dist.mean for i in range(0, min(n, len(bank)), 32)]
    z = torch.cat(zs)
    return float(z.mean()), float(z.std())


def build_tiny(cfg: VAETrainConfig, vae):
    from ..models.tiny_decoder import TinyVAEDecoder

    return TinyVAEDecoder(latent_channels=vae.config.latent_channels, out_channels=vae.config.out_channels,
                          block_out_channels=(cfg.tiny_width,) * len(vae.config.block_out_channels),
                          num_blocks=tuple(cfg.tiny_blocks), scaling_factor=vae.config.scaling_factor,
                          shift_factor=vae.config.shift_factor or 0.0)


class Paired:
    """One VAE's encoder with another decoder (a ``TinyVAEDecoder``), for the reconstruction scores."""

    def __init__(self, vae, decoder):
        self.encode, self.decode, self.device, self.dtype = vae.encode, decoder.decode, vae.device, vae.dtype


@torch.no_grad()
def reconstruction_psnr(vae, images: torch.Tensor) -> float:
    """Mean PSNR (dB) of encode->decode on uint8 images, in [0, 255]."""
    x = images.float() / 127.5 - 1
    scores = []
    for i in range(0, len(x), 16):
        y = vae.decode(vae.encode(x[i:i + 16]).latent_dist.mean).sample.clamp(-1, 1)
        mse = ((y - x[i:i + 16]) ** 2).mean(dim=(1, 2, 3)) / 4  # [-1,1] -> [0,1]
        scores.append(10 * torch.log10(1 / mse.clamp_min(1e-10)))
    return float(torch.cat(scores).mean())


class _EncodeDecode(torch.nn.Module):
    """One forward through encoder, posterior sample and decoder (the VAE's, or a separate one), so DDP sees
    (and reduces) every gradient."""

    def __init__(self, vae, frozen_encoder: bool = False, decoder=None):
        super().__init__()
        self.vae, self.decoder = vae, decoder
        self.frozen_encoder = frozen_encoder

    def forward(self, x):
        with torch.set_grad_enabled(not self.frozen_encoder):
            dist = self.vae.encode(x).latent_dist
        return (self.decoder or self.vae).decode(dist.sample()).sample, dist.kl().mean()


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical finite differences."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def train(cfg: VAETrainConfig) -> Path:
    from accelerate import Accelerator

    from .train_t2i import open_vae

    acc = Accelerator(cpu=cfg.cpu)
    out = Path(cfg.out)
    vae = open_vae(cfg.init) if cfg.init else build_vae(cfg)
    tiny = build_tiny(cfg, vae) if cfg.tiny_decoder else None
    if tiny is not None:
        vae.requires_grad_(False)
    if cfg.decoder_only:
        vae.encoder.requires_grad_(False)
        if vae.quant_conv is not None:
            vae.quant_conv.requires_grad_(False)
    trained = tiny if tiny is not None else vae
    opt = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    start = 0
    ckpt = latest_checkpoint(out) if cfg.resume else None
    if ckpt is not None:
        name = "decoder" if tiny is not None else "vae"
        trained.load_state_dict(type(trained).from_pretrained(ckpt / name).state_dict())
        start = load_optimizer(ckpt, opt)["step"]
    wrapped, opt = acc.prepare(_EncodeDecode(vae, cfg.decoder_only or tiny is not None, tiny), opt)
    bank = render_bank(cfg.bank, cfg.image_size, seed=cfg.seed * 100 + acc.process_index)
    rng = random.Random(cfg.seed * 7919 + acc.process_index * 104729 + start)
    log = LossLog(out, enabled=acc.is_main_process)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="vae", disable=not acc.is_main_process)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, cfg.steps, cfg.warmup, cfg.lr)
        x = _batch(bank, rng, cfg.batch_size, cfg.crop).to(acc.device)
        rec, kl = wrapped(x)
        median = x.flatten(2).median(dim=2).values[:, :, None, None]
        weight = 1 + (cfg.foreground_weight - 1) * ((x - median).abs().amax(1, keepdim=True) > 0.1).float()
        err = rec - x
        l1 = err.abs().mean()
        loss = (weight * (err.abs() + err.pow(2))).mean() / weight.mean() + cfg.kl_weight * kl
        if cfg.edge_weight:
            w_x = torch.maximum(weight[..., :, 1:], weight[..., :, :-1])  # an edge counts if either pixel does
            w_y = torch.maximum(weight[..., 1:, :], weight[..., :-1, :])
            for g_rec, g_x, w in zip(image_gradients(rec), image_gradients(x), (w_x, w_y)):
                loss = loss + cfg.edge_weight * (w * (g_rec - g_x).abs()).mean() / w.mean()
        acc.backward(loss)
        acc.clip_grad_norm_(wrapped.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % cfg.log_every == 0:
            bar.set_postfix(l1=f"{l1.item():.4f}")
            log.write(step, loss=loss.item(), l1=l1.item(), kl=kl.item())
        if acc.is_main_process and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
            save_checkpoint(out, step + 1, {"decoder": tiny} if tiny is not None else {"vae": vae}, opt,
                            {"config": asdict(cfg)})
        acc.wait_for_everyone()
    if tiny is not None:
        final = out / "decoder"
        if acc.is_main_process:
            save_tiny_report(cfg, vae, tiny.eval(), final)
        acc.wait_for_everyone()
        return final
    final = out / "vae"
    if acc.is_main_process:
        from ..evaluation.run_shapes_eval import evaluate_autoencoder

        model = vae.eval()
        if cfg.decoder_only:  # the latent space is the init's: keep its scaling
            mean, std = model.config.shift_factor, 1.0 / model.config.scaling_factor
        else:
            mean, std = latent_stats(model, bank)
            model.register_to_config(scaling_factor=1.0 / std, shift_factor=mean)
        held = render_bank(64, cfg.image_size, seed=10_000 + cfg.seed)
        psnr = reconstruction_psnr(model, held)
        ceiling = evaluate_autoencoder(model, cfg.image_size)
        model.save_pretrained(final)
        (final / "train_report.json").write_text(json.dumps(
            {"steps": cfg.steps, "reconstruction_psnr_db": round(psnr, 2), "latent_mean": mean, "latent_std": std,
             "held_out_images": 64, "shapes_eval_of_reconstructions": ceiling, "config": asdict(cfg)}, indent=1))
        print(f"vae: {final} reconstruction PSNR {psnr:.2f} dB on 64 unseen images; ShapesEval of reconstructed "
              f"ground truth {ceiling['overall']:.3f} on {ceiling['images']} images (a ceiling for any denoiser on this latent space)")
    acc.wait_for_everyone()
    return final


def decode_ms(decoder, z: torch.Tensor, repeats: int = 5) -> float:
    """Median wall time of one decode (after a warm-up)."""
    import time

    with torch.no_grad():
        decoder.decode(z)
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            decoder.decode(z)
            runs.append(time.perf_counter() - t0)
    return sorted(runs)[len(runs) // 2] * 1e3


def save_tiny_report(cfg: VAETrainConfig, vae, tiny, final: Path) -> None:
    """Save the tiny decoder with its figures beside the full decoder's: PSNR, ShapesEval of reconstructions,
    and decode time per 2-frame chunk measured side by side."""
    from ..evaluation.run_shapes_eval import evaluate_autoencoder

    held = render_bank(64, cfg.image_size, seed=10_000 + cfg.seed)
    paired = Paired(vae, tiny)
    z = torch.randn(2, vae.config.latent_channels, *(s // 2 ** (len(vae.config.block_out_channels) - 1)
                                                    for s in (cfg.image_size, cfg.image_size)))
    full_ms, tiny_ms = decode_ms(vae, z), decode_ms(tiny, z)
    report = {"steps": cfg.steps, "held_out_images": 64,
              "reconstruction_psnr_db": {"tiny": round(reconstruction_psnr(paired, held), 2),
                                         "full": round(reconstruction_psnr(vae, held), 2)},
              "shapes_eval_of_reconstructions": {"tiny": evaluate_autoencoder(paired, cfg.image_size)["overall"],
                                                 "full": evaluate_autoencoder(vae, cfg.image_size)["overall"]},
              "decode_ms_2_frames": {"tiny": round(tiny_ms, 1), "full": round(full_ms, 1),
                                     "threads": torch.get_num_threads()},
              "params": {"tiny": sum(p.numel() for p in tiny.parameters()),
                         "full_decoder": sum(p.numel() for n, p in vae.named_parameters()
                                             if n.startswith(("decoder.", "post_quant_conv.")))},
              "config": asdict(cfg)}
    tiny.save_pretrained(final)
    (final / "train_report.json").write_text(json.dumps(report, indent=1))
    print(f"tiny decoder: {final}: PSNR {report['reconstruction_psnr_db']} dB, ShapesEval of reconstructions "
          f"{report['shapes_eval_of_reconstructions']}, decode {tiny_ms:.1f} vs {full_ms:.1f} ms per 2 frames "
          f"({full_ms / tiny_ms:.1f}x faster)")


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    train(config_from_args(VAETrainConfig, argv, "Train the autoencoder on procedural images.", prog))


if __name__ == "__main__":
    main()
