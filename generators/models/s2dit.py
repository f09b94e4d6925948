"""S2DiT (arXiv 2601.12719): a streaming video DiT in a "sandwich" layout.

High-resolution stages of LinConv hybrid attention (LCHA) around low-resolution stages of stride self-attention
(SSA), each block followed by cross-attention to the text and an FFN, with adaLN-single timestep modulation. The
layout (block types per stage) is a config, so the budget-aware search (``generators.search``) can choose it.
Everything is causal across chunks of ``chunk_frames`` frames, and ``forward`` takes and returns explicit
caches, so a stream costs the same per chunk however long it runs. A chunk as long as the clip makes the same
network bidirectional (the many-step teacher).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_outputs import BaseOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..attention import Attention
from ..video_attention import LCHA, SSA

MIXERS = ("lcha", "ssa")


@dataclass
class S2DiTOutput(BaseOutput):
    sample: torch.Tensor
    cache: list | None = None
    """One entry per block (``LCHACache`` / ``SSACache``): pass it to the next chunk's call."""


class VideoBlock(nn.Module):
    def __init__(self, kind: str, dim: int, heads: int, context_dim: int, ffn_ratio: float, ssa_stride: int,
                 ssa_window: int | None, conv_kernel: tuple):
        super().__init__()
        if kind not in MIXERS:
            raise ValueError(f"block type {kind!r}: use one of {MIXERS}")
        self.kind = kind
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mixer = LCHA(dim, heads, conv_kernel) if kind == "lcha" else SSA(dim, heads, ssa_stride, ssa_window)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.cross = Attention(dim, heads, heads, context_dim=context_dim)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff1 = nn.Linear(dim, int(dim * ffn_ratio))
        self.ff2 = nn.Linear(int(dim * ffn_ratio), dim)
        self.table = nn.Parameter(torch.randn(6, dim) / dim ** 0.5)

    def forward(self, x, ctx, mod, chunk_frames: int, cache=None):
        """x (B, T, H, W, C); mod (B, T, 6, C): per-frame modulation (chunks may sit at different noise levels)."""
        b, t, h, w, c = x.shape
        shift1, scale1, gate1, shift3, scale3, gate3 = (mod + self.table).unbind(2)
        e = lambda v: v[:, :, None, None]  # noqa: E731  (B, T, C) -> (B, T, 1, 1, C)
        y, cache = self.mixer(self.norm1(x) * (1 + e(scale1)) + e(shift1), chunk_frames, cache)
        x = x + e(gate1) * y
        x = x + self.cross(self.norm2(x).reshape(b, t * h * w, c), ctx).view(b, t, h, w, c)
        y = self.ff2(F.gelu(self.ff1(self.norm3(x) * (1 + e(scale3)) + e(shift3)), approximate="tanh"))
        return x + e(gate3) * y, cache


