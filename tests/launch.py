"""``accelerate launch`` of ``app.cli`` on two CPU processes, as a user would start a multi-process run."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def accelerate_cli(*args: str, processes: int = 2, timeout: float = 600) -> subprocess.CompletedProcess:
    """Exit status and output of ``accelerate launch --multi_gpu`` (MULTI_CPU on a CPU-only machine)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes), "--num_machines",
           "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--multi_gpu", "-m", "app.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
