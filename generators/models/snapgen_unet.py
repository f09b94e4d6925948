"""SnapGen's efficient U-Net (arXiv 2412.09619), scalable in width and depth.

From SDXL's layout the paper keeps three stages but trims them: transformer blocks per stage [0, 2, 4] (SDXL:
[0, 2, 10]), channels [256, 512, 896] (SDXL: [320, 640, 1280]); self-attention only at the lowest resolution;
residual blocks made of depthwise + pointwise convolutions (expansion 2); FFN ratio 3 (SD's GEGLU); multi-query
attention; and cross-attention already in the first stage, which has no transformer blocks of its own (here:
one cross-attention layer after each of its residual blocks). The defaults are the full-size model (~379M).
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


@dataclass
class DenoiserOutput(BaseOutput):
    sample: torch.Tensor


def _groups(c: int) -> int:
    return next(g for g in (32, 16, 8, 4, 2, 1) if c % g == 0)


class SeparableResBlock(nn.Module):
    """Norm-SiLU-depthwise 3x3-pointwise, twice, the second pointwise pair expanding by ``expansion``."""

    def __init__(self, cin: int, cout: int, temb_dim: int, expansion: int = 2):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.dw1 = nn.Conv2d(cin, cin, 3, padding=1, groups=cin)
        self.pw1 = nn.Conv2d(cin, cout, 1)
        self.temb = nn.Linear(temb_dim, cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.dw2 = nn.Conv2d(cout, cout, 3, padding=1, groups=cout)
        self.pw2 = nn.Conv2d(cout, cout * expansion, 1)
        self.pw3 = nn.Conv2d(cout * expansion, cout, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.pw1(self.dw1(F.silu(self.norm1(x))))
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.pw3(F.silu(self.pw2(self.dw2(F.silu(self.norm2(h))))))
        return self.skip(x) + h


class GEGLU(nn.Module):
    """SD's feed-forward: a GELU-gated linear unit, then back to ``dim``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(dim, hidden * 2)
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(a * F.gelu(gate))


class TransformerBlock(nn.Module):
    """(Self-attention), cross-attention, (FFN), each pre-norm and residual, on (B, N, C) tokens."""

    def __init__(self, dim: int, heads: int, kv_heads: int, context_dim: int, self_attention: bool = True,
                 ffn_ratio: float = 3.0, ffn: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim) if self_attention else None
        self.attn1 = Attention(dim, heads, kv_heads) if self_attention else None
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, kv_heads, context_dim=context_dim)
        self.norm3 = nn.LayerNorm(dim) if ffn else None
        hidden = int(dim * ffn_ratio)
        self.ff = GEGLU(dim, hidden) if ffn else None

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        if self.attn1 is not None:
            x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        if self.ff is not None:
            x = x + self.ff(self.norm3(x))
        return x


class SpatialTransformer(nn.Module):
    """Norm + 1x1 in, ``depth`` transformer blocks on the flattened map, 1x1 out, residual (as SD's)."""

    def __init__(self, dim: int, depth: int, heads: int, kv_heads: int, context_dim: int, self_attention: bool,
                 ffn_ratio: float, cross_only: bool = False):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(dim), dim)
        self.proj_in = nn.Linear(dim, dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, kv_heads, context_dim, self_attention and not cross_only, ffn_ratio,
                             ffn=not cross_only) for _ in range(depth))
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))
        for blk in self.blocks:
            t = blk(t, context)
        return x + self.proj_out(t).transpose(1, 2).reshape(b, c, h, w)


