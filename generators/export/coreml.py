"""Core ML conversion of export components: ``torch.export`` -> ML program (iOS 17, fp16), k-means
palettization, and inspection of what was written.

The path is the one checked on this machine (../shared/DESIGN.md, "Core ML export"): ``torch.jit.trace`` fails
in coremltools 9.0 on torch 2.14, ``torch.export(...).run_decompositions({})`` converts. Prediction needs
macOS, so every check here reads the package back (spec, ops, shapes, size) or runs the weights in torch.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from .components import Component

logging.getLogger("coremltools").setLevel(logging.ERROR)  # before its import: on Linux it lists each missing
# macOS runtime proxy ("Failed to load _MLModelProxy"), which says nothing about the export

BITS = (16, 8, 6, 4)
WEIGHT_THRESHOLD = 2048
"""Tensors with fewer elements stay fp16 (coremltools' default: tiny tables gain nothing)."""
DEPLOYMENT_TARGET = "iOS17"


def _quiet():
    """coremltools logs every pass with a progress bar and warns about untested torch versions."""
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="coremltools")


def export_program(component: Component) -> torch.export.ExportedProgram:
    """The component as an ATen program with static shapes (what the converter reads). One eager call first
    fills the model's cached tables (RoPE), so they enter the program as constants rather than as traced
    float64 arithmetic that Core ML does not have."""
    with torch.no_grad():
        component.module(*component.inputs.values())
        return torch.export.export(component.module, tuple(component.inputs.values())).run_decompositions({})


def convert(component: Component, program: torch.export.ExportedProgram | None = None):
    """fp16 ML program for iOS 17, inputs and outputs named as the component names them."""
    import coremltools as ct

    from . import coreml_ops  # noqa: F401  (registers the two ops coremltools lacks)

    _quiet()
    program = program or export_program(component)
    ml = ct.convert(program, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                    compute_precision=ct.precision.FLOAT16,
                    outputs=[ct.TensorType(name=n) for n in component.outputs])
    spec = ml.get_spec()
    for old, new in zip([i.name for i in spec.description.input], component.inputs):
        if old != new:
            ct.utils.rename_feature(spec, old, new)
    spec.description.metadata.shortDescription = f"Pocket Studio {component.name}"
    return ct.models.MLModel(spec, weights_dir=ml.weights_dir, skip_model_load=True)


def palettize(ml, bits: int):
    """k-means palettization of every weight of >= WEIGHT_THRESHOLD elements (``bits`` 8, 6 or 4)."""
    import coremltools as ct

    if bits not in (8, 6, 4):
        raise ValueError(f"palettization takes 8, 6 or 4 bits, not {bits}")
    _quiet()
    op = ct.optimize.coreml.OpPalettizerConfig(mode="kmeans", nbits=bits, weight_threshold=WEIGHT_THRESHOLD)
    return ct.optimize.coreml.palettize_weights(ml, ct.optimize.coreml.OptimizationConfig(global_config=op))


def lut_weights(path: Path) -> dict[str, np.ndarray]:
    """Dense weights decompressed from the look-up tables of a saved palettized package, by the const's name
    (read back from disk: the check covers what was written)."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load
    from coremltools.models.utils import _convert_model_spec_to_pymil_prog

    _quiet()
    ml = ct.models.MLModel(str(path), skip_model_load=True)
    prog = _convert_model_spec_to_pymil_prog(ml, ml.get_spec().specificationVersion, milproto_load)
    return {op.name: op.materialized_val_inference() for op in prog.functions["main"].operations
            if op.op_type == "constexpr_lut_to_dense"}


def _parameter_of(const_name: str, placeholders: dict[str, str]) -> str | None:
    name = const_name
    for suffix in ("_palettized", "_to_fp16"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return placeholders.get(name)


def decompressed_state(package: Path, program: torch.export.ExportedProgram, module: torch.nn.Module):
    """(state dict of ``module`` with every palettized weight replaced by its decompressed value, number of
    look-up tables, number mapped to a parameter). A table that maps to no parameter of the same shape is
    counted, not guessed."""
    placeholders = dict(program.graph_signature.inputs_to_parameters)
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    tables = lut_weights(package)
    mapped = 0
    for name, dense in tables.items():
        fqn = _parameter_of(name, placeholders)
        if fqn is None or fqn not in state or tuple(dense.shape) != tuple(state[fqn].shape):
            continue
        state[fqn] = torch.from_numpy(np.asarray(dense, dtype=np.float32))
        mapped += 1
    return state, len(tables), mapped


# -- reading a package back ---------------------------------------------------------------------------------------------
def _dtype_name(array_type) -> str:
    from coremltools.proto import FeatureTypes_pb2 as ft

    return ft.ArrayFeatureType.ArrayDataType.Name(array_type.dataType).lower()


def package_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def inspect_package(path: Path) -> dict:
    """What an iOS app sees: inputs and outputs (name, shape, dtype), the op histogram, the spec version and
    opset (deployment target), the size on disk. Read from the saved package, not from memory."""
    import coremltools as ct

    _quiet()
    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    main = spec.mlProgram.functions["main"]
    opset = main.opset
    ops = Counter(op.type for op in main.block_specializations[opset].operations)

    def feature(f):
        return {"name": f.name, "shape": [int(s) for s in f.type.multiArrayType.shape],
                "dtype": _dtype_name(f.type.multiArrayType)}

    return {"inputs": [feature(f) for f in spec.description.input],
            "outputs": [feature(f) for f in spec.description.output],
            "states": len(spec.description.state),  # 0: caches travel as inputs and outputs
            "ops": dict(sorted(ops.items(), key=lambda kv: -kv[1])),
            "specification_version": int(spec.specificationVersion), "opset": opset,
            "size_bytes": package_size(path)}


def write_coreml(component: Component, path: Path, bits: int, checks: dict) -> dict:
    """Convert, palettize when ``bits`` < 16, save to ``path``, and check what was saved. Fills ``checks``
    with the palettized-vs-fp16 PSNR; returns the manifest entry."""
    from .checks import fp16_weights, with_state, worst_psnr

    program = export_program(component)
    ml = convert(component, program)
    fp16_size = None
    if bits < 16:
        fp16_path = path.with_name(f".{path.stem}-fp16.mlpackage")
        ml.save(str(fp16_path))
        fp16_size = package_size(fp16_path)
        palettize(ml, bits).save(str(path))
        _remove(fp16_path)
        state, tables, mapped = decompressed_state(path, program, component.module)
        reference = fp16_weights(component.module)
        checks["palettized_vs_fp16_psnr_db"] = _round2(worst_psnr(reference, with_state(component.module, state),
                                                                 component.inputs))
        checks["palettized_tables"], checks["palettized_tables_checked"] = tables, mapped
    else:
        ml.save(str(path))
    info = inspect_package(path)
    expected = [n for n in component.inputs]
    if [i["name"] for i in info["inputs"]] != expected:
        raise RuntimeError(f"{path.name}: inputs {[i['name'] for i in info['inputs']]} != {expected}")
    entry = {"file": path.name, **info, "bits": bits}
    if fp16_size is not None:
        entry["fp16_size_bytes"] = fp16_size
    return entry


def _round2(x):
    return None if x is None else round(float(x), 2)


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
