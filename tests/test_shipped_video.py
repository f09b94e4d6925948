"""The shipped streaming video model, as CI meets it (no training here): small, loads offline with no flags, streams
at its card's settings, and still scores on a motion-eval subset (a floor that guards against regressions)."""

import json

import pytest

from app.cli import main
from generators.data.procedural_video import video_prompts
from generators.evaluation.run_motion_eval import evaluate_video_pipeline
from generators.pipelines.loading import SHIPPED_VIDEO, load_t2v, read_sampling

pytestmark = pytest.mark.skipif(not (SHIPPED_VIDEO / "model_index.json").is_file(), reason="no shipped video model")

SUBSET_FLOOR = {"frame_accuracy": 0.5, "motion_accuracy": 0.5}
"""One seen prompt per direction, two clips each: noisy; the full figures are in the model card."""


def test_shipped_video_model_is_small_and_documented():
    total = sum(p.stat().st_size for p in SHIPPED_VIDEO.rglob("*") if p.is_file())
    assert total <= 50 * 2**20, f"{total / 2**20:.1f} MB"
    card = json.loads((SHIPPED_VIDEO / "model_card.json").read_text())
    assert read_sampling(SHIPPED_VIDEO) == {"num_inference_steps": card["default_steps"], "guidance_scale": 1.0}
    assert card["default_steps"] <= 4 and card["motion_eval"]["clips"] == card["teacher"]["summary"]["clips"] >= 40
    readme = (SHIPPED_VIDEO / "README.md").read_text()
    assert str(card["motion_eval"]["motion_accuracy"]) in readme


def test_streams_offline_with_no_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "clip.mp4"
    assert main(["video", "--prompt", "a red circle moving right", "--frames", "4", "--out", str(out)]) == 0
    assert out.stat().st_size > 0


def test_motion_eval_subset_stays_above_its_floor():
    pipe = load_t2v()
    pipe.set_progress_bar_config(disable=True)
    subset = [m for m in video_prompts(per_direction=1) if not m["held_out"]]
    sampling = read_sampling(SHIPPED_VIDEO)
    summary = evaluate_video_pipeline(pipe, subset, frames=8, clips_per_prompt=2, show=False,
                                      steps=sampling["num_inference_steps"], guidance=sampling["guidance_scale"])["summary"]
    assert all(summary[k] >= floor for k, floor in SUBSET_FLOOR.items()), summary
