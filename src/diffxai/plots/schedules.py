"""Plots of the schedules stage (rule ``schedules_plot``, :func:`plot`): the same seeds under each
schedule, the class probability of x̂0 along generation, between-schedule distances per band, and
the commitment curves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from diffxai.io.arrays import load_arrays
from diffxai.plots.common import _imshow, _save, plot_style


def _schedule_label(name: str, kind: str, gamma) -> str:
    if kind == "uniform" or gamma is None or (isinstance(gamma, float) and np.isnan(gamma)):
        return f"{name} ({kind})" if name != kind else name
    return f"{name} ({kind}, γ={gamma:g})" if name != kind else f"{name} (γ={gamma:g})"


def _palette(names: list[str]) -> dict:
    return dict(zip(names, sns.color_palette("colorblind", len(names))))


def schedule_grid(samples: dict, final: pd.DataFrame, out, n_seeds: int = 4, dpi: int = 120, max_classes: int = 10):
    """Final samples: one row per class, columns grouped by seed, one image per schedule.

    Args:
        samples: schedule name → ``(samples (K, N, C, H, W), metadata)`` from the same seeds.
        final: ``schedule_sampling`` rows (for the classifier's P(class) under each image).
    """
    names = list(samples)
    first, meta = samples[names[0]]
    classes = meta["class_names"][:max_classes]
    k, n = len(classes), min(n_seeds, first.shape[1])
    m = len(names)
    prob = final.set_index(["schedule", "class_name", "seed"])[["prob", "correct"]]
    fig, axes = plt.subplots(k, n * m, figsize=(0.75 * n * m + 1.4, 0.85 * k + 1.0), squeeze=False)
    for i, cls in enumerate(classes):
        for s in range(n):
            for j, name in enumerate(names):
                ax = axes[i, s * m + j]
                _imshow(ax, samples[name][0][i, s])
                r = prob.loc[(name, cls, s)]
                ax.set_xlabel(
                    f"{r['prob']:.2f}", fontsize=6, labelpad=1, color="tab:green" if r["correct"] else "tab:red"
                )
                if i == 0:
                    ax.set_title(
                        f"seed {s}\n{name}" if j == 0 else f"\n{name}", fontsize=6, loc="left" if j == 0 else "center"
                    )
                if s > 0 and j == 0:
                    ax.spines["left"].set_linewidth(2.5)
        axes[i, 0].set_ylabel(cls, fontsize=7, rotation=0, ha="right", va="center")
    labels = ", ".join(_schedule_label(nm, samples[nm][1]["kind"], samples[nm][1]["gamma"]) for nm in names)
    fig.suptitle(
        f"Same seed under each schedule: {labels}\nnumber under each image: classifier P(class) "
        "(green = top-1 is the class)",
        fontsize=8,
    )
    height = fig.get_size_inches()[1]
    fig.subplots_adjust(wspace=0.06, hspace=0.35, top=1 - 0.75 / height, bottom=0.25 / height)
    _save(fig, out, dpi)


def schedule_probability(steps: pd.DataFrame, out, dpi: int = 120, seed: int = 0):
    """Three panels: the schedules' timesteps per step; P(class) of the denoiser's x̂0 vs step;
    the same vs timestep t (mean and 95% bootstrap CI over classes × seeds)."""
    order = list(dict.fromkeys(steps["schedule"]))
    pal = _palette(order)
    info = steps.drop_duplicates("schedule").set_index("schedule")
    label = {s: _schedule_label(s, info.loc[s, "kind"], info.loc[s, "gamma"]) for s in order}
    df = steps.assign(schedule_label=steps["schedule"].map(label))
    hue_order = [label[s] for s in order]
    lpal = {label[s]: pal[s] for s in order}
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    ts = df.drop_duplicates(["schedule", "step"])
    sns.lineplot(
        data=ts,
        x="step",
        y="timestep",
        hue="schedule_label",
        hue_order=hue_order,
        palette=lpal,
        marker="o",
        markersize=3,
        ax=axes[0],
        legend=False,
    )
    axes[0].set_title("where each schedule spends its steps")
    axes[0].set_xlabel("sampling step (0 = pure noise)")
    axes[0].set_ylabel("timestep t")
    for ax, x in ((axes[1], "step"), (axes[2], "timestep")):
        sns.lineplot(
            data=df,
            x=x,
            y="prob",
            hue="schedule_label",
            hue_order=hue_order,
            palette=lpal,
            errorbar=("ci", 95),
            n_boot=300,
            seed=seed,
            marker="o",
            markersize=3,
            ax=ax,
            legend=ax is axes[2],
        )
        ax.set_ylim(-0.02, 1.02)
        ax.axhline(0.5, color="grey", lw=0.6, ls=":")
        ax.set_ylabel("classifier P(class) of x̂0")
    axes[1].set_xlabel("sampling step (0 = pure noise)")
    axes[1].set_title("when is the class decided? (by step)")
    axes[2].set_xlabel("timestep t (noisy → clean)")
    axes[2].invert_xaxis()
    axes[2].set_title("… and by noise level")
    sns.move_legend(axes[2], "upper left", bbox_to_anchor=(1.01, 1), title="schedule", fontsize=7)
    n_cls, n_seed = steps["class_name"].nunique(), steps["seed"].nunique()
    fig.suptitle(
        f"Class probability of the denoiser's x̂0 along generation, mean ± 95% CI over {n_cls} classes × {n_seed} seeds",
        fontsize=9,
    )
    fig.tight_layout()
    _save(fig, out, dpi)


def schedule_distances(dist: pd.DataFrame, out, sigma: float, dpi: int = 120, seed: int = 0):
    """SSIM between schedules for the same seed, coarse (low-pass) vs fine (high-pass) band, and
    the share of seeds whose final samples get the same top-1 class."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [2, 1]})
    if not len(dist):
        for ax in axes:
            ax.axis("off")
        axes[0].text(0.5, 0.5, "only one schedule: nothing to compare", ha="center", va="center")
        _save(fig, out, dpi)
        return
    d = dist.assign(pair=dist["schedule_a"] + " vs " + dist["schedule_b"])
    long = d.melt(id_vars=["pair"], value_vars=["ssim_low", "ssim_high"], var_name="band", value_name="SSIM")
    long["dissimilarity"] = 1 - long["SSIM"]
    long["band"] = long["band"].map(
        {"ssim_low": f"coarse: low-pass (σ={sigma:g} px)", "ssim_high": "fine: high-pass residual"}
    )
    sns.barplot(
        data=long,
        x="pair",
        y="dissimilarity",
        hue="band",
        errorbar=("ci", 95),
        n_boot=300,
        seed=seed,
        ax=axes[0],
        palette=["tab:blue", "tab:orange"],
    )
    axes[0].set_ylim(0, None)
    axes[0].set_xlabel("")
    axes[0].set_ylabel("1 − SSIM between the two final samples\n(0 = identical)")
    axes[0].set_title("same seed, two schedules: what changes, layout or detail?")
    axes[0].legend(fontsize=7, loc="upper left")
    if "same_top1" in d:
        share = d.groupby("pair", sort=False)["same_top1"].mean().reset_index()
        sns.barplot(data=share, x="pair", y="same_top1", color="tab:gray", ax=axes[1])
        axes[1].set_ylim(0, 1)
        axes[1].set_ylabel("share of seeds with the same top-1 class")
        axes[1].set_xlabel("")
        axes[1].set_title("same class decided?")
    for ax in axes:
        ax.tick_params(axis="x", labelsize=7)
    n = d.groupby("pair").size().iloc[0]
    fig.suptitle(
        f"Distances between schedules for the same seed (mean ± 95% CI over {n} class × seed pairs)", fontsize=9
    )
    fig.tight_layout()
    _save(fig, out, dpi)


def commitment_curves(df: pd.DataFrame, summary: pd.DataFrame, out, dpi: int = 120):
    """One panel per class pair: share of final samples classified as class a when the label
    switches a → b at step k, one line per schedule; dotted: the step from which a keeps winning."""
    if not len(df):
        fig, ax = plt.subplots(figsize=(6, 1.2))
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            "no commitment experiment: it needs a class-conditional model and class pairs",
            ha="center",
            va="center",
            fontsize=8,
        )
        _save(fig, out, dpi)
        return
    pairs = list(dict.fromkeys(df["pair"]))
    order = list(dict.fromkeys(df["schedule"]))
    pal = _palette(order)
    fig, axes = plt.subplots(2, len(pairs), figsize=(4.8 * len(pairs) + 0.5, 7.0), squeeze=False, sharey=True)
    for col, pair in enumerate(pairs):
        sub = summary[summary["pair"] == pair]
        a, b = sub["class_a"].iloc[0], sub["class_b"].iloc[0]
        top, bottom = axes[0, col], axes[1, col]
        for name in order:
            s = sub[sub["schedule"] == name].sort_values("switch_step")
            if not len(s):
                continue
            k, t, last = int(s["commit_step"].iloc[0]), int(s["commit_timestep"].iloc[0]), int(s["switch_step"].max())
            if k < 0:
                what = "a never keeps winning"
            elif k == last:
                what = f"a wins only without a switch (k = S = {k})"
            else:
                what = f"commits at step {k} (t={t})"
            top.plot(s["switch_step"], s["share_a"], marker="o", ms=3, color=pal[name], label=f"{name}: {what}")
            top.plot(s["switch_step"], s["share_b"], ls="--", lw=0.8, color=pal[name], alpha=0.6)
            if 0 <= k < last:
                top.axvline(k, color=pal[name], ls=":", lw=1)
                bottom.axvline(t, color=pal[name], ls=":", lw=1)
            sw = s[s["switch_timestep"] >= 0]
            bottom.plot(sw["switch_timestep"], sw["share_a"], marker="o", ms=3, color=pal[name], label=name)
            bottom.plot(sw["switch_timestep"], sw["share_b"], ls="--", lw=0.8, color=pal[name], alpha=0.6)
        for ax in (top, bottom):
            ax.axhline(0.5, color="grey", lw=0.6, ls=":")
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel(f"share of final samples\nclassified as {a} (a)")
        top.set_title(f"{a} → {b}: label {a} before the switch, {b} from it on", fontsize=8)
        top.set_xlabel("switch step k (k = S: no switch)")
        top.legend(fontsize=6, loc="center left")
        bottom.set_xlabel("switch timestep t (first timestep run with label b)")
        bottom.invert_xaxis()
        bottom.set_title("the same by noise level", fontsize=8)
    n = df["seed"].nunique()
    fig.suptitle(
        f"Commitment: when does the first label keep winning? solid = ends as a, dashed = ends as b "
        f"({n} seeds per switch step)",
        fontsize=9,
    )
    fig.tight_layout()
    _save(fig, out, dpi)


def plot(params: dict, inputs, outputs) -> None:
    """``schedule_grid.png``, ``schedule_class_prob.png``, ``schedule_distances.png`` and
    ``commitment.png`` from the stage's tables and sample arrays."""
    dpi, seed, sec = params["plots"]["dpi"], params["seed"], params["schedules"]
    samples = {}
    for path in inputs.samples:
        arr, meta = load_arrays(path)
        samples[meta["schedule"]] = (arr["samples"], meta)
    final, steps, dist = (pd.read_parquet(p) for p in (inputs.sampling, inputs.steps, inputs.distances))
    commitment, summary = pd.read_parquet(inputs.commitment), pd.read_parquet(inputs.commitment_summary)
    with plot_style():
        schedule_grid(samples, final, outputs.grid, n_seeds=sec["plot_seeds"], dpi=dpi)
        schedule_probability(steps, outputs.prob, dpi=dpi, seed=seed)
        schedule_distances(dist, outputs.distances, sigma=sec["lowpass_sigma"], dpi=dpi, seed=seed)
        commitment_curves(commitment, summary, outputs.commitment, dpi=dpi)
