"""Classifiers that watch the diffusion model: the demo's small CNN (:class:`DemoCNN`) and
torchvision models (:class:`Classifier` applies its own :class:`Preprocess` to images in [-1, 1],
and a NaN/Inf logit is a one-line error), loaded from a config spec by :func:`load_classifier`;
:func:`classify` gives batched logits ``(B, n_classes)``.

Preprocessing is part of the classifier (``preprocess`` in its config, docs/classifiers.md): by
default a torchvision model gets its weights enum's own transforms (``weights.transforms()``:
resize, crop, mean, std, interpolation), the demo CNN none (it is trained on [-1, 1] digits), and
a state dict what its config states (its training recipe is not in the file)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from diffxai.core.batching import map_batches
from diffxai.core.errors import DiffxaiError, require_finite, short_error

IMAGENET_MEAN = (0.485, 0.456, 0.406)


IMAGENET_STD = (0.229, 0.224, 0.225)


def _size(value) -> list[int] | None:
    """A resize / crop size as torchvision's functional ops take it (an int ``n`` = ``[n]``)."""
    if value is None:
        return None
    return [int(value)] if isinstance(value, int) else [int(v) for v in value]


@dataclass(frozen=True)
class Preprocess:
    """torchvision's classification recipe on tensors (so gradients flow to the input): an image in
    [-1, 1] is mapped to [0, 1], resized (``resize``: an int = the shorter side, as
    ``Resize(int)``; ``[h, w]``; None = not resized; antialiased), center-cropped (``crop``: an int
    = square, ``[h, w]``, None = not cropped), then normalised per channel, ``(x - mean) / std``
    (None = left in [0, 1])."""

    resize: int | tuple[int, int] | None = None
    crop: int | tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str = "bilinear"

    @classmethod
    def from_spec(cls, spec: Mapping | str | None) -> Preprocess | None:
        """A config's ``preprocess`` block: None or ``"none"`` → None (the network sees [-1, 1])."""
        if spec is None or spec == "none":
            return None
        if isinstance(spec, str):
            raise DiffxaiError("preprocess", f"unknown preprocessing {spec!r} (none, or resize / crop / mean / std)")

        def seq(v):
            return None if v is None else (int(v) if isinstance(v, int) else tuple(v))

        def floats(v):
            return None if v is None else tuple(float(x) for x in v)

        return cls(
            resize=seq(spec.get("resize")),
            crop=seq(spec.get("crop")),
            mean=floats(spec.get("mean")),
            std=floats(spec.get("std")),
            interpolation=str(spec.get("interpolation") or "bilinear"),
        )

    @classmethod
    def imagenet(cls) -> Preprocess:
        """The classic ImageNet recipe (Resize(256), CenterCrop(224), ImageNet mean / std), e.g.
        for random-weight ImageNet architectures in the benchmarks."""
        return cls(resize=256, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)

    @classmethod
    def of_weights(cls, weights) -> Preprocess:
        """A torchvision weights enum's own transforms (``weights.transforms()``, an
        ``ImageClassification`` preset): its resize and crop sizes, mean, std and interpolation."""
        t = weights.transforms()
        try:
            resize, crop = list(t.resize_size), list(t.crop_size)
            mean, std, interp = tuple(t.mean), tuple(t.std), t.interpolation.value
        except (AttributeError, TypeError):
            raise DiffxaiError(
                str(weights), "cannot read the weights' preprocessing: set the classifier's preprocess"
            ) from None
        return cls(
            resize=resize[0] if len(resize) == 1 else (resize[0], resize[1]),
            crop=crop[0] if len(crop) == 1 else (crop[0], crop[1]),
            mean=mean,
            std=std,
            interpolation=str(interp),
        )

    def __call__(self, x: torch.Tensor, in_channels: int | None = None) -> torch.Tensor:
        """``(B, C, H, W)`` in [-1, 1] → the network's input; a 1-channel image is repeated to
        ``in_channels == 3``."""
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        x = (x + 1) / 2
        if self.resize is not None:
            mode = InterpolationMode(self.interpolation)
            x = TF.resize(x, _size(self.resize), interpolation=mode, antialias=mode != InterpolationMode.NEAREST)
        crop = _size(self.crop)
        if crop is not None:
            x = TF.center_crop(x, crop * 2 if len(crop) == 1 else crop)
        if x.shape[1] == 1 and in_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        if self.mean is not None and self.std is not None:
            shape = (1, -1, 1, 1)
            x = (x - torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)) / torch.tensor(
                self.std, dtype=x.dtype, device=x.device
            ).view(shape)
        return x


