"""Images: scikit-learn's bundled digits (offline) and folders of real photos.

Convention everywhere in diffxai: images are float tensors ``(B, C, H, W)`` in ``[-1, 1]``,
the range diffusion models work in. Classifiers wrap their own preprocessing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from diffxai.core.errors import DiffxaiError
from diffxai.core.files import check_image, class_folder, list_images


def load_digits_split(image_size: int = 16, test_fraction: float = 0.2, seed: int = 0):
    """scikit-learn's 1797 8x8 digits, upsampled to ``image_size`` and scaled to [-1, 1].

    Returns:
        ``(x_train, y_train, x_test, y_test)``; ``x`` is ``(N, 1, S, S)`` float32 in [-1, 1],
        ``y`` is ``(N,)`` int64 digit labels. The split is stratified and fixed by ``seed``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 2 - 1).contiguous()
    y = torch.from_numpy(digits.target.astype(np.int64))
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    idx_train, idx_test = np.sort(idx_train), np.sort(idx_test)
    return x[idx_train], y[idx_train], x[idx_test], y[idx_test]


def digits_for_class(label: int, n_images: int, image_size: int, seed: int = 0):
    """The first ``n_images`` held-out digits of class ``label`` and their ids (test indices)."""
    _, _, x_test, y_test = load_digits_split(image_size=image_size, seed=seed)
    idx = torch.nonzero(y_test == label).flatten()[:n_images]
    if len(idx) < n_images:
        raise DiffxaiError("config.data.n_images", f"only {len(idx)} held-out digits of class {label}")
    return x_test[idx], [f"digits-test-{int(i)}" for i in idx]


def stroke_mask(x: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Boolean ``(B, H, W)`` mask of digit strokes (any channel above ``threshold`` in [-1, 1])."""
    return (x > threshold).any(dim=1)


def load_image(path: str | Path, image_size: int, channels: int = 3) -> torch.Tensor:
    """Read one image as ``(C, S, S)`` in [-1, 1]: EXIF orientation applied, any mode converted
    (grayscale, 16-bit: full range 0..65535 kept, palette; transparency composited over white),
    shorter side resized to ``image_size``, centre-cropped."""
    from PIL import Image, ImageOps

    check_image(path)
    with Image.open(path) as src:
        im: Image.Image = ImageOps.exif_transpose(src)
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            raw = np.asarray(im, dtype=np.float64)
            full = 65535.0 if im.mode.startswith("I;16") or raw.max() > 255 else 255.0
            im = Image.fromarray(np.rint(np.clip(raw / full, 0, 1) * 255).astype(np.uint8))
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        im = im.convert("RGB" if channels == 3 else "L")
        w, h = im.size
        scale = image_size / min(w, h)
        im = im.resize((max(image_size, round(w * scale)), max(image_size, round(h * scale))), Image.Resampling.BICUBIC)
        w, h = im.size
        left, top = (w - image_size) // 2, (h - image_size) // 2
        im = im.crop((left, top, left + image_size, top + image_size))
        arr = np.asarray(im, dtype=np.float32) / 255.0
    t = torch.from_numpy(arr)
    t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
    return (t * 2 - 1).contiguous()


def load_folder(folder: str | Path, n_images: int, image_size: int, channels: int = 3):
    """Up to ``n_images`` images of a class folder as ``(N, C, S, S)`` and their ids (file names)."""
    files = list_images(folder)[:n_images]
    x = torch.stack([load_image(p, image_size, channels) for p in files])
    return x, [p.name for p in files]


def class_images(config: dict, cls: dict) -> tuple[torch.Tensor, list[str]]:
    """The N real images of a class ``(N, C, S, S)`` in [-1, 1] and their ids."""
    data = config["data"]
    if data["source"] == "digits":
        return digits_for_class(cls["index"], data["n_images"], data["image_size"], seed=config["seed"])
    return load_folder(class_folder(config, cls), data["n_images"], data["image_size"], data["channels"])
