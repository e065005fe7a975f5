"""The registry of per-rule settings builders and the helpers builders are made of (torch-free).

:mod:`diffxai.workflow.settings` registers one builder per rule here; :mod:`diffxai.workflow.params`
turns a builder's output into a rule's canonical settings and batch sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Builder = Callable[[dict, dict], dict]
BUILDERS: dict[str, Builder] = {}


def builds(*rules: str) -> Callable[[Builder], Builder]:
    """Register a params builder ``f(config, wildcards) -> dict`` for ``rules``."""

    def register(fn: Builder) -> Builder:
        for r in rules:
            if r in BUILDERS:
                raise ValueError(f"params of rule {r!r} built twice")
            BUILDERS[r] = fn
        return fn

    return register


def canonical(obj: Any) -> Any:
    """Sorted keys at every level, tuples as lists; plain dict/list/scalars only."""
    if isinstance(obj, Mapping):
        return {str(k): canonical(obj[k]) for k in sorted(obj, key=str)}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


def pick(config: Mapping, *paths: str) -> dict:
    """The nested sub-dict of ``config`` holding the dotted ``paths`` (e.g. ``"models.diffusion.train"``)."""
    out: dict = {}
    for path in paths:
        keys = path.split(".")
        src, dst = config, out
        for k in keys[:-1]:
            src = src[k]
            dst = dst.setdefault(k, {})
        dst[keys[-1]] = src[keys[-1]]
    return out


def merge(*parts: Mapping) -> dict:
    """Deep merge of nested dicts (later parts win on leaves)."""
    out: dict = {}
    for part in parts:
        for k, v in part.items():
            if isinstance(v, Mapping) and isinstance(out.get(k), dict):
                out[k] = merge(out[k], v)
            else:
                out[k] = dict(v) if isinstance(v, Mapping) else v
    return out
