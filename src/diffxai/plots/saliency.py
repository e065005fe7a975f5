"""Plots of the saliency stage (rule ``saliency_plot``, :func:`plot`): overlays over steps, the
DF-CAM per-layer grid, deletion / insertion AUC vs step.

Inputs are the per-job map files (:func:`~diffxai.io.arrays.load_arrays` pairs: arrays +
metadata) and the aggregated ``saliency_stats.parquet``. Maps live at the denoiser's input
resolution (latent for Stable Diffusion) and are bilinearly resized to the displayed image.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F

from diffxai.io.arrays import load_arrays
from diffxai.plots.common import _save, plot_style, to_display

METHOD_LABEL = {"dfrise": "DF-RISE", "dfcam": "DF-CAM"}
HEAT = "jet"


def _resize(m: torch.Tensor, size) -> np.ndarray:
    """A map ``(h, w)`` bilinearly resized to ``size`` = ``(H, W)``, as a numpy array."""
    m = m.float()
    if tuple(m.shape[-2:]) != tuple(size):
        m = F.interpolate(m[None, None], size=tuple(size), mode="bilinear", align_corners=False)[0, 0]
    return m.numpy()


def _overlay(ax, img, m, alpha=0.5):
    """Image ``img`` ``(C, H, W)`` in [-1, 1] with map ``m`` in [0, 1] over it as a heat map."""
    a = to_display(img)
    ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.imshow(_resize(m, a.shape[:2]), cmap=HEAT, vmin=0, vmax=1, alpha=alpha, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])


def _colorbar(fig, right: float = 0.86):
    """One saliency colour bar at the figure's right edge (figure fraction ``right``)."""
    fig.subplots_adjust(right=right)
    cax = fig.add_axes([right + 0.02, 0.2, 0.015, 0.6])
    cb = fig.colorbar(plt.cm.ScalarMappable(cmap=HEAT, norm=plt.Normalize(0, 1)), cax=cax)
    cb.set_label("saliency (min–max normalised per panel)", fontsize=7)
    cb.ax.tick_params(labelsize=6)


def _label(meta: dict) -> str:
    """A row label: the prompt (shortened) or the class name."""
    if meta.get("prompt"):
        p = meta["prompt"]
        return p if len(p) <= 28 else p[:26] + "…"
    return meta["class_name"]


