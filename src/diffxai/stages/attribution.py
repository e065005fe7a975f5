"""TODO docstring."""

from __future__ import annotations

import copy
import logging
import time

import numpy as np
import pandas as pd
import torch

from diffxai.config.experiment import class_spec
from diffxai.core.batching import Progress, batch_slices
from diffxai.core.device import resolve_device
from diffxai.core.errors import DiffxaiError
from diffxai.core.imageops import ssim
from diffxai.core.seeding import derive_seed, make_generator
from diffxai.io.arrays import load_arrays, save_arrays
from diffxai.io.tables import aggregate_tables, provenance, write_parquet
from diffxai.methods.attribution import MapAttributor, attribute_kwargs, build_methods, forward_function, method_spec, parameter_layers, randomise_layer, reduce_channels
from diffxai.metrics.faithfulness import deletion_insertion
from diffxai.metrics.maps import LOCALISATION_COLUMNS, STAT_COLUMNS, map_statistics, normalise_abs, random_maps, spearman
from diffxai.models.classifiers import load_classifier
from diffxai.config.experiment import classifier_spec
from diffxai.config.experiment import select_steps

log = logging.getLogger(__name__)


KEY_COLUMNS = ["class_name", "class_index", "image_id", "draw", "step", "timestep", "view", "method"]


FAITH_COLUMNS = ["class_name", "image_id", "draw", "step", "timestep", "view", "method", "metric", "value",
                 "baseline_value", "nonfinite"]  # fmt: skip


SANITY_COLUMNS = ["method", "layer", "cascade_index", "spearman", "ssim", "spearman_signed", "spearman_std",
                  "ssim_std", "n_maps", "n_valid"]  # fmt: skip


LAYOUT = "maps: (N images, K draws, S selected steps, V views, H, W); channels summed"


def check_attribution_config(config: dict) -> None:
    """Up-front checks of ``config.attribution`` beyond the schema (methods and their parameters,
    steps within the trajectories' ``noise.n_levels`` steps)."""
    build_methods(config["attribution"]["methods"])
    select_steps(config["attribution"]["steps"], config["noise"]["n_levels"])




def map_seeds(seed: int, method: str, cls: str, image_ids, draws, steps, views) -> list[int]:
    """One seed per map, in (image, draw, step, view) order; depends only on the map's keys."""
    return [derive_seed(seed, "attribution", method, cls, i, int(k), int(s), v)
            for i in image_ids for k in draws for s in steps for v in views]  # fmt: skip


def random_map_generators(seed: int, cls: str, image_ids, draws, steps, views) -> list[torch.Generator]:
    """Generators of the random baseline maps (shared by every method, so all compare to the same)."""
    return [make_generator(seed, "attribution-random-map", cls, i, int(k), int(s), v)
            for i in image_ids for k in draws for s in steps for v in views]  # fmt: skip


def load_selection(config: dict, traj_path: str, *, steps=None, max_images=None, draws=None, views=None) -> dict:
    """The selected inputs of one class's trajectory file.

    Returns ``x`` ``(N', K', S', V, C, H, W)``, ``mask`` ``(N', H, W)`` bool or None,
    ``image_ids``, ``draws`` (list), ``steps`` (list), ``timesteps`` (array), ``views``, ``meta``."""
    arrays, meta = load_arrays(traj_path)
    at = config["attribution"]
    steps = at["steps"] if steps is None else steps
    max_images = at["max_images"] if max_images is None else max_images
    n_draws = at["draws"] if draws is None else draws
    views = views or at["views"] or meta["views"]
    for v in views:
        if v not in meta["views"]:
            raise DiffxaiError("config.attribution.views", f"view {v!r} is not in {traj_path} (has {meta['views']})")
    first = arrays[views[0]]
    n, k, s = first.shape[:3]
    ni = min(n, max_images or n)
    nk = min(k, n_draws or k)
    sel = select_steps(steps, s)
    idx = torch.as_tensor(sel)
    x = torch.stack([arrays[v][:ni, :nk].index_select(2, idx) for v in views], dim=3)
    mask = arrays["mask"][:ni].bool() if "mask" in arrays else None
    return {
        "x": x, "mask": mask, "image_ids": list(meta["image_ids"][:ni]), "draws": list(range(nk)), "steps": sel,
        "timesteps": arrays["timesteps"].numpy()[sel], "views": list(views), "meta": meta,
    }  # fmt: skip


