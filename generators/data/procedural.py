"""Procedurally rendered images with captions, in two families.

Shapes (GenEval's colours, counts 1-4, relative positions) teach and test composition; textures (stripes, dots,
waves, mosaic tiles, brush strokes, checkers) make style images for 3D stylization. Each scene carries the
GenEval-style metadata of its caption (``Scene.meta``: task tag, ``include``/``exclude``), so the same code makes
the training captions, the evaluation prompts and their ground-truth images. Some colour/shape and colour/texture
combinations never appear in training (``HELD_OUT_*``) so evaluation can report them apart.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 30), "orange": (250, 135, 0), "yellow": (245, 215, 20), "green": (30, 150, 45),
    "blue": (30, 70, 215), "purple": (125, 40, 165), "pink": (250, 135, 195), "brown": (115, 65, 25),
    "black": (20, 20, 20), "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond")
TEXTURES: dict[str, str] = {  # kind -> the words a caption uses
    "stripes": "stripes", "dots": "polka dots", "waves": "waves", "mosaic": "mosaic tiles",
    "strokes": "brush strokes", "checkers": "checkers",
}
RELATIONS = ("left of", "right of", "above", "below")
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four"}
HELD_OUT_PAIRS = frozenset({("red", "star"), ("blue", "triangle"), ("yellow", "square"), ("purple", "circle"),
                            ("green", "diamond")})
"""(colour, shape) never drawn in training."""
HELD_OUT_TEXTURES = frozenset({("waves", "purple"), ("checkers", "green"), ("mosaic", "pink")})
"""(texture, colour) never drawn in training, in either colour slot."""
TASKS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
TASK_WEIGHTS = (1, 1.2, 1.4, 1, 1.4, 1.4)
"""How often each task's scenes are drawn (the harder ones a little more)."""


@dataclass
class Shape:
    shape: str
    color: str
    cx: float
    cy: float
    size: float
    """Centre and size as fractions of the image side."""


@dataclass
class Scene:
    caption: str
    meta: dict
    """GenEval-style: ``tag``, ``include`` (class/count/color/position), ``exclude``, ``prompt``."""
    shapes: list[Shape] = field(default_factory=list)
    texture: dict | None = None
    background: int = 150

    @property
    def held_out(self) -> bool:
        """Whether the caption names a combination that training never shows."""
        named = {(r["color"], r["class"]) for r in self.meta.get("include", []) if "color" in r}
        if self.texture is not None:
            return any((self.texture["kind"], c) in HELD_OUT_TEXTURES for c in self.texture["colors"])
        return bool(named & HELD_OUT_PAIRS)


def plural(shape: str) -> str:
    return shape + "s"


def article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def _pick_color(rng: random.Random, shape: str, held_out: bool, avoid: set[str] = frozenset()) -> str:
    choices = [c for c in COLORS if c not in avoid and (held_out or (c, shape) not in HELD_OUT_PAIRS)]
    return rng.choice(choices)


def _place(rng: random.Random, sizes: list[float], margin: float = 0.04, tries: int = 200) -> list[tuple]:
    """Non-overlapping centres for objects of the given sizes (fractions of the side)."""
    for _ in range(tries):
        placed: list[tuple[float, float, float]] = []
        for s in sizes:
            for _ in range(50):
                cx, cy = rng.uniform(s / 2 + margin, 1 - s / 2 - margin), rng.uniform(s / 2 + margin, 1 - s / 2 - margin)
                if all(max(abs(cx - x), abs(cy - y)) > (s + t) / 2 + margin for x, y, t in placed):
                    placed.append((cx, cy, s))
                    break
            else:
                break
        if len(placed) == len(sizes):
            return [(x, y) for x, y, _ in placed]
    raise RuntimeError(f"could not place {len(sizes)} objects")


def _place_relation(rng: random.Random, relation: str, sa: float, sb: float) -> list[tuple[float, float]]:
    """Centres of A and B with A ``relation`` B by a wide margin on that axis and a small one across it."""
    lo, hi = 0.04 + max(sa, sb) / 2, 0.96 - max(sa, sb) / 2
    near = rng.uniform(lo, min(hi, 0.42))
    far = rng.uniform(max(lo, 0.58, near + (sa + sb) / 2 + 0.12), hi)
    across = rng.uniform(lo + 0.05, hi - 0.05)
    jitter = rng.uniform(-0.06, 0.06)
    a_first = relation in ("left of", "above")
    a_main, b_main = (near, far) if a_first else (far, near)
    if relation in ("left of", "right of"):
        return [(a_main, across + jitter), (b_main, across - jitter)]
    return [(across + jitter, a_main), (across - jitter, b_main)]


