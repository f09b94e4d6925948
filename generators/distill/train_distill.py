"""Distil a text-to-image teacher into a student: ``kd`` (SnapGen multi-level KD), ``adv`` (SnapGen few-step
adversarial guidance + KD) or ``kdmd`` (SnapGen++ knowledge-guided distribution matching).

    pocket-studio distill kdmd --teacher assets/models/pocket-t2i --out runs/kdmd --steps 1500
    accelerate launch -m app.cli distill kdmd ...     # the same script on several processes / GPUs

kd trains at every timestep (a smaller student keeps the teacher's sampler); adv and kdmd train a student
(a copy of the teacher unless ``--student-config``) for the ``--student-steps`` sigmas our scheduler visits,
with the teacher's guidance folded in, so it is sampled with guidance 1.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..training.common import (
    LossLog,
    carried_note,
    config_from_args,
    cosine_lr,
    load_module,
    require_positive,
    resume_checkpoint,
    save_checkpoint,
)
from .features import FeatureTap, Projectors, default_feature_layers
from .losses import (
    DiscriminatorHeads,
    discriminator_hinge,
    dmd_loss,
    feature_kd,
    generator_adversarial,
    timestep_scaled_mse,
)
from .teacher import (
    FlowDenoiser,
    denoiser_of,
    encode_for,
    few_step_scheduler,
    few_step_sigmas,
    guided_velocity,
    ode_segment,
)

METHODS = ("kd", "adv", "kdmd")


@dataclass
class DistillConfig:
    method: str = "kdmd"
    """kd | adv | kdmd (the subcommand sets it)."""
    teacher: str = ""
    """Teacher pipeline folder (ours or a diffusers one sharing the latent space); empty: the shipped Quality model."""
    out: str = "runs/distill"
    resume: bool = False
    resume_from: str = ""
    """With ``--resume`` and no checkpoint in OUT yet: start from this one (e.g. a carried checkpoint)."""
    student_config: str = ""
    """JSON (inline or file) of a smaller student of ``student_family``; empty: a copy of the teacher."""
    student_family: str = "unet"
    student_init: str = ""
    """A pipeline folder whose denoiser the student starts from (e.g. a carried student, to train it on with
    fresh optimisers and critic); empty: the teacher or ``student_config``."""
    student_steps: int = 4
    """adv / kdmd: the few-step schedule the student learns (1, 2, 4...)."""
    teacher_steps: int = 28
    """The teacher's steps over the whole path: each student step's target is its guided Euler path over the
    same interval with teacher_steps / student_steps sub-steps."""
    guidance: float = 4.0
    """The teacher's classifier-free guidance in every target (the student learns it; sample it with 1)."""
    dmd_guidance: float = 0.0
    """kdmd: the guidance of DMD's real score alone (DMD2 raises it above the teacher's: 8 for SDXL, to push
    prompt adherence harder than the output KD can); 0: ``guidance``."""
    kd_teacher: str = ""
    """kdmd: a few-step teacher (e.g. an adv student) for the output and feature KD; empty: the teacher's ODE."""
    samples: int = 4096
    batch_size: int = 16
    steps: int = 1000
    lr: float = 2e-5
    aux_lr: float = 1e-4
    """Projectors, discriminator heads and the critic."""
    warmup: int = 20
    cfg_dropout: float = 0.1
    """kd only: captions dropped so the student still knows the unconditional field."""
    critic_updates: int = 5
    """kdmd: critic updates per generator update (DMD2: 5)."""
    w_task: float = 1.0
    w_out: float = 1.0
    w_feat: float = 0.5
    w_adv: float = 0.05
    w_dmd: float = 1.0
    lora_rank: int = 0
    """> 0: train LoRA adapters (peft) on student and critic instead of all weights."""
    checkpoint_every: int = 250
    log_every: int = 10
    seed: int = 0
    cpu: bool = False

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {self.method!r}")
        require_positive(self, "student_steps", "teacher_steps", "samples", "batch_size", "steps", "critic_updates",
                         "checkpoint_every", "log_every")
        if self.teacher_steps < self.student_steps:
            raise ValueError(f"teacher_steps ({self.teacher_steps}) must be >= student_steps ({self.student_steps})")
        if self.lora_rank < 0:
            raise ValueError("lora_rank must be >= 0")
        if not (math.isfinite(self.guidance) and self.guidance >= 1):
            raise ValueError(f"guidance must be a finite number >= 1, not {self.guidance}")
        if not (math.isfinite(self.dmd_guidance) and (self.dmd_guidance == 0 or self.dmd_guidance >= 1)):
            raise ValueError(f"dmd_guidance must be 0 (= guidance) or a finite number >= 1, not {self.dmd_guidance}")


