"""Reconstruction on a tiny built-in dataset: training beats the initialisation on held-out views, densify /
prune edit parameters and Adam moments consistently, mask labels are right, and the CLI is safe on bad input."""

import math

import pytest
import torch

from app.cli import main
from stylize3d.builtin_scene import BuiltinSceneConfig, write_builtin_scene
from stylize3d.cameras import orbit_cameras
from stylize3d.densify import DensifyConfig, DensifyState, densify_and_prune
from stylize3d.nerfstudio_data import read_dataset
from stylize3d.ply import read_ply
from stylize3d.reconstruct import (
    ReconstructConfig,
    focus_point,
    init_params,
    make_optimizers,
    reconstruct,
    split_views,
)

TINY = BuiltinSceneConfig(points_per_object=120, ground_points=256, num_views=12, image_size=48)
FAST = ReconstructConfig(iters=150, size=32, init_points=400, holdout_every=4, eval_every=0,
                         densify=DensifyConfig(start=40, every=40))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("recon") / "tiny"
    write_builtin_scene(root, TINY)
    return root


@pytest.fixture(scope="module")
def trained(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("recon-out") / "scene.ply"
    steps = []
    stats = reconstruct(tiny_dir, out, FAST, progress=lambda s, t, m: steps.append((s, t)))
    return stats, out, steps


def test_training_beats_init_on_held_out_views(trained):
    stats, out, steps = trained
    assert stats["held_out_views"] == 3 and stats["train_views"] == 9
    assert stats["psnr"] > stats["psnr_init"] + 6.0, stats
    assert stats["psnr"] > 22.0, stats
    assert steps[-1] == (150, 150) and len(steps) == 150
    assert read_ply(out).num_gaussians == stats["num_gaussians"] > FAST.init_points  # densification grew it


def test_labels_from_masks_match_ground_truth(trained, tiny_dir):
    from scipy.spatial import cKDTree

    _, out, _ = trained
    scene, gt = read_ply(out), read_ply(tiny_dir / "scene.ply")
    assert scene.object_names == gt.object_names  # names come from the dataset's transforms.json
    _, nn = cKDTree(gt.means.numpy()).query(scene.means.numpy())
    opaque = torch.sigmoid(scene.opacities) > 0.5
    agree = gt.labels[nn] == scene.labels
    assert float(agree[opaque].float().mean()) > 0.9
    assert float(agree.float().mean()) > 0.75
    assert scene.object_id("cube") == 1 and int((scene.labels == 1).sum()) > 10


def test_split_views_holds_out_every_kth():
    assert split_views(48, 8) == ([i for i in range(48) if i % 8], [0, 8, 16, 24, 32, 40])
    assert split_views(5, 0) == ([0, 1, 2, 3, 4], [])


def test_focus_point_of_an_orbit_is_its_centre():
    cams = orbit_cameras(torch.tensor([0.3, -0.2, 0.5]), 4.0, 12, 32, 32, elevation_deg=30.0)
    assert torch.allclose(focus_point(cams), torch.tensor([0.3, -0.2, 0.5]), atol=1e-5)


def test_random_init_without_depth_lies_where_the_cameras_look(tiny_dir):
    data = read_dataset(tiny_dir, downscale_to=32)
    data.depths = None
    cfg = ReconstructConfig(init_points=500, stereo_init=False)
    params, source = init_params(data, list(range(len(data))), cfg, torch.Generator().manual_seed(0),
                                 torch.device("cpu"))
    assert source.startswith("random")
    centre = focus_point(data.cameras)
    dist = (params["means"].detach() - centre).norm(dim=1)
    assert params["means"].shape == (500, 3) and float(dist.max()) < 2.0 and float(dist.mean()) > 0.5
    assert torch.isfinite(params["scales"]).all()


def _hand_made():
    """4 Gaussians: small + high grad (clone), large + high grad (split), low grad (kept), transparent (pruned)."""
    logit = math.log(0.9 / 0.1)
    params = torch.nn.ParameterDict({
        "means": torch.nn.Parameter(torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]])),
        "scales": torch.nn.Parameter(torch.log(torch.tensor([[0.01] * 3, [0.5, 0.2, 0.1], [0.01] * 3, [0.01] * 3]))),
        "quats": torch.nn.Parameter(torch.tensor([[1.0, 0, 0, 0]] * 4)),
        "opacities": torch.nn.Parameter(torch.tensor([logit, logit, logit, math.log(0.001 / 0.999)])),
        "sh0": torch.nn.Parameter(torch.arange(12.0).reshape(4, 1, 3)),
        "shN": torch.nn.Parameter(torch.zeros(4, 3, 3)),
    })
    optimizers = make_optimizers(params, ReconstructConfig(), scale=1.0)
    (params["means"].sum() + sum(p.sum() for k, p in params.items() if k != "means")).backward()
    for opt in optimizers.values():
        opt.step()  # non-zero Adam moments everywhere
    state = DensifyState.zeros(4)
    state.update(torch.tensor([[1e-3, 0.0], [0.0, 1e-3], [1e-6, 0.0], [1e-3, 0.0]]), torch.tensor([3, 3, 3, 3]),
                 width=2, height=2)  # NDC grads: 1e-3, 1e-3, 1e-6, 1e-3
    return params, optimizers, state