def sample_scene(rng: random.Random, tag: str | None = None, *, held_out: bool = False, texture_share: float = 0.3,
                 task_weights: tuple = TASK_WEIGHTS, classes: list[str] | None = None, colors: list[str] | None = None, count: int | None = None,
                 relation: str | None = None) -> Scene:
    """A random scene and its caption. ``tag`` (a GenEval task, or ``"texture"``) and the keyword arguments fix
    what the caption names; the rest is drawn. ``held_out=False`` never draws a held-out combination."""
    if tag is None:
        if rng.random() < texture_share:
            tag = "texture"
        else:
            tag = rng.choices(TASKS, weights=task_weights)[0]
    if tag == "texture":
        return _texture_scene(rng, held_out, kind=classes[0] if classes else None, colors=colors)
    bg = rng.randint(130, 170)
    n_classes = 1 if tag in ("single_object", "colors", "counting") else 2
    classes = list(classes) if classes else rng.sample(SHAPES, n_classes)
    if tag == "counting":
        count = count or rng.randint(1, 4)
        shape = classes[0]
        same = rng.random() < 0.5
        c0 = colors[0] if colors else _pick_color(rng, shape, held_out)
        cols = [c0 if same or colors else _pick_color(rng, shape, held_out) for _ in range(count)]
        sizes = [rng.uniform(0.16, 0.26) for _ in range(count)]
        centres = _place(rng, sizes)
        shapes = [Shape(shape, c, x, y, s) for c, (x, y), s in zip(cols, centres, sizes)]
        named = same and rng.random() < 0.3
        words = f"{NUMBERS[count]} {c0 + ' ' if named else ''}{shape if count == 1 else plural(shape)}"
        caption = f"a photo of {words}"
        include = [{"class": shape, "count": count, **({"color": c0} if named else {})}]
        meta = {"tag": tag, "include": include, "exclude": [{"class": shape, "count": count + 1}]}
        return Scene(caption, {**meta, "prompt": caption}, shapes, background=bg)

    cols = list(colors) if colors else []
    for i in range(len(cols), n_classes):
        cols.append(_pick_color(rng, classes[i], held_out, avoid=set(cols)))
    named_colors = tag in ("colors", "color_attr") or (tag == "position" and rng.random() < 0.3)
    sizes = [rng.uniform(0.22, 0.36 if n_classes == 1 else 0.3) for _ in classes]
    if tag == "position":
        relation = relation or rng.choice(RELATIONS)
        centres = _place_relation(rng, relation, *sizes)
    else:
        centres = _place(rng, sizes)
    shapes = [Shape(k, c, x, y, s) for k, c, (x, y), s in zip(classes, cols, centres, sizes)]
    names = [f"{c} {k}" if named_colors else k for k, c in zip(classes, cols)]
    include = [{"class": k, "count": 1, **({"color": c} if named_colors else {})} for k, c in zip(classes, cols)]
    if tag == "position":
        caption = f"a photo of {article(names[0])} {relation} {article(names[1])}"
        include = [include[1], {**include[0], "position": [relation, 0]}]
    elif n_classes == 2:
        caption = f"a photo of {article(names[0])} and {article(names[1])}"
    else:
        caption = f"a photo of {article(names[0])}"
    return Scene(caption, {"tag": tag, "include": include, "prompt": caption}, shapes, background=bg)


def _texture_scene(rng: random.Random, held_out: bool, kind: str | None = None,
                   colors: list[str] | None = None) -> Scene:
    kind = kind or rng.choice(list(TEXTURES))
    allowed = [c for c in COLORS if held_out or (kind, c) not in HELD_OUT_TEXTURES]
    cols = list(colors) if colors else rng.sample(allowed, 2)
    words = TEXTURES[kind]
    caption = (f"a pattern of {cols[0]} and {cols[1]} {words}" if rng.random() < 0.7
               else f"{cols[0]} {words} on {cols[1]}")
    params = {"kind": kind, "colors": cols, "seed": rng.randrange(1 << 30), "scale": rng.uniform(0.7, 1.4),
              "angle": rng.choice([0, 45, 90, 135]) + rng.uniform(-10, 10)}
    return Scene(caption, {"tag": "texture", "include": [], "prompt": caption}, texture=params)


def shape_polygon(s: Shape, side: float) -> list[tuple[float, float]] | None:
    """Outline of a shape in pixels (None for a circle, drawn as an ellipse)."""
    cx, cy, r = s.cx * side, s.cy * side, s.size * side / 2
    if s.shape == "circle":
        return None
    if s.shape == "square":
        h = r * 0.88
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if s.shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if s.shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)]
    if s.shape == "star":
        pts = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            rr = r if k % 2 == 0 else r * 0.45
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a) + r * 0.08))
        return pts
    raise ValueError(f"unknown shape {s.shape!r}")


