"""The demo's models, trained in the DAG: a small class-conditional pixel DDPM (diffusers
``UNet2DModel`` with a null label for classifier-free guidance, saved as a ``DDPMPipeline``
directory) and a :class:`~diffxai.models.classifiers.DemoCNN` digit classifier (safetensors)."""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from diffxai.core.seeding import make_generator
from diffxai.models.classifiers import DemoCNN
from diffxai.models.pixel import DEMO_META, DiffusionModel

log = logging.getLogger(__name__)


def build_demo_unet(
    image_size: int,
    channels: int,
    n_classes: int,
    block_out_channels: tuple[int, ...] = (32, 64, 64),
    num_train_timesteps: int = 1000,
):
    """A small class-conditional ``UNet2DModel``; class ``n_classes`` is the null (unconditional) label."""
    from diffusers import UNet2DModel

    n = len(block_out_channels)
    down = ["DownBlock2D"] * n
    up = ["UpBlock2D"] * n
    if n >= 2:  # one attention level at the middle resolution
        down[1], up[-2] = "AttnDownBlock2D", "AttnUpBlock2D"
    return UNet2DModel(
        sample_size=image_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=1,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        norm_num_groups=min(8, block_out_channels[0]),
        attention_head_dim=8,
        num_class_embeds=n_classes + 1,
        num_train_timesteps=num_train_timesteps,
    )


def save_demo_diffusion(model: DiffusionModel, out_dir: str | Path, meta: dict) -> None:
    """Save as a ``DDPMPipeline`` directory (safetensors) plus ``diffxai.json`` metadata."""
    from diffusers import DDPMPipeline

    out_dir = Path(out_dir)
    DDPMPipeline(unet=model.unet, scheduler=model.scheduler).save_pretrained(out_dir, safe_serialization=True)
    (out_dir / DEMO_META).write_text(json.dumps({"null_label": model.null_label, **meta}, indent=2))


def train_demo_ddpm(
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    label_dropout: float,
    block_out_channels: tuple[int, ...],
    ema_decay: float,
    num_train_timesteps: int,
    beta_start: float,
    beta_end: float,
    seed: int,
    device: torch.device,
    log_every: int = 50,
) -> DiffusionModel:
    """Train a class-conditional DDPM with label dropout (so it has an unconditional branch).

    Args:
        x: ``(N, C, S, S)`` training images in [-1, 1].
        y: ``(N,)`` class labels in ``[0, n_classes)``.
        steps: optimiser steps; the returned weights are the EMA of the trained ones.
    Returns:
        A :class:`DiffusionModel` (eval mode) whose null label is ``n_classes``.
    """
    from diffusers import DDPMScheduler

    torch.manual_seed(seed)  # module init draws from the global RNG; fix it
    unet = build_demo_unet(x.shape[-1], x.shape[1], n_classes, tuple(block_out_channels), num_train_timesteps)
    unet.to(device).train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    scheduler = DDPMScheduler(
        num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end, beta_schedule="linear"
    )
    abar = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps))
    )
    g = make_generator(seed, "train-ddpm", device=device)
    x, y = x.to(device), y.to(device)
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=g, device=device)
        x0, labels = x[idx], y[idx].clone()
        drop = torch.rand(batch_size, generator=g, device=device) < label_dropout
        labels[drop] = n_classes
        t = torch.randint(0, num_train_timesteps, (batch_size,), generator=g, device=device)
        eps = torch.randn(x0.shape, generator=g, device=device)
        a = abar[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        loss = F.mse_loss(unet(xt, t, class_labels=labels).sample, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            d = min(ema_decay, (1 + step) / (10 + step))
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - d)
        if (step + 1) % log_every == 0 or step + 1 == steps:
            rate = (step + 1) / (time.time() - t0)
            log.info("ddpm step %d/%d loss %.4f (%.1f steps/s)", step + 1, steps, loss.item(), rate)
    return DiffusionModel(unet=ema, scheduler=scheduler, null_label=n_classes, source="demo")


def train_demo_classifier(
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    width: int,
    seed: int,
    device: torch.device,
) -> DemoCNN:
    """Train :class:`DemoCNN` on clean images (with ±1 px shifts as augmentation)."""
    torch.manual_seed(seed)
    net = DemoCNN(n_classes, x.shape[1], width).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    g = make_generator(seed, "train-classifier")
    x, y = x.to(device), y.to(device)
    t0 = time.time()
    for epoch in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g).to(device)
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            shift = torch.randint(-1, 2, (2,), generator=g).tolist()
            xb = torch.roll(x[idx], shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(net(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        rate = (epoch + 1) * len(perm) / (time.time() - t0)
        log.info("classifier epoch %d/%d loss %.4f (%.0f images/s)", epoch + 1, epochs, loss.item(), rate)
    return net.eval()


def save_demo_classifier(net: DemoCNN, path: str | Path, meta: dict) -> None:
    from safetensors.torch import save_file

    save_file(net.state_dict(), str(path), metadata={k: json.dumps(v) for k, v in meta.items()})
