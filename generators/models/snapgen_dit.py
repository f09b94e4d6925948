"""SnapGen++'s three-stage DiT (arXiv 2601.08303) with elastic widths.

Down (ASSA blocks on the patch tokens) -> Middle (full self-attention on tokens merged 2x2) -> Up (ASSA blocks,
with a long skip from Down); every block has cross-attention to the text and an FFN; attention is grouped-query.
Elastic training (slimmable): a narrower width runs the leading slice of every attention and FFN projection
(cross-attention K/V keep their full text input), with norms of its own; one checkpoint runs at each of
``widths`` and ``extract_width`` cuts one out as a standalone model whose output equals the sliced run's.
Timestep conditioning is PixArt's adaLN-single: one MLP, a learned table per block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..attention import ASSA, Attention, slim_linear
from .snapgen_unet import DenoiserOutput

FULL_SIZE = {
    "0.3b": dict(hidden_size=896, num_heads=16, kv_heads=8),
    "0.4b": dict(hidden_size=1024, num_heads=16, kv_heads=8),
    "1.6b": dict(hidden_size=2304, num_heads=32, kv_heads=8, widths=(0.375, 0.5, 1.0)),
}
"""The papers' sizes (1024^2 images: a 128x128 latent; text states 2304-d). The 1.6B is elastic; its 0.5x and
0.375x slices have ~0.44B / ~0.25B parameters (the paper's 0.4B / 0.3B models are sized separately)."""


def _key(w: float) -> str:
    return f"{w:g}".replace(".", "_")


class PerWidthNorm(nn.Module):
    """One LayerNorm per width (slimmable networks share weights, not normalisation statistics)."""

    def __init__(self, dim: int, widths: tuple):
        super().__init__()
        self.norms = nn.ModuleDict({_key(w): nn.LayerNorm(round(dim * w), elementwise_affine=True) for w in widths})

    def forward(self, x: torch.Tensor, w: float) -> torch.Tensor:
        return self.norms[_key(w)](x)


class DiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, kv_heads: int, context_dim: int, ffn_ratio: float, widths: tuple,
                 sparse: bool, blocks: int, radius: int):
        super().__init__()
        self.heads = heads
        self.norm1 = PerWidthNorm(dim, widths)
        self.attn1 = ASSA(dim, heads, kv_heads, blocks, radius) if sparse else Attention(dim, heads, kv_heads)
        self.norm2 = PerWidthNorm(dim, widths)
        self.attn2 = Attention(dim, heads, kv_heads, context_dim=context_dim)
        self.norm3 = PerWidthNorm(dim, widths)
        self.ff1 = nn.Linear(dim, int(dim * ffn_ratio))
        self.ff2 = nn.Linear(int(dim * ffn_ratio), dim)
        self.ffn_ratio = ffn_ratio
        self.table = nn.Parameter(torch.randn(6, dim) / dim ** 0.5)

    def forward(self, x, ctx, mod, side: int, w: float):
        c = x.shape[-1]
        heads = round(self.heads * w)
        shift1, scale1, gate1, shift3, scale3, gate3 = (mod + self.table[:, :c][None]).unbind(1)
        h = self.norm1(x, w) * (1 + scale1[:, None]) + shift1[:, None]
        h = self.attn1(h, side, heads) if isinstance(self.attn1, ASSA) else self.attn1(h, heads=heads)
        x = x + gate1[:, None] * h
        x = x + self.attn2(self.norm2(x, w), ctx, heads=heads)
        h = self.norm3(x, w) * (1 + scale3[:, None]) + shift3[:, None]
        h = slim_linear(F.gelu(slim_linear(h, self.ff1, int(c * self.ffn_ratio)), approximate="tanh"), self.ff2, c)
        return x + gate3[:, None] * h


