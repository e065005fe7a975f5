"""TODO docstring."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

import logging

log = logging.getLogger(__name__)

from diffxai.core.device import resolve_device
from diffxai.io.arrays import load_arrays
from diffxai.io.tables import concat_parquet, provenance, write_parquet
from diffxai.metrics.curves import critical_intervals
from diffxai.models.classifiers import classify, load_classifier
from diffxai.config.experiment import class_spec
from diffxai.config.experiment import classifier_spec


def compute_likelihood(config: dict, cls_name: str, traj_path: str, classifier_path: str | None, out_path: str) -> None:
    device = resolve_device(config["device"])
    cls = class_spec(config, cls_name)
    arrays, meta = load_arrays(traj_path)
    clf = load_classifier(classifier_spec(config, classifier_path), device)
    frames = []
    for view in meta["views"]:
        x = arrays[view]
        n, k, s = x.shape[:3]
        started = time.time()
        logits = classify(clf, x.reshape(-1, *x.shape[3:]), config["likelihood"]["batch_size"], device)
        log.info("%s: %d images classified in %.2fs", view, n * k * s, time.time() - started)
        frames.append(likelihood_frame(logits.view(n, k, s, -1), cls_name, cls["index"], meta["image_ids"],
                                       arrays["timesteps"].numpy(), view))  # fmt: skip
    write_parquet(pd.concat(frames, ignore_index=True), out_path, provenance(config, device))


def aggregate_likelihood(config: dict, inputs: list[str], out_likelihood: str, out_intervals: str) -> None:
    df = concat_parquet(inputs)
    meta = provenance(config, resolve_device(config["device"]))
    write_parquet(df, out_likelihood, meta)
    write_parquet(critical_intervals(df, config["likelihood"]["window"]), out_intervals, meta)


def plot_likelihood(config: dict, likelihood: str, intervals: str, out_by_view: str, out_by_class: str) -> None:
    from diffxai.plots import common as plots

    df, iv = pd.read_parquet(likelihood), pd.read_parquet(intervals)
    names = [c["name"] for c in config["classes"]]
    plots.likelihood_by_view(df, iv, names, out_by_view, dpi=config["plots"]["dpi"], seed=config["seed"])
    plots.likelihood_by_class(df, iv, names, out_by_class, dpi=config["plots"]["dpi"], seed=config["seed"])


LIKELIHOOD_COLUMNS = [
    "class_name", "class_index", "image_id", "draw", "step", "timestep", "view",
    "prob", "logit", "top1_index", "top1_prob", "entropy",
]  # fmt: skip


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
