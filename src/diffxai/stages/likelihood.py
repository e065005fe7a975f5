"""Stage ``likelihood``: the classifier's softmax along every trajectory, and the critical
interval in which each class becomes recognisable.

Rules: ``likelihood_compute`` (per class, :func:`compute`), ``likelihood_aggregate``
(:func:`aggregate`).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import torch

from diffxai.config.experiment import classifier_spec
from diffxai.core.device import resolve_device
from diffxai.io.arrays import load_arrays
from diffxai.io.specs import SPECS
from diffxai.io.tables import aggregate_meta, concat_parquet, provenance, write_table
from diffxai.metrics.curves import critical_intervals
from diffxai.models.classifiers import classify, load_classifier

log = logging.getLogger(__name__)


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
        columns=SPECS["likelihood"].names,
    )


def compute(params: dict, inputs, outputs) -> None:
    """``likelihood/{cls}.parquet``: the classifier's softmax for every (image, draw, step, view)
    of the class's trajectories (one batched pass per view)."""
    device = resolve_device(params["device"])
    cls = params["cls"]
    arrays, meta = load_arrays(inputs.trajectories)
    clf = load_classifier(classifier_spec(params, inputs.get("classifier") or None), device)
    frames = []
    for view in meta["views"]:
        x = arrays[view]
        n, k, s = x.shape[:3]
        started = time.time()
        logits = classify(clf, x.reshape(-1, *x.shape[3:]), params["likelihood"]["batch_size"], device)
        log.info("%s: %d images classified in %.2fs", view, n * k * s, time.time() - started)
        frames.append(
            likelihood_frame(
                logits.view(n, k, s, -1),
                cls["name"],
                cls["index"],
                meta["image_ids"],
                arrays["timesteps"].numpy(),
                view,
            )
        )
    write_table(pd.concat(frames, ignore_index=True), outputs[0], "likelihood", provenance(params, device))


def aggregate(params: dict, inputs, outputs) -> None:
    """``likelihood.parquet`` (every class) and ``critical_intervals.parquet``."""
    df = concat_parquet(list(inputs))
    meta = aggregate_meta(params, list(inputs))
    write_table(df, outputs.likelihood, "likelihood", meta)
    write_table(critical_intervals(df, params["likelihood"]["window"]), outputs.intervals, "critical_intervals", meta)
