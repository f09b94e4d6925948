"""The command line end to end: exports, manifest, and a clear error with no partial output for bad input."""

import json

import numpy as np
import pytest
from PIL import Image

from stylize3d.cli import main

STYLE = "assets/styles/mosaic.png"


@pytest.fixture
def out(tmp_path):
    return tmp_path / "run"


def _fails(argv, capsys, out, match):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error" in err and match in err, err
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*")), "temp output left behind"


def test_scene_objects_json(builtin_dir, capsys):
    assert main(["scene", "objects", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    names = {o["name"] for o in listed["objects"]}
    assert {"cube", "sphere", "torus", "cylinder", "cone"} <= names
    assert all(isinstance(o["id"], int) for o in listed["objects"])


def test_stylize_two_objects_end_to_end(builtin_dir, out, capsys):
    argv = ["stylize", "--object", "cube", "--style", STYLE, "--object", "sphere", "--style",
            "assets/styles/waves.png", "--iters", "3", "--size", "64", "--out", str(out)]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "manifest.json", "orbit.mp4", "renders",
                                                     "stylized.ply"]
    m = json.loads((out / "manifest.json").read_text())
    assert m["backbone"] and [o["name"] for o in m["objects"]] == ["cube", "sphere"]
    assert m["styles"] == ["mosaic.png", "waves.png"]
    for key in ("leakage_psnr_db", "consistency_short_rmse", "consistency_long_rmse", "nnfm_before",
                "nnfm_after"):
        assert np.isfinite(m["metrics"][key]), key
    assert m["metrics"]["leakage_psnr_db"] >= 40
    assert m["timings"]["total_s"] > 0
    assert len(list((out / "renders").glob("*.png"))) == m["num_views"] >= 40
    assert (out / "orbit.mp4").stat().st_size > 1000
    # a second run into the same folder is refused without --overwrite
    assert main(argv) == 2 and "not empty" in capsys.readouterr().err


def test_corrupt_style(tmp_path, out, capsys):
    bad = tmp_path / "style.png"
    bad.write_text("this is not an image")
    _fails(["stylize", "--object", "cube", "--style", str(bad), "--out", str(out)], capsys, out, "not a readable image")


def test_huge_style_image(tmp_path, out, capsys):
    huge = tmp_path / "huge.png"
    Image.new("1", (8000, 7000)).save(huge)  # 56 MP, a small file
    _fails(["stylize", "--object", "cube", "--style", str(huge), "--out", str(out)], capsys, out, "over the limit")


def test_truncated_ply(tmp_path, out, capsys, tiny_builtin):
    from stylize3d.ply import write_ply

    path = tmp_path / "scene.ply"
    write_ply(path, tiny_builtin[1])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _fails(["stylize", "--scene", str(path), "--object", "cube", "--style", STYLE, "--out", str(out)], capsys, out,
           "scene.ply")


def test_nan_ply(tmp_path, out, capsys, tiny_builtin):
    from stylize3d.ply import write_ply

    scene = tiny_builtin[1].clone()
    path = tmp_path / "nan.ply"
    write_ply(path, scene)
    raw = bytearray(path.read_bytes())
    header_end = raw.index(b"end_header\n") + len(b"end_header\n")
    raw[header_end:header_end + 4] = np.array([np.nan], np.float32).tobytes()
    path.write_bytes(bytes(raw))
    _fails(["stylize", "--scene", str(path), "--object", "cube", "--style", STYLE, "--out", str(out)], capsys, out,
           "NaN")


def test_malformed_transforms(tmp_path, out, capsys, tiny_builtin):
    from stylize3d.ply import write_ply

    ds = tmp_path / "dataset"
    ds.mkdir()
    write_ply(ds / "scene.ply", tiny_builtin[1])
    (ds / "transforms.json").write_text('{"fl_x": 50, "frames": [')
    _fails(["stylize", "--scene", str(ds), "--object", "cube", "--style", STYLE, "--out", str(out)], capsys, out,
           "transforms.json")


def test_unknown_object(builtin_dir, out, capsys):
    _fails(["stylize", "--object", "teapot", "--style", STYLE, "--out", str(out)], capsys, out, "unknown object")


def test_empty_box(builtin_dir, out, capsys):
    _fails(["stylize", "--box", "10,10,10,11,11,11", "--style", STYLE, "--out", str(out)], capsys, out,
           "contains no Gaussians")


def test_style_without_object(out, capsys):
    _fails(["stylize", "--style", STYLE, "--out", str(out)], capsys, out, "before its style")


def _tiny_run(scene_arg, out, extra=()):
    return main(["stylize", "--scene", str(scene_arg), *extra, "--style", STYLE, "--iters", "2", "--size", "48",
                 "--no-video", "--out", str(out)])


def test_bare_ply_gets_orbit_views(tmp_path, out, tiny_builtin):
    """A .ply from any 3DGS tool, no cameras: views are placed on an orbit around its bounds."""
    from stylize3d.ply import write_ply

    path = tmp_path / "any.ply"
    write_ply(path, tiny_builtin[1])
    assert _tiny_run(path, out, ["--object", "torus"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["num_views"] >= 40 and m["metrics"]["leakage_psnr_db"] >= 40


def test_dataset_folder_labels_by_voting(tmp_path, out, tiny_builtin):
    """A nerfstudio dataset with instance masks and unlabelled Gaussians: labels come from multi-view voting."""
    from stylize3d.builtin_scene import BuiltinSceneConfig, write_builtin_scene
    from stylize3d.ply import read_ply, write_ply

    from .conftest import TINY

    ds = tmp_path / "captured"
    write_builtin_scene(ds, BuiltinSceneConfig(**TINY))
    scene = read_ply(ds / "scene.ply")
    scene.labels.zero_()
    scene.object_names = {0: "background"}
    write_ply(ds / "scene.ply", scene)
    assert _tiny_run(ds, out, ["--object", "cone"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["objects"][0]["name"] == "cone" and m["objects"][0]["gaussians"] > 50
