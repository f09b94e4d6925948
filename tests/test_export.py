"""Export to iPhone, checked as far as Linux allows: what the packages hold (read back from disk), the
Neural-Engine re-authoring against the original, palettized weights against fp16, the streaming denoiser's
explicit caches, Core AI assets, and the command line's refusals. Tiny random models; the real MiniLM."""

import json

import numpy as np
import pytest
import torch

from app.cli import main
from generators.export.ane import reauthor_unet
from generators.export.checks import psnr
from generators.export.components import StreamingStep, cache_layout, video_components
from generators.export.coreml import inspect_package, lut_weights
from generators.export.package import export_pipeline, failing_op
from generators.models import SnapGenUNet
from generators.pipelines import PocketTextToImagePipeline
from generators.video_attention import TimeRotation

from .test_t2i_pipeline import _standard_sd_folder, text_encoder, tiny_vae  # noqa: F401 - fixture
from .test_t2v_pipeline import tiny_video_pipeline


def export_unet(heads_dim=96):
    """Few ops (conversion time goes by op count) but wide (10M weights): the package's graph is then small
    beside its weights, as in a real model, and the 4-bit size check measures the weights."""
    torch.manual_seed(0)
    den = SnapGenUNet(in_channels=4, out_channels=4, sample_size=8, block_out_channels=(96, 192, 192),
                      transformer_layers=(0, 1, 1), layers_per_block=1, mid_transformer_layers=1,
                      head_dim=heads_dim, cross_attention_dim=384)
    for p in den.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return den.eval()


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, text_encoder):  # noqa: F811
    folder = tmp_path_factory.mktemp("t2i")
    tok, enc = text_encoder
    PocketTextToImagePipeline.assemble(export_unet(), tiny_vae(), tok, enc).save_pretrained(
        folder, include_text_encoder=False)
    return folder