def _index_frame(sel: dict) -> pd.DataFrame:
    ni, nk, ns, nv = sel["x"].shape[:4]
    ii, kk, ss, vv = np.meshgrid(np.arange(ni), np.arange(nk), np.arange(ns), np.arange(nv), indexing="ij")
    return pd.DataFrame(
        {
            "image_id": np.asarray(sel["image_ids"], dtype=object)[ii.ravel()],
            "draw": np.asarray(sel["draws"], dtype=np.int64)[kk.ravel()],
            "step": np.asarray(sel["steps"], dtype=np.int64)[ss.ravel()],
            "timestep": np.asarray(sel["timesteps"], dtype=np.int64)[ss.ravel()],
            "view": np.asarray(sel["views"], dtype=object)[vv.ravel()],
        }
    )


def class_probability(classifier: torch.nn.Module, targets: torch.Tensor):
    """A :data:`diffxai.evaluation.ScoreFn`: softmax probability of each source row's target."""

    def score(x: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(classifier(x).float(), dim=-1)
        return p.gather(1, targets.to(x.device)[src].view(-1, 1)).squeeze(1)

    return score


@torch.no_grad()
def faithfulness(classifier, images, maps, targets, random, fcfg: dict, device) -> dict[str, torch.Tensor]:
    """Deletion/insertion AUCs of ``maps`` and of ``random`` maps ``(M, H, W)`` on ``images``.

    Maps and random maps go through :func:`deletion_insertion` together, chunked over maps;
    returns ``{"deletion_auc": (M,), "insertion_auc": (M,), "deletion_auc_random": ...}``."""
    m = images.shape[0]
    n_points, bs = fcfg["n_points"], fcfg["batch_size"]
    chunk = max(1, (bs // n_points) * 4)
    res = {k: [] for k in ("deletion_auc", "insertion_auc", "deletion_auc_random", "insertion_auc_random")}
    progress = Progress(m, "maps", "faithfulness")
    for sl in batch_slices(m, chunk):  # (each deletion_insertion call halves its own batch on OOM)
        b = sl.stop - sl.start
        imgs = images[sl].to(device)
        both = torch.cat([maps[sl], random[sl]]).to(device)
        tg = torch.cat([targets[sl], targets[sl]])
        out = deletion_insertion(
            torch.cat([imgs, imgs]), both, class_probability(classifier, tg), n_points=n_points,
            blur_kernel=fcfg["blur_kernel"], blur_sigma=fcfg["blur_sigma"], substrate=fcfg["substrate"], batch_size=bs,
        )  # fmt: skip
        for metric in ("deletion", "insertion"):
            auc = out[f"{metric}_auc"].cpu()
            res[f"{metric}_auc"].append(auc[:b])
            res[f"{metric}_auc_random"].append(auc[b:])
        progress.advance(b)
    return {k: torch.cat(v) for k, v in res.items()}


def compute_attribution(
    config: dict, cls_name: str, method: str, traj_path: str, classifier_path: str | None,
    out_maps: str, out_stats: str, out_faithfulness: str,
) -> None:  # fmt: skip
    """One (class, method) job: maps, statistics, localisation and faithfulness (module doc)."""
    check_attribution_config(config)
    device = resolve_device(config["device"])
    at = config["attribution"]
    cls = class_spec(config, cls_name)
    spec = method_spec(config, method)
    sel = load_selection(config, traj_path)
    x = sel["x"]
    ni, nk, ns, nv = x.shape[:4]
    shape = tuple(x.shape[4:])
    inputs = x.reshape(-1, *shape)
    m = inputs.shape[0]
    clf = load_classifier(classifier_spec(config, classifier_path), device)
    if cls["index"] >= (clf.n_classes or 10**9):
        raise DiffxaiError(f"classes.{cls_name}.index", f"{cls['index']} is outside the classifier's {clf.n_classes} classes")
    targets = torch.full((m,), cls["index"], dtype=torch.long)
    seeds = map_seeds(config["seed"], method, cls_name, sel["image_ids"], sel["draws"], sel["steps"], sel["views"])
    attributor = MapAttributor(forward_function(clf, at["output"]), spec)
    started = time.time()
    maps = reduce_channels(attributor.attribute(inputs, targets, seeds, device=device)).float()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.time() - started
    log.info("%s/%s: %d maps (%s) in %.2fs = %.1f maps/s on %s", method, cls_name, m, "x".join(map(str, shape)),
             elapsed, m / max(elapsed, 1e-9), device)  # fmt: skip
    masks = None
    if sel["mask"] is not None:
        masks = sel["mask"][:, None, None, None].expand(ni, nk, ns, nv, *shape[1:]).reshape(m, *shape[1:])
    stats = map_statistics(maps, masks)
    bad = stats["nonfinite"]
    if bad.any():
        log.warning("%s/%s: %d of %d maps hold NaN/Inf (flagged in the tables)", method, cls_name, int(bad.sum()), m)
    idx = _index_frame(sel)
    frame = idx.copy()
    frame.insert(0, "class_name", cls_name)
    frame.insert(1, "class_index", np.int64(cls["index"]))
    frame["method"] = method
    for col in STAT_COLUMNS:
        frame[col] = stats[col].cpu().numpy()
    frame["nonfinite"] = bad.cpu().numpy()
    for col in LOCALISATION_COLUMNS:
        frame[col] = stats[col].cpu().numpy() if col in stats else np.nan
    frame["captum"] = spec.captum  # (timings live in the log and the rule's benchmark: tables stay byte-identical)
    meta = provenance(config, device)
    # faithfulness: the map vs a random map on the same input
    started = time.time()
    rnd = random_maps(shape[1:], random_map_generators(config["seed"], cls_name, sel["image_ids"], sel["draws"],
                                                       sel["steps"], sel["views"]))  # fmt: skip
    fa = faithfulness(clf, inputs, maps, targets, rnd, at["faithfulness"], device)
    log.info("%s/%s: faithfulness of %d maps (+ random) in %.2fs", method, cls_name, m, time.time() - started)
    rows = []
    for metric in ("deletion_auc", "insertion_auc"):
        f = idx.copy()
        f.insert(0, "class_name", cls_name)
        f["method"] = method
        f["metric"] = metric
        f["value"] = np.where(bad.numpy(), np.nan, fa[metric].numpy().astype(np.float64))
        f["baseline_value"] = fa[f"{metric}_random"].numpy().astype(np.float64)
        f["nonfinite"] = bad.numpy()
        rows.append(f)
    store = torch.float16 if at["store_dtype"] == "float16" else torch.float32
    save_arrays(out_maps, {
        "maps": maps.view(ni, nk, ns, nv, *shape[1:]).to(store),
        "nonfinite": bad.view(ni, nk, ns, nv),
        "steps": torch.as_tensor(sel["steps"], dtype=torch.long),
        "timesteps": torch.as_tensor(sel["timesteps"], dtype=torch.long),
        "draws": torch.as_tensor(sel["draws"], dtype=torch.long),
    }, {
        "class_name": cls_name, "class_index": cls["index"], "image_ids": sel["image_ids"], "views": sel["views"],
        "method": method, "captum": spec.captum, "noise_tunnel": spec.noise_tunnel,
        "spec": {k: list(v) if isinstance(v, tuple) else v for k, v in attribute_kwargs(spec, shape).items()},
        "channel_reduction": "sum", "output": at["output"], "layout": LAYOUT,
    })  # fmt: skip
    write_parquet(frame, out_stats, meta)
    write_parquet(pd.concat(rows, ignore_index=True)[FAITH_COLUMNS], out_faithfulness, meta)


def sanity_check(config: dict, method: str, traj_paths: list[str], classifier_path: str | None, out_path: str) -> None:
    """Cascading model randomisation for one method (Adebayo et al. 2018).

    Maps of ``sanity.images_per_class`` images per class (draw 0, ``sanity.steps``,
    ``sanity.view``) are recomputed after randomising the classifier's layers cumulatively from
    the output (``sanity.layers``, default every layer with parameters, top first). Per
    randomised layer: mean Spearman rank correlation of |map| (and of the signed map) and mean
    SSIM of |map|/max|map| between the original and the randomised model's maps. A method
    that passes the check loses similarity quickly."""
    check_attribution_config(config)
    device = resolve_device(config["device"])
    at, sc = config["attribution"], config["attribution"]["sanity"]
    spec = method_spec(config, method)
    xs, targets, seeds = [], [], []
    for path in traj_paths:
        sel = load_selection(config, path, steps=sc["steps"], max_images=sc["images_per_class"], draws=1,
                             views=[sc["view"]])  # fmt: skip
        meta = sel["meta"]
        x = sel["x"].reshape(-1, *sel["x"].shape[4:])
        xs.append(x)
        targets.append(torch.full((x.shape[0],), int(meta["class_index"]), dtype=torch.long))
        seeds += map_seeds(config["seed"], method, meta["class_name"], sel["image_ids"], sel["draws"], sel["steps"],
                           sel["views"])  # fmt: skip
    inputs, targets = torch.cat(xs), torch.cat(targets)
    clf = load_classifier(classifier_spec(config, classifier_path), device)
    layers = sc["layers"] or parameter_layers(clf)
    original = reduce_channels(MapAttributor(forward_function(clf, at["output"]), spec).attribute(
        inputs, targets, seeds, device=device)).double()  # fmt: skip
    model = copy.deepcopy(clf)
    rows = []
    started = time.time()
    for i, layer in enumerate(layers):
        randomise_layer(model, layer, derive_seed(config["seed"], "sanity", layer))
        maps = reduce_channels(MapAttributor(forward_function(model, at["output"]), spec).attribute(
            inputs, targets, seeds, device=device)).double()  # fmt: skip
        ok = torch.isfinite(maps.flatten(1)).all(1) & torch.isfinite(original.flatten(1)).all(1)
        rho = spearman(original.abs(), maps.abs())[ok]
        rho_s = spearman(original, maps)[ok]
        ss = ssim(normalise_abs(original), normalise_abs(maps), separable=False)[ok]
        rows.append({
            "method": method, "layer": layer, "cascade_index": i + 1,
            "spearman": float(np.nanmean(rho.numpy())) if len(rho) else np.nan,
            "ssim": float(ss.mean()) if len(ss) else np.nan,
            "spearman_signed": float(np.nanmean(rho_s.numpy())) if len(rho_s) else np.nan,
            "spearman_std": float(np.nanstd(rho.numpy())) if len(rho) else np.nan,
            "ssim_std": float(ss.std(unbiased=False)) if len(ss) else np.nan,
            "n_maps": int(len(inputs)), "n_valid": int(torch.isfinite(rho).sum()),
        })  # fmt: skip
    log.info("%s: sanity check over %d layers x %d maps in %.2fs", method, len(layers), len(inputs), time.time() - started)
    write_parquet(pd.DataFrame(rows, columns=SANITY_COLUMNS), out_path, provenance(config, device))


def aggregate_attribution(config: dict, stats: list[str], faith: list[str], sanity: list[str],
                          out_stats: str, out_faith: str, out_sanity: str) -> None:  # fmt: skip
    aggregate_tables(config, resolve_device(config["device"]), {out_stats: stats, out_faith: faith, out_sanity: sanity})


def plot_attribution_maps(config: dict, map_paths: list[str], traj_paths: dict[str, str], outputs: list[str]) -> None:
    """One grid per (class, method): blended heat maps over the selected steps."""
    from diffxai.plots import attribution as plots_attribution

    for path, out in zip(map_paths, outputs):
        arrays, meta = load_arrays(path)
        n, k = arrays["maps"].shape[:2]
        # the inputs exactly as the maps file records them (its images, draws, steps and views)
        sel = load_selection(config, traj_paths[meta["class_name"]], steps=arrays["steps"].tolist(), max_images=n,
                             draws=k, views=meta["views"])  # fmt: skip
        plots_attribution.map_grid(arrays, meta, sel["x"], out, n_images=config["attribution"]["plot_images"],
                                   dpi=config["plots"]["dpi"])  # fmt: skip


def plot_attribution_summary(config: dict, stats: str, faith: str, sanity: str, intervals: str, out: dict) -> None:
    from diffxai.plots import attribution as plots_attribution

    names = [c["name"] for c in config["classes"]]
    st, fa, sa, iv = (pd.read_parquet(p) for p in (stats, faith, sanity, intervals))
    dpi = config["plots"]["dpi"]
    for view, path in out["stats"].items():
        plots_attribution.stats_vs_step(st, iv, names, view, path, dpi=dpi)
    plots_attribution.class_comparison(st, names, out["classes"], dpi=dpi)
    plots_attribution.faithfulness_vs_step(fa, out["faithfulness"], dpi=dpi)
    plots_attribution.sanity_curve(sa, out["sanity"], dpi=dpi)