class Optimizers:
    """Several optimisers saved and restored as one (``save_checkpoint`` keeps one optimiser file)."""

    def __init__(self, **optimizers: torch.optim.Optimizer):
        self.all = optimizers

    def state_dict(self) -> dict:
        return {k: o.state_dict() for k, o in self.all.items()}

    def load_state_dict(self, state: dict) -> None:
        for k, o in self.all.items():
            o.load_state_dict(state[k])


def apply_lora(model: torch.nn.Module, rank: int):
    """peft LoRA on every linear layer; only the adapters train."""
    from peft import LoraConfig, get_peft_model

    targets = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=rank, target_modules=targets))


def plain(model: torch.nn.Module) -> torch.nn.Module:
    """A standalone denoiser (LoRA merged into a copy) for saving and sampling."""
    return copy.deepcopy(model).merge_and_unload() if hasattr(model, "merge_and_unload") else model


def _json_config(text: str) -> dict:
    return json.loads(text) if text.strip().startswith("{") else json.loads(Path(text).read_text())


def build_student(cfg: DistillConfig, teacher_model, context_dim: int, latent_channels: int, latent_size: int):
    from ..models import FAMILIES

    if cfg.student_init:
        from ..pipelines.loading import load_t2i

        if cfg.student_config:
            raise ValueError("--student-init and --student-config both name the student: give one")
        model = denoiser_of(load_t2i(cfg.student_init))
        if (model.config.in_channels, model.config.cross_attention_dim) != (latent_channels, context_dim):
            raise ValueError(f"--student-init {cfg.student_init}: its denoiser reads {model.config.in_channels} "
                             f"latent channels and {model.config.cross_attention_dim}-wide text, the teacher's data "
                             f"has {latent_channels} and {context_dim}")
        return model.float().requires_grad_(True).train()
    if not cfg.student_config:
        if type(teacher_model) not in FAMILIES.values():
            raise ValueError(f"a {type(teacher_model).__name__} teacher cannot be copied: give --student-config")
        return copy.deepcopy(teacher_model).requires_grad_(True).train()
    config = {"in_channels": latent_channels, "out_channels": latent_channels, "sample_size": latent_size,
              "cross_attention_dim": context_dim, **_json_config(cfg.student_config)}
    return FAMILIES[cfg.student_family](**config)


def load_teacher(folder: str):
    """The teacher: ``folder``, else the shipped Quality model (not the studio's default, which is the Fast
    student itself)."""
    from ..pipelines.loading import DEFAULT_T2I, load_t2i

    pipe = load_t2i(folder or DEFAULT_T2I)
    model = denoiser_of(pipe).eval().requires_grad_(False)
    return pipe, FlowDenoiser(model, pipe.scheduler)


def _channels(model, layers, x, sigma_t, ctx) -> list[int]:
    with torch.no_grad(), FeatureTap(model, layers) as tap:
        model(x, sigma_t, ctx)
    return [f.shape[1] for f in tap.features]


@dataclass
class Nets:
    """Everything one distillation step touches. ``student``/``critic``/``disc`` are the (possibly
    accelerate-wrapped) modules that train; ``teacher`` and ``kd_teacher`` are frozen."""
    student: FlowDenoiser
    tap_model: torch.nn.Module
    s_layers: list
    teacher: FlowDenoiser
    t_layers: list
    projectors: Projectors
    sigmas: list
    substeps: int
    critic: torch.nn.Module | None = None
    disc: DiscriminatorHeads | None = None
    kd_teacher: FlowDenoiser | None = None


