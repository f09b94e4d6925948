"""The studio shell: ``build_demo(services)`` assembles the tabs; ``main`` parses flags and serves.

Each tab is one module with a ``build(services)`` function; only tabs that exist are shown. Importing this
module loads no weights and builds nothing.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
from dataclasses import fields
from pathlib import Path

import gradio as gr

from . import export_tab, image_tab, stylize_tab, video_tab
from .gradio_cache import forget_cached_copies
from .services import ASSETS, Services, StudioConfig

logger = logging.getLogger(__name__)

TABS = [("3D Stylize", stylize_tab.build), ("Image", image_tab.build), ("Video", video_tab.build),
        ("Export", export_tab.build)]
"""Title and ``build(services, demo, shared)`` of each tab, in page order. ``shared`` carries the components
one tab offers another (the 3D tab's style history, which "Use as style" feeds)."""

CSS = """
#view img { cursor: crosshair; }
#status { min-height: 3em; }
#progress { min-height: 2.6em; }
#scene-progress:empty { display: none; }
"""


def build_demo(services: Services) -> gr.Blocks:
    with gr.Blocks(title="Pocket Studio", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# Pocket Studio\nOn-device generative media, in the open.")
        shared: dict = {}
        with gr.Tabs():
            for title, build in TABS:
                with gr.Tab(title, elem_id=f"tab-{title.split()[-1].lower()}"):
                    build(services, demo, shared)

        def start_session(request: gr.Request) -> None:
            services.sessions.get(request.session_hash)

        def end_session(request: gr.Request) -> None:
            services.sessions.drop(request.session_hash)

        demo.load(start_session, None, None, api_visibility="private")
        demo.unload(end_session)
    services.sessions.on_drop = lambda folder: forget_cached_copies(folder, demo.GRADIO_CACHE)
    return demo


def _parser() -> argparse.ArgumentParser:
    d = StudioConfig()
    p = argparse.ArgumentParser(prog="app.py", description="Pocket Studio in the browser.")
    p.add_argument("--host", default=d.host, help=f"interface to bind (default {d.host}: this machine only)")
    p.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port})")
    p.add_argument("--share", action="store_true", help="also create a public share link")
    p.add_argument("--output-root", type=Path, default=d.output_root, help="per-session output folders")
    p.add_argument("--output-ttl-min", type=float, default=d.output_ttl_min,
                   help=f"remove session outputs after this many minutes (default {d.output_ttl_min:g})")
    p.add_argument("--max-upload-mb", type=int, default=d.max_upload_mb, help="largest accepted upload")
    p.add_argument("--max-session-mb", type=int, default=d.max_session_mb,
                   help=f"disk one session may fill (default {d.max_session_mb})")
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="stylizations running at once")
    p.add_argument("--queue-size", type=int, default=d.queue_size, help="most jobs waiting in the queue")
    p.add_argument("--model-dir", dest="model_dirs", type=Path, action="append", default=[],
                   help="a diffusers text-to-image pipeline folder to offer in the Image tab (repeatable)")
    return p


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each worker thread its own heap and keeps freed memory there: with concurrent jobs the
    server's RSS then ratchets up from burst to burst (measured: 2.4 -> 3.4 GB) instead of staying flat
    (2.5 GB with 2 arenas). Same effect as MALLOC_ARENA_MAX=2; a no-op off glibc."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    _limit_malloc_arenas()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    names = {f.name for f in fields(StudioConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values["model_dirs"] = tuple(values.get("model_dirs", ()))
    for folder in values["model_dirs"]:
        if not (folder / "model_index.json").is_file():
            _parser().error(f"--model-dir {folder}: not a diffusers pipeline folder (no model_index.json)")
    config = StudioConfig(**values)
    services = Services(config)
    services.sessions.start_sweeper()
    demo = build_demo(services)
    demo.queue(max_size=config.queue_size, default_concurrency_limit=config.concurrency)
    demo.launch(server_name=config.host, server_port=config.port, share=config.share,
                max_file_size=f"{config.max_upload_mb}mb", allowed_paths=[str(ASSETS / "styles")],
                show_error=True, css=CSS, footer_links=["api"])
