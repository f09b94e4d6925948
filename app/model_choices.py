"""Models a tab offers by name (visitors never type a path), and the one loaded copy of each, with its lock."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import gradio as gr


def named_folders(shipped: dict[str, Path], operator: Iterable[Path], keep: Callable[[Path], bool]) -> dict[str, Path]:
    """Name shown -> folder: the shipped ones first, then the operator's ``--model-dir`` folders that ``keep``
    accepts, by folder name (primed when two share one)."""
    choices = dict(shipped)
    for folder in operator:
        if keep(Path(folder)):
            name = Path(folder).name
            while name in choices:
                name += "'"
            choices[name] = Path(folder)
    return choices


def load_choice(services, choices: dict[str, Path], name: str, kind: str, load: Callable[[Path], object],
                none_message: str):
    """(pipeline, lock) for a chosen name, loaded once into the studio's shared cache. A pipeline's scheduler
    keeps per-call state: hold the lock while it runs."""
    if not choices:
        raise gr.Error(none_message)
    if name not in choices:
        raise gr.Error(f"unknown model {name!r}: choose one of {', '.join(choices)}")
    folder = choices[name]
    return services.models.get(f"{kind}:{folder}", lambda: (load(folder), threading.Lock()))
