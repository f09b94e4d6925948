import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from stylize3d import nerfstudio_data
from stylize3d.cameras import Cameras, orbit_cameras
from stylize3d.nerfstudio_data import MASK_KEY, read_dataset, write_dataset

W, H, C = 24, 16, 4


def _data(seed: int = 0, max_id: int = 3):
    rng = np.random.default_rng(seed)
    cams = orbit_cameras(torch.tensor([0.5, -1.0, 0.3]), 3.7, C, W, H, elevation_deg=30, start_deg=10)
    images = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(C)]
    masks = [rng.integers(0, max_id + 1, (H, W)) for _ in range(C)]
    depths = [rng.uniform(0.3, 9.0, (H, W)).astype(np.float32) for _ in range(C)]
    depths[0][0, :3] = [np.nan, np.inf, 70.0]  # unknown / beyond 16-bit millimetres -> stored as 0
    names = {i: f"object {i}" for i in range(1, max_id + 1)} | {0: "background"}
    return cams, images, masks, depths, names


@pytest.fixture
def dataset(tmp_path):
    cams, images, masks, depths, names = _data()
    root = write_dataset(tmp_path / "ds", cams, images, masks, depths, names)
    return root, (cams, images, masks, depths, names)


def _edit(root, fn):
    path = root / "transforms.json"
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


def _fails(root, pattern, **kw):
    with pytest.raises(ValueError, match=pattern) as err:
        read_dataset(root, **kw)
    return str(err.value)


def test_roundtrip(dataset):
    root, (cams, images, masks, depths, names) = dataset
    ds = read_dataset(root)
    assert len(ds) == C and (ds.cameras.width, ds.cameras.height) == (W, H)
    assert torch.allclose(ds.cameras.viewmats, cams.viewmats, atol=1e-6, rtol=0)
    assert torch.allclose(ds.cameras.Ks, cams.Ks, atol=1e-6, rtol=0)
    for i in range(C):
        assert ds.images[i].shape == (H, W, 3) and ds.images[i].dtype == torch.float32
        assert torch.equal(ds.images[i], torch.from_numpy(images[i]).float() / 255)
        assert ds.masks[i].dtype == torch.long and torch.equal(ds.masks[i], torch.from_numpy(masks[i]))
        valid = np.isfinite(depths[i]) & (depths[i] < 65.5)
        err = (ds.depths[i].numpy() - depths[i])[valid]
        assert np.abs(err).max() <= 0.0005 + 1e-6  # millimetre PNGs: within half a millimetre
        assert (ds.depths[i].numpy()[~valid] == 0).all()
    assert ds.depths[0][0, :3].tolist() == [0.0, 0.0, 0.0]
    assert ds.object_names == names
    assert ds.image_paths[2] == (root / "images" / "frame_00002.png").resolve()

    meta = json.loads((root / "transforms.json").read_text())
    assert meta["camera_model"] == "OPENCV" and meta["w"] == W and meta["h"] == H
    assert meta["depth_unit_scale_factor"] == 0.001 and meta["object_names"]["1"] == "object 1"
    f0 = meta["frames"][0]
    assert f0["file_path"] == "images/frame_00000.png" and f0[MASK_KEY] == "masks/frame_00000.png"
    assert f0["depth_file_path"] == "depths/frame_00000.png" and "mask_path" not in f0
    assert np.allclose(f0["transform_matrix"], cams.to_opengl_c2w()[0].numpy(), atol=1e-5)
    assert Image.open(root / "depths" / "frame_00000.png").mode.startswith("I")  # 16-bit
    assert Image.open(root / "masks" / "frame_00000.png").mode == "L"  # ids < 256: 8-bit
    assert sorted(p.name for p in root.parent.iterdir()) == ["ds"]  # no temp folder left


def test_nerfstudio_parser_reads_our_dataset(dataset):
    """The layout is what ns-train reads: same poses (OpenGL c2w), intrinsics and depth files."""
    import nerfstudio.data.dataparsers.nerfstudio_dataparser as parser_mod
    root, (cams, *_rest) = dataset
    cfg = parser_mod.NerfstudioDataParserConfig(data=root, orientation_method="none", center_method="none",
                                                auto_scale_poses=False, eval_mode="all")
    out = cfg.setup().get_dataparser_outputs("train")
    assert len(out.image_filenames) == C
    c2w = cams.to_opengl_c2w()[:, :3]
    assert torch.allclose(out.cameras.camera_to_worlds, c2w, atol=1e-5)
    assert torch.allclose(out.cameras.fx[:, 0], cams.Ks[:, 0, 0]) and torch.allclose(out.cameras.cy[:, 0], cams.Ks[:, 1, 2])
    assert int(out.cameras.width[0]) == W and int(out.cameras.height[0]) == H
    assert len(out.metadata["depth_filenames"]) == C and out.mask_filenames is None


