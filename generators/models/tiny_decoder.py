"""A decoder-only stand-in for the image VAE where decoding is the bottleneck: the streaming video pipeline.

Four of S2DiT's 4-step chunks cost about as much as the ``AutoencoderKL`` decoder spends on their frames on a CPU,
so the video model can decode with diffusers' ``DecoderTiny`` (TAESD's decoder: plain 3x3 convolutions, no norms, no
attention) trained to decode the same latents (``train vae --tiny-decoder``). It reads the latents the KL decoder
reads (``z / scaling_factor + shift_factor``) and keeps that VAE's scaling in its config, so a pipeline takes either
one as its ``vae``. It has no encoder: training and image-to-latent work use the full VAE.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DecoderTiny
from diffusers.models.modeling_utils import ModelMixin


class TinyVAEDecoder(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, latent_channels: int = 8, out_channels: int = 3, block_out_channels: tuple = (32, 32, 32, 32),
                 num_blocks: tuple = (3, 2, 1, 0), scaling_factor: float = 1.0, shift_factor: float = 0.0,
                 act_fn: str = "relu"):
        super().__init__()
        if len(set(block_out_channels)) != 1 or len(num_blocks) != len(block_out_channels):
            raise ValueError("DecoderTiny keeps one width through its stages: block_out_channels must repeat one "
                             "value, once per entry of num_blocks")
        self.decoder = DecoderTiny(latent_channels, out_channels, tuple(num_blocks), tuple(block_out_channels),
                                   upsampling_scaling_factor=2, act_fn=act_fn, upsample_fn="nearest")

    def encode(self, *args, **kwargs):
        raise NotImplementedError("TinyVAEDecoder only decodes: encode images with the full VAE it was trained for")

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        """Latents as the KL decoder takes them (unscaled) -> images in [-1, 1]."""
        shift = self.config.shift_factor or 0.0
        x = self.decoder((z - shift) * self.config.scaling_factor)  # unit variance: DecoderTiny's tanh(x/3) clamp is ~linear
        return DecoderOutput(sample=x) if return_dict else (x,)
