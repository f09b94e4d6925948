import math

import torch

from stylize3d.blend_cache import BlendCache
from stylize3d.builtin_scene import BACKGROUND
from stylize3d.metrics import PSNR_CAP_DB, leakage, psnr, style_distances, warp_error
from stylize3d.selection import select_object


def test_psnr():
    a = torch.zeros(4, 4, 3)
    assert psnr(a, a) == PSNR_CAP_DB
    assert math.isclose(psnr(a, a + 0.1), 20.0, rel_tol=1e-4)
    assert psnr(a[:0], a[:0]) is None  # nothing measured is not "identical"


def _renders(cache, scene):
    return [cache.render(v, scene.sh0, scene.shN) for v in range(len(cache))]


def test_warp_error_low_for_3d_consistent_renders_high_for_per_view_noise(tiny_builtin):
    _, scene, cams = tiny_builtin
    cache = BlendCache.build(scene, cams, torch.tensor(BACKGROUND))
    depths = [cache[v].depth for v in range(len(cache))]
    alphas = [cache[v].alpha for v in range(len(cache))]
    renders = _renders(cache, scene)
    consistent, n = warp_error(renders, depths, alphas, cams, gap=1)
    g = torch.Generator().manual_seed(0)
    noisy = [(r + 0.2 * torch.randn(r.shape, generator=g)).clamp(0, 1) for r in renders]
    inconsistent, n_noisy = warp_error(noisy, depths, alphas, cams, gap=1)
    assert consistent < 0.08 and n > 100 and n_noisy == n
    assert inconsistent > 2 * consistent
    # a view warped onto itself is exact
    assert warp_error([renders[0], renders[0]], depths[:1] * 2, alphas[:1] * 2,
                      _same_view_twice(cams), gap=1)[0] < 1e-5
    # no valid pixel: None, not NaN, and a count of 0
    empty = [torch.zeros(cams.height, cams.width, dtype=torch.bool)] * len(renders)
    assert warp_error(renders, depths, alphas, cams, gap=1, region=empty) == (None, 0)


def _same_view_twice(cams):
    from stylize3d.cameras import Cameras

    return Cameras(cams.viewmats[[0, 0]], cams.Ks[[0, 0]], cams.width, cams.height)


def test_leakage_sees_changes_outside_the_selection(tiny_builtin):
    _, scene, cams = tiny_builtin
    cache = BlendCache.build(scene, cams, torch.tensor(BACKGROUND))
    cube = select_object(scene, "cube")
    before = _renders(cache, scene)
    changed = scene.clone()
    changed.sh0[cube] += 1.0
    m = leakage(cache, before, _renders(cache, changed), cube)
    # pixels the cube does not reach are bitwise unchanged; its halo over the floor is counted as leakage
    assert m["untouched_psnr_db"] == PSNR_CAP_DB and m["untouched_max_abs_diff"] == 0.0
    assert m["pixels"]["untouched"] > 0.5 * len(cache) * cams.width * cams.height
    assert m["leakage_max_abs_diff"] > 0 and m["pixels"]["leakage"] > m["pixels"]["untouched"]
    # one neighbouring object leaking a little must show
    sphere = select_object(scene, "sphere")
    changed.sh0[sphere] += 0.05
    leak = leakage(cache, before, _renders(cache, changed), cube)
    assert leak["untouched_psnr_db"] < PSNR_CAP_DB and leak["untouched_max_abs_diff"] > 0.005


def test_style_distances_prefer_the_style_itself(tiny_builtin):
    from stylize3d.backbones import load_backbone
    from stylize3d.stylize import style_features

    g = torch.Generator().manual_seed(0)
    style = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 6, generator=g), size=(48, 48))[0].permute(1, 2, 0)
    flat = torch.full((48, 48, 3), 0.5)
    cov = torch.ones(48, 48)
    net = load_backbone("filterbank")
    sf = style_features(net, [style], 48)
    d_style = style_distances(net, [style], [cov], sf)
    d_flat = style_distances(net, [flat], [cov], sf)
    assert d_style["nnfm"] < 1e-4 and d_style["gram"] < 1e-8
    assert d_flat["nnfm"] > d_style["nnfm"] and d_flat["gram"] > d_style["gram"]
