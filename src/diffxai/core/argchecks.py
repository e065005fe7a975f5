"""Torch-free argument checks shared by the config checks and the methods (DF-RISE masks,
deletion/insertion, CAD edit rules): one-line :class:`~diffxai.core.errors.DiffxaiError` naming the field.
"""

from __future__ import annotations

import math

from diffxai.core.errors import DiffxaiError

MASK_KINDS = ("pixel", "grid")


RISE_ESTIMATORS = ("sum", "mean", "contrast")


EVAL_TARGETS = ("next", "eps", "x0")


EVAL_SCORES = ("ssim", "neg_mse")


def check_rise_args(n_masks: int, p: float, mask: str = "pixel", grid_size: int = 8, batch_size: int = 1) -> None:
    """One-line :class:`DiffxaiError` for bad DF-RISE settings (called before any work)."""
    if not isinstance(n_masks, int) or n_masks < 1:
        raise DiffxaiError("saliency.rise.n_masks", f"{n_masks!r}: need at least 1 mask")
    if not (0.0 < float(p) < 1.0):
        raise DiffxaiError(
            "saliency.rise.p", f"{p!r} is outside (0, 1): the keep probability must be strictly between 0 and 1"
        )
    if mask not in MASK_KINDS:
        raise DiffxaiError("saliency.rise.mask", f"unknown mask kind {mask!r} (use one of {', '.join(MASK_KINDS)})")
    if mask == "grid" and grid_size < 1:
        raise DiffxaiError("saliency.rise.grid_size", f"{grid_size!r}: need at least 1 cell")
    if batch_size < 1:
        raise DiffxaiError("saliency.rise.batch_size", f"{batch_size!r}: need at least 1")


def check_eval_args(n_points: int, score: str, target: str) -> None:
    """One-line :class:`DiffxaiError` for bad deletion/insertion settings."""
    if target not in EVAL_TARGETS:
        raise DiffxaiError(
            "saliency.evaluation.target", f"unknown target {target!r} (use one of {', '.join(EVAL_TARGETS)})"
        )
    if score not in EVAL_SCORES:
        raise DiffxaiError(
            "saliency.evaluation.score", f"unknown score {score!r} (use one of {', '.join(EVAL_SCORES)})"
        )
    if n_points < 2:
        raise DiffxaiError("saliency.evaluation.n_points", f"{n_points!r}: need at least 2 points per curve")


EDIT_RULES = ("per_row", "global")


def check_rho(rho: float, where: str = "config.components.rho") -> float:
    rho = float(rho)
    if not (0.0 < rho < 1.0) or math.isnan(rho):
        raise DiffxaiError(where, f"rho must be in (0, 1), got {rho}")
    return rho
