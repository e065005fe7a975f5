"""Settings of the schedules stage's rules (see :mod:`diffxai.workflow.params`).

The two network rules read the same model settings (:func:`_model`): the diffusion model with its
kind, the classifier, the data's channel count, the sampler and, for Stable Diffusion only,
``schedules.sd``. A generation job gets its own schedule entry (``schedule``) and the stage's
classes (``classes``: ``schedules.classes`` or ``classes``); a commitment job gets its pair's two
class entries (``pair.a``, ``pair.b``) and the commitment schedules' entries, with
``schedules.commitment.n_seeds`` resolved (``null`` = ``schedules.n_seeds``).
"""

from __future__ import annotations

from collections.abc import Mapping

from diffxai.config.experiment import diffusion_kind, pair_id, stage_class, stage_classes
from diffxai.workflow.registry import builds, merge, pick
from diffxai.workflow.settings.common import aggregate, classifier, diffusion, job


def _class_keys(config: Mapping, cls: Mapping) -> dict:
    """What the drivers read of a class entry: its name, classifier index and condition key (the
    diffusion label of a pixel model, the prompt of a text-conditioned one, when set)."""
    extra = "prompt" if diffusion_kind(config) == "stable_diffusion" else "label"
    return {k: cls[k] for k in ("name", "index", extra) if cls.get(k) is not None}


def _model(config: Mapping) -> dict:
    """The model and sampler settings of both network rules."""
    sd = ["schedules.sd"] if diffusion_kind(config) == "stable_diffusion" else []
    return merge(
        job(config),
        diffusion(config, "type"),
        classifier(config),
        pick(config, "data.channels", "likelihood.batch_size", "schedules.guidance", "schedules.sampler"),
        pick(config, "schedules.batch_size", *sd),
    )


@builds("schedules_generate")
def _generate(config: Mapping, wc: dict) -> dict:
    entry = next(s for s in config["schedules"]["schedules"] if s["name"] == wc["schedule"])
    return merge(
        _model(config),
        pick(config, "schedules.n_seeds"),
        {"schedule": dict(entry), "classes": [_class_keys(config, c) for c in stage_classes(config)]},
    )


@builds("schedules_commitment")
def _commitment(config: Mapping, wc: dict) -> dict:
    sec = config["schedules"]
    names = [c["name"] for c in stage_classes(config)]
    a, b = next((a, b) for a in names for b in names if pair_id(a, b) == wc["pair"])
    chosen = list(sec["commitment"]["schedules"])
    commitment = {
        "schedules": chosen,
        "n_seeds": sec["commitment"]["n_seeds"] or sec["n_seeds"],
        "switch_stride": sec["commitment"]["switch_stride"],
    }
    entries = [dict(s) for s in sec["schedules"] if s["name"] in chosen]
    pair = {"a": _class_keys(config, stage_class(config, a)), "b": _class_keys(config, stage_class(config, b))}
    return merge(_model(config), {"schedules": {"schedules": entries, "commitment": commitment}, "pair": pair})


@builds("schedules_aggregate")
def _aggregate(config: Mapping, wc: dict) -> dict:
    return merge(aggregate(config), pick(config, "schedules.lowpass_sigma"))


@builds("schedules_plot")
def _plot(config: Mapping, wc: dict) -> dict:
    return pick(config, "seed", "plots.dpi", "schedules.plot_seeds", "schedules.lowpass_sigma")
