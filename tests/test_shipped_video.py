"""The shipped streaming video model, as CI meets it (no training here): small, loads offline with no flags, streams
at its card's settings, and still scores what its card says on the card's own clips (~25 s on 2 cores)."""

import json

import pytest

from app.cli import main
from generators.data.procedural_video import video_prompts
from generators.evaluation.run_motion_eval import evaluate_video_pipeline
from generators.pipelines.loading import SHIPPED_VIDEO, load_t2v, read_sampling

pytestmark = pytest.mark.skipif(not (SHIPPED_VIDEO / "model_index.json").is_file(), reason="no shipped video model")

FLOOR = {"frame_accuracy": 0.12, "motion_accuracy": 0.3}
"""A few clips below the shipped student's card (0.19 / 0.375 on 40 clips); the failed students of
``docs/t2v_training_log.md`` entry 4 scored <= 0.063 / 0.1."""
CARD_TOLERANCE = 0.1
"""The same seeds as the card: only float differences between machines may flip a few frames' verdicts."""


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


def test_motion_eval_matches_its_card_and_stays_above_its_floor():
    pipe = load_t2v()
    pipe.set_progress_bar_config(disable=True)
    card = json.loads((SHIPPED_VIDEO / "model_card.json").read_text())["motion_eval"]
    sampling = read_sampling(SHIPPED_VIDEO)
    summary = evaluate_video_pipeline(pipe, video_prompts(), frames=card["frames"],
                                      clips_per_prompt=card["clips_per_prompt"], show=False,
                                      steps=sampling["num_inference_steps"], guidance=sampling["guidance_scale"])["summary"]
    assert summary["clips"] == card["clips"]
    for key, floor in FLOOR.items():
        assert summary[key] >= floor, summary
        assert abs(summary[key] - card[key]) <= CARD_TOLERANCE, (key, summary[key], card[key])
