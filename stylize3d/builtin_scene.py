"""The built-in scene: open3d primitives on a ground plane, turned into ground-truth Gaussians.

Deterministic from a seed. Each object's surface is sampled (area-weighted, with the project's own RNG so the
result does not depend on open3d's global seed) into flat disc Gaussians oriented by the surface normal; the
object id becomes the Gaussian's label. Views on an orbit are rendered with the project's rasterizer into a
nerfstudio dataset (RGB, depth, instance masks), so every downstream path reads it like a captured scene.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .cameras import Cameras, orbit_cameras
from .gaussians import SH_C0, GaussianScene, num_sh_bases

logger = logging.getLogger(__name__)

SCENE_VERSION = 1


@dataclass(frozen=True)
class BuiltinSceneConfig:
    seed: int = 0
    """Seed for surface sampling and colour jitter."""
    points_per_object: int = 700
    """Gaussians sampled on each object's surface."""
    ground_points: int = 1600
    """Gaussians on the ground plane."""
    num_views: int = 48
    """Calibrated views on the orbit."""
    image_size: int = 128
    """Width and height of the rendered dataset images."""
    elevation_deg: float = 32.0
    """Orbit elevation above the ground plane."""
    orbit_radius: float = 4.1
    """Distance of the orbit cameras from the scene centre."""
    sh_degree: int = 3
    """SH degree of the Gaussians (higher bands start at zero)."""


# name, colour (linear RGB in [0,1]), position on the ground (x, y)
OBJECTS: tuple[tuple[str, tuple[float, float, float], tuple[float, float]], ...] = (
    ("cube", (0.85, 0.18, 0.15), (1.15, 0.0)),
    ("sphere", (0.15, 0.35, 0.85), (0.35, 1.1)),
    ("torus", (0.95, 0.78, 0.15), (-0.95, 0.7)),
    ("cylinder", (0.2, 0.7, 0.3), (-0.95, -0.7)),
    ("cone", (0.6, 0.25, 0.75), (0.35, -1.1)),
    ("knot", (0.95, 0.5, 0.1), (0.0, 0.0)),
)
GROUND_NAME = "ground"


def builtin_object_names() -> list[str]:
    """Names of the built-in scene's objects (without generating it)."""
    return [name for name, _, _ in OBJECTS]
BACKGROUND = (1.0, 1.0, 1.0)


def _primitive_mesh(name: str):
    """(vertices [V,3], triangles [T,3]) of an open3d primitive, sitting on z=0 and centred on the origin."""
    import open3d as o3d

    g = o3d.geometry.TriangleMesh
    if name == "cube":
        mesh = g.create_box(0.6, 0.6, 0.6)
        mesh.translate((-0.3, -0.3, 0.0))
    elif name == "sphere":
        mesh = g.create_sphere(radius=0.36, resolution=24)
        mesh.translate((0.0, 0.0, 0.36))
    elif name == "torus":
        mesh = g.create_torus(torus_radius=0.3, tube_radius=0.12, radial_resolution=32, tubular_resolution=16)
        mesh.rotate(mesh.get_rotation_matrix_from_xyz((math.pi / 2, 0.0, 0.0)), center=(0, 0, 0))
        mesh.translate((0.0, 0.0, 0.42))
    elif name == "cylinder":
        mesh = g.create_cylinder(radius=0.26, height=0.8, resolution=32, split=4)
        mesh.translate((0.0, 0.0, 0.4))
    elif name == "cone":
        mesh = g.create_cone(radius=0.32, height=0.8, resolution=32, split=2)
    elif name == "knot":
        return _trefoil_tube()
    else:
        raise ValueError(f"unknown primitive {name!r}")
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.triangles, dtype=np.int64)


