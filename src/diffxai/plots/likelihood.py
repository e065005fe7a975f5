"""Plots of the likelihood stage: P(true class) vs step with bands and critical intervals."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from diffxai.plots.common import VIEW_LABEL, _save, class_palette, plot_style


def likelihood_by_view(df: pd.DataFrame, intervals: pd.DataFrame, names: list[str], out, dpi=120, seed=0):
    """One panel per view: P(true class) vs step for every class, mean and 95% bootstrap CI over
    images × noise draws; each class's critical interval drawn as a bar under the curves."""
    views = list(dict.fromkeys(df["view"]))
    pal = class_palette(names)
    fig, axes = plt.subplots(1, len(views), figsize=(5.2 * len(views), 4.0), sharey=True, squeeze=False)
    n_img, n_draw = df.groupby("class_name")["image_id"].nunique().max(), df["draw"].nunique()
    for ax, view in zip(axes[0], views):
        sub = df[df["view"] == view]
        sns.lineplot(
            data=sub,
            x="step",
            y="prob",
            hue="class_name",
            hue_order=names,
            palette=pal,
            errorbar=("ci", 95),
            n_boot=500,
            seed=seed,
            ax=ax,
            legend=ax is axes[0, -1],
        )
        for j, name in enumerate(names):
            r = intervals[(intervals["class_name"] == name) & (intervals["view"] == view)]
            if len(r):
                y = -0.04 - 0.025 * j
                ax.plot(
                    [r["step_start"].iloc[0], r["step_end"].iloc[0]],
                    [y, y],
                    color=pal[name],
                    lw=3,
                    solid_capstyle="butt",
                )
        ax.axhline(0.5, color="grey", lw=0.6, ls=":")
        ax.set_ylim(-0.06 - 0.025 * len(names), 1.02)
        ax.set_title(VIEW_LABEL.get(view, view))
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("step (0 = pure noise → clean)")
        ax.set_ylabel("classifier P(true class)")
    if axes[0, -1].get_legend():
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1.01, 1), title="class")
    fig.suptitle(
        f"When does each class become recognisable? mean ± 95% CI over {n_img} images × {n_draw} draws;"
        " bars: critical interval (steepest rise)",
        fontsize=9,
    )
    _save(fig, out, dpi)


def likelihood_by_class(df: pd.DataFrame, intervals: pd.DataFrame, names: list[str], out, dpi=120, seed=0):
    """Small multiples: one row per class, one column per view; critical interval shaded and
    the first step with mean ≥ 0.5 dashed."""
    views = list(dict.fromkeys(df["view"]))
    fig, axes = plt.subplots(
        len(names),
        len(views),
        figsize=(4.2 * len(views), 1.7 * len(names) + 0.6),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    for i, name in enumerate(names):
        for j, view in enumerate(views):
            ax = axes[i, j]
            sub = df[(df["class_name"] == name) & (df["view"] == view)]
            sns.lineplot(data=sub, x="step", y="prob", errorbar=("ci", 95), n_boot=500, seed=seed, ax=ax, color="C0")
            r = intervals[(intervals["class_name"] == name) & (intervals["view"] == view)]
            if len(r):
                r = r.iloc[0]
                ax.axvspan(r["step_start"], r["step_end"], color="C3", alpha=0.18, lw=0)
                if r["step_half"] >= 0:
                    ax.axvline(r["step_half"], color="C3", ls="--", lw=0.8)
            ax.set_ylim(0, 1.02)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.set_ylabel(f"{name}\nP(class)" if j == 0 else "")
            ax.set_xlabel("step (0 = noisiest)" if i == len(names) - 1 else "")
            if i == 0:
                ax.set_title(VIEW_LABEL.get(view, view))
    fig.suptitle(
        "P(true class) vs step: mean ± 95% CI; shaded = critical interval, dashed = first step ≥ 0.5", fontsize=9
    )
    fig.tight_layout()
    _save(fig, out, dpi)


def plot(params: dict, inputs, outputs) -> None:
    """``likelihood_by_view.png`` and ``likelihood_by_class.png`` (rule ``likelihood_plot``)."""
    df, iv = pd.read_parquet(inputs.likelihood), pd.read_parquet(inputs.intervals)
    names = list(params["class_names"])
    dpi, seed = params["plots"]["dpi"], params["seed"]
    with plot_style():
        likelihood_by_view(df, iv, names, outputs.by_view, dpi=dpi, seed=seed)
        likelihood_by_class(df, iv, names, outputs.by_class, dpi=dpi, seed=seed)
