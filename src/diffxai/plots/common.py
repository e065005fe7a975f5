"""TODO docstring."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

VIEW_LABEL = {"x_t": "noisy input $x_t$", "x0_pred": r"denoiser's one-step $\hat{x}_0$"}


def _save(fig, path, dpi):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def to_display(img) -> np.ndarray:
    """``(C, H, W)`` tensor/array in [-1, 1] → ``(H, W)`` or ``(H, W, 3)`` in [0, 1]."""
    a = np.asarray(img, dtype=np.float32)
    a = np.clip((a + 1) / 2, 0, 1)
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def _imshow(ax, img):
    a = to_display(img)
    ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def class_palette(names: list[str]) -> dict:
    return dict(zip(names, sns.color_palette("tab10" if len(names) <= 10 else "husl", len(names))))


def likelihood_by_view(df: pd.DataFrame, intervals: pd.DataFrame, names: list[str], out, dpi=120, seed=0):
    """One panel per view: P(true class) vs step for every class, mean and 95% bootstrap CI over
    images × noise draws; each class's critical interval drawn as a bar under the curves."""
    views = list(dict.fromkeys(df["view"]))
    pal = class_palette(names)
    fig, axes = plt.subplots(1, len(views), figsize=(5.2 * len(views), 4.0), sharey=True, squeeze=False)
    n_img, n_draw = df.groupby("class_name")["image_id"].nunique().max(), df["draw"].nunique()
    for ax, view in zip(axes[0], views):
        sub = df[df["view"] == view]
        sns.lineplot(data=sub, x="step", y="prob", hue="class_name", hue_order=names, palette=pal,
                     errorbar=("ci", 95), n_boot=500, seed=seed, ax=ax, legend=ax is axes[0, -1])  # fmt: skip
        for j, name in enumerate(names):
            r = intervals[(intervals["class_name"] == name) & (intervals["view"] == view)]
            if len(r):
                y = -0.04 - 0.025 * j
                ax.plot([r["step_start"].iloc[0], r["step_end"].iloc[0]], [y, y], color=pal[name], lw=3, solid_capstyle="butt")
        ax.axhline(0.5, color="grey", lw=0.6, ls=":")
        ax.set_ylim(-0.06 - 0.025 * len(names), 1.02)
        ax.set_title(VIEW_LABEL.get(view, view))
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("step (0 = pure noise → clean)")
        ax.set_ylabel("classifier P(true class)")
    if axes[0, -1].get_legend():
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1.01, 1), title="class")
    fig.suptitle(f"When does each class become recognisable? mean ± 95% CI over {n_img} images × {n_draw} draws;"
                 " bars: critical interval (steepest rise)", fontsize=9)  # fmt: skip
    _save(fig, out, dpi)


def likelihood_by_class(df: pd.DataFrame, intervals: pd.DataFrame, names: list[str], out, dpi=120, seed=0):
    """Small multiples: one row per class, one column per view; critical interval shaded and
    the first step with mean ≥ 0.5 dashed."""
    views = list(dict.fromkeys(df["view"]))
    fig, axes = plt.subplots(len(names), len(views), figsize=(4.2 * len(views), 1.7 * len(names) + 0.6),
                             sharex=True, sharey=True, squeeze=False)  # fmt: skip
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
    fig.suptitle("P(true class) vs step: mean ± 95% CI; shaded = critical interval, dashed = first step ≥ 0.5", fontsize=9)
    fig.tight_layout()
    _save(fig, out, dpi)


def trajectory_strips(rows, out, n_cols=10, dpi=120):
    """For each class: x_t (and x̂0) of image 0, draw 0 at ``n_cols`` evenly spaced steps."""
    n_rows = sum(len(views) for _, views, _ in rows)
    s = len(rows[0][2])
    cols = np.unique(np.rint(np.linspace(0, s - 1, min(n_cols, s))).astype(int))
    fig, axes = plt.subplots(n_rows, len(cols), figsize=(1.0 * len(cols) + 1.6, 1.0 * n_rows + 0.6), squeeze=False)
    r = 0
    for name, views, timesteps in rows:
        for view, traj in views.items():
            for c, step in enumerate(cols):
                ax = axes[r, c]
                _imshow(ax, traj[step])
                if r == 0:
                    ax.set_title(f"step {step}\nt={timesteps[step]}", fontsize=7)
                if c == 0:
                    ax.set_ylabel(f"{name}\n{'x_t' if view == 'x_t' else 'x̂0'}", fontsize=7, rotation=0, ha="right", va="center")
            r += 1
    fig.suptitle("Trajectories (image 0, draw 0): noisy input x_t and the denoiser's x̂0, noisiest → clean", fontsize=9)
    _save(fig, out, dpi)


def sample_grid(grid, models: pd.DataFrame, out, dpi=120):
    """Class-conditional demo samples, one row per class, with the classifier's sample accuracy."""
    if grid is None:
        fig, ax = plt.subplots(figsize=(5, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, "unconditional diffusion model: no class-conditional samples", ha="center", va="center")
        _save(fig, out, dpi)
        return
    samples, names = grid
    n_cls, k = samples.shape[:2]
    k_show = min(k, 10)
    fig, axes = plt.subplots(n_cls, k_show, figsize=(0.8 * k_show + 1.6, 0.8 * n_cls + 0.6), squeeze=False)
    acc = models[models["metric"] == "sample_accuracy"].set_index("class_name")["value"]
    for i in range(n_cls):
        for j in range(k_show):
            _imshow(axes[i, j], samples[i, j])
        axes[i, 0].set_ylabel(f"{names[i]}\nacc {acc.get(names[i], float('nan')):.2f}", fontsize=7, rotation=0,
                              ha="right", va="center")  # fmt: skip
    fig.suptitle(f"Demo DDPM samples per class (share classified as their class: {acc.get('all', float('nan')):.2f})",
                 fontsize=9)  # fmt: skip
    _save(fig, out, dpi)
