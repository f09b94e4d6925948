"""Turn what the user names (``builtin``, a ``.ply``, a nerfstudio dataset folder) into Gaussians + cameras."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from .builtin_scene import BACKGROUND, BuiltinSceneConfig, builtin_scene_dir
from .cameras import Cameras, orbit_around_bounds
from .gaussians import GaussianScene
from .images import resize_long_side
from .nerfstudio_data import read_dataset
from .ply import read_ply

logger = logging.getLogger(__name__)

ORBIT_VIEWS = 48
PLY_NAMES = ("scene.ply", "splat.ply", "point_cloud.ply")


@dataclass
class LoadedScene:
    scene: GaussianScene
    cameras: Cameras  # at the requested render size
    masks: list[torch.Tensor] | None  # [H, W] long per view at that size, when the dataset has them
    source: str  # what the user named, for the manifest
    background: torch.Tensor  # [3]


def _find_ply(root: Path) -> Path:
    for name in PLY_NAMES:
        if (root / name).is_file():
            return root / name
    plys = sorted(root.glob("*.ply"))
    if len(plys) == 1:
        return plys[0]
    if not plys:
        raise ValueError(f"{root.name}: a nerfstudio dataset without Gaussians (.ply): reconstruct them first "
                         f"(`pocket-studio reconstruct --data DIR --out DIR/scene.ply`, or 'Reconstruct' in the "
                         f"studio), or add trained splats as one of {', '.join(PLY_NAMES)}")
    raise ValueError(f"{root}: several .ply files ({', '.join(p.name for p in plys)}); name one of them "
                     f"{', '.join(PLY_NAMES)}")


def _is_nerfstudio_run(path: Path) -> bool:
    if path.is_file():
        return path.name == "config.yml" or path.suffix == ".ckpt"
    return (path / "config.yml").is_file() or path.name == "nerfstudio_models"


def _cameras_at(cameras: Cameras, size: int) -> Cameras:
    s = size / max(cameras.width, cameras.height)
    return cameras.resized(max(1, round(cameras.width * s)), max(1, round(cameras.height * s)))


def load_scene(spec: str | Path, size: int = 128, builtin: BuiltinSceneConfig = BuiltinSceneConfig()) -> LoadedScene:
    """Gaussians plus cameras at render size ``size`` (long side).

    ``builtin`` -> the generated scene and its orbit dataset; ``X.ply`` or a nerfstudio splatfacto run (its
    folder, ``config.yml`` or a ``.ckpt``) -> cameras on an orbit around its bounds; a folder with
    ``transforms.json`` -> that dataset's cameras, masks and the Gaussians stored beside it.
    """
    if size < 16 or size > 2048:
        raise ValueError(f"render size {size} is outside 16..2048 pixels")
    spec_s = str(spec)
    background = torch.tensor(BACKGROUND)
    if spec_s == "builtin":
        root = builtin_scene_dir(builtin)
        scene = read_ply(root / "scene.ply")
        data = read_dataset(root)
        cams = _cameras_at(data.cameras, size)
        return LoadedScene(scene, cams, None, "builtin", background)
    path = Path(spec_s)
    if not path.exists():
        raise ValueError(f"scene {spec_s!r} not found (use 'builtin', a .ply file or a nerfstudio dataset folder)")
    if _is_nerfstudio_run(path):  # a trained splatfacto run: config.yml + nerfstudio_models/step-*.ckpt
        from .nerfstudio_run import load_splatfacto_run

        scene = load_splatfacto_run(path)
        lo, hi = scene.bounds()
        return LoadedScene(scene, orbit_around_bounds(lo, hi, ORBIT_VIEWS, size, size), None, str(path), background)
    if path.is_file():
        if path.suffix.lower() != ".ply":
            raise ValueError(f"scene file {path} is not a .ply (nor a nerfstudio config.yml / .ckpt)")
        scene = read_ply(path)
        lo, hi = scene.bounds()
        cams = orbit_around_bounds(lo, hi, ORBIT_VIEWS, size, size)
        return LoadedScene(scene, cams, None, str(path), background)
    if not (path / "transforms.json").is_file():
        raise ValueError(f"{path} is a folder without transforms.json (not a nerfstudio dataset)")
    scene = read_ply(_find_ply(path))
    data = read_dataset(path)
    cams = _cameras_at(data.cameras, size)
    masks = None
    if data.masks is not None:
        masks = [resize_long_side(m, max(cams.width, cams.height), mode="nearest").long() for m in data.masks]
    if data.object_names:
        scene.object_names = {**scene.object_names, **data.object_names}
    return LoadedScene(scene, cams, masks, str(path), background)
