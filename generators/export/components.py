"""The pieces of a pipeline as an iOS app runs them: plain modules with named tensor inputs and outputs and
static shapes (what ``torch.export`` and the Core ML / Core AI converters need).

An image model becomes ``text_encoder`` (token ids -> hidden states; the tokenizer runs in the app), ``denoiser``
(one flow-matching velocity per call; the scheduler's Euler step runs in the app) and ``decoder`` (latents ->
an image in [0, 1]). The streaming video denoiser takes one chunk per call with its caches passed in and out as
tensors (no stateful model: those need iOS 18 and are fragile on the Neural Engine); a new stream starts from
all-zero caches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..models.s2dit import S2DiT
from ..models.snapgen_unet import SnapGenUNet
from ..text_encoder import MAX_PROMPT_TOKENS
from ..video_attention import LCHA, LCHACache, LinearState, SSACache, TimeRotation
from .ane import reauthor_unet


@dataclass
class Component:
    name: str
    module: nn.Module
    inputs: dict[str, torch.Tensor]
    """Example inputs by name, in call order: their shapes and dtypes are the package's."""
    outputs: list[str]
    reference: nn.Module | None = None
    """The original model under the same signature, when ``module`` is a re-authored twin of it."""
    notes: dict = field(default_factory=dict)


class DenoiserStep(nn.Module):
    def __init__(self, denoiser: nn.Module):
        super().__init__()
        self.denoiser = denoiser

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.denoiser(sample, timestep, encoder_hidden_states, return_dict=False)[0]


