"""Stage ``attribution``: Captum maps of the classifier along every trajectory, their statistics,
faithfulness and model-randomisation sanity checks.

Rules: ``attribution_compute`` (per method and class, :func:`compute`), ``attribution_sanity``
(per method, :func:`sanity`), ``attribution_aggregate`` (:func:`aggregate`); the plot rules'
actions are in :mod:`diffxai.plots.attribution`.

Per (class, method) job, :func:`compute`:

1. takes the class's trajectories ``x_t`` / ``x0_pred`` ``(N, K, S, C, H, W)``, keeps the
   configured images, draws, steps and views (:func:`diffxai.io.trajectories.select_trajectories`)
   and flattens them to ``M`` maps;
2. computes the method's maps of the class's target (``attribution.output``: ``logit`` →
   :class:`~diffxai.methods.attribution.ClassLogit`, ``prob`` →
   :class:`~diffxai.methods.attribution.ClassProbability`) in batches, reduces channels by summing;
3. writes the maps file ``maps/attribution/{method}/{cls}.safetensors``:

   * ``maps``: ``(N', K', S', V, H, W)`` (images, draws, selected steps, views), dtype from
     ``attribution.store_dtype``; ``nonfinite``: same index shape, bool;
   * ``steps`` ``(S',)`` (trajectory step indices), ``timesteps`` ``(S',)``, ``draws`` ``(K',)``;
   * metadata: ``class_name``, ``class_index``, ``image_ids``, ``views``, ``method``, ``captum``,
     ``noise_tunnel``, ``spec`` (the resolved Captum arguments), ``channel_reduction`` (``sum``),
     ``output`` (``logit``/``prob``), ``layout``;

4. per-map statistics and localisation (:func:`diffxai.metrics.maps.map_statistics`) and
   deletion / insertion AUCs of every map and of a random map on the same input
   (:func:`diffxai.methods.attribution.map_faithfulness`, score = the class's softmax probability).
"""

from __future__ import annotations

import copy
import logging
import time

import numpy as np
import pandas as pd
import torch

from diffxai.config.experiment import classifier_spec, select_steps
from diffxai.core.device import resolve_device
from diffxai.core.errors import DiffxaiError
from diffxai.core.imageops import ssim
from diffxai.core.seeding import derive_seed, make_generator
from diffxai.io.arrays import load_arrays, save_arrays
from diffxai.io.specs import SPECS
from diffxai.io.tables import aggregate_tables, provenance, write_table
from diffxai.io.trajectories import TrajectorySelection, select_trajectories
from diffxai.methods.attribution import (
    ClassLogit,
    ClassProbability,
    MapAttributor,
    attribute_kwargs,
    build_method,
    map_faithfulness,
    parameter_layers,
    randomise_layer,
    reduce_channels,
)
from diffxai.metrics.maps import (
    LOCALISATION_COLUMNS,
    STAT_COLUMNS,
    map_statistics,
    normalise_abs,
    random_maps,
    spearman,
)
from diffxai.models.classifiers import load_classifier

log = logging.getLogger(__name__)

#: what ``attribution.output`` names: the target every map of the job explains
OUTPUT_TARGETS = {"logit": ClassLogit, "prob": ClassProbability}


LAYOUT = "maps: (N images, K draws, S selected steps, V views, H, W); channels summed"


def map_seeds(seed: int, method: str, cls: str, sel: TrajectorySelection) -> list[int]:
    """One seed per map of ``sel``, in (image, draw, step, view) order; depends only on the map's keys."""
    return [
        derive_seed(seed, "attribution", method, cls, i, int(k), int(s), v)
        for i in sel.image_ids
        for k in sel.draws
        for s in sel.steps
        for v in sel.views
    ]


def random_map_generators(seed: int, cls: str, sel: TrajectorySelection) -> list[torch.Generator]:
    """Generators of the random baseline maps (shared by every method, so all compare to the same)."""
    return [
        make_generator(seed, "attribution-random-map", cls, i, int(k), int(s), v)
        for i in sel.image_ids
        for k in sel.draws
        for s in sel.steps
        for v in sel.views
    ]


def _select(
    path: str,
    steps,
    views: list[str] | None,
    n_images: int | None,
    n_draws: int | None,
    where_steps: str = "config.attribution.steps",
    where_views: str = "config.attribution.views",
) -> tuple[TrajectorySelection, dict]:
    """The selection of one trajectory file and the file's metadata: ``steps`` as
    :func:`select_steps` reads them, ``views`` ``None`` = every view of the file; errors name
    ``where_steps`` / ``where_views``."""
    arrays, meta = load_arrays(path)
    chosen = select_steps(steps, len(arrays["timesteps"]), where_steps)
    return select_trajectories(arrays, meta, chosen, views or meta["views"], n_images, n_draws, where_views), meta