def _placeholder(out, text, dpi):
    """A small figure saying ``text`` (when there is nothing to draw)."""
    fig, ax = plt.subplots(figsize=(5, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    _save(fig, out, dpi)


def overlays(loaded: list[tuple[dict, dict]], out, dpi=120, sample: int = 0):
    """One row per (class or prompt, method): the saliency map of sample ``sample`` over the
    explained steps, on that step's x̂0 (what the denoiser predicts there), then the final image."""
    if not loaded:
        _placeholder(out, "no saliency maps", dpi)
        return
    order = sorted(loaded, key=lambda x: (x[1]["class_name"], x[1]["method"] != "dfrise"))
    k = order[0][0]["maps"].shape[1]
    fig, axes = plt.subplots(len(order), k + 1, figsize=(1.25 * (k + 1) + 1.6, 1.3 * len(order) + 0.9), squeeze=False)
    for r, (arr, meta) in enumerate(order):
        steps, ts = arr["steps"].tolist(), arr["timesteps"].tolist()
        for j in range(k):
            ax = axes[r, j]
            _overlay(ax, arr["display"][sample, j], arr["maps"][sample, j])
            if r == 0:
                ax.set_title(f"step {steps[j]}\nt={ts[j]}", fontsize=7)
        axes[r, 0].set_ylabel(
            f"{_label(meta)}\n{METHOD_LABEL.get(meta['method'], meta['method'])}",
            fontsize=7,
            rotation=0,
            ha="right",
            va="center",
        )
        ax = axes[r, k]
        a = to_display(arr["final"][sample])
        ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if r == 0:
            ax.set_title("generated\nimage", fontsize=7)
    _colorbar(fig)
    fig.suptitle(
        f"Which input regions does the denoiser use at each sampling step? (sample {sample}; "
        "heat map over the step's x̂0 prediction; step 0 = pure noise)",
        fontsize=8,
    )
    _save(fig, out, dpi)


def _short(name: str) -> str:
    """A short column title of a U-Net block name (``up_blocks.1.resnets.0`` → ``u1.res0``)."""
    kinds = {"resnets": "res", "attentions": "attn", "downsamplers": "down", "upsamplers": "up"}
    part = name.split(".")
    if part[0] == "mid_block" and len(part) == 3:
        return f"mid.{kinds.get(part[1], part[1])}{part[2]}"
    if part[0] in ("down_blocks", "up_blocks") and len(part) == 4:
        return f"{part[0][0]}{part[1]}.{kinds.get(part[2], part[2])}{part[3]}"
    return name


def cam_layers(loaded: list[tuple[dict, dict]], out, dpi=120, sample: int = 0):
    """DF-CAM per U-Net block: one row per (class or prompt, explained step) for sample
    ``sample``, one column per hooked layer in forward order, last column their normalised sum."""
    if not loaded:
        _placeholder(out, "DF-CAM not run (saliency.methods)", dpi)
        return
    rows = [
        (arr, meta, j)
        for arr, meta in sorted(loaded, key=lambda x: x[1]["class_name"])
        for j in range(arr["maps"].shape[1])
    ]
    layers = rows[0][1]["layers"]
    n_col = len(layers) + 1
    fig, axes = plt.subplots(len(rows), n_col, figsize=(0.75 * n_col + 1.6, 0.8 * len(rows) + 1.2), squeeze=False)
    for r, (arr, meta, j) in enumerate(rows):
        img = arr["display"][sample, j]
        for li in range(len(layers)):
            _overlay(axes[r, li], img, arr["layer_maps"][sample, j, li], alpha=0.6)
            if r == 0:
                axes[r, li].set_title(_short(layers[li]), fontsize=6, rotation=60, ha="left", va="bottom")
        _overlay(axes[r, -1], img, arr["maps"][sample, j], alpha=0.6)
        if r == 0:
            axes[r, -1].set_title("DF-CAM\n(sum)", fontsize=6, fontweight="bold")
        axes[r, 0].set_ylabel(
            f"{_label(meta)}\nstep {int(arr['steps'][j])} (t={int(arr['timesteps'][j])})",
            fontsize=6,
            rotation=0,
            ha="right",
            va="center",
        )
    _colorbar(fig, right=0.9)
    fig.suptitle(
        "DF-CAM per U-Net block (Grad-CAM of Σε̂, CFG-combined) in forward order: d = down, mid, u = up; "
        f"last column = their normalised sum; sample {sample}",
        fontsize=8,
        y=1.0 + 0.35 / (0.8 * len(rows) + 1.2),
    )
    _save(fig, out, dpi)


def auc_vs_step(df: pd.DataFrame, out, dpi=120, seed: int = 0):
    """Deletion and insertion AUC vs step for each method (mean ± 95% CI over classes × samples)
    with the random-map baseline (dashed). Lower deletion / higher insertion = more faithful."""
    d = df[df["layer"] == "all"]
    if d.empty:
        _placeholder(out, "no saliency rows", dpi)
        return
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), sharex=True)
    methods = [m for m in ("dfrise", "dfcam") if m in set(d["method"])]
    pal = dict(zip(methods, sns.color_palette("tab10", len(methods))))
    score = {"ssim": "SSIM", "neg_mse": "−MSE"}.get(d["eval_score"].iloc[0], "score")
    target = d["eval_target"].iloc[0]
    for ax, game in zip(axes, ("deletion", "insertion")):
        long = d.assign(label=d["method"].map(METHOD_LABEL))
        sns.lineplot(
            data=long,
            x="step",
            y=f"{game}_auc",
            hue="label",
            hue_order=[METHOD_LABEL[m] for m in methods],
            palette=[pal[m] for m in methods],
            marker="o",
            errorbar=("ci", 95),
            n_boot=500,
            seed=seed,
            ax=ax,
        )
        base = d.groupby("step")[f"random_{game}_auc"].mean()
        ax.plot(base.index, base.values, ls="--", color="grey", marker="x", label="random map")
        ax.set_xlabel("sampling step (0 = pure noise → clean)")
        what = f"{score} of next-step output" if target == "next" else f"{score}, {target}"
        ax.set_ylabel(f"{game} AUC ({what})")
        better = "lower" if game == "deletion" else "higher"
        ax.set_title(f"{game.capitalize()}: {better} = more faithful", fontsize=9)
        ax.legend(fontsize=7, title=None)
    n_cls, n_s = d["class_name"].nunique(), d["sample"].nunique()
    fig.suptitle(
        f"Saliency faithfulness in the denoiser's input space: mean ± 95% CI over {n_cls} classes × {n_s} samples",
        fontsize=9,
    )
    fig.tight_layout()
    _save(fig, out, dpi)


def plot(params: dict, inputs, outputs) -> None:
    """``saliency_overlays.png``, ``saliency_dfcam_layers.png`` and ``saliency_auc.png`` from the
    aggregated table ``inputs.table`` and the per-job maps ``inputs.maps``."""
    df = pd.read_parquet(inputs.table)
    loaded = [load_arrays(p) for p in inputs.maps]
    dpi = params["plots"]["dpi"]
    with plot_style():
        overlays(loaded, outputs.overlays, dpi=dpi)
        cam_layers([x for x in loaded if x[1]["method"] == "dfcam"], outputs.layers, dpi=dpi)
        auc_vs_step(df, outputs.auc, dpi=dpi, seed=params["seed"])