class SnapGenDiT(ModelMixin, ConfigMixin):
    """Predicts the flow-matching velocity of a latent; ``width_mult`` picks the elastic width."""

    @register_to_config
    def __init__(self, in_channels: int = 4, out_channels: int = 4, sample_size: int = 128, patch_size: int = 2,
                 hidden_size: int = 2304, num_heads: int = 32, kv_heads: int = 8, depths: tuple = (6, 8, 10),
                 ffn_ratio: float = 4.0, cross_attention_dim: int = 2304, assa_blocks: int = 16,
                 assa_radius: int = 1, widths: tuple = (1.0,), time_embed_dim: int | None = None):
        super().__init__()
        widths = tuple(sorted(float(w) for w in widths))
        if widths[-1] != 1.0:
            raise ValueError(f"widths {widths} must include 1.0 (the full model)")
        for w in widths:
            if abs(num_heads * w - round(num_heads * w)) > 1e-6 or (round(num_heads * w) * kv_heads) % num_heads:
                raise ValueError(f"width {w:g} of {num_heads} heads / {kv_heads} KV heads is not whole heads")
        d = hidden_size
        self.patch_embed = nn.Linear(in_channels * patch_size ** 2, d)
        self.pos = nn.Parameter(torch.zeros(1, (sample_size // patch_size) ** 2, d))
        nn.init.normal_(self.pos, std=0.02)
        self.time_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
        te = time_embed_dim or d  # unsliced: every width reads the same timestep embedding
        self.time_embedding = TimestepEmbedding(256, te)
        self.time_mod = nn.Linear(te, 6 * d)
        self.text_proj = nn.Sequential(nn.LayerNorm(cross_attention_dim), nn.Linear(cross_attention_dim, cross_attention_dim))

        def blk(sparse):
            return DiTBlock(d, num_heads, kv_heads, cross_attention_dim, ffn_ratio, widths, sparse, assa_blocks,
                            assa_radius)

        self.down = nn.ModuleList(blk(True) for _ in range(depths[0]))
        self.merge = nn.Conv2d(d, d, 2, stride=2)
        self.middle = nn.ModuleList(blk(False) for _ in range(depths[1]))
        self.split = nn.ConvTranspose2d(d, d, 2, stride=2)
        self.up = nn.ModuleList(blk(True) for _ in range(depths[2]))
        self.norm_out = PerWidthNorm(d, widths)
        self.out_mod = nn.Parameter(torch.randn(2, d) / d ** 0.5)
        self.proj_out = nn.Linear(d, out_channels * patch_size ** 2)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, hidden_states: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                width_mult: float = 1.0, return_dict: bool = True):
        cfg = self.config
        w = float(width_mult)
        if w not in {float(v) for v in cfg.widths}:
            raise ValueError(f"width_mult={w:g}: this model runs at {', '.join(f'{v:g}' for v in cfg.widths)}")
        c = round(cfg.hidden_size * w)
        x = hidden_states
        b, _, hh, ww = x.shape
        p = cfg.patch_size
        side = hh // p
        tokens = F.pixel_unshuffle(x, p).flatten(2).transpose(1, 2)  # (B, N, C*p*p)
        t = slim_linear(tokens, self.patch_embed, c) + self.pos[:, :, :c]
        ts = torch.as_tensor(timestep, device=x.device, dtype=torch.float32).reshape(-1).expand(b)
        temb = self.time_embedding(self.time_proj(ts).to(x.dtype))
        full = self.time_mod(F.silu(temb)).view(b, 6, cfg.hidden_size)
        mod = full[:, :, :c]
        ctx = self.text_proj(encoder_hidden_states)
        for blk in self.down:
            t = blk(t, ctx, mod, side, w)
        skip = t
        grid = t.transpose(1, 2).reshape(b, c, side, side)
        small = F.conv2d(grid, self.merge.weight[:c, :c], self.merge.bias[:c], stride=2)
        m = small.flatten(2).transpose(1, 2)
        for blk in self.middle:
            m = blk(m, ctx, mod, side // 2, w)
        grid = m.transpose(1, 2).reshape(b, c, side // 2, side // 2)
        t = F.conv_transpose2d(grid, self.split.weight[:c, :c], self.split.bias[:c], stride=2)
        t = t.flatten(2).transpose(1, 2) + skip
        for blk in self.up:
            t = blk(t, ctx, mod, side, w)
        shift, scale = (self.out_mod[:, :c][None] + full[:, :2, :c]).unbind(1)
        t = self.norm_out(t, w) * (1 + scale[:, None]) + shift[:, None]
        out = slim_linear(t, self.proj_out)
        out = F.pixel_shuffle(out.transpose(1, 2).reshape(b, -1, side, side), p)
        return DenoiserOutput(sample=out) if return_dict else (out,)

    def extract_width(self, width: float) -> "SnapGenDiT":
        """A standalone model of one elastic width: the leading slices, and that width's norms."""
        cfg = dict(self.config)
        cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
        cfg.update(hidden_size=round(cfg["hidden_size"] * width), num_heads=round(cfg["num_heads"] * width),
                   kv_heads=round(cfg["kv_heads"] * width), widths=(1.0,),
                   time_embed_dim=cfg["time_embed_dim"] or cfg["hidden_size"])
        if width not in {float(v) for v in self.config.widths}:
            raise ValueError(f"width {width:g} is not one of {self.config.widths}")
        small = SnapGenDiT(**cfg)
        src = self.state_dict()
        key = _key(width)
        out = {}
        for name, target in small.state_dict().items():
            source = name.replace(".norms.1.", f".norms.{key}.")
            t = src[source]
            if name.startswith("time_mod."):  # rows are (6, hidden): slice each of the six groups
                d_full, c = self.config.hidden_size, target.shape[0] // 6
                t = t.reshape(6, d_full, *t.shape[1:])[:, :c].reshape(6 * c, *t.shape[1:])
            out[name] = t[tuple(slice(0, n) for n in target.shape)]
        small.load_state_dict(out)
        return small


