"""TODO docstring."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_WINDOW = 15


SSIM_SIGMA = 1.5


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, device=None, dtype=torch.float32) -> torch.Tensor:
    """A normalised ``(size, size)`` Gaussian window."""
    r = torch.arange(size, device=device, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).to(dtype)


def _filter(x: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    k = win.expand(c, 1, *win.shape)
    return F.conv2d(x, k, padding=win.shape[-1] // 2, groups=c)


def _local_moments(a: torch.Tensor, b: torch.Tensor, win: torch.Tensor):
    mu_a, mu_b = _filter(a, win), _filter(b, win)
    var_a = (_filter(a * a, win) - mu_a**2).clamp_min(0)  # avoids the reference's sqrt of a negative variance
    var_b = (_filter(b * b, win) - mu_b**2).clamp_min(0)
    cov = _filter(a * b, win) - mu_a * mu_b
    return mu_a, mu_b, var_a, var_b, cov


def local_structure(
    a: torch.Tensor,
    b: torch.Tensor,
    window: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
    data_range: float = 1.0,
) -> torch.Tensor:
    """The SSIM *structure* term s = (σ_ab + C3) / (σ_a σ_b + C3), local, averaged over channels.

    Local statistics use a ``window × window`` Gaussian (σ = ``sigma``) with zero padding (same
    size output); C2 = (0.03 · data_range)², C3 = C2 / 2; negative variances from round-off are
    clamped to 0 before the square root.

    Args:
        a, b: ``(B, C, H, W)`` (``a`` may be ``(1, C, H, W)`` and broadcast).
    Returns:
        ``(B, H, W)`` float32 in [-1, 1] (≈1 where b has a's local structure).
    """
    a, b = a.float(), b.float()
    if a.shape[0] != b.shape[0]:
        a = a.expand(b.shape[0], -1, -1, -1)
    win = gaussian_window(window, sigma, a.device)
    _, _, var_a, var_b, cov = _local_moments(a, b, win)
    c3 = (0.03 * data_range) ** 2 / 2
    s = (cov + c3) / (var_a.sqrt() * var_b.sqrt() + c3)
    return s.mean(1)


def ssim(
    a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA
) -> torch.Tensor:
    """Mean SSIM (luminance · contrast · structure) per image: ``(B, C, H, W)`` pairs → ``(B,)``."""
    a, b = a.float(), b.float()
    if a.shape[0] != b.shape[0]:
        a = a.expand(b.shape[0], -1, -1, -1)
    win = gaussian_window(window, sigma, a.device)
    mu_a, mu_b, var_a, var_b, cov = _local_moments(a, b, win)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    m = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return m.flatten(1).mean(1)


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Min–max normalise each ``(H, W)`` map of ``(..., H, W)`` to [0, 1] (a constant map → 0)."""
    flat = maps.flatten(-2)
    lo, hi = flat.min(-1, keepdim=True).values, flat.max(-1, keepdim=True).values
    span = hi - lo
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat))
    return out.view_as(maps)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(B, h, w)`` maps to ``size``."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