@pytest.fixture(scope="module")
def coreml4(image_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "ios"
    assert main(["export-coreml", "--model", "image", "--source", str(image_folder), "--bits", "4",
                 "--out", str(out)]) == 0
    return out / "Resources", json.loads((out / "Resources" / "manifest.json").read_text())


def test_coreml_folder_follows_the_manifest(coreml4, image_folder):
    res, m = coreml4
    assert sorted(p.name for p in res.iterdir()) == ["Denoiser.mlpackage", "TextEncoder.mlpackage", "VAEDecoder.mlpackage",
                                                     "manifest.json", "tokenizer"]
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(m["tokenizer"]["files"])
    assert m["bits"] == 4 and m["deployment_target"] == "iOS17" and m["failed"] == [] and m["image_size"] == 16
    s = m["sampling"]
    pipe = PocketTextToImagePipeline.from_pretrained(image_folder)
    pipe.scheduler.set_timesteps(s["num_inference_steps"])
    assert s["timesteps"] == pytest.approx([float(t) for t in pipe.scheduler.timesteps], abs=1e-3)
    assert s["guidance_scale"] == 4.0 and s["denoiser_batch"] == 2 and s["sigmas"][-1] == 0.0
    assert m["total_size_bytes"] == sum(c["size_bytes"] for c in m["components"].values())


def test_spec_read_back_from_the_saved_packages(coreml4):
    res, m = coreml4
    den = inspect_package(res / "Denoiser.mlpackage")
    assert [(i["name"], i["shape"], i["dtype"]) for i in den["inputs"]] == [
        ("sample", [2, 4, 8, 8], "float32"), ("timestep", [2], "float32"),
        ("encoder_hidden_states", [2, 32, 384], "float32")]
    assert [(o["name"], o["shape"]) for o in den["outputs"]] == [("velocity", [2, 4, 8, 8])]
    assert den["specification_version"] == 8 and den["opset"] == "CoreML7"  # iOS 17
    # split-einsum: two einsums per head of every attention layer reached the package
    heads = sum(a.heads for a in export_unet().modules() if type(a).__name__ == "Attention")
    assert den["ops"]["einsum"] == 2 * heads
    assert den["ops"]["constexpr_lut_to_dense"] == m["components"]["denoiser"]["checks"]["palettized_tables"] > 10
    text = inspect_package(res / "TextEncoder.mlpackage")
    assert [(i["name"], i["shape"], i["dtype"]) for i in text["inputs"]] == [
        ("input_ids", [1, 32], "int32"), ("attention_mask", [1, 32], "int32")]
    assert text["outputs"][0]["shape"] == [1, 32, 384]
    dec = inspect_package(res / "VAEDecoder.mlpackage")
    assert dec["inputs"][0]["shape"] == [1, 4, 8, 8] and dec["outputs"][0]["shape"] == [1, 3, 16, 16]
    assert den == {k: v for k, v in m["components"]["denoiser"].items() if k in den}


def test_palettized_weights_are_4_bit_and_checked_against_fp16(coreml4):
    res, m = coreml4
    den = m["components"]["denoiser"]
    tables = lut_weights(res / "Denoiser.mlpackage")
    # counted in fp32: numpy 2.4.6's np.unique returns repeated values for some float16 arrays
    assert tables and all(len(np.unique(w.astype(np.float32))) <= 16 for w in tables.values())
    checks = den["checks"]
    assert checks["reauthored_vs_original_psnr_db"] >= 35
    assert checks["palettized_tables_checked"] == checks["palettized_tables"]
    assert 10 < checks["palettized_vs_fp16_psnr_db"] < checks["reauthored_vs_original_psnr_db"]
    assert den["size_bytes"] <= 0.30 * den["fp16_size_bytes"]


def test_reauthored_unet_matches_the_original():
    den = export_unet(heads_dim=48)  # 2-4 heads per layer: the per-head split is exercised
    ane = reauthor_unet(den)
    assert not any(type(m).__name__ == "SpatialTransformer" for m in ane.modules())
    g = torch.Generator().manual_seed(3)
    x, t, c = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([900.0, 10.0]), torch.randn(2, 32, 384, generator=g)
    with torch.no_grad():
        a, b = den(x, t, c).sample, ane(x, t, c).sample
    assert psnr(a, b) >= 35 and a.abs().max() > 0.1
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_streaming_step_with_explicit_caches_equals_the_model_stream(text_encoder):  # noqa: F811
    pipe = tiny_video_pipeline(text_encoder)
    model = pipe.denoiser
    step = StreamingStep(model)
    layout = cache_layout(model, pipe.latent_size)
    caches = [torch.zeros(shape) for _, shape, _ in layout]
    g = torch.Generator().manual_seed(0)
    ctx = torch.randn(1, 32, 384, generator=g)
    f, d = model.config.chunk_frames, model.config.hidden_size // model.config.num_heads
    ref_cache = None
    with torch.no_grad():
        for chunk in range(5):  # past the SSA window (2 chunks): the fixed-size cache must drop the oldest
            x = torch.randn(1, 4, f, 8, 8, generator=g)
            rot = TimeRotation.at(chunk * f, d)
            for t in (800.0, 300.0):  # denoising steps read the cache and leave it as it was
                ref = model(x, torch.tensor([t]), ctx, cache=ref_cache).sample
                out = step(x, torch.tensor([t]), ctx, rot.cos, rot.sin, *caches)
                torch.testing.assert_close(out[0], ref, atol=2e-5, rtol=1e-4)
            ref_cache = model(x, torch.zeros(1), ctx, cache=ref_cache).cache
            caches = list(step(x, torch.zeros(1), ctx, rot.cos, rot.sin, *caches)[1:])
            assert [tuple(c.shape) for c in caches] == [s for _, s, _ in layout]


@pytest.fixture(scope="module")
def video_export(tmp_path_factory, text_encoder):  # noqa: F811
    folder = tmp_path_factory.mktemp("t2v")
    tiny_video_pipeline(text_encoder).save_pretrained(folder, include_text_encoder=False)
    out = tmp_path_factory.mktemp("export") / "video"
    assert main(["export-coreml", "--model", "video", "--source", str(folder), "--out", str(out)]) == 0
    return folder, out / "Resources"


def test_video_denoiser_passes_its_caches_in_and_out(video_export, text_encoder):  # noqa: F811
    _, res = video_export
    m = json.loads((res / "manifest.json").read_text())
    spec = inspect_package(res / "Denoiser.mlpackage")
    layout = cache_layout(tiny_video_pipeline(text_encoder).denoiser, (8, 8))
    names = [i["name"] for i in spec["inputs"]]
    assert names[:5] == ["latents", "timestep", "encoder_hidden_states", "time_cos", "time_sin"]
    assert [(i["name"], i["shape"]) for i in spec["inputs"][5:]] == [(n, list(s)) for n, s, _ in layout]
    assert [(o["name"], o["shape"]) for o in spec["outputs"][1:]] == [(f"new_{n}", list(s)) for n, s, _ in layout]
    assert spec["outputs"][0]["shape"] == [1, 4, 2, 8, 8] and spec["states"] == 0
    notes = m["components"]["denoiser"]["notes"]
    assert notes["chunk_frames"] == 2 and len(notes["rope_time_frequencies"]) == 16
    assert "zero caches" in m["sampling"]["stream"] and m["frame_size"] == [16, 16]


def test_core_ai_assets(image_folder, tmp_path):
    out = tmp_path / "ai"
    assert main(["export-coreai", "--model", "image", "--source", str(image_folder), "--out", str(out)]) == 0
    m = json.loads((out / "Resources" / "manifest.json").read_text())
    assert m["target"] == "coreai" and m["failed"] == []
    for name, file in (("text_encoder", "TextEncoder"), ("denoiser", "Denoiser"), ("decoder", "VAEDecoder")):
        folder = out / "Resources" / f"{file}.aimodel"
        assert {"main.mlirb", "metadata.json"} <= {p.name for p in folder.iterdir()}
        entry = m["components"][name]
        assert entry["size_bytes"] > 0 and sum(entry["ops"].values()) > 10
    den = m["components"]["denoiser"]
    assert [(i["name"], i["shape"], i["dtype"]) for i in den["inputs"]] == [
        ("sample", [2, 4, 8, 8], "f16"), ("timestep", [2], "f16"), ("encoder_hidden_states", [2, 32, 384], "f16")]
    assert den["outputs"][0]["role"] == "velocity" and den["outputs"][0]["shape"] == [2, 4, 8, 8]


def test_an_elastic_dit_exports_at_a_chosen_width(text_encoder, tmp_path):  # noqa: F811
    """SnapGen++'s ASSA (block gathers, kept under Core ML's rank-5 limit) at width 0.5, to both targets."""
    from .test_t2i_pipeline import tiny_pipeline

    folder = tmp_path / "dit"
    tiny_pipeline(text_encoder, "dit").save_pretrained(folder, include_text_encoder=False)
    for target in ("coreml", "coreai"):
        out = tmp_path / target
        assert main([f"export-{target}", "--source", str(folder), "--width-mult", "0.5", "--out", str(out)]) == 0
        m = json.loads((out / "Resources" / "manifest.json").read_text())
        den = m["components"]["denoiser"]
        assert m["failed"] == [] and m["width_mult"] == 0.5 and den["notes"]["neural_engine_reauthored"] is False
        assert den["inputs"][0]["shape"] == [2, 4, 8, 8] and den["outputs"][0]["shape"] == [2, 4, 8, 8]


class _SVD(torch.nn.Module):
    def forward(self, latents):
        return torch.linalg.svdvals(latents)


def test_a_part_that_does_not_convert_is_named_and_the_rest_kept(text_encoder, tmp_path, monkeypatch):  # noqa: F811
    from generators.export import package
    from generators.export.components import Component, decoder_component

    pipe = PocketTextToImagePipeline.assemble(export_unet(), tiny_vae(), *text_encoder)
    parts = [decoder_component(pipe, (8, 8)), Component("denoiser", _SVD(), {"latents": torch.randn(4, 4)}, ["velocity"])]
    monkeypatch.setattr(package, "components_for", lambda *a, **k: parts)
    for target, op in (("coreai", "aten._linalg_svd.default"), ("coreml", "linalg_svdvals")):
        m = export_pipeline(pipe, "image", tmp_path / target, target=target)
        assert m["failed"] == ["denoiser"] and m["components"]["denoiser"]["failing_op"] == op
        assert (tmp_path / target / "Resources" / ("VAEDecoder.aimodel" if target == "coreai" else "VAEDecoder.mlpackage")).is_dir()
    assert failing_op(ValueError("no op named here")) is None


@pytest.mark.parametrize("args,message", [
    (["--width-mult", "0.5"], "has one width"),
    (["--source", "/nonexistent/model"], "no such model folder"),
    (["--model", "video"], "not a streaming video pipeline"),
])
def test_bad_requests_are_named_and_write_nothing(image_folder, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    argv = ["export-coreml", "--source", str(image_folder), *args, "--out", str(out)]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_a_standard_diffusers_pipeline_is_refused_by_name(text_encoder, tmp_path, capsys):  # noqa: F811
    folder = _standard_sd_folder(tmp_path / "sd-tiny", text_encoder)
    assert main(["export-coreml", "--source", str(folder), "--out", str(tmp_path / "x")]) == 2
    assert "project's own pipelines" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_bits_and_existing_folders(image_folder, tmp_path, capsys):
    assert main(["export-coreml", "--source", str(image_folder), "--bits", "5", "--out", str(tmp_path / "x")]) == 2
    assert "invalid choice" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    assert main(["export-coreml", "--source", str(image_folder), "--out", str(tmp_path / "busy")]) == 2
    assert "--overwrite" in capsys.readouterr().err and (tmp_path / "busy" / "keep.txt").read_text() == "mine"


def test_an_interrupted_export_leaves_nothing(image_folder, tmp_path, monkeypatch):
    from generators.export import coreml

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(coreml, "write_coreml", boom)
    with pytest.raises(KeyboardInterrupt):
        main(["export-coreml", "--source", str(image_folder), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_video_components_refuse_an_unbounded_ssa_window(text_encoder):  # noqa: F811
    pipe = tiny_video_pipeline(text_encoder)
    for blk in pipe.denoiser.modules():
        if type(blk).__name__ == "SSA":
            blk.window = None
    with pytest.raises(ValueError, match="unbounded window"):
        video_components(pipe)
