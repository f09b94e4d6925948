"""Checks of an export that hold on Linux: the re-authored model against the original, and the model with its
palettized weights decompressed against the fp16 one, both as PSNR in torch on the component's inputs."""

from __future__ import annotations

import copy
import math

import torch

from .components import Component


def psnr(reference: torch.Tensor, test: torch.Tensor) -> float:
    """ml-stable-diffusion's definition: peak = max |reference|, over the RMS of the difference (dB)."""
    ref, out = reference.detach().double(), test.detach().double()
    rms = (ref - out).pow(2).mean().sqrt().item()
    return 20 * math.log10((ref.abs().max().item() + 1e-5) / (rms + 1e-10))


def _outputs(module: torch.nn.Module, inputs: dict) -> list[torch.Tensor]:
    with torch.no_grad():
        out = module(*inputs.values())
    return list(out) if isinstance(out, (tuple, list)) else [out]


def worst_psnr(a: torch.nn.Module, b: torch.nn.Module, inputs: dict) -> float | None:
    """The lowest PSNR over the outputs (a streaming step returns its caches too: each must hold)."""
    scores = [psnr(x, y) for x, y in zip(_outputs(a, inputs), _outputs(b, inputs)) if x.numel() and x.abs().max() > 0]
    return min(scores) if scores else None


def reauthoring_psnr(component: Component) -> float | None:
    if component.reference is None:
        return None
    return worst_psnr(component.reference, component.module, component.inputs)


def fp16_weights(module: torch.nn.Module) -> torch.nn.Module:
    """The module with every floating weight rounded to fp16 (what the fp16 package stores), run in fp32."""
    twin = copy.deepcopy(module)
    with torch.no_grad():
        for t in list(twin.parameters()) + list(twin.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())
    return twin


def with_state(module: torch.nn.Module, state: dict) -> torch.nn.Module:
    twin = copy.deepcopy(module)
    twin.load_state_dict(state)
    return twin
