"""What a visitor sees of an error: the message, with the server's folders taken out of every path."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from .sessions import Session

_ABS_PATH = re.compile(r"(?<![\w.])/(?:[^/\s'\"():,]+/)+([^/\s'\"():,]+)")


def _server_roots() -> tuple[str, ...]:
    """Folders whose paths a visitor must never see: where uploads, sessions and temporary files live."""
    from gradio.utils import get_upload_folder

    roots = {str(Path(get_upload_folder()).resolve()), str(Path(tempfile.gettempdir()).resolve()),
             str(Path.cwd().resolve()), str(Path.home())}
    return tuple(sorted(roots, key=len, reverse=True))


def public_message(err: Exception | str, session: Session | None = None) -> str:
    """The error's message without server paths: a path under the server's folders (the session folder,
    Gradio's upload cache with its hash folders) is named by its base name, the name of the visitor's file;
    anything else (e.g. a path a visitor typed) is left as written."""
    roots = _server_roots() + ((str(session.folder.resolve()),) if session is not None else ())

    def shorten(m: re.Match) -> str:
        return m.group(1) if m.group(0).startswith(roots) else m.group(0)

    return _ABS_PATH.sub(shorten, str(err))
