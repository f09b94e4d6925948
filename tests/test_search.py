"""The budget-aware sandwich search: the DP finds the brute-force optimum, respects the budget, and the command
measures real blocks and prints a layout (or names why none fits)."""

import json
import random

import pytest

from app.cli import main
from generators.search import TYPES, SearchSpace, brute_force, search


@pytest.mark.parametrize("seed", range(12))
def test_dp_finds_the_brute_force_optimum(seed):
    rng = random.Random(seed)
    stages = rng.choice([2, 3])
    lat = {(s, t): rng.uniform(0.5, 5.0) for s in range(stages) for t in TYPES}
    weights = {(s, t): rng.uniform(0.1, 2.0) for s in range(stages) for t in TYPES}
    space = SearchSpace(lat, weights=weights, decay=rng.uniform(0.3, 0.9), max_per_type=3, stages=stages)
    budget = rng.uniform(2.0, 30.0)
    fast, slow = search(space, budget), brute_force(space, budget)
    assert (fast is None) == (slow is None)
    if fast is not None:
        assert fast["proxy"] == pytest.approx(slow["proxy"])
        assert fast["latency_ms"] <= budget + 1e-6
        assert all(len(stage) >= 1 for stage in fast["layout"])


def test_more_budget_never_lowers_the_proxy_and_the_cheapest_block_wins_a_tight_one():
    lat = {(s, "lcha"): 4.0 for s in range(3)} | {(s, "ssa"): 1.0 for s in range(3)}
    space = SearchSpace(lat, max_per_type=4)
    proxies = [search(space, b)["proxy"] for b in (3.0, 6.0, 12.0, 24.0, 48.0)]
    assert proxies == sorted(proxies)
    assert search(space, 3.0)["layout"] == [["ssa"], ["ssa"], ["ssa"]]
    assert search(space, 2.9) is None


def test_search_sandwich_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"hidden_size": 32, "num_heads": 2, "cross_attention_dim": 16}))
    out = tmp_path / "layout.json"
    assert main(["search-sandwich", "--budget-ms", "1000", "--config", str(config), "--latent", "8x8",
                 "--repeats", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "stage 1 (1/2 res) ssa" in printed and "layout for 1000 ms" in printed
    found = json.loads(out.read_text())
    assert found["latency_ms"] <= 1000 and len(found["layout"]) == 3
    assert main(["search-sandwich", "--budget-ms", "0.0001", "--config", str(config), "--latent", "8x8",
                 "--repeats", "1"]) == 2
    assert "no layout fits" in capsys.readouterr().err
    assert main(["search-sandwich", "--budget-ms", "5", "--latent", "big"]) == 2
    assert "HxW" in capsys.readouterr().err
