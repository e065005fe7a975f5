"""Statistics and comparisons of explanation maps, shared by every stage that makes maps.

Maps are ``(B, H, W)`` float tensors (one map per row; a channel axis is reduced by the caller),
masks ``(B, H, W)`` bool. Functions run on whatever device their inputs live on, with no host sync
per map.

* :func:`map_statistics`: per-map shape statistics (mass, sign, spread, centre) and, when a mask
  is given, localisation (:func:`localisation`: share of positive mass in the mask, pointing game).
* :func:`random_maps`: the random-map baseline, from explicit generators.
* :func:`spearman`, :func:`normalise_abs`: map similarity for model-randomisation sanity checks
  (Adebayo et al. 2018; the SSIM is :func:`diffxai.core.imageops.ssim`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from diffxai.core.imageops import _check_maps

#: the per-map statistics of :func:`map_statistics` (table columns)
STAT_COLUMNS = ["total_abs", "positive_fraction", "entropy", "gini", "top10_mass", "centroid_x", "centroid_y"]

#: the localisation statistics (with a mask)
LOCALISATION_COLUMNS = ["mask_share", "mask_area", "pointing_hit"]


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
    share = torch.where(
        tot > 0, (pos * mk).sum(1) / torch.where(tot > 0, tot, torch.ones_like(tot)), torch.full_like(tot, float("nan"))
    )
    hit = mk.gather(1, a.argmax(1, keepdim=True)).squeeze(1).to(torch.float64)
    return {"mask_share": share, "mask_area": mk.to(torch.float64).mean(1), "pointing_hit": hit}


def random_maps(shape: tuple[int, int], generators: Sequence[torch.Generator], device=None) -> torch.Tensor:
    """``(len(generators), H, W)`` i.i.d. uniform maps, one generator per map (the random baseline)."""
    maps = torch.stack([torch.rand(shape, generator=g) for g in generators])
    return maps if device is None else maps.to(device)


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
    return torch.where(
        den > 0, (x * y).sum(1) / torch.where(den > 0, den, torch.ones_like(den)), torch.full_like(den, float("nan"))
    )


def normalise_abs(maps: torch.Tensor) -> torch.Tensor:
    """``|a| / max|a|`` per map, in [0, 1] (an all-zero map stays zero)."""
    m = torch.nan_to_num(maps.abs().to(torch.float64), nan=0.0, posinf=0.0)
    mx = m.flatten(1).max(1).values.view(-1, *([1] * (m.dim() - 1)))
    return m / torch.where(mx > 0, mx, torch.ones_like(mx))
