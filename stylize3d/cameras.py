"""Pinhole cameras in gsplat's convention: world-to-camera ``viewmats`` with OpenCV axes (x right, y down,
z forward) and intrinsics ``Ks``. nerfstudio / Blender ``transform_matrix`` are camera-to-world in OpenGL axes
(y up, z backward); ``opengl_c2w_to_viewmat`` converts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

_GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))


@dataclass
class Cameras:
    viewmats: torch.Tensor  # [C, 4, 4] world -> camera (OpenCV)
    Ks: torch.Tensor  # [C, 3, 3]
    width: int
    height: int

    def __post_init__(self) -> None:
        c = self.viewmats.shape[0]
        if self.viewmats.shape != (c, 4, 4) or self.Ks.shape != (c, 3, 3):
            raise ValueError(f"Cameras: viewmats {tuple(self.viewmats.shape)} / Ks {tuple(self.Ks.shape)} "
                             "must be [C,4,4] / [C,3,3]")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"Cameras: bad image size {self.width}x{self.height}")

    def __len__(self) -> int:
        return self.viewmats.shape[0]

    def __getitem__(self, idx) -> Cameras:
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return Cameras(self.viewmats[idx], self.Ks[idx], self.width, self.height)

    @property
    def camtoworlds(self) -> torch.Tensor:
        """[C, 4, 4] camera -> world (OpenCV axes)."""
        return torch.linalg.inv(self.viewmats)

    @property
    def centers(self) -> torch.Tensor:
        """[C, 3] camera centres in world space."""
        return self.camtoworlds[:, :3, 3]

    def resized(self, width: int, height: int) -> Cameras:
        """Same poses at another resolution (intrinsics scaled)."""
        sx, sy = width / self.width, height / self.height
        Ks = self.Ks.clone()
        Ks[:, 0, :] *= sx
        Ks[:, 1, :] *= sy
        return Cameras(self.viewmats.clone(), Ks, width, height)

    def to_opengl_c2w(self) -> torch.Tensor:
        """[C, 4, 4] camera -> world in OpenGL axes, as nerfstudio's ``transform_matrix``."""
        return self.camtoworlds @ _GL_TO_CV


def opengl_c2w_to_viewmat(c2w: torch.Tensor) -> torch.Tensor:
    """[..., 4, 4] OpenGL camera-to-world -> OpenCV world-to-camera."""
    return torch.linalg.inv(c2w @ _GL_TO_CV.to(c2w))


def unproject_depth(depth: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor) -> torch.Tensor:
    """[H, W] z-depth -> [H, W, 3] world points through the pixel centres (+0.5); ``c2w`` is OpenCV [4, 4]."""
    H, W = depth.shape
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    cam = torch.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth], -1)  # [H, W, 3]
    return cam @ c2w[:3, :3].T + c2w[:3, 3]


def intrinsics(fov_x_deg: float, width: int, height: int) -> torch.Tensor:
    """[3, 3] pinhole K with square pixels and the principal point at the centre."""
    fx = 0.5 * width / math.tan(math.radians(fov_x_deg) / 2)
    return torch.tensor([[fx, 0.0, width / 2], [0.0, fx, height / 2], [0.0, 0.0, 1.0]])


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """[4, 4] world -> camera (OpenCV) for a camera at ``eye`` looking at ``target``; world ``up`` is +z."""
    forward = target - eye
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, up)
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    R = torch.stack([right, down, forward])  # rows: camera axes in world coords
    viewmat = torch.eye(4)
    viewmat[:3, :3] = R
    viewmat[:3, 3] = -R @ eye
    return viewmat


def orbit_cameras(center: torch.Tensor, radius: float, num_views: int, width: int, height: int,
                  elevation_deg: float = 25.0, fov_x_deg: float = 50.0, start_deg: float = 0.0) -> Cameras:
    """``num_views`` cameras evenly spaced on a circle around ``center`` (world up is +z), all looking at it."""
    center = torch.as_tensor(center, dtype=torch.float32)
    up = torch.tensor([0.0, 0.0, 1.0])
    el = math.radians(elevation_deg)
    viewmats = []
    for i in range(num_views):
        az = math.radians(start_deg) + 2 * math.pi * i / num_views
        offset = torch.tensor([math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)])
        viewmats.append(look_at(center + radius * offset, center, up))
    K = intrinsics(fov_x_deg, width, height)
    return Cameras(torch.stack(viewmats), K.expand(num_views, 3, 3).clone(), width, height)


def orbit_around_bounds(lo: torch.Tensor, hi: torch.Tensor, num_views: int, width: int, height: int,
                        fov_x_deg: float = 50.0, elevation_deg: float = 25.0) -> Cameras:
    """Orbit placed so the whole box [lo, hi] fits in view: used for a bare ``.ply`` without cameras."""
    center = (lo + hi) / 2
    half_diag = float((hi - lo).norm() / 2)
    radius = max(half_diag, 1e-3) / math.tan(math.radians(fov_x_deg) / 2) * 1.1
    return orbit_cameras(center, radius, num_views, width, height, elevation_deg, fov_x_deg)
