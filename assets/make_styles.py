"""Generate the built-in style images (512x512 PNG) in ``assets/styles/``.

Procedural and deterministic (fixed seeds, numpy + OpenCV drawing), so the committed PNGs can be rebuilt
exactly: ``python assets/make_styles.py``. Each image is a distinct, recognisable style with its own palette:
stained-glass mosaic, bold brush strokes, woodcut waves, pointillist dots, starry ember swirls.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

SIZE = 512
OUT_DIR = Path(__file__).resolve().parent / "styles"


def smooth_noise(rng: np.random.Generator, cells: int, size: int = SIZE) -> np.ndarray:
    """Value noise in [0, 1]: a ``cells x cells`` random grid upsampled bicubically -> ``[size, size]``."""
    grid = rng.random((cells + 3, cells + 3)).astype(np.float32)
    big = cv2.resize(
        grid, (size + 3 * size // cells, size + 3 * size // cells), interpolation=cv2.INTER_CUBIC
    )
    off = size // cells
    out = big[off : off + size, off : off + size]
    return (out - out.min()) / (out.max() - out.min() + 1e-8)


def palette_lookup(t: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Map ``t`` in [0, 1] piecewise-linearly through ``palette [K, 3]`` -> ``[..., 3]`` float colours."""
    x = np.clip(t, 0, 1) * (len(palette) - 1)
    i = np.minimum(np.floor(x).astype(int), len(palette) - 2)
    f = (x - i)[..., None]
    return palette[i] * (1 - f) + palette[i + 1] * f


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def mosaic(seed: int = 1) -> np.ndarray:
    """Stained glass: Voronoi cells of jewel-tone glass, lighter at the centre, with dark lead lines."""
    rng = np.random.default_rng(seed)
    n = 11
    gy, gx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    pts = (np.stack([gx, gy], -1).reshape(-1, 2) + 0.15 + 0.7 * rng.random((n * n, 2))) * SIZE / n  # [P, 2]
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    pix = np.stack([xx, yy], -1).reshape(-1, 1, 2)
    dist = np.sqrt(((pix - pts[None]) ** 2).sum(-1))  # [H*W, P]
    order = np.argpartition(dist, 1, axis=1)[:, :2]
    d1 = np.take_along_axis(dist, order[:, :1], 1)[:, 0]
    d2 = np.take_along_axis(dist, order[:, 1:2], 1)[:, 0]
    owner = order[:, 0]
    palette = np.array([[190, 25, 45], [25, 55, 170], [20, 140, 75], [240, 170, 25], [115, 35, 150],
                        [25, 165, 185], [230, 95, 20], [235, 215, 170], [160, 200, 40]], np.float32)  # fmt: skip
    cell_col = palette[rng.integers(0, len(palette), len(pts))] * (0.85 + 0.3 * rng.random((len(pts), 1)))
    col = cell_col[owner]  # [H*W, 3]
    glow = np.exp(-((d1 / (SIZE / n * 0.55)) ** 2))[:, None]  # lighter at the cell centre
    grain = smooth_noise(rng, 64).reshape(-1, 1)
    col = col * (0.7 + 0.35 * glow + 0.15 * grain)
    lead = np.clip((d2 - d1 - 3.0) / 1.5, 0, 1)[:, None]  # 0 on the lead line, antialiased edge
    col = col * lead + np.array([22, 18, 20], np.float32) * (1 - lead)
    return to_uint8(col.reshape(SIZE, SIZE, 3))


