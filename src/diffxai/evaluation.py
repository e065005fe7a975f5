"""Quantitative checks of explanation maps, shared by every stage that makes maps.

Everything here is generic and batched: maps are ``(B, H, W)`` float tensors (one map per
row; a channel axis is reduced by the caller), images ``(B, C, H, W)``, masks ``(B, H, W)``
bool. Functions run on whatever device their inputs live on, with no host sync per map.

* :func:`map_statistics`: per-map shape statistics (mass, sign, spread, centre) and, when a
  mask is given, localisation (share of positive mass in the mask, pointing game).
* :func:`deletion_insertion`: the RISE protocol (Petsiuk et al. 2018): deletion replaces the
  most salient pixels by a constant substrate (0), insertion copies them into a blurred image;
  the score is recorded at ``n_points`` evenly spaced pixel counts and summarised by the
  normalised trapezoid AUC ``(Σa − a₀/2 − a_last/2)/(n−1)`` (for a score in [0, 1] the AUC is in
  [0, 1]). A good map has a low deletion AUC and a high insertion AUC.
* :func:`random_maps`: the random-map baseline, from explicit generators.
* :func:`spearman`, :func:`ssim`: map similarity for model-randomisation sanity checks
  (Adebayo et al. 2018).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from diffxai.batching import BatchSize, iter_batches

STAT_COLUMNS = ["total_abs", "positive_fraction", "entropy", "gini", "top10_mass", "centroid_x", "centroid_y"]
LOCALISATION_COLUMNS = ["mask_share", "mask_area", "pointing_hit"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_maps(maps: torch.Tensor, name: str = "maps") -> None:
    if maps.dim() != 3:
        raise ValueError(f"{name} must be (B, H, W), got shape {tuple(maps.shape)}")


def nonfinite(maps: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: the map holds a NaN or ±Inf anywhere."""
    return ~torch.isfinite(maps.flatten(1)).all(dim=1)


