"""Crash-safe outputs: a file or folder appears complete at its final path, or not at all.

Everything is first written next to its destination (same filesystem, so ``os.replace`` / ``os.rename`` is an
atomic metadata operation) and moved into place only after it was fully written. A failed or interrupted run
therefore never leaves a half-written ``.ply``, PNG or dataset folder that a later run would trust.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

_FILE_MODE = 0o644  # mkstemp creates 0600 files; outputs should be readable like any normally written file


def _is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def check_parent(path: str | os.PathLike) -> None:
    """Fail now, not after the work, when ``path`` cannot be created: its nearest existing ancestor must be a
    writable folder (a file there, e.g. ``--out file.txt/run``, is named in the error)."""
    path = Path(path)
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"cannot write {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ValueError(f"cannot write {path}: no permission to write in {parent}")
            return


def _check_destination(out_dir: Path, overwrite: bool) -> None:
    check_parent(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output folder {out_dir} exists and is not a folder")
    if _is_nonempty_dir(out_dir) and not overwrite:
        raise ValueError(f"output folder {out_dir} already exists and is not empty (pass overwrite=True to replace it)")


@contextmanager
def atomic_output_dir(out_dir: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it is renamed to ``out_dir``, on any exception deleted.

    An existing non-empty ``out_dir`` is refused unless ``overwrite``; then it is moved aside, the new folder is
    renamed into place, and only then is the old one deleted, so at every instant ``out_dir`` is either the old
    complete output or the new complete output.
    """
    out_dir = Path(out_dir)
    _check_destination(out_dir, overwrite)  # fail before any work is done
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        _check_destination(out_dir, overwrite)  # it may have appeared while we were writing
        old = None
        if out_dir.is_dir():
            if _is_nonempty_dir(out_dir):
                old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
                os.replace(out_dir, old / out_dir.name)
            else:
                out_dir.rmdir()
        os.rename(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.debug("wrote %s", out_dir)


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """Binary file handle on a temporary sibling of ``path``; replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """JSON with ``allow_nan=False``: NaN/inf are not JSON and would break other readers of the file."""
    text = json.dumps(obj, indent=indent, allow_nan=False, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")
