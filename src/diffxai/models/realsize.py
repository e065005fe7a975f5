"""Real-size checkpoints without the network: the published architectures with random weights.

The configs below are the published ones, written out as Python dicts:

* Stable Diffusion 1.4 (``CompVis/stable-diffusion-v1-4``): the ``unet`` (diffusers
  ``UNet2DConditionModel``, 859,520,964 parameters), ``vae`` (``AutoencoderKL``, 83,653,863),
  ``text_encoder`` (transformers ``CLIPTextModel``, CLIP ViT-L/14's text tower, 123,060,480),
  its ``scheduler`` (``PNDMScheduler``, scaled-linear betas 0.00085 .. 0.012) and a
  ``CLIPTokenizer`` of the real vocabulary size (49,408 = 512 byte tokens + 48,894 merges + the
  two special tokens, ``model_max_length`` 77), generated here as ``vocab.json`` + ``merges.txt``;
* ``google/ddpm-cat-256``: its ``UNet2DModel`` (113,673,219 parameters, self-attention at 16x16)
  and ``DDPMScheduler`` (linear betas 1e-4 .. 0.02);
* torchvision ResNet-18 (11,689,512) and ResNet-50 (25,557,032), saved as a safetensors state dict
  (what ``models.classifier.source: state_dict`` reads).

They are saved exactly as the real checkpoints are laid out (a ``StableDiffusionPipeline`` /
``DDPMPipeline`` directory with safetensors weights; a state dict), and load through the same code
as the real ones (:func:`diffxai.models.loading.load_backend`,
:func:`diffxai.models.classifiers.load_classifier`), with no network. They measure time and memory
at real size; their outputs mean nothing.

``tiny=True`` keeps every structural choice (block types and counts, layers per block, attention
placement, 12 text-encoder layers, the real tokenizer) and shrinks only the widths (and the
sample size), for tests; ``device="meta"`` builds the full-size networks without allocating, e.g.
to count parameters (:func:`count_parameters`).

:func:`write_photo_folders` writes one image folder per class from the photos that ship with
scikit-image (``chelsea`` is a cat), in the layout ``config/imagenet_cats.yaml`` reads.

Command line (also ``diffxai build-checkpoints``)::

    python -m diffxai.models.realsize OUTDIR [--only sd14,ddpm-cat-256,resnet18,resnet50]
        [--dtype float16] [--tiny] [--seed 0] [--images]
"""

from __future__ import annotations

import argparse
import copy
import json
import string
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from diffxai.core.errors import DiffxaiError

# --------------------------------------------------------------------------------------------
# The published configs
# --------------------------------------------------------------------------------------------

#: ``CompVis/stable-diffusion-v1-4`` ``unet/config.json`` (diffusers ``UNet2DConditionModel``)
SD14_UNET: dict = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-05,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}

#: ``CompVis/stable-diffusion-v1-4`` ``vae/config.json`` (diffusers ``AutoencoderKL``)
SD14_VAE: dict = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}

#: ``CompVis/stable-diffusion-v1-4`` ``text_encoder/config.json`` (transformers ``CLIPTextConfig``;
#: the token ids 0 / 2 / 1 are the published values, although the tokenizer's are 49406 / 49407)
SD14_TEXT_ENCODER: dict = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "projection_dim": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-05,
    "attention_dropout": 0.0,
    "dropout": 0.0,
    "initializer_range": 0.02,
    "initializer_factor": 1.0,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}

#: ``CompVis/stable-diffusion-v1-4`` ``scheduler/scheduler_config.json``
SD14_SCHEDULER: dict = {
    "_class_name": "PNDMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
    "trained_betas": None,
}

#: the tokenizer: CLIP ViT-L/14's BPE vocabulary size and context length
SD14_TOKENIZER: dict = {"vocab_size": 49408, "model_max_length": 77}

#: ``google/ddpm-cat-256`` ``unet/config.json`` (diffusers ``UNet2DModel``; attention at 16x16)
DDPM_CAT_256_UNET: dict = {
    "sample_size": 256,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "down_block_types": [
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "AttnDownBlock2D",
        "DownBlock2D",
    ],
    "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"],
    "block_out_channels": [128, 128, 256, 256, 512, 512],
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 0,
    "act_fn": "silu",
    "attention_head_dim": None,
    "norm_num_groups": 32,
    "norm_eps": 1e-06,
}

#: ``google/ddpm-cat-256`` ``scheduler/scheduler_config.json``
DDPM_CAT_256_SCHEDULER: dict = {
    "_class_name": "DDPMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "clip_sample": True,
    "variance_type": "fixed_small",
    "trained_betas": None,
}

