"""Forward noising in closed form: ᾱ_t of the linear β schedule, x_t = sqrt(ᾱ_t)·x0 + sqrt(1−ᾱ_t)·ε,
the one-step estimate x̂0, and seeded per-sample noise (shapes: batches ``(B, C, H, W)``, ``t`` ``(B,)``)."""

from __future__ import annotations

import torch


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


def seeded_noise(shape: tuple[int, ...], generators: list[torch.Generator]) -> torch.Tensor:
    """One noise tensor per generator, stacked: sample i depends only on its own generator."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators])
