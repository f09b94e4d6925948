"""Many visitors at once against a real studio server: latency per job and the server's memory.

    python bench/load_test.py [--clients 8] [--rounds 1] [--iters 5] [--size 128] [--concurrency 2]
                              [--url http://127.0.0.1:7860/] [--json bench/results/studio_load_bench.json]

Without ``--url`` it starts ``app.py`` itself (in a temp folder) and stops it afterwards. Each round is one
burst of ``--clients`` sessions stylizing different objects; more rounds show whether memory keeps growing.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.studio_server import RssPoller, burst_jobs, rss_bytes, run_burst, start_server  # noqa: E402

logger = logging.getLogger("load_test")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--size", type=int, default=128, choices=[128, 192, 256])
    p.add_argument("--concurrency", type=int, default=2, help="--concurrency of the server this starts")
    p.add_argument("--url", help="test a running server instead (no RSS numbers then)")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory(prefix="studio-load-") as tmp:
        server = None
        if args.url:
            url, pid = args.url, None
        else:
            cache = Path(tmp) / "cache"
            server = start_server(Path(tmp), cache, "--concurrency", str(args.concurrency))
            url, pid = server.url, server.pid
        rounds = []
        try:
            for r in range(args.rounds):
                jobs = burst_jobs(args.clients)
                before = rss_bytes(pid) if pid else 0
                t0 = time.perf_counter()
                with RssPoller(pid or 0) as poller:
                    clients = run_burst(url, jobs, args.iters, args.size)
                    wall = time.perf_counter() - t0
                errors = [f"{j.object}: {j.error}" for j in jobs if j.error]
                lat = sorted(j.latency_s for j in jobs if not j.error) or [float("nan")]
                rounds.append({
                    "round": r,
                    "wall_s": round(wall, 2),
                    "latency_s": {"min": round(lat[0], 2), "median": round(statistics.median(lat), 2),
                                  "max": round(lat[-1], 2)},
                    "rss_mb": {"before": before >> 20, "peak": poller.peak >> 20,
                               "after": rss_bytes(pid) >> 20 if pid else 0},
                    "errors": errors,
                })
                logger.info("round %d: %s", r, json.dumps(rounds[-1]))
                del clients  # their sessions end, as when visitors close the tab
        finally:
            if server is not None:
                server.stop()
    out = {"clients": args.clients, "iters": args.iters, "size": args.size, "concurrency": args.concurrency,
           "rounds": rounds}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
