"""Loading nerfstudio splatfacto runs: config.yml parsed safely, checkpoints read weights-only and checked; our
.ply layout against nerfstudio's own exporter."""

import copy
import shutil
from pathlib import Path

import nerfstudio  # noqa: E402,F401 - declared dependency: a failed import fails the suite
import pytest
import torch
import yaml

from stylize3d.gaussians import SH_C0, GaussianScene
from stylize3d.nerfstudio_run import (
    find_checkpoint,
    load_splatfacto_run,
    pipeline_state_from_scene,
    read_run_config,
    read_splatfacto_run,
    save_splatfacto_checkpoint,
)


def nerfstudio_config(method: str = "splatfacto", data: Path | None = None, sh_degree: int = 3) -> str:
    """config.yml exactly as ns-train writes it: yaml.dump of nerfstudio's own TrainerConfig."""
    from nerfstudio.configs.method_configs import method_configs

    cfg = copy.deepcopy(method_configs[method])
    cfg.pipeline.datamanager.data = data or Path("/datasets/scene")
    if hasattr(cfg.pipeline.model, "sh_degree"):
        cfg.pipeline.model.sh_degree = sh_degree
    return yaml.dump(cfg)


def realistic_checkpoint(scene: GaussianScene, path: Path, step: int) -> None:
    """What Trainer.save_checkpoint stores: pipeline (with LPIPS and SSIM entries), Adam and scheduler state, scaler."""
    pipeline = {k: v for k, v in pipeline_state_from_scene(scene, labels=False).items()}
    pipeline["_model.device_indicator_param"] = torch.empty(0)
    pipeline["_model.lpips.net.scaling_layer.shift"] = torch.zeros(1, 3, 1, 1)
    pipeline["_model.ssim.win"] = torch.ones(3, 1, 1, 11)
    p = torch.nn.Parameter(pipeline["_model.gauss_params.means"].clone())
    opt = torch.optim.Adam([p], lr=1e-3, eps=1e-15)
    p.grad = torch.ones_like(p)
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 ** s)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": step, "pipeline": pipeline, "optimizers": {"means": opt.state_dict()},
                "schedulers": {"means": sched.state_dict()}, "scalers": scaler.state_dict()}, path)


@pytest.fixture()
def run_dir(tmp_path, tiny_builtin):
    _, scene, _ = tiny_builtin
    run = tmp_path / "outputs" / "scene" / "splatfacto" / "2024-01-01_000000"
    run.mkdir(parents=True)
    (run / "config.yml").write_text(nerfstudio_config())
    realistic_checkpoint(scene, run / "nerfstudio_models" / "step-000000100.ckpt", 100)
    return run


def assert_same(a: GaussianScene, b: GaussianScene) -> None:
    for k in ("means", "scales", "quats", "opacities", "sh0", "shN"):
        torch.testing.assert_close(getattr(a, k), getattr(b, k), atol=1e-6, rtol=0, msg=k)


def test_round_trip_from_every_kind_of_path(run_dir, tiny_builtin):
    _, scene, _ = tiny_builtin
    for path in (run_dir, run_dir / "config.yml", run_dir / "nerfstudio_models",
                 run_dir / "nerfstudio_models" / "step-000000100.ckpt"):
        loaded = load_splatfacto_run(path)
        assert_same(loaded, scene)
        assert loaded.sh_degree == 3 and not loaded.labels.any()  # splatfacto runs have no labels
    run = read_splatfacto_run(run_dir)
    assert run.step == 100 and run.config.method_name == "splatfacto"
    assert run.config.data == Path("/datasets/scene") and run.config.sh_degree == 3
    assert run.dataparser_transform is None


def test_latest_or_chosen_step(run_dir, tiny_builtin):
    _, scene, _ = tiny_builtin
    later = scene.clone()
    later.sh0 += 1.0
    realistic_checkpoint(later, run_dir / "nerfstudio_models" / "step-000000200.ckpt", 200)
    assert find_checkpoint(run_dir / "nerfstudio_models").name == "step-000000200.ckpt"
    assert_same(load_splatfacto_run(run_dir), later)
    assert_same(load_splatfacto_run(run_dir, step=100), scene)
    with pytest.raises(ValueError, match="no checkpoint for step 300"):
        load_splatfacto_run(run_dir, step=300)


