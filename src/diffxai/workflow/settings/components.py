"""Settings of the components stage's rules (see :mod:`diffxai.workflow.params`).

The classes a job evaluates (``components.eval_classes`` or ``classes``) go under ``classes``, the
concept's own entry under ``cls``; of a class entry a job gets its name, classifier index and what
becomes its condition (the label of a pixel model, the prompt of Stable Diffusion).
"""

from __future__ import annotations

from collections.abc import Mapping

from diffxai.config.experiment import class_spec, eval_classes, is_sd
from diffxai.workflow.registry import builds, merge, pick
from diffxai.workflow.settings.common import (
    aggregate,
    class_entry,
    classifier,
    diffusion,
    image_class_keys,
    images,
    job,
)

EVALUATION = ("samples_per_class", "n_steps", "guidance", "batch_size", "grid_per_class")


def _condition_keys(config: Mapping, cls: Mapping) -> tuple[str, ...]:
    """The keys of a class entry that ``condition_key`` reads besides its name: the prompt (Stable
    Diffusion), or the label and, when it has none, the classifier index (pixel models)."""
    if is_sd(config):
        return ("prompt",)
    return ("label",) if cls.get("label") is not None else ("label", "index")


def _classes(config: Mapping) -> list[dict]:
    """The evaluated classes: name, classifier index and condition keys of each."""
    return [{k: c[k] for k in ("name", "index", *_condition_keys(config, c)) if k in c} for c in eval_classes(config)]


def _model(config: Mapping) -> dict:
    """What loading the models and sampling read: the classifier that judges the samples
    (``components.classifier``, or ``models.classifier`` when that is unset), the diffusion model,
    ``data.channels`` (checked against a pixel U-Net) and, for Stable Diffusion,
    ``components.sd_scheduler``."""
    sd = is_sd(config)
    return merge(
        job(config),
        classifier(config, "components"),
        diffusion(config, "type"),
        pick(config, "components.sd_scheduler") if sd else pick(config, "data.channels"),
        pick(config, *(f"components.evaluation.{k}" for k in EVALUATION)),
        {"classes": _classes(config)},
    )


@builds("components_baseline")
def _baseline(config: Mapping, wc: dict) -> dict:
    return _model(config)


def _sweep(config: Mapping) -> list[dict]:
    """The sweep's edits with the one value each rule reads (``rho`` or ``k``)."""
    return [
        {"rule": p["rule"], **({"rho": p["rho"]} if p["rule"] == "per_row" else {"k": p["k"]})}
        for p in config["components"]["sweep"]
    ]


@builds("components_concept")
def _concept(config: Mapping, wc: dict) -> dict:
    cc = config["components"]
    keys = [
        "components.parameters",
        "components.objective",
        "components.amplify_images",
        "components.top_fraction",
        "components.save_attributions",
        "components.counterfactual.n_random",
        "components.counterfactual.n_top",
    ]
    if cc["counterfactual"]["n_random"] + cc["counterfactual"]["n_top"] > 0:
        keys.append("components.counterfactual.n_items")
    real = cc["amplify_images"] == "real"
    cls = class_spec(config, wc["concept"], eval_classes(config), what="concept")
    entry = ("name", *_condition_keys(config, cls), *(image_class_keys(config) if real else ()))
    return merge(
        _model(config),
        pick(config, *keys),
        {"components": {"sweep": _sweep(config)}},
        images(config) if real else {},
        class_entry(config, wc["concept"], *entry, classes=eval_classes(config), what="concept"),
    )


@builds("components_aggregate")
def _aggregate(config: Mapping, wc: dict) -> dict:
    return aggregate(config)


@builds("components_plot")
def _plot(config: Mapping, wc: dict) -> dict:
    return merge(pick(config, "plots.dpi"), {"class_names": [c["name"] for c in eval_classes(config)]})