def render_scene(scene: Scene, size: int = 128, supersample: int = 2) -> np.ndarray:
    """The scene as an (size, size, 3) uint8 image, anti-aliased by supersampling."""
    big = size * supersample
    if scene.texture is not None:
        img = _render_texture(scene.texture, big)
    else:
        im = Image.new("RGB", (big, big), (scene.background,) * 3)
        draw = ImageDraw.Draw(im)
        for s in scene.shapes:
            poly = shape_polygon(s, big)
            if poly is None:
                r = s.size * big / 2
                draw.ellipse([s.cx * big - r, s.cy * big - r, s.cx * big + r, s.cy * big + r], fill=COLORS[s.color])
            else:
                draw.polygon(poly, fill=COLORS[s.color])
        img = np.asarray(im)
    if supersample > 1:
        img = img.reshape(size, supersample, size, supersample, 3).mean(axis=(1, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _render_texture(p: dict, n: int) -> np.ndarray:
    rng = np.random.default_rng(p["seed"])
    c1, c2 = (np.array(COLORS[c], dtype=np.float32) for c in p["colors"])
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    period = n / 7 * p["scale"]
    a = math.radians(p["angle"])
    u, v = x * math.cos(a) + y * math.sin(a), -x * math.sin(a) + y * math.cos(a)
    kind = p["kind"]
    if kind == "stripes":
        mask = (u % period) < period / 2
    elif kind == "checkers":
        mask = ((u // period) + (v // period)) % 2 == 0
    elif kind == "waves":
        mask = ((v + period * 0.35 * np.sin(2 * math.pi * u / (period * 2.5))) % period) < period / 2
    elif kind == "dots":
        pu, pv = u % period - period / 2, v % period - period / 2
        mask = pu ** 2 + pv ** 2 < (period * 0.3) ** 2
    elif kind == "mosaic":
        return _mosaic(rng, x, y, period * 0.8, c1, c2)
    elif kind == "strokes":
        return _strokes(rng, n, period, c1, c2)
    else:
        raise ValueError(f"unknown texture {kind!r}")
    return np.where(mask[..., None], c1, c2)


def _mosaic(rng, x, y, cell, c1, c2) -> np.ndarray:
    n = x.shape[0]
    g = int(math.ceil(n / cell)) + 2
    centres = (np.stack(np.meshgrid(np.arange(-1, g - 1), np.arange(-1, g - 1)), -1).reshape(-1, 2)
               + rng.uniform(0.15, 0.85, size=(g * g, 2))) * cell
    d = ((x[..., None] - centres[:, 0]) ** 2 + (y[..., None] - centres[:, 1]) ** 2)
    two = np.partition(d, 1, axis=-1)[..., :2]
    nearest = d.argmin(-1)
    pick = rng.random(len(centres)) < 0.5
    shade = rng.uniform(0.85, 1.1, size=len(centres))[:, None]
    tiles = np.where(pick[:, None], c1, c2) * shade
    img = tiles[nearest]
    grout = (np.sqrt(two[..., 1]) - np.sqrt(two[..., 0])) < cell * 0.08
    return np.where(grout[..., None], np.float32(60), img)


def _strokes(rng, n, period, c1, c2) -> np.ndarray:
    im = Image.new("RGB", (n, n), tuple(int(v) for v in c2))
    draw = ImageDraw.Draw(im)
    width = max(2, int(period * 0.45))
    base = rng.uniform(0, math.pi)
    for _ in range(int(3 * n / period)):
        x0, y0 = rng.uniform(-0.1, 1.1, 2) * n
        a = base + rng.normal(0, 0.35)
        length = rng.uniform(1.5, 3.5) * period
        pts = []
        for t in np.linspace(0, 1, 8):
            bend = math.sin(t * math.pi) * length * 0.15
            pts.append((x0 + t * length * math.cos(a) - bend * math.sin(a), y0 + t * length * math.sin(a) + bend * math.cos(a)))
        shade = rng.uniform(0.8, 1.15)
        draw.line(pts, fill=tuple(int(min(255, v * shade)) for v in c1), width=width, joint="curve")
    return np.asarray(im).astype(np.float32)


class ProceduralDataset:
    """Index -> (image in [-1, 1], CHW float32; caption). Deterministic per (seed, index); never ends unless
    ``length`` is given."""

    def __init__(self, size: int = 128, seed: int = 0, length: int = 1 << 30, texture_share: float = 0.3,
                 task_weights: tuple = TASK_WEIGHTS):
        if len(task_weights) != len(TASKS) or min(task_weights) < 0 or sum(task_weights) <= 0:
            raise ValueError(f"task_weights: {len(TASKS)} non-negative numbers, not all 0 ({', '.join(TASKS)})")
        if not 0 <= texture_share <= 1:
            raise ValueError(f"texture_share must lie in [0, 1], not {texture_share}")
        self.size, self.seed, self.length, self.texture_share = size, seed, length, texture_share
        self.task_weights = tuple(task_weights)

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> Scene:
        return sample_scene(random.Random(self.seed * 1_000_003 + index), texture_share=self.texture_share,
                            task_weights=self.task_weights)

    def __getitem__(self, index: int):
        import torch

        scene = self.scene(index)
        img = torch.from_numpy(render_scene(scene, self.size)).permute(2, 0, 1).float() / 127.5 - 1
        return {"pixel_values": img, "caption": scene.caption}
