"""Trained nerfstudio splatfacto runs (``config.yml`` + ``nerfstudio_models/step-*.ckpt``) as ``GaussianScene``.

Both files may come from someone else, so neither is trusted: ``config.yml`` is a ``yaml.dump`` of python objects
(``!!python/object:...`` tags) and is read with a SafeLoader that turns every python tag into plain data (nothing
is imported or called); the checkpoint is read with ``torch.load(weights_only=True)`` (nerfstudio stores only
tensors and plain containers in it), memory-mapped so the optimiser state is never read.

Checkpoint layout (nerfstudio 1.1 ``Trainer.save_checkpoint``): ``{"step", "pipeline", "optimizers", ...}`` with
``pipeline["_model.gauss_params.<name>"]`` for means [N,3], scales [N,3] (log), quats [N,4] (wxyz), opacities
[N,1] (logit), features_dc [N,3] and features_rest [N,K,3]. With ``sh_degree > 0`` features_dc already holds the
SH DC coefficient (splatfacto initialises it with RGB2SH); with ``sh_degree == 0`` it holds logit(RGB). The
Gaussians live in the dataparser's frame (poses oriented, centred and scaled), as ``ns-export gaussian-splat``
writes them; ``dataparser_transforms.json`` beside ``config.yml`` says how that frame maps to the dataset's.
Our stylization plugin adds ``_model.object_labels`` [N] and ``_model.object_names_json`` (UTF-8 bytes).
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch
import yaml

from stylize3d.atomic import atomic_open
from stylize3d.gaussians import SH_C0, GaussianScene, num_sh_bases, sh_degree_from_bases

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.yml"
MODELS_DIR = "nerfstudio_models"
MAX_CONFIG_BYTES = 4 << 20
SPLATFACTO_METHODS = ("splatfacto", "pocket-splatfacto", "pocket-stylize")  # and any "splatfacto-*" variant
GAUSS_PREFIX = "_model.gauss_params."
GAUSS_KEYS = ("means", "scales", "quats", "opacities", "features_dc", "features_rest")
LABELS_KEY = "_model.object_labels"
NAMES_KEY = "_model.object_names_json"
_CKPT = re.compile(r"step-(\d+)\.ckpt$")


# ----------------------------------------------------------------------------------------------- config.yml


class _PlainLoader(yaml.SafeLoader):
    """SafeLoader that reads nerfstudio's python-tagged YAML as plain data and never imports or calls anything."""


def _construct_python(loader: _PlainLoader, suffix: str, node: yaml.Node):
    """``!!python/object:X`` -> dict, ``!!python/tuple`` -> list, ``!!python/name:X`` -> "X",
    ``!!python/object/apply:pathlib.PosixPath [a, b]`` -> "a/b", other applies -> their arguments."""
    if isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
        if suffix.startswith("object/apply:") and "args" in value:  # the long form: {args: [...], state: ...}
            value = value["args"]
        else:
            return value
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
        return suffix.split(":", 1)[1] if suffix.startswith("name:") and not value else value
    if suffix.startswith("object/apply:") and suffix.endswith("Path"):
        parts = [str(p) for p in value]
        return str(PurePosixPath(*parts)) if parts else "."
    return value


_PlainLoader.add_multi_constructor("tag:yaml.org,2002:python/", _construct_python)