#: what ``tiny=True`` changes: widths, norm groups and sample sizes only
TINY: dict[str, dict] = {
    "sd14/unet": {
        "block_out_channels": [32, 64, 64, 64],
        "norm_num_groups": 8,
        "cross_attention_dim": 48,
        "sample_size": 16,
    },
    "sd14/vae": {"block_out_channels": [16, 32, 32, 32], "norm_num_groups": 8, "sample_size": 128},
    "sd14/text_encoder": {"hidden_size": 48, "intermediate_size": 192, "projection_dim": 48},
    "ddpm-cat-256/unet": {"block_out_channels": [16, 16, 32, 32, 64, 64], "norm_num_groups": 8, "sample_size": 32},
}

#: the published parameter counts of every network (full size)
PUBLISHED_PARAMETERS: dict[str, int] = {
    "sd14/unet": 859_520_964,
    "sd14/vae": 83_653_863,
    "sd14/text_encoder": 123_060_480,
    "ddpm-cat-256/unet": 113_673_219,
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
}

#: the checkpoints :func:`build_checkpoints` can write, and the networks of each
CHECKPOINTS: dict[str, tuple[str, ...]] = {
    "sd14": ("sd14/unet", "sd14/vae", "sd14/text_encoder"),
    "ddpm-cat-256": ("ddpm-cat-256/unet",),
    "resnet18": ("resnet18",),
    "resnet50": ("resnet50",),
}

_BASE = {
    "sd14/unet": SD14_UNET,
    "sd14/vae": SD14_VAE,
    "sd14/text_encoder": SD14_TEXT_ENCODER,
    "ddpm-cat-256/unet": DDPM_CAT_256_UNET,
}


def config(part: str, tiny: bool = False) -> dict:
    """A fresh copy of the published config of ``part`` (``sd14/unet``, ``sd14/vae``,
    ``sd14/text_encoder``, ``ddpm-cat-256/unet``), shrunk by :data:`TINY` when ``tiny``."""
    if part not in _BASE:
        raise DiffxaiError("realsize", f"unknown part {part!r} (use one of {', '.join(_BASE)})")
    cfg = copy.deepcopy(_BASE[part])
    if tiny:
        cfg.update(copy.deepcopy(TINY[part]))
    return cfg


# --------------------------------------------------------------------------------------------
# The tokenizer of the real vocabulary size
# --------------------------------------------------------------------------------------------