def flow_strokes(
    canvas: np.ndarray,
    rng: np.random.Generator,
    angle: np.ndarray,
    colour_of: Callable[[float, float], np.ndarray],
    count: int,
    length: tuple[int, int],
    width: tuple[int, int],
    step: float = 3.0,
    bristles: bool = True,
) -> None:
    """Draw ``count`` brush strokes that follow the ``angle`` field; ``colour_of(x, y)`` picks each colour."""
    for _ in range(count):
        x, y = rng.random(2) * SIZE
        pts = []
        for _ in range(int(rng.integers(*length) / step)):
            pts.append((x, y))
            a = angle[int(np.clip(y, 0, SIZE - 1)), int(np.clip(x, 0, SIZE - 1))]
            x, y = x + step * np.cos(a), y + step * np.sin(a)
        if len(pts) < 2:
            continue
        pts = np.array(pts)
        colour = np.asarray(colour_of(*pts[0]), np.float32)
        w = int(rng.integers(*width))
        cv2.polylines(canvas, [np.round(pts * 4).astype(np.int32)], False, colour.tolist(), w, cv2.LINE_AA, 2)
        if not bristles:
            continue
        d = pts[-1] - pts[0]
        normal = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-6)
        for k in np.linspace(-0.35, 0.35, 4):
            shade = colour * (0.75 + 0.5 * rng.random())
            off = np.round((pts + normal * k * w) * 4).astype(np.int32)
            cv2.polylines(canvas, [off], False, np.clip(shade, 0, 255).tolist(), 1, cv2.LINE_AA, 2)


def strokes(seed: int = 2) -> np.ndarray:
    """Bold impasto brush strokes in a warm/cool palette, following a swirling flow field."""
    rng = np.random.default_rng(seed)
    palette = np.array([[30, 45, 110], [40, 110, 170], [90, 160, 90], [235, 200, 60], [225, 110, 40],
                        [170, 40, 50], [245, 235, 210]], np.float32)  # fmt: skip
    tone = smooth_noise(rng, 5)
    angle = smooth_noise(rng, 4) * 2 * np.pi
    canvas = to_uint8(palette_lookup(tone, palette) * 0.8)

    def colour_of(x: float, y: float) -> np.ndarray:
        t = tone[int(np.clip(y, 0, SIZE - 1)), int(np.clip(x, 0, SIZE - 1))] + rng.normal(0, 0.12)
        return palette_lookup(np.array(t), palette) * (0.8 + 0.35 * rng.random())

    flow_strokes(canvas, rng, angle, colour_of, count=900, length=(25, 70), width=(9, 17))
    flow_strokes(canvas, rng, angle, colour_of, count=600, length=(15, 40), width=(5, 9))
    return canvas


def waves(seed: int = 3) -> np.ndarray:
    """Woodcut waves: curling bands of indigo and teal cut by dark carving lines, cream foam crests, red sun."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    warp = 0.09 * np.sin(2 * np.pi * (xx * 2.2 + yy * 0.6)) + 0.05 * np.sin(2 * np.pi * (xx * 5.1 - yy * 1.3))
    f = yy * 7.0 + warp * 7.0 + 0.6 * smooth_noise(rng, 6)  # band coordinate
    band, frac = np.floor(f), f - np.floor(f)
    palette = np.array([[20, 35, 85], [35, 80, 140], [70, 140, 165], [25, 55, 115]], np.float32)
    img = palette[band.astype(int) % len(palette)]
    img = img * (0.8 + 0.3 * frac[..., None])  # darker at the band's bottom edge
    carve = (np.abs(((frac * 5.0) % 1.0) - 0.5) > 0.38) & (frac > 0.25)  # thin carved lines inside a band
    img[carve] = img[carve] * 0.45
    crest = frac < 0.12 + 0.06 * np.sin(xx * 90)  # scalloped foam along the top of each band
    img[crest] = np.array([240, 232, 205], np.float32)
    sky = yy < 0.13 + 0.03 * np.sin(2 * np.pi * xx * 1.5)
    img[sky] = (np.array([238, 222, 185], np.float32) * (0.92 + 0.08 * smooth_noise(rng, 20)[..., None]))[sky]
    img = to_uint8(img)
    cv2.circle(img, (390 * 4, 36 * 4), 26 * 4, (200, 45, 40), -1, cv2.LINE_AA, 2)
    paper = (smooth_noise(rng, 96)[..., None] * 16 - 8).astype(np.float32)  # wood-grain / paper mottling
    return to_uint8(img.astype(np.float32) + paper)


def dots(seed: int = 4) -> np.ndarray:
    """Pointillism: dense dabs of pure colour over a sunny landscape, neighbouring hues mixed by the eye."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    sky = palette_lookup(
        1 - yy / 0.45, np.array([[70, 140, 230], [150, 200, 240], [255, 190, 120]], np.float32)
    )
    meadow = np.array([[30, 120, 70], [120, 180, 40], [240, 150, 40], [200, 60, 60]], np.float32)
    field = palette_lookup(smooth_noise(rng, 4), meadow)
    horizon = 0.45 + 0.05 * np.sin(xx * 7)
    base = np.where((yy < horizon)[..., None], sky, field)
    sun = np.clip(1.5 * np.exp(-(((xx - 0.3) ** 2 + (yy - 0.2) ** 2) / 0.01)), 0, 1)[..., None]
    base = base * (1 - sun) + np.array([255, 215, 50], np.float32) * sun
    canvas = np.full((SIZE, SIZE, 3), (245, 238, 220), np.uint8)
    accents = np.array(
        [[230, 60, 80], [60, 80, 210], [250, 200, 40], [40, 170, 160], [200, 90, 200]], np.float32
    )
    n = 20000
    pos = rng.random((n, 2)) * SIZE
    for (x, y), r in zip(pos, rng.integers(3, 6, n)):
        c = base[int(y), int(x)]
        if rng.random() < 0.25:  # complementary accents, as Seurat did
            c = 0.5 * c + 0.5 * accents[rng.integers(len(accents))]
        c = np.clip(c * (0.85 + 0.3 * rng.random()), 0, 255)
        cv2.circle(canvas, (int(x * 4), int(y * 4)), int(r * 4), c.tolist(), -1, cv2.LINE_AA, 2)
    return canvas


