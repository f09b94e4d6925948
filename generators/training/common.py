"""What every training script shares: typed configs from JSON and flags, checkpoints that resume, a loss log.

Checkpoints are folders ``DIR/checkpoint-STEP`` holding the model(s) in diffusers format (safetensors), the
optimiser state (``torch.load(weights_only=True)``) and ``state.json``; ``--resume`` continues from the newest.
A *carried* checkpoint (``python -m generators.training.carry``) drops the optimiser state so that a run can be
committed and go on in a later session on a fresh machine: Adam restarts and the learning rate re-warms.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def _number_tuple(text: str) -> tuple:
    return tuple(float(v) if any(c in v for c in ".eE") else int(v) for v in text.split(",") if v.strip())


def config_from_args(cls, argv: list[str] | None, description: str, prog: str | None = None):
    """Parse ``--config FILE.json`` plus one flag per dataclass field (flags win), into ``cls``."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", type=Path, help="JSON file with any of the fields below")
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        kind = type(default) if default is not None else str
        if kind is bool:
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, action=argparse.BooleanOptionalAction,
                           default=None)
        elif kind in (tuple, list):
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None,
                           type=_number_tuple, help=f"comma list (default {default})")
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, default=None,
                           help=f"default {default}")
    args = p.parse_args(argv)
    values: dict[str, Any] = {}
    if args.config is not None:
        try:
            values = json.loads(args.config.read_text())
        except (OSError, ValueError) as err:
            p.error(f"--config {args.config}: {err}")
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            p.error(f"--config {args.config}: unknown fields {sorted(unknown)}")
    values.update({k: v for k, v in vars(args).items() if k != "config" and v is not None})
    for f in dataclasses.fields(cls):
        if f.name in values and isinstance(values[f.name], list):
            values[f.name] = tuple(values[f.name])
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        p.error(str(err))


def require_positive(cfg, *names: str) -> None:
    """A ValueError naming the first of ``names`` whose value is below 1 (counts, sizes, intervals)."""
    for name in names:
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, not {getattr(cfg, name)}")


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted(Path(out).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return found[-1] if found else None


def save_checkpoint(out: Path, step: int, models: dict[str, Any], optimizer: torch.optim.Optimizer,
                    state: dict, keep: int = 2) -> Path:
    """Write ``checkpoint-STEP`` atomically (a temp folder renamed into place) and keep the newest ``keep``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".tmp-checkpoint-"))
    for name, model in models.items():
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(tmp / name)
        else:  # a plain module (projectors, heads, adapter weights): its tensors in safetensors
            save_file({k: v.detach().contiguous() for k, v in _state(model).items()}, tmp / f"{name}.safetensors")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=1))
    final = out / f"checkpoint-{step}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[:-keep]:
        shutil.rmtree(old)
    return final


def _state(model) -> dict:
    return model if isinstance(model, dict) else model.state_dict()


def load_module(path: Path, name: str, module: torch.nn.Module) -> None:
    """Load a plain module that ``save_checkpoint`` wrote as ``NAME.safetensors``."""
    module.load_state_dict(load_file(Path(path) / f"{name}.safetensors"))


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> dict:
    """The checkpoint's ``state.json``; ``optimizer_reset`` is set when it carries no optimiser state."""
    state = json.loads((Path(path) / "state.json").read_text())
    if (Path(path) / "optimizer.pt").is_file():
        optimizer.load_state_dict(torch.load(Path(path) / "optimizer.pt", weights_only=True, map_location="cpu"))
    else:
        state["optimizer_reset"] = True
    return state


def resume_checkpoint(out: Path, resume: bool, resume_from: str = "") -> Path | None:
    """The newest checkpoint in ``out``; else, for a run's first start, the one named by ``resume_from``."""
    if not resume:
        return None
    ckpt = latest_checkpoint(out)
    if ckpt is None and resume_from:
        ckpt = Path(resume_from)
        if not ckpt.is_dir() or ckpt.name.split("-")[0] != "checkpoint":
            ckpt = latest_checkpoint(ckpt)
        if ckpt is None or not (ckpt / "state.json").is_file():
            raise ValueError(f"--resume-from {resume_from}: no checkpoint folder (checkpoint-STEP with state.json)")
        log = ckpt.parent / "loss.jsonl"  # the carried loss log goes on in the new folder
        if log.is_file() and not (Path(out) / "loss.jsonl").exists():  # every rank may get here
            copy_atomic(log, Path(out) / "loss.jsonl")
    return ckpt


def copy_atomic(src: Path, dst: Path) -> None:
    """Copy a file so that ``dst`` is whole or absent (a temp file beside it, renamed into place)."""
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=Path(dst).parent, prefix=f".{Path(dst).name}-")
    os.close(fd)
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


