"""Start ``python app.py`` as a real server process for the studio tests, and watch its memory.

The studio is tested as people and API callers meet it: a separate process on a free port, reached over HTTP.
``studio_server`` is a module-scoped fixture (import it into a test module to use it); ``start_server`` and
``rss_bytes`` are plain functions that ``bench/load_test.py`` reuses.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (VmRSS from /proc), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


@dataclass
class StudioServer:
    proc: subprocess.Popen
    url: str
    output_root: Path
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM by pid, then SIGKILL if it lingers."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)


def start_server(workdir: Path, cache: Path, *extra: str, timeout: float = 120.0) -> StudioServer:
    """``python app.py`` on a free port with outputs under ``workdir``; returns once it answers HTTP."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    output_root = workdir / "outputs"
    log_path = workdir / "server.log"
    env = {
        **os.environ,
        "POCKET_STUDIO_CACHE": str(cache),
        "GRADIO_TEMP_DIR": str(workdir / "gradio-tmp"),  # served files stay inside the test's folder
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "2",
    }
    cmd = [sys.executable, "app.py", "--port", str(port), "--output-root", str(output_root), *extra]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = StudioServer(proc, f"http://127.0.0.1:{port}/", output_root, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with code {proc.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url, timeout=2) as resp:
                if resp.status == 200:
                    logger.info("studio up at %s (pid %d)", server.url, server.pid)
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"app.py did not answer on {server.url} within {timeout:.0f} s:\n{server.log_tail()}")


@pytest.fixture(scope="module")
def studio_server(request, tmp_path_factory, builtin_dir, scene_cache):
    """A studio server for one test module (``--concurrency 2``); the built-in scene is generated beforehand
    by the test process into the shared cache, so the server only reads it. Extra flags: a module-level
    ``STUDIO_ARGS`` tuple."""
    extra = getattr(request.module, "STUDIO_ARGS", ("--concurrency", "2"))
    server = start_server(tmp_path_factory.mktemp("studio"), scene_cache, *extra)
    yield server
    server.stop()
    if server.proc.returncode not in (0, -signal.SIGTERM):
        logger.warning("studio server exited with %s:\n%s", server.proc.returncode, server.log_tail())


# ------------------------------------------------------------------------------------------------ load


OBJECTS = ["cube", "sphere", "torus", "cylinder", "cone", "knot"]
STYLES = ["dots", "embers", "mosaic", "strokes", "waves"]


@dataclass
class Job:
    """One visitor's request: its own object, style and seed."""

    index: int
    object: str
    style: str
    seed: int
    session: str = ""
    latency_s: float = 0.0
    load_s: float = 0.0
    result: tuple | None = None
    error: str = ""


def burst_jobs(n: int) -> list[Job]:
    return [Job(i, OBJECTS[i % len(OBJECTS)], STYLES[i % len(STYLES)], seed=100 + i) for i in range(n)]


class RssPoller:
    """Samples a process's RSS in a thread (every ``every_s``) to find the peak during a burst."""

    def __init__(self, pid: int, every_s: float = 0.1) -> None:
        self.pid, self.every_s = pid, every_s
        self.peak = rss_bytes(pid)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-poller", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, rss_bytes(self.pid))
            self.samples += 1

    def __enter__(self) -> RssPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_burst(url: str, jobs: list[Job], iters: int, size: int, timeout_s: float = 600.0) -> list:
    """Each job in its own thread with its own ``gradio_client.Client`` (its own session): load the built-in
    scene (as a page load does), then ``/stylize`` its object. Fills the jobs in place; returns the clients
    (keep them alive: a session's folder is removed when its client goes away)."""
    from gradio_client import Client

    clients = [Client(url, verbose=False, download_files=False) for _ in jobs]
    start = threading.Barrier(len(jobs))

    def one(job: Job, client) -> None:
        job.session = client.session_hash
        try:
            t0 = time.perf_counter()
            client.predict("Built-in scene", None, size, api_name="/load_scene")
            job.load_s = time.perf_counter() - t0
            start.wait(timeout_s)  # every /stylize is queued at once
            t0 = time.perf_counter()
            job.result = client.predict(
                scene_source="Built-in scene",
                scene_file=None,
                objects=[job.object],
                box="",
                style_plan=f"{job.object} = {job.style}",
                style_image=None,
                iterations=iters,
                style_weight=1.0,
                content_weight=0.001,
                size=size,
                seed=job.seed,
                camera=0,
                api_name="/stylize",
            )
            job.latency_s = time.perf_counter() - t0
        except Exception as err:  # noqa: BLE001 - recorded and asserted on by the caller
            job.error = f"{type(err).__name__}: {err}"
            start.abort()  # nobody waits for a job that will never start

    threads = [threading.Thread(target=one, args=(j, c), name=f"job-{j.index}") for j, c in zip(jobs, clients)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    for job, t in zip(jobs, threads):
        if t.is_alive() and not job.error:
            job.error = f"did not finish within {timeout_s:.0f} s"
    return clients


def fetch(url: str, timeout: float = 60.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()
