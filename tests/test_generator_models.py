"""The denoisers: the papers' parameter counts (counted on the meta device), diffusers conventions, and
SnapGen++'s elastic widths (one checkpoint, three widths, a width cut out equals the sliced run)."""

import pytest
import torch

from generators.models import SnapGenDiT, SnapGenUNet
from generators.models.snapgen_dit import FULL_SIZE


def _params(model) -> float:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,make,target", [
    ("SnapGen U-Net", lambda: SnapGenUNet(), 379e6),
    ("SnapGen++ 0.3B", lambda: SnapGenDiT(**FULL_SIZE["0.3b"]), 0.3e9),
    ("SnapGen++ 0.4B", lambda: SnapGenDiT(**FULL_SIZE["0.4b"]), 0.4e9),
    ("SnapGen++ 1.6B", lambda: SnapGenDiT(**FULL_SIZE["1.6b"]), 1.6e9),
])
def test_full_size_configs_reproduce_the_papers_parameter_counts(name, make, target):
    with torch.device("meta"):
        model = make()
    assert abs(_params(model) / target - 1) <= 0.15, f"{name}: {_params(model) / 1e6:.0f}M vs {target / 1e6:.0f}M"


def test_snapgen_unet_layout():
    with torch.device("meta"):
        m = SnapGenUNet()
    assert m.config.block_out_channels == (256, 512, 896) and m.config.transformer_layers == (0, 2, 4)
    assert m.config.kv_heads == 1  # multi-query
    # self-attention only at the lowest resolution; cross-attention from the first stage
    first, second, third = m.down
    assert all(blk.attn1 is None for st in first["attn"] for blk in st.blocks)
    assert all(blk.attn2 is not None for st in first["attn"] for blk in st.blocks)
    assert all(blk.attn1 is None for st in second["attn"] for blk in st.blocks)
    assert all(blk.attn1 is not None for st in third["attn"] for blk in st.blocks)
    dw = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d) and mod.groups > 1]
    assert dw, "depthwise convolutions"


def _tiny_unet(**kw):
    return SnapGenUNet(in_channels=4, out_channels=4, sample_size=8, block_out_channels=(16, 32, 32),
                       transformer_layers=(0, 1, 1), layers_per_block=1, mid_transformer_layers=1, head_dim=8,
                       cross_attention_dim=24, **kw)


def _tiny_dit(widths=(0.5, 1.0)):
    return SnapGenDiT(in_channels=4, out_channels=4, sample_size=16, hidden_size=64, num_heads=8, kv_heads=4,
                      depths=(1, 1, 2), cross_attention_dim=24, assa_blocks=4, widths=widths)


@pytest.mark.parametrize("make", [_tiny_unet, _tiny_dit])
def test_denoisers_follow_diffusers_conventions(make, tmp_path):
    torch.manual_seed(0)
    m = make()
    for p in m.parameters():  # zero-initialised outputs would make every comparison trivial
        torch.nn.init.normal_(p, std=0.1)
    side = m.config.sample_size
    x, ctx = torch.randn(2, 4, side, side), torch.randn(2, 7, 24)
    out = m(hidden_states=x, timestep=torch.tensor([10.0, 900.0]), encoder_hidden_states=ctx)
    assert out.sample.shape == x.shape and out.sample.abs().mean() > 0
    assert m(x, 500.0, ctx, return_dict=False)[0].shape == x.shape  # scalar timestep
    m.save_pretrained(tmp_path)
    again = type(m).from_pretrained(tmp_path)
    torch.testing.assert_close(again(x, torch.tensor([10.0, 900.0]), ctx).sample, out.sample)


def test_elastic_dit_runs_every_width_and_extracts_each_exactly(tmp_path):
    torch.manual_seed(0)
    m = SnapGenDiT(in_channels=4, out_channels=4, sample_size=16, hidden_size=64, num_heads=8, kv_heads=8,
                   depths=(1, 1, 1), cross_attention_dim=24, assa_blocks=4, widths=(0.375, 0.5, 1.0))
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x, ctx, t = torch.randn(2, 4, 16, 16), torch.randn(2, 5, 24), torch.tensor([100.0, 700.0])
    outs = {}
    for w in (0.375, 0.5, 1.0):
        outs[w] = m(x, t, ctx, width_mult=w).sample
        small = m.extract_width(w)
        assert small.config.hidden_size == round(64 * w) and small.config.widths == (1.0,)
        assert _params(small) < _params(m) or w == 1.0
        torch.testing.assert_close(small(x, t, ctx).sample, outs[w], atol=1e-5, rtol=1e-5)
        small.save_pretrained(tmp_path / str(w))
        torch.testing.assert_close(SnapGenDiT.from_pretrained(tmp_path / str(w))(x, t, ctx).sample, outs[w],
                                   atol=1e-5, rtol=1e-5)
    assert (outs[0.5] - outs[1.0]).abs().mean() > 1e-3  # widths are different models
    # separate norms per width
    norms = m.down[0].norm1.norms
    assert set(norms) == {"0_375", "0_5", "1"} and norms["0_5"].weight.shape == (32,)
    with pytest.raises(ValueError, match="width_mult"):
        m(x, t, ctx, width_mult=0.25)


def test_dit_refuses_widths_that_are_not_whole_heads():
    with pytest.raises(ValueError, match="whole heads"):
        SnapGenDiT(hidden_size=64, num_heads=8, kv_heads=8, widths=(0.3, 1.0), depths=(1, 1, 1))