class SnapGenUNet(ModelMixin, ConfigMixin):
    """Predicts the flow-matching velocity of a latent, given the timestep and text hidden states."""

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(self, in_channels: int = 4, out_channels: int = 4, sample_size: int = 128,
                 block_out_channels: tuple = (256, 512, 896), transformer_layers: tuple = (0, 2, 4),
                 layers_per_block: int = 2, mid_transformer_layers: int = 4, head_dim: int = 64, kv_heads: int = 1,
                 ffn_ratio: float = 3.0, conv_expansion: int = 2, cross_attention_dim: int = 2048,
                 first_stage_cross_attention: bool = True, self_attention_stages: tuple = (False, False, True)):
        super().__init__()
        chans = list(block_out_channels)
        if head_dim < 1 or any(c % head_dim or c < head_dim for c in chans):
            raise ValueError(f"block_out_channels {chans} must each be a multiple of head_dim {head_dim} "
                             "(attention splits every stage into heads of head_dim channels)")
        temb_dim = chans[0] * 4
        self.time_proj = Timesteps(chans[0], flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(chans[0], temb_dim)
        self.text_pool = nn.Sequential(nn.LayerNorm(cross_attention_dim), nn.Linear(cross_attention_dim, temb_dim))
        self.conv_in = nn.Conv2d(in_channels, chans[0], 3, padding=1)

        def attn(c: int, stage: int, depth: int):
            if depth > 0:
                return SpatialTransformer(c, depth, c // head_dim, kv_heads, cross_attention_dim,
                                          self_attention_stages[stage], ffn_ratio)
            if stage == 0 and first_stage_cross_attention:
                return SpatialTransformer(c, 1, c // head_dim, kv_heads, cross_attention_dim, False, ffn_ratio,
                                          cross_only=True)
            return None

        self.down = nn.ModuleList()
        skips = [chans[0]]
        cin = chans[0]
        for i, c in enumerate(chans):
            stage = nn.ModuleDict({"res": nn.ModuleList(), "attn": nn.ModuleList()})
            for _ in range(layers_per_block):
                stage["res"].append(SeparableResBlock(cin, c, temb_dim, conv_expansion))
                stage["attn"].append(attn(c, i, transformer_layers[i]) or nn.Identity())
                cin = c
                skips.append(c)
            if i < len(chans) - 1:
                stage["downsample"] = nn.Conv2d(c, c, 3, stride=2, padding=1)
                skips.append(c)
            self.down.append(stage)
        self.mid_res1 = SeparableResBlock(cin, cin, temb_dim, conv_expansion)
        self.mid_attn = SpatialTransformer(cin, mid_transformer_layers, cin // head_dim, kv_heads,
                                           cross_attention_dim, True, ffn_ratio) if mid_transformer_layers else None
        self.mid_res2 = SeparableResBlock(cin, cin, temb_dim, conv_expansion)
        self.up = nn.ModuleList()
        for i, c in reversed(list(enumerate(chans))):
            stage = nn.ModuleDict({"res": nn.ModuleList(), "attn": nn.ModuleList()})
            for _ in range(layers_per_block + 1):
                stage["res"].append(SeparableResBlock(cin + skips.pop(), c, temb_dim, conv_expansion))
                stage["attn"].append(attn(c, i, transformer_layers[i]) or nn.Identity())
                cin = c
            if i > 0:
                stage["upsample"] = nn.Conv2d(c, c, 3, padding=1)
            self.up.append(stage)
        self.norm_out = nn.GroupNorm(_groups(chans[0]), chans[0])
        self.conv_out = nn.Conv2d(chans[0], out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor | float,
                encoder_hidden_states: torch.Tensor, return_dict: bool = True):
        x = hidden_states
        t = torch.as_tensor(timestep, device=x.device, dtype=torch.float32).reshape(-1).expand(x.shape[0])
        temb = self.time_embedding(self.time_proj(t).to(x.dtype))
        temb = temb + self.text_pool(encoder_hidden_states.mean(dim=1))
        ctx = encoder_hidden_states
        h = self.conv_in(x)
        skips = [h]
        for stage in self.down:
            for res, attn in zip(stage["res"], stage["attn"]):
                h = res(h, temb)
                h = h if isinstance(attn, nn.Identity) else attn(h, ctx)
                skips.append(h)
            if "downsample" in stage:
                h = stage["downsample"](h)
                skips.append(h)
        h = self.mid_res1(h, temb)
        if self.mid_attn is not None:
            h = self.mid_attn(h, ctx)
        h = self.mid_res2(h, temb)
        for stage in self.up:
            for res, attn in zip(stage["res"], stage["attn"]):
                h = res(torch.cat([h, skips.pop()], dim=1), temb)
                h = h if isinstance(attn, nn.Identity) else attn(h, ctx)
            if "upsample" in stage:
                h = stage["upsample"](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.conv_out(F.silu(self.norm_out(h)))
        return DenoiserOutput(sample=out) if return_dict else (out,)
