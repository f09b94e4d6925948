"""Attention kernels against their slow reference twins, forward and backward, and the cases where ASSA must
reduce to plain attention."""

import pytest
import torch

from generators.attention import (
    ASSA,
    Attention,
    grouped_attention,
    grouped_attention_reference,
    local_block_attention,
    local_block_attention_reference,
)


def _qkv(b=2, h=4, hkv=2, n=64, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, x, n, d, generator=g, requires_grad=True) for x in (h, hkv, hkv)]


def _grads(fn, tensors):
    out = fn(*tensors)
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)  # a loss whose gradient differs per element
    return out, torch.autograd.grad((out * weights).sum(), tensors)


@pytest.mark.parametrize("hkv", [1, 2, 4])  # MQA, GQA, MHA
def test_grouped_attention_matches_reference(hkv):
    t = _qkv(hkv=hkv)
    out, g = _grads(grouped_attention, t)
    ref, gr = _grads(grouped_attention_reference, t)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    for a, b in zip(g, gr):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("blocks,radius,hkv", [(4, 1, 2), (16, 1, 1), (16, 0, 4), (16, 2, 2), (64, 1, 2)])
def test_local_block_attention_matches_reference(blocks, radius, hkv):
    t = _qkv(hkv=hkv, n=64)

    def fast(q, k, v):
        return local_block_attention(q, k, v, side=8, blocks=blocks, radius=radius)

    def slow(q, k, v):
        return local_block_attention_reference(q, k, v, side=8, blocks=blocks, radius=radius)

    out, g = _grads(fast, t)
    ref, gr = _grads(slow, t)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    for a, b in zip(g, gr):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("blocks,radius", [(1, 1), (16, 3), (4, 1)])
def test_local_attention_is_full_attention_when_the_neighbourhood_covers_the_image(blocks, radius):
    q, k, v = _qkv(hkv=2, n=64)
    torch.testing.assert_close(local_block_attention(q, k, v, 8, blocks, radius), grouped_attention(q, k, v),
                               atol=1e-5, rtol=1e-4)


def test_local_attention_is_not_full_attention_when_it_should_not_be():
    q, k, v = _qkv(hkv=2, n=64)
    assert (local_block_attention(q, k, v, 8, 16, 1) - grouped_attention(q, k, v)).abs().max() > 1e-2


def test_assa_with_gate_on_local_and_one_block_is_plain_attention():
    torch.manual_seed(0)
    assa = ASSA(32, heads=4, kv_heads=2, blocks=1, radius=1)
    with torch.no_grad():
        assa.gate.weight.zero_()
        assa.gate.bias.fill_(40.0)  # sigmoid -> 1: all local
    x = torch.randn(2, 64, 32)
    torch.testing.assert_close(assa(x, side=8), assa.attn(x), atol=1e-5, rtol=1e-4)


def test_assa_branches_and_gate_match_reference_twins():
    """Forward and backward of ASSA against the same maths written with the reference kernels."""
    torch.manual_seed(0)
    assa = ASSA(32, heads=4, kv_heads=2, blocks=16, radius=1)
    x = torch.randn(2, 64, 32, requires_grad=True)

    def reference(x):
        a = assa.attn
        q, k, v = a.project(x)
        small = torch.nn.functional.conv2d(x.transpose(1, 2).reshape(2, 32, 8, 8), assa.compress.weight,
                                           assa.compress.bias, stride=2, groups=32).flatten(2).transpose(1, 2)
        kg = a.norm_k(a.to_k(small).view(2, 16, 2, 8).transpose(1, 2))
        vg = a.to_v(small).view(2, 16, 2, 8).transpose(1, 2)
        local = local_block_attention_reference(q, k, v, 8, 16, 1)
        glob = grouped_attention_reference(q, kg, vg)
        gate = torch.sigmoid(assa.gate(x)).transpose(1, 2)[..., None]
        return a.to_out((gate * local + (1 - gate) * glob).transpose(1, 2).reshape(2, 64, 32))

    out = assa(x, side=8)
    ref = reference(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    g1, = torch.autograd.grad(out.square().sum(), x)
    g2, = torch.autograd.grad(ref.square().sum(), x)
    torch.testing.assert_close(g1, g2, atol=1e-4, rtol=1e-4)
    gate = assa.branches(x, 8)[0]
    assert gate.shape == (2, 4, 64, 1) and gate.std() > 0  # per head, per token: input-dependent


def test_sliced_attention_equals_a_narrow_model_built_from_its_slices():
    torch.manual_seed(0)
    wide = Attention(64, heads=8, kv_heads=4)
    narrow = Attention(32, heads=4, kv_heads=2)
    with torch.no_grad():
        narrow.to_q.weight.copy_(wide.to_q.weight[:32, :32])
        narrow.to_k.weight.copy_(wide.to_k.weight[:16, :32])
        narrow.to_v.weight.copy_(wide.to_v.weight[:16, :32])
        narrow.to_out.weight.copy_(wide.to_out.weight[:32, :32])
        narrow.to_out.bias.copy_(wide.to_out.bias[:32])
    x = torch.randn(2, 10, 32)
    torch.testing.assert_close(wide(x, heads=4), narrow(x))
    with pytest.raises(ValueError, match="KV heads"):
        wide(torch.randn(2, 10, 24), heads=3)
