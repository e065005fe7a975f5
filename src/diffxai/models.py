"""Models: the embedded demo (trained in the DAG) and real models loaded by id or path.

Diffusion models are diffusers pipelines (``unet/`` + ``scheduler/``, ``save_pretrained``
layout), whether trained here or loaded from the hub or a local directory. Classifiers are
wrapped in :class:`Classifier`, which takes images in [-1, 1] and applies the model's own
preprocessing, so every stage feeds all classifiers the same way.

Loading is safe: safetensors or ``torch.load(weights_only=True)``; never ``trust_remote_code``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from diffxai.errors import DiffxaiError, require_finite, short_error
from diffxai.seeding import make_generator

log = logging.getLogger(__name__)

DEMO_META = "diffxai.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------
# Diffusion models
# --------------------------------------------------------------------------------------------


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


class ScheduledDenoiser:
    """What every denoiser wrapper (pixel or latent) exposes of its U-Net and noise scheduler."""

    unet: torch.nn.Module
    scheduler: object

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """ᾱ_t for t = 0..T−1, ``(T,)`` float64 on the CPU."""
        return self.scheduler.alphas_cumprod.to(torch.float64)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device


@dataclass
class DiffusionModel(ScheduledDenoiser):
    """A noise-prediction U-Net with its scheduler.

    ``null_label`` is the class label of the unconditional branch (``None`` for unconditional
    models). ``eps`` takes ``x`` in the model's space ``(B, C, H, W)`` and integer timesteps
    ``(B,)``.
    """

    unet: torch.nn.Module
    scheduler: object
    null_label: int | None = None
    source: str = ""

    @property
    def conditional(self) -> bool:
        return self.null_label is not None

    def eps(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted noise ε̂(x, t[, label]); ``labels=None`` uses the unconditional branch.
        NaN/Inf output is a one-line :class:`DiffxaiError` naming the checkpoint."""
        if self.conditional:
            if labels is None:
                labels = torch.full((x.shape[0],), self.null_label, dtype=torch.long, device=x.device)
            out = self.unet(x, t, class_labels=labels).sample
        else:
            out = self.unet(x, t).sample
        require_finite(out.detach(), f"diffusion model {self.source}".strip(), "noise predictions")
        return out

    def eps_guided(self, x, t, labels, guidance: float) -> torch.Tensor:
        """Classifier-free guided noise ε_u + w (ε_c − ε_u), both branches in one batched forward."""
        if not self.conditional or labels is None or guidance == 1.0:
            return self.eps(x, t, labels)
        null = torch.full_like(labels, self.null_label)
        e = self.eps(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))
        e_c, e_u = e.chunk(2)
        return e_u + guidance * (e_c - e_u)


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
    kw = dict(local_files_only=local or _hub_offline())
    try:
        unet = UNet2DModel.from_pretrained(id_or_path, subfolder="unet", **kw)
        scheduler = DDPMScheduler.from_pretrained(id_or_path, subfolder="scheduler", **kw)
    except Exception as exc:  # diffusers raises several types for missing/corrupt files
        raise DiffxaiError(id_or_path, f"cannot load diffusion pipeline: {short_error(exc)}") from None
    if channels is not None and unet.config.in_channels != channels:
        raise DiffxaiError(id_or_path, f"the U-Net takes {unet.config.in_channels}-channel images "
                                       f"but config.data.channels is {channels}")  # fmt: skip
    null_label = None
    meta = path / DEMO_META
    if local and meta.is_file():
        null_label = json.loads(meta.read_text()).get("null_label")
    elif unet.config.num_class_embeds:
        null_label = int(unet.config.num_class_embeds) - 1
    unet.eval().requires_grad_(False).to(device)
    return DiffusionModel(unet=unet, scheduler=scheduler, null_label=null_label, source=str(id_or_path))


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


# --------------------------------------------------------------------------------------------
# Classifiers
# --------------------------------------------------------------------------------------------


