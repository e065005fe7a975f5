"""A tiny Stable Diffusion pipeline built offline, for tests.

:func:`build_tiny_sd` writes a ``StableDiffusionPipeline`` directory (``save_pretrained`` layout,
safetensors) with randomly initialised but seeded weights: a small ``UNet2DConditionModel`` with
cross-attention (transformer) blocks at both resolutions, so ``attn1``/``attn2`` and the
feed-forward weights ``ff.net.0.proj`` / ``ff.net.2`` exist as in SD 1.x; a small ``AutoencoderKL``
(4 latent channels, downsampling factor 2); a small ``CLIPTextModel``; a ``CLIPTokenizer`` made
from a handwritten ``vocab.json`` + ``merges.txt``; and an SD-style ``DPMSolverMultistepScheduler``
(scaled-linear betas, 1000 training steps).

Sizes: latents ``(4, 8, 8)``, images ``(3, 16, 16)``, text embeddings ``(16, 32)``. Building takes
well under a second; loading with :func:`diffxai.sd.load_sd` and sampling a few steps too.

Use from a test file (pytest puts ``tests/`` on ``sys.path``)::

    from tiny_sd import build_tiny_sd
    path = build_tiny_sd(tmp_path / "tiny-sd")
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

#: Words that get whole-word tokens (any other lowercase ASCII text falls back to characters).
WORDS = [
    "a",
    "an",
    "the",
    "of",
    "in",
    "on",
    "with",
    "and",
    "photo",
    "image",
    "picture",
    "painting",
    "style",
    "cat",
    "dog",
    "church",
    "fish",
    "tench",
    "golf",
    "ball",
    "truck",
    "parachute",
    "tiger",
    "persian",
    "siamese",
    "egyptian",
    "car",
    "red",
    "blue",
    "green",
    "house",
    "tree",
    "person",
    "man",
    "woman",
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "digit",
]
MAX_LENGTH = 16  # tokenizer.model_max_length == text encoder max_position_embeddings
SAMPLE_SIZE = 8  # latent side; images are 2x larger (VAE with two blocks)


def _vocab_and_merges(words=WORDS) -> tuple[dict[str, int], list[str]]:
    """A CLIP-style BPE vocabulary: special tokens, single characters (plain and ``</w>``-final),
    and left-to-right merges that build every word in ``words`` (every merge result is in the vocab)."""
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'-")
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    seen = set(tokens)
    for word in words:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        left = pieces[0]
        for right in pieces[1:]:
            merged = left + right
            if merged not in seen:
                merges.append(f"{left} {right}")
                tokens.append(merged)
                seen.add(merged)
            left = merged
    return {tok: i for i, tok in enumerate(tokens)}, merges


def build_tokenizer(max_length: int = MAX_LENGTH):
    """A ``CLIPTokenizer`` loaded from a freshly written ``vocab.json`` + ``merges.txt``."""
    from transformers import CLIPTokenizer

    vocab, merges = _vocab_and_merges()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        return CLIPTokenizer.from_pretrained(tmp, model_max_length=max_length)


def build_tiny_sd(path: str | Path, seed: int = 0) -> Path:
    """Build and save a tiny ``StableDiffusionPipeline`` at ``path``; returns ``Path(path)``.

    No network is used. Weights are drawn from ``torch.manual_seed(seed)`` (the global RNG state
    is restored afterwards), so the same ``seed`` writes the same checkpoint.
    """
    from diffusers import (
        AutoencoderKL,
        DPMSolverMultistepScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    path = Path(path)
    tokenizer = build_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=SAMPLE_SIZE,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=8,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(16, 32),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=8,
            sample_size=2 * SAMPLE_SIZE,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=MAX_LENGTH,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                projection_dim=32,
            )
        )
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        algorithm_type="dpmsolver++",
        solver_order=2,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


if __name__ == "__main__":  # python tests/tiny_sd.py OUT_DIR
    import sys

    print(build_tiny_sd(sys.argv[1] if len(sys.argv) > 1 else "tiny-sd"))
