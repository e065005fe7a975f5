"""Faithfulness of explanation maps: the RISE deletion / insertion protocol (Petsiuk et al. 2018).

Deletion replaces the most salient pixels by a constant substrate (0), insertion copies them into
a blurred copy of the image; the score is recorded at ``n_points`` evenly spaced pixel counts and
summarised by the normalised trapezoid AUC ``(Σa − a₀/2 − a_last/2)/(n−1)`` (for a score in [0, 1]
the AUC is in [0, 1]). A good map has a low deletion AUC and a high insertion AUC. Images are
``(B, C, H, W)``, maps ``(B, H, W)``; everything runs on the images' device, batched over maps ×
curve points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from diffxai.core.batching import BatchSize, iter_batches
from diffxai.core.imageops import _check_maps, blur

#: ``score(x, src) -> (M,)``: the score of perturbed images ``x`` ``(M, C, H, W)``, ``src`` ``(M,)`` the
#: row of the original batch each one comes from
ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
    blurred = blur(images, sigma=blur_sigma, size=blur_kernel, padding="reflect") if "insertion" in metrics else None
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
