"""One folder and one small state object per browser session, swept away when the session ends or ages out."""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


@dataclass
class Session:
    """Server-side state of one visitor (the browser keeps only its session hash)."""

    id: str
    folder: Path
    last_seen: float = field(default_factory=time.time)
    stop: threading.Event = field(default_factory=threading.Event)
    busy: threading.Lock = field(default_factory=threading.Lock)
    tabs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each tab's own state, under the tab's name (``tab("stylize")``), so two tabs cannot overwrite each other."""
    history: list[str] = field(default_factory=list)
    """Images of this session any tab can use as a style (``history:N`` in a style plan): stylized views and
    images the Image tab sends with "Use as style". The one state tabs share."""

    last_model: str | None = None
    """The model (by its name in the tabs) this session last generated with in the Image or Video tab: the
    Export tab's "This session's model"."""

    def tab(self, name: str) -> dict[str, Any]:
        return self.tabs.setdefault(name, {})

    def disk_bytes(self) -> int:
        """Bytes this session's folder holds (uploads, unpacked datasets, runs, zips)."""
        return sum(f.stat().st_size for f in self.folder.rglob("*") if f.is_file() and not f.is_symlink())

    def new_dir(self, prefix: str) -> Path:
        """A fresh sub-folder for one job, named so jobs never collide."""
        path = self.folder / f"{prefix}-{time.strftime('%H%M%S')}-{time.perf_counter_ns() % 10**6:06d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


class SessionStore:
    """Sessions by id, each with its own folder under ``root``; idle ones are dropped after ``ttl_s``."""

    def __init__(self, root: Path, ttl_s: float = 3600.0, max_sessions: int = 256,
                 on_drop: Callable[[Path], None] | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self.on_drop = on_drop  # e.g. forget the web server's cached copies of the folder's files
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._sweeper: threading.Thread | None = None

    def get(self, session_id: str | None) -> Session:
        sid = _SAFE_ID.sub("", session_id or "")[:64] or "anonymous"
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                if len(self._sessions) >= self.max_sessions:
                    self._drop_oldest_locked()
                session = Session(sid, self.root / sid)
                session.folder.mkdir(parents=True, exist_ok=True)
                self._sessions[sid] = session
            session.last_seen = time.time()
            return session

    def drop(self, session_id: str | None) -> None:
        sid = _SAFE_ID.sub("", session_id or "")[:64]
        with self._lock:
            session = self._sessions.pop(sid, None)
        if session is not None:
            session.stop.set()
            self._remove(session.folder)
            logger.info("session %s closed; removed %s", sid, session.folder)

    def _remove(self, folder: Path) -> None:
        if self.on_drop is not None:
            try:
                self.on_drop(folder)
            except OSError as err:
                logger.warning("could not forget the cached copies of %s: %s", folder, err)
        shutil.rmtree(folder, ignore_errors=True)

    def _drop_oldest_locked(self) -> None:
        oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
        self._sessions.pop(oldest.id)
        oldest.stop.set()
        self._remove(oldest.folder)

    def sweep(self, now: float | None = None) -> int:
        """Drop sessions idle for longer than the TTL (browser or API-only alike: both refresh ``last_seen`` only
        when they call), with their folders and cached copies, and orphan folders that old; returns folders
        removed."""
        now = time.time() if now is None else now
        removed = 0
        with self._lock:
            expired = [s for s in self._sessions.values() if now - s.last_seen > self.ttl_s and not s.busy.locked()]
            for session in expired:
                self._sessions.pop(session.id).stop.set()
            live = {s.folder for s in self._sessions.values()}
        for session in expired:
            self._remove(session.folder)
            removed += 1
        for folder in self.root.iterdir():
            if folder in live or not folder.is_dir() or folder in {s.folder for s in expired}:
                continue
            if now - folder.stat().st_mtime > self.ttl_s:
                self._remove(folder)
                removed += 1
        return removed

    def start_sweeper(self, every_s: float | None = None) -> None:
        """Sweep in a daemon thread every ``every_s`` (default: a quarter of the TTL, at most a minute)."""
        if self._sweeper is not None:
            return
        every_s = every_s or max(1.0, min(60.0, self.ttl_s / 4))

        def loop() -> None:
            while True:
                time.sleep(every_s)
                try:
                    n = self.sweep()
                    if n:
                        logger.info("removed %d expired output folders", n)
                except OSError as err:
                    logger.warning("output sweep failed: %s", err)

        self._sweeper = threading.Thread(target=loop, name="output-sweeper", daemon=True)
        self._sweeper.start()

    def __len__(self) -> int:
        return len(self._sessions)
