"""The optimisation itself, on a tiny built-in scene with the real offline backbone."""

import pytest
import torch

from stylize3d.backbones import load_backbone
from stylize3d.blend_cache import BlendCache
from stylize3d.builtin_scene import BACKGROUND
from stylize3d.metrics import style_distances
from stylize3d.selection import select_object
from stylize3d.stylize import StyleTarget, StylizeConfig, linear_transform_sh, style_features, stylize


def _style(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(base, size=(64, 64), mode="nearest")[0].permute(1, 2, 0)


def test_only_selected_gaussians_change_bitwise(tiny_builtin):
    _, scene, cams = tiny_builtin
    cache = BlendCache.build(scene, cams, torch.tensor(BACKGROUND))
    original = scene.clone()
    targets = [StyleTarget("cube", select_object(scene, "cube"), [_style(0)]),
               StyleTarget("sphere", select_object(scene, "sphere"), [_style(1), _style(2)])]
    backbone = load_backbone("effnet-lite0")
    out = stylize(scene, cache, targets, backbone, StylizeConfig(iters=4, views_per_step=1)).scene
    selected = targets[0].mask | targets[1].mask
    for name, before in original.tensors().items():
        after = getattr(out, name)
        assert torch.equal(after[~selected], before[~selected]), name  # bitwise, every parameter
        assert torch.equal(getattr(scene, name), before), f"input scene {name} was modified"
    assert not torch.equal(out.sh0[selected], original.sh0[selected])
    assert torch.equal(out.means, original.means) and torch.equal(out.opacities, original.opacities)


def test_style_distance_drops(tiny_builtin):
    _, scene, cams = tiny_builtin
    cache = BlendCache.build(scene, cams, torch.tensor(BACKGROUND))
    style = _style(3)
    mask = select_object(scene, "cube")
    backbone = load_backbone("effnet-lite0")
    cfg = StylizeConfig(iters=15, views_per_step=2, color_transfer=False)
    out = stylize(scene, cache, [StyleTarget("cube", mask, [style])], backbone, cfg)
    sf = style_features(backbone, [style], cfg.style_long_side)
    views = [0, 3, 6, 9]
    covs = [torch.sparse.mm(cache[v].weights, mask.float()[:, None]).reshape(cams.height, cams.width) for v in views]
    before = style_distances(backbone, [cache.render(v, scene.sh0, scene.shN) for v in views], covs, sf)
    after = style_distances(backbone, [cache.render(v, out.scene.sh0, out.scene.shN).detach() for v in views],
                            covs, sf)
    assert after["nnfm"] < before["nnfm"]


def test_linear_transform_sh_is_exact():
    from stylize3d.sh import eval_sh

    g = torch.Generator().manual_seed(0)
    sh0, shN = torch.randn(50, 1, 3, generator=g) * 0.3, torch.randn(50, 15, 3, generator=g) * 0.05
    A, b = torch.randn(3, 3, generator=g) * 0.1 + torch.eye(3), torch.randn(3, generator=g) * 0.05
    dirs = torch.nn.functional.normalize(torch.randn(50, 3, generator=g), dim=1)
    n0, nN = linear_transform_sh(sh0, shN, A, b)
    raw = lambda s0, sN: eval_sh(torch.cat([s0, sN], 1), dirs)  # noqa: E731
    expected = raw(sh0, shN) @ A.T + b
    assert expected.min() > 0  # eval_sh clamps at 0: keep the data where the map is linear
    assert torch.allclose(raw(n0, nN), expected, atol=1e-5)


def test_target_spec_describe_never_raises_and_bad_specs_say_why():
    from stylize3d.pipeline import TargetSpec, check_targets

    empty = TargetSpec(styles=["assets/styles/mosaic.png"])
    assert "no object, box or click" in empty.describe()
    with pytest.raises(ValueError, match="exactly one of an object, a box or a click"):
        check_targets([empty])
    with pytest.raises(ValueError, match="at most 16"):
        check_targets([TargetSpec(styles=["assets/styles/mosaic.png"], object="cube")] * 17)
    with pytest.raises(ValueError, match="at most 8 per object"):
        check_targets([TargetSpec(styles=["assets/styles/mosaic.png"] * 9, object="cube")])


def test_stylize_config_refuses_non_finite_and_huge_values():
    from dataclasses import replace

    from stylize3d.stylize import StylizeConfig

    for field, value in (("lr", float("nan")), ("content_weight", 1e308), ("seed", 2**70), ("style_weight", -1.0)):
        with pytest.raises(ValueError, match=field.replace("_", " ")):
            replace(StylizeConfig(), **{field: value})


def test_a_metric_that_cannot_be_measured_is_null_with_a_reason(tiny_builtin):
    """A selection of one floor Gaussian is never what a pixel shows, so consistency and style cannot be
    measured: they are None with a reason and a pixel count of 0, and the metrics still serialise (no NaN)."""
    import json

    from stylize3d.backbones import judge_backbone
    from stylize3d.pipeline import evaluate

    _, scene, cams = tiny_builtin
    cache = BlendCache.build(scene, cams, torch.tensor(BACKGROUND))
    one = torch.zeros(scene.num_gaussians, dtype=torch.bool)
    one[int(torch.nonzero(scene.labels == 0)[0, 0])] = True
    style = torch.rand(32, 32, 3, generator=torch.Generator().manual_seed(0))
    net = load_backbone("filterbank")
    m, per_object, _, _ = evaluate(cache, cams, scene, scene, [StyleTarget("speck", one, [style])], net,
                                   judge_backbone(net.name), StylizeConfig())
    assert m["consistency_short_rmse"] is None and "no pixel of the selection" in m["unmeasured"]["consistency_short_rmse"]
    assert m["nnfm_after"] is None and "16 pixels" in m["unmeasured"]["nnfm_after"]
    assert m["pixels"]["consistency_short_rmse"] == 0 and m["pixels"]["leakage"] > 0
    assert m["untouched_max_abs_diff"] == 0.0 and per_object[0]["unmeasured"]
    json.dumps(m, allow_nan=False)
