"""What the studio needs from the engines, gathered in one object that ``build_demo`` receives.

Nothing heavy happens at import or construction: scenes and backbones load when a visitor asks for them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from .jobs import ModelCache
from .sessions import SessionStore

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"


@dataclass(frozen=True)
class StudioConfig:
    host: str = "127.0.0.1"
    """Interface to bind (127.0.0.1: this machine only)."""
    port: int = 7860
    """Port to serve on."""
    share: bool = False
    """Create a public share link (off by default)."""
    output_root: Path = Path("outputs") / "studio"
    """Where each browser session gets its own output folder."""
    output_ttl_min: float = 60.0
    """Session outputs older than this many minutes are removed."""
    max_upload_mb: int = 200
    """Largest accepted upload."""
    max_session_mb: int = 2048
    """Disk a session may fill (uploads, unpacked datasets, runs); past it new uploads and runs are refused."""
    concurrency: int = 2
    """Heavy jobs (stylization, reconstruction, generation) running at once across all tabs; others wait."""
    queue_size: int = 64
    """Most jobs waiting in the queue; beyond it visitors are told to retry."""
    preview_every: int = 10
    """Live preview refresh, in optimisation steps."""
    model_dirs: tuple[Path, ...] = ()
    """Diffusers text-to-image pipeline folders the operator offers in the Image tab besides the shipped model
    (``--model-dir``, repeatable). Visitors choose among these by name; they never type a path."""

    @property
    def max_unpacked_bytes(self) -> int:
        """A dataset zip may unpack to 4x the upload limit (images compress little; a bomb is refused early)."""
        return 4 * self.max_upload_mb << 20

    @property
    def max_session_bytes(self) -> int:
        return self.max_session_mb << 20


@dataclass
class Services:
    config: StudioConfig = field(default_factory=StudioConfig)
    sessions: SessionStore = None
    models: ModelCache = field(default_factory=ModelCache)
    """Weights loaded lazily on first use, shared by sessions and tabs."""
    heavy_jobs: threading.BoundedSemaphore = None
    """One budget of concurrent heavy jobs across tabs (``config.concurrency``)."""

    def __post_init__(self) -> None:
        if self.sessions is None:
            self.sessions = SessionStore(Path(self.config.output_root), ttl_s=self.config.output_ttl_min * 60)
        if self.heavy_jobs is None:
            self.heavy_jobs = threading.BoundedSemaphore(max(1, self.config.concurrency))

    @property
    def style_dir(self) -> Path:
        return ASSETS / "styles"

    def builtin_styles(self) -> dict[str, Path]:
        """Built-in style name -> image; the only style paths the studio itself names."""
        return {p.stem: p for p in sorted(self.style_dir.glob("*.png"))}
