"""TODO docstring."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn as nn


def _first_tensor(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "sample"):
        return out.sample
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"cannot take an activation from a {type(out).__name__} output")


@contextmanager
def capture_activations(module: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks that store each named sub-module's output tensor (its last call).

    The hooks are removed when the ``with`` block ends, also on errors.
    """
    store: dict[str, torch.Tensor] = {}
    mods = dict(module.named_modules())
    handles = []

    def make(name):
        def hook(_mod, _inp, out):
            store[name] = _first_tensor(out)

        return hook

    try:
        for name in layers:
            handles.append(mods[name].register_forward_hook(make(name)))
        yield store
    finally:
        for h in handles:
            h.remove()


@contextmanager
def _grad_enabled_for(params: dict[str, torch.nn.Parameter]):
    """Temporarily make exactly ``params`` require grad (restored on exit)."""
    before = {n: p.requires_grad for n, p in params.items()}
    try:
        for p in params.values():
            p.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for n, p in params.items():
            p.requires_grad_(before[n])
