"""The blend-weight cache re-renders exactly what the tile rasterizer draws, with the same SH gradients."""

import math

import pytest
import torch

from stylize3d.blend_cache import BlendCache, transpose_csr
from stylize3d.cameras import Cameras, intrinsics, look_at
from stylize3d.gaussians import GaussianScene
from stylize3d.rasterize import camera_center, normalize_depth, project, rasterize_tiles
from stylize3d.sh import eval_sh

W, H = 40, 32
BG = torch.tensor([0.3, 0.6, 0.9])


def make_scene(n: int = 200, seed: int = 0) -> GaussianScene:
    g = torch.Generator().manual_seed(seed)
    return GaussianScene(
        means=(torch.rand(n, 3, generator=g) - 0.5) * 2,
        scales=torch.log(torch.rand(n, 3, generator=g) * 0.08 + 0.01),
        quats=torch.randn(n, 4, generator=g),
        opacities=torch.randn(n, generator=g) * 1.5 + 1.0,
        sh0=torch.randn(n, 1, 3, generator=g) * 0.5,
        shN=torch.randn(n, 8, 3, generator=g) * 0.2,  # degree 2
    )


def make_cameras(n: int = 3) -> Cameras:
    up = torch.tensor([0.0, 0.0, 1.0])
    viewmats = [look_at(torch.tensor([3 * math.cos(a), 3 * math.sin(a), 1.2]), torch.zeros(3), up)
                for a in torch.linspace(0.0, 4.0, n).tolist()]
    return Cameras(torch.stack(viewmats), intrinsics(55.0, W, H).expand(n, 3, 3).clone(), W, H)


@pytest.fixture(scope="module")
def setup():
    scene, cams = make_scene(), make_cameras()
    calls = []
    cache = BlendCache.build(scene, cams, background=BG, progress=lambda i, total: calls.append((i, total)))
    return scene, cams, cache, calls


def _rasterize_sh(scene, cams, i, sh0, shN):
    viewmat, K = cams.viewmats[i], cams.Ks[i]
    proj = project(scene.means, scene.quats, scene.scales, viewmat, K, W, H)
    colors = eval_sh(torch.cat([sh0, shN], dim=1), scene.means - camera_center(viewmat))
    return rasterize_tiles(proj, colors, torch.sigmoid(scene.opacities), W, H, BG)


def test_build_shapes_and_progress(setup):
    scene, cams, cache, calls = setup
    assert len(cache) == 3 and calls == [(1, 3), (2, 3), (3, 3)]
    view = cache[1]
    assert view.weights.layout == torch.sparse_csr and view.weights.shape == (H * W, scene.num_gaussians)
    assert view.alpha.shape == (H, W) and view.depth.shape == (H, W) and view.dirs.shape == (scene.num_gaussians, 3)
    assert cache.nnz == sum(v.nnz for v in cache.views) > H * W
    assert cache.memory_bytes() > 2 * cache.nnz * (4 + 8)  # two CSR copies: value + column index each
    assert torch.equal(transpose_csr(view.weights).to_dense(), view.weights.to_dense().T)


@pytest.mark.parametrize("view_idx", [0, 2])
def test_cache_render_matches_rasterizer(setup, view_idx):
    scene, cams, cache, _ = setup
    want = _rasterize_sh(scene, cams, view_idx, scene.sh0, scene.shN)
    got = cache.render(view_idx, scene.sh0, scene.shN)
    assert got.shape == (H, W, 3)
    assert (got - want.rgb).abs().max() <= 1e-5
    assert (cache[view_idx].alpha - want.alpha).abs().max() <= 1e-5
    assert (cache[view_idx].depth - normalize_depth(want.depth, want.alpha)).abs().max() <= 1e-4


def test_cache_gradients_match_autograd_through_rasterizer(setup):
    scene, cams, cache, _ = setup
    probe = torch.rand(H, W, 3, generator=torch.Generator().manual_seed(1))
    grads = []
    for use_cache in (True, False):
        sh0, shN = scene.sh0.clone().requires_grad_(), scene.shN.clone().requires_grad_()
        rgb = cache.render(1, sh0, shN) if use_cache else _rasterize_sh(scene, cams, 1, sh0, shN).rgb
        grads.append(torch.autograd.grad(((rgb - probe) ** 2).sum(), [sh0, shN]))
    for name, cached, direct in zip(("sh0", "shN"), *grads):
        assert direct.abs().max() > 0.1, name
        assert torch.allclose(cached, direct, rtol=1e-4, atol=1e-6), name


def test_render_colors_and_errors(setup):
    scene, _, cache, _ = setup
    colors = torch.zeros(scene.num_gaussians, 3, requires_grad=True)
    rgb = cache.render_colors(0, colors)
    assert torch.allclose(rgb, (1 - cache[0].alpha)[..., None] * BG, atol=1e-6)  # black splats over the bg
    rgb.sum().backward()
    assert torch.allclose(colors.grad[:, 0], cache[0].weights.to_dense().sum(0), atol=1e-6)
    with pytest.raises(ValueError, match="colors"):
        cache.render_colors(0, torch.zeros(5, 3))
