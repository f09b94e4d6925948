"""The standard 3DGS ``.ply``: read any that the reference code or nerfstudio writes, write one they all read.

Layout (all float32, one ``vertex`` element): x y z nx ny nz f_dc_0..2 f_rest_0..(3K-1) opacity scale_0..2
rot_0..3. ``f_rest`` is channel-major (index c*K + k for colour channel c and SH basis k). We append an int
``label`` property and ``comment object <id> "<name>"`` header lines (JSON-quoted, ASCII) so our object labels round-trip; other
viewers ignore both. Parsing is plain numpy on a structured dtype built from the header, checked at every step
because the file may come from an upload.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import torch

from stylize3d.atomic import atomic_open
from stylize3d.gaussians import GaussianScene, num_sh_bases

logger = logging.getLogger(__name__)

MAX_VERTICES = 20_000_000
MAX_HEADER_BYTES = 1 << 20
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": None}
_REQUIRED = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"]
_F_REST = re.compile(r"f_rest_(\d+)$")
_VALID_F_REST = {3 * (num_sh_bases(d) - 1): d for d in range(4)}  # {0: 0, 9: 1, 24: 2, 45: 3}


class _Element:
    def __init__(self, name: str, count: int):
        self.name = name
        self.count = count
        self.props: list[tuple[str, str]] = []  # (name, numpy type code)
        self.has_list = False


def _parse_header(f, path: Path) -> tuple[str | None, list[_Element], dict[int, str]]:
    """Returns (byte order or None for ascii, elements, object names); leaves ``f`` at the body."""
    if f.readline(8).rstrip(b"\r\n") != b"ply":
        raise ValueError(f"{path} is not a PLY file (bad magic)")
    order, fmt_seen, elements, names = None, False, [], {}
    read = 0
    while True:
        raw = f.readline(MAX_HEADER_BYTES)
        read += len(raw)
        if not raw or read >= MAX_HEADER_BYTES:
            raise ValueError(f"{path}: PLY header has no end_header within {MAX_HEADER_BYTES} bytes")
        line = raw.decode("utf-8", errors="replace").strip()
        words = line.split()
        if not words:
            continue
        key = words[0]
        if key == "end_header":
            break
        if key == "format":
            if len(words) != 3 or words[1] not in _FORMATS:
                raise ValueError(f"{path}: unsupported PLY format {line!r} (expected one of {sorted(_FORMATS)})")
            order, fmt_seen = _FORMATS[words[1]], True
        elif key == "comment" and len(words) >= 3 and words[1] == "object":
            oid, _, name = line.split(None, 2)[2].partition(" ")
            if oid.lstrip("-").isdigit():
                names[int(oid)] = _decode_name(name)
        elif key == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise ValueError(f"{path}: bad PLY element line {line!r}")
            elements.append(_Element(words[1], int(words[2])))
        elif key == "property":
            if not elements:
                raise ValueError(f"{path}: PLY property before any element: {line!r}")
            if len(words) >= 2 and words[1] == "list":
                elements[-1].has_list = True
                continue
            if len(words) != 3 or words[1] not in _PLY_TYPES:
                raise ValueError(f"{path}: unsupported PLY property {line!r}")
            if any(words[2] == n for n, _ in elements[-1].props):
                raise ValueError(f"{path}: duplicate PLY property {words[2]!r} in element '{elements[-1].name}'")
            elements[-1].props.append((words[2], _PLY_TYPES[words[1]]))
        elif key not in ("comment", "obj_info"):
            raise ValueError(f"{path}: unexpected PLY header line {line!r}")
    if not fmt_seen:
        raise ValueError(f"{path}: PLY header has no format line")
    return order, elements, names


def _read_vertices(f, path: Path, order: str | None, elements: list[_Element]) -> np.ndarray:
    """Structured array [N] of the vertex element, after size checks that come before any allocation."""
    idx = next((i for i, e in enumerate(elements) if e.name == "vertex"), None)
    if idx is None:
        raise ValueError(f"{path}: PLY has no 'vertex' element")
    vert = elements[idx]
    if vert.count == 0:
        raise ValueError(f"{path}: PLY has zero vertices")
    if vert.count > MAX_VERTICES:
        raise ValueError(f"{path}: PLY declares {vert.count:,} vertices, over the limit of {MAX_VERTICES:,}")
    if vert.has_list:
        raise ValueError(f"{path}: list properties on the vertex element are not supported")
    if order is None:
        return _read_ascii_vertices(f, path, elements[:idx], vert)
    skip = 0
    for e in elements[:idx]:
        if e.has_list:
            raise ValueError(f"{path}: element '{e.name}' with list properties before 'vertex' is not supported")
        skip += e.count * np.dtype([(n, order + t) for n, t in e.props]).itemsize
    dtype = np.dtype([(n, order + t) for n, t in vert.props])
    need = vert.count * dtype.itemsize
    have = os.fstat(f.fileno()).st_size - f.tell() - skip
    if have < need:
        raise ValueError(f"{path}: truncated PLY body: {vert.count:,} vertices need {need:,} bytes, "
                         f"the file has {max(have, 0):,}")
    f.seek(skip, os.SEEK_CUR)
    return np.frombuffer(f.read(need), dtype=dtype, count=vert.count)


def _read_ascii_vertices(f, path: Path, before: list[_Element], vert: _Element) -> np.ndarray:
    lines = f.read().splitlines()
    start = sum(e.count for e in before)
    rows = [ln.split() for ln in lines[start:start + vert.count]]
    if len(rows) < vert.count:
        raise ValueError(f"{path}: truncated PLY body: {vert.count:,} vertices declared, {len(rows):,} found")
    bad = next((i for i, r in enumerate(rows) if len(r) != len(vert.props)), None)
    if bad is not None:
        raise ValueError(f"{path}: PLY vertex {bad} has {len(rows[bad])} values, expected {len(vert.props)}")
    tokens = np.array(rows, dtype=np.bytes_)  # [N, P]
    out = np.empty(vert.count, dtype=[(n, t) for n, t in vert.props])
    try:
        for j, (name, _) in enumerate(vert.props):
            out[name] = tokens[:, j].astype(out.dtype[name])
    except ValueError as e:
        raise ValueError(f"{path}: bad number in PLY property '{name}': {e}") from e
    return out


def _columns(v: np.ndarray, names: list[str]) -> torch.Tensor:
    """[N, len(names)] float32 (copied, so the tensor owns writable memory)."""
    return torch.from_numpy(np.stack([v[n].astype(np.float32) for n in names], axis=1))


def read_ply(path: str | os.PathLike) -> GaussianScene:
    """Read a 3DGS ``.ply``; ``ValueError`` naming the file for anything malformed, unsafe or non-finite."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such PLY file")
    with open(path, "rb") as f:
        order, elements, object_names = _parse_header(f, path)
        v = _read_vertices(f, path, order, elements)
    props = set(v.dtype.names)
    missing = [n for n in _REQUIRED if n not in props]
    if missing:
        raise ValueError(f"{path}: not a 3D Gaussian PLY, missing vertex properties: {', '.join(missing)}")
    rest_idx = sorted(int(m.group(1)) for n in props if (m := _F_REST.match(n)))
    if rest_idx != list(range(len(rest_idx))) or len(rest_idx) not in _VALID_F_REST:
        raise ValueError(f"{path}: {len(rest_idx)} f_rest properties (indices {rest_idx[:3]}...); expected "
                         f"f_rest_0..M-1 with M = 3*((d+1)^2-1) in {sorted(_VALID_F_REST)} for SH degree d in 0..3")
    n, k = len(v), len(rest_idx) // 3
    f_rest = _columns(v, [f"f_rest_{i}" for i in range(3 * k)]) if k else torch.zeros(n, 0)
    labels = None
    if "label" in props:
        labels = torch.from_numpy(v["label"].astype(np.int64))
        for oid in labels.unique().tolist():
            object_names.setdefault(oid, "background" if oid == 0 else f"object {oid}")
    scene = GaussianScene(
        means=_columns(v, ["x", "y", "z"]),
        scales=_columns(v, ["scale_0", "scale_1", "scale_2"]),
        quats=_columns(v, ["rot_0", "rot_1", "rot_2", "rot_3"]),
        opacities=_columns(v, ["opacity"])[:, 0].contiguous(),
        sh0=_columns(v, ["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :],
        shN=f_rest.reshape(n, 3, k).transpose(1, 2).contiguous(),  # channel-major -> [N, K, 3]
        labels=labels,
        **({"object_names": object_names} if object_names else {}),
    )
    scene.check_finite(source=str(path))
    logger.debug("read %s: %d Gaussians, SH degree %d", path, n, scene.sh_degree)
    return scene


def _encode_name(name: str) -> str:
    """A JSON string literal: ASCII only (PLY headers are ASCII; plyfile refuses anything else), one line,
    and exact for any name."""
    return json.dumps(str(name), ensure_ascii=True)


def _decode_name(text: str) -> str:
    if text.startswith('"'):
        try:
            name = json.loads(text)
            if isinstance(name, str):
                return name
        except json.JSONDecodeError:
            pass
    return text  # a plain, unquoted name written by hand


def write_ply(path: str | os.PathLike, scene: GaussianScene) -> Path:
    """Write the standard 3DGS layout (float32, little endian) plus ``label``, atomically."""
    path = Path(path)
    n, k = scene.num_gaussians, scene.shN.shape[1]
    if n == 0:
        raise ValueError(f"write_ply({path}): the scene has no Gaussians")
    scene.check_finite(source=f"write_ply({path})")
    labels = scene.labels.detach().cpu().long()
    if labels.min() < np.iinfo(np.int32).min or labels.max() > np.iinfo(np.int32).max:
        raise ValueError(f"write_ply({path}): labels do not fit in int32")

    def cpu(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().to(torch.float32).numpy()

    f_rest = cpu(scene.shN).transpose(0, 2, 1).reshape(n, 3 * k)  # [N, K, 3] -> channel-major [N, 3K]
    columns = {
        **{c: cpu(scene.means[:, i]) for i, c in enumerate("xyz")},
        **{c: np.zeros(n, np.float32) for c in ("nx", "ny", "nz")},
        **{f"f_dc_{i}": cpu(scene.sh0[:, 0, i]) for i in range(3)},
        **{f"f_rest_{i}": f_rest[:, i] for i in range(3 * k)},
        "opacity": cpu(scene.opacities),
        **{f"scale_{i}": cpu(scene.scales[:, i]) for i in range(3)},
        **{f"rot_{i}": cpu(scene.quats[:, i]) for i in range(4)},
    }
    dtype = np.dtype([(c, "<f4") for c in columns] + [("label", "<i4")])
    data = np.empty(n, dtype=dtype)
    for c, col in columns.items():
        data[c] = col
    data["label"] = labels.numpy()

    header = ["ply", "format binary_little_endian 1.0", "comment written by pocket-studio stylize3d"]
    header += [f"comment object {oid} {_encode_name(name)}" for oid, name in sorted(scene.object_names.items())]
    header += [f"element vertex {n}"] + [f"property float {c}" for c in columns] + ["property int label"]
    header += ["end_header"]
    with atomic_open(path) as f:
        f.write(("\n".join(header) + "\n").encode("utf-8"))
        f.write(data.tobytes())
    logger.debug("wrote %s: %d Gaussians, SH degree %d", path, n, scene.sh_degree)
    return path
