"""Streaming text-to-video pipeline for S2DiT: frames come out chunk by chunk, for as long as the caller asks.

Components as for images (``denoiser`` = S2DiT, ``vae`` = any diffusers ``AutoencoderKL`` applied per frame,
``scheduler`` = ``FlowMatchEulerDiscreteScheduler``, ``tokenizer`` + ``text_encoder``). Each chunk is denoised
from noise in ``num_inference_steps`` steps reading the caches of the chunks before it; the finished chunk is
then run once more at t = 0 to extend the caches (Self-Forcing / CausVid), so every chunk costs the same.
Guidance keeps two streams (conditional and unconditional), each with its own caches, in one batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from .. import models  # noqa: F401  (diffusers finds our denoiser classes only in imported modules)
from .base import PocketPipeline
from .text_to_image import check_prompt


def _bf16_cpu(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype == torch.float32 and torch.cpu._is_avx512_bf16_supported()


MAX_CHUNKS = 10_000
"""A stream longer than this is asked for by mistake (at 2 frames a chunk: hours of video)."""


@dataclass
class VideoPipelineOutput(BaseOutput):
    frames: np.ndarray
    """(T, H, W, 3) uint8."""


class PocketTextToVideoPipeline(PocketPipeline):


    @property
    def chunk_frames(self) -> int:
        return int(self.denoiser.config.chunk_frames)

    def frame_size(self, latent_hw: tuple[int, int] | None = None) -> tuple[int, int]:
        h, w = latent_hw or self.latent_size
        return h * self.vae_scale_factor, w * self.vae_scale_factor

    @property
    def latent_size(self) -> tuple[int, int]:
        size = getattr(self.denoiser.config, "sample_size", None) or (16, 16)
        return tuple(size) if isinstance(size, (list, tuple)) else (int(size), int(size))

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """(B, C, T, h, w) latents -> (B, T, H, W, 3) uint8, one frame at a time through the image VAE.

        On a CPU with bfloat16 matrix units (AVX512-BF16 / AMX) the decoder runs under bfloat16 autocast: twice
        as fast here, 57 dB from the float32 frames (at most 2 grey levels apart)."""
        b, c, t, h, w = latents.shape
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        z = latents.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w) / self.vae.config.scaling_factor + shift
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=_bf16_cpu(z)):
            img = (self.vae.decode(z.to(self.vae.dtype)).sample.float() / 2 + 0.5).clamp(0, 1)
        if not torch.isfinite(img).all():
            raise FloatingPointError("the model produced non-finite pixels (a broken checkpoint?)")
        img = (img * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return img.reshape(b, t, *img.shape[1:])

    def check_inputs(self, prompt, num_inference_steps, guidance_scale, num_chunks):
        prompts = check_prompt(prompt)
        if len(prompts) != 1:
            raise ValueError("one prompt per stream")
        if not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= 200:
            raise ValueError(f"num_inference_steps must be an integer in 1..200, not {num_inference_steps!r}")
        if not (isinstance(guidance_scale, (int, float)) and np.isfinite(guidance_scale) and 0 <= guidance_scale <= 30):
            raise ValueError(f"guidance_scale must be a number in [0, 30], not {guidance_scale!r}")
        if num_chunks is not None and (not isinstance(num_chunks, int) or not 1 <= num_chunks <= MAX_CHUNKS):
            raise ValueError(f"the stream must be 1..{MAX_CHUNKS} chunks long, not {num_chunks!r}")
        return prompts

    @torch.no_grad()
    def stream(self, prompt: str, num_chunks: int | None = None, num_inference_steps: int = 4,
               guidance_scale: float = 1.0, negative_prompt: str = "", generator: torch.Generator | None = None,
               callback_on_step_end=None, callback_on_step_end_tensor_inputs: tuple = ("latents",),
               output_type: str = "np") -> Iterator[np.ndarray | torch.Tensor]:
        """Yield each chunk's frames ((F, H, W, 3) uint8, or latents with ``output_type="latent"``) as soon as it
        is made; ``num_chunks=None`` goes on until the caller stops iterating."""
        prompts = self.check_inputs(prompt, num_inference_steps, guidance_scale, num_chunks)
        if output_type not in ("np", "latent"):
            raise ValueError(f"output_type must be np or latent, not {output_type!r}")
        bad = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if bad:
            raise ValueError(f"callback_on_step_end_tensor_inputs: {sorted(bad)} not in {self._callback_tensor_inputs}")
        device = self._execution_device
        use_cfg = guidance_scale > 1.0
        cond = self.encode_prompt(prompts, device)
        if use_cfg:
            uncond = self.encode_prompt([negative_prompt], device)
            ctx = torch.cat([uncond, cond])
        else:
            ctx = cond
        ctx = ctx.to(self.denoiser.dtype)
        f = self.chunk_frames
        h, w = self.latent_size
        shape = (1, int(self.denoiser.config.in_channels), f, h, w)
        cache = None
        chunk = 0
        while num_chunks is None or chunk < num_chunks:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
            self.scheduler.set_timesteps(num_inference_steps, device=device)
            for i, t in enumerate(self.scheduler.timesteps):
                x_in = torch.cat([latents, latents]) if use_cfg else latents
                out = self.denoiser(x_in.to(self.denoiser.dtype), t.expand(x_in.shape[0]), ctx, cache=cache).sample.float()
                noise_pred = self.guide(out, guidance_scale, use_cfg)
                latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
                if callback_on_step_end is not None:
                    tensors = {"latents": latents, "noise_pred": noise_pred}
                    got = callback_on_step_end(self, chunk * num_inference_steps + i, t,
                                               {k: tensors[k] for k in callback_on_step_end_tensor_inputs}) or {}
                    latents = got.pop("latents", latents)
            x_in = torch.cat([latents, latents]) if use_cfg else latents
            zero = torch.zeros(x_in.shape[0], device=device)
            cache = self.denoiser(x_in.to(self.denoiser.dtype), zero, ctx, cache=cache).cache
            chunk += 1
            yield latents[0] if output_type == "latent" else self.decode(latents)[0]

    def __call__(self, prompt: str, num_frames: int | None = None, num_inference_steps: int = 4,
                 guidance_scale: float = 1.0, negative_prompt: str = "", generator: torch.Generator | None = None,
                 callback_on_step_end=None, callback_on_step_end_tensor_inputs: tuple = ("latents",),
                 output_type: str = "np", return_dict: bool = True):
        """All frames at once (rounded up to whole chunks): the stream, collected."""
        num_frames = num_frames or 4 * self.chunk_frames
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive whole number, not {num_frames!r}")
        chunks = -(-num_frames // self.chunk_frames)
        parts = list(self.stream(prompt, chunks, num_inference_steps, guidance_scale, negative_prompt, generator,
                                 callback_on_step_end, callback_on_step_end_tensor_inputs, output_type))
        frames = (torch.cat(parts, dim=1) if output_type == "latent" else np.concatenate(parts))
        frames = frames[:, :num_frames] if output_type == "latent" else frames[:num_frames]
        self.maybe_free_model_hooks()
        return VideoPipelineOutput(frames=frames) if return_dict else (frames,)