def _in_channels(net: nn.Module) -> int | None:
    """The channels the network's first convolution takes (None without one)."""
    return next((int(m.in_channels) for m in net.modules() if isinstance(m, nn.Conv2d)), None)


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

    ``preprocess``: a :class:`Preprocess` (e.g. the weights' transforms), ``"imagenet"``
    (:meth:`Preprocess.imagenet`), or ``None`` / ``"none"``: the network sees [-1, 1] as it is
    (the demo CNN). Done on tensors, so gradients flow to the input.
    """

    def __init__(
        self,
        net: nn.Module,
        preprocess: Preprocess | str | None = None,
        n_classes: int | None = None,
        source: str = "",
    ):
        super().__init__()
        self.net = net
        self.source = source  # the checkpoint (or torchvision weights) named in errors
        if isinstance(preprocess, str) and preprocess == "imagenet":
            preprocess = Preprocess.imagenet()
        self.preprocess = preprocess if isinstance(preprocess, Preprocess) else Preprocess.from_spec(preprocess)
        self.n_classes = n_classes
        self.in_channels = _in_channels(net)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input for images ``(B, C, H, W)`` in [-1, 1] (:attr:`preprocess`)."""
        if self.preprocess is None:
            return x
        return self.preprocess(x, self.in_channels)

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


def _weights_enum(arch: str, weights: str):
    """The torchvision weights enum member named ``weights`` of ``arch`` (``"DEFAULT"`` included)."""
    import torchvision

    if "." in weights:
        return torchvision.models.get_weight(weights)
    return torchvision.models.get_model_weights(arch)[weights]


def _preprocess(spec: Mapping, source: str, weights: str | None) -> Preprocess | None:
    """The classifier's :class:`Preprocess`: the spec's ``preprocess``, else the source's own
    (torchvision: the weights' transforms; a state dict has none to fall back to)."""
    pre = spec.get("preprocess")
    if pre is not None:
        return Preprocess.from_spec(pre)
    if source == "torchvision" and weights is not None:
        return Preprocess.of_weights(_weights_enum(spec.get("arch", "resnet18"), weights))
    what = "source state_dict" if source == "state_dict" else "weights: null"
    raise DiffxaiError(
        str(spec.get("path") or spec.get("arch")),
        f"the classifier's preprocess is required with {what} (resize, crop, mean, std, or none)",
    )


def load_classifier(spec: dict, device: torch.device | str = "cpu") -> Classifier:
    """Load the classifier described by ``config.models.classifier`` (or a stage's own).

    ``spec['source']``:
      * ``demo``: :class:`DemoCNN` from ``spec['path']`` (safetensors written by the DAG), no
        preprocessing (it is trained on [-1, 1] images);
      * ``torchvision``: ``spec['arch']`` with weights enum ``spec['weights']`` (e.g.
        ``resnet18`` / ``IMAGENET1K_V1``), downloaded to the torch hub cache by torchvision;
        preprocessing ``spec['preprocess']``, by default the weights' own transforms;
      * ``state_dict``: torchvision ``spec['arch']`` with weights from ``spec['path']``
        (safetensors or a ``torch.save`` state dict, read with ``weights_only=True``);
        preprocessing ``spec['preprocess']`` (required).
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
            clf = Classifier(net, None, meta["n_classes"], source=str(path))
        else:
            import torchvision

            arch = spec.get("arch", "resnet18")
            weights = spec.get("weights", "DEFAULT") if source == "torchvision" else None
            if source == "torchvision":
                net = torchvision.models.get_model(arch, weights=weights)
            elif source == "state_dict":
                path = Path(spec["path"])
                if not path.is_file():
                    raise DiffxaiError(str(path), "classifier checkpoint does not exist")
                net = torchvision.models.get_model(arch, weights=None, num_classes=spec.get("num_classes", 1000))
                net.load_state_dict(_read_state_dict(path))
            else:
                raise DiffxaiError("config.models.classifier.source", f"unknown source {source!r}")
            n_out = net.fc.out_features if hasattr(net, "fc") else spec.get("num_classes", 1000)
            origin = spec["path"] if source == "state_dict" else f"{arch} {weights}"
            clf = Classifier(net, _preprocess(spec, source, weights), n_out, source=str(origin))
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