@dataclass
class Batch:
    x0: torch.Tensor
    ctx_s: torch.Tensor
    """Captions as the student (and critic) read them."""
    ctx_t: torch.Tensor
    """The same captions as the teacher reads them; ``unc_t``: its empty caption."""
    unc_t: torch.Tensor
    gen: torch.Generator
    rng: random.Random


def kd_losses(n: Nets, cfg: DistillConfig, b: Batch) -> tuple[torch.Tensor, dict]:
    """SnapGen multi-level KD at every timestep: task + output KD + feature KD, timestep-scaled."""
    sigma = torch.sigmoid(torch.randn(len(b.x0), generator=b.gen)).to(b.x0.device)
    eps = torch.randn(b.x0.shape, generator=b.gen).to(b.x0.device)
    s4 = sigma.view(-1, 1, 1, 1)
    xt = s4 * eps + (1 - s4) * b.x0
    with FeatureTap(n.tap_model, n.s_layers) as ts:
        v_s = n.student.velocity(xt, sigma, b.ctx_s)
    with torch.no_grad(), FeatureTap(n.teacher.model, n.t_layers) as tt:
        v_t = n.teacher.velocity(xt, sigma, b.ctx_t)
    parts = {"task": (v_s - (eps - b.x0)).pow(2).mean(), "out": timestep_scaled_mse(v_s, v_t),
             "feat": feature_kd(n.projectors, ts.features, tt.features)}
    return cfg.w_task * parts["task"] + cfg.w_out * parts["out"] + cfg.w_feat * parts["feat"], parts


def few_step_losses(n: Nets, cfg: DistillConfig, b: Batch, gen_update: bool = True):
    """adv and kdmd: one student step at a sigma of its schedule, with output + feature KD towards the teacher's
    path over the same interval, plus the adversarial (adv) or distribution-matching (kdmd) term.
    Returns (generator loss or None, parts, what the discriminator / critic step needs)."""
    dev = b.x0.device
    i = b.rng.randrange(len(n.sigmas) - 1)
    s0, s1 = n.sigmas[i], n.sigmas[i + 1]
    eps = torch.randn(b.x0.shape, generator=b.gen).to(dev)
    full = lambda s: torch.full((len(b.x0),), s, device=dev)  # noqa: E731
    if cfg.method == "adv":  # SnapGen: the few-step student sees noised real latents
        x_i = s0 * eps + (1 - s0) * b.x0
    else:  # DMD2's backward simulation: the student's own rollout up to step i
        x_i = eps
        with torch.no_grad():
            for j in range(i):
                x_i = x_i + (n.sigmas[j + 1] - n.sigmas[j]) * n.student.velocity(x_i, full(n.sigmas[j]), b.ctx_s)
    with torch.set_grad_enabled(gen_update), FeatureTap(n.tap_model, n.s_layers) as ts:
        v_s = n.student.velocity(x_i, full(s0), b.ctx_s)
    x0_s = x_i - s0 * v_s
    state = {"x0_s": x0_s}
    parts: dict[str, torch.Tensor] = {}
    if not gen_update:
        return None, parts, state
    kt = n.kd_teacher or n.teacher
    layers = n.t_layers if kt is n.teacher else default_feature_layers(kt.model)
    with torch.no_grad(), FeatureTap(kt.model, layers) as tt:
        v_here = kt.velocity(x_i, full(s0), b.ctx_t if kt is n.teacher else b.ctx_s)
    v_bar = v_here if n.kd_teacher is not None else ode_segment(n.teacher, x_i, s0, s1, b.ctx_t, b.unc_t,
                                                                cfg.guidance, n.substeps)
    parts["out"] = timestep_scaled_mse(v_s, v_bar)
    parts["feat"] = feature_kd(n.projectors, ts.features, tt.features)
    loss = cfg.w_out * parts["out"] + cfg.w_feat * parts["feat"]
    if cfg.method == "adv":
        s_adv = torch.sigmoid(torch.randn(len(b.x0), generator=b.gen)).to(dev)
        noise = torch.randn(b.x0.shape, generator=b.gen).to(dev)
        s4 = s_adv.view(-1, 1, 1, 1)
        with FeatureTap(n.teacher.model, n.t_layers) as tf:  # gradients reach x0_s through the frozen teacher
            n.teacher.velocity(s4 * noise + (1 - s4) * x0_s, s_adv, b.ctx_t)
        parts["g_adv"] = generator_adversarial(n.disc(tf.features))
        loss = loss + cfg.w_adv * parts["g_adv"]
        state.update(s_adv=s_adv, noise=noise, fake=[f.detach() for f in tf.features])
    else:
        t = (0.02 + 0.96 * torch.rand(len(b.x0), generator=b.gen)).to(dev)  # DMD2: 2-98% of the range
        t4 = t.view(-1, 1, 1, 1)
        xt = t4 * torch.randn(b.x0.shape, generator=b.gen).to(dev) + (1 - t4) * x0_s.detach()
        with torch.no_grad():
            x0_real = xt - t4 * guided_velocity(n.teacher, xt, t, b.ctx_t, b.unc_t, cfg.dmd_guidance or cfg.guidance)
            x0_fake = xt - t4 * n.critic(xt, t * 1000, b.ctx_s).sample.float()
        parts["dmd"] = dmd_loss(x0_s, x0_real, x0_fake)
        loss = loss + cfg.w_dmd * parts["dmd"]
    return loss, parts, state