def _trefoil_tube(tube_radius: float = 0.07, n_along: int = 160, n_around: int = 12):
    """A trefoil knot tube (open3d's KnotMesh is a download, so the knot is built here)."""
    t = np.linspace(0, 2 * np.pi, n_along, endpoint=False)
    curve = np.stack([np.sin(t) + 2 * np.sin(2 * t), np.cos(t) - 2 * np.cos(2 * t), -np.sin(3 * t)], 1) * 0.13
    tangent = np.roll(curve, -1, 0) - np.roll(curve, 1, 0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    ref = np.array([0.0, 0.0, 1.0])
    n1 = np.cross(tangent, ref)
    n1 /= np.linalg.norm(n1, axis=1, keepdims=True)
    n2 = np.cross(tangent, n1)
    a = np.linspace(0, 2 * np.pi, n_around, endpoint=False)
    ring = np.cos(a)[None, :, None] * n1[:, None] + np.sin(a)[None, :, None] * n2[:, None]
    verts = (curve[:, None] + tube_radius * ring).reshape(-1, 3)
    tris = []
    for i in range(n_along):
        for j in range(n_around):
            p, q = i * n_around + j, ((i + 1) % n_along) * n_around + j
            p2, q2 = i * n_around + (j + 1) % n_around, ((i + 1) % n_along) * n_around + (j + 1) % n_around
            tris += [(p, q, q2), (p, q2, p2)]
    verts[:, 2] += 0.52
    return verts, np.asarray(tris, dtype=np.int64)


def _sample_surface(verts: np.ndarray, tris: np.ndarray, n: int, rng: np.random.Generator):
    """Area-weighted uniform samples on a triangle mesh -> (points [n,3], normals [n,3], spacing)."""
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    cross = np.cross(b - a, c - a)
    areas = 0.5 * np.linalg.norm(cross, axis=1)
    keep = areas > 1e-12
    a, b, c, cross, areas = a[keep], b[keep], c[keep], cross[keep], areas[keep]
    idx = rng.choice(len(areas), size=n, p=areas / areas.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    pts = a[idx] + u[:, None] * (b[idx] - a[idx]) + v[:, None] * (c[idx] - a[idx])
    normals = cross[idx] / np.linalg.norm(cross[idx], axis=1, keepdims=True)
    spacing = math.sqrt(areas.sum() / n)
    return pts, normals, spacing


def _quats_from_normals(normals: np.ndarray) -> np.ndarray:
    """[N,4] wxyz rotating the local z axis onto each normal (discs lie in the tangent plane)."""
    w = 1.0 + normals[:, 2]
    q = np.stack([w, -normals[:, 1], normals[:, 0], np.zeros_like(w)], 1)
    degenerate = w < 1e-6
    q[degenerate] = (0.0, 1.0, 0.0, 0.0)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _surface_gaussians(pts, normals, spacing, colors):
    n = len(pts)
    scales = np.tile(np.log([0.75 * spacing, 0.75 * spacing, 0.08 * spacing]), (n, 1))
    return dict(
        means=pts,
        scales=scales,
        quats=_quats_from_normals(normals),
        opacities=np.full(n, math.log(0.97 / 0.03)),
        rgb=colors,
    )


def _object_colors(name, base, pts, rng) -> np.ndarray:
    """Base colour with a soft banded pattern and jitter, so objects have texture for the style to replace."""
    bands = 0.5 + 0.5 * np.sin(pts[:, 2] * 18.0 + pts[:, 0] * 6.0)
    shade = 0.78 + 0.22 * bands[:, None]
    rgb = np.asarray(base)[None] * shade + rng.normal(0.0, 0.015, (len(pts), 3))
    return np.clip(rgb, 0.02, 0.98)


def build_gaussians(config: BuiltinSceneConfig = BuiltinSceneConfig()) -> GaussianScene:
    """Ground-truth Gaussians of the built-in scene (label 0 = ground, 1.. = objects)."""
    rng = np.random.default_rng(config.seed)
    parts, labels = [], []
    names = {0: GROUND_NAME}
    for oid, (name, base, (x, y)) in enumerate(OBJECTS, start=1):
        verts, tris = _primitive_mesh(name)
        verts = verts + np.array([x, y, 0.0])
        pts, normals, spacing = _sample_surface(verts, tris, config.points_per_object, rng)
        visible = ~((normals[:, 2] < -0.9) & (pts[:, 2] < 0.01))  # faces resting on the ground are never seen
        pts, normals = pts[visible], normals[visible]
        parts.append(_surface_gaussians(pts, normals, spacing, _object_colors(name, base, pts, rng)))
        labels.append(np.full(len(pts), oid))
        names[oid] = name
    # ground: a jittered grid (even coverage) with a two-tone checker
    side = int(math.ceil(math.sqrt(config.ground_points)))
    g = np.linspace(-1.9, 1.9, side)
    gx, gy = np.meshgrid(g, g)
    pts = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], 1)
    spacing = g[1] - g[0]
    pts[:, :2] += rng.uniform(-0.2, 0.2, (len(pts), 2)) * spacing
    checker = ((np.floor(pts[:, 0] / 0.55) + np.floor(pts[:, 1] / 0.55)) % 2)[:, None]
    rgb = np.where(checker > 0, [0.72, 0.7, 0.66], [0.58, 0.56, 0.53]) + rng.normal(0, 0.01, (len(pts), 3))
    normals = np.tile([0.0, 0.0, 1.0], (len(pts), 1))
    ground = _surface_gaussians(pts, normals, spacing * 0.75, np.clip(rgb, 0, 1))
    ground["scales"][:, 2] = math.log(0.02 * spacing)
    parts.insert(0, ground)
    labels.insert(0, np.zeros(len(pts), dtype=np.int64))

    cat = {k: torch.from_numpy(np.concatenate([p[k] for p in parts])).float() for k in parts[0]}
    n = cat["means"].shape[0]
    sh0 = ((cat.pop("rgb") - 0.5) / SH_C0)[:, None, :]
    shN = torch.zeros(n, num_sh_bases(config.sh_degree) - 1, 3)
    return GaussianScene(
        means=cat["means"], scales=cat["scales"], quats=cat["quats"], opacities=cat["opacities"],
        sh0=sh0, shN=shN, labels=torch.from_numpy(np.concatenate(labels)).long(), object_names=names,
    )


