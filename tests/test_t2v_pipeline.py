"""The streaming video pipeline (tiny random S2DiT, tiny VAE, the real MiniLM): chunks come out one by one and
for as long as asked, the collected call equals the stream, a save/load round trip gives the same frames, and
bad requests are named."""

import itertools

import numpy as np
import pytest
import torch

from generators.models import S2DiT
from generators.pipelines import PocketTextToVideoPipeline

from .test_t2i_pipeline import text_encoder, tiny_vae  # noqa: F401 - fixture


def tiny_video_pipeline(text_encoder):  # noqa: F811
    torch.manual_seed(0)
    den = S2DiT(in_channels=4, out_channels=4, patch_size=1, hidden_size=32, num_heads=2,
                layout=(("lcha",), ("ssa",), ("lcha",)), cross_attention_dim=384, ssa_window=2, chunk_frames=2,
                sample_size=(8, 8))
    for p in den.parameters():
        torch.nn.init.normal_(p, std=0.05)
    tok, enc = text_encoder
    return PocketTextToVideoPipeline.assemble(den.eval(), tiny_vae(), tok, enc)


def test_stream_yields_chunk_after_chunk_and_the_call_collects_it(text_encoder):  # noqa: F811
    pipe = tiny_video_pipeline(text_encoder)
    stream = pipe.stream("a red circle moving left", num_chunks=None, generator=torch.Generator().manual_seed(3))
    chunks = list(itertools.islice(stream, 3))  # an endless stream, stopped by the caller
    assert [c.shape for c in chunks] == [(2, 16, 16, 3)] * 3 and chunks[0].dtype == np.uint8
    out = pipe("a red circle moving left", num_frames=5, generator=torch.Generator().manual_seed(3)).frames
    assert out.shape == (5, 16, 16, 3)
    np.testing.assert_array_equal(out, np.concatenate(chunks)[:5])
    steps = []
    pipe("a red circle moving left", num_frames=4, num_inference_steps=3, guidance_scale=2.0,
         callback_on_step_end=lambda p, i, t, kw: steps.append(i) or {})
    assert steps == list(range(6))  # 2 chunks x 3 steps


def test_round_trip_gives_the_same_frames(text_encoder, tmp_path):  # noqa: F811
    pipe = tiny_video_pipeline(text_encoder)
    pipe.save_pretrained(tmp_path / "v", include_text_encoder=False)
    again = PocketTextToVideoPipeline.from_pretrained(tmp_path / "v")
    a = pipe("two blue squares moving up", num_frames=4, generator=torch.Generator().manual_seed(0)).frames
    b = again("two blue squares moving up", num_frames=4, generator=torch.Generator().manual_seed(0)).frames
    np.testing.assert_array_equal(a, b)


def test_a_tiny_decoder_stands_in_for_the_vae_and_round_trips(text_encoder, tmp_path):  # noqa: F811
    """The shipped video model decodes with a ``TinyVAEDecoder``: same frame size, and it saves and loads
    through the pipeline folder like any component."""
    from generators.models.tiny_decoder import TinyVAEDecoder
    from generators.pipelines.loading import load_t2v

    pipe = tiny_video_pipeline(text_encoder)
    vae = pipe.vae
    torch.manual_seed(1)
    pipe.register_modules(vae=TinyVAEDecoder(latent_channels=4, block_out_channels=(8, 8), num_blocks=(1, 1),
                                             scaling_factor=vae.config.scaling_factor).eval())
    a = pipe("a red circle moving left", num_frames=4, generator=torch.Generator().manual_seed(0)).frames
    assert a.shape == (4, 16, 16, 3) and pipe.vae_scale_factor == 2
    pipe.save_pretrained(tmp_path / "v", include_text_encoder=False)
    again = load_t2v(tmp_path / "v")
    assert isinstance(again.vae, TinyVAEDecoder)
    b = again("a red circle moving left", num_frames=4, generator=torch.Generator().manual_seed(0)).frames
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="block_out_channels"):
        TinyVAEDecoder(block_out_channels=(16, 8), num_blocks=(1, 1))


@pytest.mark.parametrize("kwargs,match", [
    (dict(prompt=""), "empty"), (dict(prompt=["a", "b"]), "one prompt"),
    (dict(num_inference_steps=0), "num_inference_steps"), (dict(guidance_scale=float("nan")), "guidance"),
    (dict(num_chunks=0), "chunks long"), (dict(num_chunks=10 ** 9), "chunks long"),
])
def test_bad_requests_name_the_problem(text_encoder, kwargs, match):  # noqa: F811
    pipe = tiny_video_pipeline(text_encoder)
    with pytest.raises(ValueError, match=match):
        next(pipe.stream(**{"prompt": "a red circle moving left", **kwargs}))
