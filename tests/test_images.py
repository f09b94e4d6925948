import io
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from stylize3d.images import (
    image_size,
    load_array,
    load_image,
    long_side_size,
    resize_long_side,
    save_png,
    to_uint8,
)


def _png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _huge_bilevel_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of width x height built without PIL, so the test never holds the pixels in memory."""
    row = b"\x00" + bytes((width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def test_load_rgb_exact_from_path_and_bytes(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(arr).save(path)
    img = load_image(path)
    assert img.dtype == torch.float32 and img.shape == (7, 5, 3)
    assert torch.equal(img, torch.from_numpy(arr).float() / 255)
    assert torch.equal(load_image(path.read_bytes()), img)
    assert image_size(path) == (5, 7)


def test_rgba_composited_on_white():
    rgba = np.array([[[255, 0, 0, 0], [0, 0, 255, 255], [0, 0, 0, 102]]], dtype=np.uint8)  # [1, 3, 4]
    img = load_image(_png_bytes(Image.fromarray(rgba, "RGBA")))
    a = 102 / 255
    expected = torch.tensor([[[1.0, 1.0, 1.0], [0.0, 0.0, 1.0], [1 - a, 1 - a, 1 - a]]])
    assert torch.allclose(img, expected, atol=1e-6)


def test_grey_palette_and_16bit_become_rgb():
    grey = np.array([[0, 128, 255]], dtype=np.uint8)
    img = load_image(_png_bytes(Image.fromarray(grey, "L")))
    assert torch.equal(img, torch.from_numpy(grey).float()[..., None].expand(1, 3, 3) / 255)

    pal = Image.new("P", (2, 1))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putpixel((1, 0), 1)
    img = load_image(_png_bytes(pal))
    assert torch.allclose(img * 255, torch.tensor([[[10.0, 20, 30], [200, 100, 50]]]), atol=1e-4)

    deep = np.array([[0, 32768, 65535]], dtype=np.uint16)
    img = load_image(_png_bytes(Image.fromarray(deep)))
    assert torch.allclose(img[0, :, 0], torch.tensor([0.0, 32768 / 65535, 1.0]), atol=1e-6)
    assert torch.equal(img[..., 0], img[..., 2])


def test_exif_orientation_applied():
    arr = np.zeros((2, 4, 3), dtype=np.uint8)  # H=2, W=4
    arr[0, 0] = 255  # marker at top-left
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = _png_bytes(im, exif=exif.tobytes())
    img = load_image(data)
    assert img.shape == (4, 2, 3)
    assert img[0, 1].tolist() == [1.0, 1.0, 1.0] and img.sum() == 3  # top-left moved to top-right
    assert load_image(data, exif_transpose=False).shape == (2, 4, 3)


def test_non_image_and_truncated_and_missing(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("definitely not a png")
    with pytest.raises(ValueError, match=r"notes\.png is not a readable image"):
        load_image(text)
    noisy = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _png_bytes(Image.fromarray(noisy))
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.png is not a readable image"):
        load_image(cut)
    with pytest.raises(ValueError, match="not a readable image"):
        load_array(cut)
    with pytest.raises(ValueError, match="<in-memory image> is not a readable image"):
        load_image(b"")
    with pytest.raises(ValueError, match="no such file"):
        load_image(tmp_path / "missing.png")


def test_oversized_refused_from_header(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(_huge_bilevel_png(10000, 6000))  # 60 MP, ~6 KB on disk
    assert big.stat().st_size < 100_000
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"big\.png is 10000x6000 = 60\.0 MP, over the limit of 50\.0 MP"):
        load_image(big)
    assert time.perf_counter() - t0 < 0.5  # refused from the header, nothing decoded
    with pytest.raises(ValueError, match="10000x6000"):
        load_array(big)
    with pytest.raises(ValueError, match="over the limit of 0.1 MP"):
        load_image(_png_bytes(Image.new("RGB", (400, 300))), max_pixels=100_000)


def test_pil_bomb_error_replaced_by_our_message():
    limit = Image.MAX_IMAGE_PIXELS
    # 20000 x 20000 = 400 MP is over twice PIL's default limit: PIL alone would raise DecompressionBombError
    with pytest.raises(ValueError, match="20000x20000 = 400.0 MP"):
        load_image(_huge_bilevel_png(20000, 20000))
    assert Image.MAX_IMAGE_PIXELS == limit  # PIL's own guard is restored for everyone else


def test_save_png_roundtrip_and_16bit(tmp_path):
    img = torch.tensor([[[0.0, 0.5, 1.0], [0.2, 1.7, -0.3]]])  # out-of-range values are clipped
    p = save_png(tmp_path / "sub" / "a.png", img)
    back = load_image(p)
    assert torch.equal(back * 255, torch.tensor([[[0.0, 128, 255], [51, 255, 0]]]))
    depth = np.array([[0, 1, 65535], [1234, 40000, 7]], dtype=np.uint16)
    p16 = save_png(tmp_path / "d.png", depth)
    got = load_array(p16)
    assert got.dtype in (np.uint16, np.int32) and np.array_equal(got, depth)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["d.png", "sub"]
    with pytest.raises(ValueError, match="shape"):
        save_png(tmp_path / "bad.png", np.zeros((2, 2, 2), np.uint8))


def test_to_uint8():
    x = to_uint8(torch.tensor([0.0, 0.5, 1.0, 2.0, -1.0, float("nan")]))
    assert x.tolist() == [0, 128, 255, 255, 0, 0] and x.dtype == np.uint8
    assert to_uint8(np.array([True, False])).tolist() == [255, 0]
    assert to_uint8(np.array([3, 200], dtype=np.int64)).tolist() == [3, 200]
    with pytest.raises(ValueError, match="outside 0..255"):
        to_uint8(np.array([300]))


def test_resize_long_side():
    assert long_side_size(30, 20, 15) == (15, 10)
    assert long_side_size(1000, 3, 10) == (10, 1)
    img = torch.full((20, 30, 3), 0.25)
    small = resize_long_side(img, 15)
    assert small.shape == (10, 15, 3) and torch.allclose(small, torch.full_like(small, 0.25), atol=1e-6)
    assert resize_long_side(img, 30) is img
    labels = torch.randint(0, 5, (20, 30))
    lab_small = resize_long_side(labels, 10, mode="nearest")
    assert lab_small.shape == (7, 10) and lab_small.dtype == torch.long
    assert set(lab_small.unique().tolist()) <= set(labels.unique().tolist())
    with pytest.raises(ValueError, match="positive"):
        resize_long_side(img, 0)
