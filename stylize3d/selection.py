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
from .sh import sh0_to_rgb

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


def _in_box(scene: GaussianScene, box: Sequence[float]) -> torch.Tensor:
    lo = torch.tensor(box[:3], dtype=scene.means.dtype)
    hi = torch.tensor(box[3:], dtype=scene.means.dtype)
    return ((scene.means >= lo) & (scene.means <= hi)).all(dim=1)


def select_box(scene: GaussianScene, box: Sequence[float], clean: bool = True) -> torch.Tensor:
    """[N] bool: Gaussians whose centre lies in the axis-aligned box (x0,y0,z0,x1,y1,z1), less those whose
    footprint reaches far outside it (``box_overreach``), cleaned in 3D."""
    mask = _in_box(scene, box)
    if not mask.any():
        raise ValueError(f"the box {tuple(box)} contains no Gaussians (scene bounds: "
                         f"{[round(float(v), 3) for v in scene.means.min(0).values]} .. "
                         f"{[round(float(v), 3) for v in scene.means.max(0).values]})")
    big = box_overreach(scene, box)
    if big.any():
        mask &= ~big
        if not mask.any():
            raise ValueError(f"the box {tuple(box)} holds only {int(big.sum())} Gaussians that reach far outside "
                             "it (large splats): make the box larger or select by --click")
    if clean:
        mask = clean_selection(scene.means, mask)
    return mask


def box_overreach(scene: GaussianScene, box: Sequence[float], sigmas: float = 3.0, slack: float = 0.5
                  ) -> torch.Tensor:
    """[N] bool: Gaussians centred in the box whose ``sigmas`` extent passes its faces by more than ``slack`` x
    its diagonal: painting them would paint far outside the box (observed: patches at the image borders)."""
    lo = torch.tensor(box[:3], dtype=scene.means.dtype)
    hi = torch.tensor(box[3:], dtype=scene.means.dtype)
    reach = sigmas * torch.exp(scene.scales).amax(dim=1, keepdim=True)  # [N, 1]
    margin = slack * float((hi - lo).norm().clamp_min(1e-6))
    far = ((scene.means - reach < lo - margin) | (scene.means + reach > hi + margin)).any(dim=1)
    return far & _in_box(scene, box)


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


