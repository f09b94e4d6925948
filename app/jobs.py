"""The one job runner every heavy tab uses: a worker thread, progress and previews as events, Stop, and one
budget of heavy jobs across all tabs.

A handler (a Gradio generator) writes ``result = yield from run_job(services, session, "name", work)`` and turns
the events it receives into page updates; ``work(emit, should_stop)`` runs in the worker and calls
``emit(kind, *payload)``. An error in the work becomes one ``gr.Error`` with a public message; the server keeps
serving. A session runs one job at a time (``session.busy``); the studio runs ``concurrency`` at once (the rest
wait, and are told so).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from .public_errors import public_message

logger = logging.getLogger(__name__)

Work = Callable[[Callable[..., None], Callable[[], bool]], Any]


def run_job(services, session, name: str, work: Work, busy_message: str | None = None) -> Iterator[tuple]:
    """Yields ``(kind, *payload)`` events, ``("waiting",)`` while the studio is full; returns work's result."""
    if not session.busy.acquire(blocking=False):
        raise gr.Error(busy_message or "a job is already running in this session: wait for it or press Stop")
    try:
        if not services.heavy_jobs.acquire(blocking=False):
            yield ("waiting",)
            while not services.heavy_jobs.acquire(timeout=0.5):
                if session.stop.is_set():
                    raise gr.Error("stopped while waiting for a free slot")
        try:
            return (yield from _in_thread(session, name, work))
        finally:
            services.heavy_jobs.release()
    finally:
        session.busy.release()


def _in_thread(session, name: str, work: Work) -> Iterator[tuple]:
    session.stop.clear()
    events: queue.Queue = queue.Queue()
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["result"] = work(lambda *event: events.put(event), session.stop.is_set)
        except ValueError as err:
            outcome["error"] = public_message(err)
        except Exception as err:  # noqa: BLE001 - reported to the page, the server keeps serving
            logger.exception("%s failed", name)
            outcome["error"] = f"{name} failed: {type(err).__name__}: {public_message(err)}"
        finally:
            events.put(None)

    threading.Thread(target=target, name=f"{name}-{session.id}", daemon=True).start()
    while (event := events.get()) is not None:
        yield event
    if "error" in outcome:
        raise gr.Error(outcome["error"])
    return outcome.get("result")


def with_progress(job: Iterator[tuple], progress) -> Any:
    """Drive a job whose only events are ``("progress", done, total, text)``, onto a ``gr.Progress``; the
    job's result (for handlers that return once, not stream)."""
    try:
        while True:
            event = next(job)
            if event[0] == "progress":
                progress(event[1] / max(1, event[2]), desc=event[3])
    except StopIteration as done:
        return done.value


class ModelCache:
    """Models loaded on first use, once, shared by every session and tab; a lock per key so two visitors asking
    at once load it once, and other keys are not held up."""

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: str, load: Callable[[], Any]) -> Any:
        if key in self._models:
            return self._models[key]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._models:
                self._models[key] = load()
            return self._models[key]

    def loaded(self) -> list[str]:
        return list(self._models)
