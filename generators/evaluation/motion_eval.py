"""Judging a generated clip: ShapesEval on every frame, the described motion from tracked centroids, flicker.

- per-frame: GenEval's rules for the caption's objects (class, count, colour) on each frame (``evaluate_image``);
- motion: the centroid of the named objects' detections, first frame with them vs last; the dominant axis and
  its sign must be the caption's direction, over at least ``MIN_TRAVEL`` of the side;
- flicker: mean absolute change of background pixels (background in both frames) between consecutive frames,
  in 0-255 grey levels: 0 for the renderer's own clips, which have a still background.
"""

from __future__ import annotations

import numpy as np

from ..data.procedural_video import DIRECTIONS
from .shapes_eval import THRESHOLD, _foreground, detect, evaluate_image

MIN_TRAVEL = 0.08
"""Fraction of the side the objects must move (the training clips travel 0.25-0.35)."""


def centroid(frame: np.ndarray, meta: dict) -> np.ndarray | None:
    """Mean box centre of the named objects (most confident ``count``), as fractions of the side; None if absent."""
    req = meta["include"][0]
    found = [d for d in detect(frame) if d.confidence > THRESHOLD and d.label == req["class"]
             and ("color" not in req or d.color == req["color"])][:req["count"]]
    if not found:
        return None
    boxes = np.array([d.box for d in found], dtype=np.float64)
    side = np.array(frame.shape[1::-1], dtype=np.float64)
    return ((boxes[:, :2] + boxes[:, 2:]) / 2).mean(0) / side


def motion_direction(frames: np.ndarray, meta: dict) -> tuple[bool, str]:
    points = [(t, c) for t, c in enumerate(centroid(f, meta) for f in frames) if c is not None]
    if len(points) < max(2, len(frames) // 2):
        return False, f"objects tracked in {len(points)} of {len(frames)} frames"
    a, b = points[0][1], points[-1][1]
    d = b - a
    axis = int(np.argmax(np.abs(d)))
    if abs(d[axis]) < MIN_TRAVEL:
        return False, f"moved {abs(d[axis]):.3f} of the side, less than {MIN_TRAVEL}"
    found = {(-1, 0): "left", (1, 0): "right", (-1, 1): "up", (1, 1): "down"}[(int(np.sign(d[axis])), axis)]
    want = meta["direction"]
    return found == want, f"moved {found}" + ("" if found == want else f", expected {want}")


def flicker(frames: np.ndarray) -> float:
    diffs = []
    masks = [_foreground(f) == 0 for f in frames]
    for t in range(1, len(frames)):
        both = masks[t] & masks[t - 1]
        if both.any():
            delta = np.abs(frames[t].astype(np.float32) - frames[t - 1].astype(np.float32)).mean(-1)
            diffs.append(float(delta[both].mean()))
    return float(np.mean(diffs)) if diffs else 0.0


def evaluate_video(frames: np.ndarray, meta: dict) -> dict:
    """(T, H, W, 3) uint8 frames against the caption's metadata."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    per_frame = [evaluate_image(f, {**meta, "tag": "counting" if meta["include"][0]["count"] > 1 else "single_object"})[0]
                 for f in frames]
    ok, reason = motion_direction(frames, meta)
    return {"frame_accuracy": float(np.mean(per_frame)), "motion": ok, "motion_reason": reason,
            "flicker": flicker(frames)}


def summarise(results: list[dict]) -> dict:
    """Means over clips, seen and held-out prompts apart; ``clips`` says on how many."""
    def block(rows):
        if not rows:
            return {}
        return {"frame_accuracy": round(float(np.mean([r["frame_accuracy"] for r in rows])), 4),
                "motion_accuracy": round(float(np.mean([r["motion"] for r in rows])), 4),
                "flicker": round(float(np.mean([r["flicker"] for r in rows])), 3), "clips": len(rows)}

    out = block(results)
    out["held_out"] = block([r for r in results if r.get("held_out")])
    out["per_direction"] = {d: block([r for r in results if r.get("direction") == d]) for d in DIRECTIONS}
    return out
