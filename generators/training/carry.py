"""Carry a training run into a later session: its newest checkpoint without the optimiser state, to commit.

A run here outlives no session (the work tree is laid anew each time), and the optimiser state is two thirds of a
checkpoint, so what goes into git is the weights (trained and EMA), ``state.json`` and the loss log. The run goes on with
``--resume --resume-from DIR`` from the carried folder: same step, same data draws, Adam restarted and the learning
rate warmed up again (``training.common.resume_models``).

    python -m generators.training.carry --run runs/t2i --to checkpoints/t2i
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .common import copy_atomic, latest_checkpoint


def carry(run: Path, to: Path, step: int | None = None) -> Path:
    """Copy ``run``'s newest checkpoint (or ``checkpoint-STEP``) into ``to``, atomically, replacing older ones."""
    src = Path(run) / f"checkpoint-{step}" if step is not None else latest_checkpoint(run)
    if src is None or not (src / "state.json").is_file():
        raise ValueError(f"{run}: no checkpoint{'' if step is None else f'-{step}'} with a state.json")
    state = json.loads((src / "state.json").read_text())
    to = Path(to)
    to.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=to, prefix=".tmp-carry-"))
    try:
        for item in src.iterdir():
            if item.name == "optimizer.pt":
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        (tmp / "state.json").write_text(json.dumps({**state, "carried_from": str(src)}, indent=1))
        final = to / src.name
        old = [p for p in to.glob("checkpoint-*") if p.is_dir()]
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for p in old:
        if p != final and p.exists():
            shutil.rmtree(p)
    if (Path(run) / "loss.jsonl").is_file():  # the whole loss log, for the model card
        copy_atomic(Path(run) / "loss.jsonl", to / "loss.jsonl")
    return final


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, required=True, help="the run's output folder (with checkpoint-STEP)")
    p.add_argument("--to", type=Path, required=True, help="folder to commit; older carried checkpoints go")
    p.add_argument("--step", type=int, help="a checkpoint's step (default: the newest)")
    args = p.parse_args(argv)
    try:
        final = carry(args.run, args.to, args.step)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in final.rglob("*") if f.is_file())
    print(f"carried {final} ({size / 2**20:.1f} MiB); go on with --resume --resume-from {args.to}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
