"""Plots of the components stage (rule ``components_plot``, :func:`plot`): attribution mass per
tensor, classifier accuracy before / after the selected edits, the counterfactual scatter and the
before / after sample grids."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from diffxai.io.arrays import load_arrays
from diffxai.plots.common import _imshow, _save, plot_style

EDITS = ("erase", "amplify")
EDIT_COLOURS = {"none": "0.6", "erase": "C3", "amplify": "C2"}


def _short(name: str, width: int = 38) -> str:
    name = name.replace(".weight", "").replace("down_blocks", "down").replace("up_blocks", "up")
    name = name.replace("resnets", "res").replace("mid_block", "mid").replace("attentions", "attn")
    name = name.replace("transformer_blocks", "tb")
    return name if len(name) <= width else "…" + name[-width + 1 :]


def attribution_mass(df: pd.DataFrame, out, dpi=120):
    """Per concept and objective: positive (right) and negative (left) attribution mass of every tensor."""
    concepts = list(dict.fromkeys(df["concept"]))
    objectives = list(dict.fromkeys(df["objective"]))
    params = list(dict.fromkeys(df["parameter"]))
    fig, axes = plt.subplots(
        len(concepts),
        len(objectives),
        squeeze=False,
        sharey=True,
        figsize=(4.6 * len(objectives) + 1.6, 0.22 * len(params) * len(concepts) + 1.4),
    )
    y = np.arange(len(params))
    for i, c in enumerate(concepts):
        for j, o in enumerate(objectives):
            ax = axes[i, j]
            sub = df[(df["concept"] == c) & (df["objective"] == o)].set_index("parameter").reindex(params)
            scale = max(sub["positive_mass"].max(), -sub["negative_mass"].min(), 1e-30)
            ax.barh(y, sub["positive_mass"] / scale, color="C3", label="positive (w·∂J/∂w > 0)")
            ax.barh(y, sub["negative_mass"] / scale, color="C0", label="negative")
            ax.axvline(0, color="k", lw=0.6)
            ax.set_yticks(y)
            ax.set_yticklabels([_short(p) for p in params], fontsize=6)
            ax.set_xlim(-1.05, 1.05)
            ax.set_xlabel(f"attribution mass (÷ {scale:.2g}, units of J)", fontsize=7)
            ax.set_title(f"{c}: {o} objective J_{'e' if o == 'erase' else 'a'}", fontsize=8)
    axes[0, 0].invert_yaxis()  # shared y: invert once, U-Net order top to bottom
    axes[0, -1].legend(fontsize=6, loc="lower right")
    fig.suptitle(
        "Where the concept lives: summed attribution a = w·∂J/∂w per parameter tensor (U-Net order)", fontsize=9
    )
    fig.tight_layout()
    _save(fig, out, dpi)


def editing_bars(df: pd.DataFrame, names: list[str], out, dpi=120):
    """One panel per concept: classifier accuracy on samples of every class, unedited vs the selected
    erase and amplify edits; the concept's own class is marked."""
    sel = df[df["selected"]]
    concepts = list(dict.fromkeys(df["concept"]))
    fig, axes = plt.subplots(
        len(concepts), 1, squeeze=False, figsize=(max(6, 0.7 * len(names) + 2), 2.6 * len(concepts) + 0.6)
    )
    for i, c in enumerate(concepts):
        ax = axes[i, 0]
        sub = sel[sel["concept"] == c]
        labels = {}
        for e in ("none", "erase", "amplify"):
            r = sub[sub["edit"] == e]
            if len(r):
                r0 = r.iloc[0]
                what = (
                    "unedited"
                    if e == "none"
                    else (
                        f"{e}: {r0['rule']} "
                        + (f"ρ={r0['rho']:g}" if r0["rule"] == "per_row" else f"K={int(r0['k'])}")
                        + f" ({int(r0['n_edited'])} weights)"
                    )
                )
                labels[e] = what
        plot_df = sub[sub["edit"].isin(labels)]
        plot_df = plot_df.assign(setting=plot_df["edit"].map(labels))
        sns.barplot(
            data=plot_df,
            x="eval_class",
            y="accuracy",
            hue="setting",
            order=names,
            hue_order=[labels[e] for e in ("none", "erase", "amplify") if e in labels],
            palette=[EDIT_COLOURS[e] for e in ("none", "erase", "amplify") if e in labels],
            ax=ax,
        )
        if c in names:
            k = names.index(c)
            ax.axvspan(k - 0.5, k + 0.5, color="gold", alpha=0.25, lw=0)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("share classified\nas the class")
        ax.set_xlabel("generated class (classifier's verdict on fixed-seed samples)" if i == len(concepts) - 1 else "")
        ax.set_title(f"concept {c} (shaded): erase should lower it, amplify raise it, other classes stay", fontsize=8)
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), fontsize=7, title=None)
        ax.tick_params(axis="x", labelsize=7, rotation=30)
    fig.suptitle("Concept editing by zeroing attributed weights (selected setting of the sweep)", fontsize=9)
    fig.tight_layout()
    _save(fig, out, dpi)