def _index_frame(sel: TrajectorySelection) -> pd.DataFrame:
    """One row per map of ``sel`` (image, draw, step, view order): its keys and timestep."""
    ni, nk, ns, nv = sel.x.shape[:4]
    ii, kk, ss, vv = np.meshgrid(np.arange(ni), np.arange(nk), np.arange(ns), np.arange(nv), indexing="ij")
    return pd.DataFrame(
        {
            "image_id": np.asarray(sel.image_ids, dtype=object)[ii.ravel()],
            "draw": np.asarray(sel.draws, dtype=np.int64)[kk.ravel()],
            "step": np.asarray(sel.steps, dtype=np.int64)[ss.ravel()],
            "timestep": np.asarray(sel.timesteps, dtype=np.int64)[ss.ravel()],
            "view": np.asarray(sel.views, dtype=object)[vv.ravel()],
        }
    )


def _classifier(params: dict, inputs, device: torch.device):
    return load_classifier(classifier_spec(params, inputs.get("classifier") or None), device)


def compute(params: dict, inputs, outputs) -> None:
    """One (class, method) job: ``outputs.maps``, ``outputs.stats`` and ``outputs.faithfulness``
    from ``inputs.trajectories`` (and ``inputs.classifier`` for the demo); see the module doc."""
    device = resolve_device(params["device"])
    at, cls, name = params["attribution"], params["cls"], params["method"]
    spec = build_method(name, at["methods"][name])
    sel, _ = _select(inputs.trajectories, at["steps"], at["views"], at["max_images"], at["draws"])
    ni, nk, ns, nv = sel.x.shape[:4]
    shape = tuple(sel.x.shape[4:])
    images = sel.x.reshape(-1, *shape)
    m = images.shape[0]
    clf = _classifier(params, inputs, device)
    if cls["index"] >= (clf.n_classes or 10**9):
        raise DiffxaiError(
            f"classes.{cls['name']}.index", f"{cls['index']} is outside the classifier's {clf.n_classes} classes"
        )
    seeds = map_seeds(params["seed"], name, cls["name"], sel)
    started = time.time()
    target = OUTPUT_TARGETS[at["output"]](cls["index"])
    maps = reduce_channels(MapAttributor(clf, spec).attribute(images, target, seeds, device=device)).float()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.time() - started
    log.info(
        "%s/%s: %d maps (%s) in %.2fs = %.1f maps/s on %s",
        name,
        cls["name"],
        m,
        "x".join(map(str, shape)),
        elapsed,
        m / max(elapsed, 1e-9),
        device,
    )
    masks = None
    if sel.mask is not None:
        masks = sel.mask[:, None, None, None].expand(ni, nk, ns, nv, *shape[1:]).reshape(m, *shape[1:])
    stats = map_statistics(maps, masks)
    bad = stats["nonfinite"]
    if bad.any():
        log.warning("%s/%s: %d of %d maps hold NaN/Inf (flagged in the tables)", name, cls["name"], int(bad.sum()), m)
    idx = _index_frame(sel)
    frame = idx.copy()
    frame.insert(0, "class_name", cls["name"])
    frame.insert(1, "class_index", np.int64(cls["index"]))
    frame["method"] = name
    for col in STAT_COLUMNS:
        frame[col] = stats[col].cpu().numpy()
    frame["nonfinite"] = bad.cpu().numpy()
    for col in LOCALISATION_COLUMNS:
        frame[col] = stats[col].cpu().numpy() if col in stats else np.nan
    frame["captum"] = spec.captum  # (timings live in the log and the rule's benchmark: tables stay byte-identical)
    # faithfulness: the map vs a random map on the same input
    started = time.time()
    rnd = random_maps(shape[1:], random_map_generators(params["seed"], cls["name"], sel))
    fc = at["faithfulness"]
    fa = map_faithfulness(
        clf,
        images,
        maps,
        rnd,
        [ClassProbability(cls["index"])] * m,
        n_points=fc["n_points"],
        blur_kernel=fc["blur_kernel"],
        blur_sigma=fc["blur_sigma"],
        substrate=fc["substrate"],
        batch_size=fc["batch_size"],
        device=device,
    )
    log.info("%s/%s: faithfulness of %d maps (+ random) in %.2fs", name, cls["name"], m, time.time() - started)
    rows = []
    for metric in ("deletion_auc", "insertion_auc"):
        f = idx.copy()
        f.insert(0, "class_name", cls["name"])
        f["method"] = name
        f["metric"] = metric
        f["value"] = np.where(bad.numpy(), np.nan, fa[metric].numpy().astype(np.float64))
        f["baseline_value"] = fa[f"{metric}_random"].numpy().astype(np.float64)
        f["nonfinite"] = bad.numpy()
        rows.append(f)
    store = torch.float16 if at["store_dtype"] == "float16" else torch.float32
    arrays = {
        "maps": maps.view(ni, nk, ns, nv, *shape[1:]).to(store),
        "nonfinite": bad.view(ni, nk, ns, nv),
        "steps": torch.as_tensor(sel.steps, dtype=torch.long),
        "timesteps": torch.as_tensor(sel.timesteps, dtype=torch.long),
        "draws": torch.as_tensor(sel.draws, dtype=torch.long),
    }
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in attribute_kwargs(spec, shape).items()}
    save_arrays(
        outputs.maps,
        arrays,
        {
            "class_name": cls["name"],
            "class_index": cls["index"],
            "image_ids": sel.image_ids,
            "views": sel.views,
            "method": name,
            "captum": spec.captum,
            "noise_tunnel": spec.noise_tunnel,
            "spec": kwargs,
            "channel_reduction": "sum",
            "output": at["output"],
            "layout": LAYOUT,
        },
    )
    meta = provenance(params, device)
    write_table(frame, outputs.stats, "attribution_stats", meta)
    write_table(
        pd.concat(rows, ignore_index=True)[SPECS["faithfulness"].names], outputs.faithfulness, "faithfulness", meta
    )


