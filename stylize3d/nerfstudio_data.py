"""nerfstudio datasets: ``transforms.json`` + per-frame images, instance masks and depth maps.

Written in the layout ``ns-train splatfacto --data <root>`` reads (OPENCV camera model, OpenGL camera-to-world
``transform_matrix``, 16-bit millimetre depth PNGs with ``depth_unit_scale_factor``). Our per-object instance
masks go under ``instance_mask_path``, not nerfstudio's ``mask_path``: nerfstudio treats ``mask_path`` as a
binary keep-mask, so object id 0 (background) would silently drop the ground from its training. ``object_names``
is our extension too; nerfstudio ignores unknown keys. A dataset folder may come from a user, so every field,
path and file is checked with an error naming the file and field, and no path may leave the dataset folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np
import torch

from stylize3d.atomic import atomic_output_dir, atomic_write_json
from stylize3d.cameras import Cameras, opengl_c2w_to_viewmat
from stylize3d.images import (
    MAX_PIXELS,
    image_size,
    load_array,
    load_image,
    long_side_size,
    resize_long_side,
    save_png,
)

logger = logging.getLogger(__name__)

TRANSFORMS = "transforms.json"
MASK_KEY = "instance_mask_path"  # object-id masks (ours); nerfstudio's binary "mask_path" is read as a fallback
DEPTH_SCALE = 1e-3  # depth PNGs hold millimetres, like nerfstudio's depth datasets
MAX_JSON_BYTES = 256 << 20
MAX_TOTAL_PIXELS = 400_000_000  # all frames together, after downscaling: ~5 GB as float32 RGB
_PERSPECTIVE_MODELS = {"OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"}
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")


@dataclass
class NerfstudioDataset:
    root: Path
    cameras: Cameras
    image_paths: list[Path]
    images: list[torch.Tensor]  # each [H, W, 3] float32 in [0, 1]
    masks: list[torch.Tensor] | None = None  # each [H, W] int64 object ids
    depths: list[torch.Tensor] | None = None  # each [H, W] float32 metres, 0 = unknown
    object_names: dict[int, str] | None = None
    points: tuple[torch.Tensor, torch.Tensor] | None = None  # (xyz [P, 3], rgb [P, 3]) from ``ply_file_path``

    def __len__(self) -> int:
        return len(self.images)


# ----------------------------------------------------------------------------------------------------- writing


def _c2w_opengl_f64(cameras: Cameras) -> torch.Tensor:
    """[C, 4, 4] as ``Cameras.to_opengl_c2w`` but inverted in float64, so a write/read round trip stays ~1e-7."""
    c2w = torch.linalg.inv(cameras.viewmats.detach().cpu().double())
    c2w[:, :3, 1:3] *= -1  # OpenCV (y down, z forward) -> OpenGL (y up, z backward) camera axes
    return c2w


def _intrinsics(K: torch.Tensor) -> dict[str, float]:
    return {"fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2])}


def _depth_to_mm(depth: np.ndarray, i: int) -> np.ndarray:
    """[H, W] metres -> uint16 millimetres; non-finite, non-positive and > 65.535 m become 0 (unknown)."""
    mm = np.round(np.nan_to_num(depth.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0) * 1000.0)
    far = mm > 65535
    if far.any():
        logger.warning("depth %d: %d pixels beyond 65.535 m stored as unknown (0)", i, int(far.sum()))
    mm[far | (mm < 0)] = 0
    return mm.astype(np.uint16)


def write_dataset(root: str | os.PathLike, cameras: Cameras, images: list, masks: list | None = None,
                  depths: list | None = None, object_names: dict[int, str] | None = None,
                  overwrite: bool = False) -> Path:
    """Write a nerfstudio dataset atomically (a temp sibling folder renamed into place).

    images: uint8 [H, W, 3] (or float in [0, 1]); masks: int [H, W] object ids in 0..65535 (8-bit PNGs when
    all ids < 256, else 16-bit); depths: float32 [H, W] z-depth in metres; sizes must match ``cameras``.
    """
    root = Path(root)
    n, h, w = len(cameras), cameras.height, cameras.width
    for name, items in (("images", images), ("masks", masks), ("depths", depths)):
        if items is not None and len(items) != n:
            raise ValueError(f"write_dataset({root}): {len(items)} {name} for {n} cameras")
    if n == 0:
        raise ValueError(f"write_dataset({root}): no frames")
    Ks = cameras.Ks.detach().cpu().double()
    if (Ks[:, 0, 1] != 0).any():
        raise ValueError(f"write_dataset({root}): skewed intrinsics cannot be stored in transforms.json")
    for i, img in enumerate(images):
        if tuple(img.shape) != (h, w, 3):
            raise ValueError(f"write_dataset({root}): image {i} has shape {tuple(img.shape)}, expected {(h, w, 3)}")
    mask_arrays = None
    if masks is not None:
        mask_arrays = [np.asarray(m.cpu() if isinstance(m, torch.Tensor) else m) for m in masks]
        for i, m in enumerate(mask_arrays):
            if m.shape != (h, w) or not np.issubdtype(m.dtype, np.integer):
                raise ValueError(f"write_dataset({root}): mask {i} is {m.dtype} {m.shape}, expected integer {(h, w)}")
            if m.min() < 0 or m.max() > 65535:
                raise ValueError(f"write_dataset({root}): mask {i} has ids outside 0..65535")
        mask_dtype = np.uint8 if max(int(m.max()) for m in mask_arrays) < 256 else np.uint16
    depth_arrays = None
    if depths is not None:
        depth_arrays = [d.detach().cpu().numpy() if isinstance(d, torch.Tensor) else np.asarray(d) for d in depths]
        for i, d in enumerate(depth_arrays):
            if d.shape != (h, w) or not np.issubdtype(d.dtype, np.floating):
                raise ValueError(f"write_dataset({root}): depth {i} is {d.dtype} {d.shape}, expected float {(h, w)}")
    c2w = _c2w_opengl_f64(cameras)
    if not torch.isfinite(c2w).all():
        raise ValueError(f"write_dataset({root}): camera poses are not invertible / finite")

    same_K = bool((Ks == Ks[0]).all())
    meta: dict = {"camera_model": "OPENCV", **(_intrinsics(Ks[0]) if same_K else {}), "w": w, "h": h,
                  **{k: 0.0 for k in ("k1", "k2", "p1", "p2")}}
    if depth_arrays is not None:
        meta["depth_unit_scale_factor"] = DEPTH_SCALE
    if object_names is not None:
        meta["object_names"] = {str(int(k)): str(v) for k, v in sorted(object_names.items())}
    frames = []
    with atomic_output_dir(root, overwrite=overwrite) as tmp:
        for i in range(n):
            stem = f"frame_{i:05d}.png"
            frame: dict = {"file_path": f"images/{stem}", "transform_matrix": c2w[i].tolist()}
            if not same_K:
                frame.update(_intrinsics(Ks[i]))
            save_png(tmp / "images" / stem, images[i])
            if mask_arrays is not None:
                save_png(tmp / "masks" / stem, mask_arrays[i].astype(mask_dtype))
                frame[MASK_KEY] = f"masks/{stem}"
            if depth_arrays is not None:
                save_png(tmp / "depths" / stem, _depth_to_mm(depth_arrays[i], i))
                frame["depth_file_path"] = f"depths/{stem}"
            frames.append(frame)
        meta["frames"] = frames
        atomic_write_json(tmp / TRANSFORMS, meta)
    logger.info("wrote nerfstudio dataset %s (%d frames, %dx%d)", root, n, w, h)
    return root


# ----------------------------------------------------------------------------------------------------- reading


def _load_meta(root: Path) -> tuple[Path, dict]:
    path = root / TRANSFORMS
    if not path.is_file():
        raise ValueError(f"{root} is not a nerfstudio dataset: {TRANSFORMS} not found")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise ValueError(f"{path} is larger than {MAX_JSON_BYTES >> 20} MB")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: top level must be a JSON object, got {type(meta).__name__}")
    frames = meta.get("frames")
    if not isinstance(frames, list):
        raise ValueError(f"{path}: missing field 'frames' (a list)")
    if not frames:
        raise ValueError(f"{path}: 'frames' is empty")
    if not all(isinstance(f, dict) for f in frames):
        raise ValueError(f"{path}: every entry of 'frames' must be an object")
    return path, meta


def _number(path: Path, where: str, value, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{path}: {where} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{path}: {where} must be positive, got {value!r}")
    return float(value)


def _field(path: Path, meta: dict, frame: dict, i: int, key: str, default=None, positive: bool = False) -> float:
    """Per-frame value if present (nerfstudio allows per-frame intrinsics), else the top-level one."""
    if key in frame:
        return _number(path, f"frames[{i}].{key}", frame[key], positive)
    if key in meta:
        return _number(path, key, meta[key], positive)
    if default is not None:
        return default
    raise ValueError(f"{path}: missing field '{key}' (top level or in frames[{i}])")


def _safe_path(root: Path, path: Path, where: str, value) -> Path:
    """Resolve a dataset-relative path, refusing absolute paths, '..' and symlinks that leave the folder."""
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ValueError(f"{path}: {where} must be a non-empty relative path string, got {value!r}")
    rel = PurePath(value)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"{path}: {where} = {value!r} escapes the dataset folder; refusing it")
    full = (root / rel).resolve()
    if not full.is_relative_to(root.resolve()):
        raise ValueError(f"{path}: {where} = {value!r} resolves outside the dataset folder; refusing it")
    if not full.is_file():
        raise ValueError(f"{path}: {where} = {value!r}: file not found")
    return full


def _pose(path: Path, i: int, value) -> torch.Tensor:
    where = f"frames[{i}].transform_matrix"
    if value is None:
        raise ValueError(f"{path}: missing field '{where}'")
    try:
        m = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {where} must be a 4x4 list of numbers: {e}") from e
    if m.shape != (4, 4):
        raise ValueError(f"{path}: {where} must be 4x4, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{path}: {where} has NaN/inf values")
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-4) or abs(np.linalg.det(m[:3, :3])) < 1e-12:
        raise ValueError(f"{path}: {where} is not an invertible rigid transform (last row {m[3].tolist()})")
    return torch.from_numpy(m)


def _check_size(path: Path, where: str, file: Path, got: tuple[int, int], w: int, h: int) -> None:
    if got != (w, h):
        raise ValueError(f"{path}: {where} {file.name} is {got[0]}x{got[1]}, but w x h is {w}x{h}")


def _load_mask(file: Path) -> torch.Tensor:
    arr = load_array(file)
    if arr.ndim != 2:
        raise ValueError(f"{file}: instance mask must be single-channel, got shape {arr.shape}")
    return torch.from_numpy(arr.astype(np.int64))


def _load_depth(file: Path, scale: float) -> torch.Tensor:
    if file.suffix == ".npy":
        try:
            arr = np.load(file, mmap_mode="r", allow_pickle=False)  # header only until sliced
        except (OSError, ValueError) as e:
            raise ValueError(f"{file} is not a readable .npy depth map: {e}") from e
        if arr.size > MAX_PIXELS:
            raise ValueError(f"{file}: depth map of shape {arr.shape} is over {MAX_PIXELS:,} pixels")
    else:
        arr = load_array(file)
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{file}: depth map must be a single-channel number image, got {arr.dtype} {arr.shape}")
    depth = torch.from_numpy(arr.astype(np.float32) * np.float32(scale))
    return torch.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0)


def _optional_files(path: Path, root: Path, frames: list[dict], keys: tuple[str, ...]) -> tuple[str, list] | None:
    """Per-frame optional files under the first of ``keys`` any frame uses; all frames or none must have it."""
    key = next((k for k in keys if any(k in f for f in frames)), None)
    if key is None:
        return None
    missing = [i for i, f in enumerate(frames) if key not in f]
    if missing:
        raise ValueError(f"{path}: '{key}' is given for some frames but not frames {missing[:5]}; all or none")
    return key, [_safe_path(root, path, f"frames[{i}].{key}", f[key]) for i, f in enumerate(frames)]


def object_names_from_meta(path: Path, value) -> dict[int, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: 'object_names' must be an object {{\"id\": \"name\"}}")
    names = {}
    for k, v in value.items():
        if not (isinstance(k, str) and k.lstrip("-").isdigit()) or not isinstance(v, str):
            raise ValueError(f"{path}: object_names entry {k!r}: {v!r} must map an integer id to a name")
        names[int(k)] = v
    return names


def read_dataset(root: str | os.PathLike, downscale_to: int | None = None) -> NerfstudioDataset:
    """Load a nerfstudio dataset (images eagerly, after every frame's files and sizes were checked).

    ``downscale_to`` shrinks the long side to that many pixels (never enlarges); intrinsics follow.
    """
    root = Path(root)
    if downscale_to is not None and (not isinstance(downscale_to, int) or downscale_to <= 0):
        raise ValueError(f"read_dataset: downscale_to must be a positive int, got {downscale_to!r}")
    path, meta = _load_meta(root)
    frames = meta["frames"]
    model = meta.get("camera_model", "OPENCV")
    if model not in _PERSPECTIVE_MODELS:
        raise ValueError(f"{path}: camera_model {model!r} is not supported (pinhole/OpenCV perspective only)")

    # 1. cameras: per-frame values override top-level ones
    sizes, Ks, poses, distorted = set(), [], [], False
    for i, frame in enumerate(frames):
        w = _field(path, meta, frame, i, "w", positive=True)
        h = _field(path, meta, frame, i, "h", positive=True)
        if w != int(w) or h != int(h):
            raise ValueError(f"{path}: frames[{i}] image size {w}x{h} is not integer")
        w, h = int(w), int(h)
        sizes.add((w, h))
        fx = _field(path, meta, frame, i, "fl_x", positive=True)
        fy = _field(path, meta, frame, i, "fl_y", default=fx, positive=True)
        cx = _field(path, meta, frame, i, "cx", default=w / 2)
        cy = _field(path, meta, frame, i, "cy", default=h / 2)
        Ks.append([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        poses.append(_pose(path, i, frame.get("transform_matrix")))
        distorted |= any(_field(path, meta, frame, i, k, default=0.0) != 0.0 for k in _DISTORTION_KEYS)
    if distorted:
        logger.warning("%s: lens distortion is ignored (pinhole rendering)", path)
    if len(sizes) > 1:
        raise ValueError(f"{path}: frames have different image sizes {sorted(sizes)}; one size per dataset is supported")
    w, h = sizes.pop()
    viewmats = opengl_c2w_to_viewmat(torch.stack(poses)).float()  # [C, 4, 4]
    cameras = Cameras(viewmats, torch.tensor(Ks, dtype=torch.float32), w, h)

    # 2. files: all paths and header sizes checked before any decoding
    image_paths = []
    for i, frame in enumerate(frames):
        if "file_path" not in frame:
            raise ValueError(f"{path}: missing field 'frames[{i}].file_path'")
        file = _safe_path(root, path, f"frames[{i}].file_path", frame["file_path"])
        _check_size(path, f"frames[{i}].file_path", file, image_size(file), w, h)
        image_paths.append(file)
    mask_files = _optional_files(path, root, frames, (MASK_KEY, "mask_path"))
    depth_files = _optional_files(path, root, frames, ("depth_file_path",))
    for found in (mask_files, depth_files):
        key, files = found or (None, [])
        for i, file in enumerate(files):
            if file.suffix != ".npy":  # .npy depth is checked after loading
                _check_size(path, f"frames[{i}].{key}", file, image_size(file), w, h)
    depth_scale = _number(path, "depth_unit_scale_factor", meta.get("depth_unit_scale_factor", DEPTH_SCALE), True)
    out_w, out_h = long_side_size(w, h, downscale_to) if downscale_to and max(w, h) > downscale_to else (w, h)
    if len(frames) * out_w * out_h > MAX_TOTAL_PIXELS:
        raise ValueError(f"{path}: {len(frames)} frames of {out_w}x{out_h} are over {MAX_TOTAL_PIXELS:,} pixels "
                         "in total; pass a smaller downscale_to")

    # 3. pixels
    images = [load_image(p, exif_transpose=False) for p in image_paths]
    masks = [_load_mask(p) for p in mask_files[1]] if mask_files else None
    depths = [_load_depth(p, depth_scale) for p in depth_files[1]] if depth_files else None
    for i, d in enumerate(depths or []):
        if tuple(d.shape) != (h, w):
            raise ValueError(f"{path}: frames[{i}].depth_file_path has shape {tuple(d.shape)}, expected {(h, w)}")

    # 4. optional downscale (never enlarge)
    if (out_w, out_h) != (w, h):
        cameras = cameras.resized(out_w, out_h)
        images = [resize_long_side(im, downscale_to) for im in images]
        masks = [resize_long_side(m, downscale_to, mode="nearest") for m in masks] if masks else None
        depths = [resize_long_side(d, downscale_to, mode="nearest") for d in depths] if depths else None
    points = _load_points(_safe_path(root, path, "ply_file_path", meta["ply_file_path"])) \
        if "ply_file_path" in meta else None
    return NerfstudioDataset(root, cameras, image_paths, images, masks, depths,
                             object_names_from_meta(path, meta.get("object_names")), points)


MAX_POINTS = 5_000_000


def _load_points(file: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(xyz [P, 3], rgb [P, 3] in [0, 1]) of the sparse point cloud ``ns-process-data`` writes (COLMAP points,
    already in the frame of the ``transform_matrix`` poses); grey where the file has no colours."""
    import open3d as o3d

    if file.suffix.lower() != ".ply":
        raise ValueError(f"{file}: ply_file_path must name a .ply point cloud")
    if file.stat().st_size > MAX_POINTS * 64:
        raise ValueError(f"{file}: point cloud larger than {MAX_POINTS * 64 >> 20} MB")
    with open(file, "rb") as f:
        if f.read(4) not in (b"ply\n", b"ply\r"):
            raise ValueError(f"{file}: ply_file_path is not a PLY file (no 'ply' header)")
    pcd = o3d.io.read_point_cloud(str(file), format="ply")
    xyz = np.asarray(pcd.points, dtype=np.float32)
    if len(xyz) == 0:
        raise ValueError(f"{file}: ply_file_path holds no readable points")
    rgb = np.asarray(pcd.colors, dtype=np.float32) if pcd.has_colors() else np.full_like(xyz, 0.5)
    finite = np.isfinite(xyz).all(1) & np.isfinite(rgb).all(1)
    if not finite.any():
        raise ValueError(f"{file}: ply_file_path holds no finite points")
    return torch.from_numpy(xyz[finite]), torch.from_numpy(np.clip(rgb[finite], 0, 1))


def dataset_instance_masks(root: Path, image_filenames: Sequence[Path]) -> tuple[list[torch.Tensor], Path, dict]:
    """Instance masks [H, W] (``instance_mask_path``, else ``mask_path``) of the given training images, matched
    to transforms.json frames by relative path, else by file name (nerfstudio may read ``images_2/...``)."""
    root = root.parent if root.is_file() else root
    path, meta = _load_meta(root)
    by_path, by_name = {}, {}
    for i, frame in enumerate(meta["frames"]):
        key = next((k for k in (MASK_KEY, "mask_path") if k in frame), None)
        if key is not None and isinstance(frame.get("file_path"), str):
            by_path[(root / frame["file_path"]).resolve()] = (i, key, frame[key])
            by_name[Path(frame["file_path"]).name] = (i, key, frame[key])
    masks = []
    for f in image_filenames:
        hit = by_path.get(Path(f).resolve()) or by_name.get(Path(f).name)
        if hit is None:
            raise ValueError(f"{path}: no instance mask for training image {f} (frames need '{MASK_KEY}')")
        i, key, rel = hit
        masks.append(_load_mask(_safe_path(root, path, f"frames[{i}].{key}", rel)))
    return masks, path, meta
