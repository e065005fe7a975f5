"""Plots of the models stage."""

from __future__ import annotations

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from diffxai.io.arrays import load_arrays
from diffxai.plots.common import _imshow, _save, plot_style


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
        axes[i, 0].set_ylabel(
            f"{names[i]}\nacc {acc.get(names[i], float('nan')):.2f}", fontsize=7, rotation=0, ha="right", va="center"
        )
    fig.suptitle(
        f"Demo DDPM samples per class (share classified as their class: {acc.get('all', float('nan')):.2f})", fontsize=9
    )
    _save(fig, out, dpi)


def plot(params: dict, inputs, outputs) -> None:
    """``model_samples.png``: the evaluation's samples per class (rule ``models_plot``)."""
    import pandas as pd

    arrays, meta = load_arrays(inputs.samples)
    samples = arrays["samples"]
    grid = (samples, meta["class_names"]) if samples.numel() else None
    with plot_style():
        sample_grid(grid, pd.read_parquet(inputs.table), outputs[0], dpi=params["plots"]["dpi"])