@dataclass
class RunConfig:
    """What we need from a run's ``config.yml`` (plain values; paths as written by the run, maybe relative)."""

    path: Path
    method_name: str
    data: Path | None  # the dataset the run was trained on
    output_dir: Path | None
    experiment_name: str | None
    timestamp: str | None
    relative_model_dir: str
    sh_degree: int | None  # the model's configured SH degree
    raw: dict


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def read_run_config(path: str | os.PathLike) -> RunConfig:
    """Parse a nerfstudio ``config.yml`` safely; ``ValueError`` naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such nerfstudio config file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ValueError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MB; not a nerfstudio config.yml")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_PlainLoader)  # noqa: S506 - a SafeLoader
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: not a nerfstudio config (top level is {type(raw).__name__}, not a mapping)")
    method = raw.get("method_name")
    if not isinstance(method, str) or not method:
        raise ValueError(f"{path}: not a nerfstudio config (no 'method_name')")
    data = raw.get("data") or _get(raw, "pipeline", "datamanager", "data") or \
        _get(raw, "pipeline", "datamanager", "dataparser", "data")
    sh = _get(raw, "pipeline", "model", "sh_degree")
    if sh is not None and (isinstance(sh, bool) or not isinstance(sh, int) or not 0 <= sh <= 3):
        raise ValueError(f"{path}: pipeline.model.sh_degree must be an integer in 0..3, got {sh!r}")
    rel = raw.get("relative_model_dir") or MODELS_DIR
    if not isinstance(rel, str) or PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
        raise ValueError(f"{path}: relative_model_dir {rel!r} must be a relative path inside the run")

    def opt_str(key):
        v = raw.get(key)
        return str(v) if isinstance(v, (str, int, float)) else None

    return RunConfig(path=path, method_name=method, data=Path(data) if isinstance(data, str) else None,
                     output_dir=Path(raw["output_dir"]) if isinstance(raw.get("output_dir"), str) else None,
                     experiment_name=opt_str("experiment_name"), timestamp=opt_str("timestamp"),
                     relative_model_dir=rel, sh_degree=sh, raw=raw)


def is_splatfacto_method(method_name: str) -> bool:
    return method_name in SPLATFACTO_METHODS or method_name.startswith("splatfacto")


# ----------------------------------------------------------------------------------------------- checkpoints


def find_checkpoint(models_dir: str | os.PathLike, step: int | None = None) -> Path:
    """``step-XXXXXXXXX.ckpt`` in ``models_dir``: the given step or the latest."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise ValueError(f"{models_dir}: checkpoint folder not found (expected {MODELS_DIR}/step-*.ckpt)")
    found = {int(m.group(1)): p for p in models_dir.iterdir() if (m := _CKPT.match(p.name)) and p.is_file()}
    if not found:
        raise ValueError(f"{models_dir}: no step-*.ckpt checkpoint in it")
    if step is None:
        return found[max(found)]
    if step not in found:
        raise ValueError(f"{models_dir}: no checkpoint for step {step} (have {sorted(found)[-5:]})")
    return found[step]


def _numpy_scalar_globals() -> list:
    """What a pickled numpy scalar needs (real nerfstudio checkpoints hold some, e.g. in the trainer's state):
    the scalar reconstructor and dtype classes. Plain data: allowing them executes no code."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")] if hasattr(np, "dtypes") else []
    return [core.multiarray.scalar, np.dtype, *dtypes]


def load_checkpoint_state(path: str | os.PathLike) -> dict:
    """``torch.load(weights_only=True)``, memory-mapped; ``ValueError`` naming the file for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
            AttributeError, TypeError) as e:
        raise ValueError(f"{path} is not a readable nerfstudio checkpoint (only tensors and plain containers "
                         f"are accepted): {e}") from e
    if not isinstance(state, dict) or not isinstance(state.get("pipeline"), dict):
        raise ValueError(f"{path}: not a nerfstudio checkpoint (no 'pipeline' state dict)")
    return state


def _strip_module(key: str) -> str:
    """DDP runs save ``module._model.x`` or ``_model.module.x``; the rest save ``_model.x``."""
    if key.startswith("module."):
        key = key[len("module."):]
    return key.replace("_model.module.", "_model.", 1)


