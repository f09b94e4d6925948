"""ATen ops that ``torch.export`` emits and coremltools 9.0's torch frontend lacks, given converters here:
``alias`` (a view of the whole tensor: identity; from no-op pads and casts), ``new_ones`` (from
``tensor.new_ones``, which transformers' BERT mask code and our fixed-size SSA cache use) and ``__and__`` of
boolean masks (BERT's mask again). Each mirrors the frontend's own ``clone`` / ``new_zeros`` /
``logical_and``. Importing this module registers them once.
"""

from __future__ import annotations

import numpy as np
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.frontend.torch.ops import (
    NUM_TO_DTYPE_STRING,
    _cast_to,
    _get_inputs,
    _get_kwinputs,
    bitwise_and,
)
from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY, register_torch_op
from coremltools.converters.mil.mil import types


def _alias(context, node):
    x = _get_inputs(context, node, min_expected=1)[0]
    context.add(mb.identity(x=x, name=node.name))


def _new_ones(context, node):
    x, size = _get_inputs(context, node, min_expected=2)[:2]
    dtype = _get_kwinputs(context, node, "dtype", default=[None])[0]
    dtype = NUM_TO_DTYPE_STRING[dtype.val] if dtype is not None else types.builtin_to_string(x.dtype)
    if isinstance(size, list):
        size = mb.concat(values=size, axis=0)
    if size.val is not None and np.asarray(size.val).size == 0:  # a 0-d tensor
        context.add(mb.const(val=np.array(1, dtype=types.nptype_from_builtin(types.string_to_builtin(dtype))),
                             name=node.name))
        return
    if types.is_float(size.dtype):
        size = mb.cast(x=size, dtype="int32")
    ones = mb.fill(shape=size, value=1.0)
    context.add(_cast_to(ones, dtype, node.name) if dtype != "fp32" else mb.identity(x=ones, name=node.name))


for _name, _fn in (("alias", _alias), ("new_ones", _new_ones)):
    if _name not in _TORCH_OPS_REGISTRY.name_to_func_mapping:
        _fn.__name__ = _name
        register_torch_op(_fn)
# ``aten.__and__.Tensor`` keeps its underscores through the frontend's name sanitising, so its registered
# ``and`` never matches; name the frontend's own converter for it (register_torch_op refuses names ending in _).
_TORCH_OPS_REGISTRY.set_func_by_name(bitwise_and, "__and__")
