"""A scene the project did not make: three meshes on a floor, ray-cast and shaded by open3d, images only.

    python bench/outside_scene.py OUT_DIR [--views 36] [--size 128] [--points]

Unlike the built-in scene (the project's own Gaussians rendered by its own rasterizer), these images come from
open3d's ray caster with Lambert shading, so a reconstruction has to find the geometry from the pixels alone:
no depth, no masks. ``--points`` also writes a sparse, noisy coloured point cloud as ``sparse_pc.ply`` and names
it in ``ply_file_path``, as ``ns-process-data`` does after COLMAP.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from stylize3d.cameras import orbit_cameras
from stylize3d.nerfstudio_data import write_dataset

# name -> (colour, centre on the floor)
OBJECTS = {"sphere": ((0.2, 0.4, 0.85), (0.6, 0.5)), "torus": ((0.9, 0.75, 0.2), (-0.7, 0.3)),
           "cone": ((0.75, 0.25, 0.3), (0.0, -0.7))}
LIGHT = np.array([0.4, -0.3, 0.85]) / np.linalg.norm([0.4, -0.3, 0.85])


def _meshes():
    import open3d as o3d

    g = o3d.geometry.TriangleMesh
    sphere = g.create_sphere(0.4, resolution=40).translate((0.6, 0.5, 0.4))
    torus = g.create_torus(0.32, 0.13, radial_resolution=48, tubular_resolution=24)
    torus.rotate(torus.get_rotation_matrix_from_xyz((math.pi / 2, 0, 0.5)), center=(0, 0, 0))
    torus.translate((-0.7, 0.3, 0.45))
    cone = g.create_cone(0.35, 0.85, resolution=48).translate((0.0, -0.7, 0.0))
    floor = g.create_box(4.0, 4.0, 0.02).translate((-2.0, -2.0, -0.02))
    return [("floor", floor), ("sphere", sphere), ("torus", torus), ("cone", cone)]


def _colour(name: str, pts: np.ndarray) -> np.ndarray:
    if name == "floor":
        checker = (np.floor(pts[:, 0] / 0.5) + np.floor(pts[:, 1] / 0.5)) % 2
        return np.where(checker[:, None] > 0, [0.75, 0.72, 0.66], [0.45, 0.43, 0.4])
    base = np.asarray(OBJECTS[name][0])
    stripe = 0.85 + 0.15 * np.sin(pts[:, 2] * 20.0)  # a little texture for the photometric loss
    return base[None] * stripe[:, None]


def render(views: int = 36, size: int = 128, seed: int = 0):
    """(cameras, images uint8 [H,W,3] list, surface points [M,3], colours [M,3]) of the scene."""
    import open3d as o3d

    rc = o3d.t.geometry.RaycastingScene()
    parts = _meshes()
    ids = [rc.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(m)) for _, m in parts]
    names = dict(zip(ids, [n for n, _ in parts]))
    cams = orbit_cameras(torch.tensor([0.0, 0.0, 0.3]), 4.0, views, size, size, elevation_deg=30.0,
                         fov_x_deg=45.0, start_deg=7.0)
    images, pts_all, rgb_all = [], [], []
    rng = np.random.default_rng(seed)
    for c in range(views):
        K, c2w = cams.Ks[c].double().numpy(), cams.camtoworlds[c].double().numpy()
        v, u = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
        d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
        d = d_cam @ c2w[:3, :3].T
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        o = np.broadcast_to(c2w[:3, 3], d.shape)
        hits = rc.cast_rays(o3d.core.Tensor(np.concatenate([o, d], -1).reshape(-1, 6).astype(np.float32)))
        t = hits["t_hit"].numpy()
        geom = hits["geometry_ids"].numpy()
        normal = hits["primitive_normals"].numpy()
        img = np.ones((size * size, 3))
        hit = np.isfinite(t)
        p = (o.reshape(-1, 3) + d.reshape(-1, 3) * np.where(hit, t, 0)[:, None])
        normal = normal * np.sign(-(normal * d.reshape(-1, 3)).sum(1, keepdims=True))  # face the camera
        shade = 0.35 + 0.65 * np.clip(normal @ LIGHT, 0, 1)
        for gid, name in names.items():
            sel = hit & (geom == gid)
            img[sel] = _colour(name, p[sel]) * shade[sel, None]
        images.append((np.clip(img, 0, 1).reshape(size, size, 3) * 255 + 0.5).astype(np.uint8))
        pick = np.flatnonzero(hit)
        pick = rng.choice(pick, size=min(len(pick), 120), replace=False)
        pts_all.append(p[pick] + rng.normal(0, 0.01, (len(pick), 3)))
        rgb_all.append(img[pick])
    return cams, images, np.concatenate(pts_all), np.concatenate(rgb_all)


def write_point_cloud(path: Path, pts: np.ndarray, rgb: np.ndarray) -> None:
    """Binary PLY with x,y,z float and red,green,blue uchar, the layout ns-process-data writes."""
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(pts)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    rec = np.zeros(len(pts), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    rec["x"], rec["y"], rec["z"] = pts.T
    rec["r"], rec["g"], rec["b"] = (np.clip(rgb, 0, 1) * 255).astype(np.uint8).T
    path.write_bytes(header.encode() + rec.tobytes())


def make_outside_scene(out: str | Path, views: int = 36, size: int = 128, points: bool = False) -> Path:
    out = Path(out)
    cams, images, pts, rgb = render(views, size)
    write_dataset(out, cams, images, overwrite=True)
    if points:
        write_point_cloud(out / "sparse_pc.ply", pts, rgb)
        meta = json.loads((out / "transforms.json").read_text())
        meta["ply_file_path"] = "sparse_pc.ply"
        (out / "transforms.json").write_text(json.dumps(meta, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--views", type=int, default=36)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--points", action="store_true", help="also write sparse_pc.ply (ply_file_path)")
    args = p.parse_args(argv)
    print(make_outside_scene(args.out, args.views, args.size, args.points))
    return 0


if __name__ == "__main__":
    sys.exit(main())