def test_densify_clones_small_splits_large_and_prunes_transparent():
    params, optimizers, state = _hand_made()
    before = {k: v.detach().clone() for k, v in params.items()}
    cfg = DensifyConfig(grad_threshold=2e-4, grow_scale3d=0.1, prune_opacity=0.005, prune_scale3d=10.0)
    counts = densify_and_prune(params, optimizers, state, cfg, scene_scale=1.0,
                               generator=torch.Generator().manual_seed(0))
    # 0 cloned, 1 split into 2, 3 cloned then both copies pruned: [0, 2, 0', 1a, 1b]
    assert counts == {"cloned": 2, "split": 1, "pruned": 2, "total": 5}
    assert torch.equal(params["sh0"].detach(), before["sh0"][[0, 2, 0, 1, 1]])
    split_scales = torch.exp(params["scales"].detach()[3:])
    assert torch.allclose(split_scales, torch.exp(before["scales"][[1, 1]]) / 1.6, rtol=1e-5)
    offsets = params["means"].detach()[3:] - before["means"][1]
    assert (offsets.abs() < 0.5 * 4).all() and not torch.allclose(offsets[0], offsets[1])
    assert torch.equal(params["means"].detach()[:3], before["means"][[0, 2, 0]])
    # Adam moments follow their Gaussians; new Gaussians start at zero; optimizers hold the new parameters
    for name, opt in optimizers.items():
        assert opt.param_groups[0]["params"][0] is params[name]
        moments = opt.state[params[name]]["exp_avg"]
        assert moments.shape[0] == 5
        assert (moments[:2] != 0).any() and (moments[2:] == 0).all()
    assert state.grad2d.shape == (5,) and float(state.grad2d.abs().sum()) == 0.0
    loss = sum(p.sum() for p in params.values())
    loss.backward()
    for opt in optimizers.values():
        opt.step()  # still consistent after the surgery


def test_growth_respects_the_gaussian_budget():
    params, optimizers, state = _hand_made()
    cfg = DensifyConfig(grad_threshold=2e-4, grow_scale3d=0.1, prune_opacity=0.0, prune_scale3d=10.0,
                        max_gaussians=5)
    counts = densify_and_prune(params, optimizers, state, cfg, scene_scale=1.0)
    assert counts["cloned"] + counts["split"] == 1 and counts["total"] == 5


def test_should_stop_ends_early_and_still_writes(tiny_dir, tmp_path):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 5

    cfg = ReconstructConfig(iters=100, size=24, init_points=200, holdout_every=4)
    stats = reconstruct(tiny_dir, tmp_path / "s.ply", cfg, should_stop=stop)
    assert stats["iters"] == 5 and stats["stopped_early"] and (tmp_path / "s.ply").is_file()


def test_cli_writes_a_labelled_ply(tiny_dir, tmp_path, capsys):
    out = tmp_path / "cli.ply"
    argv = ["reconstruct", "--data", str(tiny_dir), "--out", str(out), "--iters", "10", "--size", "24",
            "--holdout-every", "4", "--device", "cpu"]
    assert main(argv) == 0
    assert "held-out PSNR" in capsys.readouterr().out
    scene = read_ply(out)
    assert scene.object_id("cube") == 1 and scene.object_id("ground") == 0
    assert len(scene.labels.unique()) >= 5


@pytest.mark.parametrize("case", ["no_transforms", "bad_json", "bad_suffix"])
def test_cli_refuses_bad_input_without_output(tiny_dir, tmp_path, capsys, case):
    data, out = tmp_path / "data", tmp_path / "out" / "scene.ply"
    data.mkdir()
    (data / "images").mkdir()
    if case == "bad_json":
        (data / "transforms.json").write_text("{not json")
    if case == "bad_suffix":
        data, out = tiny_dir, tmp_path / "out" / "scene.txt"
    assert main(["reconstruct", "--data", str(data), "--out", str(out), "--iters", "5"]) == 2
    err = capsys.readouterr().err
    assert "error" in err and {"no_transforms": "transforms.json not found", "bad_json": "not valid JSON",
                               "bad_suffix": "must end in .ply"}[case] in err, err
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))
