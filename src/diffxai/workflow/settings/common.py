"""Pieces shared by several rules' settings."""

from __future__ import annotations

from collections.abc import Mapping

from diffxai.config.experiment import class_spec, stage_classifier
from diffxai.workflow.registry import merge, pick


def job(config: Mapping, threads: int | None = None, tables: bool = True) -> dict:
    """What every network job reads: device, seed, its torch threads (``config.threads`` unless
    given) and, when it writes tables (``tables``), the experiment name of their provenance."""
    return merge(
        pick(config, "device", "seed", *(["experiment"] if tables else [])),
        {"threads": int(config["threads"] if threads is None else threads)},
    )


def aggregate(config: Mapping) -> dict:
    """What a table-concatenating job reads (provenance only)."""
    return pick(config, "seed", "experiment")


def one_class(config: Mapping, name: str, classes: list | None = None, what: str = "class") -> dict:
    """``{"cls": <the class entry named name>}`` (so a job never sees the other classes)."""
    return {"cls": dict(class_spec(config, name, classes, what=what))}


#: what :func:`diffxai.models.classifiers.load_classifier` reads, per source (and ``preprocess``
#: when it is set: unset, a torchvision model's is its weights' own, given by arch and weights)
CLASSIFIER_KEYS = {
    "demo": ("source",),
    "torchvision": ("source", "arch", "weights"),
    "state_dict": ("source", "arch", "path", "num_classes"),
}


def classifier(config: Mapping, stage: str | None = None) -> dict:
    """The classifier as a job that loads it reads it (never its training): ``models.classifier``,
    or the stage's own ``<stage>.classifier`` when it names one (``stage_classifier``)."""
    c = stage_classifier(config, stage)
    keys = CLASSIFIER_KEYS[c["source"]]
    if c["source"] != "demo" and c.get("preprocess") is not None:
        keys += ("preprocess",)
    spec = {k: c[k] for k in keys}
    own = stage is not None and c is not config["models"]["classifier"]
    return {str(stage): {"classifier": spec}} if own else {"models": {"classifier": spec}}


def diffusion(config: Mapping, *extra: str) -> dict:
    """``models.diffusion`` as a job that loads the model reads it: its source, and its id unless
    it is the DAG-trained demo (plus ``extra`` keys, e.g. ``type``)."""
    d = config["models"]["diffusion"]
    keys = ("source",) if d["source"] == "demo" else ("source", "id")
    return {"models": {"diffusion": {k: d[k] for k in keys + extra}}}


def images(config: Mapping, channels: bool = True) -> dict:
    """``data`` as :func:`diffxai.io.images.class_images` reads it (digits or a folder)."""
    keys = ["data.source", "data.n_images", "data.image_size"]
    if config["data"]["source"] == "folder":
        keys += ["data.root"] if config["data"].get("root") else []
    if channels:
        keys.append("data.channels")
    return pick(config, *keys)


def class_entry(config: Mapping, name: str, *keys: str, classes: list | None = None, what: str = "class") -> dict:
    """``{"cls": {...}}``: the keys a job reads of the class entry named ``name``."""
    c = class_spec(config, name, classes, what=what)
    return {"cls": {k: c[k] for k in keys if k in c}}


def image_class_keys(config: Mapping) -> tuple[str, ...]:
    """The class-entry keys that :func:`diffxai.io.images.class_images` reads."""
    return ("name", "index") if config["data"]["source"] == "digits" else ("name", "index", "folder")
