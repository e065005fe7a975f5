"""What a job receives besides its settings, and the record of what its driver read.

Apart from :mod:`diffxai.workflow.params` on purpose: a job imports this module (through
:mod:`diffxai.workflow.jobs`), never the per-rule settings builders, so a builder is not in any
rule's code trigger. A changed builder reruns exactly the jobs whose settings it changes, through
their params; the code hash of every job would rerun them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class Execution:
    """How a job batches its work (batch sizes), handed to the driver with its settings but never a
    rerun trigger: Snakemake compares only params it can represent as builtins, and results do not
    depend on batch sizes (each batched loop is tested equal to one item at a time)."""

    def __init__(self, values: dict):
        self.values = values

    def __repr__(self) -> str:
        return f"Execution({self.values!r})"


# --------------------------------------------------------------------------------------------
# Recording which settings a driver reads (the params-exactness test)
# --------------------------------------------------------------------------------------------


class Tracked(dict):
    """A dict that records the dotted path of every key read through it (nested dicts and dicts
    inside lists are tracked too; ``[]`` stands for any list index)."""

    def __init__(self, data: Mapping, reads: set[str], prefix: str = ""):
        super().__init__()
        self._reads, self._prefix = reads, prefix
        for k, v in data.items():
            dict.__setitem__(self, k, _track(v, reads, f"{prefix}{k}"))

    def _mark(self, key) -> None:
        self._reads.add(f"{self._prefix}{key}")

    def __getitem__(self, key):
        self._mark(key)
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        self._mark(key)
        return dict.get(self, key, default)

    def __iter__(self):
        for k in dict.keys(self):
            self._mark(k)
        return dict.__iter__(self)

    def keys(self):
        for k in dict.keys(self):
            self._mark(k)
        return dict.keys(self)

    def items(self):
        return [(k, self[k]) for k in dict.keys(self)]

    def values(self):
        return [self[k] for k in dict.keys(self)]

    def untracked(self) -> dict:
        """A plain copy, read without recording (provenance hashes)."""
        return {k: _plain(v) for k, v in dict.items(self)}


def _track(v, reads, path):
    if isinstance(v, Mapping):
        return Tracked(v, reads, path + ".")
    if isinstance(v, list):
        return [_track(x, reads, path + "[]") for x in v]
    return v


def _plain(v):
    if isinstance(v, Tracked):
        return v.untracked()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def leaf_paths(obj: Any, prefix: str = "") -> set[str]:
    """Dotted paths of the leaves of nested settings (``[]`` for list elements that are dicts)."""
    out: set[str] = set()
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            sub = leaf_paths(v, f"{prefix}{k}.") if isinstance(v, (Mapping, list)) and v else set()
            out |= sub or {f"{prefix}{k}"}
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, Mapping):
                out |= leaf_paths(v, prefix.rstrip(".") + "[].")
    return out


def unread(settings: Mapping, reads: Iterable[str]) -> list[str]:
    """Leaf paths of ``settings`` that the driver never read (see :func:`leaf_paths`)."""
    reads = set(reads)
    return sorted(p for p in leaf_paths(settings) if p not in reads)