class S2DiT(ModelMixin, ConfigMixin):
    """Predicts the flow-matching velocity of a video latent (B, C, T, H, W), chunk-causally."""

    @register_to_config
    def __init__(self, in_channels: int = 8, out_channels: int = 8, patch_size: int = 2, hidden_size: int = 256,
                 num_heads: int = 4, layout: tuple = (("lcha", "lcha"), ("ssa", "ssa"), ("lcha", "lcha")),
                 stage_scales: tuple = (1, 2, 1), ffn_ratio: float = 3.0, cross_attention_dim: int = 384,
                 ssa_stride: int = 2, ssa_window: int | None = 4, conv_kernel: tuple = (3, 3, 3),
                 chunk_frames: int = 2, sample_size: tuple = (16, 16)):
        """``sample_size``: the latent (h, w) of one frame that the pipeline generates at."""
        super().__init__()
        if len(layout) != len(stage_scales):
            raise ValueError(f"{len(layout)} stages in the layout for {len(stage_scales)} stage scales")
        if any(s not in (1, 2) for s in stage_scales):
            raise ValueError(f"stage scales {stage_scales}: each stage runs at full (1) or half (2) resolution")
        d = hidden_size
        self.patch_embed = nn.Linear(in_channels * patch_size ** 2, d)
        self.time_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(256, d)
        self.time_mod = nn.Linear(d, 6 * d)
        self.text_proj = nn.Sequential(nn.LayerNorm(cross_attention_dim), nn.Linear(cross_attention_dim, cross_attention_dim))
        self.stages = nn.ModuleList(
            nn.ModuleList(VideoBlock(kind, d, num_heads, cross_attention_dim, ffn_ratio, ssa_stride, ssa_window,
                                     tuple(conv_kernel)) for kind in stage) for stage in layout)
        changes = [a != b for a, b in zip((1, *stage_scales), (*stage_scales, 1))]
        self.resample = nn.ModuleList(
            (nn.Conv2d(d, d, 2, stride=2) if s_next == 2 else nn.ConvTranspose2d(d, d, 2, stride=2)) if change
            else nn.Identity() for change, s_next in zip(changes, (*stage_scales, 1)))
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.out_mod = nn.Parameter(torch.randn(2, d) / d ** 0.5)
        self.proj_out = nn.Linear(d, out_channels * patch_size ** 2)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    @property
    def num_blocks(self) -> int:
        return sum(len(s) for s in self.stages)

    @staticmethod
    def _frames(x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
        """A 2D (de)convolution applied to every frame of (B, T, H, W, C)."""
        b, t, h, w, c = x.shape
        y = layer(x.reshape(b * t, h, w, c).permute(0, 3, 1, 2))
        return y.permute(0, 2, 3, 1).reshape(b, t, y.shape[2], y.shape[3], -1)

    def forward(self, hidden_states: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                cache: list | None = None, chunk_frames: int | None = None, return_dict: bool = True):
        """``timestep``: (B,) or one per frame (B, T); ``cache``: the previous call's (None: a new stream);
        ``chunk_frames``: override the config's (the clip's length: bidirectional)."""
        cfg = self.config
        x = hidden_states
        b, _, t, hh, ww = x.shape
        p = cfg.patch_size
        chunk = int(chunk_frames or cfg.chunk_frames)
        if t % chunk:
            raise ValueError(f"{t} latent frames are not whole chunks of {chunk}")
        unit = p * max(cfg.stage_scales)
        if hh % unit or ww % unit:
            raise ValueError(f"a {hh}x{ww} latent does not divide by {unit} (patch {p} x the stages' downsampling)")
        if cache is not None and len(cache) != self.num_blocks:
            raise ValueError(f"cache has {len(cache)} entries for {self.num_blocks} blocks")
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, -1, hh, ww)
        tokens = F.pixel_unshuffle(frames, p).permute(0, 2, 3, 1).reshape(b, t, hh // p, ww // p, -1)
        h = self.patch_embed(tokens)
        ts = torch.as_tensor(timestep, device=x.device, dtype=torch.float32)
        if ts.numel() not in (1, b, b * t):
            raise ValueError(f"timestep: {ts.numel()} values for {b} videos of {t} frames")
        ts = ts.reshape(-1, 1).expand(b, t) if ts.numel() in (1, b) else ts.reshape(b, t)
        temb = self.time_embedding(self.time_proj(ts.reshape(-1)).to(h.dtype))
        mod = self.time_mod(F.silu(temb)).view(b, t, 6, -1)
        ctx = self.text_proj(encoder_hidden_states)
        caches, i = [], 0
        skips = []
        for stage, resample in zip(self.stages, self.resample):
            if not isinstance(resample, nn.Identity):
                if isinstance(resample, nn.Conv2d):
                    skips.append(h)
                    h = self._frames(h, resample)
                else:
                    h = self._frames(h, resample) + skips.pop()
            for blk in stage:
                h, c = blk(h, ctx, mod, chunk, cache[i] if cache is not None else None)
                caches.append(c)
                i += 1
        last = self.resample[-1]
        if not isinstance(last, nn.Identity):
            h = self._frames(h, last) + skips.pop()
        shift, scale = (self.out_mod[None, None] + mod[:, :, :2]).unbind(2)
        h = self.norm_out(h) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        out = self.proj_out(h)  # (B, T, H/p, W/p, C*p*p)
        out = F.pixel_shuffle(out.reshape(b * t, hh // p, ww // p, -1).permute(0, 3, 1, 2), p)
        out = out.reshape(b, t, -1, hh, ww).permute(0, 2, 1, 3, 4)
        if not return_dict:
            return out, caches
        return S2DiTOutput(sample=out, cache=caches)


DEFAULT_CONFIG = dict(in_channels=8, out_channels=8, patch_size=2, hidden_size=192, num_heads=4,
                      layout=(("lcha", "lcha"), ("ssa", "ssa", "ssa"), ("lcha", "lcha")), stage_scales=(1, 2, 1),
                      cross_attention_dim=384, ssa_stride=2, ssa_window=4, chunk_frames=2, sample_size=(16, 16))
"""The shipped streaming model's size class: 128x128 frames through the project's 8-channel f=8 autoencoder."""
FULL_SIZE = dict(in_channels=16, out_channels=16, patch_size=2, hidden_size=1024, num_heads=16,
                 layout=(("lcha",) * 6, ("ssa",) * 12, ("lcha",) * 6), stage_scales=(1, 2, 1), ffn_ratio=3.0,
                 cross_attention_dim=1024, ssa_stride=2, ssa_window=4, chunk_frames=3, sample_size=(36, 64))
"""A paper-scale configuration: 512x288 frames through a 16-channel f=8 latent (64x36), 2x2 patches -> 32x18 =
576 tokens per frame; 24 blocks of width 1024 (S2DiT does not publish its widths: this is our choice, reported
with its parameter count)."""
