"""Procedural videos of moving shapes with captions ("two blue squares moving left"), for the streaming model.

Each clip: 1-3 shapes of one kind and colour on a grey background, all moving the same way (left, right, up
or down) at a constant speed that keeps them in frame, rendered frame by frame with the image family's
renderer. Some (colour, direction) and (shape, direction) combinations never appear in training
(``HELD_OUT_MOTIONS``), so evaluation can report them apart. ``Scene.meta`` carries what the caption names, in
the form ShapesEval and the motion check read.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from .procedural import COLORS, NUMBERS, SHAPES, Scene, Shape, _place, article, plural, render_scene

DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
HELD_OUT_MOTIONS = frozenset({("red", "up"), ("blue", "left"), ("star", "down"), ("square", "right")})
"""(colour or shape, direction) never drawn in training."""


@dataclass
class VideoScene:
    caption: str
    meta: dict
    """``tag`` "motion", ``include`` (class/count/color as for ShapesEval), ``direction``, ``prompt``."""
    shapes: list[Shape]
    velocity: tuple[float, float]
    """Displacement per frame as fractions of the side."""
    background: int = 150

    @property
    def held_out(self) -> bool:
        d = self.meta["direction"]
        return any((k, d) in HELD_OUT_MOTIONS for k in (self.shapes[0].color, self.shapes[0].shape))

    def frame(self, t: int) -> Scene:
        vx, vy = self.velocity
        moved = [Shape(s.shape, s.color, s.cx + vx * t, s.cy + vy * t, s.size) for s in self.shapes]
        return Scene(self.caption, self.meta, moved, background=self.background)


def sample_video_scene(rng: random.Random, frames: int, *, held_out: bool = False, direction: str | None = None,
                       shape: str | None = None, color: str | None = None, count: int | None = None) -> VideoScene:
    """A random clip of ``frames`` frames; keyword arguments fix what the caption names. ``held_out=False``
    never draws a held-out combination."""
    for _ in range(1000):
        d = direction or rng.choice(list(DIRECTIONS))
        k = shape or rng.choice(SHAPES)
        c = color or rng.choice(list(COLORS))
        if held_out or not ({(k, d), (c, d)} & HELD_OUT_MOTIONS):
            break
    else:
        raise ValueError(f"every combination asked for is held out: {direction}, {shape}, {color}")
    n = count or rng.choices((1, 2, 3), weights=(3, 2, 1))[0]
    size = rng.uniform(0.16, 0.21) if n > 1 else rng.uniform(0.18, 0.28)  # the detector needs 0.16 for stars
    travel = rng.uniform(0.25, 0.35)  # of the side, over the whole clip
    dx, dy = DIRECTIONS[d]
    # Place the objects in a unit square that stands for the start region (1 - travel long on the motion
    # axis), then squeeze that axis into it: the whole path stays in frame and the objects never overlap.
    span = 1.0 - travel
    start = []
    for x, y in _place(rng, [size / span] * n, margin=0.04 / span):
        if dx:
            x = x * span + (travel if dx < 0 else 0.0)
        if dy:
            y = y * span + (travel if dy < 0 else 0.0)
        start.append((x, y))
    v = (dx * travel / max(frames - 1, 1), dy * travel / max(frames - 1, 1))
    shapes = [Shape(k, c, x, y, size) for x, y in start]
    named_color = rng.random() < 0.8
    what = f"{c} {k}" if named_color else k
    words = article(what) if n == 1 else f"{NUMBERS[n]} {plural(what)}"
    caption = f"{words} moving {d}"
    include = [{"class": k, "count": n, **({"color": c} if named_color else {})}]
    meta = {"tag": "motion", "include": include, "exclude": [{"class": k, "count": n + 1}], "direction": d,
            "prompt": caption}
    return VideoScene(caption, meta, shapes, v, background=rng.randint(130, 170))


def render_video(scene: VideoScene, frames: int, size: int = 128) -> np.ndarray:
    """(frames, size, size, 3) uint8."""
    return np.stack([render_scene(scene.frame(t), size) for t in range(frames)])


class ProceduralVideoDataset:
    """Index -> VideoScene, deterministic per (seed, index)."""

    def __init__(self, frames: int = 8, size: int = 128, seed: int = 0):
        self.frames, self.size, self.seed = frames, size, seed

    def scene(self, i: int) -> VideoScene:
        return sample_video_scene(random.Random(self.seed * 1_000_003 + i), self.frames)

    def __getitem__(self, i: int) -> tuple[np.ndarray, str]:
        s = self.scene(i)
        return render_video(s, self.frames, self.size), s.caption


def video_prompts(per_direction: int = 4, seed: int = 7) -> list[dict]:
    """Evaluation prompts: ``per_direction`` seen clips per direction plus every held-out combination once."""
    rng = random.Random(seed)
    out = []
    for d in DIRECTIONS:
        for _ in range(per_direction):
            out.append({**sample_video_scene(rng, 8, direction=d).meta, "held_out": False})
    for k, d in sorted(HELD_OUT_MOTIONS):
        kw = {"color": k} if k in COLORS else {"shape": k}
        out.append({**sample_video_scene(rng, 8, held_out=True, direction=d, **kw).meta, "held_out": True})
    return out
