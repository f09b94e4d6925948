"""The shipped default text-to-image model, as CI meets it (no training here): it is small, loads offline with
no flags, and still scores on a ShapesEval subset (a floor that guards against regressions)."""

import json

import pytest

from app.cli import main
from generators.evaluation.run_shapes_eval import evaluate_pipeline
from generators.evaluation.shapes_eval import prompts
from generators.pipelines.loading import DEFAULT_T2I, load_t2i

pytestmark = pytest.mark.skipif(not (DEFAULT_T2I / "model_index.json").is_file(), reason="no shipped model")

SUBSET_FLOOR = 0.45
"""The subset (2 prompts per task, 2 images each) is noisy; the full score is in the model card."""
CARD_FLOOR = 0.45
"""A regression floor on the card's own 380-image score; its target (issue 8: 0.6) is recorded in the card."""


def test_shipped_model_is_small_and_documented():
    total = sum(p.stat().st_size for p in DEFAULT_T2I.rglob("*") if p.is_file())
    assert total <= 50 * 2**20, f"{total / 2**20:.1f} MB"
    card = json.loads((DEFAULT_T2I / "model_card.json").read_text())
    overall, target = card["shapes_eval"]["overall"], card["target_overall"]
    assert overall >= CARD_FLOOR and card["shapes_eval"]["images"] >= 380 and card["image_px"] >= 64
    readme = (DEFAULT_T2I / "README.md").read_text()
    assert f"{overall:.3f}" in readme and (overall >= target) == ("Below the target" not in readme)


def test_loads_offline_with_no_flags(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "waves.png"
    assert main(["generate", "--prompt", "a pattern of blue and white waves", "--out", str(out)]) == 0
    assert "pocket-t2i" in capsys.readouterr().out and out.stat().st_size > 0


def test_shapes_eval_subset_stays_above_its_floor():
    pipe = load_t2i()
    subset = [m for m in prompts(per_task=2) if not m["held_out"]]
    report = evaluate_pipeline(pipe, subset, images_per_prompt=2, steps=20, show=False)
    assert report["summary"]["overall"] >= SUBSET_FLOOR, report["summary"]
