"""TODO docstring."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_kernel1d(sigma: float, radius: int | None = None, dtype=torch.float64) -> torch.Tensor:
    """Normalised 1-D Gaussian of standard deviation ``sigma`` pixels (radius default ⌈3σ⌉)."""
    r = int(math.ceil(3 * sigma)) if radius is None else int(radius)
    x = torch.arange(-r, r + 1, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(x: torch.Tensor, k: torch.Tensor, padding: str) -> torch.Tensor:
    """Separable depthwise blur of ``(B, C, H, W)``; ``padding`` = ``reflect`` (same size) or ``valid``."""
    c = x.shape[1]
    r = (len(k) - 1) // 2
    kx = k.to(x).view(1, 1, 1, -1).expand(c, 1, 1, -1)
    ky = k.to(x).view(1, 1, -1, 1).expand(c, 1, -1, 1)
    if padding == "reflect":
        # reflect padding needs r < size; fall back to replicate for tiny images
        mode = "reflect" if r < min(x.shape[-2:]) else "replicate"
        x = F.pad(x, (r, r, r, r), mode=mode)
    return F.conv2d(F.conv2d(x, kx, groups=c), ky, groups=c)


def split_bands(x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)``: Gaussian low-pass (σ pixels, reflect padding) and the residual ``x − low``."""
    low = _blur(x.double(), gaussian_kernel1d(sigma), "reflect").to(x.dtype)
    return low, x - low


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    sigma: float = 1.5,
    window: int = 11,
    luminance: bool = True,
) -> torch.Tensor:
    """Mean SSIM per image pair, ``(B,)``, Gaussian window (Wang et al. 2004; K1=0.01, K2=0.03).

    Args:
        x, y: ``(B, C, H, W)`` non-negative intensities in ``[0, data_range]``.
        window: window side, shrunk to the largest odd size ≤ min(H, W) for small images;
            the SSIM map is taken over the valid region and averaged over channels and pixels.
        luminance: ``False`` drops the luminance term and returns the contrast-structure term
            (2σ_xy + C2) / (σ_x² + σ_y² + C2), MS-SSIM's term for signed, zero-mean bands.
    """
    if x.shape != y.shape:
        raise ValueError(f"ssim: shapes differ {tuple(x.shape)} vs {tuple(y.shape)}")
    size = min(window, min(x.shape[-2:]))
    size -= 1 - size % 2
    k = gaussian_kernel1d(sigma, radius=(size - 1) // 2)
    x, y = x.double(), y.double()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _blur(x, k, "valid"), _blur(y, k, "valid")
    vx = _blur(x * x, k, "valid") - mx * mx
    vy = _blur(y * y, k, "valid") - my * my
    cxy = _blur(x * y, k, "valid") - mx * my
    s = (2 * cxy + c2) / (vx + vy + c2)
    if luminance:
        s = s * (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return s.flatten(1).mean(1).float()


def band_ssim(x: torch.Tensor, y: torch.Tensor, sigma: float) -> dict[str, torch.Tensor]:
    """Compare image pairs per band: coarse layout (low-pass) and fine detail (high-pass).

    Args:
        x, y: ``(B, C, H, W)`` in [-1, 1].
        sigma: low-pass Gaussian σ in pixels.
    Returns:
        ``(B,)`` tensors: ``ssim`` (whole image) and ``ssim_low`` (low-pass band), both SSIM on
        intensities mapped to [0, 1]; ``ssim_high``: the contrast-structure SSIM term of the
        high-pass band (zero-mean, so no luminance term); ``rmse_low``, ``rmse_high``: RMS
        difference per band in image units ([-1, 1] scale). 1 = identical, lower = more different.
    """
    xl, xh = split_bands(x, sigma)
    yl, yh = split_bands(y, sigma)
    return {
        "ssim": ssim((x + 1) / 2, (y + 1) / 2),
        "ssim_low": ssim((xl + 1) / 2, (yl + 1) / 2),
        "ssim_high": ssim(xh / 2, yh / 2, luminance=False),
        "rmse_low": (xl - yl).pow(2).flatten(1).mean(1).sqrt().float(),
        "rmse_high": (xh - yh).pow(2).flatten(1).mean(1).sqrt().float(),
    }