def scene_from_pipeline_state(pipeline: dict, source: str, sh_degree: int | None = None) -> GaussianScene:
    """splatfacto pipeline state dict -> ``GaussianScene`` (float32 copies); every shape is checked."""
    state = {_strip_module(k): v for k, v in pipeline.items()}
    if f"{GAUSS_PREFIX}means" not in state and "_model.means" in state:  # checkpoints before gauss_params
        state.update({f"{GAUSS_PREFIX}{k}": state[f"_model.{k}"] for k in GAUSS_KEYS if f"_model.{k}" in state})
    missing = [k for k in GAUSS_KEYS if f"{GAUSS_PREFIX}{k}" not in state]
    if missing:
        raise ValueError(f"{source}: not a splatfacto checkpoint, missing {', '.join(GAUSS_PREFIX + k for k in missing)}")
    t = {}
    for k in GAUSS_KEYS:
        v = state[f"{GAUSS_PREFIX}{k}"]
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            raise ValueError(f"{source}: {GAUSS_PREFIX}{k} is not a floating-point tensor")
        t[k] = v
    n = t["means"].shape[0] if t["means"].ndim == 2 else -1
    expected = {"means": (n, 3), "scales": (n, 3), "quats": (n, 4), "features_dc": (n, 3)}
    for k, shape in expected.items():
        if tuple(t[k].shape) != shape or n <= 0:
            raise ValueError(f"{source}: {GAUSS_PREFIX}{k} has shape {tuple(t[k].shape)}, expected {shape} "
                             f"(N from means {tuple(t['means'].shape)})")
    if tuple(t["opacities"].shape) not in ((n, 1), (n,)):
        raise ValueError(f"{source}: {GAUSS_PREFIX}opacities has shape {tuple(t['opacities'].shape)}, "
                         f"expected ({n}, 1)")
    rest = t["features_rest"]
    if rest.ndim != 3 or rest.shape[0] != n or rest.shape[2] != 3:
        raise ValueError(f"{source}: {GAUSS_PREFIX}features_rest has shape {tuple(rest.shape)}, expected ({n}, K, 3)")
    try:
        degree = sh_degree_from_bases(rest.shape[1] + 1)
    except ValueError as e:
        raise ValueError(f"{source}: {GAUSS_PREFIX}features_rest: {e}") from e
    if sh_degree is not None and degree != sh_degree:
        raise ValueError(f"{source}: features_rest holds {rest.shape[1]} SH coefficients per channel (degree "
                         f"{degree}) but the config says sh_degree {sh_degree} ({num_sh_bases(sh_degree) - 1})")

    def f32(x: torch.Tensor) -> torch.Tensor:
        return x.detach().to(torch.float32).clone()  # a copy: the mmapped file can go

    dc = f32(t["features_dc"])
    if sh_degree == 0:  # splatfacto's colour-only mode stores logit(RGB)
        dc = (torch.sigmoid(dc) - 0.5) / SH_C0
    labels, names = _labels_from_state(state, n, source)
    scene = GaussianScene(means=f32(t["means"]), scales=f32(t["scales"]), quats=f32(t["quats"]),
                          opacities=f32(t["opacities"]).reshape(n), sh0=dc[:, None, :], shN=f32(rest),
                          labels=labels, **({"object_names": names} if names else {}))
    scene.check_finite(source=source)
    return scene


def _labels_from_state(state: dict, n: int, source: str) -> tuple[torch.Tensor | None, dict[int, str] | None]:
    labels = state.get(LABELS_KEY)
    if labels is None:
        return None, None
    if not isinstance(labels, torch.Tensor) or labels.shape != (n,) or labels.is_floating_point():
        raise ValueError(f"{source}: {LABELS_KEY} must be an integer tensor of shape ({n},)")
    labels = labels.to(torch.long).clone()
    names = {0: "background"}
    raw = state.get(NAMES_KEY)
    if isinstance(raw, torch.Tensor) and raw.dtype == torch.uint8 and raw.ndim == 1:
        try:
            decoded = json.loads(bytes(raw.tolist()).decode("utf-8"))
            names.update({int(k): str(v) for k, v in decoded.items()})
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError, AttributeError) as e:
            raise ValueError(f"{source}: {NAMES_KEY} is not a JSON object of names: {e}") from e
    for oid in labels.unique().tolist():
        names.setdefault(int(oid), f"object {oid}")
    return labels, names


def pipeline_state_from_scene(scene: GaussianScene, labels: bool = True) -> dict[str, torch.Tensor]:
    """The inverse of ``scene_from_pipeline_state`` (SH layout, sh_degree > 0 convention)."""
    n = scene.num_gaussians
    state = {
        f"{GAUSS_PREFIX}means": scene.means.detach().float().cpu().clone(),
        f"{GAUSS_PREFIX}scales": scene.scales.detach().float().cpu().clone(),
        f"{GAUSS_PREFIX}quats": scene.quats.detach().float().cpu().clone(),
        f"{GAUSS_PREFIX}features_dc": scene.sh0[:, 0].detach().float().cpu().clone(),
        f"{GAUSS_PREFIX}features_rest": scene.shN.detach().float().cpu().clone(),
        f"{GAUSS_PREFIX}opacities": scene.opacities.detach().float().cpu().reshape(n, 1).clone(),
    }
    if labels:
        state[LABELS_KEY] = scene.labels.detach().cpu().long().clone()
        state[NAMES_KEY] = encode_object_names(scene.object_names)
    return state


