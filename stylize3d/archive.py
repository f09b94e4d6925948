"""Zip files in and out: untrusted dataset uploads are unpacked defensively; exports are zipped atomically."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path, PurePosixPath

from .atomic import atomic_open

MAX_UNPACKED_BYTES = 2 << 30
MAX_MEMBERS = 20_000


def _check_member(info: zipfile.ZipInfo, archive: Path) -> PurePosixPath:
    name = PurePosixPath(info.filename.replace("\\", "/"))
    if name.is_absolute() or ".." in name.parts or (name.parts and ":" in name.parts[0]):
        raise ValueError(f"{archive.name}: member {info.filename!r} escapes the archive's folder")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ValueError(f"{archive.name}: member {info.filename!r} is a symbolic link, which is not allowed")
    return name


def safe_extract_zip(archive: str | os.PathLike, dest: str | os.PathLike, max_bytes: int = MAX_UNPACKED_BYTES,
                     max_members: int = MAX_MEMBERS) -> Path:
    """Unpack ``archive`` into the empty or new folder ``dest``; refuse path escapes, links and zip bombs.

    Returns the folder holding ``transforms.json`` (the archive may wrap the dataset in one top folder).
    """
    archive, dest = Path(archive), Path(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{archive.name} is not a readable zip file: {err}") from err
    with zf:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise ValueError(f"{archive.name}: {len(infos)} members, more than the limit of {max_members}")
        names = [_check_member(i, archive) for i in infos]
        total = sum(i.file_size for i in infos)
        if total > max_bytes:
            raise ValueError(f"{archive.name} unpacks to {total / 2**20:.0f} MB, over the limit of "
                             f"{max_bytes / 2**20:.0f} MB")
        manifests = [n for n in names if n.name == "transforms.json"]
        if not manifests:
            raise ValueError(f"{archive.name} holds no transforms.json (not a nerfstudio dataset)")
        dest.mkdir(parents=True, exist_ok=True)
        written = 0
        for info, name in zip(infos, names):
            target = dest.joinpath(*name.parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > max_bytes:  # the header lied about the sizes
                        raise ValueError(f"{archive.name} unpacks to more than {max_bytes / 2**20:.0f} MB")
                    dst.write(chunk)
    root = min(manifests, key=lambda n: len(n.parts)).parent
    return dest.joinpath(*root.parts)


def zip_dir(src: str | os.PathLike, archive: str | os.PathLike) -> Path:
    """Zip the folder ``src`` (paths relative to it) into ``archive``, atomically."""
    src, archive = Path(src), Path(archive)
    with atomic_open(archive) as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(src).as_posix())
    return archive
