"""Training scripts: the same script on one CPU process and under ``accelerate launch`` on two; checkpoints,
EMA, the loss log, ``--resume``; the autoencoder trainer; and the command line around them."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.cli import main
from generators.pipelines.loading import load_pipeline
from generators.training.common import latest_checkpoint

from .launch import accelerate_cli

ROOT = Path(__file__).resolve().parents[1]
TINY_UNET = json.dumps(dict(block_out_channels=[16, 16, 16], transformer_layers=[0, 1, 1], layers_per_block=1,
                            mid_transformer_layers=1, head_dim=8))


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory):
    from diffusers import AutoencoderKL

    folder = tmp_path_factory.mktemp("vae")
    torch.manual_seed(0)
    AutoencoderKL(block_out_channels=(8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 3,
                  up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=4, norm_num_groups=4,
                  layers_per_block=1, sample_size=32).save_pretrained(folder)
    return folder


def _args(out, vae, steps, *extra):
    return ["--out", str(out), "--vae", str(vae), "--image-size", "32", "--samples", "16", "--batch-size", "2",
            "--steps", str(steps), "--checkpoint-every", "2", "--log-every", "1", "--model-config", TINY_UNET,
            "--warmup", "1", *extra]


def test_t2i_under_accelerate_on_two_cpu_processes(tiny_vae, tmp_path):
    out = tmp_path / "run"
    proc = accelerate_cli("train", "t2i", *_args(out, tiny_vae, 3, "--cpu"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (out / "cache").iterdir()) == ["data-0-32-8-0-of-2.pt", "data-0-32-8-1-of-2.pt"]
    assert latest_checkpoint(out).name == "checkpoint-3"
    assert (out / "pipeline" / "model_index.json").is_file()


def test_t2i_single_process_resumes_where_it_stopped(tiny_vae, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "run"
    assert main(["train", "t2i", *_args(out, tiny_vae, 2)]) == 0
    first = torch.load(latest_checkpoint(out) / "optimizer.pt", weights_only=True)
    assert json.loads((latest_checkpoint(out) / "state.json").read_text())["step"] == 2
    assert main(["train", "t2i", *_args(out, tiny_vae, 4, "--resume")]) == 0
    state = json.loads((latest_checkpoint(out) / "state.json").read_text())
    assert state["step"] == 4 and state["family"] == "unet"
    steps = [json.loads(line)["step"] for line in (out / "loss.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3]  # the resumed run went on from step 2, it did not start over
    resumed = torch.load(latest_checkpoint(out) / "optimizer.pt", weights_only=True)
    assert resumed["state"][0]["step"] > first["state"][0]["step"]
    from safetensors.torch import load_file

    from generators.pipelines import PocketTextToImagePipeline

    ema = load_file(latest_checkpoint(out) / "ema" / "diffusion_pytorch_model.safetensors")
    raw = load_file(latest_checkpoint(out) / "denoiser" / "diffusion_pytorch_model.safetensors")
    assert any(not torch.equal(ema[k], raw[k]) for k in raw)  # EMA weights are their own
    pipe = PocketTextToImagePipeline.from_pretrained(out / "pipeline")
    assert pipe.image_size == 32


def test_a_carried_checkpoint_goes_on_in_a_fresh_run_folder(tiny_vae, tmp_path, monkeypatch, capsys):
    from safetensors.torch import load_file

    from generators.training.carry import main as carry_main
    from generators.training.common import cosine_lr

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out, carried, fresh = tmp_path / "run", tmp_path / "carry", tmp_path / "next-session"
    assert main(["train", "t2i", *_args(out, tiny_vae, 2)]) == 0
    assert carry_main(["--run", str(out), "--to", str(carried)]) == 0
    ckpt = carried / "checkpoint-2"
    assert not (ckpt / "optimizer.pt").exists() and (ckpt / "ema").is_dir() and (ckpt / "denoiser").is_dir()
    assert carry_main(["--run", str(tmp_path / "nothing"), "--to", str(carried)]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["train", "t2i", *_args(fresh, tiny_vae, 4, "--resume", "--resume-from", str(carried))]) == 0
    assert "carried: fresh optimiser" in capsys.readouterr().out
    steps = [json.loads(line)["step"] for line in (fresh / "loss.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3]  # went on from the carried step, its loss log carried along
    assert (carried / "loss.jsonl").is_file()
    raw = load_file(ckpt / "denoiser" / "diffusion_pytorch_model.safetensors")
    after = load_file(latest_checkpoint(fresh) / "denoiser" / "diffusion_pytorch_model.safetensors")
    assert any(not torch.equal(raw[k], after[k]) for k in raw)  # trained on from the carried weights
    assert cosine_lr(10, 100, 5, 1.0, restart=10) == pytest.approx(cosine_lr(10, 100, 5, 1.0) / 5)
    assert cosine_lr(15, 100, 5, 1.0, restart=10) == cosine_lr(15, 100, 5, 1.0)
    bad = ["train", "t2i", *_args(tmp_path / "other", tiny_vae, 4, "--resume", "--resume-from", str(tmp_path / "carry-x"))]
    (tmp_path / "carry-x").mkdir()
    assert main(bad) == 2  # a --resume-from that holds no checkpoint is named
    assert "--resume-from" in capsys.readouterr().err


def test_a_grown_denoiser_starts_as_the_smaller_one_and_trains_on(tiny_vae, tmp_path, monkeypatch, capsys):
    from generators.models import SnapGenUNet
    from generators.training.common import grow_into

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    small = dict(json.loads(TINY_UNET), cross_attention_dim=12, sample_size=8)
    big = dict(small, transformer_layers=[0, 2, 2], self_attention_stages=[False, True, True])
    torch.manual_seed(0)
    old, grown = SnapGenUNet(**small), SnapGenUNet(**big)
    for p in grown.parameters():  # no new weight may start at zero by chance
        torch.nn.init.normal_(p, std=0.1)
    added = grow_into(grown, old.state_dict())
    assert any(".attn1." in k for k in added) and any(".blocks.1." in k for k in added)
    x, ctx = torch.randn(2, 4, 8, 8), torch.randn(2, 5, 12)
    with torch.no_grad():
        torch.testing.assert_close(grown(x, 300.0, ctx).sample, old(x, 300.0, ctx).sample)
    with pytest.raises(ValueError, match="widths must stay"):
        grow_into(SnapGenUNet(**dict(small, block_out_channels=[16, 16, 24])), old.state_dict())
    with pytest.raises(ValueError, match="lacks"):
        grow_into(SnapGenUNet(**dict(small, transformer_layers=[0, 1, 0])), old.state_dict())

    out, fresh = tmp_path / "run", tmp_path / "grown"
    assert main(["train", "t2i", *_args(out, tiny_vae, 2)]) == 0
    bigger = json.dumps({k: big[k] for k in json.loads(TINY_UNET)} | {"self_attention_stages": [False, True, True]})
    grow = _args(fresh, tiny_vae, 4, "--resume", "--resume-from", str(out), "--grow")
    grow[grow.index("--model-config") + 1] = bigger
    assert main(["train", "t2i", *grow]) == 0
    assert "grew" in capsys.readouterr().out
    steps = [json.loads(line)["step"] for line in (fresh / "loss.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3]  # went on from the smaller run's step
    config = json.loads((latest_checkpoint(fresh) / "denoiser" / "config.json").read_text())
    assert config["transformer_layers"] == [0, 2, 2]
    assert main(["train", "t2i", *grow[:grow.index("--steps") + 1], "6", *grow[grow.index("--steps") + 2:]]) == 0
    assert "grew" not in capsys.readouterr().out  # its own checkpoint resumes as usual
    assert json.loads((latest_checkpoint(fresh) / "state.json").read_text())["step"] == 6


def test_vae_trainer_writes_a_diffusers_vae_with_its_psnr(tmp_path, monkeypatch):
    from diffusers import AutoencoderKL

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "vae"
    args = ["--out", str(out), "--steps", "2", "--bank", "8", "--batch-size", "2", "--crop", "32",
            "--image-size", "32", "--block-out-channels", "8,8", "--norm-num-groups", "4", "--checkpoint-every", "1"]
    assert main(["train", "vae", *args]) == 0
    assert main(["train", "vae", *args[:-4], "--steps", "3", "--resume"]) == 0
    report = json.loads((out / "vae" / "train_report.json").read_text())
    assert report["steps"] == 3 and 0 < report["reconstruction_psnr_db"] < 100
    vae = AutoencoderKL.from_pretrained(out / "vae")
    assert vae.config.scaling_factor == pytest.approx(1 / report["latent_std"])


def test_vae_decoder_fine_tune_keeps_the_latent_space(tmp_path, monkeypatch):
    """--decoder-only: the encoder (so every cached latent and the denoiser trained on them) and the latent
    scaling stay bit for bit; only the decoder moves."""
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    base = ["--bank", "8", "--batch-size", "2", "--crop", "32", "--image-size", "32", "--block-out-channels", "8,8",
            "--norm-num-groups", "4"]
    assert main(["train", "vae", "--out", str(tmp_path / "a"), "--steps", "2", *base]) == 0
    init = tmp_path / "a" / "vae"
    assert main(["train", "vae", "--out", str(tmp_path / "b"), "--steps", "2", *base, "--init", str(init),
                 "--decoder-only", "--edge-weight", "1"]) == 0
    before = load_file(init / "diffusion_pytorch_model.safetensors")
    after = load_file(tmp_path / "b" / "vae" / "diffusion_pytorch_model.safetensors")
    frozen = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    a, b = AutoencoderKL.from_pretrained(init).config, AutoencoderKL.from_pretrained(tmp_path / "b" / "vae").config
    assert (a.scaling_factor, a.shift_factor) == (b.scaling_factor, b.shift_factor)
    report = json.loads((tmp_path / "b" / "vae" / "train_report.json").read_text())
    assert 0 <= report["shapes_eval_of_reconstructions"]["overall"] <= 1
    assert main(["train", "vae", "--out", str(tmp_path / "c"), "--decoder-only"]) == 2  # needs --init
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"_class_name": "UNet2DModel"}')
    for folder in (tmp_path / "missing", tmp_path / "other"):  # named, offline, no traceback
        assert main(["train", "vae", "--out", str(tmp_path / "c"), "--init", str(folder), "--decoder-only"]) == 2


def test_tiny_decoder_learns_the_frozen_vaes_latents(tmp_path, monkeypatch):
    """--tiny-decoder: the init VAE stays bit for bit, the new decoder keeps its latent scaling, its loss falls,
    it resumes, and its report holds both decoders' figures side by side."""
    from safetensors.torch import load_file

    from generators.models.tiny_decoder import TinyVAEDecoder

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    base = ["--bank", "8", "--batch-size", "4", "--crop", "32", "--image-size", "32", "--block-out-channels", "8,8",
            "--norm-num-groups", "4"]
    assert main(["train", "vae", "--out", str(tmp_path / "a"), "--steps", "2", *base]) == 0
    init = tmp_path / "a" / "vae"
    before = load_file(init / "diffusion_pytorch_model.safetensors")
    tiny = ["train", "vae", "--out", str(tmp_path / "t"), *base, "--init", str(init), "--tiny-decoder",
            "--tiny-width", "8", "--tiny-blocks", "1,1", "--lr", "3e-3", "--log-every", "1", "--checkpoint-every", "20"]
    assert main([*tiny, "--steps", "20"]) == 0
    assert main([*tiny, "--steps", "40", "--resume"]) == 0
    after = load_file(init / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "t" / "loss.jsonl").read_text().splitlines()]
    assert len(losses) == 40 and np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    dec = TinyVAEDecoder.from_pretrained(tmp_path / "t" / "decoder")
    vae_cfg = json.loads((init / "config.json").read_text())
    assert (dec.config.scaling_factor, dec.config.shift_factor) == (vae_cfg["scaling_factor"], vae_cfg["shift_factor"])
    assert dec.decode(torch.zeros(1, vae_cfg["latent_channels"], 16, 16)).sample.shape == (1, 3, 32, 32)
    with pytest.raises(NotImplementedError, match="only decodes"):
        dec.encode(torch.zeros(1, 3, 32, 32))
    report = json.loads((tmp_path / "t" / "decoder" / "train_report.json").read_text())
    assert set(report["reconstruction_psnr_db"]) == {"tiny", "full"} and report["decode_ms_2_frames"]["tiny"] > 0
    assert report["params"]["tiny"] == sum(p.numel() for p in dec.parameters())
    assert main(["train", "vae", "--out", str(tmp_path / "c"), "--tiny-decoder"]) == 2  # needs --init


