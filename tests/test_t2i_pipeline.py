"""The text-to-image pipeline (tiny random components, the real offline MiniLM): diffusers conventions, a
save/load round trip that gives the same images, and the loading rules for any local diffusers folder."""

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from generators.models import SnapGenDiT, SnapGenUNet
from generators.pipelines import PocketTextToImagePipeline
from generators.pipelines.loading import describe, folder_widths, generate, load_t2i
from generators.text_encoder import encode_text, load_text_encoder


@pytest.fixture(scope="module")
def text_encoder():
    return load_text_encoder()


def tiny_vae():
    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                         layers_per_block=1, sample_size=16)


def tiny_pipeline(text_encoder, family="unet"):
    torch.manual_seed(0)
    if family == "unet":
        den = SnapGenUNet(in_channels=4, out_channels=4, sample_size=8, block_out_channels=(16, 32, 32),
                          transformer_layers=(0, 1, 1), layers_per_block=1, mid_transformer_layers=1, head_dim=8,
                          cross_attention_dim=384)
    else:
        den = SnapGenDiT(in_channels=4, out_channels=4, sample_size=8, hidden_size=32, num_heads=8, kv_heads=8,
                         depths=(1, 1, 1), cross_attention_dim=384, assa_blocks=4, widths=(0.5, 1.0))
    for p in den.parameters():
        torch.nn.init.normal_(p, std=0.05)
    tok, enc = text_encoder
    return PocketTextToImagePipeline.assemble(den, tiny_vae(), tok, enc)


def test_text_encoder_gives_token_states_offline(text_encoder):
    tok, enc = text_encoder
    states = encode_text(tok, enc, ["a photo of a red circle", "blue waves"])
    assert states.shape == (2, 32, 384)
    assert not torch.allclose(states[0], states[1])


@pytest.mark.parametrize("family", ["unet", "dit"])
def test_round_trip_gives_the_same_images(text_encoder, family, tmp_path):
    pipe = tiny_pipeline(text_encoder, family)
    pipe.set_progress_bar_config(disable=True)
    kw = dict(num_inference_steps=3, guidance_scale=3.0, output_type="np")
    a = pipe("a photo of a red circle", generator=torch.Generator().manual_seed(1), **kw).images
    pipe.save_pretrained(tmp_path / "with-encoder")
    pipe.save_pretrained(tmp_path / "lean", include_text_encoder=False)
    index = json.loads((tmp_path / "lean" / "model_index.json").read_text())
    assert index["text_encoder"] == [None, None] and not (tmp_path / "lean" / "text_encoder").exists()
    for folder in ("with-encoder", "lean"):
        again = PocketTextToImagePipeline.from_pretrained(tmp_path / folder)
        again.set_progress_bar_config(disable=True)
        b = again("a photo of a red circle", generator=torch.Generator().manual_seed(1), **kw).images
        np.testing.assert_allclose(a, b, atol=1e-5)
    c = pipe("a photo of a red circle", generator=torch.Generator().manual_seed(2), **kw).images
    assert np.abs(a - c).max() > 1e-3  # another seed, another image
    assert a.shape == (1, 16, 16, 3) and 0 <= a.min() and a.max() <= 1


def test_guidance_steps_callbacks_and_outputs(text_encoder):
    pipe = tiny_pipeline(text_encoder)
    pipe.set_progress_bar_config(disable=True)
    seen = []

    def callback(p, i, t, kw):
        seen.append((i, tuple(kw["latents"].shape)))
        return {"latents": kw["latents"] * 0}  # a callback may replace the latents

    zero = pipe("x", num_inference_steps=4, callback_on_step_end=callback, output_type="latent",
                generator=torch.Generator().manual_seed(0)).images
    assert [i for i, _ in seen] == [0, 1, 2, 3] and seen[0][1] == (1, 4, 8, 8)
    assert zero.abs().max() == 0
    g = torch.Generator().manual_seed(0)
    no_cfg = pipe("a red circle", guidance_scale=1.0, num_inference_steps=2, output_type="pt", generator=g).images
    g = torch.Generator().manual_seed(0)
    cfg = pipe("a red circle", guidance_scale=5.0, num_inference_steps=2, output_type="pt", generator=g).images
    assert (no_cfg - cfg).abs().max() > 1e-4
    pil = pipe(["a", "b"], num_inference_steps=1, num_images_per_prompt=2).images
    assert len(pil) == 4 and pil[0].size == (16, 16)


