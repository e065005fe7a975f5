"""Trajectories of one class for the likelihood and attribution stages, ``(N images, K draws,
S steps, C, H, W)``:

* :func:`forward_trajectories`: real images forward-noised at S levels, one ε per (image, draw)
  shared by all levels, plus the denoiser's one-step x̂0 view;
* :func:`reverse_trajectories`: real DDIM denoising (:func:`diffxai.sampling.loop.sample`) from
  seeded noise for a class-conditional model, or SDEdit from noised real images otherwise.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from diffxai.core.batching import map_batches
from diffxai.core.seeding import make_generator
from diffxai.models.backend import DiffusionBackend
from diffxai.sampling.loop import sample
from diffxai.sampling.noising import forward_noise, predict_x0

log = logging.getLogger(__name__)


def draw_noise(shape, seed: int, stage: str, class_name: str, image_ids: list[str], n_draws: int) -> torch.Tensor:
    """``(N, K, *shape)`` standard normal noise, one generator per (image, draw)."""

    def draw(img: str, k: int) -> torch.Tensor:
        return torch.randn(shape, generator=make_generator(seed, stage, class_name, img, k))

    return torch.stack([torch.stack([draw(img, k) for k in range(n_draws)]) for img in image_ids])


@torch.no_grad()
def forward_trajectories(
    model: DiffusionBackend,
    x0: torch.Tensor,
    image_ids: list[str],
    timesteps: np.ndarray,
    n_draws: int,
    *,
    seed: int,
    class_name: str,
    x0_label: int | None = None,
    views: tuple[str, ...] = ("x_t", "x0_pred"),
    batch_size: int = 128,
) -> dict[str, torch.Tensor]:
    """Forward-noise ``x0`` ``(N, C, H, W)`` at every timestep and (optionally) denoise one step.

    Args:
        x0_label: class label given to the denoiser for ``x0_pred`` (``None`` = unconditional).
    Returns:
        ``{"x0": (N,C,H,W), "x_t": (N,K,S,C,H,W), "x0_pred": (N,K,S,C,H,W), "timesteps": (S,)}``.
    """
    n, k, s = x0.shape[0], n_draws, len(timesteps)
    eps = draw_noise(tuple(x0.shape[1:]), seed, "trajectories", class_name, image_ids, k)  # N,K,C,H,W
    t = torch.as_tensor(timesteps, dtype=torch.long)
    abar = model.alphas_cumprod
    flat_x0 = x0[:, None, None].expand(n, k, s, *x0.shape[1:]).reshape(-1, *x0.shape[1:])
    flat_eps = eps[:, :, None].expand(n, k, s, *x0.shape[1:]).reshape(-1, *x0.shape[1:])
    flat_t = t.repeat(n * k)
    x_t = forward_noise(flat_x0, flat_eps, flat_t, abar)
    out = {"x0": x0, "x_t": x_t.view(n, k, s, *x0.shape[1:]), "timesteps": t}
    if "x0_pred" in views:
        device = model.device
        started = time.time()

        def denoise(xb, tb):
            labels = None if x0_label is None else torch.full_like(tb, x0_label)
            return predict_x0(xb, model.eps(xb, tb, labels), tb, abar)

        x0_pred = map_batches(
            denoise, x_t, flat_t, batch_size=batch_size, device=device, what="inputs", label="x0_pred"
        )
        log.info("x0_pred: %d denoiser calls in %.1fs", x_t.shape[0], time.time() - started)
        out["x0_pred"] = x0_pred.view(n, k, s, *x0.shape[1:])
    return out


def reverse_trajectories(
    model: DiffusionBackend,
    n_images: int,
    n_draws: int,
    n_steps: int,
    image_shape: tuple[int, int, int],
    *,
    seed: int,
    class_name: str,
    label: int | None,
    guidance: float,
    x0: torch.Tensor | None = None,
    image_ids: list[str] | None = None,
    sdedit_strength: float = 0.6,
    batch_size: int = 128,
) -> dict[str, torch.Tensor]:
    """Record real DDIM denoising: class-conditional generation, or SDEdit from real images.

    Returns ``{"x_t", "x0_pred": (N,K,S,C,H,W), "sample": (N,K,C,H,W), "timesteps": (S,)}``
    (plus ``"x0"`` for SDEdit).
    """
    T = model.num_train_timesteps
    if model.conditional and label is not None:
        ids = [f"sample-{i}" for i in range(n_images)]
        timesteps = np.rint(np.linspace(T - 1, 0, n_steps)).astype(np.int64)
        x_init = draw_noise(image_shape, seed, "reverse", class_name, ids, n_draws).reshape(-1, *image_shape)
        labels = model.encode([int(label)] * x_init.shape[0])
        extra = {}
    else:
        if x0 is None:
            raise ValueError("SDEdit on an unconditional model needs real images x0")
        ids = image_ids
        t_start = int(round(sdedit_strength * (T - 1)))
        timesteps = np.rint(np.linspace(t_start, 0, n_steps)).astype(np.int64)
        eps = draw_noise(image_shape, seed, "reverse", class_name, ids, n_draws)
        n = x0.shape[0]
        flat_x0 = x0[:, None].expand(n, n_draws, *image_shape).reshape(-1, *image_shape)
        t_init = torch.full((flat_x0.shape[0],), t_start)
        x_init = forward_noise(flat_x0, eps.reshape(-1, *image_shape), t_init, model.alphas_cumprod)
        labels, guidance = None, 1.0
        extra = {"x0": x0}
    if len(np.unique(timesteps)) != len(timesteps):
        raise ValueError(f"{n_steps} sampling steps do not fit between t={timesteps[0]} and 0")
    res = sample(model, x_init, timesteps=timesteps, cond=labels, guidance=guidance, record=True, batch_size=batch_size)
    n = len(ids)
    shape = (n, n_draws, len(timesteps), *image_shape)
    return {
        "x_t": res["x_t"].view(shape),
        "x0_pred": res["x0_pred"].view(shape),
        "sample": res["sample"].view(n, n_draws, *image_shape),
        "timesteps": torch.as_tensor(timesteps),
        **extra,
    }, ids
