"""NNFM, content, TV and Gram losses; colour transfer; the fixed filter bank."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stylize3d import losses
from stylize3d.backbones import FilterBankBackbone
from stylize3d.color_transfer import apply_color_transfer, fit_color_transfer

torch.set_num_threads(2)


def nnfm_reference(render: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Slow, obvious twin: full cosine matrix, best match per render feature."""
    r = render.permute(0, 2, 3, 1).reshape(-1, render.shape[1])  # [N, C]
    cos = F.normalize(r, dim=1) @ F.normalize(bank, dim=0)  # [N, M]
    return (1 - cos.max(dim=1).values).mean()


def test_nnfm_zero_when_render_is_drawn_from_style():
    torch.manual_seed(0)
    style = torch.randn(1, 16, 6, 7)
    bank = losses.style_feature_bank(style)  # [16, 42]
    render = bank[:, torch.randperm(42)[:30]].t().reshape(1, 5, 6, 16).permute(0, 3, 1, 2)
    assert float(losses.nnfm_loss(render, style)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.nnfm_loss(style, [style])) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("chunk", [7, 100, losses.CHUNK_ELEMENTS])
def test_nnfm_matches_reference_forward_and_backward(chunk):
    torch.manual_seed(1)
    render = torch.randn(2, 8, 5, 6, requires_grad=True)
    bank = torch.randn(8, 37)
    loss = losses.nnfm_loss(render, bank, chunk=chunk)
    (grad,) = torch.autograd.grad(loss, render)
    ref_render = render.detach().clone().requires_grad_(True)
    ref = nnfm_reference(ref_render, bank)
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad, ref_render.grad, rtol=1e-5, atol=1e-7)


def test_nnfm_decreases_under_gradient_steps():
    torch.manual_seed(2)
    render = torch.randn(1, 8, 6, 6, requires_grad=True)
    style = [torch.randn(1, 8, 5, 5), torch.randn(1, 8, 3, 4)]  # two style images pooled
    opt = torch.optim.Adam([render], lr=0.2)
    history = []
    for _ in range(5):
        loss = losses.nnfm_loss(render, style)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert all(b < a for a, b in zip(history, history[1:]))
    assert history[-1] < 0.5 * history[0]


def test_nnfm_through_filterbank_decreases():
    torch.manual_seed(3)
    fb = FilterBankBackbone()
    style_feats = fb(torch.rand(1, 3, 32, 32))
    img = torch.full((1, 3, 32, 32), 0.5).requires_grad_(True)
    opt = torch.optim.Adam([img], lr=0.05)
    history = []
    for _ in range(8):
        loss = losses.nnfm_loss(fb(img.clamp(0, 1)), style_feats)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < 0.7 * history[0]


def test_nnfm_respects_mask():
    torch.manual_seed(4)
    render = torch.randn(1, 8, 4, 4, requires_grad=True)
    bank = torch.randn(8, 20)
    mask = torch.zeros(1, 1, 16, 16)  # image-resolution mask; 4x4 cells per feature
    mask[..., :8, :12] = 1  # feature rows 0-1, columns 0-2
    loss = losses.nnfm_loss(render, bank, mask)
    loss.backward()
    inside = torch.zeros(4, 4, dtype=torch.bool)
    inside[:2, :3] = True
    assert render.grad[0][:, ~inside].abs().max() == 0
    assert render.grad[0][:, inside].abs().min() > 0
    changed = render.detach().clone()
    changed[0][:, ~inside] = torch.randn(8, int((~inside).sum()))
    assert losses.nnfm_loss(changed, bank, mask).item() == loss.item()
    ref = nnfm_reference(render.detach()[..., :2, :3], bank)
    torch.testing.assert_close(loss.detach(), ref, rtol=1e-6, atol=1e-6)
    empty = losses.nnfm_loss(render, bank, torch.zeros(1, 1, 4, 4))
    assert empty.item() == 0.0 and empty.requires_grad


