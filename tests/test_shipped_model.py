"""The shipped text-to-image models, as CI meets them (no training here): each is small, loads offline with no
flags, and still scores on a ShapesEval subset (a floor that guards against regressions). Fast, the distilled
student, is judged against its teacher's card."""

import json

import pytest

from app.cli import main
from generators.evaluation.run_shapes_eval import evaluate_pipeline
from generators.evaluation.shapes_eval import prompts
from generators.pipelines.loading import DEFAULT_T2I, SHIPPED, load_t2i, read_sampling, resolve_model, shipped

pytestmark = pytest.mark.skipif(not (DEFAULT_T2I / "model_index.json").is_file(), reason="no shipped model")

SUBSET_FLOOR = {"Quality": 0.45, "Fast": 0.40}
"""The subset (2 prompts per task, 2 images each) is noisy; the full score is in the model card."""
CARD_FLOOR = {"Quality": 0.45, "Fast": 0.40}
"""Regression floors on the cards' own 380-image scores; their targets (issue 8: 0.6; issue 9: within 0.05 of the
teacher) are recorded in the cards."""
NAMES = [pytest.param(name, marks=pytest.mark.skipif(name not in shipped(), reason=f"{name} is not shipped"))
         for name in SHIPPED]


@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_is_small_and_documented(name):
    folder = SHIPPED[name]
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert total <= 50 * 2**20, f"{total / 2**20:.1f} MB"
    card = json.loads((folder / "model_card.json").read_text())
    overall, target = card["shapes_eval"]["overall"], card["target_overall"]
    assert overall >= CARD_FLOOR[name] and card["shapes_eval"]["images"] >= 380 and card["image_px"] >= 64
    readme = (folder / "README.md").read_text()
    assert f"{overall:.3f}" in readme and (overall >= target) == ("Below the target" not in readme)
    assert read_sampling(folder) == {"num_inference_steps": card["default_steps"], "guidance_scale": card["guidance"]}
    if "teacher" in card:  # a student: scored on its teacher card's prompts, judged against that card as it is now
        teacher = json.loads((SHIPPED["Quality"] / "model_card.json").read_text())["shapes_eval"]
        assert card["teacher"]["overall"] == teacher["overall"] and card["shapes_eval"]["images"] == teacher["images"]
        assert target == pytest.approx(teacher["overall"] - 0.05, abs=1e-4)


def test_loads_offline_with_no_flags(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "waves.png"
    assert main(["generate", "--prompt", "a pattern of blue and white waves", "--out", str(out)]) == 0
    assert resolve_model(None).name in capsys.readouterr().out and out.stat().st_size > 0


@pytest.mark.parametrize("name", NAMES)
def test_shapes_eval_subset_stays_above_its_floor(name):
    pipe = load_t2i(SHIPPED[name])
    sampling = read_sampling(SHIPPED[name])
    subset = [m for m in prompts(per_task=2) if not m["held_out"]]
    report = evaluate_pipeline(pipe, subset, images_per_prompt=2, steps=sampling["num_inference_steps"],
                               guidance=sampling["guidance_scale"], show=False)
    assert report["summary"]["overall"] >= SUBSET_FLOOR[name], report["summary"]
