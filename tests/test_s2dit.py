"""S2DiT, the streaming video denoiser: chunk-by-chunk from caches equals all frames at once, later chunks never
change earlier ones, one chunk as long as the clip is bidirectional, a diffusers save/load round trip, and the
paper-scale configuration counted on the meta device."""

import pytest
import torch

from generators.models import S2DiT
from generators.models.s2dit import FULL_SIZE


def tiny(**kw):
    torch.manual_seed(0)
    m = S2DiT(in_channels=4, out_channels=4, patch_size=1, hidden_size=32, num_heads=2,
              layout=(("lcha",), ("ssa", "lcha"), ("lcha",)), cross_attention_dim=16, ssa_window=2, chunk_frames=2,
              **kw)
    for p in m.parameters():  # zero-initialised output layers would hide every difference
        torch.nn.init.normal_(p, std=0.1)
    return m.eval()


def _inputs(t=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, t, 8, 8, generator=g), torch.randn(2, 5, 16, generator=g)


def test_streaming_chunk_by_chunk_equals_all_at_once():
    m = tiny()
    x, ctx = _inputs(t=8)
    ts = torch.tensor([[900.0] * 2 + [600.0] * 2 + [300.0] * 2 + [0.0] * 2] * 2)  # each chunk its own level
    whole = m(x, ts, ctx).sample
    cache, parts = None, []
    for i in range(0, 8, 2):
        out = m(x[:, :, i:i + 2], ts[:, i:i + 2], ctx, cache=cache)
        cache = out.cache
        parts.append(out.sample)
    torch.testing.assert_close(torch.cat(parts, 2), whole, atol=1e-4, rtol=1e-4)
    assert len(cache) == m.num_blocks


def test_causal_across_chunks_and_bidirectional_as_one_chunk():
    m = tiny()
    x, ctx = _inputs()
    y = x.clone()
    y[:, :, 4:] = torch.randn_like(y[:, :, 4:])
    a, b = m(x, 500.0, ctx).sample, m(y, 500.0, ctx).sample
    torch.testing.assert_close(a[:, :, :4], b[:, :, :4])
    a, b = m(x, 500.0, ctx, chunk_frames=6).sample, m(y, 500.0, ctx, chunk_frames=6).sample
    assert not torch.allclose(a[:, :, :4], b[:, :, :4])  # the teacher's clip-long chunk sees the future


def test_round_trip_and_bad_shapes(tmp_path):
    m = tiny()
    x, ctx = _inputs(t=4)
    m.save_pretrained(tmp_path / "m")
    again = S2DiT.from_pretrained(tmp_path / "m").eval()
    torch.testing.assert_close(again(x, 100.0, ctx).sample, m(x, 100.0, ctx).sample)
    with pytest.raises(ValueError, match="whole chunks"):
        m(x[:, :, :3], 100.0, ctx)
    with pytest.raises(ValueError, match="divide"):
        m(torch.randn(2, 4, 2, 7, 8), 100.0, ctx)
    with pytest.raises(ValueError, match="cache has"):
        m(x[:, :, :2], 100.0, ctx, cache=[None])
    with pytest.raises(ValueError, match="block type"):
        S2DiT(layout=(("lcha",), ("full",), ("lcha",)))


def test_paper_scale_configuration_on_the_meta_device():
    with torch.device("meta"):
        m = S2DiT(**FULL_SIZE)
        out = m(torch.empty(1, 16, 3, 36, 64), torch.empty(1), torch.empty(1, 32, 1024)).sample
    params = sum(p.numel() for p in m.parameters())
    assert out.shape == (1, 16, 3, 36, 64)  # 512x288 frames through an f=8 latent
    assert 0.3e9 < params < 0.6e9, params
