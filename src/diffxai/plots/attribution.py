"""Plots of the attribution stage; the actions of rules ``attribution_plot_maps``
(:func:`plot_maps`) and ``attribution_plot`` (:func:`plot`).

* :func:`map_grid`: per (class, method), blended heat maps over the selected steps like the
  poster's grids (positive attributions, the top 5% of the positive mass clipped, "Reds" at
  alpha 0.5 over the grey input, as Captum's ``visualize_image_attr(..., "blended_heat_map",
  sign="positive", outlier_perc=5)``). Maps flagged non-finite are drawn as a hatched cell
  marked "NaN/Inf", never as a heat map.
* :func:`stats_vs_step`: map statistics vs step per class, the class's critical interval shaded.
* :func:`class_comparison`: the same statistics with all classes in one panel per method.
* :func:`faithfulness_vs_step`: deletion / insertion AUC vs step per method, random maps dashed.
* :func:`sanity_curve`: similarity to the original maps as layers are randomised.

Flagged maps are excluded from every statistic plot, and the figures say how many were.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from diffxai.io.arrays import load_arrays
from diffxai.io.trajectories import select_trajectories
from diffxai.plots.common import VIEW_LABEL, _save, class_palette, plot_style, to_display

STAT_LABELS = {
    "total_abs": "Σ|attribution|\n(log scale)",
    "positive_fraction": "positive share\nof |attribution|",
    "entropy": "normalised entropy\n(1 = uniform)",
    "top10_mass": "mass in top 10%\nof pixels",
    "gini": "Gini coefficient",
    "mask_share": "positive mass\ninside stroke mask",
    "mask_excess": "positive mass in mask\nminus mask area (0 = chance)",
    "pointing_hit": "pointing game\nhit rate",
}


METRIC_LABELS = {
    "deletion_auc": "deletion AUC (lower = more faithful)",
    "insertion_auc": "insertion AUC (higher = more faithful)",
}


def cumulative_threshold(values: np.ndarray, percentile: float) -> float:
    """Captum's ``_cumulative_sum_threshold``: the value where the sorted cumulative sum reaches
    ``percentile`` % of the total."""
    v = np.sort(values.ravel())
    cs = np.cumsum(v)
    return float(v[np.nonzero(cs >= cs[-1] * 0.01 * percentile)[0][0]])


def blend(image: np.ndarray, attr: np.ndarray, outlier_perc: float = 5.0, alpha: float = 0.5) -> np.ndarray:
    """``(H, W, 3)`` RGB in [0, 1]: the input ``(C, H, W)`` in grey under the positive part of
    ``attr`` ``(H, W)``, normalised by the 100−``outlier_perc`` % cumulative-mass threshold."""
    grey = to_display(image)
    grey = grey if grey.ndim == 2 else grey.mean(axis=2)
    pos = np.clip(np.nan_to_num(np.asarray(attr, dtype=np.float64)), 0, None)
    norm = np.zeros_like(pos)
    if pos.sum() > 0:
        thr = cumulative_threshold(pos, 100 - outlier_perc)
        norm = np.clip(pos / thr, 0, 1) if thr > 0 else (pos > 0).astype(float)
    heat = plt.get_cmap("Reds")(norm)[..., :3]
    return (1 - alpha) * np.repeat(grey[..., None], 3, axis=2) + alpha * heat


def _mosaic(cells: list[np.ndarray], n_cols: int, pad: int = 1) -> np.ndarray:
    h, w = cells[0].shape[:2]
    n_rows = -(-len(cells) // n_cols)
    out = np.ones((n_rows * (h + pad) - pad, n_cols * (w + pad) - pad, 3))
    for i, c in enumerate(cells):
        r, k = divmod(i, n_cols)
        out[r * (h + pad) : r * (h + pad) + h, k * (w + pad) : k * (w + pad) + w] = c
    return out


def map_grid(arrays: dict, meta: dict, inputs, out, n_images: int = 2, max_cols: int = 10, dpi: int = 120) -> None:
    """Blended heat maps of one (class, method) over steps (module doc).

    Args:
        arrays: the maps file (``maps`` ``(N, K, S, V, H, W)``, ``nonfinite``, ``steps``, ``timesteps``).
        inputs: ``(N, K, S, V, C, H, W)`` the images the maps explain (same selection).
    One panel per (view, image) of draw 0, steps left to right in rows of ``max_cols``."""
    maps = arrays["maps"].float().numpy()
    bad = arrays["nonfinite"].numpy()
    steps, ts = arrays["steps"].numpy(), arrays["timesteps"].numpy()
    views, ids = meta["views"], meta["image_ids"]
    ni = min(n_images, maps.shape[0])
    s = maps.shape[2]
    n_cols = min(s, max_cols)
    n_rows = -(-s // n_cols)
    h, w = maps.shape[-2:]
    panels = [(v, i) for v in range(len(views)) for i in range(ni)]
    cell_in = 0.75
    size = (cell_in * n_cols + 1.4, (cell_in * n_rows + 0.45) * len(panels) + 0.7)
    fig, axes = plt.subplots(len(panels), 1, figsize=size, squeeze=False)
    n_bad = 0
    for ax, (v, i) in zip(axes[:, 0], panels):
        cells = []
        for j in range(s):
            img = inputs[i, 0, j, v].numpy()
            if bad[i, 0, j, v]:
                cells.append(np.full((h, w, 3), 0.85))
                n_bad += 1
            else:
                cells.append(blend(img, maps[i, 0, j, v]))
        ax.imshow(_mosaic(cells, n_cols), interpolation="nearest")
        for j in range(s):
            r, k = divmod(j, n_cols)
            x0, y0 = k * (w + 1), r * (h + 1)
            ax.text(
                x0 + 0.3,
                y0 + 0.3,
                f"{steps[j]}",
                fontsize=5,
                va="top",
                ha="left",
                color="black",
                bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7},
            )
            if bad[i, 0, j, v]:
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), w, h, fill=False, hatch="xx", ec="C3", lw=0))
                ax.text(x0 + w / 2, y0 + h / 2, "NaN/Inf", fontsize=6, ha="center", va="center", color="C3")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(
            f"{VIEW_LABEL.get(views[v], views[v])} · image {ids[i]} · draw 0 · "
            f"steps {steps[0]}→{steps[-1]} (t = {ts[0]}→{ts[-1]})",
            fontsize=7,
        )
    flagged = f"; {n_bad} non-finite maps shown hatched" if n_bad else ""
    fig.suptitle(
        f"{meta['method']} ({meta['captum']}) attributions to {meta['class_name']} "
        f"(classifier {meta.get('output', 'logit')} of class {meta['class_index']}): positive part, "
        f"top 5% clipped, over the input; corner number = step (0 = noisiest){flagged}",
        fontsize=7.5,
        wrap=True,
    )
    sm = plt.cm.ScalarMappable(cmap="Reds", norm=plt.Normalize(0, 1))
    cb = fig.colorbar(sm, ax=axes[:, 0].tolist(), fraction=0.025, pad=0.01)
    cb.set_label("positive attribution\n(÷ 95%-mass threshold)", fontsize=6)
    cb.ax.tick_params(labelsize=5)
    _save(fig, out, dpi)


def _mean_ci(df: pd.DataFrame, by: list[str], col: str) -> pd.DataFrame:
    g = df.groupby(by, sort=True)[col]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out["ci"] = 1.96 * out["std"].fillna(0) / np.sqrt(out["count"].clip(lower=1))
    return out


def _band(ax, d: pd.DataFrame, color, label=None, ls="-"):
    ax.plot(d["step"], d["mean"], color=color, lw=1.2, ls=ls, label=label)
    ax.fill_between(d["step"], d["mean"] - d["ci"], d["mean"] + d["ci"], color=color, alpha=0.18, lw=0)


def _stat_columns(st: pd.DataFrame) -> list[str]:
    cols = ["total_abs", "positive_fraction", "entropy", "top10_mass"]
    if "mask_share" in st and st["mask_share"].notna().any():
        cols.append("mask_share")
    return cols


def _excluded(st: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    bad = st["nonfinite"].astype(bool) if "nonfinite" in st else pd.Series(False, index=st.index)
    n = int(bad.sum())
    return st[~bad], (f"; {n} non-finite maps excluded" if n else "; no non-finite maps")


def stats_vs_step(st: pd.DataFrame, intervals: pd.DataFrame, names: list[str], view: str, out, dpi=120) -> None:
    """Rows = classes, columns = statistics, one line per method (mean ± 95% CI over images ×
    draws); the class's critical interval for this view shaded."""
    st, note = _excluded(st[st["view"] == view])
    cols = _stat_columns(st)
    methods = list(dict.fromkeys(st["method"]))
    names = [n for n in names if n in set(st["class_name"])]
    fig, axes = plt.subplots(
        len(names), len(cols), figsize=(2.3 * len(cols) + 1.2, 1.45 * len(names) + 0.9), sharex=True, squeeze=False
    )
    for r, name in enumerate(names):
        iv = intervals[(intervals["class_name"] == name) & (intervals["view"] == view)]
        for c, col in enumerate(cols):
            ax = axes[r, c]
            if len(iv):
                ax.axvspan(
                    iv["step_start"].iloc[0],
                    iv["step_end"].iloc[0],
                    color="0.6",
                    alpha=0.25,
                    lw=0,
                    label="critical interval" if (r, c) == (0, 0) else None,
                )
            sub = st[st["class_name"] == name]
            for k, m in enumerate(methods):
                label = m if (r, c) == (0, 0) else None
                _band(ax, _mean_ci(sub[sub["method"] == m], ["step"], col), f"C{k}", label=label)
            if col == "total_abs":
                ax.set_yscale("log")
            elif col in ("positive_fraction", "mask_share"):
                ax.set_ylim(-0.02, 1.02)
            if col == "mask_share" and "mask_area" in sub:
                ax.axhline(sub["mask_area"].mean(), color="k", ls=":", lw=0.8)
            if r == 0:
                ax.set_title(STAT_LABELS.get(col, col), fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == len(names) - 1:
                ax.set_xlabel("step (0 = noisiest)", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.legend(loc="upper right", fontsize=7, frameon=False, bbox_to_anchor=(1.0, 1.0))
    extra = "; dotted: stroke-mask area (chance level)" if "mask_share" in cols else ""
    fig.suptitle(
        f"Attribution statistics vs step, {VIEW_LABEL.get(view, view)}: mean ± 95% CI over images × draws; "
        f"grey: critical interval of P(class){extra}{note}",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0, 0.93, 0.97))
    _save(fig, out, dpi)


def class_comparison(st: pd.DataFrame, names: list[str], out, dpi=120) -> None:
    """Rows = statistics, columns = (method, view); one line per class (mean over images × draws)."""
    st, note = _excluded(st)
    cols = [c for c in _stat_columns(st) if c not in ("total_abs", "positive_fraction")]
    if "mask_share" in cols:  # classes differ in stroke area: compare the excess over chance
        st = st.assign(mask_excess=st["mask_share"] - st["mask_area"])
        cols[cols.index("mask_share")] = "mask_excess"
    methods = list(dict.fromkeys(st["method"]))
    views = list(dict.fromkeys(st["view"]))
    pairs = [(m, v) for m in methods for v in views]
    pal = class_palette(names)
    fig, axes = plt.subplots(
        len(cols),
        len(pairs),
        figsize=(2.4 * len(pairs) + 1.4, 1.9 * len(cols) + 0.8),
        sharex=True,
        sharey="row",
        squeeze=False,
    )
    mean = st.groupby(["method", "view", "class_name", "step"])[cols].mean().reset_index()
    for c, (m, v) in enumerate(pairs):
        for r, col in enumerate(cols):
            ax = axes[r, c]
            for name in names:
                d = mean[(mean["method"] == m) & (mean["view"] == v) & (mean["class_name"] == name)]
                ax.plot(d["step"], d[col], color=pal[name], lw=1.1, label=name if (r, c) == (0, 0) else None)
            if col == "mask_excess":
                ax.axhline(0, color="k", ls=":", lw=0.8)
            if r == 0:
                ax.set_title(f"{m} · {'x_t' if v == 'x_t' else 'x̂0'}", fontsize=8)
            if c == 0:
                ax.set_ylabel(STAT_LABELS.get(col, col), fontsize=7)
            if r == len(cols) - 1:
                ax.set_xlabel("step (0 = noisiest)", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.legend(loc="center right", fontsize=7, frameon=False, title="class", title_fontsize=7)
    fig.suptitle(f"Classes compared: attribution statistics vs step (mean over images × draws){note}", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.88, 0.96))
    _save(fig, out, dpi)


def faithfulness_vs_step(fa: pd.DataFrame, out, dpi=120) -> None:
    """Rows = deletion / insertion AUC, columns = views; a line per method (mean ± 95% CI over
    classes, images and draws) and the random-map baseline (black, dashed)."""
    fa, note = _excluded(fa)
    views = list(dict.fromkeys(fa["view"]))
    metrics = [m for m in ("deletion_auc", "insertion_auc") if m in set(fa["metric"])]
    methods = list(dict.fromkeys(fa["method"]))
    fig, axes = plt.subplots(
        len(metrics), len(views), figsize=(4.2 * len(views) + 1.2, 2.8 * len(metrics) + 0.6), sharex=True, squeeze=False
    )
    for r, metric in enumerate(metrics):
        for c, view in enumerate(views):
            ax = axes[r, c]
            sub = fa[(fa["metric"] == metric) & (fa["view"] == view)]
            for k, m in enumerate(methods):
                _band(
                    ax,
                    _mean_ci(sub[sub["method"] == m], ["step"], "value"),
                    f"C{k}",
                    label=m if (r, c) == (0, 0) else None,
                )
            base = sub.drop_duplicates(["class_name", "image_id", "draw", "step"])
            _band(
                ax,
                _mean_ci(base, ["step"], "baseline_value"),
                "k",
                ls="--",
                label="random map" if (r, c) == (0, 0) else None,
            )
            ax.set_ylim(-0.02, 1.02)
            if r == 0:
                ax.set_title(VIEW_LABEL.get(view, view), fontsize=9)
            if c == 0:
                ax.set_ylabel(METRIC_LABELS.get(metric, metric), fontsize=8)
            if r == len(metrics) - 1:
                ax.set_xlabel("step (0 = noisiest)")
    fig.legend(loc="center right", fontsize=8, frameon=False)
    fig.suptitle(
        "Faithfulness vs step (RISE deletion to 0 / insertion from blur, score = P(class)); "
        f"mean ± 95% CI over classes × images × draws{note}",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0, 0.86, 0.95))
    _save(fig, out, dpi)


