"""A scene the project did not make (open3d ray-cast meshes, images only: no depth, no masks, no points):
stereo initialisation, reconstruction, a dataset point cloud, and what the CLI says about a scene without labels."""

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from app.cli import main
from stylize3d.densify import DensifyConfig
from stylize3d.nerfstudio_data import read_dataset
from stylize3d.plane_sweep import neighbour_views, sweep_depth
from stylize3d.reconstruct import ReconstructConfig, focus_point, init_params, reconstruct

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from outside_scene import _meshes, make_outside_scene  # noqa: E402

FAST = ReconstructConfig(iters=300, size=64, init_points=2000, holdout_every=4, eval_every=0,
                         densify=DensifyConfig(start=50, every=50))


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    return make_outside_scene(tmp_path_factory.mktemp("outside") / "data", views=24, size=64)


@pytest.fixture(scope="module")
def outside_points(tmp_path_factory):
    return make_outside_scene(tmp_path_factory.mktemp("outside-pts") / "data", views=8, size=48, points=True)


def test_plane_sweep_depth_lies_on_the_meshes(tmp_path):
    import open3d as o3d

    data = read_dataset(make_outside_scene(tmp_path / "d", views=24, size=96))
    cams = data.cameras
    dist = float((cams.centers - focus_point(cams)).norm(dim=1).median())
    views = list(range(len(data)))
    depth = sweep_depth(data.images, cams, 3, neighbour_views(cams, 3, 4, views), near=0.4 * dist,
                        far=2.0 * dist, background=torch.ones(3))
    valid = depth > 0
    assert 0.3 < float(valid.float().mean()) < 0.9  # the white sky is left unknown
    from stylize3d.cameras import unproject_depth

    pts = unproject_depth(depth, cams.Ks[3], cams.camtoworlds[3])[valid].numpy().astype(np.float32)
    rc = o3d.t.geometry.RaycastingScene()
    for _, mesh in _meshes():
        rc.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
    err = rc.compute_distance(o3d.core.Tensor(pts)).numpy()
    assert np.median(err) < 0.06, f"median distance to the surface {np.median(err):.3f}"


def test_images_only_reconstruction_starts_from_stereo_and_converges(outside, tmp_path):
    """Same steps, same scene: the stereo start converges where random points in a ball stay blurry, and the
    blurry run says so, with what would help."""
    stereo = reconstruct(outside, tmp_path / "stereo.ply", FAST)
    random = reconstruct(outside, tmp_path / "random.ply", replace(FAST, stereo_init=False))
    assert stereo["init"].startswith("plane-sweep stereo") and random["init"].startswith("random")
    assert stereo["psnr"] > 21 and stereo["psnr"] > random["psnr"] + 4, (stereo, random)
    assert "advice" not in stereo
    assert random["psnr"] < 20 and "point cloud" in random["advice"] and "more steps" in random["advice"]


def test_point_cloud_of_the_dataset_seeds_the_gaussians(outside_points):
    data = read_dataset(outside_points, downscale_to=64)
    assert data.points is not None and len(data.points[0]) > 500
    params, source = init_params(data, list(range(len(data))), FAST, torch.Generator().manual_seed(0),
                                 torch.device("cpu"))
    assert source == "the dataset's point cloud (ply_file_path)"
    means = params["means"].detach()
    nearest = (means[:50, None] - data.points[0][None]).norm(dim=-1).min(dim=1).values
    assert float(nearest.max()) < 1e-5  # every initial Gaussian sits on a point of the cloud


def test_a_scene_without_masks_says_so(outside, tmp_path, capsys):
    ply = tmp_path / "scene.ply"
    assert main(["reconstruct", "--data", str(outside), "--out", str(ply), "--iters", "30", "--size", "32"]) == 0
    capsys.readouterr()
    assert main(["scene", "objects", "--scene", str(ply), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [o["name"] for o in listed["objects"]] == ["background"]
    out = tmp_path / "run"
    assert main(["stylize", "--scene", str(ply), "--object", "sphere", "--style", "assets/styles/mosaic.png",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no object labels" in err and "--box" in err and "--click" in err and not out.exists()


def test_a_broken_point_cloud_is_named(outside_points, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(outside_points, data)
    (data / "sparse_pc.ply").write_text("not a point cloud")
    with pytest.raises(ValueError, match="sparse_pc.ply: ply_file_path is not a PLY file"):
        read_dataset(data)
