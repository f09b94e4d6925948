"""An MP4 written while its frames are still being made: a stream stopped mid-way leaves a valid file of what
was made (or nothing when no frame came), never a half-written one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

FPS = 12


class StreamingMP4:
    """``with StreamingMP4(path) as mp4: mp4.append(frames)``; the file appears at ``path`` only when the block
    ends (normally, or by an exception such as Stop or Ctrl-C) with at least one frame written."""

    def __init__(self, path: str | os.PathLike, fps: int = FPS):
        self.path, self.fps, self.frames = Path(path), fps, 0
        self.writer = None
        self.tmp: Path | None = None

    def __enter__(self) -> "StreamingMP4":
        import imageio.v2 as imageio

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.tmp-", suffix=".mp4", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.writer = imageio.get_writer(self.tmp, fps=self.fps, codec="libx264", quality=8, macro_block_size=1,
                                         ffmpeg_log_level="error", output_params=["-pix_fmt", "yuv420p"])
        return self

    def append(self, frames: np.ndarray) -> None:
        """(T, H, W, 3) or (H, W, 3) uint8; odd sides are padded by repeating the edge (H.264 wants even)."""
        for f in frames if frames.ndim == 4 else frames[None]:
            h, w = f.shape[:2]
            if h % 2 or w % 2:
                f = np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            self.writer.append_data(np.ascontiguousarray(f))
            self.frames += 1

    def __exit__(self, *exc) -> None:
        try:
            self.writer.close()
        finally:
            if self.frames:
                os.replace(self.tmp, self.path)
            else:
                self.tmp.unlink(missing_ok=True)
