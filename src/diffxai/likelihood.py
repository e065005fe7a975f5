"""Classifier likelihoods along trajectories, and critical intervals.

The critical interval of a (class, view) is the window of ``w`` steps over which the mean
probability of the true class (over images and noise draws) rises most steeply:
``step_start = argmax_s (m[s+w] − m[s])``, ``step_end = step_start + w``,
``max_slope = (m[step_end] − m[step_start]) / w`` (probability per step). ``step_half`` is
the first step where the mean reaches 0.5 (−1 if it never does).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from diffxai.batching import map_batches

LIKELIHOOD_COLUMNS = [
    "class_name", "class_index", "image_id", "draw", "step", "timestep", "view",
    "prob", "logit", "top1_index", "top1_prob", "entropy",
]  # fmt: skip
INTERVAL_COLUMNS = ["class_name", "view", "step_start", "step_end", "max_slope", "step_half", "final_prob"]


@torch.no_grad()
def classify(classifier: torch.nn.Module, x: torch.Tensor, batch_size: int, device=None) -> torch.Tensor:
    """Logits ``(B, n_classes)`` for images ``(B, C, H, W)`` in [-1, 1], in batches."""
    return map_batches(lambda xb: classifier(xb).float(), x, batch_size=batch_size, device=device,
                       what="images", label="classify")  # fmt: skip


def likelihood_frame(
    logits: torch.Tensor,
    class_name: str,
    class_index: int,
    image_ids: list[str],
    timesteps: np.ndarray,
    view: str,
) -> pd.DataFrame:
    """One row per (image, draw, step) from logits shaped ``(N, K, S, n_classes)``."""
    n, k, s, _ = logits.shape
    logp = torch.log_softmax(logits.double(), dim=-1)
    p = logp.exp()
    top1_prob, top1 = p.max(dim=-1)
    entropy = -(p * logp).nan_to_num().sum(-1)
    ii, kk, ss = np.meshgrid(np.arange(n), np.arange(k), np.arange(s), indexing="ij")
    return pd.DataFrame(
        {
            "class_name": class_name,
            "class_index": np.int64(class_index),
            "image_id": np.asarray(image_ids, dtype=object)[ii.ravel()],
            "draw": kk.ravel().astype(np.int64),
            "step": ss.ravel().astype(np.int64),
            "timestep": np.asarray(timesteps, dtype=np.int64)[ss.ravel()],
            "view": view,
            "prob": p[..., class_index].reshape(-1).numpy(),
            "logit": logits[..., class_index].double().reshape(-1).numpy(),
            "top1_index": top1.reshape(-1).numpy().astype(np.int64),
            "top1_prob": top1_prob.reshape(-1).numpy(),
            "entropy": entropy.reshape(-1).numpy(),
        },
        columns=LIKELIHOOD_COLUMNS,
    )


def critical_interval(mean_prob: np.ndarray, window: int) -> dict:
    """Steepest-rise window of a mean-probability curve ordered by step (see module doc)."""
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