def test_training_flags_are_checked(tmp_path, capsys):
    assert main(["train", "t2i", "--out", str(tmp_path), "--family", "gan"]) == 2
    assert "family" in capsys.readouterr().err
    assert main(["train", "t2i", "--steps", "-1"]) == 2
    (tmp_path / "c.json").write_text('{"stepz": 3}')
    assert main(["train", "t2i", "--config", str(tmp_path / "c.json")]) == 2
    assert "unknown fields" in capsys.readouterr().err
    assert main(["train", "t2i", "--task-weights", "1,2"]) == 2
    assert "task_weights" in capsys.readouterr().err
    assert main(["train", "t2i", "--texture-share", "1.5"]) == 2
    assert main(["train", "t2i", "--steps", "100", "--phase-start", "100"]) == 2
    assert "phase_start" in capsys.readouterr().err
    assert main(["train", "nope"]) == 2


def test_ship_writes_a_scored_model_folder_whole_or_not_at_all(tiny_vae, tmp_path, monkeypatch):
    from generators.pipelines import PocketTextToImagePipeline
    from generators.training import ship

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run, asset = tmp_path / "run", tmp_path / "assets" / "pocket-t2i"
    assert main(["train", "t2i", *_args(run, tiny_vae, 2)]) == 0
    fine_tune = ["--resume", "--phase-start", "2", "--task-weights", "0,0,0,0,1,3", "--texture-share", "0"]
    assert main(["train", "t2i", *_args(run, tiny_vae, 4, *fine_tune)]) == 0  # a second phase, another mix
    assert len(list((run / "cache").glob("*-mix-0-0-0-0-1-3-0.pt"))) == 1
    flags = ["--run", str(run), "--out", str(asset), "--per-task", "1", "--steps", "2", "--grid",
             str(tmp_path / "grid.png"), "--command", "pocket-studio train t2i ...", "--guidance", "5.5"]

    def broken(*a, **k):
        raise RuntimeError("evaluation failed")

    for bad in (["--guidance", "50"], ["--guidance", "nan"], ["--steps", "0"]):  # defaults nothing could load
        with pytest.raises(SystemExit):
            ship.main([*flags, *bad])
    with pytest.raises(SystemExit):
        ship.main([*flags[2:], "--run", str(tmp_path / "no-run")])
    assert not asset.exists()
    monkeypatch.setattr(ship, "evaluate_pipeline", broken)
    with pytest.raises(RuntimeError):
        ship.main(flags)
    assert not asset.exists() and not list(asset.parent.iterdir())  # nothing half-written
    monkeypatch.undo()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ship.main(flags)
    card = json.loads((asset / "model_card.json").read_text())
    assert card["training"]["steps"] == 4 and card["stored_dtype"] == "fp16"
    assert card["shapes_eval"]["images"] == len(json.loads((asset / "shapes_eval.json").read_text()))
    rows = [json.loads(line) for line in (run / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert rows[2]["time_s"] >= rows[1]["time_s"]  # the resumed run's clock went on
    assert card["training"]["train_wall_s_logged"] == rows[-1]["time_s"]
    assert "pocket-studio train t2i ..." in (asset / "README.md").read_text()
    assert "cosine from step 2 (a fine-tune phase on the data mix single_object 0," in " ".join(
        (asset / "README.md").read_text().split())
    assert (tmp_path / "grid.png").is_file()
    assert PocketTextToImagePipeline.from_pretrained(asset).image_size == 32
    assert card["guidance"] == card["shapes_eval"]["guidance"] == 5.5  # scored as it samples by default
    assert load_pipeline(asset).sampling_defaults == {"num_inference_steps": 2, "guidance_scale": 5.5}


def test_grid_captions_wrap_inside_their_own_cell():
    from PIL import Image, ImageDraw

    from generators.training.ship import label_grid, wrap_caption

    draw = ImageDraw.Draw(Image.new("RGB", (8, 8)))
    text = "a photo of a purple diamond right of an orange circle Pneumonoultramicroscopicsilicovolcanoconiosis"
    lines = wrap_caption(draw, text, 120)
    assert all(draw.textlength(ln) <= 120 for ln in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")  # every letter kept, in order
    tiles = [Image.new("RGB", (128, 128), "gray")] * 2
    canvas = np.asarray(label_grid(tiles, [text, ""], cols=2))
    under_second = canvas[128:, 128:]  # the empty caption's cell: nothing of the long one runs into it
    assert (under_second == 255).all()
    assert (canvas[128:, :128] < 128).any()  # and the long one is drawn
