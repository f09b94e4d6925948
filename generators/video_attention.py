"""Attention for the streaming video generator (S2DiT): LinConv hybrid attention (LCHA) and stride
self-attention (SSA), both causal across chunks of frames and able to run one chunk at a time from a cache.

Video tokens are (B, T, H, W, C). A *chunk* is the group of ``chunk_frames`` frames generated together: tokens
see every token of their own chunk and of earlier chunks, never a later one ("block-causal"). Every fast path
has a slow, obvious twin (``*_reference``) that the tests compare against, forward and backward.

Causal linear attention follows fla-org's chunkwise form (``naive.py``): per compute chunk, the running state
``S = sum phi(k)^T v`` of everything before it plus a masked quadratic form inside it; the final state is the
streaming cache. A compute chunk that is exactly one block sees itself whole, so its quadratic form collapses to
its own state (no N^2 term at all: a bidirectional clip-long chunk costs O(N)). As SANA writes it, the normaliser comes from the same matmuls and the division is in fp32.
RoPE rotates the numerator's features only (the denominator keeps the positive kernel), so the normaliser stays
positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .attention import merge_heads, split_heads

EPS = 1e-6


# -- 3D rotary positions ------------------------------------------------------------------------------------------
@lru_cache(maxsize=256)  # every block of every step of a chunk asks for the same table
def rope_3d(t: int, h: int, w: int, dim: int, t0: int = 0, base: float = 10000.0, device=None):
    """(cos, sin) of shape (t*h*w, dim) for frames ``t0 .. t0+t-1``: the head dimension is split between time,
    height and width (each an even share), as in 3D RoPE of video DiTs. Shared tables: never write to them."""
    dt = 2 * (dim // 6)
    dh = 2 * ((dim - dt) // 4)
    dw = dim - dt - dh
    parts = []
    for n, d, off in ((t, dt, t0), (h, dh, 0), (w, dw, 0)):
        inv = 1.0 / base ** (torch.arange(0, d, 2, device=device, dtype=torch.float64) / max(d, 1))
        pos = torch.arange(off, off + n, device=device, dtype=torch.float64)
        parts.append(torch.outer(pos, inv))  # (n, d/2)
    ft, fh, fw = parts
    grid = torch.cat([ft[:, None, None].expand(t, h, w, -1), fh[None, :, None].expand(t, h, w, -1),
                      fw[None, None, :].expand(t, h, w, -1)], dim=-1).reshape(t * h * w, dim // 2)
    grid = grid.repeat_interleave(2, dim=-1)
    return grid.cos().float(), grid.sin().float()


def _time_frequencies(dim: int, base: float = 10000.0) -> torch.Tensor:
    """Per-channel angular speed in time (D,), laid out as :func:`rope_3d` lays its table out (spatial: 0)."""
    dt = 2 * (dim // 6)
    inv = 1.0 / base ** (torch.arange(0, dt, 2, dtype=torch.float64) / max(dt, 1))
    return torch.cat([inv, inv.new_zeros((dim - dt) // 2)]).repeat_interleave(2)


@dataclass
class TimeRotation:
    """A stream's time offset ``t0`` as the rotation it applies to every RoPE pair, (cos, sin) of shape (D,).

    An exported model cannot take ``t0`` as an integer (it would be baked into the graph), and an fp16 graph
    cannot compute cos(t0 * f) for large ``t0``: so the host computes it in fp32 (``frequencies`` below, listed
    in the export manifest) and passes it in. ``rope_at`` composes it with the table of offset 0."""
    cos: torch.Tensor
    sin: torch.Tensor

    @staticmethod
    def frequencies(dim: int) -> torch.Tensor:
        return _time_frequencies(dim)

    @classmethod
    def at(cls, t0: int, dim: int, device=None) -> "TimeRotation":
        a = t0 * _time_frequencies(dim).to(device)
        return cls(a.cos().float(), a.sin().float())


def rope_at(t: int, h: int, w: int, dim: int, t0: "int | TimeRotation", device=None):
    """:func:`rope_3d` for an integer offset, or its offset-0 table rotated by a :class:`TimeRotation`."""
    if not isinstance(t0, TimeRotation):
        return rope_3d(t, h, w, dim, int(t0), device=device)
    cos0, sin0 = rope_3d(t, h, w, dim, 0, device=device)
    c, s = t0.cos.to(cos0.dtype), t0.sin.to(cos0.dtype)
    return cos0 * c - sin0 * s, sin0 * c + cos0 * s


def advance(t0: "int | TimeRotation", frames: int) -> "int | TimeRotation":
    """The offset ``frames`` later."""
    if not isinstance(t0, TimeRotation):
        return t0 + frames
    step = TimeRotation.at(frames, t0.cos.shape[-1], t0.cos.device)
    c, s = step.cos.to(t0.cos.dtype), step.sin.to(t0.cos.dtype)
    return TimeRotation(t0.cos * c - t0.sin * s, t0.sin * c + t0.cos * s)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x0, x1) of the last dimension of (..., N, D)."""
    pairs = x.unflatten(-1, (-1, 2))
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)  # fp32 tables must not promote a half stream