def sanity(params: dict, inputs, outputs) -> None:
    """Cascading model randomisation for one method (Adebayo et al. 2018) → ``outputs[0]``.

    Maps of ``sanity.images_per_class`` images per class (draw 0, ``sanity.steps``,
    ``sanity.view``) of every file in ``inputs.trajectories`` are recomputed after randomising the
    classifier's layers cumulatively from the output (``sanity.layers``, default every layer with
    parameters, top first), with the same targets and seeds. Per randomised layer: mean Spearman
    rank correlation of |map| (and of the signed map) and mean SSIM of |map|/max|map| between the
    original and the randomised model's maps. A method that passes the check loses similarity
    quickly."""
    device = resolve_device(params["device"])
    at, name = params["attribution"], params["method"]
    sc = at["sanity"]
    spec = build_method(name, at["methods"][name])
    kind = OUTPUT_TARGETS[at["output"]]
    xs, targets, seeds = [], [], []
    for path in inputs.trajectories:
        sel, meta = _select(
            path,
            sc["steps"],
            [sc["view"]],
            sc["images_per_class"],
            1,
            "config.attribution.sanity.steps",
            "config.attribution.sanity.view",
        )
        x = sel.x.reshape(-1, *sel.x.shape[4:])
        xs.append(x)
        targets += [kind(meta["class_index"])] * x.shape[0]
        seeds += map_seeds(params["seed"], name, meta["class_name"], sel)
    images = torch.cat(xs)
    clf = _classifier(params, inputs, device)
    layers = sc["layers"] or parameter_layers(clf)
    original = reduce_channels(MapAttributor(clf, spec).attribute(images, targets, seeds, device=device)).double()
    model = copy.deepcopy(clf)
    rows = []
    started = time.time()
    for i, layer in enumerate(layers):
        randomise_layer(model, layer, derive_seed(params["seed"], "sanity", layer))
        maps = reduce_channels(MapAttributor(model, spec).attribute(images, targets, seeds, device=device)).double()
        ok = torch.isfinite(maps.flatten(1)).all(1) & torch.isfinite(original.flatten(1)).all(1)
        rho = spearman(original.abs(), maps.abs())[ok]
        rho_s = spearman(original, maps)[ok]
        ss = ssim(normalise_abs(original), normalise_abs(maps), separable=False)[ok]
        rows.append(
            {
                "method": name,
                "layer": layer,
                "cascade_index": i + 1,
                "spearman": float(np.nanmean(rho.numpy())) if len(rho) else np.nan,
                "ssim": float(ss.mean()) if len(ss) else np.nan,
                "spearman_signed": float(np.nanmean(rho_s.numpy())) if len(rho_s) else np.nan,
                "spearman_std": float(np.nanstd(rho.numpy())) if len(rho) else np.nan,
                "ssim_std": float(ss.std(unbiased=False)) if len(ss) else np.nan,
                "n_maps": int(len(images)),
                "n_valid": int(torch.isfinite(rho).sum()),
            }
        )
    elapsed = time.time() - started
    log.info("%s: sanity check over %d layers x %d maps in %.2fs", name, len(layers), len(images), elapsed)
    write_table(pd.DataFrame(rows, columns=SPECS["sanity"].names), outputs[0], "sanity", provenance(params, device))


def aggregate(params: dict, inputs, outputs) -> None:
    """``attribution_stats.parquet``, ``faithfulness.parquet`` and ``sanity.parquet``: every job's
    tables, concatenated in the inputs' order."""
    aggregate_tables(
        params,
        {
            outputs.stats: (list(inputs.stats), "attribution_stats"),
            outputs.faithfulness: (list(inputs.faithfulness), "faithfulness"),
            outputs.sanity: (list(inputs.sanity), "sanity"),
        },
    )