def test_sixteen_bit_masks_and_per_frame_intrinsics(tmp_path):
    cams, images, masks, _, names = _data(seed=1, max_id=300)
    Ks = cams.Ks.clone()
    Ks[1, 0, 0] *= 1.5
    Ks[2, 1, 2] += 2.25
    cams = Cameras(cams.viewmats, Ks, W, H)
    root = write_dataset(tmp_path / "ds", cams, images, masks, object_names=names)
    meta = json.loads((root / "transforms.json").read_text())
    assert "fl_x" not in meta and meta["frames"][1]["fl_x"] == pytest.approx(float(Ks[1, 0, 0]))
    assert "depth_unit_scale_factor" not in meta
    ds = read_dataset(root)
    assert torch.allclose(ds.cameras.Ks, Ks, atol=1e-6, rtol=0)
    assert all(torch.equal(m, torch.from_numpy(e)) for m, e in zip(ds.masks, masks))
    assert ds.masks[0].max() > 255 and ds.depths is None


def test_downscale(dataset, monkeypatch):
    root, (cams, images, masks, _, _) = dataset
    ds = read_dataset(root, downscale_to=12)
    assert (ds.cameras.width, ds.cameras.height) == (12, 8)
    assert torch.allclose(ds.cameras.Ks[:, :2], cams.Ks[:, :2] / 2, atol=1e-6)
    assert ds.images[0].shape == (8, 12, 3) and ds.masks[0].shape == (8, 12) and ds.depths[0].shape == (8, 12)
    assert ds.masks[0].dtype == torch.long and set(ds.masks[0].unique().tolist()) <= {0, 1, 2, 3}
    pil = np.asarray(Image.fromarray(images[1]).resize((12, 8), Image.Resampling.BILINEAR))
    assert np.abs(ds.images[1].numpy() * 255 - pil).max() <= 1.0  # PIL antialiased bilinear (8-bit fixed point)
    assert read_dataset(root, downscale_to=100).cameras.width == W  # never enlarges
    with pytest.raises(ValueError, match="downscale_to"):
        read_dataset(root, downscale_to=0)
    monkeypatch.setattr(nerfstudio_data, "MAX_TOTAL_PIXELS", C * 12 * 8)
    assert read_dataset(root, downscale_to=12).cameras.width == 12
    _fails(root, r"4 frames of 24x16 are over 384 pixels in total; pass a smaller downscale_to")


def test_external_dataset_variants(dataset):
    """nerfstudio's own binary mask_path, per-frame w/h, fl_y/cx/cy defaults, .npy depth, applied_transform."""
    root, (cams, *_rest) = dataset
    np.save(root / "depths" / "d0.npy", np.full((H, W), 2500.0, dtype=np.float32))

    def edit(meta):
        meta["applied_transform"] = [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, 0]]
        meta.pop("object_names")
        for k in ("fl_y", "cx", "cy", "w", "h"):
            meta.pop(k)
        for f in meta["frames"]:
            f["mask_path"] = f.pop(MASK_KEY)
            f["w"], f["h"] = W, H
            f["file_path"] = "./" + f["file_path"]
        meta["frames"][0]["depth_file_path"] = "depths/d0.npy"

    _edit(root, edit)
    ds = read_dataset(root)
    fx = float(cams.Ks[0, 0, 0])
    assert torch.allclose(ds.cameras.Ks[0], torch.tensor([[fx, 0, W / 2], [0, fx, H / 2], [0, 0, 1]]), atol=1e-6)
    assert ds.masks is not None and ds.object_names is None
    assert torch.allclose(ds.depths[0], torch.full((H, W), 2.5))


