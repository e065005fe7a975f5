"""The compute device (``auto`` = CUDA when present, else CPU) and torch's CPU thread count."""

from __future__ import annotations

import os

import torch

from diffxai.core.errors import DiffxaiError


def resolve_device(name: str = "auto") -> torch.device:
    """Map the config's ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) to a torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DiffxaiError("config.device", f"{name!r} requested but CUDA is not available")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise DiffxaiError("config.device", f"unknown device {name!r}") from exc


def set_threads(threads: int | None) -> None:
    """Use the job's Snakemake thread count for intra-op parallelism on the CPU."""
    if threads:
        torch.set_num_threads(max(1, int(threads)))
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
