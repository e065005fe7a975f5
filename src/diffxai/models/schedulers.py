"""The ONE scheduler factory: a fresh diffusers sampling scheduler from a model's scheduler config."""

from __future__ import annotations

from diffxai.core.errors import DiffxaiError

SCHEDULERS = ("ddim", "ddpm", "dpmsolver++")


def make_scheduler(name: str, scheduler_config, clip_sample: bool = True):
    """A fresh scheduler ``from_config(scheduler_config)``.

    ``dpmsolver++``: ``DPMSolverMultistepScheduler`` (``algorithm_type="dpmsolver++"``, 2nd order,
    ``final_sigmas_type="zero"``; the setting of arXiv 2402.10404); ``ddim``: ``DDIMScheduler``
    (η = 0); ``ddpm``: ``DDPMScheduler`` (ancestral, stochastic). ``clip_sample=False`` turns the
    schedulers' x̂0 clipping off (latent models); ``True`` keeps the model's own setting.
    """
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    clip = {} if clip_sample else {"clip_sample": False}
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler.from_config(
            scheduler_config, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero"
        )
    if name == "ddim":
        return DDIMScheduler.from_config(scheduler_config, **clip)
    if name == "ddpm":
        return DDPMScheduler.from_config(scheduler_config, **clip)
    raise DiffxaiError("scheduler", f"unknown scheduler {name!r} (allowed: {', '.join(SCHEDULERS)})")