@pytest.mark.parametrize("edit, pattern", [
    (lambda m: m.pop("fl_x"), r"missing field 'fl_x'"),
    (lambda m: m.pop("w"), r"missing field 'w'"),
    (lambda m: m.update(h=-3), r"h must be positive"),
    (lambda m: m.update(fl_x="500"), r"fl_x must be a finite number"),
    (lambda m: m.pop("frames"), r"missing field 'frames'"),
    (lambda m: m.update(frames=[]), r"'frames' is empty"),
    (lambda m: m["frames"][1].pop("transform_matrix"), r"missing field 'frames\[1\].transform_matrix'"),
    (lambda m: m["frames"][2].pop("file_path"), r"missing field 'frames\[2\].file_path'"),
    (lambda m: m["frames"][0].update(transform_matrix=[[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
     r"frames\[0\].transform_matrix must be 4x4, got shape \(3, 3\)"),
    (lambda m: m["frames"][0].update(transform_matrix=[[1, 0, 0, math.nan]] + [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),
     r"frames\[0\].transform_matrix has NaN/inf"),
    (lambda m: m["frames"][0].update(transform_matrix=[["a"] * 4] * 4), r"transform_matrix must be a 4x4 list"),
    (lambda m: m["frames"][0].update(transform_matrix=[[0] * 4] * 3 + [[0, 0, 0, 1]]), r"not an invertible"),
    (lambda m: m["frames"][3].update(file_path="images/missing.png"), r"frames\[3\].file_path = .*file not found"),
    (lambda m: m["frames"][0].update(file_path="../escape.png"), r"escapes the dataset folder"),
    (lambda m: m["frames"][0].update(file_path="images/../../escape.png"), r"escapes the dataset folder"),
    (lambda m: m["frames"][0].update(file_path="/etc/passwd"), r"escapes the dataset folder"),
    (lambda m: m["frames"][0].update(depth_file_path="/etc/passwd"), r"frames\[0\].depth_file_path .*escapes"),
    (lambda m: m["frames"][0].update(file_path=7), r"file_path must be a non-empty relative path"),
    (lambda m: m["frames"][1].pop(MASK_KEY), r"'instance_mask_path' is given for some frames but not frames \[1\]"),
    (lambda m: m["frames"][1].update(w=W * 2), r"different image sizes"),
    (lambda m: m.update(camera_model="OPENCV_FISHEYE"), r"camera_model 'OPENCV_FISHEYE' is not supported"),
    (lambda m: m.update(object_names={"one": "x"}), r"object_names entry"),
])
def test_malformed_transforms(dataset, edit, pattern):
    root, _ = dataset
    (root.parent / "escape.png").write_bytes((root / "images" / "frame_00000.png").read_bytes())
    _edit(root, edit)
    msg = _fails(root, pattern)
    assert "transforms.json" in msg


def test_bad_files(dataset, tmp_path):
    root, _ = dataset
    with pytest.raises(ValueError, match="transforms.json not found"):
        read_dataset(tmp_path / "nowhere")
    (root / "images" / "frame_00001.png").write_text("not an image")
    _fails(root, r"frame_00001.png is not a readable image")
    Image.new("RGB", (W + 1, H)).save(root / "images" / "frame_00001.png")
    _fails(root, r"frames\[1\].file_path frame_00001.png is 25x16, but w x h is 24x16")
    Image.new("RGB", (W, H)).save(root / "images" / "frame_00001.png")
    Image.new("L", (W, H - 1)).save(root / "masks" / "frame_00002.png")
    _fails(root, r"frames\[2\].instance_mask_path frame_00002.png is 24x15")
    Image.new("RGB", (W, H)).save(root / "masks" / "frame_00002.png")
    _fails(root, r"instance mask must be single-channel")
    (root / "transforms.json").write_text('{"frames": [')
    _fails(root, r"transforms.json is not valid JSON")
    (root / "transforms.json").write_text("[1, 2]")
    _fails(root, r"top level must be a JSON object")


def test_symlink_escape_refused(dataset, tmp_path):
    root, _ = dataset
    secret = tmp_path / "secret.png"
    Image.new("RGB", (W, H)).save(secret)
    (root / "images" / "link.png").symlink_to(secret)
    _edit(root, lambda m: m["frames"][0].update(file_path="images/link.png"))
    _fails(root, r"resolves outside the dataset folder")


def test_write_validation_and_overwrite(dataset, tmp_path):
    root, (cams, images, masks, depths, names) = dataset
    with pytest.raises(ValueError, match="not empty"):
        write_dataset(root, cams, images)
    write_dataset(root, cams[:2], images[:2], overwrite=True)
    ds = read_dataset(root)
    assert len(ds) == 2 and ds.masks is None and ds.depths is None and ds.object_names is None
    out = tmp_path / "new"
    with pytest.raises(ValueError, match=r"image 1 has shape \(16, 23, 3\)"):
        write_dataset(out, cams, [images[0], images[1][:, :-1]] + images[2:])
    with pytest.raises(ValueError, match="outside 0..65535"):
        write_dataset(out, cams, images, [m + 70000 for m in masks])
    with pytest.raises(ValueError, match="3 images for 4 cameras"):
        write_dataset(out, cams, images[:3])
    with pytest.raises(ValueError, match=r"depth 0 is float32 \(16, 23\)"):
        write_dataset(out, cams, images, depths=[d[:, :-1] for d in depths])
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
