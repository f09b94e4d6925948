"""S2DiT's 2-in-1 distillation: a bidirectional many-step teacher -> a 4-step streaming student.

    pocket-studio distill t2v-ode --teacher runs/t2v-teacher/pipeline --out runs/t2v-ode
    pocket-studio distill t2v-dmd --teacher runs/t2v-teacher/pipeline --student runs/t2v-ode/pipeline --out runs/t2v-dmd

Stage 1 (``t2v-ode``, CausVid's ODE initialisation): the teacher's guided ODE turns noise into clips; the causal
student, reading the clean earlier chunks through its caches as it will when streaming, learns to jump from the
trajectory's state at each of its few sigmas straight to the teacher's clip. Stage 2 (``t2v-dmd``, Self-Forcing):
the student rolls out chunk after chunk from its own caches, and the whole clip gets the DMD gradient (teacher
score minus critic score, ``distill.losses.dmd_loss``) while the critic, a copy of the teacher, learns the
student's clips by flow matching, several critic updates per generator update. The student starts from the
teacher's weights: S2DiT is the same network, causal or bidirectional, by its chunk length.
"""

from __future__ import annotations

import copy
import json
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
    require_positive,
    resume_checkpoint,
    resume_models,
    save_checkpoint,
)
from .losses import dmd_loss
from .teacher import FlowDenoiser, few_step_scheduler, few_step_sigmas, guided_velocity

STAGES = ("ode", "dmd")


@dataclass
class VideoDistillConfig:
    stage: str = "ode"
    """ode (stage 1) or dmd (stage 2); the subcommand sets it."""
    teacher: str = "runs/t2v-teacher/pipeline"
    """The bidirectional teacher's pipeline folder (``train t2v --mode teacher``)."""
    student: str = ""
    """The student to start from (a video pipeline folder); empty: the teacher's weights, made causal."""
    out: str = "runs/t2v-distill"
    resume: bool = False
    resume_from: str = ""
    """With ``--resume`` and no checkpoint in OUT yet: start from this one (e.g. a carried checkpoint)."""
    frames: int = 8
    chunk_frames: int = 2
    student_steps: int = 4
    teacher_steps: int = 28
    guidance: float = 4.0
    samples: int = 256
    """ode: teacher trajectories made once and cached; dmd: captions drawn from."""
    batch_size: int = 2
    steps: int = 1000
    lr: float = 5e-5
    aux_lr: float = 1e-4
    warmup: int = 20
    critic_updates: int = 5
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    cpu: bool = False

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, not {self.stage!r}")
        require_positive(self, "frames", "chunk_frames", "student_steps", "teacher_steps", "samples", "batch_size",
                         "steps", "critic_updates", "checkpoint_every", "log_every")
        if self.frames % self.chunk_frames:
            raise ValueError(f"{self.frames} frames are not whole chunks of {self.chunk_frames}")


def _captions(cfg: VideoDistillConfig, rank: int) -> list[str]:
    from ..data.procedural_video import ProceduralVideoDataset

    ds = ProceduralVideoDataset(frames=cfg.frames, seed=cfg.seed * 1000 + 17 + rank)
    return [ds.scene(i).caption for i in range(cfg.samples)]


@torch.no_grad()
def ode_grid(sigmas: list[float], steps: int) -> tuple[list[float], list[int]]:
    """About ``steps`` Euler points from 1 to 0 that pass exactly through the student's sigmas (each interval
    gets steps in proportion to its length), and where they sit in it."""
    grid, keep = [], []
    for a, b in zip(sigmas[:-1], sigmas[1:]):
        keep.append(len(grid))
        m = max(1, round(steps * (a - b)))
        grid += torch.linspace(a, b, m + 1).tolist()[:-1]
    keep.append(len(grid))
    return grid + [sigmas[-1]], keep


