"""Budget-aware search of S2DiT's sandwich layout: how many LCHA and SSA blocks each stage gets.

S2DiT chooses its layout by dynamic programming over per-block latencies measured on the target device. Here:
``measure`` times one block of each type at each stage's token grid (one streamed chunk, the cost that repeats),
``search`` runs an exact DP over stages on Pareto fronts of (latency, quality) and returns the layout with the
best quality proxy within the budget, and ``brute_force`` is its slow twin for the tests.

The quality proxy is a sum over (stage, block type) of ``weight * (1 - decay**count)``: each extra block of a
kind helps less than the last, and the weights say where a kind helps most (LCHA's local detail at high
resolution, SSA's global mixing at low resolution). It is a stand-in for training every candidate; the weights
are a config, not a measurement.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import torch

TYPES = ("lcha", "ssa")
DEFAULT_WEIGHTS = {(0, "lcha"): 1.0, (0, "ssa"): 0.5, (1, "lcha"): 0.6, (1, "ssa"): 1.2, (2, "lcha"): 1.0,
                   (2, "ssa"): 0.5}


@dataclass
class SearchSpace:
    latency_ms: dict
    """(stage, type) -> ms of one block (one streamed chunk)."""
    weights: dict = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    decay: float = 0.7
    max_per_type: int = 6
    min_per_stage: int = 1
    stages: int = 3

    def value(self, stage: int, counts: tuple[int, ...]) -> float:
        return sum(self.weights.get((stage, t), 0.0) * (1 - self.decay ** n) for t, n in zip(TYPES, counts))

    def cost(self, stage: int, counts: tuple[int, ...]) -> float:
        return sum(self.latency_ms[(stage, t)] * n for t, n in zip(TYPES, counts))

    def options(self, stage: int):
        for counts in itertools.product(range(self.max_per_type + 1), repeat=len(TYPES)):
            if sum(counts) >= self.min_per_stage:
                yield counts


def _pareto(states: list[tuple[float, float, tuple]]) -> list[tuple[float, float, tuple]]:
    """Keep the states no other state beats on both latency (lower) and quality (higher)."""
    front, best = [], float("-inf")
    for cost, value, choice in sorted(states, key=lambda s: (s[0], -s[1])):
        if value > best:
            front.append((cost, value, choice))
            best = value
    return front


def search(space: SearchSpace, budget_ms: float) -> dict | None:
    """The layout with the highest proxy whose latency fits the budget (None when nothing fits)."""
    states = [(0.0, 0.0, ())]
    for stage in range(space.stages):
        grown = [(c + space.cost(stage, o), v + space.value(stage, o), choice + (o,))
                 for c, v, choice in states for o in space.options(stage)]
        states = _pareto([s for s in grown if s[0] <= budget_ms + 1e-9])
    if not states:
        return None
    cost, value, choice = max(states, key=lambda s: (s[1], -s[0]))
    return _result(space, choice, cost, value)


def brute_force(space: SearchSpace, budget_ms: float) -> dict | None:
    best = None
    for choice in itertools.product(*(list(space.options(s)) for s in range(space.stages))):
        cost = sum(space.cost(s, o) for s, o in enumerate(choice))
        value = sum(space.value(s, o) for s, o in enumerate(choice))
        if cost <= budget_ms + 1e-9 and (best is None or (value, -cost) > (best[1], -best[0])):
            best = (cost, value, choice)
    return None if best is None else _result(space, best[2], best[0], best[1])


def _result(space: SearchSpace, choice: tuple, cost: float, value: float) -> dict:
    layout = [[t for t, n in zip(TYPES, counts) for _ in range(n)] for counts in choice]
    return {"layout": layout, "counts": [dict(zip(TYPES, c)) for c in choice], "latency_ms": round(cost, 3),
            "proxy": round(value, 4)}


def measure(config: dict, latent_hw: tuple[int, int], device: str = "cpu", repeats: int = 5,
            dtype: torch.dtype = torch.float32) -> dict:
    """ms per block for every (stage, type) of an S2DiT config at a latent size, one streamed chunk, warm cache."""
    from .models.s2dit import VideoBlock

    d, heads = config["hidden_size"], config["num_heads"]
    p = config["patch_size"]
    chunk = config["chunk_frames"]
    ctx = torch.randn(1, 32, config["cross_attention_dim"], device=device, dtype=dtype)
    out = {}
    for stage, scale in enumerate(config["stage_scales"]):
        h, w = latent_hw[0] // p // scale, latent_hw[1] // p // scale
        for kind in TYPES:
            blk = VideoBlock(kind, d, heads, config["cross_attention_dim"], config["ffn_ratio"],
                             config["ssa_stride"], config["ssa_window"], tuple(config["conv_kernel"]))
            blk = blk.to(device=device, dtype=dtype).eval()
            x = torch.randn(1, chunk, h, w, d, device=device, dtype=dtype)
            mod = torch.zeros(1, chunk, 6, d, device=device, dtype=dtype)
            times = []
            with torch.no_grad():
                _, cache = blk(x, ctx, mod, chunk)
                for _ in range(3):  # fill the SSA window: the steady state a long stream runs in
                    _, cache = blk(x, ctx, mod, chunk, cache)
                for _ in range(repeats):
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    blk(x, ctx, mod, chunk, cache)
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                    times.append((time.perf_counter() - t0) * 1000)
            out[(stage, kind)] = sorted(times)[len(times) // 2]
    return out