#: words that get whole-word tokens first (lowest merge ranks); the rest of the vocabulary is
#: filled with letter n-grams
_WORD_TEXT = """
a an the of in on at to with and or for from by near over under top front behind next
photo image picture painting drawing sketch render style art portrait close up view
cat cats dog dogs tiger persian siamese egyptian kitten tabby lion horse bird fish tench
church house tree trees car truck bus red blue green yellow black white wooden bench street
man woman person people child riding wave surfboard sitting driving plate food broccoli rice
meat double decker golden retriever school golf ball parachute chainsaw garbage french horn
cassette player gas pump english springer coffee cup rocket astronaut space sky water grass
"""
WORDS = tuple(_WORD_TEXT.split())


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (GPT-2's) reversible map from the 256 byte values to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = list(bs)
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def clip_vocab_and_merges(vocab_size: int = SD14_TOKENIZER["vocab_size"]) -> tuple[dict[str, int], list[str]]:
    """A CLIP-style BPE vocabulary of exactly ``vocab_size`` tokens and its merges.

    Layout as CLIP's: the 256 byte characters, the same with ``</w>`` (word-final), then one token
    per merge in rank order, then ``<|startoftext|>`` and ``<|endoftext|>`` (ids ``vocab_size − 2``
    and ``vocab_size − 1``: 49406 / 49407 at the real size). Merges build the :data:`WORDS` left
    to right first, then every letter n-gram by length (``a b``, ``a b</w>``, ...) until the size
    is reached; every merge's result is in the vocabulary and every merge's parts come earlier.
    """
    base = list(bytes_to_unicode().values())
    tokens = base + [c + "</w>" for c in base]
    n_merges = vocab_size - 2 - len(tokens)
    if n_merges < 0:
        raise DiffxaiError("realsize.tokenizer", f"vocab_size {vocab_size} is below the {len(tokens) + 2} base tokens")
    seen = set(tokens)
    merges: list[str] = []

    def add(left: str, right: str) -> bool:
        merged = left + right
        if merged in seen:
            return False
        merges.append(f"{left} {right}")
        tokens.append(merged)
        seen.add(merged)
        return True

    for word in WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        left = pieces[0]
        for right in pieces[1:]:
            if len(merges) < n_merges:
                add(left, right)
            left = left + right
    frontier = list(string.ascii_lowercase)
    while len(merges) < n_merges:
        grown: list[str] = []
        for left in frontier:
            for c in string.ascii_lowercase:
                for right in (c + "</w>", c):
                    if len(merges) >= n_merges:
                        break
                    add(left, right)
                    if not right.endswith("</w>"):
                        grown.append(left + right)
        frontier = grown
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def write_tokenizer_files(folder: str | Path, vocab_size: int = SD14_TOKENIZER["vocab_size"]) -> Path:
    """Write ``vocab.json`` + ``merges.txt`` (CLIP's format) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab_and_merges(vocab_size)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder


def build_tokenizer(
    vocab_size: int = SD14_TOKENIZER["vocab_size"], model_max_length: int = SD14_TOKENIZER["model_max_length"]
):
    """A transformers ``CLIPTokenizer`` from freshly generated ``vocab.json`` + ``merges.txt``
    (``len(tokenizer) == vocab_size``; pads with ``<|endoftext|>`` like SD 1.4's)."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        write_tokenizer_files(tmp, vocab_size)
        return CLIPTokenizer.from_pretrained(tmp, model_max_length=model_max_length)


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


def _build(factory: Callable[[], torch.nn.Module], seed: int, device, dtype: torch.dtype | None):
    """``factory()`` constructed on ``device`` (parameters allocated there; ``meta`` allocates
    nothing) with torch's RNG seeded by ``seed`` (restored afterwards), in eval mode, frozen."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        with device:
            net = factory()
    net = net.eval().requires_grad_(False)
    return net if dtype is None or dtype == torch.float32 else net.to(dtype)


def build_sd14_unet(tiny: bool = False, *, device="cpu", dtype: torch.dtype | None = None, seed: int = 0):
    """SD 1.4's ``UNet2DConditionModel`` with random weights (see :func:`config`)."""
    from diffusers import UNet2DConditionModel

    return _build(lambda: UNet2DConditionModel(**config("sd14/unet", tiny)), seed, device, dtype)


def build_sd14_vae(tiny: bool = False, *, device="cpu", dtype: torch.dtype | None = None, seed: int = 1):
    """SD 1.4's ``AutoencoderKL`` with random weights."""
    from diffusers import AutoencoderKL

    return _build(lambda: AutoencoderKL(**config("sd14/vae", tiny)), seed, device, dtype)


def build_sd14_text_encoder(tiny: bool = False, *, device="cpu", dtype: torch.dtype | None = None, seed: int = 2):
    """SD 1.4's ``CLIPTextModel`` (CLIP ViT-L/14's text tower) with random weights."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return _build(lambda: CLIPTextModel(CLIPTextConfig(**config("sd14/text_encoder", tiny))), seed, device, dtype)


def sd14_scheduler():
    """SD 1.4's ``PNDMScheduler`` (scaled-linear betas 0.00085 .. 0.012, 1000 steps)."""
    from diffusers import PNDMScheduler

    return PNDMScheduler.from_config({k: v for k, v in SD14_SCHEDULER.items() if k != "_class_name"})


def build_sd14(tiny: bool = False, *, device="cpu", dtype: torch.dtype | None = None, seed: int = 0):
    """SD 1.4 as a :class:`~diffxai.models.sd.SDModel` (random U-Net, VAE and text encoder, the
    generated tokenizer, the PNDM scheduler); what a loaded SD 1.4 would be, without a file."""
    from diffxai.models.sd import SDModel

    return SDModel(
        unet=build_sd14_unet(tiny, device=device, dtype=dtype, seed=seed),
        vae=build_sd14_vae(tiny, device=device, dtype=dtype, seed=seed + 1),
        text_encoder=build_sd14_text_encoder(tiny, device=device, dtype=dtype, seed=seed + 2),
        tokenizer=build_tokenizer(),
        scheduler=sd14_scheduler(),
        source="realsize:sd14" + ("-tiny" if tiny else ""),
    )


def build_ddpm_cat_256(tiny: bool = False, *, device="cpu", dtype: torch.dtype | None = None, seed: int = 0):
    """``google/ddpm-cat-256`` as a :class:`~diffxai.models.pixel.DiffusionModel` (random U-Net,
    its DDPM scheduler; unconditional)."""
    from diffusers import DDPMScheduler, UNet2DModel

    from diffxai.models.pixel import DiffusionModel

    unet = _build(lambda: UNet2DModel(**config("ddpm-cat-256/unet", tiny)), seed, device, dtype)
    sched = DDPMScheduler.from_config({k: v for k, v in DDPM_CAT_256_SCHEDULER.items() if k != "_class_name"})
    return DiffusionModel(unet=unet, scheduler=sched, null_label=None, source="realsize:ddpm-cat-256")


def build_resnet(arch: str = "resnet18", *, device="cpu", seed: int = 0, num_classes: int = 1000) -> torch.nn.Module:
    """A torchvision ``resnet18`` / ``resnet50`` (any ``torchvision.models`` name) with random
    weights (torchvision's own initialisation), in eval mode."""
    import torchvision

    return _build(lambda: torchvision.models.get_model(arch, weights=None, num_classes=num_classes), seed, device, None)


def count_parameters(part: str, tiny: bool = False) -> int:
    """Parameters of one network (a key of :data:`PUBLISHED_PARAMETERS`), built on the ``meta``
    device: nothing is allocated, so the full size costs well under a second."""
    builders = {
        "sd14/unet": lambda: build_sd14_unet(tiny, device="meta"),
        "sd14/vae": lambda: build_sd14_vae(tiny, device="meta"),
        "sd14/text_encoder": lambda: build_sd14_text_encoder(tiny, device="meta"),
        "ddpm-cat-256/unet": lambda: build_ddpm_cat_256(tiny, device="meta").unet,
        "resnet18": lambda: build_resnet("resnet18", device="meta"),
        "resnet50": lambda: build_resnet("resnet50", device="meta"),
    }
    if part not in builders:
        raise DiffxaiError("realsize", f"unknown network {part!r} (use one of {', '.join(builders)})")
    return sum(p.numel() for p in builders[part]().parameters())


def state_bytes(part: str, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of one network's saved weights (floating tensors in ``dtype``), from a ``meta`` build:
    the safetensors file is this plus a small header."""
    builders = {
        "sd14/unet": lambda: build_sd14_unet(device="meta"),
        "sd14/vae": lambda: build_sd14_vae(device="meta"),
        "sd14/text_encoder": lambda: build_sd14_text_encoder(device="meta"),
        "ddpm-cat-256/unet": lambda: build_ddpm_cat_256(device="meta").unet,
        "resnet18": lambda: build_resnet("resnet18", device="meta"),
        "resnet50": lambda: build_resnet("resnet50", device="meta"),
    }
    size = 0
    for t in builders[part]().state_dict().values():
        item = torch.empty((), dtype=dtype).element_size() if t.is_floating_point() else t.element_size()
        size += t.numel() * item
    return size


# --------------------------------------------------------------------------------------------
# Saving: the same layouts as the real checkpoints
# --------------------------------------------------------------------------------------------


def save_sd14(path: str | Path, tiny: bool = False, *, dtype: torch.dtype = torch.float32, seed: int = 0) -> Path:
    """Write a ``StableDiffusionPipeline`` directory (``model_index.json``, ``unet/``, ``vae/``,
    ``text_encoder/``, ``tokenizer/`` with ``vocab.json`` + ``merges.txt``, ``scheduler/``;
    safetensors weights in ``dtype``) that :func:`diffxai.models.sd.load_sd` reads offline."""
    from diffusers import StableDiffusionPipeline

    path = Path(path)
    sd = build_sd14(tiny, dtype=dtype, seed=seed)
    pipe = StableDiffusionPipeline(
        vae=sd.vae,
        text_encoder=sd.text_encoder,
        tokenizer=sd.tokenizer,
        unet=sd.unet,
        scheduler=sd.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    write_tokenizer_files(path / "tokenizer")  # the files the real checkpoint ships, beside tokenizer.json
    return path


def save_ddpm_cat_256(path: str | Path, tiny: bool = False, *, seed: int = 0) -> Path:
    """Write a ``DDPMPipeline`` directory (``unet/``, ``scheduler/``; float32 safetensors, as the
    published checkpoint) that :func:`diffxai.models.pixel.load_diffusion` reads offline."""
    from diffusers import DDPMPipeline

    path = Path(path)
    model = build_ddpm_cat_256(tiny, seed=seed)
    DDPMPipeline(unet=model.unet, scheduler=model.scheduler).save_pretrained(path, safe_serialization=True)
    return path


def save_resnet(path: str | Path, arch: str = "resnet18", *, seed: int = 0) -> Path:
    """Write a torchvision ``arch``'s random state dict as safetensors (float32), the format of
    ``models.classifier: {source: state_dict, arch: ..., path: ...}``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = build_resnet(arch, seed=seed)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata={"arch": arch})
    return path


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def build_checkpoints(
    outdir: str | Path,
    only: Sequence[str] | None = None,
    *,
    tiny: bool = False,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
) -> dict[str, Path]:
    """Write the checkpoints named in ``only`` (default: all of :data:`CHECKPOINTS`) under ``outdir``:
    ``sd14/`` (weights in ``dtype``), ``ddpm-cat-256/``, ``resnet18.safetensors``,
    ``resnet50.safetensors``. Returns ``{name: path}``."""
    names = list(CHECKPOINTS) if not only else list(only)
    unknown = [n for n in names if n not in CHECKPOINTS]
    if unknown:
        raise DiffxaiError("--only", f"unknown checkpoint {unknown[0]!r} (use {', '.join(CHECKPOINTS)})")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name in names:
        t0 = time.perf_counter()
        if name == "sd14":
            path = save_sd14(out / "sd14", tiny, dtype=dtype, seed=seed)
        elif name == "ddpm-cat-256":
            path = save_ddpm_cat_256(out / "ddpm-cat-256", tiny, seed=seed)
        else:
            path = save_resnet(out / f"{name}.safetensors", name, seed=seed)
        written[name] = path
        if log:
            log(f"{name}: {path} ({_folder_bytes(path) / 2**20:.1f} MiB, {time.perf_counter() - t0:.1f} s)")
    return written


# --------------------------------------------------------------------------------------------
# Real photos that ship with scikit-image
# --------------------------------------------------------------------------------------------

#: ``config/imagenet_cats.yaml``'s classes; scikit-image ships one cat photo (``chelsea``), so each
#: class folder gets it (and its mirror image)
CAT_CLASSES: dict[str, tuple[str, ...]] = {
    "persian_cat": ("chelsea",),
    "siamese_cat": ("chelsea",),
    "egyptian_cat": ("chelsea",),
    "tiger": ("chelsea",),
}


def write_photo_folders(
    root: str | Path, classes: dict[str, Sequence[str]] | None = None, *, mirror: bool = True
) -> dict[str, list[Path]]:
    """One folder per class under ``root`` with scikit-image photos as PNG.

    Args:
        classes: ``{class_name: [photo, ...]}``, photos named as ``skimage.data`` functions
            (``chelsea``, ``coffee``, ``astronaut``, ``rocket``, ``motorcycle_left``, ...; colour
            or grey); default :data:`CAT_CLASSES` (the layout ``config/imagenet_cats.yaml`` reads:
            ``data/cats/<class>/``).
        mirror: also write each photo flipped left-right (a second image per photo).
    Returns:
        ``{class_name: [written files]}``.
    """
    import numpy as np
    from PIL import Image

    try:
        import skimage.data as skdata
    except ImportError as exc:  # pragma: no cover - scikit-image is a dependency
        raise DiffxaiError("scikit-image", f"not installed ({exc})") from None
    root = Path(root)
    written: dict[str, list[Path]] = {}
    for cls, photos in (classes or CAT_CLASSES).items():
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for photo in photos:
            fn = getattr(skdata, photo, None)
            if not callable(fn):
                raise DiffxaiError("photos", f"skimage.data has no photo {photo!r}")
            arr = np.asarray(fn())
            variants = [(photo, arr)] + ([(f"{photo}_mirror", arr[:, ::-1])] if mirror else [])
            for name, a in variants:
                f = folder / f"{name}.png"
                Image.fromarray(np.ascontiguousarray(a)).save(f)
                files.append(f)
        written[cls] = files
    return written


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="diffxai build-checkpoints",
        description="Write real-size checkpoints with random weights (no network): SD 1.4, "
        "google/ddpm-cat-256, torchvision ResNet-18/50.",
    )
    ap.add_argument("outdir", help="where to write sd14/, ddpm-cat-256/, resnet18.safetensors, resnet50.safetensors")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(CHECKPOINTS)} (default: all)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"], help="SD 1.4 weights")
    ap.add_argument("--tiny", action="store_true", help="shrunk widths, same structure (for tests)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", action="store_true", help="also write OUTDIR/images/<class>/ from scikit-image photos")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    try:
        build_checkpoints(args.outdir, only, tiny=args.tiny, dtype=getattr(torch, args.dtype), seed=args.seed)
        if args.images:
            folders = write_photo_folders(Path(args.outdir) / "images")
            print(f"images: {Path(args.outdir) / 'images'} ({', '.join(folders)})")
    except DiffxaiError as exc:
        print(f"diffxai error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # python -m diffxai.models.realsize OUTDIR ...
    sys.exit(main())
