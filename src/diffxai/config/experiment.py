"""The typed view of an experiment: what a config's entries mean (class specs, labels, prompts,
the model kind, the classes of each stage, T). Plain dicts in, plain values out; no torch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from diffxai.core.errors import DiffxaiError

DEMO_N_CLASSES = 10


def num_timesteps(config: dict) -> int:
    """T of the experiment's diffusion model: the demo's setting, or a local pipeline's scheduler
    config (hub ids are read only when a job loads them; until then the config's value)."""
    dm = config["models"]["diffusion"]
    sched = Path(str(dm.get("id") or "")) / "scheduler" / "scheduler_config.json"
    if dm["source"] != "demo" and sched.is_file():
        import json

        try:
            return int(json.loads(sched.read_text())["num_train_timesteps"])
        except (ValueError, KeyError, TypeError):
            raise DiffxaiError(str(sched), "cannot read num_train_timesteps") from None
    return int(dm["num_train_timesteps"])


def n_classifier_classes(config: dict) -> int:
    clf = config["models"]["classifier"]
    if clf["source"] == "demo":
        return DEMO_N_CLASSES
    return int(clf.get("num_classes", 1000))


def diffusion_label(cls: dict) -> int:
    """The diffusion model's class label for a class (defaults to the classifier index)."""
    return int(cls["label"] if cls.get("label") is not None else cls["index"])


def class_spec(config: dict, name: str, classes: list[dict] | None = None, what: str = "class") -> dict:
    """The entry named ``name`` in ``classes`` (default ``config.classes``); unknown → one-line error."""
    classes = config["classes"] if classes is None else classes
    for c in classes:
        if c["name"] == name:
            return c
    raise DiffxaiError(what, f"unknown {what} {name!r} (known: {[c['name'] for c in classes]})")


def diffusion_location(config: dict, demo_dir: str | None) -> str:
    """Where the diffusion pipeline lives: the DAG-trained demo dir or ``models.diffusion.id``."""
    if config["models"]["diffusion"]["source"] == "demo":
        assert demo_dir is not None  # demo models are always a job's `ddpm` input (rules/common.smk)
        return demo_dir
    return config["models"]["diffusion"]["id"]


def classifier_spec(config: dict, demo_path: str | None) -> dict:
    spec = dict(config["models"]["classifier"])
    if spec["source"] == "demo":
        spec["path"] = demo_path
    return spec


def select_steps(steps, n_steps: int, where: str = "config.attribution.steps") -> list[int]:
    """Trajectory step indices: ``"all"``, an int n (n evenly spaced, first and last included),
    or a list of indices (negative counts from the cleanest step)."""
    if steps == "all":
        return list(range(n_steps))
    if isinstance(steps, int) and not isinstance(steps, bool):
        return [int(s) for s in np.unique(np.rint(np.linspace(0, n_steps - 1, min(steps, n_steps))).astype(int))]
    out = []
    for s in steps:
        if not -n_steps <= s < n_steps:
            raise DiffxaiError(where, f"step {s} outside the trajectories' {n_steps} steps (0..{n_steps - 1})")
        out.append(s % n_steps)
    return sorted(dict.fromkeys(out))


def is_sd(config: Mapping) -> bool:
    return config["models"]["diffusion"].get("type", "pixel") == "stable_diffusion"


def saliency_classes(config: Mapping) -> list[str]:
    """The classes / prompts the stage explains (``saliency.classes``, default all)."""
    chosen = config["saliency"].get("classes")
    return list(chosen) if chosen else [c["name"] for c in config["classes"]]


def class_prompt(cls: dict) -> str:
    """A class's text prompt (default ``"an image of a <name>"`` with ``_`` as spaces)."""
    return cls.get("prompt") or f"an image of a {cls['name'].replace('_', ' ')}"


def diffusion_kind(config: dict) -> str:
    """The experiment's diffusion backend kind, chosen once: ``pixel`` or ``stable_diffusion``."""
    return config["models"]["diffusion"].get("type", "pixel")


def condition_key(cls: dict, kind: str):
    """What a class entry becomes for a diffusion backend of ``kind``: its diffusion label (pixel
    models) or its prompt (text-conditioned models); the backend's ``encode`` takes a list of these."""
    return class_prompt(cls) if kind == "stable_diffusion" else diffusion_label(cls)


def stage_classes(config: Mapping) -> list[dict]:
    """The classes (or prompts) of this stage: ``schedules.classes`` when set, else ``classes``.

    A stage-specific list lets a text-to-image config generate ImageNet-class prompts that the
    classifier can judge while other stages keep their own prompts.
    """
    return list(config["schedules"].get("classes") or config["classes"])


def stage_class(config: dict, name: str) -> dict:
    from diffxai.config.experiment import class_spec

    return class_spec(config, name, stage_classes(config))


def pair_id(a: str, b: str) -> str:
    """The ``{pair}`` wildcard of a class pair: ``<a>-to-<b>``."""
    return f"{a}-to-{b}"


def commitment_pairs(config: Mapping) -> list[tuple[str, str]]:
    """The class pairs of the commitment experiment; empty when it does not apply.

    ``schedules.commitment.pairs: null`` means the first two classes (both orders are separate
    pairs only when listed). Only class-conditional pixel models have a label to switch.
    """
    sec = config["schedules"]["commitment"]
    if not sec["enabled"] or is_sd(config):
        return []
    pairs = sec["pairs"]
    if pairs is None:
        names = [c["name"] for c in stage_classes(config)]
        pairs = [names[:2]] if len(names) >= 2 else []
    return [tuple(p) for p in pairs]


def eval_classes(config: dict) -> list[dict]:
    """The classes the stage evaluates (and its concepts come from): ``components.eval_classes`` or ``classes``."""
    return list(config["components"].get("eval_classes") or config["classes"])