def test_labels_and_names_travel_in_the_checkpoint(tmp_path, tiny_builtin):
    _, scene, _ = tiny_builtin
    (tmp_path / "config.yml").write_text(nerfstudio_config())
    save_splatfacto_checkpoint(scene, tmp_path / "nerfstudio_models" / "step-000000001.ckpt", 1)
    loaded = load_splatfacto_run(tmp_path)
    assert torch.equal(loaded.labels, scene.labels) and loaded.object_names == scene.object_names


def test_colour_only_runs_store_logit_rgb(tmp_path, tiny_builtin):
    _, scene, _ = tiny_builtin
    (tmp_path / "config.yml").write_text(nerfstudio_config(sh_degree=0))
    rgb = torch.rand(scene.num_gaussians, 3) * 0.8 + 0.1
    flat = GaussianScene(scene.means, scene.scales, scene.quats, scene.opacities, scene.sh0,
                         torch.zeros(scene.num_gaussians, 0, 3))
    state = pipeline_state_from_scene(flat, labels=False)
    state["_model.gauss_params.features_dc"] = torch.logit(rgb)
    (tmp_path / "nerfstudio_models").mkdir()
    torch.save({"step": 5, "pipeline": state}, tmp_path / "nerfstudio_models" / "step-000000005.ckpt")
    loaded = load_splatfacto_run(tmp_path)
    torch.testing.assert_close(loaded.sh0[:, 0] * SH_C0 + 0.5, rgb, atol=1e-6, rtol=0)


def test_python_tags_are_read_as_plain_data(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "config.yml").write_text(
        "!!python/object:nerfstudio.engine.trainer.TrainerConfig\n"
        f"evil: !!python/object/apply:os.system ['touch {marker}']\n"
        "method_name: splatfacto\n"
        "data: !!python/object/apply:pathlib.PosixPath [/, data, scene]\n"
        "output_dir: !!python/object/apply:pathlib.PosixPath\n  args: [outputs]\n"
        "_target: !!python/name:nerfstudio.engine.trainer.Trainer ''\n")
    cfg = read_run_config(tmp_path / "config.yml")
    assert not marker.exists()
    assert cfg.method_name == "splatfacto" and cfg.data == Path("/data/scene") and cfg.output_dir == Path("outputs")
    assert cfg.raw["evil"] == [f"touch {marker}"] and cfg.raw["_target"] == "nerfstudio.engine.trainer.Trainer"


@pytest.mark.parametrize("text, match", [
    ("method_name: [unclosed\n", "is not valid YAML"),
    ("- just\n- a list\n", "top level is list"),
    ("pipeline: {}\n", "no 'method_name'"),
    ("method_name: splatfacto\npipeline: {model: {sh_degree: 7}}\n", "sh_degree must be an integer in 0..3"),
    ("method_name: splatfacto\nrelative_model_dir: ../../elsewhere\n", "must be a relative path inside the run"),
])
def test_malformed_config_names_the_file(tmp_path, text, match):
    (tmp_path / "config.yml").write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        load_splatfacto_run(tmp_path)
    assert "config.yml" in str(err.value)


def test_method_that_is_not_splatfacto(tmp_path):
    (tmp_path / "config.yml").write_text(nerfstudio_config("nerfacto"))
    with pytest.raises(ValueError, match=r"config.yml: method 'nerfacto' is not a Gaussian-splatting"):
        load_splatfacto_run(tmp_path)


