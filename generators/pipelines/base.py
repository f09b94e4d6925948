"""What the project's pipelines share: components (denoiser, VAE, flow-matching scheduler, tokenizer and text
encoder), the offline MiniLM when no text encoder is given, and folders that may be saved without it."""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler

from ..text_encoder import MAX_PROMPT_TOKENS, encode_text, load_text_encoder


class PocketPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->denoiser->vae"
    _optional_components = ["tokenizer", "text_encoder"]
    _callback_tensor_inputs = ["latents", "noise_pred"]

    def __init__(self, denoiser, vae, scheduler: FlowMatchEulerDiscreteScheduler, tokenizer=None, text_encoder=None):
        super().__init__()
        if text_encoder is None and tokenizer is None:
            tokenizer, text_encoder = load_text_encoder()
        self.register_modules(denoiser=denoiser, vae=vae, scheduler=scheduler, tokenizer=tokenizer,
                              text_encoder=text_encoder)

    @classmethod
    def assemble(cls, denoiser, vae, tokenizer=None, text_encoder=None, scheduler=None):
        return cls(denoiser=denoiser, vae=vae, scheduler=scheduler or FlowMatchEulerDiscreteScheduler(shift=1.0),
                   tokenizer=tokenizer, text_encoder=text_encoder)

    def save_pretrained(self, save_directory, include_text_encoder: bool = True, **kwargs):
        """``include_text_encoder=False`` writes ``null`` for it: loading then takes the MiniLM package."""
        if include_text_encoder:
            return super().save_pretrained(save_directory, **kwargs)
        tok, enc = self.tokenizer, self.text_encoder
        self.register_modules(tokenizer=None, text_encoder=None)
        try:
            return super().save_pretrained(save_directory, **kwargs)
        finally:
            self.register_modules(tokenizer=tok, text_encoder=enc)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def encode_prompt(self, prompt: list[str], device) -> torch.Tensor:
        return encode_text(self.tokenizer, self.text_encoder, prompt, MAX_PROMPT_TOKENS, device=device)

    @staticmethod
    def guide(out: torch.Tensor, guidance_scale: float, use_cfg: bool) -> torch.Tensor:
        """Classifier-free guidance of an (unconditional, conditional) batch; the output itself without it."""
        if not use_cfg:
            return out
        u, c = out.chunk(2)
        return u + guidance_scale * (c - u)