def disc_loss(n: Nets, b: Batch, state: dict) -> torch.Tensor:
    """Hinge loss of the heads: real latents vs the student's, at the same noise level (one call, for DDP)."""
    s4 = state["s_adv"].view(-1, 1, 1, 1)
    with torch.no_grad(), FeatureTap(n.teacher.model, n.t_layers) as tr:
        n.teacher.velocity(s4 * state["noise"] + (1 - s4) * b.x0, state["s_adv"], b.ctx_t)
    logits = n.disc([torch.cat([r, f]) for r, f in zip(tr.features, state["fake"])])
    return discriminator_hinge(*logits.chunk(2))


def critic_loss(n: Nets, b: Batch, state: dict) -> torch.Tensor:
    """The fake score: plain flow matching on the student's detached samples."""
    from ..training.train_t2i import flow_matching_loss

    return flow_matching_loss(n.critic, state["x0_s"].detach(), b.ctx_s, b.gen)[0]


def train(cfg: DistillConfig) -> Path:
    from accelerate import Accelerator
    from diffusers import FlowMatchEulerDiscreteScheduler

    from ..pipelines import PocketTextToImagePipeline
    from ..text_encoder import load_text_encoder
    from ..training.train_t2i import T2ITrainConfig, build_cache

    acc = Accelerator(cpu=cfg.cpu)
    out = Path(cfg.out)
    ckpt = resume_checkpoint(out, cfg.resume, cfg.resume_from)  # a wrong name fails before the cache
    dev = acc.device
    pipe, teacher = load_teacher(cfg.teacher)
    teacher.model.to(dev)
    ours = isinstance(pipe, PocketTextToImagePipeline)
    tokenizer, encoder = (pipe.tokenizer, pipe.text_encoder) if ours else load_text_encoder()
    image_size = pipe.image_size if ours else int(teacher.model.config.sample_size) * int(pipe.vae_scale_factor)
    data = T2ITrainConfig(out=cfg.out, seed=cfg.seed, image_size=image_size, samples=cfg.samples)  # the same cache
    cache = build_cache(data, pipe.vae, tokenizer, encoder, acc.process_index, acc.num_processes, acc.is_main_process)
    latents, caption_ids, states = cache["latents"], cache["caption_ids"], cache["text_states"].float()
    t_states = states if ours else torch.cat([
        encode_for(pipe, cache["captions"][i:i + 64], "cpu").float().cpu() for i in range(0, len(cache["captions"]), 64)])
    student = build_student(cfg, teacher.model, states.shape[-1], latents.shape[1], latents.shape[-1])
    critic = copy.deepcopy(student) if cfg.method == "kdmd" else None  # DMD2: the fake score starts as the student
    if cfg.lora_rank:
        student = apply_lora(student, cfg.lora_rank)
        critic = apply_lora(critic, cfg.lora_rank) if critic is not None else None
    tap_model = plain_base(student)
    s_layers, t_layers = default_feature_layers(tap_model), default_feature_layers(teacher.model)
    probe = (latents[:1].float().to(dev), torch.full((1,), 500.0, device=dev))
    t_channels = _channels(teacher.model, t_layers, *probe, t_states[:1].to(dev))
    projectors = Projectors(_channels(tap_model.to(dev), s_layers, *probe, states[:1].to(dev)), t_channels)
    disc = DiscriminatorHeads(t_channels) if cfg.method == "adv" else None
    kd_teacher = load_teacher(cfg.kd_teacher)[1] if cfg.kd_teacher else None
    if kd_teacher is not None:
        kd_teacher.model.to(dev)

    gen_params = [p for p in student.parameters() if p.requires_grad] + list(projectors.parameters())
    opt = torch.optim.AdamW(gen_params, lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.99))
    opts = {"generator": opt}
    if disc is not None:
        opts["disc"] = torch.optim.AdamW(disc.parameters(), lr=cfg.aux_lr, betas=(0.0, 0.99))
    if critic is not None:
        opts["critic"] = torch.optim.AdamW([p for p in critic.parameters() if p.requires_grad], lr=cfg.aux_lr,
                                           betas=(0.0, 0.99))
    group = Optimizers(**opts)
    start, restart = _restore(ckpt, cfg, student, critic, projectors, disc, group) if ckpt else (0, None)

    trained = [m for m in (student, critic, disc) if m is not None]
    wrapped = iter(acc.prepare(*trained, projectors.to(dev), *opts.values())[:len(trained) + 1])
    student_w = next(wrapped)
    critic_w = next(wrapped) if critic is not None else None
    disc_w = next(wrapped) if disc is not None else None
    projectors_w = next(wrapped)
    nets = Nets(FlowDenoiser(student_w, FlowMatchEulerDiscreteScheduler(shift=1.0)), tap_model, s_layers, teacher,
                t_layers, projectors_w, few_step_sigmas(cfg.student_steps),
                max(1, cfg.teacher_steps // cfg.student_steps), critic_w, disc_w, kd_teacher)
    log = LossLog(out, enabled=acc.is_main_process)
    if acc.is_main_process:
        n = sum(p.numel() for p in student.parameters() if p.requires_grad)
        print(f"distill {cfg.method}: teacher {type(teacher.model).__name__}, student {type(tap_model).__name__} "
              f"({n / 1e6:.2f}M trained), sigmas {[round(s, 3) for s in nets.sigmas]}, from step {start}"
              + carried_note(restart, cfg.warmup))
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=f"distill {cfg.method}",
               disable=not acc.is_main_process)
    t0 = time.time()
    for step in bar:
        rng = random.Random(cfg.seed * 9973 + step * 131 + acc.process_index)
        gen = torch.Generator().manual_seed(cfg.seed * 7 + step * 2 + acc.process_index * 1_000_003)
        for o in opts.values():
            for g in o.param_groups:
                g["lr"] = cosine_lr(step, cfg.steps, cfg.warmup, cfg.lr if o is opt else cfg.aux_lr,
                                    restart=restart)
        idx = torch.tensor([rng.randrange(len(latents)) for _ in range(cfg.batch_size)])
        ids = caption_ids[idx].clone()
        if cfg.method == "kd":
            ids[torch.rand(len(ids), generator=gen) < cfg.cfg_dropout] = 0
        b = Batch(latents[idx].float().to(dev), states[ids].to(dev), t_states[ids].to(dev),
                  t_states[torch.zeros_like(ids)].to(dev), gen, rng)
        if cfg.method == "kd":
            (loss, parts), state = kd_losses(nets, cfg, b), {}
        else:  # kdmd: the generator moves every critic_updates-th step, the critic every step
            loss, parts, state = few_step_losses(nets, cfg, b, gen_update=cfg.method == "adv"
                                                 or step % cfg.critic_updates == 0)
        if loss is not None:
            acc.backward(loss)
            acc.clip_grad_norm_(gen_params, 1.0)
            opt.step()
        for o in opts.values():  # the generator's loss also left gradients in the heads: drop them
            o.zero_grad(set_to_none=True)
        for name, aux_loss in (("d_hinge", disc_loss), ("critic", critic_loss)):
            if name == "d_hinge" and disc is None or name == "critic" and critic is None:
                continue
            parts[name] = aux_loss(nets, b, state)
            acc.backward(parts[name])
            opts["disc" if name == "d_hinge" else "critic"].step()
            opts["disc" if name == "d_hinge" else "critic"].zero_grad(set_to_none=True)
        if step % cfg.log_every == 0:
            bar.set_postfix({k: f"{v.item():.4f}" for k, v in parts.items()})
            log.write(step, lr=opt.param_groups[0]["lr"], **{k: v.item() for k, v in parts.items()})
        if acc.is_main_process and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
            _save(out, step + 1, cfg, student, critic, projectors, disc, group, time.time() - t0)
        acc.wait_for_everyone()

    final = out / "pipeline"
    if acc.is_main_process:
        few = cfg.method != "kd"  # kd keeps the teacher's sampler
        result = PocketTextToImagePipeline.assemble(plain(student).eval(), pipe.vae, tokenizer, encoder,
                                                    few_step_scheduler() if few else None)
        result.save_pretrained(final, include_text_encoder=False)
        steps, guidance = (cfg.student_steps, 1.0) if few else (cfg.teacher_steps, cfg.guidance)
        (final / "sampling.json").write_text(json.dumps({"num_inference_steps": steps, "guidance_scale": guidance}))
        print(f"distill: pipeline saved to {final} (sample it with {steps} steps, guidance {guidance:g})")
    acc.wait_for_everyone()
    return final


def plain_base(model):
    """The module that owns the named layers (under a LoRA wrapper: the wrapped model)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _save(out, step, cfg, student, critic, projectors, disc, group, wall):
    from peft import get_peft_model_state_dict

    models = {"student": plain(student), "projectors": projectors}
    if cfg.lora_rank:
        models["student_lora"] = get_peft_model_state_dict(student)
    if critic is not None:
        models["critic"] = plain(critic)
        if cfg.lora_rank:
            models["critic_lora"] = get_peft_model_state_dict(critic)
    if disc is not None:
        models["disc"] = disc
    save_checkpoint(out, step, models, group, {"kind": "distill", "config": asdict(cfg),
                                                "wall_s_this_run": round(wall, 1)})


def _restore(ckpt, cfg, student, critic, projectors, disc, group) -> tuple[int, int | None]:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from ..training.common import load_optimizer, resume_point

    for name, net in (("student", student), ("critic", critic)):
        if net is None:
            continue
        if cfg.lora_rank:
            set_peft_model_state_dict(net, load_file(ckpt / f"{name}_lora.safetensors"))
        else:
            net.load_state_dict(type(net).from_pretrained(ckpt / name).state_dict())
    load_module(ckpt, "projectors", projectors)
    if disc is not None:
        load_module(ckpt, "disc", disc)
    return resume_point(load_optimizer(ckpt, group))


def pipeline_from_distill_checkpoint(ckpt: str | Path):
    """A checkpoint's student in its teacher's pipeline (the VAE and text encoder it was distilled with)."""
    from ..models import FAMILIES
    from ..pipelines import PocketTextToImagePipeline
    from ..text_encoder import load_text_encoder

    ckpt = Path(ckpt)
    cfg = json.loads((ckpt / "state.json").read_text())["config"]
    pipe, _ = load_teacher(cfg["teacher"])
    name = json.loads((ckpt / "student" / "config.json").read_text())["_class_name"]
    family = {cls.__name__: cls for cls in FAMILIES.values()}[name]
    student = family.from_pretrained(ckpt / "student").eval()
    ours = isinstance(pipe, PocketTextToImagePipeline)
    tokenizer, encoder = (pipe.tokenizer, pipe.text_encoder) if ours else load_text_encoder()
    scheduler = few_step_scheduler() if cfg["method"] != "kd" else None
    return PocketTextToImagePipeline.assemble(student, pipe.vae, tokenizer, encoder, scheduler)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    train(config_from_args(DistillConfig, argv, __doc__.splitlines()[0], prog))


if __name__ == "__main__":
    main()