def test_missing_checkpoint(run_dir, tmp_path):
    shutil.rmtree(run_dir / "nerfstudio_models")
    with pytest.raises(ValueError, match="nerfstudio_models: checkpoint folder not found"):
        load_splatfacto_run(run_dir)
    (run_dir / "nerfstudio_models").mkdir()
    with pytest.raises(ValueError, match="nerfstudio_models: no step-\\*.ckpt"):
        load_splatfacto_run(run_dir)
    with pytest.raises(ValueError, match="no such nerfstudio run"):
        load_splatfacto_run(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="not a nerfstudio run"):
        load_splatfacto_run(tmp_path)


def _corrupt(run_dir: Path, edit) -> Path:
    path = run_dir / "nerfstudio_models" / "step-000000100.ckpt"
    state = torch.load(path, weights_only=True)
    edit(state["pipeline"])
    torch.save(state, path)
    return path


@pytest.mark.parametrize("edit, match", [
    (lambda p: p.pop("_model.gauss_params.features_rest"), "missing _model.gauss_params.features_rest"),
    (lambda p: p.update({"_model.gauss_params.scales": p["_model.gauss_params.scales"][:-1]}),
     r"gauss_params.scales has shape \(\d+, 3\), expected"),
    (lambda p: p.update({"_model.gauss_params.opacities": p["_model.gauss_params.opacities"][:-2]}),
     "gauss_params.opacities has shape"),
    (lambda p: p.update({"_model.gauss_params.features_rest": p["_model.gauss_params.features_rest"][:, :5]}),
     "features_rest: 6 SH coefficients per channel is not"),
    (lambda p: p.update({"_model.gauss_params.features_rest": p["_model.gauss_params.features_rest"][:, :3]}),
     r"degree 1\) but the config says sh_degree 3"),
    (lambda p: p.update({"_model.gauss_params.quats": p["_model.gauss_params.quats"].long()}),
     "quats is not a floating-point tensor"),
])
def test_mismatched_checkpoint_names_the_file(run_dir, edit, match):
    path = _corrupt(run_dir, edit)
    with pytest.raises(ValueError, match=match) as err:
        load_splatfacto_run(run_dir)
    assert str(path) in str(err.value)


def test_non_finite_checkpoint(run_dir):
    _corrupt(run_dir, lambda p: p["_model.gauss_params.means"].__setitem__((0, 0), float("nan")))
    with pytest.raises(ValueError, match="NaN/inf values in 'means'"):
        load_splatfacto_run(run_dir)


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/pocket_studio_pwned_by_ckpt"),))


def test_checkpoint_with_python_objects_is_refused_unexecuted(run_dir):
    marker = Path("/tmp/pocket_studio_pwned_by_ckpt")
    marker.unlink(missing_ok=True)
    path = run_dir / "nerfstudio_models" / "step-000000100.ckpt"
    torch.save({"step": 1, "pipeline": {}, "extra": _Payload()}, path)
    with pytest.raises(ValueError, match="is not a readable nerfstudio checkpoint"):
        load_splatfacto_run(run_dir)
    assert not marker.exists()
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="step-000000100.ckpt is not a readable nerfstudio checkpoint"):
        load_splatfacto_run(run_dir)
    torch.save({"step": 1}, path)
    with pytest.raises(ValueError, match="no 'pipeline' state dict"):
        load_splatfacto_run(run_dir)


def test_dataparser_transform_is_read(run_dir):
    (run_dir / "dataparser_transforms.json").write_text(
        '{"transform": [[1, 0, 0, 0.5], [0, 1, 0, 0], [0, 0, 1, 0]], "scale": 0.25}')
    run = read_splatfacto_run(run_dir)
    assert run.dataparser_scale == 0.25 and run.dataparser_transform[0, 3] == 0.5
    (run_dir / "dataparser_transforms.json").write_text('{"transform": [[1, 0]], "scale": 1}')
    with pytest.raises(ValueError, match="dataparser_transforms.json: transform must be"):
        read_splatfacto_run(run_dir)


