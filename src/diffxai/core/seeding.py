"""Keyed seeds: every random draw comes from a generator seeded by ``(seed, *keys)`` (e.g. stage,
class, image, draw), so a result depends on its own keys only, never on batch size or order."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *keys: object) -> int:
    """Return a 63-bit seed derived from ``seed`` and ``keys`` (stable across runs and machines)."""
    text = "\x1f".join([str(int(seed))] + [str(k) for k in keys])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def make_generator(seed: int, *keys: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`derive_seed` of the keys."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, *keys))
    return g