def select_click(scene: GaussianScene, weights: torch.Tensor, width: int, x: int, y: int,
                 segments: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """(mask [N] bool, object id) for a click at pixel (x, y) of a view.

    On a labelled scene the click picks the object of the Gaussian under the pixel. On an unlabelled one (or
    the background) the scene is cut into 3D segments (``segment_scene``) and the click picks the segment with
    the most blend weight at that pixel (what you see there), with object id -1. Pass ``segments``
    (``scene_segments(scene)``) to reuse one segmentation for many clicks.
    """
    g = gaussian_under_pixel(weights, width, x, y)
    if g < 0:
        raise ValueError(f"nothing is under pixel ({x}, {y}) in this view")
    oid = int(scene.labels[g])
    if oid != BACKGROUND_LABEL:
        return scene.labels == oid, oid
    if segments is None:
        segments = scene_segments(scene)
    row = y * width + x
    crow = weights.crow_indices()
    cols, vals = weights.col_indices()[crow[row]:crow[row + 1]], weights.values()[crow[row]:crow[row + 1]]
    seg = segments[cols]
    ok = seg >= 0
    if not ok.any():
        return segments == segments[g], -1
    votes = torch.zeros(int(segments.max()) + 1).index_add_(0, seg[ok], vals[ok].float())
    return segments == int(votes.argmax()), -1


def dominant_plane(means: torch.Tensor, min_fraction: float = 0.2, band: float = 3.0,
                   spacing: float | None = None) -> torch.Tensor | None:
    """[N] bool: the Gaussians of the scene's floor (or table): the dominant plane found by open3d RANSAC, with
    everything within ``band`` point spacings above it and everything below it (a reconstructed floor is thick,
    and under a floor there are only floaters). None unless the plane holds ``min_fraction`` of the points,
    spans half the scene, fills its own extent and has the scene on one side. Objects resting on a floor touch
    it, so without removing it first every object joins one DBSCAN cluster. ``spacing``: the median distance
    between neighbouring centres, if already known."""
    import open3d as o3d

    pts = means.detach().cpu().numpy()
    if len(pts) < 64:
        return None
    spacing = spacing or _default_eps(pts) / 3.0
    o3d.utility.random.seed(0)  # RANSAC: the same click selects the same Gaussians every time
    plane, inliers = _to_o3d(pts).segment_plane(distance_threshold=spacing, ransac_n=3, num_iterations=500)
    if len(inliers) < min_fraction * len(pts):
        return None
    on = pts[np.asarray(inliers)]
    if np.linalg.norm(on.max(0) - on.min(0)) < 0.5 * np.linalg.norm(pts.max(0) - pts.min(0)):
        return None  # a slab through one dense object, not a floor under the scene
    uv = (on - on.mean(0)) @ np.linalg.svd(on - on.mean(0), full_matrices=False)[2][:2].T  # in-plane coordinates
    cells, _, _ = np.histogram2d(uv[:, 0], uv[:, 1], bins=8)
    if (cells > 0).mean() < 0.5:
        return None  # a floor fills its extent; slices through separate objects leave it mostly empty
    side = pts @ np.asarray(plane[:3]) + plane[3]
    far = side[np.abs(side) > 5 * spacing]
    if len(far):
        up = 1.0 if (far > 0).mean() >= 0.5 else -1.0
        side, far = side * up, far * up
        if (far > 0).mean() < 0.75:
            return None  # a floor has the scene on one side; this plane cuts through it
    return torch.from_numpy(side < band * spacing)


def segment_scene(means: torch.Tensor, rgb: torch.Tensor, opacities: torch.Tensor | None = None,
                  eps: float | None = None, min_points: int = 5, solid: float = 0.3) -> torch.Tensor:
    """[N] long segment ids of an unlabelled scene: 0 = its floor (``dominant_plane``), 1.. = DBSCAN clusters of
    the Gaussian centres off the floor, -1 = noise.

    Only Gaussians with opacity above ``solid`` are clustered (the faint fuzz of a reconstruction bridges
    objects); the faint ones join the nearest cluster within ``eps``. Floor Gaussians next to a cluster whose
    colour is closer to the cluster's than to the floor's join it (an object's base lies within the floor band).
    """
    from scipy.spatial import cKDTree

    pts = means.detach().cpu().numpy()
    col = rgb.detach().cpu().numpy()
    spacing = _default_eps(pts) / 3.0
    eps = eps or 4.5 * spacing
    floor = dominant_plane(means, spacing=spacing)
    floor = np.zeros(len(pts), dtype=bool) if floor is None else floor.numpy()
    strong = np.ones(len(pts), dtype=bool) if opacities is None else \
        torch.sigmoid(opacities.detach().cpu()).numpy() > solid
    seg = np.full(len(pts), -1, dtype=np.int64)
    seg[floor] = 0
    core = np.flatnonzero(~floor & strong)
    if len(core):
        cluster = np.asarray(_to_o3d(pts[core]).cluster_dbscan(eps=eps, min_points=min_points))
        seg[core] = np.where(cluster >= 0, cluster + 1, -1)
    clustered = core[seg[core] > 0]
    if not len(clustered):
        return torch.from_numpy(seg)
    tree = cKDTree(pts[clustered])
    faint = np.flatnonzero(~floor & ~strong)
    if len(faint):
        dist, nn = tree.query(pts[faint], distance_upper_bound=eps)
        near = np.isfinite(dist)
        seg[faint[near]] = seg[clustered[nn[near]]]
    on_floor = np.flatnonzero(floor)
    if len(on_floor):
        dist, nn = tree.query(pts[on_floor], distance_upper_bound=eps)
        near = np.isfinite(dist)
        cand, target = on_floor[near], seg[clustered[nn[near]]]
        seg_rgb = {k: col[seg == k].mean(0) for k in np.unique(target)}
        floor_rgb = col[on_floor].mean(0)
        joins = np.array([np.linalg.norm(col[i] - seg_rgb[k]) < np.linalg.norm(col[i] - floor_rgb)
                          for i, k in zip(cand, target)], dtype=bool)
        seg[cand[joins]] = target[joins]
    return torch.from_numpy(seg)


def scene_segments(scene: GaussianScene) -> torch.Tensor:
    """``segment_scene`` of a scene's centres, colours and opacities."""
    return segment_scene(scene.means, sh0_to_rgb(scene.sh0[:, 0]), scene.opacities)
