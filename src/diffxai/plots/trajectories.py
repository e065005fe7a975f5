"""Plots of the trajectories stage."""

from __future__ import annotations

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diffxai.io.arrays import load_arrays
from diffxai.plots.common import _imshow, _save, plot_style


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
                    ax.set_ylabel(
                        f"{name}\n{'x_t' if view == 'x_t' else 'x̂0'}", fontsize=7, rotation=0, ha="right", va="center"
                    )
            r += 1
    fig.suptitle("Trajectories (image 0, draw 0): noisy input x_t and the denoiser's x̂0, noisiest → clean", fontsize=9)
    _save(fig, out, dpi)


def plot(params: dict, inputs, outputs) -> None:
    """``trajectories.png``: x_t (and x̂0) of image 0, draw 0 of every class (rule ``trajectories_plot``)."""
    rows = []
    for p in inputs:
        arrays, meta = load_arrays(p)
        rows.append((meta["class_name"], {v: arrays[v][0, 0] for v in meta["views"]}, arrays["timesteps"].numpy()))
    with plot_style():
        trajectory_strips(rows, outputs[0], n_cols=params["plots"]["strip_steps"], dpi=params["plots"]["dpi"])
