"""Core AI (``.aimodel``) export with Apple's ``coreai-torch``: ``torch.export`` with its decomposition table,
``TorchConverter().add_exported_program(ep).to_coreai()``, ``save_asset`` (checked on Linux with coreai-torch
0.4.3 / coreai-core 1.0.0b3; it warns that it was validated to torch 2.13).

Weights are stored in fp16: the component is converted in half precision. The program's MLIR text is what we
can read back on Linux: the main function's inputs and outputs and an op histogram.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections import Counter
from pathlib import Path

import torch

from .components import Component
from .coreml import package_size

_ARG = re.compile(r"tensor<([0-9x]*)x?([a-z]+[0-9]*)>\s*\{coreai\.name = \"([^\"]+)\"\}")


def _half(component: Component) -> tuple[torch.nn.Module, tuple]:
    module = copy.deepcopy(component.module).half().eval()
    inputs = tuple(v.half() if v.is_floating_point() else v for v in component.inputs.values())
    return module, inputs


def convert(component: Component):
    import coreai_torch  # checked by the caller (package.export_pipeline) with a clear message

    module, inputs = _half(component)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        component.module(*component.inputs.values())  # fill cached tables (RoPE) eagerly: constants, not traced
        program = torch.export.export(module, inputs).run_decompositions(coreai_torch.get_decomp_table())
        return coreai_torch.TorchConverter().add_exported_program(program).to_coreai()


def _signature(text: str) -> tuple[list[dict], list[dict]]:
    line = next((ln for ln in text.splitlines() if "coreai.graph @main(" in ln), "")
    args, _, results = line.partition(") -> ")

    def parse(part: str) -> list[dict]:
        out = []
        for dims, dtype, name in _ARG.findall(part):
            shape = [int(d) for d in dims.split("x") if d] if dims else []
            out.append({"name": name, "shape": shape, "dtype": dtype})
        return out

    return parse(args), parse(results)


def inspect_program(program) -> dict:
    text = str(program)
    inputs, outputs = _signature(text)
    ops = Counter(re.findall(r"= (coreai(?:\.[a-z_]+)+)", text))
    return {"inputs": inputs, "outputs": outputs, "ops": dict(ops.most_common())}


def write_coreai(component: Component, path: Path, checks: dict) -> dict:
    program = convert(component)
    program.save_asset(Path(path))
    info = inspect_program(program)
    if len(info["inputs"]) != len(component.inputs) or len(info["outputs"]) != len(component.outputs):
        raise RuntimeError(f"{path.name}: {len(info['inputs'])} inputs / {len(info['outputs'])} outputs, expected "
                           f"{len(component.inputs)} / {len(component.outputs)}")
    # Core AI names inputs after the forward's arguments (``caches_0``...) and outputs after the op that made
    # them: the manifest gives each its role, in order
    for found, role in zip(info["inputs"] + info["outputs"], list(component.inputs) + component.outputs):
        found["role"] = role
    return {"file": path.name, **info, "size_bytes": package_size(path), "bits": 16}