def test_pooled_styles_match_at_least_as_well_as_each():
    torch.manual_seed(5)
    render = torch.randn(1, 8, 4, 4)
    a, b = torch.randn(1, 8, 3, 3), torch.randn(1, 8, 2, 5)
    pooled = losses.nnfm_distance(render, [a, b])
    assert pooled <= min(losses.nnfm_distance(render, a), losses.nnfm_distance(render, b)) + 1e-7
    with pytest.raises(ValueError, match="channel"):
        losses.nnfm_loss(render, torch.randn(4, 10))


def test_content_and_tv_losses():
    torch.manual_seed(6)
    feats, ref = torch.randn(1, 4, 5, 5), torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(losses.content_loss(feats, ref), F.mse_loss(feats, ref))
    mask = torch.zeros(1, 1, 5, 5)
    mask[..., 1:3, 2:5] = 1
    expected = F.mse_loss(feats[..., 1:3, 2:5], ref[..., 1:3, 2:5])
    torch.testing.assert_close(losses.content_loss(feats, ref, mask), expected)
    assert float(losses.tv_loss(torch.full((1, 3, 8, 8), 0.3))) == 0.0
    ramp = torch.arange(6.0).view(1, 1, 1, 6).expand(1, 3, 4, 6) * 0.1  # dx = 0.1, dy = 0
    torch.testing.assert_close(losses.tv_loss(ramp), torch.tensor(0.01))
    noisy = ramp.clone()
    noisy[..., 3:, :] = torch.rand(1, 3, 1, 6)  # outside the mask below
    m = torch.zeros(1, 1, 4, 6)
    m[..., :3, :] = 1
    torch.testing.assert_close(losses.tv_loss(noisy, m), torch.tensor(0.01))


def test_gram_distance_symmetric_and_zero_on_identical():
    torch.manual_seed(7)
    a, b = torch.randn(1, 6, 5, 5), torch.randn(2, 6, 3, 4)
    assert losses.gram_distance(a, a) == 0.0
    assert losses.gram_distance(a, b) == pytest.approx(losses.gram_distance(b, a), rel=1e-6)
    assert losses.gram_distance(a, b) > 0
    torch.testing.assert_close(losses.gram_matrix(a), losses.gram_matrix(losses.style_feature_bank(a)))
    g = losses.gram_matrix(b)
    torch.testing.assert_close(g, g.t())


def test_color_transfer_matches_mean_and_covariance():
    torch.manual_seed(8)
    src = torch.rand(500, 3, dtype=torch.float64) @ torch.tensor(
        [[0.5, 0.2, 0.0], [0.1, 0.3, 0.1], [0.0, 0.1, 0.2]], dtype=torch.float64
    )
    tgt = torch.rand(300, 3, dtype=torch.float64) * torch.tensor([0.2, 0.6, 0.4], dtype=torch.float64) + 0.2
    a, b = fit_color_transfer(src, tgt)
    out = apply_color_transfer(src, a, b, clamp=False)
    torch.testing.assert_close(out.mean(0), tgt.mean(0), rtol=0, atol=1e-10)
    cov = lambda x: (x - x.mean(0)).t() @ (x - x.mean(0)) / x.shape[0]  # noqa: E731
    torch.testing.assert_close(cov(out), cov(tgt), rtol=0, atol=1e-10)
    flat = torch.full((50, 3), 0.4)  # a single-colour object: no covariance to invert
    a2, b2 = fit_color_transfer(flat, tgt.float())
    moved = apply_color_transfer(flat, a2, b2)
    assert torch.isfinite(moved).all()
    torch.testing.assert_close(moved.mean(0), tgt.float().mean(0), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="source_rgb"):
        fit_color_transfer(torch.rand(10, 4), tgt)


def test_filterbank_deterministic_and_shaped():
    img = torch.rand(2, 3, 30, 34, generator=torch.Generator().manual_seed(9))
    fa, fb = FilterBankBackbone()(img), FilterBankBackbone()(img)
    assert torch.equal(fa, fb)
    assert fa.shape == (2, FilterBankBackbone().out_channels, 8, 9)
    assert torch.isfinite(fa).all() and fa[:, 3:].abs().sum() > 0