def map_statistics(maps: torch.Tensor, masks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-map statistics of ``maps`` ``(B, H, W)``; each value is a ``(B,)`` tensor.

    With ``a`` the map, ``m = |a|`` and ``p = m / Σm``:

    * ``total_abs``: Σ|a| (the map's units, e.g. logit for IG/GradientSHAP/Occlusion).
    * ``positive_fraction``: Σ max(a, 0) / Σ|a|, the share of the mass that is positive, in [0, 1].
    * ``entropy``: Shannon entropy of ``p`` divided by log(H·W), in [0, 1] (1 = uniform).
    * ``gini``: Gini coefficient of ``m`` over pixels, in [0, 1) (0 = uniform, → 1 = one pixel).
    * ``top10_mass``: share of Σ|a| in the top 10% of pixels (⌈0.1·H·W⌉ pixels), in [0.1, 1].
    * ``centroid_x`` / ``centroid_y``: ``m``-weighted centre, column / row index divided by
      W−1 / H−1, so in [0, 1] (0 = left / top edge).
    * ``nonfinite``: the map holds NaN/Inf. Such maps get NaN in every other statistic.

    With ``masks`` ``(B, H, W)`` bool (e.g. the digit strokes):

    * ``mask_share``: Σ_mask max(a, 0) / Σ max(a, 0), the share of positive attribution inside
      the mask, in [0, 1]; a random map scores ``mask_area`` on average.
    * ``mask_area``: the mask's share of the pixels (the chance level of ``mask_share``).
    * ``pointing_hit``: 1.0 when the map's maximum lies inside the mask (pointing game), else 0.

    Ratios of an all-zero map are NaN.
    """
    _check_maps(maps)
    b, h, w = maps.shape
    n = h * w
    bad = nonfinite(maps)
    a = torch.where(bad[:, None, None], torch.zeros_like(maps), maps).to(torch.float64).flatten(1)
    m = a.abs()
    total = m.sum(1)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    nan = torch.full_like(total, float("nan"))

    def ratio(x):
        return torch.where(total > 0, x / safe, nan)

    pos = a.clamp(min=0)
    p = m / safe[:, None]
    ent = -(p * torch.log(p.clamp_min(1e-300))).sum(1) / math.log(n) if n > 1 else torch.zeros_like(total)
    ms, _ = torch.sort(m, dim=1)
    idx = torch.arange(1, n + 1, dtype=torch.float64, device=maps.device)
    gini = ((2 * idx - n - 1)[None] * ms).sum(1) / (n * safe)
    k = max(1, math.ceil(0.1 * n))
    top = ms[:, n - k :].sum(1)
    ys = torch.arange(h, dtype=torch.float64, device=maps.device).repeat_interleave(w) / max(h - 1, 1)
    xs = torch.arange(w, dtype=torch.float64, device=maps.device).repeat(h) / max(w - 1, 1)
    out = {
        "total_abs": total,
        "positive_fraction": ratio(pos.sum(1)),
        "entropy": torch.where(total > 0, ent, nan),
        "gini": torch.where(total > 0, gini, nan),
        "top10_mass": ratio(top),
        "centroid_x": ratio((m * xs).sum(1)),
        "centroid_y": ratio((m * ys).sum(1)),
    }
    if masks is not None:
        out.update(localisation(maps, masks))
    for key, v in out.items():
        if key != "mask_area":
            out[key] = torch.where(bad, nan, v)
    out["nonfinite"] = bad
    return out


def localisation(maps: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """``mask_share``, ``mask_area``, ``pointing_hit`` (see :func:`map_statistics`), each ``(B,)``."""
    _check_maps(maps)
    if masks.shape != maps.shape:
        raise ValueError(f"masks {tuple(masks.shape)} must match maps {tuple(maps.shape)}")
    a = torch.nan_to_num(maps.to(torch.float64), nan=0.0, posinf=0.0, neginf=0.0).flatten(1)
    mk = masks.flatten(1).to(torch.bool)
    pos = a.clamp(min=0)
    tot = pos.sum(1)
    share = torch.where(tot > 0, (pos * mk).sum(1) / torch.where(tot > 0, tot, torch.ones_like(tot)),
                        torch.full_like(tot, float("nan")))  # fmt: skip
    hit = mk.gather(1, a.argmax(1, keepdim=True)).squeeze(1).to(torch.float64)
    return {"mask_share": share, "mask_area": mk.to(torch.float64).mean(1), "pointing_hit": hit}


def random_maps(shape: tuple[int, int], generators: Sequence[torch.Generator], device=None) -> torch.Tensor:
    """``(len(generators), H, W)`` i.i.d. uniform maps, one generator per map (the random baseline)."""
    maps = torch.stack([torch.rand(shape, generator=g) for g in generators])
    return maps if device is None else maps.to(device)


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


def curve_counts(n_pixels: int, n_points: int) -> torch.Tensor:
    """Pixel counts ``(n_points,)`` from 0 to ``n_pixels``, evenly spaced (rounded)."""
    return torch.round(torch.linspace(0, n_pixels, n_points, dtype=torch.float64)).long()


def normalised_auc(curves: torch.Tensor) -> torch.Tensor:
    """Trapezoid AUC of ``(B, P)`` curves on an x-axis scaled to [0, 1]: (Σa − a₀/2 − a_last/2)/(P−1)."""
    p = curves.shape[1]
    return (curves.sum(1) - curves[:, 0] / 2 - curves[:, -1] / 2) / (p - 1)


def pixel_ranks(maps: torch.Tensor) -> torch.Tensor:
    """``(B, H·W)`` rank of each pixel, 0 = most salient (largest value; ties by pixel index).

    NaN/Inf entries are ranked as 0-valued (a non-finite map should be flagged by the caller)."""
    a = torch.nan_to_num(maps.flatten(1).float(), nan=0.0, posinf=0.0, neginf=0.0)
    order = torch.sort(a, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=maps.device).expand_as(order).contiguous())
    return ranks


@torch.no_grad()
def deletion_insertion(
    images: torch.Tensor,
    maps: torch.Tensor,
    score: ScoreFn,
    *,
    n_points: int = 17,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
    substrate: float = 0.0,
    batch_size: int = 1024,
    metrics: Sequence[str] = ("deletion", "insertion"),
) -> dict[str, torch.Tensor]:
    """Deletion / insertion curves and AUCs of ``maps`` on ``images`` (RISE protocol, module doc).

    Args:
        images: ``(B, C, H, W)`` the inputs the maps explain.
        maps: ``(B, H, W)``; larger = more important. Pixel order is by value (descending).
        score: ``score(x, src) -> (M,)`` for perturbed images ``x`` ``(M, C, H, W)`` and
            ``src`` ``(M,)`` long, the row of ``images``/``maps`` each one comes from (so the
            caller can look up that row's target). E.g. the softmax probability of the class.
        n_points: points per curve, pixel counts evenly spaced from 0 to H·W.
        batch_size: perturbed images per ``score`` call (all maps × curve points are
            flattened and scored in chunks of this size; halved and retried on out-of-memory).
    Returns:
        ``{"deletion_auc": (B,), "deletion_curve": (B, P), "insertion_auc": ..., ...}`` on the
        images' device (float32), for the requested ``metrics``.
    """
    _check_maps(maps)
    b, c, h, w = images.shape
    if maps.shape != (b, h, w):
        raise ValueError(f"maps {tuple(maps.shape)} must be (B, H, W) of images {tuple(images.shape)}")
    if n_points < 2:
        raise ValueError(f"n_points must be >= 2, got {n_points}")
    device = images.device
    ranks = pixel_ranks(maps.to(device)).view(b, 1, h, w)
    counts = curve_counts(h * w, n_points).to(device)
    blurred = gaussian_blur(images, blur_kernel, blur_sigma) if "insertion" in metrics else None
    total = b * n_points
    size = BatchSize(batch_size)  # a halving after out-of-memory carries over to the next metric
    out = {}
    for metric in metrics:
        if metric not in ("deletion", "insertion"):
            raise ValueError(f"unknown metric {metric!r} (deletion, insertion)")
        scores = torch.empty(total, device=device, dtype=torch.float32)

        def chunk(sl: slice, metric: str = metric) -> torch.Tensor:
            flat = torch.arange(sl.start, sl.stop, device=device)
            src, pt = flat // n_points, flat % n_points
            # pixel is "moved" (deleted / inserted) when its rank is below the point's count
            moved = (ranks[src] < counts[pt].view(-1, 1, 1, 1)).to(images.dtype)
            if metric == "deletion":
                x = images[src] * (1 - moved) + substrate * moved
            else:
                x = blurred[src] * (1 - moved) + images[src] * moved
            return score(x, src).float()

        for sl, vals in iter_batches(chunk, total, size, what="perturbed inputs", label=metric):
            scores[sl] = vals
        curves = scores.view(b, n_points)
        out[f"{metric}_curve"] = curves
        out[f"{metric}_auc"] = normalised_auc(curves)
    return out


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks along dim 1 with ties given their average rank (as scipy's rankdata 'average')."""
    b, n = x.shape
    sorted_x, order = torch.sort(x, dim=1, stable=True)
    pos = torch.arange(n, device=x.device, dtype=torch.float64).expand(b, n)
    new_group = torch.ones_like(sorted_x, dtype=torch.bool)
    new_group[:, 1:] = sorted_x[:, 1:] != sorted_x[:, :-1]
    gid = new_group.long().cumsum(1) - 1
    gsum = torch.zeros(b, n, dtype=torch.float64, device=x.device).scatter_add_(1, gid, pos)
    gcnt = torch.zeros(b, n, dtype=torch.float64, device=x.device).scatter_add_(1, gid, torch.ones_like(pos))
    avg = gsum.gather(1, gid) / gcnt.gather(1, gid)
    ranks = torch.empty_like(avg)
    ranks.scatter_(1, order, avg)
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per row of ``(B, ...)`` tensors (ties averaged), ``(B,)``.

    A constant row has no ranking: its correlation is NaN."""
    x = _average_ranks(a.flatten(1).to(torch.float64))
    y = _average_ranks(b.flatten(1).to(torch.float64))
    x = x - x.mean(1, keepdim=True)
    y = y - y.mean(1, keepdim=True)
    den = (x.square().sum(1) * y.square().sum(1)).sqrt()
    return torch.where(den > 0, (x * y).sum(1) / torch.where(den > 0, den, torch.ones_like(den)),
                       torch.full_like(den, float("nan")))  # fmt: skip


def normalise_abs(maps: torch.Tensor) -> torch.Tensor:
    """``|a| / max|a|`` per map, in [0, 1] (an all-zero map stays zero)."""
    m = torch.nan_to_num(maps.abs().to(torch.float64), nan=0.0, posinf=0.0)
    mx = m.flatten(1).max(1).values.view(-1, *([1] * (m.dim() - 1)))
    return m / torch.where(mx > 0, mx, torch.ones_like(mx))


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