class Decoder(nn.Module):
    """Latents -> RGB in [0, 1]: the VAE's scaling and shift are inside, so the app only maps to pixels."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae
        self.scale = float(vae.config.scaling_factor)
        self.shift = float(getattr(vae.config, "shift_factor", None) or 0.0)

    def forward(self, latents):
        image = self.vae.decode(latents / self.scale + self.shift, return_dict=False)[0]
        return (image / 2 + 0.5).clamp(0, 1)


class TextEncoder(nn.Module):
    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask):
        out = self.encoder(input_ids=input_ids.long(), attention_mask=attention_mask.long(), return_dict=False)
        return out[0]


def image_components(pipe, width_mult: float = 1.0, guidance_scale: float = 1.0) -> list[Component]:
    """The three parts of a text-to-image pipeline of ours; the denoiser batch is 2 when guidance needs the
    unconditional twin (classifier-free guidance), else 1."""
    den = pipe.denoiser
    if width_mult != 1.0:
        if not hasattr(den, "extract_width"):
            raise ValueError(f"--width-mult {width_mult:g}: a {type(den).__name__} has one width (elastic widths are SnapGen++'s)")
        if width_mult not in pipe.widths:
            raise ValueError(f"--width-mult {width_mult:g}: this model runs at {', '.join(f'{w:g}' for w in pipe.widths)}")
        den = den.extract_width(width_mult)
    den = den.float().eval()
    batch = 2 if guidance_scale > 1.0 else 1
    side, ch = int(den.config.sample_size), int(den.config.in_channels)
    ctx_dim = int(pipe.text_encoder.config.hidden_size)
    g = torch.Generator().manual_seed(0)
    den_inputs = {"sample": torch.randn(batch, ch, side, side, generator=g),
                  "timestep": torch.full((batch,), 500.0),
                  "encoder_hidden_states": torch.randn(batch, MAX_PROMPT_TOKENS, ctx_dim, generator=g)}
    if isinstance(den, SnapGenUNet):
        denoiser = Component("denoiser", DenoiserStep(reauthor_unet(den)), den_inputs, ["velocity"],
                             reference=DenoiserStep(den).eval(),
                             notes={"neural_engine_reauthored": True,
                                    "reauthoring": "transformer stages in (B,C,1,S), linear as 1x1 conv, split-einsum attention"})
    else:
        denoiser = Component("denoiser", DenoiserStep(den).eval(), den_inputs, ["velocity"],
                             notes={"neural_engine_reauthored": False,
                                    "reauthoring": f"none for {type(den).__name__} (its ASSA gathers blocks; exported as is)"})
    return [text_component(pipe), denoiser, decoder_component(pipe, (side, side))]


# -- the streaming video denoiser -------------------------------------------------------------------------------------
def cache_layout(model: S2DiT, latent_hw: tuple[int, int], batch: int = 1) -> list[tuple[str, tuple, str]]:
    """(name, shape, block kind) of every cache tensor, in the exported model's input (and output) order."""
    cfg = model.config
    p, f = cfg.patch_size, cfg.chunk_frames
    h, w = latent_hw[0] // p, latent_hw[1] // p
    out, i = [], 0
    for stage, scale in zip(model.stages, cfg.stage_scales):
        hs, ws = h // scale, w // scale
        for blk in stage:
            m = blk.mixer
            if isinstance(m, LCHA):
                d = m.head_dim
                out += [(f"b{i}_kv", (batch, m.heads, d, d), "lcha"), (f"b{i}_z", (batch, m.heads, d), "lcha"),
                        (f"b{i}_tail", (batch, m.heads * d, m.kernel[0] - 1, hs, ws), "lcha")]
            else:
                if m.window is None:
                    raise ValueError("an SSA block with an unbounded window has no fixed-size cache to export")
                n = (m.window - 1) * f * (-(-hs // m.stride)) * (-(-ws // m.stride))
                out += [(f"b{i}_k", (batch, m.heads, n, m.head_dim), "ssa"),
                        (f"b{i}_v", (batch, m.heads, n, m.head_dim), "ssa"), (f"b{i}_valid", (n,), "ssa")]
            i += 1
    return out


class StreamingStep(nn.Module):
    """One chunk of an S2DiT stream: (latents, timestep, text, time rotation, caches...) -> (velocity,
    caches...). The app calls it per denoising step with the same caches, then once at timestep 0 on the clean
    chunk and keeps the caches that call returns (as :meth:`PocketTextToVideoPipeline.stream` does)."""

    def __init__(self, model: S2DiT):
        super().__init__()
        self.model = model

    def forward(self, latents, timestep, encoder_hidden_states, time_cos, time_sin, *caches):
        t0 = TimeRotation(time_cos, time_sin)
        entries, j = [], 0
        for stage in self.model.stages:
            for blk in stage:
                a, b, c = caches[j:j + 3]
                j += 3
                entries.append(LCHACache(LinearState(a, b), c, t0) if isinstance(blk.mixer, LCHA)
                               else SSACache(a, b, t0, 0, c))
        out, new = self.model(latents, timestep, encoder_hidden_states, cache=entries, return_dict=False)
        flat = [out]
        for e in new:
            flat += [e.linear.kv, e.linear.z, e.tail] if isinstance(e, LCHACache) else [e.k, e.v, e.valid]
        return tuple(flat)


def video_components(pipe) -> list[Component]:
    """Text encoder, the streaming denoiser (one chunk, explicit caches) and the per-frame decoder."""
    model = pipe.denoiser.float().eval()
    h, w = pipe.latent_size
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    layout = cache_layout(model, (h, w))
    d = cfg.hidden_size // cfg.num_heads
    rot = TimeRotation.at(0, d)
    inputs = {"latents": torch.randn(1, cfg.in_channels, cfg.chunk_frames, h, w, generator=g),
              "timestep": torch.full((1,), 500.0),
              "encoder_hidden_states": torch.randn(1, MAX_PROMPT_TOKENS, int(pipe.text_encoder.config.hidden_size),
                                                   generator=g),
              "time_cos": rot.cos, "time_sin": rot.sin}
    inputs.update({name: torch.zeros(shape) for name, shape, _ in layout})
    step = Component("denoiser", StreamingStep(model), inputs, ["velocity"] + [f"new_{n}" for n, _, _ in layout],
                     notes={"neural_engine_reauthored": False,
                            "reauthoring": "none for S2DiT (video tokens (B,T,H,W,C); caches passed explicitly)",
                            "chunk_frames": int(cfg.chunk_frames),
                            "rope_time_frequencies": [float(x) for x in TimeRotation.frequencies(d)],
                            "caches": [{"name": n, "shape": list(s), "block": k} for n, s, k in layout]})
    return [text_component(pipe), step, decoder_component(pipe, (h, w))]


def text_component(pipe) -> Component:
    ids = torch.zeros(1, MAX_PROMPT_TOKENS, dtype=torch.int32)
    ids[0, :4] = torch.tensor([101, 1037, 2417, 102], dtype=torch.int32)  # [CLS] a red [SEP]: any ids in vocab
    return Component("text_encoder", TextEncoder(pipe.text_encoder.float().eval()),
                     {"input_ids": ids, "attention_mask": (ids != 0).to(torch.int32)}, ["hidden_states"])


def decoder_component(pipe, latent_hw: tuple[int, int]) -> Component:
    latents = torch.randn(1, int(pipe.vae.config.latent_channels), *latent_hw, generator=torch.Generator().manual_seed(0))
    return Component("decoder", Decoder(pipe.vae.float().eval()), {"latents": latents}, ["image"])
