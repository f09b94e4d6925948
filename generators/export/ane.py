"""Neural-Engine re-authoring of the SnapGen U-Net's transformer stages, after Apple's ml-stable-diffusion.

The Neural Engine prefers 4-D channels-first tensors: tokens as (B, C, 1, S), every ``nn.Linear`` as a 1x1
convolution, layer norm over the channel axis, and attention split per head into two einsums
("split-einsum", no (B, H, S, D) reshapes). The re-authored stages hold the same weights (reshaped), so the
re-authored model must match the original to float precision: :func:`reauthor_unet` is checked by PSNR
against it at export. Convolutional parts of the U-Net are already in this layout and stay as they are.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import Attention
from ..models.snapgen_unet import GEGLU, SnapGenUNet, SpatialTransformer, TransformerBlock


def conv_from_linear(layer: nn.Linear) -> nn.Conv2d:
    conv = nn.Conv2d(layer.in_features, layer.out_features, 1, bias=layer.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(layer.weight[:, :, None, None])
        if layer.bias is not None:
            conv.bias.copy_(layer.bias)
    return conv


class LayerNormANE(nn.Module):
    """Layer norm over the channel axis of (B, C, 1, S)."""

    def __init__(self, norm: nn.LayerNorm | nn.RMSNorm, rms: bool = False):
        super().__init__()
        self.rms, self.eps = rms, norm.eps or 1e-6
        c = norm.normalized_shape[0]
        self.weight = nn.Parameter(norm.weight.detach().clone() if norm.weight is not None else torch.ones(c))
        bias = getattr(norm, "bias", None)
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.rms:
            x = x - x.mean(dim=1, keepdim=True)
        x = x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)
        x = x * self.weight[None, :, None, None]
        return x + self.bias[None, :, None, None] if self.bias is not None else x


def split_einsum_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, kv_heads: int,
                           norm_q: nn.Module | None = None, norm_k: nn.Module | None = None) -> torch.Tensor:
    """Softmax attention on (B, H*D, 1, S) queries and (B, H_kv*D, 1, L) keys/values, one head at a time
    (ml-stable-diffusion's ``split_einsum``); query head i reads key/value head i // (H / H_kv)."""
    d = q.shape[1] // heads
    scale = 1.0 / math.sqrt(d)
    qs = q.split(d, dim=1)
    ks = [norm_k(t) if norm_k is not None else t for t in k.split(d, dim=1)]
    ks = [t.transpose(1, 3) for t in ks]  # (B, L, 1, D)
    vs = v.split(d, dim=1)
    group = heads // kv_heads
    outs = []
    for i, qi in enumerate(qs):
        qi = norm_q(qi) if norm_q is not None else qi
        w = torch.einsum("bchq,bkhc->bkhq", qi, ks[i // group]) * scale  # (B, L, 1, S)
        outs.append(torch.einsum("bkhq,bchk->bchq", w.softmax(dim=1), vs[i // group]))
    return torch.cat(outs, dim=1)


class AttentionANE(nn.Module):
    def __init__(self, attn: Attention):
        super().__init__()
        self.heads, self.kv_heads = attn.heads, attn.kv_heads
        self.to_q, self.to_k, self.to_v = (conv_from_linear(m) for m in (attn.to_q, attn.to_k, attn.to_v))
        self.to_out = conv_from_linear(attn.to_out)
        self.norm_q = LayerNormANE(attn.norm_q, rms=True) if isinstance(attn.norm_q, nn.RMSNorm) else None
        self.norm_k = LayerNormANE(attn.norm_k, rms=True) if isinstance(attn.norm_k, nn.RMSNorm) else None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        ctx = x if context is None else context
        o = split_einsum_attention(self.to_q(x), self.to_k(ctx), self.to_v(ctx), self.heads, self.kv_heads,
                                   self.norm_q, self.norm_k)
        return self.to_out(o)


class GEGLUANE(nn.Module):
    def __init__(self, ff: GEGLU):
        super().__init__()
        self.proj, self.out = conv_from_linear(ff.proj), conv_from_linear(ff.out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=1)
        return self.out(a * F.gelu(gate))


class TransformerBlockANE(nn.Module):
    def __init__(self, blk: TransformerBlock):
        super().__init__()
        self.norm1 = LayerNormANE(blk.norm1) if blk.norm1 is not None else None
        self.attn1 = AttentionANE(blk.attn1) if blk.attn1 is not None else None
        self.norm2, self.attn2 = LayerNormANE(blk.norm2), AttentionANE(blk.attn2)
        self.norm3 = LayerNormANE(blk.norm3) if blk.norm3 is not None else None
        self.ff = GEGLUANE(blk.ff) if blk.ff is not None else None

    forward = TransformerBlock.forward  # the same residual order; the parts are the re-authored ones


class SpatialTransformerANE(nn.Module):
    """:class:`SpatialTransformer` on (B, C, 1, H*W): the map is reshaped, never transposed."""

    def __init__(self, st: SpatialTransformer):
        super().__init__()
        self.norm = copy.deepcopy(st.norm)
        self.proj_in, self.proj_out = conv_from_linear(st.proj_in), conv_from_linear(st.proj_out)
        self.blocks = nn.ModuleList(TransformerBlockANE(b) for b in st.blocks)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ctx = context.transpose(1, 2).unsqueeze(2)  # (B, L, D) -> (B, D, 1, L)
        t = self.proj_in(self.norm(x).reshape(b, c, 1, h * w))
        for blk in self.blocks:
            t = blk(t, ctx)
        return x + self.proj_out(t).reshape(b, c, h, w)


def reauthor_unet(unet: SnapGenUNet) -> SnapGenUNet:
    """A copy of ``unet`` whose transformer stages run in the Neural Engine's layout (same weights)."""
    if not isinstance(unet, SnapGenUNet):
        raise TypeError(f"Neural-Engine re-authoring covers the SnapGen U-Net, not {type(unet).__name__}")
    out = copy.deepcopy(unet)

    def swap(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, SpatialTransformer):
                setattr(module, name, SpatialTransformerANE(child))  # ModuleList / ModuleDict keys too
            else:
                swap(child)

    swap(out)
    return out.eval()
