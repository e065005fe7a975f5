"""Forward noising and the step/timestep convention.

``step`` runs as generation does: step 0 is the noisiest level, step S-1 the cleanest.
``timestep`` is the scheduler's t in ``[0, T)``. The poster's 100 levels over a 1000-step
linear schedule are ``level_timesteps(1000, 100)`` = 999, 989, ..., 10, 0 (evenly spaced,
rounded to the nearest integer).
"""

from __future__ import annotations

import numpy as np
import torch

from diffxai.errors import DiffxaiError


def level_timesteps(num_train_timesteps: int, n_levels: int, field: str = "config.noise.n_levels") -> np.ndarray:
    """``n_levels`` timesteps from ``T-1`` (step 0, noisiest) down to 0 (step S-1), strictly decreasing."""
    if n_levels < 2 or n_levels > num_train_timesteps:
        raise DiffxaiError(field, f"{n_levels} must be in [2, {num_train_timesteps}] (the model's timesteps)")
    return np.rint(np.linspace(num_train_timesteps - 1, 0, n_levels)).astype(np.int64)


def linear_alphas_cumprod(num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
    """ᾱ_t of the linear β schedule (float64)."""
    betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


def _abar(alphas_cumprod: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    a = alphas_cumprod.to(like.device)[t.to(like.device).long()]
    return a.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


def forward_noise(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(ᾱ_t)·x0 + sqrt(1−ᾱ_t)·ε for a batch; ``t`` is ``(B,)`` integer timesteps."""
    a = _abar(alphas_cumprod, t, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def predict_x0(x_t: torch.Tensor, eps_hat: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """The denoiser's one-step estimate x̂0 = (x_t − sqrt(1−ᾱ_t)·ε̂) / sqrt(ᾱ_t), clipped to [-1, 1]."""
    a = _abar(alphas_cumprod, t, x_t)
    return ((x_t - (1 - a).sqrt() * eps_hat) / a.sqrt()).clamp(-1, 1)
