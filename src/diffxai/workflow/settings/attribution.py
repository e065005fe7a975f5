"""Settings of the attribution stage's rules (see :mod:`diffxai.workflow.params`)."""

from __future__ import annotations

from collections.abc import Mapping

from diffxai.workflow.registry import builds, merge, pick
from diffxai.workflow.settings.common import aggregate, class_entry, classifier, job


def _method(config: Mapping, name: str) -> dict:
    """The job's method: its name and its ``attribution.methods`` entry (never the other methods')."""
    return merge({"method": name}, pick(config, f"attribution.methods.{name}"))


@builds("attribution_compute")
def _compute(config: Mapping, wc: dict) -> dict:
    keys = ("steps", "max_images", "draws", "views", "output", "store_dtype", "faithfulness")
    return merge(
        job(config),
        classifier(config),
        _method(config, wc["method"]),
        pick(config, *(f"attribution.{k}" for k in keys)),
        class_entry(config, wc["cls"], "name", "index"),
    )


@builds("attribution_sanity")
def _sanity(config: Mapping, wc: dict) -> dict:
    return merge(
        job(config),
        classifier(config),
        _method(config, wc["method"]),
        pick(config, "attribution.output", "attribution.sanity"),
    )


@builds("attribution_aggregate")
def _aggregate(config: Mapping, wc: dict) -> dict:
    return aggregate(config)


@builds("attribution_plot_maps")
def _plot_maps(config: Mapping, wc: dict) -> dict:
    return merge(
        pick(config, "attribution.plot_images", "plots.dpi"), {"class_names": [c["name"] for c in config["classes"]]}
    )


@builds("attribution_plot")
def _plot(config: Mapping, wc: dict) -> dict:
    return merge(pick(config, "plots.dpi"), {"class_names": [c["name"] for c in config["classes"]]})