# -- causal linear attention ------------------------------------------------------------------------------------
@dataclass
class LinearState:
    """What a stream carries between chunks: ``kv`` = sum R(phi k)^T v (B, H, D, Dv), ``z`` = sum phi k (B, H, D)."""
    kv: torch.Tensor
    z: torch.Tensor


def block_causal_linear_attention_reference(q, k, v, q_rot, k_rot, block: int) -> torch.Tensor:
    """O(N^2): token i reads every j whose block (``block`` tokens each) is not later than i's."""
    n = q.shape[-2]
    ids = torch.arange(n, device=q.device) // block
    mask = (ids[:, None] >= ids[None, :]).to(q.dtype)
    num = (q_rot @ k_rot.transpose(-1, -2) * mask) @ v
    den = ((q @ k.transpose(-1, -2)) * mask).sum(-1, keepdim=True)
    return num / (den + EPS)


def block_causal_linear_attention(q, k, v, q_rot, k_rot, block: int, chunk: int | None = None,
                                  state: LinearState | None = None) -> tuple[torch.Tensor, LinearState]:
    """Chunkwise-parallel form of the reference: (B, H, N, D) positive features ``q, k`` (and their rotated
    twins), N a multiple of ``block``; ``chunk`` tokens per compute chunk (a multiple of ``block``). Returns the
    output and the state after the last token (pass it back in to continue the stream)."""
    b, h, n, d = q.shape
    dv = v.shape[-1]
    if n % block:
        raise ValueError(f"{n} tokens are not whole blocks of {block}")
    chunk = chunk or block
    if chunk % block:
        raise ValueError(f"compute chunk {chunk} is not a multiple of the block {block}")
    pad = (-n) % chunk
    acc = torch.promote_types(q.dtype, torch.float32)  # at least fp32 for the sums and the division
    qf, kf, vf, qr, kr = (F.pad(x.to(acc), (0, 0, 0, pad)) for x in (q, k, v, q_rot, k_rot))
    nc = (n + pad) // chunk
    qf, kf, vf, qr, kr = (x.view(b, h, nc, chunk, x.shape[-1]) for x in (qf, kf, vf, qr, kr))
    kv_c = kr.transpose(-1, -2) @ vf  # (B, H, nc, D, Dv): each chunk's own contribution
    z_c = kf.sum(-2)  # (B, H, nc, D)
    kv0 = state.kv.to(acc) if state is not None else q.new_zeros(b, h, d, dv, dtype=acc)
    z0 = state.z.to(acc) if state is not None else q.new_zeros(b, h, d, dtype=acc)
    kv_prev = kv0[:, :, None] + torch.cumsum(kv_c, dim=2) - kv_c  # exclusive prefix sums
    z_prev = z0[:, :, None] + torch.cumsum(z_c, dim=2) - z_c
    if chunk == block:  # the chunk sees itself whole: its own state, no quadratic form (a clip-long chunk is cheap)
        num = qr @ (kv_prev + kv_c)
        den = (qf * (z_prev + z_c)[..., None, :]).sum(-1, keepdim=True)
    else:
        ids = torch.arange(chunk, device=q.device) // block
        mask = (ids[:, None] >= ids[None, :]).to(acc)
        num = qr @ kv_prev + (qr @ kr.transpose(-1, -2) * mask) @ vf
        den = (qf * z_prev[..., None, :]).sum(-1, keepdim=True) + ((qf @ kf.transpose(-1, -2)) * mask).sum(-1, keepdim=True)
    out = (num / (den + EPS)).view(b, h, nc * chunk, dv)[:, :, :n]
    new = LinearState(kv0 + kv_c.sum(2), z0 + z_c.sum(2))
    return out.to(v.dtype), new


