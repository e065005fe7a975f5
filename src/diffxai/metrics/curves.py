"""Summaries of per-step curves: critical intervals of likelihood curves, decided and commitment steps.

The critical interval of a (class, view) is the window of ``w`` steps over which the mean
probability of the true class (over images and noise draws) rises most steeply:
``step_start = argmax_s (m[s+w] − m[s])``, ``step_end = step_start + w``,
``max_slope = (m[step_end] − m[step_start]) / w`` (probability per step). ``step_half`` is
the first step where the mean reaches 0.5 (−1 if it never does). Steps are ordered as generation
runs (step 0 = noisiest).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: the columns of ``critical_intervals.parquet``
INTERVAL_COLUMNS = ["class_name", "view", "step_start", "step_end", "max_slope", "step_half", "final_prob"]


def critical_interval(mean_prob: np.ndarray, window: int) -> dict:
    """Steepest-rise window of a mean-probability curve ``(S,)`` ordered by step (see module doc)."""
    m = np.asarray(mean_prob, dtype=float)
    w = int(min(max(1, window), len(m) - 1))
    rise = m[w:] - m[:-w]
    start = int(np.argmax(rise))
    above = np.nonzero(m >= 0.5)[0]
    return {
        "step_start": start,
        "step_end": start + w,
        "max_slope": float(rise[start] / w),
        "step_half": int(above[0]) if len(above) else -1,
        "final_prob": float(m[-1]),
    }


def critical_intervals(likelihood: pd.DataFrame, window: int) -> pd.DataFrame:
    """One row per (class, view) from a likelihood table."""
    rows = []
    mean = likelihood.groupby(["class_name", "view", "step"], sort=True)["prob"].mean()
    for (cls, view), curve in mean.groupby(level=[0, 1], sort=False):
        rows.append({"class_name": cls, "view": view, **critical_interval(curve.to_numpy(), window)})
    return pd.DataFrame(rows, columns=INTERVAL_COLUMNS)


def decided_step(top1: np.ndarray, target: int) -> int:
    """First step from which ``top1`` equals ``target`` through the last step; −1 if it never settles.

    Args:
        top1: ``(S,)`` top-1 class of x̂0 at each step (step 0 = noisiest).
    """
    top1 = np.asarray(top1)
    wrong = np.nonzero(top1 != target)[0]
    if len(wrong) == 0:
        return 0
    last = int(wrong[-1])
    return last + 1 if last + 1 < len(top1) else -1


def commitment_step(share_a: np.ndarray, threshold: float = 0.5) -> int:
    """Smallest switch step k with ``share_a[k'] >= threshold`` for every k' ≥ k; −1 if none.

    ``share_a[k]`` is the share of samples ending as class a when the label switches a→b at step
    k (k = 0..S). From the returned step on, the first label keeps winning: the model has
    committed to a.
    """
    s = np.asarray(share_a, dtype=float)
    below = np.nonzero(s < threshold)[0]
    if len(below) == 0:
        return 0
    last = int(below[-1])
    return last + 1 if last + 1 < len(s) else -1
