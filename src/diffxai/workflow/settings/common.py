"""Pieces shared by several rules' settings."""

from __future__ import annotations

from collections.abc import Mapping

from diffxai.config.experiment import class_spec
from diffxai.workflow.params import merge, pick


def job(config: Mapping, threads: int | None = None) -> dict:
    """What every network job reads: device, seed, experiment name (provenance) and its torch
    threads (``config.threads`` unless given)."""
    return merge(
        pick(config, "device", "seed", "experiment"),
        {"threads": int(config["threads"] if threads is None else threads)},
    )


def aggregate(config: Mapping) -> dict:
    """What a table-concatenating job reads (provenance only)."""
    return pick(config, "seed", "experiment")


def one_class(config: Mapping, name: str, classes: list | None = None, what: str = "class") -> dict:
    """``{"cls": <the class entry named name>}`` (so a job never sees the other classes)."""
    return {"cls": dict(class_spec(config, name, classes, what=what))}
