"""Turning what a visitor chose (built-in scene or an upload) into a scene spec the engine understands.

Uploads are copied or unpacked into the visitor's own folder first, so no path a visitor sends is ever used to
read anything else on the server.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

from stylize3d.archive import safe_extract_zip

from .sessions import Session

BUILTIN = "Built-in scene"
UPLOAD = "Upload (.ply or dataset .zip)"
RECONSTRUCT = "Reconstruct from a dataset .zip"
SCENE_SOURCES = [BUILTIN, UPLOAD, RECONSTRUCT]


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()[:16]


def resolve_scene(session: Session, source: str, upload: str | None, max_unpacked_bytes: int = 1 << 30,
                  max_session_bytes: int = 2 << 30) -> tuple[str, str]:
    """(spec for ``stylize3d.scenes.load_scene``, a label for people). Raises ValueError for bad uploads, for a
    zip that unpacks to more than ``max_unpacked_bytes`` and when the session's folder would pass
    ``max_session_bytes``."""
    if source == BUILTIN or (source not in (UPLOAD, RECONSTRUCT) and not upload):
        return "builtin", "built-in scene"
    if not upload:
        raise ValueError("choose a .ply file or a nerfstudio dataset .zip to upload first")
    if source == RECONSTRUCT and not str(upload).lower().endswith(".zip"):
        raise ValueError(f"{Path(upload).name}: reconstruction needs a nerfstudio dataset .zip (images + transforms.json)")
    path = Path(upload)
    name = path.name
    suffix = path.suffix.lower()
    if suffix not in (".ply", ".zip"):
        raise ValueError(f"{name}: upload a 3DGS .ply or a nerfstudio dataset .zip (got '{suffix or 'no extension'}')")
    key = _digest(path)
    cached = session.tab("stylize").setdefault("uploads", {})
    if key in cached and Path(cached[key]).exists():
        return cached[key], name
    used = session.disk_bytes()
    if used + path.stat().st_size > max_session_bytes:
        raise ValueError(f"{name}: this session already holds {used / 2**20:.0f} MB of uploads and results (limit "
                         f"{max_session_bytes / 2**20:.0f} MB); close the tab or wait for old results to expire")
    dest = session.folder / "uploads" / key
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if suffix == ".ply":
        spec = dest / (re.sub(r"[^A-Za-z0-9._-]", "_", path.stem)[:80] + ".ply")  # errors then name the upload
        shutil.copyfile(path, spec)
    else:
        try:
            spec = safe_extract_zip(path, dest, max_bytes=min(max_unpacked_bytes, max_session_bytes - used))
        except ValueError:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    cached[key] = str(spec)
    return str(spec), name
