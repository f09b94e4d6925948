"""Attention for the compact generators: multi-query / grouped-query attention and SnapGen++'s ASSA.

Every fast path has a slow, obvious twin (``*_reference``) that the tests compare against, forward and backward.
Shapes: tokens are (B, N, C); heads split C into (H, C/H). Query heads share key/value heads in groups of
H / H_kv (H_kv = 1: multi-query, SnapGen; H_kv = 8: grouped-query, SnapGen++).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention with (B, H, N, D) queries and (B, H_kv, M, D) keys/values, H a multiple of H_kv."""
    h, hkv = q.shape[1], k.shape[1]
    if h != hkv:
        k = k.repeat_interleave(h // hkv, dim=1)
        v = v.repeat_interleave(h // hkv, dim=1)
    return F.scaled_dot_product_attention(q, k, v)


def grouped_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Twin of :func:`grouped_attention`: one head at a time, explicit softmax."""
    h, hkv = q.shape[1], k.shape[1]
    outs = []
    for i in range(h):
        j = i // (h // hkv)
        w = (q[:, i] @ k[:, j].transpose(-1, -2)) / math.sqrt(q.shape[-1])
        outs.append(w.softmax(-1) @ v[:, j])
    return torch.stack(outs, dim=1)


def slim_linear(x: torch.Tensor, layer: nn.Linear, out_features: int | None = None) -> torch.Tensor:
    """``layer`` restricted to its first ``x.shape[-1]`` inputs and ``out_features`` outputs (slimmable
    networks: a narrower width is the leading slice of every projection)."""
    out_features = out_features or layer.out_features
    if out_features == layer.out_features and x.shape[-1] == layer.in_features:
        return layer(x)  # the full width: no slice (an identity slice exports as ``alias``, which Core ML lacks)
    w = layer.weight[:out_features, : x.shape[-1]]
    b = layer.bias[:out_features] if layer.bias is not None else None
    return F.linear(x, w, b)


class Attention(nn.Module):
    """Self- or cross-attention with ``kv_heads`` key/value heads (1 = MQA, < heads = GQA, = heads = MHA).

    With ``context_dim`` the keys and values come from ``encoder_hidden_states`` (cross-attention). RMS QK-norm
    keeps logits bounded in small, fast-trained models. ``forward(..., heads=h)`` runs the leading ``h`` query
    heads (and ``h * kv_heads / heads`` KV heads) on an input of width ``h * head_dim``: the elastic slice.
    """

    def __init__(self, dim: int, heads: int, kv_heads: int = 1, context_dim: int | None = None,
                 qk_norm: bool = True):
        super().__init__()
        if dim % heads or heads % kv_heads:
            raise ValueError(f"dim {dim} must split into {heads} heads, and heads into {kv_heads} KV heads")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim or dim, kv_heads * self.head_dim, bias=False)
        self.to_v = nn.Linear(context_dim or dim, kv_heads * self.head_dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        self.norm_q = nn.RMSNorm(self.head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.norm_k = nn.RMSNorm(self.head_dim, eps=1e-6) if qk_norm else nn.Identity()

    def active(self, heads: int | None) -> tuple[int, int]:
        heads = heads or self.heads
        if heads * self.kv_heads % self.heads:
            raise ValueError(f"{heads} of {self.heads} heads leaves no whole number of the {self.kv_heads} KV heads")
        return heads, heads * self.kv_heads // self.heads

    def project(self, x: torch.Tensor, context: torch.Tensor | None = None, heads: int | None = None):
        h, hkv = self.active(heads)
        ctx = x if context is None else context
        q = self.norm_q(split_heads(slim_linear(x, self.to_q, h * self.head_dim), h))
        k = self.norm_k(split_heads(slim_linear(ctx, self.to_k, hkv * self.head_dim), hkv))
        v = split_heads(slim_linear(ctx, self.to_v, hkv * self.head_dim), hkv)
        return q, k, v

    def out(self, o: torch.Tensor) -> torch.Tensor:
        o = merge_heads(o)
        return slim_linear(o, self.to_out, o.shape[-1])

    def forward(self, x: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                heads: int | None = None) -> torch.Tensor:
        q, k, v = self.project(x, encoder_hidden_states, heads)
        return self.out(grouped_attention(q, k, v))


# -- ASSA: adaptive sparse self-attention (SnapGen++) ----------------------------------------------------------

def block_grid(side: int, blocks: int) -> int:
    """Blocks per side for ``blocks`` blocks on a ``side`` x ``side`` map (B must be a square, side divisible)."""
    g = math.isqrt(blocks)
    if g * g != blocks or side % g:
        raise ValueError(f"{blocks} blocks need a square grid dividing the {side}x{side} map")
    return g


@lru_cache(maxsize=64)
def _neighbour_groups(g: int, r: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Query blocks grouped by how many neighbour blocks they have (corners, edges, interior), each with the
    flat indices of those neighbours: every group then attends without padding or a mask."""
    groups: dict[tuple[int, int], list[tuple[int, list[int]]]] = {}
    for i in range(g):
        rows = [y for y in range(i - r, i + r + 1) if 0 <= y < g]
        for j in range(g):
            cols = [x for x in range(j - r, j + r + 1) if 0 <= x < g]
            groups.setdefault((len(rows), len(cols)), []).append((i * g + j, [y * g + x for y in rows for x in cols]))
    return [(torch.tensor([q for q, _ in m]), torch.tensor([n for _, n in m])) for m in groups.values()]


@lru_cache(maxsize=64)
def _block_order(g: int, r: int) -> torch.Tensor:
    """Where each block sits in the concatenation of the groups' outputs (the inverse of their order)."""
    return torch.argsort(torch.cat([q for q, _ in _neighbour_groups(g, r)]))


def local_block_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, side: int, blocks: int,
                          radius: int) -> torch.Tensor:
    """Each query attends to the keys of its own block and the blocks within ``radius`` (Chebyshev, in blocks).

    (B, H, N, D) queries on a side x side map, (B, H_kv, N, D) keys/values. Query blocks with the same number of
    neighbours (corners, edges, interior) go through one mask-free SDPA call each, so the fused kernel runs and
    no attention matrix is materialised.
    """
    b, h, n, d = q.shape
    hkv = k.shape[1]
    g = block_grid(side, blocks)
    s = side // g
    r = min(radius, g - 1)

    # every intermediate has rank <= 5 (Core ML's limit): block rows ride in the batch while columns move
    def to_blocks(t):  # (B, h, N, D) -> (B, h, g*g, s*s, D)
        lead = t.shape[:2]
        t = t.reshape(lead[0] * lead[1] * g, s, g, s * d).permute(0, 2, 1, 3)  # (B h gy, gx, sy, sx d)
        return t.reshape(*lead, g * g, s * s, d)

    qb, kb, vb = to_blocks(q), to_blocks(k), to_blocks(v)
    if h != hkv:
        kb, vb = kb.repeat_interleave(h // hkv, 1), vb.repeat_interleave(h // hkv, 1)
    parts = []
    for q_idx, n_idx in _neighbour_groups(g, r):
        q_idx, n_idx = q_idx.to(q.device), n_idx.to(q.device)
        # (B, h * blocks in group, tokens, D): 4-D, so SDPA takes its fused kernel (5-D inputs fall back to the
        # math path, which materialises the scores: 39 GB for one group at 64k tokens)
        keys = kb.flatten(3, 4)[:, :, n_idx].flatten(1, 2).unflatten(-1, (-1, d)).flatten(2, 3)
        vals = vb.flatten(3, 4)[:, :, n_idx].flatten(1, 2).unflatten(-1, (-1, d)).flatten(2, 3)
        got = F.scaled_dot_product_attention(qb[:, :, q_idx].flatten(1, 2), keys, vals)
        parts.append(got.unflatten(1, (h, len(q_idx))))
    # blocks back in place by one gather (not writes into an empty tensor: exporters have no empty_permuted)
    out = torch.cat(parts, dim=2).index_select(2, _block_order(g, r).to(q.device))
    o = out.reshape(b * h * g, g, s, s * d).permute(0, 2, 1, 3)  # (B h gy, sy, gx, sx d)
    return o.reshape(b, h, n, d)


def local_block_attention_reference(q, k, v, side: int, blocks: int, radius: int) -> torch.Tensor:
    """Twin of :func:`local_block_attention`: for every query, list its allowed keys and take a softmax."""
    b, h, n, d = q.shape
    g = block_grid(side, blocks)
    s = side // g
    k = k.repeat_interleave(h // k.shape[1], 1)
    v = v.repeat_interleave(h // v.shape[1], 1)
    out = torch.zeros_like(q)
    rows = torch.arange(n) // side // s
    cols = torch.arange(n) % side // s
    for i in range(n):
        allowed = ((rows - rows[i]).abs() <= radius) & ((cols - cols[i]).abs() <= radius)
        w = (q[:, :, i:i + 1] @ k[:, :, allowed].transpose(-1, -2)) / math.sqrt(d)
        out[:, :, i:i + 1] = w.softmax(-1) @ v[:, :, allowed]
    return out


class ASSA(nn.Module):
    """Adaptive sparse self-attention: a global branch on K,V compressed by a 2x2 stride-2 (depthwise) conv and
    a local branch of blockwise neighbourhood attention, mixed per head and per token by a sigmoid gate computed
    from the input: out_h = g_h * local_h + (1 - g_h) * global_h."""

    def __init__(self, dim: int, heads: int, kv_heads: int = 1, blocks: int = 16, radius: int = 1,
                 qk_norm: bool = True):
        super().__init__()
        self.attn = Attention(dim, heads, kv_heads, qk_norm=qk_norm)
        self.compress = nn.Conv2d(dim, dim, 2, stride=2, groups=dim)
        self.gate = nn.Linear(dim, heads)
        self.blocks, self.radius = blocks, radius

    def branches(self, x: torch.Tensor, side: int, heads: int | None = None):
        """(gate (B,h,N,1), local (B,h,N,D), global (B,h,N,D)) before the output projection."""
        a = self.attn
        h, hkv = a.active(heads)
        c = x.shape[-1]
        q, k, v = a.project(x, heads=h)
        grid = x.transpose(1, 2).reshape(x.shape[0], c, side, side)
        small = F.conv2d(grid, self.compress.weight[:c], self.compress.bias[:c], stride=2, groups=c)
        small = small.flatten(2).transpose(1, 2)
        kg = a.norm_k(split_heads(slim_linear(small, a.to_k, hkv * a.head_dim), hkv))
        vg = split_heads(slim_linear(small, a.to_v, hkv * a.head_dim), hkv)
        local = local_block_attention(q, k, v, side, self.blocks, self.radius)
        glob = grouped_attention(q, kg, vg)
        gate = torch.sigmoid(slim_linear(x, self.gate, h)).transpose(1, 2)[..., None]
        return gate, local, glob

    def forward(self, x: torch.Tensor, side: int, heads: int | None = None) -> torch.Tensor:
        gate, local, glob = self.branches(x, side, heads)
        return self.attn.out(gate * local + (1 - gate) * glob)
