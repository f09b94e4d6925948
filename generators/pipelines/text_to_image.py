"""Text-to-image pipeline for the compact denoisers: diffusers' ``DiffusionPipeline`` conventions throughout.

Components: ``denoiser`` (SnapGen U-Net or SnapGen++ DiT), ``vae`` (any diffusers ``AutoencoderKL``),
``scheduler`` (``FlowMatchEulerDiscreteScheduler``), ``tokenizer`` + ``text_encoder`` (any transformers text
encoder). A folder saved without its text encoder (the shipped default: the MiniLM is a pip package, not a
copy in ``assets/``) gets the MiniLM back on load.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from .. import models  # noqa: F401  (diffusers finds our denoiser classes only in imported modules)
from .base import PocketPipeline

MAX_PROMPT_CHARS = 2000


def check_prompt(prompt, name: str = "prompt", allow_empty: bool = False) -> list[str]:
    """The prompt(s) as a list, or a ValueError naming what is wrong (empty, not text, too long, not UTF-8).
    Prompts longer than the encoder's tokens are truncated, as every diffusers pipeline does."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt) if prompt is not None else []
    if not prompts:
        raise ValueError(f"{name}: give at least one prompt")
    for p in prompts:
        if not isinstance(p, str):
            raise ValueError(f"{name}: expected text, got {type(p).__name__}")
        if not allow_empty and not p.strip():
            raise ValueError(f"{name} is empty: describe what to make, e.g. 'a photo of a red circle'")
        if len(p) > MAX_PROMPT_CHARS:
            raise ValueError(f"{name}: {len(p)} characters, more than {MAX_PROMPT_CHARS}")
        try:
            p.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{name} is not valid UTF-8 text") from None
    return prompts


class PocketTextToImagePipeline(PocketPipeline):

    # -- properties --------------------------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return int(self.denoiser.config.sample_size) * self.vae_scale_factor


    @property
    def widths(self) -> tuple[float, ...]:
        """Widths the denoiser can run at (elastic SnapGen++ models list several)."""
        return tuple(getattr(self.denoiser.config, "widths", None) or (1.0,))

    # -- steps ---------------------------------------------------------------------------------------------------
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        z = latents / self.vae.config.scaling_factor + shift
        return self.vae.decode(z.to(self.vae.dtype)).sample

    def check_inputs(self, prompt, negative_prompt, num_inference_steps, guidance_scale, height, width,
                     width_mult) -> tuple[list[str], list[str]]:
        prompts = check_prompt(prompt)
        negatives = check_prompt(negative_prompt if negative_prompt is not None else "", "negative_prompt",
                                 allow_empty=True)
        if len(negatives) not in (1, len(prompts)):
            raise ValueError(f"negative_prompt: {len(negatives)} given for {len(prompts)} prompts")
        if not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= 200:
            raise ValueError(f"num_inference_steps must be an integer in 1..200, not {num_inference_steps!r}")
        if not (isinstance(guidance_scale, (int, float)) and np.isfinite(guidance_scale) and 0 <= guidance_scale <= 30):
            raise ValueError(f"guidance_scale must be a number in [0, 30], not {guidance_scale!r}")
        for name, v in (("height", height), ("width", width)):
            if v is not None and v != self.image_size:
                raise ValueError(f"{name}={v}: this model makes {self.image_size}x{self.image_size} images")
        if width_mult not in self.widths:
            raise ValueError(f"width_mult={width_mult}: this model runs at {', '.join(f'{w:g}' for w in self.widths)}")
        return prompts, negatives * (len(prompts) if len(negatives) == 1 else 1)

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], negative_prompt: str | list[str] | None = None,
                 num_inference_steps: int = 20, guidance_scale: float = 4.0, num_images_per_prompt: int = 1,
                 height: int | None = None, width: int | None = None, width_mult: float = 1.0,
                 generator: torch.Generator | list[torch.Generator] | None = None, latents: torch.Tensor | None = None,
                 output_type: str = "pil", return_dict: bool = True, callback_on_step_end=None,
                 callback_on_step_end_tensor_inputs: list[str] = ("latents",)):
        prompts, negatives = self.check_inputs(prompt, negative_prompt, num_inference_steps, guidance_scale,
                                               height, width, width_mult)
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"output_type must be pil, np, pt or latent, not {output_type!r}")
        bad = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if bad:
            raise ValueError(f"callback_on_step_end_tensor_inputs: {sorted(bad)} not in {self._callback_tensor_inputs}")
        device = self._execution_device
        if not 1 <= num_images_per_prompt <= 64:
            raise ValueError("num_images_per_prompt must lie in 1..64")
        cond = self.encode_prompt(prompts, device).repeat_interleave(num_images_per_prompt, 0)
        use_cfg = guidance_scale > 1.0
        if use_cfg:
            uncond = self.encode_prompt(negatives, device).repeat_interleave(num_images_per_prompt, 0)
            ctx = torch.cat([uncond, cond])
        else:
            ctx = cond
        ctx = ctx.to(self.denoiser.dtype)
        b = cond.shape[0]
        side = int(self.denoiser.config.sample_size)
        shape = (b, int(self.denoiser.config.in_channels), side, side)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents: expected shape {shape}, got {tuple(latents.shape)}")
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        extra = {"width_mult": width_mult} if "width_mult" in inspect.signature(self.denoiser.forward).parameters else {}
        self._num_timesteps = len(self.scheduler.timesteps)
        noise_pred = None
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            x_in = torch.cat([latents, latents]) if use_cfg else latents
            out = self.denoiser(x_in.to(self.denoiser.dtype), t.expand(x_in.shape[0]), ctx, **extra).sample.float()
            noise_pred = self.guide(out, guidance_scale, use_cfg)
            latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
            if callback_on_step_end is not None:
                tensors = {"latents": latents, "noise_pred": noise_pred}
                kw = {k: tensors[k] for k in callback_on_step_end_tensor_inputs}
                got = callback_on_step_end(self, i, t, kw) or {}
                latents = got.pop("latents", latents)
        if output_type == "latent":
            images = latents
        else:
            images = (self.decode(latents).float() / 2 + 0.5).clamp(0, 1)
            if not torch.isfinite(images).all():
                raise FloatingPointError("the model produced non-finite pixels (a broken checkpoint?)")
            if output_type != "pt":
                images = images.permute(0, 2, 3, 1).cpu().numpy()
                if output_type == "pil":
                    images = self.numpy_to_pil(images)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)


def is_pipeline_folder(path: str | Path) -> bool:
    return (Path(path) / "model_index.json").is_file()
