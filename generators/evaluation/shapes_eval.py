"""ShapesEval: GenEval's tasks and rules (djghosh13/geneval, ``evaluate_images.py``) on the procedural shapes.

An OpenCV detector stands in for Mask2Former (foreground against the border's colour, contours, shape by
nearest prototype of extent / solidity / circularity measured on the renderer's own shapes, a confidence from
that distance) and hue/value classes stand in for CLIP's colour judgement. The rules are GenEval's: detections
under 0.3 confidence (0.9 for counting) are dropped; an ``include`` needs ``count`` detections of its class, an
``exclude`` fails at ``count`` (so counting asks for exactly N); colour and position are judged on the most
confident ``count`` detections; position shrinks the offset of box centres by 0.1 x (size_a + size_b) per axis
and names a relation when the normalised offset passes 0.5. Overall = mean of the six task accuracies.
"""

from __future__ import annotations

import colorsys
import random
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ..data.procedural import (
    COLORS,
    HELD_OUT_PAIRS,
    RELATIONS,
    SHAPES,
    TASKS,
    Scene,
    Shape,
    render_scene,
    sample_scene,
)

THRESHOLD, COUNTING_THRESHOLD, POSITION_THRESHOLD = 0.3, 0.9, 0.1
CONFIDENCE_SCALE = 0.3
"""Feature distance at which confidence falls to 1/e."""


@dataclass
class Detection:
    label: str
    confidence: float
    box: tuple[float, float, float, float]
    """x0, y0, x1, y1 in pixels."""
    color: str


def _features(contour: np.ndarray) -> np.ndarray | None:
    area = cv2.contourArea(contour)
    if area <= 0:
        return None
    x, y, w, h = cv2.boundingRect(contour)
    hull = cv2.contourArea(cv2.convexHull(contour))
    perim = cv2.arcLength(contour, True)
    return np.array([area / (w * h), area / max(hull, 1e-6), 4 * np.pi * area / max(perim, 1e-6) ** 2,
                     min(w, h) / max(w, h)])


def _foreground(img: np.ndarray) -> np.ndarray:
    border = np.concatenate([img[:2].reshape(-1, 3), img[-2:].reshape(-1, 3), img[:, :2].reshape(-1, 3),
                             img[:, -2:].reshape(-1, 3)]).astype(np.float32)
    bg = np.median(border, axis=0)
    dist = np.linalg.norm(img.astype(np.float32) - bg, axis=-1)
    mask = (dist > 48).astype(np.uint8)
    k = np.ones((3, 3), np.uint8)
    return cv2.morphologyEx(cv2.morphologyEx(mask, cv2.MORPH_OPEN, k), cv2.MORPH_CLOSE, k)


def _contours(mask: np.ndarray, min_area: float) -> list[np.ndarray]:
    """Outer contours of at least ``min_area`` pixels; a region over half the image is background or a
    texture, not an object."""
    found, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    limit = 0.5 * mask.shape[0] * mask.shape[1]
    return [c for c in found if min_area <= cv2.contourArea(c) <= limit]


@lru_cache(maxsize=4)
def prototypes(size: int = 128) -> dict[str, np.ndarray]:
    """Features of each shape as the renderer draws it, one row per size (small shapes are rounder)."""
    protos = {}
    for shape in SHAPES:
        feats = []
        for s in np.linspace(0.12, 0.4, 8):
            for dx in (0.0, 0.37):  # sub-pixel placement changes the anti-aliased outline
                img = render_scene(Scene("", {}, [Shape(shape, "blue", 0.5 + dx / size, 0.5 + dx / size, s)]), size)
                (c,) = _contours(_foreground(img), 1)
                feats.append(_features(c))
        protos[shape] = np.stack(feats)
    return protos


_HSV_CONE = {}


def _cone(rgb) -> np.ndarray:
    h, s, v = colorsys.rgb_to_hsv(*(np.asarray(rgb, dtype=np.float64) / 255))
    return np.array([s * v * np.cos(2 * np.pi * h), s * v * np.sin(2 * np.pi * h), v])


def classify_color(rgb) -> str:
    """Nearest of GenEval's ten colours in the HSV cone (hue by angle, value by height)."""
    if not _HSV_CONE:
        _HSV_CONE.update({name: _cone(c) for name, c in COLORS.items()})
    p = _cone(rgb)
    return min(_HSV_CONE, key=lambda n: float(np.sum((_HSV_CONE[n] - p) ** 2)))


def detect(img: np.ndarray) -> list[Detection]:
    """Shapes in an (H, W, 3) uint8 image, most confident first."""
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {img.shape}")
    side = img.shape[0]
    protos = prototypes()
    mask = _foreground(img)
    out = []
    for c in _contours(mask, min_area=40 * (side / 128) ** 2):
        f = _features(c)
        if f is None:
            continue
        dists = {k: float(np.linalg.norm(f - p, axis=1).min()) for k, p in protos.items()}
        label = min(dists, key=dists.get)
        conf = float(np.exp(-(dists[label] / CONFIDENCE_SCALE) ** 2))
        region = np.zeros(mask.shape, np.uint8)
        cv2.drawContours(region, [c], -1, 1, thickness=-1)
        inner = cv2.erode(region, np.ones((3, 3), np.uint8)) if region.sum() > 60 else region
        color = classify_color(np.median(img[inner.astype(bool)], axis=0))
        x, y, w, h = cv2.boundingRect(c)
        out.append(Detection(label, conf, (x, y, x + w, y + h), color))
    return sorted(out, key=lambda d: -d.confidence)


