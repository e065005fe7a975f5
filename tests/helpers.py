"""Builders of tiny checkpoints and image folders for tests (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

TINY = Path(__file__).resolve().parent / "configs" / "tiny.yaml"
GOLDEN = Path(__file__).resolve().parent / "golden" / "tiny" / "tables"


def golden_rows(table: str, **where):
    """The rows of the golden table ``table`` (tests/golden/tiny/tables) where each column equals
    its value in ``where``, index reset: what a job of the tiny config must write."""
    import pandas as pd

    want = pd.read_parquet(GOLDEN / f"{table}.parquet")
    for col, value in where.items():
        want = want[want[col] == value]
    return want.reset_index(drop=True)


def one_line_error(fn, *args) -> str:
    """The message of the DiffxaiError ``fn(*args)`` raises, asserted to be one line."""
    import pytest

    from diffxai.core.errors import DiffxaiError

    with pytest.raises(DiffxaiError) as err:
        fn(*args)
    text = str(err.value)
    assert "\n" not in text
    return text


def tiny_config(**overrides) -> dict:
    """tests/configs/tiny.yaml as a dict, top-level keys replaced by ``overrides``."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg.update(overrides)
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def build_tiny_pixel_ddpm(path: Path, image_size: int = 16, channels: int = 3, n_classes: int | None = None) -> Path:
    """A tiny diffusers DDPMPipeline directory (unconditional unless ``n_classes``), like ddpm-cat-256."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=image_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=4,
        num_class_embeds=None if n_classes is None else n_classes + 1,
    )
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(path, safe_serialization=True)
    return path


def build_tiny_resnet_state_dict(path: Path, num_classes: int = 300) -> Path:
    """Random torchvision ResNet-18 weights saved as safetensors (stands in for IMAGENET1K_V1)."""
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def write_image_folder(root: Path, names: list[str], n: int = 2, size: int = 40) -> Path:
    """One folder per class with images in assorted modes: RGB JPEG with EXIF rotation, grayscale,
    RGBA, palette and 16-bit PNGs — all must be converted, not refused."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for ci, name in enumerate(names):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = (rng.random((size, size + 8, 3)) * 255).astype(np.uint8)
            kind = (ci + i) % 5
            if kind == 0:
                im = Image.fromarray(arr)
                exif = im.getexif()
                exif[0x0112] = 6  # rotate 90° on display
                im.save(d / f"img{i}.jpg", exif=exif)
            elif kind == 1:
                Image.fromarray(arr[..., 0]).save(d / f"img{i}.png")
            elif kind == 2:
                Image.fromarray(np.dstack([arr, arr[..., :1]])).save(d / f"img{i}.png")
            elif kind == 3:
                Image.fromarray(arr).convert("P").save(d / f"img{i}.png")
            else:
                Image.fromarray(arr[..., 0].astype(np.uint16) * 257).save(d / f"img{i}.png")
    return root