@pytest.mark.parametrize("kwargs,match", [
    (dict(prompt=""), "empty"),
    (dict(prompt="x" * 5000), "characters"),
    (dict(prompt="\udcff bad"), "UTF-8"),
    (dict(prompt="ok", num_inference_steps=0), "num_inference_steps"),
    (dict(prompt="ok", guidance_scale=float("nan")), "guidance"),
    (dict(prompt="ok", height=4096), "height"),
    (dict(prompt="ok", width_mult=0.5), "width_mult"),
    (dict(prompt="ok", latents=torch.zeros(1, 4, 3, 3)), "latents"),
])
def test_bad_requests_name_the_problem(text_encoder, kwargs, match):
    pipe = tiny_pipeline(text_encoder)
    with pytest.raises(ValueError, match=match):
        pipe(**kwargs)


def test_elastic_pipeline_runs_each_width(text_encoder, tmp_path):
    pipe = tiny_pipeline(text_encoder, "dit")
    pipe.save_pretrained(tmp_path, include_text_encoder=False)
    assert folder_widths(tmp_path) == (0.5, 1.0) and pipe.widths == (0.5, 1.0)
    loaded = load_t2i(tmp_path)
    a, _ = generate(loaded, "a pattern of blue waves", steps=2, seed=3, width_mult=0.5)
    b, info = generate(loaded, "a pattern of blue waves", steps=2, seed=3, width_mult=1.0)
    assert np.abs(np.asarray(a[0], float) - np.asarray(b[0], float)).max() > 0
    assert info["steps"] == 2 and "SnapGenDiT" in describe(loaded, tmp_path)


def _standard_sd_folder(tmp_path, text_encoder):
    """A tiny random Stable Diffusion pipeline, as a user's download would be laid out."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import BertConfig, BertModel

    tok, _ = text_encoder
    tok.model_max_length = 16
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                norm_num_groups=8, attention_head_dim=4)
    enc = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=37, max_position_embeddings=64))
    pipe = StableDiffusionPipeline(vae=tiny_vae(), text_encoder=enc, tokenizer=tok, unet=unet,
                                   scheduler=EulerDiscreteScheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(tmp_path)
    return tmp_path


def test_any_local_diffusers_pipeline_folder_is_a_backend(text_encoder, tmp_path):
    folder = _standard_sd_folder(tmp_path / "sd-tiny", text_encoder)
    pipe = load_t2i(folder)
    steps = []
    images, info = generate(pipe, "a red circle", steps=2, seed=0, on_step=lambda i, n: steps.append(i))
    assert type(pipe).__name__ == "StableDiffusionPipeline" and images[0].size == (16, 16)
    assert steps == [1, 2] and info["steps"] == 2
    with pytest.raises(ValueError, match="runs at"):
        generate(pipe, "x", steps=1, width_mult=0.5)


def test_bad_model_folders_are_named(text_encoder, tmp_path):
    with pytest.raises(ValueError, match="no such model folder"):
        load_t2i(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a diffusers pipeline folder"):
        load_t2i(tmp_path / "empty")
    pipe = tiny_pipeline(text_encoder)
    pipe.save_pretrained(tmp_path / "p", include_text_encoder=False)
    (tmp_path / "bad-json").mkdir()
    (tmp_path / "bad-json" / "model_index.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_t2i(tmp_path / "bad-json")
    # weights that do not fit the config
    cfg_path = tmp_path / "p" / "denoiser" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["block_out_channels"] = [24, 32, 32]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="could not load"):
        load_t2i(tmp_path / "p")
    # NaN weights
    pipe.denoiser.conv_in.weight.data[0, 0, 0, 0] = float("nan")
    pipe.save_pretrained(tmp_path / "nan", include_text_encoder=False)
    with pytest.raises(ValueError, match="NaN"):
        load_t2i(tmp_path / "nan")
