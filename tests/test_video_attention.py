"""LCHA and SSA: fast paths against their slow twins (forward and backward), streaming chunk by chunk from
caches against all frames at once, and causality (a later chunk never changes an earlier one)."""

import pytest
import torch

from generators.video_attention import (
    LCHA,
    SSA,
    apply_rope,
    block_causal_linear_attention,
    block_causal_linear_attention_reference,
    rope_3d,
)


def _features(b=2, h=3, n=24, d=8, dv=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.rand(b, h, n, d, generator=g, dtype=torch.float64) + 0.1 for _ in range(2))
    v = torch.randn(b, h, n, dv, generator=g, dtype=torch.float64)
    cos, sin = rope_3d(n // 4, 2, 2, d)
    return q, k, v, apply_rope(q, cos.double(), sin.double()), apply_rope(k, cos.double(), sin.double())


@pytest.mark.parametrize("block,chunk", [(4, 4), (4, 8), (4, 12), (6, 18), (8, 16)])
def test_chunkwise_linear_attention_matches_the_reference(block, chunk):
    q, k, v, qr, kr = (x.requires_grad_() for x in _features())
    fast, _ = block_causal_linear_attention(q, k, v, qr, kr, block, chunk)
    ref = block_causal_linear_attention_reference(q, k, v, qr, kr, block)
    torch.testing.assert_close(fast.double(), ref, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(fast.double().pow(2).sum(), (q, k, v, qr, kr))
    grads_ref = torch.autograd.grad(ref.pow(2).sum(), (q, k, v, qr, kr))
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_linear_attention_state_continues_the_stream():
    q, k, v, qr, kr = _features(n=24)
    whole, final = block_causal_linear_attention(q, k, v, qr, kr, 4, 8)
    first, state = block_causal_linear_attention(q[:, :, :12], k[:, :, :12], v[:, :, :12], qr[:, :, :12],
                                                 kr[:, :, :12], 4, 4)
    second, state = block_causal_linear_attention(q[:, :, 12:], k[:, :, 12:], v[:, :, 12:], qr[:, :, 12:],
                                                  kr[:, :, 12:], 4, 12, state)
    torch.testing.assert_close(torch.cat([first, second], 2), whole)
    torch.testing.assert_close(state.kv, final.kv)
    with pytest.raises(ValueError, match="whole blocks"):
        block_causal_linear_attention(q[:, :, :10], k[:, :, :10], v[:, :, :10], qr[:, :, :10], kr[:, :, :10], 4)


def test_rope_is_relative_in_time():
    cos, sin = rope_3d(6, 2, 2, 12)
    cos2, sin2 = rope_3d(6, 2, 2, 12, t0=5)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(24, 12, generator=g), torch.randn(24, 12, generator=g)
    a = apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).T
    b = apply_rope(q, cos2, sin2) @ apply_rope(k, cos2, sin2).T
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)  # shifting every frame changes no score


def _video(t=6, h=4, w=4, c=16, seed=0):
    return torch.randn(2, t, h, w, c, generator=torch.Generator().manual_seed(seed))


def test_lcha_matches_its_reference_forward_and_backward():
    torch.manual_seed(0)
    m = LCHA(16, heads=2)
    x = _video().requires_grad_()
    fast, _ = m(x, chunk_frames=2, compute_chunk=2 * 2 * 16)
    ref = m.reference(x, chunk_frames=2)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-4)
    ga = torch.autograd.grad(fast.pow(2).sum(), [x, *m.parameters()])
    gb = torch.autograd.grad(ref.pow(2).sum(), [x, *m.parameters()])
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("module", ["lcha", "ssa"])
def test_streaming_chunk_by_chunk_equals_all_at_once(module):
    torch.manual_seed(0)
    m = LCHA(16, heads=2) if module == "lcha" else SSA(16, heads=2, stride=2, window=2)
    x = _video(t=8)
    whole, _ = m(x, chunk_frames=2)
    cache, parts = None, []
    for i in range(0, 8, 2):
        out, cache = m(x[:, i:i + 2], chunk_frames=2, cache=cache)
        parts.append(out)
    torch.testing.assert_close(torch.cat(parts, 1), whole, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(whole, m.reference(x, chunk_frames=2), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("module", ["lcha", "ssa"])
def test_later_chunks_never_change_earlier_ones(module):
    torch.manual_seed(0)
    m = LCHA(16, heads=2) if module == "lcha" else SSA(16, heads=2, stride=2, window=None)
    x = _video(t=6)
    y = x.clone()
    y[:, 4:] = torch.randn_like(y[:, 4:])  # a different last chunk
    a, _ = m(x, chunk_frames=2)
    b, _ = m(y, chunk_frames=2)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_ssa_cache_stays_the_size_of_its_window():
    torch.manual_seed(0)
    m = SSA(16, heads=2, stride=2, window=3)
    cache = None
    for _ in range(6):
        _, cache = m(_video(t=2), chunk_frames=2, cache=cache)
    assert cache.k.shape[2] == 2 * 2 * 2 * 2 and cache.chunks == 6  # window-1 chunks of 2 frames of 2x2 tokens

def test_ssa_pools_a_side_the_stride_does_not_divide():
    torch.manual_seed(0)
    m = SSA(16, heads=2, stride=2, window=2)
    x = _video(t=4, h=5, w=3)
    out, _ = m(x, chunk_frames=2)
    assert out.shape == x.shape
    torch.testing.assert_close(out, m.reference(x, chunk_frames=2), atol=1e-5, rtol=1e-4)