def teacher_trajectories(cfg, teacher: FlowDenoiser, states: torch.Tensor, uncond: torch.Tensor, shape: tuple,
                         sigmas: list[float], rank: int, show: bool, device="cpu") -> torch.Tensor:
    """(N, K+1, C, T, h, w): the teacher's guided Euler path from noise, kept at the student's K sigmas and 0."""
    path = Path(cfg.out) / "cache" / f"ode-{cfg.seed}-{cfg.samples}-{cfg.teacher_steps}-{cfg.guidance:g}-{rank}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    grid, keep = ode_grid(sigmas, cfg.teacher_steps)
    out = []
    gen = torch.Generator().manual_seed(cfg.seed * 31 + rank)
    uncond = uncond.to(device)
    for start in tqdm(range(0, len(states), 8), desc="teacher ODE", disable=not show):
        ctx = states[start:start + 8].to(device)
        x = torch.randn((len(ctx), *shape), generator=gen).to(device)
        kept = {}
        for j, (a, b) in enumerate(zip(grid[:-1], grid[1:])):
            if j in keep:
                kept[j] = x.clone()
            v = guided_velocity(teacher, x, torch.full((len(x),), a, device=device), ctx, uncond.expand_as(ctx),
                                cfg.guidance)
            x = x + (b - a) * v
        kept[len(grid) - 1] = x
        out.append(torch.stack([kept[j] for j in keep], 1).half().cpu())
    traj = torch.cat(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(traj, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return traj


def ode_loss(student, traj: torch.Tensor, ctx: torch.Tensor, sigmas: list[float], chunk: int,
             rng: random.Random) -> torch.Tensor:
    """Stage 1: chunk by chunk, from the trajectory's state at a random student sigma to the teacher's clip,
    with the clean earlier chunks in the caches (gradients flow through the caches too)."""
    x0 = traj[:, -1].float()
    b, t = x0.shape[0], x0.shape[2]
    cache, total = None, 0.0
    for k in range(t // chunk):
        sl = slice(k * chunk, (k + 1) * chunk)
        idx = torch.tensor([rng.randrange(len(sigmas) - 1) for _ in range(b)])
        s = torch.tensor(sigmas)[idx].to(x0.device)
        x_i = traj[torch.arange(b), idx][:, :, sl].float()
        v = student(x_i, s * 1000, ctx, cache=cache).sample.float()
        total = total + (x_i - s.view(-1, 1, 1, 1, 1) * v - x0[:, :, sl]).pow(2).mean()
        cache = student(x0[:, :, sl], torch.zeros(b, device=x0.device), ctx, cache=cache).cache
    return total / (t // chunk)


def rollout(student, noise: torch.Tensor, ctx: torch.Tensor, sigmas: list[float], chunk: int,
            rng: random.Random, grad: bool) -> torch.Tensor:
    """Stage 2: the student's own clip, chunk after chunk from its caches (Self-Forcing). Each chunk stops at a
    random step with gradients there only; the caches are written from the detached clean chunk."""
    b, t = noise.shape[0], noise.shape[2]
    full = lambda s: torch.full((b,), s * 1000, device=noise.device)  # noqa: E731
    cache, chunks = None, []
    exit_at = rng.randrange(len(sigmas) - 1)
    for k in range(t // chunk):
        x = noise[:, :, k * chunk:(k + 1) * chunk]
        for j in range(len(sigmas) - 1):
            last = j == exit_at
            with torch.set_grad_enabled(grad and last):
                v = student(x, full(sigmas[j]), ctx, cache=cache).sample.float()
            if last:
                x0 = x - sigmas[j] * v
                break
            x = x + (sigmas[j + 1] - sigmas[j]) * v.detach()
        chunks.append(x0)
        with torch.no_grad():
            cache = student(x0.detach(), torch.zeros(b, device=noise.device), ctx, cache=cache).cache
    return torch.cat(chunks, dim=2)


def train(cfg: VideoDistillConfig) -> Path:
    from accelerate import Accelerator

    from ..models import S2DiT
    from ..pipelines import PocketTextToVideoPipeline
    from ..pipelines.loading import load_t2v
    from ..text_encoder import encode_text
    from ..training.train_t2v import video_flow_loss

    acc = Accelerator(cpu=cfg.cpu)
    out, dev = Path(cfg.out), acc.device
    ckpt = resume_checkpoint(out, cfg.resume, cfg.resume_from)  # a wrong name fails before the cache
    pipe = load_t2v(cfg.teacher)
    t_model = pipe.denoiser.eval().requires_grad_(False).to(dev)
    if int(t_model.config.chunk_frames) != cfg.frames:
        raise ValueError(f"{cfg.teacher}: the teacher must see the whole {cfg.frames}-frame clip as one chunk "
                         f"(it has chunks of {t_model.config.chunk_frames}): train it with --mode teacher")
    teacher = FlowDenoiser(t_model, pipe.scheduler)
    base = load_t2v(cfg.student).denoiser if cfg.student else t_model
    student = S2DiT.from_config({**dict(base.config), "chunk_frames": cfg.chunk_frames})
    student.load_state_dict(base.state_dict())
    student.requires_grad_(True).train()
    captions = _captions(cfg, acc.process_index)
    unique = [""] + sorted(set(captions))
    states = torch.cat([encode_text(pipe.tokenizer, pipe.text_encoder, unique[i:i + 256])
                        for i in range(0, len(unique), 256)]).float()
    ids = torch.tensor([unique.index(c) for c in captions])
    uncond = states[:1]
    sigmas = few_step_sigmas(cfg.student_steps)
    h, w = (int(v) for v in t_model.config.sample_size)
    shape = (int(t_model.config.in_channels), cfg.frames, h, w)
    traj = None
    if cfg.stage == "ode":
        traj = teacher_trajectories(cfg, teacher, states[ids], uncond, shape, sigmas, acc.process_index,
                                    acc.is_main_process, dev)
    critic = copy.deepcopy(t_model).requires_grad_(True).train() if cfg.stage == "dmd" else None
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.99))
    opts = {"generator": opt}
    if critic is not None:
        opts["critic"] = torch.optim.AdamW(critic.parameters(), lr=cfg.aux_lr, betas=(0.0, 0.99))
    from .train_distill import Optimizers

    group = Optimizers(**opts)
    start, restart = resume_models(ckpt, {"student": student, **({"critic": critic} if critic else {})}, group)
    wrapped = acc.prepare(student, *([critic] if critic is not None else []), *opts.values())
    student_w = wrapped[0]
    critic_w = wrapped[1] if critic is not None else None
    log = LossLog(out, enabled=acc.is_main_process)
    if acc.is_main_process:
        print(f"distill t2v-{cfg.stage}: {sum(p.numel() for p in student.parameters()) / 1e6:.2f}M student, chunks of "
              f"{cfg.chunk_frames} frames, sigmas {[round(s, 3) for s in sigmas]}, from step {start}"
              + carried_note(restart, cfg.warmup))
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=f"distill t2v-{cfg.stage}",
               disable=not acc.is_main_process)
    t0 = time.time()
    for step in bar:
        rng = random.Random(cfg.seed * 9973 + step * 131 + acc.process_index)
        gen = torch.Generator().manual_seed(cfg.seed * 7 + step * 2 + acc.process_index * 1_000_003)
        for o in opts.values():
            for g in o.param_groups:
                g["lr"] = cosine_lr(step, cfg.steps, cfg.warmup, cfg.lr if o is opt else cfg.aux_lr,
                                    restart=restart)
        pick = [rng.randrange(len(ids)) for _ in range(cfg.batch_size)]
        ctx = states[ids[pick]].to(dev)
        parts = {}
        if cfg.stage == "ode":
            parts["ode"] = ode_loss(student_w, traj[pick].to(dev), ctx, sigmas, cfg.chunk_frames, rng)
            acc.backward(parts["ode"])
            acc.clip_grad_norm_(student_w.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            gen_update = step % cfg.critic_updates == 0
            noise = torch.randn((cfg.batch_size, *shape), generator=gen).to(dev)
            clip = rollout(student_w, noise, ctx, sigmas, cfg.chunk_frames, rng, grad=gen_update)
            if gen_update:
                t = (0.02 + 0.96 * torch.rand(cfg.batch_size, generator=gen)).to(dev)
                t5 = t.view(-1, 1, 1, 1, 1)
                xt = t5 * torch.randn(clip.shape, generator=gen).to(dev) + (1 - t5) * clip.detach()
                with torch.no_grad():
                    x0_real = xt - t5 * guided_velocity(teacher, xt, t, ctx, uncond.to(dev).expand_as(ctx),
                                                        cfg.guidance)
                    x0_fake = xt - t5 * critic_w(xt, t * 1000, ctx).sample.float()
                parts["dmd"] = dmd_loss(clip, x0_real, x0_fake)
                acc.backward(parts["dmd"])
                acc.clip_grad_norm_(student_w.parameters(), 1.0)
                opt.step()
            opt.zero_grad(set_to_none=True)
            parts["critic"] = video_flow_loss(critic_w, clip.detach(), ctx, gen, cfg.frames, per_chunk=False)
            acc.backward(parts["critic"])
            opts["critic"].step()
            opts["critic"].zero_grad(set_to_none=True)
        if step % cfg.log_every == 0:
            bar.set_postfix({k: f"{v.item():.4f}" for k, v in parts.items()})
            log.write(step, lr=opt.param_groups[0]["lr"], **{k: v.item() for k, v in parts.items()})
        if acc.is_main_process and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
            models = {"student": acc.unwrap_model(student_w)}
            if critic is not None:
                models["critic"] = acc.unwrap_model(critic_w)
            save_checkpoint(out, step + 1, models, group, {"kind": "t2v-distill", "config": asdict(cfg),
                                                         "wall_s_this_run": round(time.time() - t0, 1)})
        acc.wait_for_everyone()
    final = out / "pipeline"
    if acc.is_main_process:
        result = PocketTextToVideoPipeline(acc.unwrap_model(student_w).eval(), pipe.vae,
                                           few_step_scheduler(), pipe.tokenizer, pipe.text_encoder)
        result.save_pretrained(final, include_text_encoder=False)
        (final / "sampling.json").write_text(json.dumps({"num_inference_steps": cfg.student_steps,
                                                         "guidance_scale": 1.0}))
        print(f"distill: streaming pipeline saved to {final} ({cfg.student_steps} steps, guidance 1)")
    acc.wait_for_everyone()
    return final


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    train(config_from_args(VideoDistillConfig, argv, __doc__.splitlines()[0], prog))


if __name__ == "__main__":
    main()
