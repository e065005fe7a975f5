"""Context-managed module hooks: hooks exist only inside a ``with`` block and are removed when it
ends, also on errors (so a model never keeps a hook after the call that needed it).

* :func:`capture_activations`: the output tensor of named sub-modules (DF-CAM's activations).
* :func:`grad_enabled_for`: gradients on exactly the chosen parameters, restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn as nn


def _first_tensor(out) -> torch.Tensor:
    """The activation tensor of a module output: a tensor, a diffusers output's ``sample``, or the
    first element of a tuple (transformer blocks return ``(hidden_states, ...)``)."""
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

    Args:
        module: the model; ``layers``: names from ``module.named_modules()``.
    Yields:
        ``{name: tensor}``, filled by the forward passes run inside the block (the tensors keep
        their autograd graph, so ``torch.autograd.grad`` can differentiate with respect to them).
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
def grad_enabled_for(params: dict[str, torch.nn.Parameter]):
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
