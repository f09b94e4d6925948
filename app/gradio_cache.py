"""Gradio serves every output file from its own cached copy (``<cache>/<sha256 of the content>/<name>``), which
outlives our session folder: forgetting a session must forget those copies too, or its results stay
downloadable by URL after the tab is closed."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from gradio import processing_utils
from gradio.utils import is_in_or_equal

logger = logging.getLogger(__name__)


def forget_cached_copies(folder: Path, cache_dir: str | Path) -> int:
    """Delete the cached copies of every file under ``folder``; returns how many were found."""
    cache_dir = Path(cache_dir)
    removed = 0
    for f in Path(folder).rglob("*"):
        if not f.is_file() or f.is_symlink():
            continue
        copy_dir = cache_dir / processing_utils.hash_file(f)
        if copy_dir.is_dir() and is_in_or_equal(str(copy_dir), str(cache_dir)):
            shutil.rmtree(copy_dir, ignore_errors=True)
            removed += 1
    if removed:
        logger.info("removed %d cached copies of %s", removed, folder)
    return removed