@contextmanager
def atomic_folder(final: Path):
    """A temp folder beside ``final`` to fill: it replaces ``final`` whole when the block ends, and goes on any error,
    so a shipped model folder appears complete or not at all."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}-"))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def resume_models(ckpt: Path | None, models: dict[str, torch.nn.Module], optimizer) -> tuple[int, int | None]:
    """Load ``models`` (diffusers folders by name) and the optimiser; (start step, step Adam restarted at)."""
    if ckpt is None:
        return 0, None
    for name, model in models.items():
        model.load_state_dict(type(model).from_pretrained(ckpt / name).state_dict())
    return resume_point(load_optimizer(ckpt, optimizer))


GROWN_BRANCH_OUTPUTS = ("to_out.weight", "to_out.bias", "ff.out.weight", "ff.out.bias", "proj_out.weight",
                        "proj_out.bias")
"""Last layers of the residual branches (attention, FFN, a whole spatial transformer): zero when new."""


def grow_into(model: torch.nn.Module, old: dict[str, torch.Tensor]) -> list[str]:
    """Copy a smaller model's weights into ``model`` (more blocks, same widths); return the new names.

    The new residual branches start with a zero output layer, so the grown model computes exactly what the old
    one did and training adds capacity without first undoing what was learnt.
    """
    new = model.state_dict()
    lost = sorted(set(old) - set(new))
    if lost:
        raise ValueError(f"cannot grow: the checkpoint has weights the new config lacks ({', '.join(lost[:3])})")
    for k, v in old.items():
        if v.shape != new[k].shape:
            raise ValueError(f"cannot grow: {k} is {tuple(v.shape)} in the checkpoint but {tuple(new[k].shape)} "
                             "in the new config (growing adds blocks; widths must stay)")
    added = sorted(set(new) - set(old))
    with torch.no_grad():
        for k in added:
            if k.endswith(GROWN_BRANCH_OUTPUTS):
                new[k].zero_()
        new.update(old)
    model.load_state_dict(new)
    return added


def grow_models(ckpt: Path, models: dict[str, torch.nn.Module]) -> tuple[int, int]:
    """``resume_models`` for a checkpoint of a smaller config: weights grown, a fresh optimiser from its step."""
    for name, model in models.items():
        grow_into(model, type(model).from_pretrained(Path(ckpt) / name).state_dict())
    step = json.loads((Path(ckpt) / "state.json").read_text())["step"]
    return step, step


def same_config(ckpt: Path, name: str, model) -> bool:
    """Whether the checkpoint's ``name`` was saved with the config ``model`` was built with."""
    def plain(config) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dict(config).items() if not k.startswith("_")}

    return plain(type(model).load_config(Path(ckpt) / name)) == plain(model.config)


def resume_point(state: dict) -> tuple[int, int | None]:
    """(start step, step the optimiser restarted at: None unless the checkpoint carried no optimiser state)."""
    return state["step"], state["step"] if state.get("optimizer_reset") else None


def carried_note(restart: int | None, warmup: int) -> str:
    """What the start-up line adds when a run goes on from a carried checkpoint."""
    return "" if restart is None else f" (carried: fresh optimisers, learning rates re-warm over {warmup} steps)"


def cosine_lr(step: int, total: int, warmup: int, base: float, floor: float = 0.1,
              restart: int | None = None) -> float:
    """Linear warm-up, cosine to ``floor * base``; warm up again from ``restart`` (a fresh optimiser)."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    lr = base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))
    if restart is not None and step < restart + warmup:
        lr *= (step - restart + 1) / warmup
    return lr


class LossLog:
    """Appends one JSON line per logged step to ``DIR/loss.jsonl``, kept across resumes; ``time_s`` is the run's
    wall time summed over them (a resumed log's clock goes on from its last line)."""

    def __init__(self, out: Path, enabled: bool = True):
        self.path = Path(out) / "loss.jsonl"
        self.enabled = enabled
        self.t0 = time.time()
        if enabled and self.path.is_file():
            lines = self.path.read_text().splitlines()
            try:
                self.t0 -= float(json.loads(lines[-1])["time_s"]) if lines else 0.0
            except (ValueError, KeyError, TypeError):
                pass  # a torn last line: the clock starts again

    def write(self, step: int, **values: float) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, "time_s": round(time.time() - self.t0, 1),
                                **{k: round(float(v), 6) for k, v in values.items()}}) + "\n")