class DemoCNN(nn.Module):
    """A small CNN for ``(B, C, S, S)`` digits in [-1, 1] (S divisible by 4)."""

    def __init__(self, n_classes: int = 10, in_channels: int = 1, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(2 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class Classifier(nn.Module):
    """A classifier that takes images in [-1, 1] and applies its own preprocessing.

    For ImageNet models the preprocessing is the torchvision recipe: Resize(256),
    CenterCrop(224), ImageNet mean/std, done on tensors so gradients flow to the input.
    """

    def __init__(self, net: nn.Module, preprocess: str = "none", n_classes: int | None = None, source: str = ""):
        super().__init__()
        self.net = net
        self.source = source  # the checkpoint (or torchvision weights) named in errors
        self.preprocess = preprocess
        self.n_classes = n_classes
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess == "imagenet":
            from torchvision.transforms.v2 import functional as TF

            x = (x + 1) / 2
            x = TF.resize(x, [256], antialias=True)
            x = TF.center_crop(x, [224, 224])
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            x = (x - self.mean) / self.std
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)`` for images ``(B, C, H, W)`` in [-1, 1]; NaN/Inf logits are a
        one-line :class:`DiffxaiError` naming the checkpoint, never a silent NaN in a table."""
        logits = self.net(self.prepare(x))
        require_finite(logits.detach(), f"classifier {self.source}".strip(), "logits")
        return logits


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


def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


def load_classifier(spec: dict, device: torch.device | str = "cpu") -> Classifier:
    """Load the classifier described by ``config.models.classifier``.

    ``spec['source']``:
      * ``demo``: :class:`DemoCNN` from ``spec['path']`` (safetensors written by the DAG);
      * ``torchvision``: ``spec['arch']`` with weights enum ``spec['weights']`` (e.g.
        ``resnet18`` / ``IMAGENET1K_V1``), downloaded to the torch hub cache by torchvision;
      * ``state_dict``: torchvision ``spec['arch']`` with weights from ``spec['path']``
        (safetensors or a ``torch.save`` state dict, read with ``weights_only=True``).
    """
    source = spec["source"]
    try:
        if source == "demo":
            from safetensors import safe_open

            path = Path(spec["path"])
            if not path.is_file():
                raise DiffxaiError(str(path), "classifier checkpoint does not exist")
            with safe_open(str(path), "pt") as f:
                meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
            net = DemoCNN(meta["n_classes"], meta["in_channels"], meta["width"])
            net.load_state_dict(_read_state_dict(path))
            clf = Classifier(net, "none", meta["n_classes"], source=str(path))
        else:
            import torchvision

            arch = spec.get("arch", "resnet18")
            if source == "torchvision":
                net = torchvision.models.get_model(arch, weights=spec.get("weights", "DEFAULT"))
            elif source == "state_dict":
                path = Path(spec["path"])
                if not path.is_file():
                    raise DiffxaiError(str(path), "classifier checkpoint does not exist")
                net = torchvision.models.get_model(arch, weights=None, num_classes=spec.get("num_classes", 1000))
                net.load_state_dict(_read_state_dict(path))
            else:
                raise DiffxaiError("config.models.classifier.source", f"unknown source {source!r}")
            n_out = net.fc.out_features if hasattr(net, "fc") else spec.get("num_classes", 1000)
            origin = spec["path"] if source == "state_dict" else f"{arch} {spec.get('weights', 'DEFAULT')}"
            clf = Classifier(net, "imagenet", n_out, source=str(origin))
    except DiffxaiError:
        raise
    except Exception as exc:
        where = str(spec.get("path") or spec.get("arch"))
        arch_name = "DemoCNN" if source == "demo" else spec.get("arch", "resnet18")
        raise DiffxaiError(where, f"cannot load classifier ({arch_name}): {short_error(exc)}") from None
    return clf.eval().requires_grad_(False).to(device)
