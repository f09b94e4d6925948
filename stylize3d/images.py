"""Image I/O for untrusted files (uploads, dataset frames): size checked before decoding, clear errors.

PIL reads only the header in ``Image.open``, so the pixel count is known before any pixel memory is allocated;
we refuse images above ``max_pixels`` with a message giving the size, instead of PIL's own decompression-bomb
warning/exception (whose threshold and wording we do not control).
"""

from __future__ import annotations

import io
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from stylize3d.atomic import atomic_write_bytes

logger = logging.getLogger(__name__)

MAX_PIXELS = 50_000_000
# What PIL and zlib raise on corrupt, truncated or unknown data (UnidentifiedImageError is an OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Image.DecompressionBombError)
# PIL's bomb limit is a module global; we lift it only around ``Image.open`` (header only), under a lock.
_PIL_LIMIT_LOCK = threading.Lock()

ImageSource = str | os.PathLike | bytes | bytearray


def _name(source: ImageSource) -> str:
    return "<in-memory image>" if isinstance(source, (bytes, bytearray)) else str(source)


@contextmanager
def _open_checked(source: ImageSource, max_pixels: int) -> Iterator[Image.Image]:
    """Open lazily (header only), refuse oversized images, and turn decode failures into ``ValueError``."""
    name = _name(source)
    if isinstance(source, (bytes, bytearray)):
        fp = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"{name} is not a readable image: no such file")
        fp = path
    try:
        with _PIL_LIMIT_LOCK:
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                im = Image.open(fp)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except _DECODE_ERRORS as e:
        raise ValueError(f"{name} is not a readable image: {e}") from e
    with im:
        w, h = im.size
        if w <= 0 or h <= 0:
            raise ValueError(f"{name} is not a readable image: size {w}x{h}")
        if w * h > max_pixels:
            raise ValueError(f"{name} is {w}x{h} = {w * h / 1e6:.1f} MP, over the limit of {max_pixels / 1e6:.1f} MP")
        try:
            yield im
        except _DECODE_ERRORS as e:
            raise ValueError(f"{name} is not a readable image: {e}") from e


def image_size(source: ImageSource, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the header alone, with the same checks as ``load_image``."""
    with _open_checked(source, max_pixels) as im:
        return im.size


def load_image(source: ImageSource, max_pixels: int = MAX_PIXELS, exif_transpose: bool = True,
               max_side: int | None = None, min_side: int = 1) -> torch.Tensor:
    """[H, W, 3] float32 in [0, 1]. Alpha is composited on white; grey, palette, CMYK and 16-bit become RGB.

    ``exif_transpose=False`` keeps the stored pixel grid, which is what dataset intrinsics refer to.
    ``max_side`` shrinks the image while it is still 8-bit (JPEG decodes at a reduced scale), so a 49 MP style
    image costs ~150 MB once, not gigabytes as float copies; ``min_side`` refuses images too small to use.
    """
    if not isinstance(source, (bytes, bytearray)) and Path(source).is_dir():
        raise ValueError(f"{_name(source)} is a folder, not an image file")
    with _open_checked(source, max_pixels) as im:
        if min(im.size) < min_side:
            raise ValueError(f"{_name(source)} is {im.size[0]}x{im.size[1]} pixels: too small, "
                             f"at least {min_side}x{min_side} needed")
        if max_side is not None and max(im.size) > max_side:
            im.draft("RGB", (max_side, max_side))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
        im.load()
        if exif_transpose:
            im = ImageOps.exif_transpose(im)
        if max_side is not None and max(im.size) > max_side:
            if im.mode not in ("RGB", "RGBA", "L", "LA"):
                im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
            im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return _to_rgb_float(im)


def _to_rgb_float(im: Image.Image) -> torch.Tensor:
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        # 16/32-bit greyscale: PIL's convert("RGB") would clip to 8 bits, so scale explicitly.
        grey = np.asarray(im, dtype=np.float32)
        grey = grey if im.mode == "F" else grey / 65535.0
        rgb = np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=-1)
        return torch.from_numpy(np.ascontiguousarray(rgb))
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0  # [H, W, 4]
        alpha = rgba[..., 3:]
        rgb = rgba[..., :3] * alpha + (1.0 - alpha)
        return torch.from_numpy(np.ascontiguousarray(rgb))
    rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(rgb))


def load_array(source: ImageSource, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decoded pixels in their stored mode, no conversion: [H, W] uint8/uint16/int32 for masks and depth PNGs,
    [H, W, C] for colour. Palette images give their indices (useful for instance masks)."""
    with _open_checked(source, max_pixels) as im:
        im.load()
        return np.array(im)


def to_uint8(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float in [0, 1] (clipped, NaN -> 0), bool, or integer 0..255 -> uint8 array of the same shape."""
    arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"to_uint8: integer image has values in [{arr.min()}, {arr.max()}], outside 0..255")
        return arr.astype(np.uint8)
    raise ValueError(f"to_uint8: unsupported dtype {arr.dtype}")


def save_png(path: str | os.PathLike, img: torch.Tensor | np.ndarray) -> Path:
    """Write a PNG atomically. Float/bool/uint8 [H, W] or [H, W, 1|3|4] become 8-bit; uint16 [H, W] stays
    16-bit (depth in millimetres, instance masks with many ids)."""
    arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"save_png({path}): image has shape {arr.shape}, expected [H, W] or [H, W, 3|4]")
    if arr.dtype == np.uint16:
        if arr.ndim != 2:
            raise ValueError(f"save_png({path}): 16-bit images must be single-channel [H, W], got {arr.shape}")
        pil = Image.fromarray(arr)  # mode I;16
    else:
        pil = Image.fromarray(to_uint8(arr))
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def long_side_size(width: int, height: int, px: int) -> tuple[int, int]:
    """(width, height) scaled so the longer side is ``px`` (aspect kept, each side at least 1)."""
    if px <= 0:
        raise ValueError(f"long side must be positive, got {px}")
    scale = px / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_long_side(img: torch.Tensor, px: int, mode: str = "bilinear") -> torch.Tensor:
    """[H, W, C] or [H, W] -> same layout with the longer side ``px``. Bilinear is antialiased when shrinking;
    use ``mode="nearest"`` for labels and depth, where blending values across edges would invent new ones."""
    h, w = img.shape[:2]
    new_w, new_h = long_side_size(w, h, px)
    if (new_w, new_h) == (w, h):
        return img
    x = img.reshape(h, w, -1).permute(2, 0, 1)[None]  # [1, C, H, W]
    if mode == "nearest":
        y = F.interpolate(x.float(), size=(new_h, new_w), mode="nearest-exact")  # exact for ids < 2^24
    else:
        y = F.interpolate(x.float(), size=(new_h, new_w), mode=mode, antialias=True, align_corners=False)
    y = y[0].permute(1, 2, 0).to(img.dtype)
    return y.reshape(new_h, new_w, *img.shape[2:]).contiguous()