def test_dataset_with_a_missing_image_names_the_file(tmp_path):
    from stylize3d.builtin_scene import BuiltinSceneConfig, write_builtin_scene
    from stylize3d.nerfstudio_data import read_dataset

    write_builtin_scene(tmp_path / "d", BuiltinSceneConfig(points_per_object=120, ground_points=256, num_views=12,
                                                           image_size=48))
    (tmp_path / "d" / "images" / "frame_00003.png").unlink()
    with pytest.raises(ValueError, match=r"transforms.json: frames\[3\].file_path = 'images/frame_00003.png': file"):
        read_dataset(tmp_path / "d")


# ----------------------------------------------------------------------------------------------- .ply layout


def test_our_ply_has_nerfstudio_exporters_layout(tmp_path, tiny_builtin, monkeypatch):
    """Export the same Gaussians with nerfstudio's own ``ns-export gaussian-splat`` code and with ours: same
    properties in the same order (ours adds ``label`` at the end), and each reads the other's file."""
    import nerfstudio.scripts.exporter as exporter
    import plyfile
    from nerfstudio.data.scene_box import SceneBox

    from stylize3d.nerfstudio_plugin import PocketStylizeModelConfig
    from stylize3d.ply import read_ply, write_ply

    _, scene, _ = tiny_builtin
    model = PocketStylizeModelConfig(random_init=True, num_random=16).setup(
        scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=1, metadata={},
        device="cpu", grad_scaler=None)
    model.set_scene(scene)
    pipeline = type("P", (), {"model": model})()
    monkeypatch.setattr(exporter, "eval_setup", lambda *a, **k: (None, pipeline, None, None))
    exporter.ExportGaussianSplat(load_config=tmp_path / "config.yml", output_dir=tmp_path).main()
    theirs = plyfile.PlyData.read(str(tmp_path / "splat.ply"))["vertex"]
    ours_path = write_ply(tmp_path / "ours.ply", scene)
    ours = plyfile.PlyData.read(str(ours_path))["vertex"]
    names_theirs = [p.name for p in theirs.properties]
    names_ours = [p.name for p in ours.properties]
    assert names_theirs[:6] == ["x", "y", "z", "nx", "ny", "nz"] and len(names_theirs) == 62
    assert names_ours == names_theirs + ["label"]
    assert all(p.val_dtype in ("f4", "float32") for p in ours.properties[:-1])
    assert_same(read_ply(tmp_path / "splat.ply"), scene)  # f_rest channel-major, as the exporter writes it


def test_a_splatfacto_run_is_a_scene_for_the_command_line(run_dir, tmp_path, tiny_builtin):
    """`pocket-studio stylize --scene RUN_DIR --box ...`: an unlabelled run is selected in 3D and stylized."""
    import json

    from app.cli import main

    _, scene, _ = tiny_builtin
    cube = scene.means[scene.labels == scene.object_id("cube")]
    lo, hi = (cube.min(0).values - 0.02).tolist(), (cube.max(0).values + 0.02).tolist()
    lo[2] = 0.01
    out = tmp_path / "styled"
    argv = ["stylize", "--scene", str(run_dir), "--box", ",".join(f"{v:.3f}" for v in lo + hi), "--style",
            "assets/styles/dots.png", "--iters", "2", "--size", "48", "--no-video", "--out", str(out)]
    assert main(argv) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["scene"] == str(run_dir) and m["num_views"] >= 40
    assert 0.8 * len(cube) <= m["objects"][0]["gaussians"] <= len(cube)


def test_checkpoints_with_numpy_scalars_load(tmp_path, tiny_builtin):
    """Real nerfstudio checkpoints (seen on a GPU run) pickle numpy scalars next to the tensors."""
    import numpy as np

    _, scene, _ = tiny_builtin
    path = tmp_path / "step-000000499.ckpt"
    torch.save({"step": np.int64(499), "pipeline": pipeline_state_from_scene(scene, labels=False),
                "scalers": {"scale": np.float32(65536.0)}}, path)
    from stylize3d.nerfstudio_run import load_checkpoint_state, scene_from_pipeline_state

    state = load_checkpoint_state(path)
    assert int(state["step"]) == 499
    assert_same(scene_from_pipeline_state(state["pipeline"], str(path)), scene)