def relative_position(a: Detection, b: Detection) -> set[str]:
    """GenEval's rule: relations of A to B from the shrunk, normalised offset of box centres."""
    boxes = np.array([a.box, b.box], dtype=np.float64).reshape(2, 2, 2)
    center_a, center_b = boxes.mean(axis=-2)
    dim_a, dim_b = np.abs(np.diff(boxes, axis=-2))[..., 0, :]
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - POSITION_THRESHOLD * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    rel = set()
    if dx < -0.5:
        rel.add("left of")
    if dx > 0.5:
        rel.add("right of")
    if dy < -0.5:
        rel.add("above")
    if dy > 0.5:
        rel.add("below")
    return rel


def evaluate_image(img: np.ndarray, meta: dict) -> tuple[bool, str]:
    """(correct, reason) for one image against its prompt's metadata, by GenEval's rules."""
    threshold = COUNTING_THRESHOLD if meta["tag"] == "counting" else THRESHOLD
    detected: dict[str, list[Detection]] = {}
    for d in detect(img):
        if d.confidence > threshold:
            detected.setdefault(d.label, []).append(d)
    groups: list[list[Detection]] = []
    for req in meta.get("include", []):
        found = detected.get(req["class"], [])[:req["count"]]
        groups.append(found)
        if len(found) < req["count"]:
            return False, f"expected {req['class']} >= {req['count']}, found {len(found)}"
        if "color" in req:
            colors = [d.color for d in found]
            if colors.count(req["color"]) != req["count"]:
                return False, f"expected {req['color']} {req['class']}, found {', '.join(colors)}"
        if "position" in req:
            relation, target = req["position"]
            for obj in found:
                for other in groups[target]:
                    if relation not in relative_position(obj, other):
                        return False, f"expected {req['class']} {relation} target, found {relative_position(obj, other)}"
    for req in meta.get("exclude", []):
        if len(detected.get(req["class"], [])) >= req["count"]:
            return False, f"expected {req['class']} < {req['count']}, found {len(detected[req['class']])}"
    return True, "correct"


def prompts(per_task: int = 16, seed: int = 2024) -> list[dict]:
    """The fixed prompt list: up to ``per_task`` distinct prompts per task, plus every held-out colour/shape pair for the
    ``colors`` and ``color_attr`` tasks (marked ``held_out``)."""
    rng = random.Random(seed)
    out: list[dict] = []
    seen: set[str] = set()

    def add(scene: Scene, held_out: bool) -> None:
        if scene.caption not in seen:
            seen.add(scene.caption)
            out.append({**scene.meta, "held_out": held_out})

    for tag in TASKS:
        n_before = len(out)
        for _ in range(50 * per_task):  # a task with fewer distinct prompts (single_object: 5) stops short
            if len(out) - n_before >= per_task:
                break
            kw = {}
            if tag == "counting":
                kw["count"] = rng.randint(2, 4)
            if tag == "position":
                kw["relation"] = RELATIONS[(len(out) - n_before) % 4]
            add(sample_scene(rng, tag, **kw), False)
    for color, shape in sorted(HELD_OUT_PAIRS):
        add(sample_scene(rng, "colors", held_out=True, classes=[shape], colors=[color]), True)
        other = rng.choice([s for s in SHAPES if s != shape])
        c2 = rng.choice([c for c in COLORS if c != color and (c, other) not in HELD_OUT_PAIRS])
        add(sample_scene(rng, "color_attr", held_out=True, classes=[shape, other], colors=[color, c2]), True)
    return out


def ground_truth(meta: dict, size: int = 128, seed: int = 0) -> np.ndarray:
    """An image the renderer draws for a prompt (what a perfect generator would make)."""
    include = meta["include"]
    kw = {"classes": [r["class"] for r in include], "held_out": True}
    if meta["tag"] == "position":
        kw["classes"] = [include[1]["class"], include[0]["class"]]
        kw["relation"] = include[1]["position"][0]
    colors = [r.get("color") for r in include]
    if meta["tag"] == "position":
        colors = colors[::-1]
    if all(colors):
        kw["colors"] = colors
    if meta["tag"] == "counting":
        kw["count"] = include[0]["count"]
    return render_scene(sample_scene(random.Random(seed), meta["tag"], **kw), size)


def score(results: list[dict]) -> dict:
    """``results``: one dict per image with ``tag``, ``held_out`` and ``correct``. GenEval's summary: accuracy
    per task, overall = mean of the task accuracies; held-out prompts also on their own."""
    by_task = {}
    for tag in TASKS:
        rows = [r["correct"] for r in results if r["tag"] == tag]
        if rows:
            by_task[tag] = float(np.mean(rows))
    held = [r["correct"] for r in results if r.get("held_out")]
    seen = [r for r in results if not r.get("held_out")]
    seen_tasks = [np.mean([r["correct"] for r in seen if r["tag"] == t]) for t in TASKS
                  if any(r["tag"] == t for r in seen)]
    return {"overall": float(np.mean(list(by_task.values()))) if by_task else None, "tasks": by_task,
            "seen_overall": float(np.mean(seen_tasks)) if seen_tasks else None,
            "held_out": float(np.mean(held)) if held else None, "held_out_images": len(held),
            "images": len(results)}