def encode_object_names(names: dict[int, str]) -> torch.Tensor:
    """[B] uint8 UTF-8 JSON, so names travel inside a tensors-only checkpoint."""
    raw = json.dumps({str(k): v for k, v in sorted(names.items())}).encode("utf-8")
    return torch.tensor(list(raw), dtype=torch.uint8)


def save_splatfacto_checkpoint(scene: GaussianScene, path: str | os.PathLike, step: int = 0) -> Path:
    """Write ``scene`` as a splatfacto checkpoint (no optimiser state), atomically."""
    path = Path(path)
    with atomic_open(path) as f:
        torch.save({"step": int(step), "pipeline": pipeline_state_from_scene(scene), "optimizers": {},
                    "schedulers": {}, "scalers": {}}, f)
    return path


# ----------------------------------------------------------------------------------------------- runs


@dataclass
class SplatfactoRun:
    config: RunConfig
    checkpoint: Path
    step: int
    scene: GaussianScene  # in the dataparser's frame, as nerfstudio trained and exports it
    dataparser_transform: torch.Tensor | None  # [3, 4]: dataparser frame = scale * (T @ [p; 1])
    dataparser_scale: float | None

    @property
    def run_dir(self) -> Path:
        return self.config.path.parent


def _locate(path: Path) -> tuple[Path, Path | None]:
    """(config.yml, explicit checkpoint or None) from a config.yml, run dir, nerfstudio_models dir or .ckpt."""
    if path.is_file() and path.suffix == ".ckpt":
        return path.parent.parent / CONFIG_NAME, path
    if path.is_dir():
        if (path / CONFIG_NAME).is_file():
            return path / CONFIG_NAME, None
        if (path.parent / CONFIG_NAME).is_file() and any(_CKPT.match(p.name) for p in path.iterdir()):
            return path.parent / CONFIG_NAME, None
        raise ValueError(f"{path}: not a nerfstudio run (no {CONFIG_NAME} in it)")
    if path.is_file():
        return path, None
    raise ValueError(f"{path}: no such nerfstudio run, config.yml or checkpoint")


def read_dataparser_transform(run_dir: Path) -> tuple[torch.Tensor | None, float | None]:
    """``dataparser_transforms.json`` -> ([3, 4] transform, scale), or (None, None) if the run has none."""
    path = run_dir / "dataparser_transforms.json"
    if not path.is_file():
        return None, None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        transform = torch.tensor(meta["transform"], dtype=torch.float64)
        scale = float(meta["scale"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a nerfstudio dataparser transform: {e}") from e
    if transform.shape != (3, 4) or not torch.isfinite(transform).all() or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"{path}: transform must be a finite 3x4 matrix and scale positive")
    return transform, scale


def read_splatfacto_run(path: str | os.PathLike, step: int | None = None) -> SplatfactoRun:
    """Load a splatfacto run: config, newest (or ``step``) checkpoint, dataparser transform and Gaussians."""
    config_path, ckpt = _locate(Path(path))
    config = read_run_config(config_path)
    if not is_splatfacto_method(config.method_name):
        raise ValueError(f"{config_path}: method {config.method_name!r} is not a Gaussian-splatting (splatfacto) "
                         f"method; expected one of {SPLATFACTO_METHODS} or splatfacto-*")
    if ckpt is None:
        ckpt = find_checkpoint(config_path.parent / config.relative_model_dir, step)
    state = load_checkpoint_state(ckpt)
    scene = scene_from_pipeline_state(state["pipeline"], str(ckpt), config.sh_degree)
    transform, scale = read_dataparser_transform(config_path.parent)
    ckpt_step = state.get("step")
    logger.info("loaded %s: %d Gaussians, SH degree %d, step %s", ckpt, scene.num_gaussians, scene.sh_degree, ckpt_step)
    return SplatfactoRun(config, ckpt, int(ckpt_step) if isinstance(ckpt_step, int) else -1, scene, transform, scale)


def load_splatfacto_run(path: str | os.PathLike, step: int | None = None) -> GaussianScene:
    """A splatfacto run (config.yml, its folder, its nerfstudio_models folder or a .ckpt) -> ``GaussianScene``."""
    return read_splatfacto_run(path, step).scene
