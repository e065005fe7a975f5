"""Stable Diffusion: the latent implementation of :class:`~diffxai.models.backend.DiffusionBackend`.

:class:`SDModel` wraps the parts of a diffusers ``StableDiffusionPipeline`` directory (or hub id
such as ``CompVis/stable-diffusion-v1-4``):

* ``x`` = latents ``(B, 4, h, w)`` in the VAE's *scaled* latent space (``vae.config.scaling_factor``
  applied), images ``(B, 3, H, W)`` in [-1, 1], ``H = h * vae_scale_factor``;
* conditions = text embeddings ``(B, L, D)``, the CLIP text encoder's ``last_hidden_state`` for
  prompts padded to ``tokenizer.model_max_length`` (``L = 77``, ``D = 768`` for SD 1.x); the
  empty prompt ``""`` is the null condition.

Loading is safe: safetensors only, never ``trust_remote_code``; local directories never touch the
network and ``HF_HUB_OFFLINE`` is honoured for hub ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from diffxai.core.errors import DiffxaiError, require_finite
from diffxai.models.backend import DiffusionBackend
from diffxai.models.pixel import _hub_offline


@dataclass
class SDModel(DiffusionBackend):
    """The components of a Stable Diffusion pipeline, in eval mode with gradients disabled on weights.

    Inputs keep flowing gradients (``eps`` / ``decode`` are not wrapped in ``no_grad``), so
    saliency and attribution code can differentiate with respect to latents or enable
    ``requires_grad`` on chosen weights.
    """

    unet: torch.nn.Module  # diffusers.UNet2DConditionModel
    vae: torch.nn.Module  # diffusers.AutoencoderKL
    text_encoder: torch.nn.Module  # transformers.CLIPTextModel
    tokenizer: object  # transformers.CLIPTokenizer
    scheduler: object  # the pipeline's scheduler (class from scheduler/scheduler_config.json)
    source: str = ""
    kind = "stable_diffusion"
    clip_x0 = False

    # ---------------------------------------------------------------- backend interface
    def encode(self, keys) -> torch.Tensor:
        """Text embeddings ``(B, L, D)`` of B prompts."""
        return self.encode_prompts(list(keys))

    def null(self, n: int) -> torch.Tensor:
        """``n`` copies of the empty prompt's embedding ``(n, L, D)``."""
        return self.encode_prompts([""]).expand(n, -1, -1)

    def sample_shape(self, height: int | None = None, width: int | None = None) -> tuple[int, int, int]:
        return self.latent_shape(height, width)

    def to_model_space(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_images(images)

    @property
    def vae_scale_factor(self) -> int:
        """Image pixels per latent pixel along each side (8 for SD 1.x)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def default_size(self) -> int:
        """Default image side in pixels (512 for SD 1.4)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    def latent_shape(self, height: int | None = None, width: int | None = None) -> tuple[int, int, int]:
        """``(C, h, w)`` of the latent for an image of ``height`` x ``width`` pixels (default size if None)."""
        height = self.default_size if height is None else int(height)
        width = self.default_size if width is None else int(width)
        f = self.vae_scale_factor
        if height <= 0 or width <= 0 or height % f or width % f:
            raise DiffxaiError("height/width", f"{height}x{width} must be positive multiples of {f}")
        return (self.latent_channels, height // f, width // f)

    # ---------------------------------------------------------------- text
    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token ids ``(B, L)`` (long), padded/truncated to ``tokenizer.model_max_length``."""
        if isinstance(prompts, str):
            prompts = [prompts]
        enc = self.tokenizer(
            list(prompts),
            padding="max_length",
            truncation=True,
            max_length=self.tokenizer.model_max_length,
            return_tensors="pt",
        )
        return enc.input_ids

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text embeddings ``(B, L, D)`` (the text encoder's ``last_hidden_state``) in the U-Net's dtype."""
        ids = self.tokenize(prompts).to(self.device)
        return self.text_encoder(ids).last_hidden_state.to(self.dtype)

    # ---------------------------------------------------------------- denoiser
    def eps(self, latents: torch.Tensor, t, text_emb: torch.Tensor | None) -> torch.Tensor:
        """Predicted noise ε̂(z_t, t, c) ``(B, 4, h, w)`` in ``latents``' dtype.

        Args:
            latents: ``(B, 4, h, w)`` scaled latents z_t.
            t: an int, a 0-d tensor, or ``(B,)`` integer timesteps.
            text_emb: ``(B, L, D)`` embeddings from :meth:`encode_prompts` (or ``(1, L, D)``, broadcast);
                ``None``: the unconditional branch (the empty prompt, :meth:`null`).
        """
        b = latents.shape[0]
        t = torch.as_tensor(t, device=latents.device)
        if t.ndim == 0:
            t = t.expand(b)
        if text_emb is None:
            text_emb = self.null(1)
        if text_emb.shape[0] == 1 and b > 1:
            text_emb = text_emb.expand(b, -1, -1)
        out = self.unet(latents.to(self.dtype), t, encoder_hidden_states=text_emb.to(self.dtype)).sample
        require_finite(out.detach(), f"U-Net of {self.source} ({self.dtype})", "noise predictions")
        return out.to(latents.dtype)

    # ---------------------------------------------------------------- VAE
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [-1, 1] from scaled latents ``(B, 4, h, w)`` (output dtype = input dtype)."""
        z = latents.to(self.vae.dtype) / self.vae.config.scaling_factor
        images = self.vae.decode(z).sample
        # (SD's VAE is known to overflow in float16: the message names the dtype)
        require_finite(images.detach(), f"VAE of {self.source} ({self.vae.dtype})", "images")
        return images.clamp(-1, 1).to(latents.dtype)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``(B, 4, h, w)`` (posterior mean x ``scaling_factor``) of images ``(B, 3, H, W)``
        in [-1, 1]."""
        z = self.vae.encode(images.to(self.vae.dtype)).latent_dist.mean
        return (z * self.vae.config.scaling_factor).to(images.dtype)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:300]


def load_sd(id_or_path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> SDModel:
    """Load a Stable Diffusion pipeline (``unet``, ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler``).

    Args:
        id_or_path: a local ``StableDiffusionPipeline`` directory or a hub id
            (e.g. ``CompVis/stable-diffusion-v1-4``).
        device: where the networks go.
        dtype: weight dtype of U-Net, VAE and text encoder (``torch.float16`` on GPUs halves memory).
    Raises:
        DiffxaiError: missing path, missing component, or unreadable / non-safetensors weights.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    name = str(id_or_path)
    path = Path(name)
    local = path.exists()
    if not local and (name.startswith((".", "/", "~")) or name.count("/") != 1):
        raise DiffxaiError(name, "Stable Diffusion checkpoint path does not exist")
    if local and not path.is_dir():
        raise DiffxaiError(name, "Stable Diffusion checkpoint must be a pipeline directory")
    kw = {"local_files_only": local or _hub_offline()}
    try:
        part = "scheduler"
        cfg = DDPMScheduler.load_config(name, subfolder="scheduler", **kw)
        scheduler = _scheduler_class(cfg.get("_class_name")).from_config(cfg)
        part = "tokenizer"
        tokenizer = CLIPTokenizer.from_pretrained(name, subfolder="tokenizer", **kw)
        part = "text_encoder"
        text_encoder = CLIPTextModel.from_pretrained(
            name, subfolder="text_encoder", use_safetensors=True, dtype=dtype, **kw
        )
        part = "unet"
        unet = UNet2DConditionModel.from_pretrained(
            name, subfolder="unet", use_safetensors=True, torch_dtype=dtype, **kw
        )
        part = "vae"
        vae = AutoencoderKL.from_pretrained(name, subfolder="vae", use_safetensors=True, torch_dtype=dtype, **kw)
    except Exception as exc:  # diffusers/transformers raise many types for missing or corrupt files
        hint = (
            " (HF_HUB_OFFLINE is set: download it once online, or give a local directory)"
            if not local and _hub_offline()
            else ""
        )
        raise DiffxaiError(name, f"cannot load Stable Diffusion {part}: {_one_line(exc)}{hint}") from None
    for net in (unet, vae, text_encoder):
        net.eval().requires_grad_(False).to(device)
    model = SDModel(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler, source=name
    )
    if int(vae.config.latent_channels) != int(unet.config.in_channels):
        raise DiffxaiError(
            name, f"VAE has {vae.config.latent_channels} latent channels, U-Net expects {unet.config.in_channels}"
        )
    return model


def _scheduler_class(class_name: str | None):
    """The diffusers scheduler class named in a scheduler config (DDPMScheduler when unknown)."""
    import diffusers
    from diffusers import DDPMScheduler
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    cls = getattr(diffusers, str(class_name), None)
    if isinstance(cls, type) and issubclass(cls, SchedulerMixin):
        return cls
    return DDPMScheduler
