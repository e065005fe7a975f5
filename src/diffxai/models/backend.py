"""ONE diffusion backend interface; the pixel (:mod:`diffxai.models.pixel`) and Stable Diffusion
(:mod:`diffxai.models.sd`) implementations are chosen once, by :func:`load_backend`.

Everything downstream (the sampling loop, DF-RISE / DF-CAM's fixed-step denoiser, CAD's
objective) talks to a :class:`DiffusionBackend` and never asks which kind it holds:

* ``x`` lives in the model's input space ``(B, C, h, w)``: pixels in [-1, 1] for a pixel DDPM,
  VAE-scaled latents for Stable Diffusion; :meth:`to_model_space` / :meth:`decode` convert from and
  to images ``(B, C', H, W)`` in [-1, 1].
* A *condition* is what a class or prompt becomes for the U-Net: :meth:`encode` takes a list of
  condition keys (an int class label for a pixel DDPM, a prompt string for SD) and returns a
  batch of conditions ``(B, *cond_shape)`` (labels ``(B,)``, text embeddings ``(B, L, D)``);
  :meth:`null` is the unconditional branch (null label, or the empty / negative prompt).
* :meth:`eps` is ε̂(x, t, c); :meth:`eps_guided` is classifier-free guidance
  ε_u + w (ε_c − ε_u) with both branches in one batched forward.
* ``clip_x0``: whether x̂0 is clipped to [-1, 1] (pixels: yes; latents: no).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch


class DiffusionBackend:
    """A noise-prediction U-Net with its scheduler, conditioning and input space (see module doc)."""

    unet: torch.nn.Module
    scheduler: object
    source: str
    #: "pixel" or "stable_diffusion" (for logs and provenance only; code never branches on it)
    kind: str = ""
    #: clip x̂0 to [-1, 1] in sampling (pixel models) or not (latent models)
    clip_x0: bool = True

    # ------------------------------------------------------------------ schedule
    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """ᾱ_t for t = 0..T−1, ``(T,)`` float64 on the CPU."""
        return torch.as_tensor(self.scheduler.alphas_cumprod).to(torch.float64)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The U-Net's weight dtype."""
        return next(self.unet.parameters()).dtype

    # ------------------------------------------------------------------ conditioning
    @property
    def conditional(self) -> bool:
        """Whether the model takes a condition at all (an unconditional pixel DDPM does not)."""
        return True

    def encode(self, keys: Sequence) -> torch.Tensor | None:
        """Conditions ``(B, *cond_shape)`` of B condition keys (labels or prompts)."""
        raise NotImplementedError

    def null(self, n: int) -> torch.Tensor | None:
        """``n`` copies of the unconditional condition."""
        raise NotImplementedError

    # ------------------------------------------------------------------ denoiser
    def eps(self, x: torch.Tensor, t, cond: torch.Tensor | None) -> torch.Tensor:
        """Predicted noise ε̂(x, t, c) ``(B, C, h, w)``; ``t`` an int or ``(B,)``; ``cond=None`` is
        the unconditional branch. NaN/Inf output is a one-line error naming the checkpoint."""
        raise NotImplementedError

    def eps_guided(
        self, x: torch.Tensor, t, cond: torch.Tensor | None, guidance: float, null: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Classifier-free guided noise ε_u + w (ε_c − ε_u), both branches in ONE batched forward.

        ``null``: the unconditional condition (default :meth:`null`; a negative prompt for SD).
        ``guidance == 1``, an unconditional model or ``cond=None`` run one branch only.
        """
        if not self.conditional or cond is None or float(guidance) == 1.0:
            return self.eps(x, t, cond)
        b = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(b) if t.ndim == 0 else t
        null = self.null(b) if null is None else _batch(null, b)
        e = self.eps(torch.cat([x, x]), torch.cat([t, t]), torch.cat([_batch(cond, b), null.to(cond.device)]))
        e_c, e_u = e.chunk(2)
        return e_u + guidance * (e_c - e_u)

    def predict_x0(self, x: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """x̂0 = (x − sqrt(1−ᾱ_t) ε) / sqrt(ᾱ_t), clipped when :attr:`clip_x0` (``t`` int or ``(B,)``)."""
        abar = self.alphas_cumprod.to(x.device)[torch.as_tensor(t, device=x.device)]
        abar = abar.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
        return x0.clamp(-1, 1) if self.clip_x0 else x0

    # ------------------------------------------------------------------ spaces
    def sample_shape(self, height: int | None = None, width: int | None = None) -> tuple[int, int, int]:
        """``(C, h, w)`` of ``x`` for an image of ``height`` x ``width`` pixels (default: the model's)."""
        raise NotImplementedError

    def to_model_space(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C', H, W)`` in [-1, 1] → ``x`` in the model's input space."""
        return images

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the model's space → images in [-1, 1]."""
        return x

    def with_unet(self, unet: torch.nn.Module) -> DiffusionBackend:
        """The same backend around another U-Net (e.g. an edited copy); nothing else is copied."""
        new = copy.copy(self)
        new.unet = unet
        return new


def _batch(cond: torch.Tensor, b: int) -> torch.Tensor:
    """A condition batch of size ``b`` (a batch of one is broadcast)."""
    return cond.expand(b, *cond.shape[1:]) if cond.shape[0] == 1 and b > 1 else cond


def model_dtype(name: str, device: torch.device | str) -> torch.dtype:
    """The ONE dtype setting of every model: ``auto`` = float16 on CUDA, float32 on the CPU;
    otherwise the named torch dtype (``float32``, ``float16``, ``bfloat16``)."""
    if name == "auto":
        return torch.float16 if torch.device(device).type == "cuda" else torch.float32
    return getattr(torch, name)
