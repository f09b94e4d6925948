"""What the studio needs from the engines, gathered in one object that ``build_demo`` receives.

Nothing heavy happens at import or construction: scenes and backbones load when a visitor asks for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
    """Heavy jobs (stylization) running at once; further visitors queue."""
    queue_size: int = 64
    """Most jobs waiting in the queue; beyond it visitors are told to retry."""
    preview_every: int = 10
    """Live preview refresh, in optimisation steps."""

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

    def __post_init__(self) -> None:
        if self.sessions is None:
            self.sessions = SessionStore(Path(self.config.output_root), ttl_s=self.config.output_ttl_min * 60)

    @property
    def style_dir(self) -> Path:
        return ASSETS / "styles"

    def builtin_styles(self) -> dict[str, Path]:
        """Built-in style name -> image; the only style paths the studio itself names."""
        return {p.stem: p for p in sorted(self.style_dir.glob("*.png"))}
