"""The command line end to end: exports, manifest, and a clear error with no partial output for bad input."""

import json

import numpy as np
import pytest
from PIL import Image

from app.cli import main

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
        assert m["metrics"]["pixels"][key if key.startswith(("consistency", "nnfm")) else "leakage"] > 100, key
    # appearance-only: every pixel no selected Gaussian reaches is bit-identical (the engine's promise) ...
    assert m["metrics"]["untouched_psnr_db"] == 100.0 and m["metrics"]["untouched_max_abs_diff"] == 0.0
    assert m["metrics"]["pixels"]["untouched"] > 0.5 * m["num_views"] * 64 * 64
    # ... while the selection's halo over its surroundings is counted as leakage, and is small
    assert 30 <= m["metrics"]["leakage_psnr_db"] < 100 and m["metrics"]["unmeasured"] == {}
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


def test_cli_errors_are_caught_before_the_work(tmp_path, out, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    base = ["stylize", "--object", "cube", "--style", STYLE]
    _fails(base + ["--out", str(blocker / "run")], capsys, out, "is a file, not a folder")
    for flag, value in (("--lr", "nan"), ("--style-weight", "inf"), ("--content-weight", "-inf")):
        _fails(base + [flag, value, "--out", str(out)], capsys, out, "finite number")
    _fails(base + ["--content-weight", "1e308", "--out", str(out)], capsys, out, "content weight must be")
    _fails(base + ["--seed", str(2**70), "--out", str(out)], capsys, out, "seed must be")
    _fails(["stylize", "--object", "cube", "--style", str(tmp_path), "--out", str(out)], capsys, out,
           "is a folder, not an image")
    _fails(["stylize", "--click", "0,5000,5", "--style", STYLE, "--out", str(out)], capsys, out,
           "outside the 192x192 views")
    tiny = tmp_path / "dot.png"
    Image.new("RGB", (1, 1)).save(tiny)
    _fails(["stylize", "--object", "cube", "--style", str(tiny), "--out", str(out)], capsys, out, "dot.png is 1x1")
    rec_out = tmp_path / "rec.ply"
    assert main(["reconstruct", "--data", str(tmp_path), "--out", str(rec_out), "--device", "tpu"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("pocket-studio: error:") and "unknown device 'tpu'" in err
    assert main(["reconstruct", "--data", str(tmp_path), "--out", str(blocker / "x.ply")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_every_failure_ends_with_one_error_line(capsys):
    assert main(["stylize", "--out", "x", "--bogus"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("pocket-studio: error:") and "--bogus" in last


def test_negative_box_corner_as_written_in_the_readme(builtin_dir, out, capsys):
    argv = ["stylize", "--box", "-1,-1,0,1,1,2", "--style", STYLE, "--iters", "1", "--size", "32", "--no-video",
            "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    m = json.loads((out / "manifest.json").read_text())
    assert m["objects"][0]["name"] == "box(-1,-1,0,1,1,2)" and m["objects"][0]["gaussians"] > 0


def test_huge_style_image_is_shrunk_on_load(tmp_path):
    from stylize3d.stylize import STYLE_MAX_SIDE, load_style

    big = tmp_path / "big.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (3000, 4000, 3), dtype=np.uint8)).save(big)
    img = load_style(big)
    assert max(img.shape[:2]) == STYLE_MAX_SIDE and img.shape[1] > img.shape[0]
