"""TODO docstring."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernel1d(kernel_size: int, sigma: float, device=None, dtype=torch.float32) -> torch.Tensor:
    x = torch.arange(kernel_size, dtype=torch.float64, device=device) - (kernel_size - 1) / 2
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_blur(images: torch.Tensor, kernel_size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` (reflect padding; replicate when too small)."""
    b, c, h, w = images.shape
    k = gaussian_kernel1d(kernel_size, sigma, images.device, images.dtype)
    pad = kernel_size // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    x = F.pad(images, (pad, pad, pad, pad), mode=mode)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM per pair of ``(B, H, W)`` maps (Wang et al. 2004; Gaussian window, valid region).

    The window shrinks to the largest odd size that fits the map. Inputs should share a scale,
    e.g. both from :func:`normalise_abs`."""
    _check_maps(a, "a")
    h, w = a.shape[1:]
    k = min(window, h if h % 2 else h - 1, w if w % 2 else w - 1)
    g = gaussian_kernel1d(k, sigma, a.device, torch.float64)
    win = (g[:, None] * g[None, :]).view(1, 1, k, k)
    x, y = a.to(torch.float64)[:, None], b.to(torch.float64)[:, None]

    def filt(z):
        return F.conv2d(z, win)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = filt(x), filt(y)
    vx, vy, cxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)

import torch


def _check_maps(maps: torch.Tensor, name: str = "maps") -> None:
    if maps.dim() != 3:
        raise ValueError(f"{name} must be (B, H, W), got shape {tuple(maps.shape)}")
