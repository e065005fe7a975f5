"""Named tensors as safetensors files with JSON-encoded metadata, written atomically; never pickles."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from diffxai.io.atomic import _atomic_target


def save_arrays(path: str | Path, arrays: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    """Save named tensors as safetensors (contiguous CPU copies), JSON-encoded metadata, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = _atomic_target(path)
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in arrays.items()}
        save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in (meta or {}).items()})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_arrays(
    path: str | Path, head: Mapping[str, tuple[int, ...]] | None = None
) -> tuple[dict[str, torch.Tensor], dict]:
    """Inverse of :func:`save_arrays`: ``(tensors, metadata)``.

    ``head`` maps a tensor name to the lengths of its leading dimensions to read (e.g.
    ``{"x_t": (4, 1)}``: the first 4 images and the first draw), so a large file is read only as
    far as it is needed."""
    from safetensors import safe_open

    head = dict(head or {})
    out = {}
    with safe_open(str(path), "pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        for k in f.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
            out[k] = f.get_slice(k)[tuple(slice(0, n) for n in head[k])] if k in head else f.get_tensor(k)
    return out, meta