def embers(seed: int = 5) -> np.ndarray:
    """Starry swirls: glowing orange/gold dashes curling around vortices on a deep night blue, with stars."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    centres = rng.random((5, 2)) * SIZE
    vx, vy = np.full_like(xx, 0.6), np.full_like(xx, 0.1)
    swirl = np.zeros_like(xx)
    for cx, cy in centres:
        dx, dy = xx - cx, yy - cy
        g = np.exp(-(dx**2 + dy**2) / (2 * 70.0**2))
        vx, vy, swirl = vx - dy / 40 * g, vy + dx / 40 * g, swirl + g
    angle = np.arctan2(vy, vx)
    swirl = np.clip(swirl, 0, 1)
    canvas = to_uint8(
        palette_lookup(yy / SIZE, np.array([[10, 15, 45], [25, 40, 95], [15, 25, 60]], np.float32))
    )
    cool = np.array([[30, 60, 140], [60, 110, 190], [120, 170, 220]], np.float32)
    hot = np.array([[180, 50, 20], [235, 120, 30], [250, 200, 70], [255, 245, 200]], np.float32)

    def colour_of(x: float, y: float) -> np.ndarray:
        s = swirl[int(np.clip(y, 0, SIZE - 1)), int(np.clip(x, 0, SIZE - 1))]
        if rng.random() < s:
            return palette_lookup(np.array(rng.random()), hot)
        return palette_lookup(np.array(rng.random()), cool)

    flow_strokes(
        canvas, rng, angle, colour_of, count=2600, length=(12, 30), width=(3, 6), step=2.0, bristles=False
    )
    img = canvas.astype(np.float32)
    for x, y in rng.random((9, 2)) * SIZE:  # stars: a hard core in a soft halo
        r2 = (xx - x) ** 2 + (yy - y) ** 2
        size = rng.uniform(6, 12)
        halo = (0.85 * np.exp(-r2 / (2 * (2.5 * size) ** 2)))[..., None]
        core = np.clip((size - np.sqrt(r2)) / 1.5, 0, 1)[..., None]
        img = img * (1 - halo) + np.array([250, 215, 110], np.float32) * halo
        img = img * (1 - core) + np.array([255, 250, 215], np.float32) * core
    return to_uint8(img)


STYLES = {"mosaic": mosaic, "strokes": strokes, "waves": waves, "dots": dots, "embers": embers}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, make in STYLES.items():
        path = args.out / f"{name}.png"
        Image.fromarray(make()).save(path, optimize=True)
        logger.info("wrote %s (%d kB)", path, path.stat().st_size // 1024)


if __name__ == "__main__":
    main()
