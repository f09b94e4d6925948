"""Which Gaussians to stylize: by object name/id, by a click on a view, or by a 3D box.

Selections are [N] bool masks over the scene's Gaussians. Clicks and boxes on unlabelled scenes are grown or
cleaned in 3D with open3d (DBSCAN clusters / statistical outlier removal), as StyleSplat does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from .gaussians import BACKGROUND_LABEL, GaussianScene

logger = logging.getLogger(__name__)


def select_object(scene: GaussianScene, name_or_id: str | int) -> torch.Tensor:
    """[N] bool: the Gaussians labelled as this object (error if unknown or empty)."""
    oid = scene.object_id(name_or_id)
    mask = scene.labels == oid
    if not mask.any():
        raise ValueError(f"object {name_or_id!r} (id {oid}) has no Gaussians in this scene")
    return mask


def parse_box(text: str) -> tuple[float, ...]:
    """'x0,y0,z0,x1,y1,z1' -> 6 floats, with the corners ordered."""
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError as err:
        raise ValueError(f"--box {text!r}: expected six numbers x0,y0,z0,x1,y1,z1") from err
    if len(vals) != 6 or not all(np.isfinite(vals)):
        raise ValueError(f"--box {text!r}: expected six finite numbers x0,y0,z0,x1,y1,z1")
    lo = [min(vals[i], vals[i + 3]) for i in range(3)]
    hi = [max(vals[i], vals[i + 3]) for i in range(3)]
    return (*lo, *hi)


def _to_o3d(points: np.ndarray):
    import open3d as o3d

    pcd = o3d.geometry.PointCloud()
    pcd.points = o3d.utility.Vector3dVector(points.astype(np.float64))
    return pcd


def clean_selection(means: torch.Tensor, mask: torch.Tensor, nb_neighbors: int = 16, std_ratio: float = 2.5,
                    eps: float | None = None, min_points: int = 8) -> torch.Tensor:
    """Drop stray Gaussians from a selection: statistical outlier removal, then keep the DBSCAN clusters
    that hold at least 10% of the points (so a box around two objects keeps both)."""
    idx = torch.nonzero(mask, as_tuple=False)[:, 0]
    if len(idx) < max(nb_neighbors, min_points) + 1:
        return mask
    pts = means[idx].detach().cpu().numpy()
    pcd = _to_o3d(pts)
    _, inliers = pcd.remove_statistical_outlier(nb_neighbors=nb_neighbors, std_ratio=std_ratio)
    inliers = np.asarray(inliers, dtype=np.int64)
    eps = eps or _default_eps(pts)
    cluster = np.asarray(_to_o3d(pts[inliers]).cluster_dbscan(eps=eps, min_points=min_points))
    keep = np.zeros(len(inliers), dtype=bool)
    for c in np.unique(cluster[cluster >= 0]):
        members = cluster == c
        if members.sum() >= 0.1 * len(inliers):
            keep |= members
    out = torch.zeros_like(mask)
    out[idx[torch.from_numpy(inliers[keep])]] = True
    logger.info("selection clean-up kept %d of %d Gaussians", int(out.sum()), len(idx))
    return out


def _default_eps(pts: np.ndarray) -> float:
    """DBSCAN radius from the median nearest-neighbour spacing of the points."""
    import open3d as o3d

    tree = o3d.geometry.KDTreeFlann(_to_o3d(pts))
    sample = np.linspace(0, len(pts) - 1, min(len(pts), 256)).astype(int)
    d = [np.sqrt(tree.search_knn_vector_3d(pts[i], 2)[2][1]) for i in sample]
    return float(np.median(d) * 3.0)


def select_box(scene: GaussianScene, box: Sequence[float], clean: bool = True) -> torch.Tensor:
    """[N] bool: Gaussians whose centre lies in the axis-aligned box (x0,y0,z0,x1,y1,z1), cleaned in 3D."""
    lo = torch.tensor(box[:3], dtype=scene.means.dtype)
    hi = torch.tensor(box[3:], dtype=scene.means.dtype)
    mask = ((scene.means >= lo) & (scene.means <= hi)).all(dim=1)
    if not mask.any():
        raise ValueError(f"the box {tuple(box)} contains no Gaussians (scene bounds: "
                         f"{[round(float(v), 3) for v in scene.means.min(0).values]} .. "
                         f"{[round(float(v), 3) for v in scene.means.max(0).values]})")
    if clean:
        mask = clean_selection(scene.means, mask)
    return mask


def gaussian_under_pixel(weights: torch.Tensor, width: int, x: int, y: int, min_weight: float = 0.05) -> int:
    """Index of the front-most Gaussian that visibly contributes at pixel (x, y), or -1 if none does.

    ``weights`` is the view's CSR [H*W, N] blend-weight matrix; ``x`` is the column, ``y`` the row.
    """
    row = y * width + x
    if not 0 <= x < width or not 0 <= row < weights.shape[0]:
        raise ValueError(f"pixel ({x}, {y}) is outside the {width}x{weights.shape[0] // width} view")
    crow = weights.crow_indices()
    cols = weights.col_indices()[crow[row]:crow[row + 1]]
    vals = weights.values()[crow[row]:crow[row + 1]]
    if len(vals) == 0 or vals.max() < min_weight:
        return -1
    # weights are alpha_i * T_i: the strongest contributor is what the eye sees at this pixel
    return int(cols[vals.argmax()])


def select_click(scene: GaussianScene, weights: torch.Tensor, width: int, x: int, y: int) -> tuple[torch.Tensor, int]:
    """(mask [N] bool, object id) for a click at pixel (x, y) of a view.

    On a labelled scene the click picks the object of the Gaussian under the pixel. On an unlabelled one (or
    the background) it returns the DBSCAN cluster grown from that Gaussian, with object id -1.
    """
    g = gaussian_under_pixel(weights, width, x, y)
    if g < 0:
        raise ValueError(f"nothing is under pixel ({x}, {y}) in this view")
    oid = int(scene.labels[g])
    if oid != BACKGROUND_LABEL:
        return scene.labels == oid, oid
    return grow_from_seed(scene.means, g), -1


def grow_from_seed(means: torch.Tensor, seed: int, eps: float | None = None, min_points: int = 8) -> torch.Tensor:
    """[N] bool: the DBSCAN cluster of all Gaussian centres that contains ``seed``."""
    pts = means.detach().cpu().numpy()
    eps = eps or _default_eps(pts)
    cluster = np.asarray(_to_o3d(pts).cluster_dbscan(eps=eps, min_points=min_points))
    c = cluster[seed]
    if c < 0:
        mask = torch.zeros(len(pts), dtype=torch.bool)
        mask[seed] = True
        return mask
    return torch.from_numpy(cluster == c)
