"""Shared plotting helpers and the house style, applied in a context (never at import).

Every plot action runs inside :func:`plot_style` (matplotlib's Agg backend, seaborn "ticks" on
the "paper" context); leaving the context restores matplotlib's settings, so importing a plots
module changes nothing for the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402


@contextmanager
def plot_style() -> Iterator[None]:
    """The house style for the duration of a ``with`` block (rcParams restored afterwards)."""
    plt.switch_backend("agg")
    with matplotlib.rc_context():
        sns.set_theme(style="ticks", context="paper")
        yield


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
