"""Deterministic DDIM (η = 0) sampling on any strictly decreasing list of timesteps.

The closed-form update x_{t'} = sqrt(ᾱ_{t'})·x̂0 + sqrt(1−ᾱ_{t'})·ε̂ accepts arbitrary
timestep lists (uniform, exponential, SDEdit tails), is batched over samples, and records the
trajectory (x_t and x̂0 at every sampling step) when asked. The last step returns x̂0.
"""

from __future__ import annotations

import numpy as np
import torch

from diffxai.batching import batch_slices
from diffxai.models import DiffusionModel


def uniform_timesteps(num_train_timesteps: int, n_steps: int) -> np.ndarray:
    """diffusers' "leading" DDIM spacing: ``T//n * arange(n)`` reversed (starts at ``T - T//n``)."""
    step = num_train_timesteps // n_steps
    return (np.arange(n_steps) * step)[::-1].copy().astype(np.int64)


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
    Returns:
        ``{"sample": (B, C, H, W)}`` plus the recorded trajectory when ``record``.
    """
    ts = [int(t) for t in timesteps]
    if any(b >= a for a, b in zip(ts, ts[1:])):
        raise ValueError(f"timesteps must be strictly decreasing, got {ts[:5]}...")
    device = model.device
    abar = model.alphas_cumprod.to(device)
    out_sample, out_xt, out_x0 = [], [], []
    for sl in batch_slices(x_init.shape[0], batch_size):
        x = x_init[sl].to(device, torch.float32)
        lab = None if labels is None else labels[sl].to(device)
        rec_xt, rec_x0 = [], []
        for i, t in enumerate(ts):
            tt = torch.full((x.shape[0],), t, device=device, dtype=torch.long)
            eps = model.eps_guided(x, tt, lab if lab is None or lab.ndim == 1 else lab[:, i], guidance)
            a = abar[t].float()
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            if clip:
                x0 = x0.clamp(-1, 1)
            if record:
                rec_xt.append(x.cpu())
                rec_x0.append(x0.cpu())
            if i + 1 < len(ts):
                a_prev = abar[ts[i + 1]].float()
                x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
            else:
                x = x0
        out_sample.append(x.cpu())
        if record:
            out_xt.append(torch.stack(rec_xt, 1))
            out_x0.append(torch.stack(rec_x0, 1))
    result = {"sample": torch.cat(out_sample)}
    if record:
        result["x_t"] = torch.cat(out_xt)
        result["x0_pred"] = torch.cat(out_x0)
    return result


def seeded_noise(shape: tuple[int, ...], generators: list[torch.Generator]) -> torch.Tensor:
    """One noise tensor per generator, stacked: sample i depends only on its own generator."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators])
