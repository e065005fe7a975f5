"""Deterministic DDIM (η = 0) sampling on any strictly decreasing list of timesteps.

The closed-form update x_{t'} = sqrt(ᾱ_{t'})·x̂0 + sqrt(1−ᾱ_{t'})·ε̂ accepts arbitrary
timestep lists (uniform, exponential, SDEdit tails), is batched over samples, and records the
trajectory (x_t and x̂0 at every sampling step) when asked. The last step returns x̂0.

:func:`sample_chunks` is the sampling loop every pixel-space sampler shares (DDIM here, the
diffusers schedulers of :func:`diffxai.schedules.scheduler_sample`): guided ε̂ per step with
per-sample or per-step labels, x̂0 and the recording, chunked over samples by
:func:`diffxai.batching.iter_batches` (an out-of-memory error halves the chunk and retries it;
progress is logged). Only the update from step i to step i+1 differs between samplers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from diffxai.batching import iter_batches
from diffxai.models import DiffusionModel

#: ``step(i, t, x, eps, x0) -> x_next``: the update of one sampling step (x̂0 already clipped if asked).
StepFn = Callable[[int, int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def uniform_timesteps(num_train_timesteps: int, n_steps: int) -> np.ndarray:
    """diffusers' "leading" DDIM spacing: ``T//n * arange(n)`` reversed (starts at ``T - T//n``)."""
    step = num_train_timesteps // n_steps
    return (np.arange(n_steps) * step)[::-1].copy().astype(np.int64)


def check_timesteps_decreasing(timesteps: np.ndarray | list[int]) -> list[int]:
    """The timesteps as ints; ``ValueError`` unless strictly decreasing."""
    ts = [int(t) for t in timesteps]
    if any(b >= a for a, b in zip(ts, ts[1:])):
        raise ValueError(f"timesteps must be strictly decreasing, got {ts[:5]}...")
    return ts


@torch.no_grad()
def sample_chunks(
    model: DiffusionModel,
    x_init: torch.Tensor,
    timesteps: list[int],
    labels: torch.Tensor | None,
    guidance: float,
    new_step: Callable[[slice], StepFn],
    *,
    record: bool = False,
    batch_size: int = 256,
    clip: bool = True,
    finish: Callable[[torch.Tensor], torch.Tensor] | None = None,
    label: str = "sampling",
) -> dict[str, torch.Tensor]:
    """The shared sampling loop, chunked over samples.

    Args:
        model: the denoiser.
        x_init: ``(B, C, H, W)`` start at ``timesteps[0]``.
        timesteps: strictly decreasing ints, length S.
        labels: ``(B,)``, per-step ``(B, S)`` or ``None``.
        guidance: classifier-free guidance weight.
        new_step: ``new_step(slice)`` is called at the start of every chunk attempt (so also
            again when an out-of-memory error retries a smaller chunk) and returns that chunk's
            update ``step(i, t, x, eps, x0) -> x``; it must reset any state the update consumes
            (a scheduler, noise generators) so a retried chunk repeats its first try exactly.
        record: also return ``x_t`` and ``x0_pred`` ``(B, S, C, H, W)``.
        clip: clamp x̂0 to [-1, 1] (before the update and the recording).
        finish: applied to each chunk's final x (e.g. a clamp).
        label: the stage name in progress and out-of-memory log lines.
    Returns:
        ``{"sample": (B, C, H, W)}`` (+ ``x_t``, ``x0_pred``), on the CPU.
    """
    device = model.device
    abar = model.alphas_cumprod.to(device)

    def chunk(sl: slice) -> tuple[torch.Tensor, ...]:
        step = new_step(sl)
        x = x_init[sl].to(device, torch.float32)
        lab = None if labels is None else labels[sl].to(device)
        rec_xt, rec_x0 = [], []
        for i, t in enumerate(timesteps):
            tt = torch.full((x.shape[0],), t, device=device, dtype=torch.long)
            eps = model.eps_guided(x, tt, lab if lab is None or lab.ndim == 1 else lab[:, i], guidance)
            a = abar[t].float()
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            if clip:
                x0 = x0.clamp(-1, 1)
            if record:
                rec_xt.append(x.cpu())
                rec_x0.append(x0.cpu())
            x = step(i, t, x, eps, x0)
        x = (x if finish is None else finish(x)).cpu()
        return (x, torch.stack(rec_xt, 1), torch.stack(rec_x0, 1)) if record else (x,)

    outs = [out for _, out in iter_batches(chunk, x_init.shape[0], batch_size, what="samples", label=label)]
    result = {"sample": torch.cat([o[0] for o in outs])}
    if record:
        result["x_t"] = torch.cat([o[1] for o in outs])
        result["x0_pred"] = torch.cat([o[2] for o in outs])
    return result


@torch.no_grad()
def ddim_sample(
    model: DiffusionModel,
    x_init: torch.Tensor,
    timesteps: np.ndarray | list[int],
    labels: torch.Tensor | None = None,
    guidance: float = 1.0,
    record: bool = False,
    batch_size: int = 256,
    clip: bool = True,
) -> dict[str, torch.Tensor]:
    """Run DDIM from ``x_init`` (noise, or a noised image for SDEdit) at ``timesteps[0]``.

    Args:
        model: the denoiser.
        x_init: ``(B, C, H, W)`` start at timestep ``timesteps[0]``.
        timesteps: strictly decreasing integer timesteps, length S.
        labels: ``(B,)`` class labels, per-step labels ``(B, S)`` (label of sample b at step i),
            or ``None`` (unconditional branch).
        guidance: classifier-free guidance weight (1 = plain conditional).
        record: also return ``x_t`` and ``x0_pred`` of shape ``(B, S, C, H, W)``.
        batch_size: samples per chunk (halved and retried on out-of-memory).
    Returns:
        ``{"sample": (B, C, H, W)}`` plus the recorded trajectory when ``record``.
    """
    ts = check_timesteps_decreasing(timesteps)
    abar = model.alphas_cumprod.to(model.device)

    def step(i: int, t: int, x: torch.Tensor, eps: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        if i + 1 == len(ts):
            return x0
        a_prev = abar[ts[i + 1]].float()
        return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps

    return sample_chunks(model, x_init, ts, labels, guidance, lambda sl: step, record=record, batch_size=batch_size,
                         clip=clip, label="ddim sampling")  # fmt: skip


def seeded_noise(shape: tuple[int, ...], generators: list[torch.Generator]) -> torch.Tensor:
    """One noise tensor per generator, stacked: sample i depends only on its own generator."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators])
