"""Image operations shared by every stage: one Gaussian kernel, one blur, one SSIM.

Every image tensor is ``(B, C, H, W)`` in pixel units (σ and window sizes are in pixels); maps are
``(B, H, W)``. Kernels are built in float64 and cast to the data's dtype, so a blur or an SSIM
computed in float32 and one computed in float64 use the same weights up to that cast.

The options of :func:`blur` and :func:`ssim` reproduce, bit for bit, the variants the stages used
before they were merged (``tests/unit/test_imageops.py`` checks it):

* attribution sanity check (old ``evaluation.ssim``): ``ssim(a, b, separable=False)`` on
  ``(B, H, W)`` maps: 11 × 11 window shrunk to fit, valid region, float64 in and out.
* faithfulness insertion blur (old ``evaluation.gaussian_blur``): ``blur(x, sigma, size)``.
* saliency (old ``saliency.ssim`` / ``local_structure``): 15 × 15 window, σ = 1.5, zero padding,
  a 2-D window, clamped variances, float32: ``ssim(a, b, window=15, padding="zero",
  separable=False, clamp_variance=True, dtype=torch.float32, ...)`` with ``data_range=2.0``
  for the full SSIM score, or ``terms="structure", reduction="map"`` for the structure map.
* schedules (old ``schedules.ssim`` / ``band_ssim``): separable window, valid region, float64,
  float32 out: ``ssim(x, y, terms="cs*l" | "cs", out_dtype=torch.float32)``; :func:`split_bands`
  and :func:`band_ssim` are built on these.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PADDINGS = ("reflect", "replicate", "zero", "valid")
SSIM_TERMS = ("ssim", "cs*l", "cs", "structure")
SSIM_REDUCTIONS = ("mean", "map", "none")


def _check_maps(maps: torch.Tensor, name: str = "maps") -> None:
    if maps.dim() != 3:
        raise ValueError(f"{name} must be (B, H, W), got shape {tuple(maps.shape)}")


def gaussian_kernel1d(
    sigma: float, size: int | None = None, *, radius: int | None = None, device=None, dtype=torch.float64
) -> torch.Tensor:
    """Normalised 1-D Gaussian of standard deviation ``sigma`` pixels, ``(size,)``, summing to 1.

    Args:
        sigma: standard deviation in pixels (> 0).
        size: number of taps, centred on the middle tap (on the half-pixel for an even size);
            give ``size`` or ``radius`` (``size = 2·radius + 1``), not both. Neither: radius ⌈3σ⌉.
        device: where the kernel is built.
        dtype: the kernel's dtype. The weights are always computed in float64
            (exp(−x² / 2σ²) / Σ) and then cast.
    """
    if size is not None and radius is not None:
        raise ValueError(f"give size or radius, not both (size={size}, radius={radius})")
    if size is None:
        size = 2 * (math.ceil(3 * sigma) if radius is None else int(radius)) + 1
    if size < 1 or not sigma > 0:
        raise ValueError(f"a Gaussian kernel needs size >= 1 and sigma > 0, got size={size}, sigma={sigma}")
    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def blur(
    images: torch.Tensor,
    sigma: float,
    size: int | None = None,
    *,
    radius: int | None = None,
    padding: str = "reflect",
    separable: bool = True,
) -> torch.Tensor:
    """Gaussian blur of each channel of ``(B, C, H, W)`` images (σ in pixels).

    Args:
        images: ``(B, C, H, W)``, any floating dtype (the kernel is cast to it).
        sigma, size, radius: the kernel, as in :func:`gaussian_kernel1d` (default radius ⌈3σ⌉).
        padding: ``"reflect"`` (mirror without repeating the edge; replicate instead when the
            image is too small to mirror, i.e. ``size // 2 >= min(H, W)``), ``"replicate"``,
            ``"zero"`` (all three pad ``size // 2`` pixels per side: same size out for an odd
            kernel, one pixel more for an even one) or ``"valid"`` (no padding:
            ``(H − size + 1, W − size + 1)`` out).
        separable: ``True`` convolves rows, then columns, with the 1-D kernel; ``False``
            convolves once with the 2-D window (the outer product in float64, then cast). The
            same filter, rounded differently.
    Returns:
        ``(B, C, H', W')`` in ``images``' dtype.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    c = images.shape[1]
    k = gaussian_kernel1d(sigma, size, radius=radius, device=images.device)
    n, pad = len(k), len(k) // 2
    x = images
    if padding == "reflect":
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect" if pad < min(x.shape[-2:]) else "replicate")
    elif padding == "replicate":
        x = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    zpad = pad if padding == "zero" else 0
    if not separable:
        win = torch.outer(k, k).to(x.dtype)
        return F.conv2d(x, win.expand(c, 1, n, n), padding=zpad, groups=c)
    k = k.to(x.dtype)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, zpad), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(zpad, 0), groups=c)


