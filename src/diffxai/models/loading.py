"""Loading the experiment's diffusion model: the backend implementation is chosen here, once."""

from __future__ import annotations

import torch

from diffxai.models.backend import DiffusionBackend, model_dtype
from diffxai.models.pixel import load_diffusion
from diffxai.models.sd import load_sd


def load_backend(
    kind: str, location: str, device: torch.device | str = "cpu", *, dtype: str = "float32", channels: int | None = None
) -> DiffusionBackend:
    """Load the experiment's diffusion model, choosing its implementation once.

    Args:
        kind: ``pixel`` (a diffusers ``DDPMPipeline`` directory or hub id, e.g.
            ``google/ddpm-cat-256`` or the DAG-trained demo) or ``stable_diffusion``.
        location: hub id or local directory.
        dtype: the model's dtype setting (:func:`model_dtype`; pixel models stay float32).
        channels: the data's channel count, checked against a pixel U-Net.
    """
    if kind == "stable_diffusion":
        return load_sd(location, device, model_dtype(dtype, device))
    return load_diffusion(location, device, channels=channels)
