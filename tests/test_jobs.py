"""The studio's shared job runner and model cache (no browser): one load per model whatever the concurrency,
one job per session, one budget of heavy jobs across tabs, errors as one message."""

import threading
import time

import gradio as gr
import pytest

from app.jobs import ModelCache, run_job
from app.services import Services, StudioConfig


def _drain(gen):
    events = []
    try:
        while True:
            events.append(next(gen))
    except StopIteration as done:
        return events, done.value


def test_model_cache_loads_each_model_once_across_threads():
    cache, calls = ModelCache(), []

    def load():
        calls.append(1)
        time.sleep(0.2)
        return object()

    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("a", load))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(g) for g in got}) == 1
    assert cache.get("b", lambda: "B") == "B" and cache.loaded() == ["a", "b"]


def test_run_job_streams_events_and_returns_the_result(tmp_path):
    services = Services(StudioConfig(output_root=tmp_path))
    session = services.sessions.get("s1")

    def work(emit, should_stop):
        for i in range(3):
            emit("progress", i)
        return "done"

    events, result = _drain(run_job(services, session, "test", work))
    assert events == [("progress", 0), ("progress", 1), ("progress", 2)] and result == "done"
    assert not session.busy.locked()


def test_errors_become_one_public_message(tmp_path):
    services = Services(StudioConfig(output_root=tmp_path))
    session = services.sessions.get("s1")

    def bad_input(emit, should_stop):
        raise ValueError(f"{tmp_path}/outputs/s1/x.png: not an image")

    def crash(emit, should_stop):
        raise RuntimeError("boom")

    with pytest.raises(gr.Error, match="not an image"):
        _drain(run_job(services, session, "test", bad_input))
    with pytest.raises(gr.Error, match="test failed: RuntimeError: boom"):
        _drain(run_job(services, session, "test", crash))
    assert not session.busy.locked() and services.heavy_jobs.acquire(blocking=False)


def test_one_job_per_session_and_one_budget_across_tabs(tmp_path):
    services = Services(StudioConfig(output_root=tmp_path, concurrency=1))
    a, b = services.sessions.get("a"), services.sessions.get("b")
    release = threading.Event()

    def slow(emit, should_stop):
        release.wait(5)
        return "slow"

    first = run_job(services, a, "stylization", slow)
    holder = threading.Thread(target=lambda: _drain(first))
    holder.start()
    time.sleep(0.2)
    with pytest.raises(gr.Error, match="already running"):
        _drain(run_job(services, a, "generation", lambda e, s: 1))
    second = run_job(services, b, "generation", lambda e, s: "quick")
    assert next(second) == ("waiting",)  # the other tab's job holds the only slot
    release.set()
    holder.join()
    events, result = _drain(second)
    assert result == "quick"