def ssim(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    window: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    padding: str = "valid",
    separable: bool = True,
    terms: str = "ssim",
    clamp_variance: bool = False,
    dtype: torch.dtype = torch.float64,
    reduction: str = "mean",
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """SSIM (Wang et al. 2004) between image pairs with a Gaussian window; K1 = 0.01, K2 = 0.03.

    Local means μ, variances σ² and covariance σ_ab come from :func:`blur` with the window;
    C1 = (0.01·data_range)², C2 = (0.03·data_range)², C3 = C2 / 2.

    Args:
        a, b: ``(B, C, H, W)`` images, or ``(B, H, W)`` maps (one channel); the same shape, except
            that ``a`` may have batch 1 and is then compared with every image of ``b``.
        window: side of the window (odd); σ = ``sigma`` pixels. With ``padding="valid"`` it
            shrinks to the largest odd size ≤ min(H, W).
        data_range: the span of the intensities (1 for [0, 1], 2 for [-1, 1]); sets C1, C2.
        padding: ``"valid"`` (the map covers only windows inside the image: ``(H − w + 1,
            W − w + 1)``), or ``"zero"`` / ``"reflect"`` / ``"replicate"`` (same size), see
            :func:`blur`.
        separable: blur with the 1-D kernel twice (``True``) or the 2-D window once.
        terms: ``"ssim"``: l·c·s = (2μ_aμ_b + C1)(2σ_ab + C2) / ((μ_a² + μ_b² + C1)(σ_a² + σ_b² + C2));
            ``"cs*l"``: the same quantity computed as the contrast-structure map times the
            luminance term (rounds differently in the last bits); ``"cs"``: contrast-structure
            (2σ_ab + C2) / (σ_a² + σ_b² + C2), for signed zero-mean bands (no luminance term);
            ``"structure"``: the structure term (σ_ab + C3) / (σ_aσ_b + C3) (variances are
            always clamped at 0 before the square root).
        clamp_variance: clamp σ_a², σ_b² at 0 (round-off can make them slightly negative).
        dtype: the dtype the inputs are cast to and everything is computed in.
        reduction: ``"mean"``: mean over channels and pixels, ``(B,)``; ``"map"``: mean over
            channels, ``(B, H', W')``; ``"none"``: ``(B, C, H', W')``.
        out_dtype: cast the result to this dtype (default: ``dtype``).
    Returns:
        SSIM in [-1, 1] (1 = identical), shaped by ``reduction``.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if terms not in SSIM_TERMS:
        raise ValueError(f"terms must be one of {SSIM_TERMS}, got {terms!r}")
    if reduction not in SSIM_REDUCTIONS:
        raise ValueError(f"reduction must be one of {SSIM_REDUCTIONS}, got {reduction!r}")
    if a.dim() not in (3, 4) or b.dim() != a.dim():
        raise ValueError(f"ssim needs (B, C, H, W) or (B, H, W) pairs, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape != b.shape:
        if a.shape[0] != 1 or a.shape[1:] != b.shape[1:]:
            raise ValueError(f"ssim: shapes differ {tuple(a.shape)} vs {tuple(b.shape)}")
        a = a.expand_as(b)
    if a.dim() == 3:
        a, b = a[:, None], b[:, None]
    a, b = a.to(dtype), b.to(dtype)
    size = window
    if padding == "valid":
        size = min(window, *a.shape[-2:])
        size -= 1 - size % 2

    def filt(z: torch.Tensor) -> torch.Tensor:
        return blur(z, sigma, size, padding=padding, separable=separable)

    mu_a, mu_b = filt(a), filt(b)
    var_a, var_b = filt(a * a) - mu_a * mu_a, filt(b * b) - mu_b * mu_b
    if clamp_variance or terms == "structure":
        var_a, var_b = var_a.clamp_min(0), var_b.clamp_min(0)
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    if terms == "ssim":
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2))
    elif terms == "structure":
        s = (cov + c2 / 2) / (var_a.sqrt() * var_b.sqrt() + c2 / 2)
    else:
        s = (2 * cov + c2) / (var_a + var_b + c2)
        if terms == "cs*l":
            s = s * (2 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1)
    if reduction == "mean":
        s = s.flatten(1).mean(1)
    elif reduction == "map":
        s = s.mean(1)
    return s if out_dtype is None else s.to(out_dtype)


def split_bands(x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)`` of ``(B, C, H, W)`` images, both in ``x``'s dtype and units.

    ``low``: Gaussian low-pass (σ pixels, radius ⌈3σ⌉, reflect padding, computed in float64);
    ``high``: the residual ``x − low``.
    """
    low = blur(x.double(), sigma, padding="reflect").to(x.dtype)
    return low, x - low


def band_ssim(x: torch.Tensor, y: torch.Tensor, sigma: float) -> dict[str, torch.Tensor]:
    """Compare image pairs per band: coarse layout (low-pass) and fine detail (high-pass).

    Args:
        x, y: ``(B, C, H, W)`` in [-1, 1].
        sigma: low-pass Gaussian σ in pixels.
    Returns:
        ``(B,)`` float32 tensors: ``ssim`` (whole image) and ``ssim_low`` (low-pass band), both
        SSIM on intensities mapped to [0, 1]; ``ssim_high``: the contrast-structure SSIM term of
        the high-pass band (zero-mean, so no luminance term); ``rmse_low``, ``rmse_high``: RMS
        difference per band in image units ([-1, 1] scale). 1 = identical, lower = more different.
        The SSIMs use an 11 × 11 separable window (σ = 1.5, valid region, float64).
    """
    xl, xh = split_bands(x, sigma)
    yl, yh = split_bands(y, sigma)
    f32 = torch.float32
    return {
        "ssim": ssim((x + 1) / 2, (y + 1) / 2, terms="cs*l", out_dtype=f32),
        "ssim_low": ssim((xl + 1) / 2, (yl + 1) / 2, terms="cs*l", out_dtype=f32),
        "ssim_high": ssim(xh / 2, yh / 2, terms="cs", out_dtype=f32),
        "rmse_low": (xl - yl).pow(2).flatten(1).mean(1).sqrt().float(),
        "rmse_high": (xh - yh).pow(2).flatten(1).mean(1).sqrt().float(),
    }


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Min–max normalise each ``(H, W)`` map of ``(..., H, W)`` to [0, 1] (a constant map → 0)."""
    flat = maps.flatten(-2)
    lo, hi = flat.min(-1, keepdim=True).values, flat.max(-1, keepdim=True).values
    span = hi - lo
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat))
    return out.view_as(maps)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(B, h, w)`` maps to ``size`` = ``(H, W)`` (float32 out; unchanged if already that size)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