# -- block-causal softmax attention over a window of chunks -----------------------------------------------------------
def chunk_window_mask(n_chunks_q: int, n_chunks_k: int, tokens_q: int, tokens_k: int, window: int | None,
                      offset: int = 0, device=None) -> torch.Tensor:
    """Boolean (Nq, Nk): query chunk i (global index offset+i) sees key chunks j with i-window < j <= i, where
    keys are numbered globally from ``offset + n_chunks_q - n_chunks_k``."""
    qi = torch.arange(n_chunks_q, device=device).repeat_interleave(tokens_q) + offset
    kj = torch.arange(n_chunks_k, device=device).repeat_interleave(tokens_k) + offset + n_chunks_q - n_chunks_k
    ok = kj[None, :] <= qi[:, None]
    if window is not None:
        ok &= kj[None, :] > qi[:, None] - window
    return ok


# -- the two token mixers ------------------------------------------------------------------------------------------
@dataclass
class LCHACache:
    linear: LinearState
    tail: torch.Tensor
    """The last ``kernel_t - 1`` input frames of the depthwise conv (B, C, kt-1, H, W)."""
    frames: "int | TimeRotation"
    """Frames seen so far (the next chunk's RoPE time offset)."""


class LCHA(nn.Module):
    """LinConv hybrid attention: a linear-attention branch (softplus kernel after QK-norm, 3D RoPE) and a local
    branch (depthwise 3D conv, causal in time, then a channel mixer), mixed by an input-dependent sigmoid gate."""

    def __init__(self, dim: int, heads: int, kernel: tuple = (3, 3, 3)):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.norm_q = nn.RMSNorm(self.head_dim, eps=1e-6)
        self.norm_k = nn.RMSNorm(self.head_dim, eps=1e-6)
        self.kernel = tuple(kernel)
        kt, kh, kw = self.kernel
        self.local = nn.Conv3d(dim, dim, self.kernel, padding=(0, kh // 2, kw // 2), groups=dim)
        self.mixer = nn.Linear(dim, dim)
        self.gate = nn.Linear(dim, dim)
        self.to_out = nn.Linear(dim, dim)

    def features(self, x: torch.Tensor, t0: int):
        b, t, h, w, c = x.shape
        q, k, v = self.to_qkv(x.reshape(b, t * h * w, c)).chunk(3, dim=-1)
        q = F.softplus(self.norm_q(split_heads(q, self.heads)))
        k = F.softplus(self.norm_k(split_heads(k, self.heads)))
        cos, sin = rope_at(t, h, w, self.head_dim, t0, device=x.device)
        return q, k, split_heads(v, self.heads), apply_rope(q, cos, sin), apply_rope(k, cos, sin)

    def local_branch(self, x: torch.Tensor, tail: torch.Tensor | None) -> torch.Tensor:
        kt = self.kernel[0]
        xc = x.permute(0, 4, 1, 2, 3)  # (B, C, T, H, W)
        if tail is None:
            tail = xc.new_zeros(*xc.shape[:2], kt - 1, *xc.shape[3:])
        y = self.local(torch.cat([tail, xc], dim=2))
        return self.mixer(y.permute(0, 2, 3, 4, 1))

    def forward(self, x: torch.Tensor, chunk_frames: int, cache: LCHACache | None = None,
                compute_chunk: int | None = None) -> tuple[torch.Tensor, LCHACache]:
        b, t, h, w, c = x.shape
        if t % chunk_frames:
            raise ValueError(f"{t} frames are not whole chunks of {chunk_frames}")
        t0 = cache.frames if cache is not None else 0
        q, k, v, qr, kr = self.features(x, t0)
        block = chunk_frames * h * w
        lin, state = block_causal_linear_attention(q, k, v, qr, kr, block, compute_chunk or block,
                                                   cache.linear if cache is not None else None)
        lin = merge_heads(lin).view(b, t, h, w, c)
        local = self.local_branch(x, cache.tail if cache is not None else None)
        g = torch.sigmoid(self.gate(x))
        out = self.to_out(g * lin + (1 - g) * local)
        kt = self.kernel[0]
        xc = x.permute(0, 4, 1, 2, 3)
        prev = cache.tail if cache is not None else xc.new_zeros(*xc.shape[:2], kt - 1, *xc.shape[3:])
        tail = torch.cat([prev, xc], dim=2)[:, :, xc.shape[2]:] if kt > 1 else prev
        return out, LCHACache(state, tail, advance(t0, t))

    def reference(self, x: torch.Tensor, chunk_frames: int) -> torch.Tensor:
        """All frames at once with the O(N^2) twin and a zero-padded causal conv."""
        b, t, h, w, c = x.shape
        q, k, v, qr, kr = self.features(x, 0)
        lin = block_causal_linear_attention_reference(q.float(), k.float(), v.float(), qr.float(), kr.float(),
                                                      chunk_frames * h * w)
        lin = merge_heads(lin.to(v.dtype)).view(b, t, h, w, c)
        xc = x.permute(0, 4, 1, 2, 3)
        padded = F.pad(xc, (0, 0, 0, 0, self.kernel[0] - 1, 0))
        local = self.mixer(self.local(padded).permute(0, 2, 3, 4, 1))
        g = torch.sigmoid(self.gate(x))
        return self.to_out(g * lin + (1 - g) * local)


@dataclass
class SSACache:
    k: torch.Tensor
    """Downsampled keys of the chunks still in the window (B, H, M, D); ``v`` likewise."""
    v: torch.Tensor
    frames: "int | TimeRotation"
    chunks: int
    valid: torch.Tensor | None = None
    """Fixed-size form (an exported model's): ``k, v`` always hold ``window - 1`` chunks, zeros where the stream
    has not reached yet, and ``valid`` (M,) is 1 for real keys, 0 for padding."""

    @classmethod
    def empty(cls, like: torch.Tensor, heads: int, window: int, tokens_per_chunk: int, head_dim: int,
              t0: "int | TimeRotation" = 0) -> "SSACache":
        """The fixed-size cache of a new stream: all padding (equivalent to no cache)."""
        m = (window - 1) * tokens_per_chunk
        z = like.new_zeros(like.shape[0], heads, m, head_dim)
        return cls(z, z.clone(), t0, 0, like.new_zeros(m))


class SSA(nn.Module):
    """Stride self-attention: softmax attention on Q, K, V average-pooled by ``stride`` in space, output
    upsampled back; block-causal across chunks, over a window of the last ``window`` chunks (None: all)."""

    def __init__(self, dim: int, heads: int, stride: int = 2, window: int | None = 4):
        super().__init__()
        self.heads, self.head_dim, self.stride, self.window = heads, dim // heads, stride, window
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.norm_q = nn.RMSNorm(self.head_dim, eps=1e-6)
        self.norm_k = nn.RMSNorm(self.head_dim, eps=1e-6)
        self.to_out = nn.Linear(dim, dim)

    def pooled(self, x: torch.Tensor, t0: int):
        b, t, h, w, c = x.shape
        s = self.stride
        maps = self.to_qkv(x).reshape(b * t, h, w, 3 * c).permute(0, 3, 1, 2)
        if s > 1:  # a side that stride does not divide is padded by repeating its edge
            maps = F.avg_pool2d(F.pad(maps, (0, (-w) % s, 0, (-h) % s), mode="replicate"), s)
        pooled = maps
        hs, ws = pooled.shape[-2:]
        pooled = pooled.permute(0, 2, 3, 1).reshape(b, t * hs * ws, 3 * c)
        q, k, v = (split_heads(p, self.heads) for p in pooled.chunk(3, dim=-1))
        cos, sin = rope_at(t, hs, ws, self.head_dim, t0, device=x.device)
        q, k = apply_rope(self.norm_q(q), cos, sin), apply_rope(self.norm_k(k), cos, sin)
        return q, k, v, hs, ws

    def _finish(self, o: torch.Tensor, shape) -> torch.Tensor:
        b, t, h, w, c = shape
        s = self.stride
        o = merge_heads(o).view(b * t, -(-h // s), -(-w // s), c).permute(0, 3, 1, 2)
        if s > 1:
            o = F.interpolate(o, scale_factor=s, mode="nearest")[:, :, :h, :w]
        return self.to_out(o.permute(0, 2, 3, 1).reshape(b, t, h, w, c))

    def forward(self, x: torch.Tensor, chunk_frames: int, cache: SSACache | None = None):
        b, t, h, w, c = x.shape
        if t % chunk_frames:
            raise ValueError(f"{t} frames are not whole chunks of {chunk_frames}")
        t0, c0 = (cache.frames, cache.chunks) if cache is not None else (0, 0)
        q, k, v, hs, ws = self.pooled(x, t0)
        per_chunk = chunk_frames * hs * ws
        if cache is not None and cache.valid is not None:
            return self._fixed_window(x, q, k, v, cache, per_chunk, t)
        if cache is not None:
            k, v = torch.cat([cache.k, k], dim=2), torch.cat([cache.v, v], dim=2)
        nq = t // chunk_frames
        nk = k.shape[2] // per_chunk
        mask = chunk_window_mask(nq, nk, per_chunk, per_chunk, self.window, c0, device=x.device)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        keep = nk if self.window is None else min(nk, self.window - 1)
        new = SSACache(k[:, :, k.shape[2] - keep * per_chunk:], v[:, :, v.shape[2] - keep * per_chunk:],
                       advance(t0, t), c0 + nq)
        return self._finish(o, x.shape), new

    def _fixed_window(self, x, q, k, v, cache: SSACache, per_chunk: int, t: int):
        """One chunk against a cache of exactly ``window - 1`` chunks (padding masked): static shapes."""
        if self.window is None or q.shape[2] != per_chunk:
            raise ValueError("a fixed-size SSA cache takes one chunk per call and needs a finite window")
        m = (self.window - 1) * per_chunk
        if cache.k.shape[2] != m or cache.valid.shape[-1] != m:
            raise ValueError(f"fixed-size SSA cache holds {cache.k.shape[2]} keys, expected {m}")
        k, v = torch.cat([cache.k, k], dim=2), torch.cat([cache.v, v], dim=2)
        valid = F.pad(cache.valid, (0, per_chunk), value=1.0)
        bias = ((valid - 1) * 1e4).to(q.dtype)  # 0 for keys, -1e4 for padding (exp underflows to 0, fp16-safe)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None, None, None, :].expand(1, 1, q.shape[2], -1))
        new = SSACache(k[:, :, per_chunk:], v[:, :, per_chunk:], advance(cache.frames, t), cache.chunks + 1,
                       valid[per_chunk:])
        return self._finish(o, x.shape), new

    def reference(self, x: torch.Tensor, chunk_frames: int) -> torch.Tensor:
        q, k, v, hs, ws = self.pooled(x, 0)
        n = q.shape[2]
        per_chunk = chunk_frames * hs * ws
        ids = torch.arange(n, device=x.device) // per_chunk
        ok = ids[None, :] <= ids[:, None]
        if self.window is not None:
            ok &= ids[None, :] > ids[:, None] - self.window
        scores = (q @ k.transpose(-1, -2)) / self.head_dim ** 0.5
        o = scores.masked_fill(~ok, float("-inf")).softmax(-1) @ v
        return self._finish(o, x.shape)
