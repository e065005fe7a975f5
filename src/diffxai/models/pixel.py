"""Pixel-space diffusion models (a diffusers ``UNet2DModel`` + ``DDPMScheduler``, e.g. the
DAG-trained demo or ``google/ddpm-cat-256``): the pixel implementation of
:class:`~diffxai.models.backend.DiffusionBackend`. Conditions are integer class labels; the null
label (class-conditional models trained with label dropout) is the unconditional branch.

Loading is safe: safetensors weights, never ``trust_remote_code``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from diffxai.core.errors import DiffxaiError, require_finite, short_error
from diffxai.models.backend import DiffusionBackend

DEMO_META = "diffxai.json"


@dataclass
class DiffusionModel(DiffusionBackend):
    """A noise-prediction U-Net with its scheduler.

    ``null_label`` is the class label of the unconditional branch (``None`` for unconditional
    models). ``eps`` takes ``x`` in the model's space ``(B, C, H, W)`` and integer timesteps
    ``(B,)``.
    """

    unet: torch.nn.Module
    scheduler: object
    null_label: int | None = None
    source: str = ""
    kind = "pixel"
    clip_x0 = True

    @property
    def conditional(self) -> bool:
        return self.null_label is not None

    def encode(self, keys) -> torch.Tensor | None:
        """Labels ``(B,)`` (long) of B class labels; None for an unconditional model."""
        if not self.conditional:
            return None
        return torch.as_tensor([int(k) for k in keys], dtype=torch.long, device=self.device)

    def null(self, n: int) -> torch.Tensor | None:
        if not self.conditional:
            return None
        return torch.full((n,), self.null_label, dtype=torch.long, device=self.device)

    def sample_shape(self, height: int | None = None, width: int | None = None) -> tuple[int, int, int]:
        size = self.unet.config.sample_size
        size = size if isinstance(size, int) else size[0]
        return (int(self.unet.config.in_channels), int(height or size), int(width or size))

    def eps(self, x: torch.Tensor, t, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted noise ε̂(x, t[, label]); ``labels=None`` uses the unconditional branch.
        NaN/Inf output is a one-line :class:`DiffxaiError` naming the checkpoint."""
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        if self.conditional:
            if labels is None:
                labels = torch.full((x.shape[0],), self.null_label, dtype=torch.long, device=x.device)
            out = self.unet(x, t, class_labels=labels).sample
        else:
            out = self.unet(x, t).sample
        require_finite(out.detach(), f"diffusion model {self.source}".strip(), "noise predictions")
        return out


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def load_diffusion(id_or_path: str, device: torch.device | str = "cpu", channels: int | None = None) -> DiffusionModel:
    """Load a diffusers pixel-space pipeline (``unet`` + ``scheduler``) from a hub id or local dir.

    ``channels``: the data's channel count; a U-Net built for another count is a one-line error.

    Honours the Hugging Face cache and ``HF_HUB_OFFLINE``; local directories never touch the
    network. Weights are read from safetensors when the checkpoint has them.
    """
    from diffusers import DDPMScheduler, UNet2DModel

    path = Path(id_or_path)
    local = path.exists()
    if not local and (id_or_path.startswith((".", "/")) or id_or_path.count("/") != 1):
        raise DiffxaiError(id_or_path, "diffusion checkpoint path does not exist")
    kw = {"local_files_only": local or _hub_offline()}
    try:
        unet = UNet2DModel.from_pretrained(id_or_path, subfolder="unet", **kw)
        scheduler = DDPMScheduler.from_pretrained(id_or_path, subfolder="scheduler", **kw)
    except Exception as exc:  # diffusers raises several types for missing/corrupt files
        raise DiffxaiError(id_or_path, f"cannot load diffusion pipeline: {short_error(exc)}") from None
    if channels is not None and unet.config.in_channels != channels:
        raise DiffxaiError(
            id_or_path,
            f"the U-Net takes {unet.config.in_channels}-channel images but config.data.channels is {channels}",
        )
    null_label = None
    meta = path / DEMO_META
    if local and meta.is_file():
        null_label = json.loads(meta.read_text()).get("null_label")
    elif unet.config.num_class_embeds:
        null_label = int(unet.config.num_class_embeds) - 1
    unet.eval().requires_grad_(False).to(device)
    return DiffusionModel(unet=unet, scheduler=scheduler, null_label=null_label, source=str(id_or_path))
