"""Settings of the explorer page's rule, ``report_explorer`` (:func:`diffxai.plots.explorer.build`)."""

from __future__ import annotations

from collections.abc import Mapping

from diffxai.workflow.registry import builds


@builds("report_explorer")
def _explorer(config: Mapping, wc: dict) -> dict:
    """The page's title (``experiment``), the class picker's order and ``explorer`` (its
    ``quality`` only for a lossy ``image_format``: PNG never reads it)."""
    ex = dict(config["explorer"])
    if ex["image_format"] == "png":
        ex.pop("quality")
    return {
        "experiment": config["experiment"],
        "class_names": [c["name"] for c in config["classes"]],
        "explorer": ex,
    }