def sanity_curve(sa: pd.DataFrame, out, dpi=120) -> None:
    """Spearman (|map|) and SSIM between original and randomised-model maps vs cascade depth."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    methods = list(dict.fromkeys(sa["method"]))
    layers = sa[sa["method"] == methods[0]].sort_values("cascade_index")["layer"].tolist() if methods else []
    for ax, col, label in ((axes[0], "spearman", "Spearman ρ of |map|"), (axes[1], "ssim", "SSIM of |map| / max")):
        for k, m in enumerate(methods):
            d = sa[sa["method"] == m].sort_values("cascade_index")
            x = np.r_[0, d["cascade_index"].to_numpy()]
            y = np.r_[1.0, d[col].to_numpy()]
            e = np.r_[0.0, d[f"{col}_std"].to_numpy()]
            ax.plot(x, y, marker="o", ms=3, color=f"C{k}", label=m)
            ax.fill_between(x, y - e, y + e, color=f"C{k}", alpha=0.15, lw=0)
        ax.axhline(0, color="grey", lw=0.6, ls=":")
        ax.set_xticks(range(len(layers) + 1))
        ax.set_xticklabels(["original"] + layers, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel(f"{label}\n(original vs randomised)")
        ax.set_xlabel("randomised cumulatively from the output down to layer")
        ax.set_ylim(-0.25, 1.05)
    axes[1].legend(fontsize=8, frameon=False)
    n = int(sa["n_maps"].max()) if len(sa) else 0
    fig.suptitle(
        f"Model-randomisation sanity check (Adebayo et al. 2018): mean ± sd over {n} maps; "
        "a method that depends on the model falls towards 0",
        fontsize=9,
    )
    fig.tight_layout()
    _save(fig, out, dpi)


def plot_maps(params: dict, inputs, outputs) -> None:
    """One map grid per maps file of ``inputs.maps`` → the matching path of ``outputs`` (rule
    ``attribution_plot_maps``), over the inputs the file's maps explain: its images, draws, steps
    and views of the class's file in ``inputs.trajectories`` (in ``params["class_names"]`` order)."""
    trajectories = dict(zip(params["class_names"], inputs.trajectories))
    n_images, dpi = params["attribution"]["plot_images"], params["plots"]["dpi"]
    with plot_style():
        for path, out in zip(inputs.maps, outputs):
            arrays, meta = load_arrays(path)
            n, k = arrays["maps"].shape[:2]
            traj, traj_meta = load_arrays(trajectories[meta["class_name"]])
            sel = select_trajectories(traj, traj_meta, arrays["steps"].tolist(), meta["views"], n, k, where=path)
            map_grid(arrays, meta, sel.x, out, n_images=n_images, dpi=dpi)


def plot(params: dict, inputs, outputs) -> None:
    """The statistics, class, faithfulness and sanity figures (rule ``attribution_plot``): one
    ``outputs.stats_<view>`` per view, ``outputs.classes``, ``outputs.faithfulness``,
    ``outputs.sanity``, from the aggregated tables and ``inputs.intervals``."""
    names = list(params["class_names"])
    dpi = params["plots"]["dpi"]
    st, fa, sa, iv = (pd.read_parquet(p) for p in (inputs.stats, inputs.faithfulness, inputs.sanity, inputs.intervals))
    with plot_style():
        for key, path in outputs.items():
            if key.startswith("stats_"):
                stats_vs_step(st, iv, names, key.removeprefix("stats_"), path, dpi=dpi)
        class_comparison(st, names, outputs.classes, dpi=dpi)
        faithfulness_vs_step(fa, outputs.faithfulness, dpi=dpi)
        sanity_curve(sa, outputs.sanity, dpi=dpi)
