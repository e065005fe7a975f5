"""A selection of one class's trajectory file (``trajectories/{cls}.safetensors``).

The file (written by the trajectories stage) holds one tensor per view, ``x_t`` / ``x0_pred``
``(N images, K draws, S steps, C, H, W)`` in [-1, 1], ``timesteps`` ``(S,)``, optionally ``mask``
``(N, H, W)`` (the clean image's strokes), and metadata ``views``, ``image_ids``, ``class_name``,
``class_index``. The attribution stage explains a selection of it, and its map grids draw the
same selection again, so both read it through :func:`select_trajectories`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffxai.core.errors import DiffxaiError


@dataclass(frozen=True)
class TrajectorySelection:
    """The selected part of a trajectory file.

    ``x``: ``(N', K', S', V, C, H, W)`` images, draws, steps, views; ``mask``: ``(N', H, W)`` bool
    or ``None``; ``image_ids`` (N'), ``draws`` (K', draw indices), ``steps`` (S', step indices,
    0 = noisiest), ``timesteps`` ``(S',)`` int array, ``views`` (V)."""

    x: torch.Tensor
    mask: torch.Tensor | None
    image_ids: list[str]
    draws: list[int]
    steps: list[int]
    timesteps: np.ndarray
    views: list[str]


def select_trajectories(
    arrays: dict[str, torch.Tensor],
    meta: dict,
    steps: list[int],
    views: list[str],
    n_images: int | None = None,
    n_draws: int | None = None,
    where: str = "config.attribution.views",
) -> TrajectorySelection:
    """The first ``n_images`` images and ``n_draws`` draws (``None``: all) at step indices ``steps``
    (``0 <= s < S``) of ``views``, from a trajectory file's ``(arrays, meta)`` (``load_arrays``).

    A view the file does not hold is a one-line :class:`DiffxaiError` at ``where``."""
    for v in views:
        if v not in meta["views"]:
            raise DiffxaiError(where, f"view {v!r} is not in the trajectories (they have {meta['views']})")
    n, k = arrays[views[0]].shape[:2]
    ni, nk = min(n, n_images or n), min(k, n_draws or k)
    idx = torch.as_tensor(steps, dtype=torch.long)
    x = torch.stack([arrays[v][:ni, :nk].index_select(2, idx) for v in views], dim=3)
    mask = arrays["mask"][:ni].bool() if "mask" in arrays else None
    return TrajectorySelection(
        x=x,
        mask=mask,
        image_ids=list(meta["image_ids"][:ni]),
        draws=list(range(nk)),
        steps=list(steps),
        timesteps=arrays["timesteps"].numpy()[steps],
        views=list(views),
    )
