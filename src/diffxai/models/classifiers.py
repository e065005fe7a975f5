"""Classifiers that watch the diffusion model: the demo's small CNN (:class:`DemoCNN`) and
torchvision ImageNet models (:class:`Classifier` resizes, crops and normalises images in [-1, 1]
itself, and a NaN/Inf logit is a one-line error), loaded from a config spec by
:func:`load_classifier`; :func:`classify` gives batched logits ``(B, n_classes)``."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn

from diffxai.core.batching import map_batches
from diffxai.core.errors import DiffxaiError, require_finite, short_error

IMAGENET_MEAN = (0.485, 0.456, 0.406)


IMAGENET_STD = (0.229, 0.224, 0.225)


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


@torch.no_grad()
def classify(classifier: torch.nn.Module, x: torch.Tensor, batch_size: int, device=None) -> torch.Tensor:
    """Logits ``(B, n_classes)`` for images ``(B, C, H, W)`` in [-1, 1], in batches."""
    return map_batches(
        lambda xb: classifier(xb).float(), x, batch_size=batch_size, device=device, what="images", label="classify"
    )
