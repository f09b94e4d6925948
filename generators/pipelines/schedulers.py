"""The few-step students' scheduler: diffusers' flow-matching Euler on Flux's evenly spaced grid."""

from __future__ import annotations

import numpy as np
from diffusers import FlowMatchEulerDiscreteScheduler, SchedulerMixin  # noqa: F401

# diffusers' pipeline loader finds a component's loading method by looking its base class (SchedulerMixin) up in
# the component's module: it must be importable from here.


class FewStepFlowMatchScheduler(FlowMatchEulerDiscreteScheduler):
    """``FlowMatchEulerDiscreteScheduler`` whose default N-step grid is ``linspace(1, 1/N, N)`` then 0 (what
    FluxPipeline passes; 4 steps: DMD2's timesteps 999, 749, 499, 249). Diffusers' own grid ends at sigma
    1/num_train_timesteps, so a student's last step would go from 0.001 to 0 and do nothing: 4 steps would be 3,
    2 would be 1. Distilled students are trained on this grid and saved with this scheduler; the teachers keep the
    parent's grid they were trained and scored on. Given ``sigmas`` or ``timesteps``, it is the parent."""

    def set_timesteps(self, num_inference_steps: int | None = None, device=None, sigmas=None, mu=None,
                      timesteps=None):
        if sigmas is None and timesteps is None and num_inference_steps:
            sigmas = np.linspace(1.0, 1.0 / num_inference_steps, num_inference_steps).tolist()
        return super().set_timesteps(num_inference_steps, device, sigmas=sigmas, mu=mu, timesteps=timesteps)
