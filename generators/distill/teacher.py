"""Any denoiser seen as a flow-matching velocity field on our latents, so one set of losses serves every teacher.

Our models and flow-matching diffusers pipelines predict ``v = eps - x0`` at ``x_t = s*eps + (1-s)*x0`` and take
``t = s * num_train_timesteps``. A diffusers variance-preserving teacher (``alphas_cumprod``: DDPM, DDIM, PNDM,
Euler... with epsilon, v or sample prediction) sees ``x_vp = a*x0 + b*eps``: the same point once scaled by
``a / (1 - s)`` with ``b / a = s / (1 - s)``; its timestep is where ``alphas_cumprod`` equals ``a^2``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

SIGMA_MIN, SIGMA_MAX = 1e-4, 0.9995
"""A variance-preserving model has no pure-noise point (a = 0): sigmas are clamped into its range."""


def denoiser_of(pipe):
    for name in ("denoiser", "unet", "transformer"):
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise ValueError(f"{type(pipe).__name__}: no denoiser, unet or transformer component")


class FlowDenoiser:
    """``velocity(x, sigma, ctx)`` of a denoiser with a flow-matching or variance-preserving scheduler."""

    def __init__(self, model: torch.nn.Module, scheduler):
        self.model = model
        config = scheduler.config
        self.train_steps = int(config.get("num_train_timesteps", 1000))
        if any(c.__name__.startswith("FlowMatch") for c in type(scheduler).__mro__):  # subclasses too
            self.kind = "flow"
        elif getattr(scheduler, "alphas_cumprod", None) is not None:
            self.kind = "vp"
            self.prediction = config.get("prediction_type", "epsilon")
            if self.prediction not in ("epsilon", "v_prediction", "sample"):
                raise ValueError(f"{type(scheduler).__name__}: prediction_type {self.prediction!r} is not supported")
            ac = scheduler.alphas_cumprod.double().cpu().numpy()
            # log-SNR falls with t; np.interp wants it rising.
            self._logsnr = np.log(ac / (1 - ac))[::-1].copy()
            self._steps = np.arange(len(ac), dtype=np.float64)[::-1].copy()
        else:
            raise ValueError(f"{type(scheduler).__name__}: neither a flow-matching nor a variance-preserving "
                             "(alphas_cumprod) scheduler")

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def _call(self, x, t, ctx, **extra) -> torch.Tensor:
        return self.model(x.to(self.dtype), t, ctx.to(self.dtype), **extra).sample.float()

    def vp_terms(self, sigma: torch.Tensor):
        """(a, b, timestep) of the variance-preserving point that matches each flow sigma."""
        s = sigma.double().clamp(SIGMA_MIN, SIGMA_MAX)
        r = s / (1 - s)
        a = 1 / torch.sqrt(1 + r * r)
        logsnr = torch.log(1 / (r * r)).cpu().numpy()
        t = np.interp(logsnr, self._logsnr, self._steps)
        return a.float(), (r * a).float(), torch.as_tensor(t, dtype=torch.float32, device=sigma.device)

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, ctx: torch.Tensor, **extra) -> torch.Tensor:
        sigma = sigma.reshape(-1).expand(x.shape[0]).to(x.device)
        if self.kind == "flow":
            return self._call(x, sigma * self.train_steps, ctx, **extra)
        a, b, t = self.vp_terms(sigma)
        s = sigma.clamp(SIGMA_MIN, SIGMA_MAX).view(-1, 1, 1, 1)
        a4, b4 = a.view(-1, 1, 1, 1), b.view(-1, 1, 1, 1)
        x_vp = x * a4 / (1 - s)
        out = self._call(x_vp, t, ctx, **extra)
        if self.prediction == "epsilon":
            eps, x0 = out, (x_vp - b4 * out) / a4
        elif self.prediction == "v_prediction":
            x0, eps = a4 * x_vp - b4 * out, b4 * x_vp + a4 * out
        else:
            x0, eps = out, (x_vp - a4 * out) / b4
        return eps - x0


def guided_velocity(den: FlowDenoiser, x, sigma, cond, uncond, guidance: float, **extra) -> torch.Tensor:
    """Classifier-free guided velocity (one batched call for both halves)."""
    if guidance == 1.0 or uncond is None:
        return den.velocity(x, sigma, cond, **extra)
    sigma = sigma.reshape(-1).expand(x.shape[0])
    u, c = den.velocity(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([uncond, cond]), **extra).chunk(2)
    return u + guidance * (c - u)


@torch.no_grad()
def ode_segment(den: FlowDenoiser, x, s0: float, s1: float, cond, uncond, guidance: float, substeps: int):
    """The teacher's guided Euler path from sigma ``s0`` to ``s1`` in ``substeps`` steps, as its mean velocity
    ``(x(s1) - x(s0)) / (s1 - s0)``: what one student step over the same interval should predict."""
    grid = torch.linspace(s0, s1, substeps + 1).tolist()
    y = x.float()
    for a, b in zip(grid[:-1], grid[1:]):
        v = guided_velocity(den, y, torch.full((x.shape[0],), a, device=x.device), cond, uncond, guidance)
        y = y + (b - a) * v
    return (y - x) / (s1 - s0)


def few_step_scheduler():
    """The scheduler students are trained for and saved with (every one of their steps does work)."""
    from ..pipelines.schedulers import FewStepFlowMatchScheduler

    return FewStepFlowMatchScheduler(shift=1.0)


def few_step_sigmas(steps: int, scheduler=None) -> list[float]:
    """The sigmas ``scheduler`` (default: ``few_step_scheduler()``) visits for ``steps`` steps, ending at 0:
    a student trained on these is sampled by a pipeline saved with that scheduler."""
    sched = copy.deepcopy(scheduler) if scheduler is not None else few_step_scheduler()
    sched.set_timesteps(steps)
    return [float(s) for s in sched.sigmas]


def encode_for(pipe, prompts: list[str], device) -> torch.Tensor:
    """Token states for ``prompts`` as this pipeline's denoiser expects them (ours or a diffusers pipeline)."""
    if hasattr(pipe, "encode_prompt"):
        import inspect

        params = inspect.signature(pipe.encode_prompt).parameters
        if "do_classifier_free_guidance" in params:  # diffusers' StableDiffusion-style signature
            out = pipe.encode_prompt(prompts, device, 1, False)
            return out[0]
        return pipe.encode_prompt(prompts, device)
    raise ValueError(f"{type(pipe).__name__}: cannot encode prompts (no encode_prompt)")
