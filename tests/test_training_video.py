"""The video trainer: teacher (bidirectional) and causal modes, one process and ``accelerate`` on two, resume,
and the motion evaluation of what it saves."""

import json
from pathlib import Path

import pytest

from app.cli import main
from generators.training.common import latest_checkpoint

from .launch import accelerate_cli
from .test_training import tiny_vae  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
TINY = json.dumps(dict(patch_size=1, hidden_size=32, num_heads=2, layout=[["lcha"], ["ssa"], ["lcha"]]))


def _args(out, vae, steps, *extra):
    return ["train", "t2v", "--out", str(out), "--vae", str(vae), "--image-size", "32", "--frames", "4",
            "--samples", "8", "--batch-size", "2", "--steps", str(steps), "--checkpoint-every", "2",
            "--log-every", "1", "--model-config", TINY, "--warmup", "1", *extra]


def test_teacher_is_one_chunk_and_causal_resumes(tiny_vae, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    teacher = tmp_path / "teacher"
    assert main(_args(teacher, tiny_vae, 2, "--mode", "teacher")) == 0
    config = json.loads((teacher / "pipeline" / "denoiser" / "config.json").read_text())
    assert config["chunk_frames"] == 4 and config["sample_size"] == [8, 8]
    causal = tmp_path / "causal"
    assert main(_args(causal, tiny_vae, 2, "--mode", "causal")) == 0
    assert main(_args(causal, tiny_vae, 4, "--mode", "causal", "--resume")) == 0
    assert [json.loads(r)["step"] for r in (causal / "loss.jsonl").read_text().splitlines()] == [0, 1, 2, 3]
    assert json.loads((causal / "pipeline" / "denoiser" / "config.json").read_text())["chunk_frames"] == 2
    report = tmp_path / "motion.json"
    assert main(["eval", "motion", "--model", str(causal / "pipeline"), "--frames", "4", "--per-direction", "1",
                 "--clips-per-prompt", "1", "--out", str(report)]) == 0
    summary = json.loads(report.read_text())["summary"]
    assert summary["clips"] == 8 and set(summary["per_direction"]) == {"left", "right", "up", "down"}
    assert summary["held_out"]["clips"] == 4 and summary["steps"] == 20
    assert main(["eval", "motion", "--model", str(latest_checkpoint(causal)), "--frames", "4",
                 "--per-direction", "1", "--clips-per-prompt", "1"]) == 0


def test_t2v_under_accelerate_on_two_cpu_processes(tiny_vae, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    proc = accelerate_cli(*_args(out, tiny_vae, 3, "--cpu", "--mode", "causal"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert latest_checkpoint(out).name == "checkpoint-3"
    assert sorted(p.name for p in (out / "cache").iterdir()) == ["clips-0-32-4-4-0-of-2.pt", "clips-0-32-4-4-1-of-2.pt"]


def test_two_in_one_distillation_ode_then_self_forcing(tiny_vae, tmp_path, monkeypatch):  # noqa: F811
    import torch

    from generators.distill.train_distill_video import ode_grid
    from generators.pipelines import PocketTextToVideoPipeline

    grid, keep = ode_grid([1.0, 0.667, 0.334, 0.001, 0.0], 28)
    assert [round(grid[k], 3) for k in keep] == [1.0, 0.667, 0.334, 0.001, 0.0] and 26 <= len(grid) - 1 <= 30
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    teacher = tmp_path / "teacher"
    assert main(_args(teacher, tiny_vae, 2, "--mode", "teacher")) == 0
    from generators.pipelines import loading

    seen, real = [], loading.load_t2v

    def recording(folder=None, device="cpu"):  # the teacher as the distillation holds it in memory
        pipe = real(folder, device)
        if str(folder) == str(teacher / "pipeline"):
            seen.append((pipe.denoiser, {k: v.clone() for k, v in pipe.denoiser.state_dict().items()}))
        return pipe

    monkeypatch.setattr(loading, "load_t2v", recording)
    common = ["--teacher", str(teacher / "pipeline"), "--frames", "4", "--samples", "4", "--batch-size", "2",
              "--teacher-steps", "4", "--log-every", "1", "--checkpoint-every", "2", "--warmup", "1"]
    ode = tmp_path / "ode"
    assert main(["distill", "t2v-ode", *common, "--out", str(ode), "--steps", "2"]) == 0
    assert main(["distill", "t2v-ode", *common, "--out", str(ode), "--steps", "3", "--resume"]) == 0
    assert [json.loads(r)["step"] for r in (ode / "loss.jsonl").read_text().splitlines()] == [0, 1, 2]
    dmd = tmp_path / "dmd"
    assert main(["distill", "t2v-dmd", *common, "--student", str(ode / "pipeline"), "--out", str(dmd),
                 "--steps", "3", "--critic-updates", "2"]) == 0
    rows = [json.loads(r) for r in (dmd / "loss.jsonl").read_text().splitlines()]
    assert "dmd" in rows[0] and "dmd" not in rows[1] and all("critic" in r for r in rows)
    student = PocketTextToVideoPipeline.from_pretrained(dmd / "pipeline")
    assert student.chunk_frames == 2 and json.loads((dmd / "pipeline" / "sampling.json").read_text())[
        "num_inference_steps"] == 4
    assert student("a red circle moving left", num_frames=4).frames.shape == (4, 32, 32, 3)
    assert len(seen) == 3  # two ODE runs and the DMD run
    for model, before in seen:  # each run's teacher, as it held it in memory: frozen, bitwise
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert all(p.grad is None for p in model.parameters())
    assert main(["distill", "t2v-ode", *common, "--teacher", str(ode / "pipeline"), "--out", str(tmp_path / "x"),
                 "--steps", "1"]) == 2  # a causal model is no teacher
    _ship_with_a_tiny_decoder(dmd, teacher / "pipeline", tmp_path)


def _ship_with_a_tiny_decoder(run, teacher, tmp_path):
    """The student ships in fp16 with a TinyVAEDecoder, scored beside its teacher on the same prompts."""
    from generators.models import TinyVAEDecoder
    from generators.pipelines.loading import load_t2v
    from generators.training import ship_video

    vae = json.loads((teacher / "vae" / "config.json").read_text())
    TinyVAEDecoder(latent_channels=4, block_out_channels=(8, 8, 8), num_blocks=(1, 1, 0),
                   scaling_factor=vae["scaling_factor"]).save_pretrained(tmp_path / "dec")
    out = tmp_path / "assets" / "pocket-t2v"
    ship_video.main(["--run", str(run), "--teacher", str(teacher), "--decoder", str(tmp_path / "dec"), "--out",
                     str(out), "--frames", "4", "--per-direction", "1", "--strip", str(tmp_path / "strip.png"),
                     "--command", "pocket-studio distill t2v-dmd ..."])
    card = json.loads((out / "model_card.json").read_text())
    assert card["decoder"] == "TinyVAEDecoder" and card["default_steps"] == 4 and card["frame_px"] == [32, 32]
    assert card["motion_eval"]["clips"] == card["teacher"]["summary"]["clips"] == 16
    assert card["teacher"]["summary"]["steps"] == 28 and card["motion_eval"]["guidance"] == 1.0
    assert "| motion_accuracy |" in (out / "README.md").read_text()
    pipe = load_t2v(out)
    assert isinstance(pipe.vae, TinyVAEDecoder) and pipe.sampling_defaults["num_inference_steps"] == 4
    assert pipe("a red circle moving left", num_frames=2).frames.shape == (2, 32, 32, 3)
    assert (tmp_path / "strip.png").is_file() and not list(out.parent.glob(".pocket-t2v-*"))
    again = tmp_path / "assets" / "again"
    ship_video.main(["--run", str(run), "--teacher", str(teacher), "--out", str(again), "--frames", "4",
                     "--per-direction", "1", "--strip", str(tmp_path / "strip.png"),
                     "--teacher-card", str(out / "model_card.json")])  # the teacher's figures reused, the VAE kept
    card2 = json.loads((again / "model_card.json").read_text())
    assert card2["teacher"] == card["teacher"] and card2["decoder"] == "AutoencoderKL"
    with pytest.raises(SystemExit, match="another teacher"):
        ship_video.main(["--run", str(run), "--teacher", str(run / "pipeline"), "--out", str(again), "--frames", "4",
                         "--per-direction", "1", "--teacher-card", str(out / "model_card.json")])


def test_self_forcing_under_accelerate_on_two_cpu_processes(tiny_vae, tmp_path):  # noqa: F811
    teacher = tmp_path / "teacher"
    assert main(_args(teacher, tiny_vae, 1, "--mode", "teacher")) == 0
    for stage in ("ode", "dmd"):
        proc = accelerate_cli("distill", f"t2v-{stage}", "--teacher", str(teacher / "pipeline"), "--frames", "4",
                              "--samples", "2", "--batch-size", "1", "--teacher-steps", "4", "--steps", "2",
                              "--critic-updates", "1", "--cpu", "--out", str(tmp_path / stage))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert latest_checkpoint(tmp_path / stage).name == "checkpoint-2"