def builtin_cameras(config: BuiltinSceneConfig = BuiltinSceneConfig(), size: int | None = None) -> Cameras:
    size = size or config.image_size
    return orbit_cameras(torch.tensor([0.0, 0.0, 0.25]), config.orbit_radius, config.num_views, size, size,
                         elevation_deg=config.elevation_deg, fov_x_deg=45.0)


def cache_root() -> Path:
    """Where generated scenes live (``POCKET_STUDIO_CACHE`` or ``~/.cache/pocket-studio``)."""
    return Path(os.environ.get("POCKET_STUDIO_CACHE", Path.home() / ".cache" / "pocket-studio"))


def builtin_scene_dir(config: BuiltinSceneConfig = BuiltinSceneConfig()) -> Path:
    """Generate (once) and return the built-in scene folder: ``scene.ply`` + a nerfstudio dataset."""
    key = (f"builtin-v{SCENE_VERSION}-s{config.seed}-p{config.points_per_object}-g{config.ground_points}"
           f"-v{config.num_views}-r{config.image_size}-d{config.sh_degree}")
    root = cache_root() / "scenes" / key
    if (root / "transforms.json").exists() and (root / "scene.ply").exists():
        return root
    logger.info("generating the built-in scene into %s", root)
    root.parent.mkdir(parents=True, exist_ok=True)
    write_builtin_scene(root, config)
    return root


def write_builtin_scene(out: Path, config: BuiltinSceneConfig = BuiltinSceneConfig()) -> None:
    """Render the ground truth of every view and write the nerfstudio dataset, then ``scene.ply``, into ``out``.

    Both writes are atomic and the ply comes last, so a folder with both files is complete.
    """
    from .ground_truth import render_ground_truth
    from .nerfstudio_data import write_dataset
    from .ply import write_ply

    scene = build_gaussians(config)
    cameras = builtin_cameras(config)
    gt = render_ground_truth(scene, cameras, torch.tensor(BACKGROUND))
    write_dataset(out, cameras, gt.images, gt.masks, gt.depths, scene.object_names, overwrite=True)
    write_ply(out / "scene.ply", scene)