def counterfactual_scatter(df: pd.DataFrame, out, dpi=120):
    """Predicted (−a_i) vs actual change of J when one weight is zeroed, per concept and objective."""
    if df.empty:
        fig, ax = plt.subplots(figsize=(5, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no counterfactual components configured", ha="center", va="center")
        _save(fig, out, dpi)
        return
    keys = list(dict.fromkeys(zip(df["concept"], df["objective"])))
    fig, axes = plt.subplots(1, len(keys), squeeze=False, figsize=(3.6 * len(keys), 3.6))
    for ax, (c, o) in zip(axes[0], keys):
        sub = df[(df["concept"] == c) & (df["objective"] == o)]
        for grp, marker in (("random", "o"), ("top", "^")):
            s = sub[sub["group"] == grp]
            ax.scatter(
                s["predicted_delta"],
                s["actual_delta"],
                s=14,
                marker=marker,
                alpha=0.8,
                label=f"{grp} weights ({len(s)})",
            )
        lo = float(np.nanmin([sub["predicted_delta"].min(), sub["actual_delta"].min()]))
        hi = float(np.nanmax([sub["predicted_delta"].max(), sub["actual_delta"].max()]))
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.6, ls="--", label="y = x")
        ax.set_xscale("symlog", linthresh=max(1e-6, 1e-2 * max(abs(lo), abs(hi))))
        ax.set_yscale("symlog", linthresh=max(1e-6, 1e-2 * max(abs(lo), abs(hi))))
        ax.set_xlabel("predicted ΔJ = −w·∂J/∂w")
        ax.set_ylabel("actual ΔJ when the weight is zeroed")
        title = f"{c}, {o}: all r={sub['pearson'].iloc[0]:.2f}, ρ={sub['spearman'].iloc[0]:.2f}"
        if "pearson_random" in sub:
            title += f"\nrandom only r={sub['pearson_random'].iloc[0]:.2f}, ρ={sub['spearman_random'].iloc[0]:.2f}"
        ax.set_title(title, fontsize=7)
        ax.legend(fontsize=6)
    fig.suptitle(
        f"Is the linear estimate faithful? one weight zeroed at a time ({int(df['n_items'].iloc[0])} items of J;"
        " r = Pearson, ρ = Spearman)",
        fontsize=9,
    )
    fig.tight_layout()
    _save(fig, out, dpi)


def sample_grids(base, per_concept, names: list[str], out, dpi=120):
    """For each concept, rows = classes, column blocks = unedited / erased / amplified samples (same seeds).

    Args:
        base: uint8 ``(n_classes, n, C, H, W)`` unedited samples.
        per_concept: ``[(concept, {"erase": uint8 array, "amplify": ...}), ...]`` of the selected edits.
    """
    n_cls, n = base.shape[:2]
    blocks_per = 1 + max((len(d) for _, d in per_concept), default=0)
    n_cols = len(per_concept) * blocks_per * n + max(0, len(per_concept) * blocks_per - 1)
    fig, axes = plt.subplots(n_cls, max(1, n_cols), squeeze=False, figsize=(0.55 * n_cols + 1.4, 0.55 * n_cls + 1.0))
    for ax in axes.flat:
        ax.axis("off")
    col = 0
    for concept, edits in per_concept:
        for e in ["none", "erase", "amplify"]:
            arr = base if e == "none" else edits.get(e)
            if arr is None:
                continue
            imgs = arr.float() / 127.5 - 1
            for i in range(n_cls):
                for j in range(n):
                    ax = axes[i, col + j]
                    ax.axis("on")
                    _imshow(ax, imgs[i, j])
                    if names[i] == concept:
                        for s in ax.spines.values():
                            s.set_edgecolor("gold")
                            s.set_linewidth(2)
                    if col + j == 0:
                        ax.set_ylabel(names[i], fontsize=6, rotation=0, ha="right", va="center")
            axes[0, col].set_title(f"{concept}: {'unedited' if e == 'none' else e}", fontsize=6, loc="left")
            col += n + 1
    fig.suptitle("Samples before and after editing (same seeds; gold frame = the edited concept's class)", fontsize=9)
    _save(fig, out, dpi)


def plot(params: dict, inputs, outputs) -> None:
    """``components_attribution_mass.png``, ``components_editing.png``, ``components_counterfactual.png``
    and ``components_samples.png`` from the aggregate tables and the sample grids."""
    dpi, names = params["plots"]["dpi"], list(params["class_names"])
    base, _ = load_arrays(inputs.baseline_samples)
    per_concept = []
    for path in inputs.arrays:
        arrays, meta = load_arrays(path)
        per_concept.append((meta["concept"], {e: arrays[f"samples/{e}"] for e in EDITS if f"samples/{e}" in arrays}))
    with plot_style():
        attribution_mass(pd.read_parquet(inputs.attribution), outputs.mass, dpi=dpi)
        editing_bars(pd.read_parquet(inputs.editing), names, outputs.editing, dpi=dpi)
        counterfactual_scatter(pd.read_parquet(inputs.counterfactual), outputs.scatter, dpi=dpi)
        sample_grids(base["none"], per_concept, names, outputs.grid, dpi=dpi)
