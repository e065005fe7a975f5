"""The typed view of an experiment: what a config's entries mean (class specs, labels, prompts,
the model kind and whether it is class-conditional, the classes and classifier of each stage, T).
Plain dicts in, plain values out; no torch."""

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


def stage_classifier(config: Mapping, stage: str | None = None) -> Mapping:
    """The classifier spec a stage uses: its own ``<stage>.classifier`` when it names one (e.g.
    ``components.classifier``), else ``models.classifier``."""
    own = (config.get(stage) or {}).get("classifier") if stage else None
    return own or config["models"]["classifier"]


def n_classifier_classes(config: dict, stage: str | None = None) -> int:
    clf = stage_classifier(config, stage)
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


def classifier_spec(config: dict, demo_path: str | None, stage: str | None = None) -> dict:
    """What :func:`diffxai.models.classifiers.load_classifier` takes: the stage's classifier
    (:func:`stage_classifier`), the demo's with the DAG-trained checkpoint's path."""
    spec = dict(stage_classifier(config, stage))
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


CONDITIONAL_KEY = "config.models.diffusion.conditional"


def _unet_config_conditional(path: Path) -> bool:
    """Whether a diffusers U-Net ``config.json`` takes integer class labels (``num_class_embeds``,
    as :func:`diffxai.models.pixel.load_diffusion` reads it)."""
    import json

    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        raise DiffxaiError(str(path), "cannot read the U-Net config (not JSON)") from None
    if not isinstance(cfg, dict):
        raise DiffxaiError(str(path), "cannot read the U-Net config (not a JSON object)")
    if cfg.get("class_embed_type") and not cfg.get("num_class_embeds"):
        raise DiffxaiError(
            str(path),
            f"class_embed_type {cfg['class_embed_type']!r} (continuous class embeddings) is not supported: "
            "diffxai conditions pixel models on integer labels (num_class_embeds)",
        )
    return bool(cfg.get("num_class_embeds"))


def _cached_hub_file(repo_id: str, filename: str) -> Path | None:
    """``filename`` of hub model ``repo_id`` in the local Hugging Face cache (no network); None
    when it is not there."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover (a dependency of diffusers)
        return None
    try:
        found = try_to_load_from_cache(repo_id, filename)
    except Exception:  # an invalid repo id, an unreadable cache: treated as not cached
        return None
    return Path(found) if isinstance(found, str) else None


def read_conditional(location: str) -> tuple[bool | None, str]:
    """Whether the pixel pipeline at ``location`` (a local diffusers directory or a hub id) takes a
    class label, read from its files without torch: ``(answer, where it was read)``, or ``(None,
    why not)`` when nothing can be read. The demo's ``diffxai.json`` (its null label) comes first,
    then ``unet/config.json`` or a root ``config.json`` (``num_class_embeds``); a hub id's configs
    are read from the local Hugging Face cache only."""
    import json

    path = Path(location)
    if path.is_dir():
        meta = path / "diffxai.json"
        if meta.is_file():
            try:
                return json.loads(meta.read_text()).get("null_label") is not None, str(meta)
            except (OSError, ValueError, AttributeError):
                raise DiffxaiError(str(meta), "cannot read the model's metadata (not a JSON object)") from None
        for cfg in (path / "unet" / "config.json", path / "config.json"):
            if cfg.is_file():
                return _unet_config_conditional(cfg), str(cfg)
        return None, f"{location} has no unet/config.json"
    if path.exists() or location.startswith((".", "/", "~")) or location.count("/") != 1:
        return None, f"{location} is not a diffusers pipeline directory"
    for name in ("unet/config.json", "config.json"):
        cached = _cached_hub_file(location, name)
        if cached is not None:
            return _unet_config_conditional(cached), f"{location}/{name} in the Hugging Face cache"
    return None, f"{location} is not in the local Hugging Face cache"


def diffusion_conditional(config: Mapping) -> bool:
    """Whether the experiment's diffusion model takes a condition (a class label or a prompt), known
    before any job: the demo (class labels) and Stable Diffusion (prompts) always do; a pixel
    pipeline says so in its files (:func:`read_conditional`), or ``models.diffusion.conditional``
    states it. Unreadable with ``auto``, or a stated value its files contradict, is a one-line
    :class:`DiffxaiError` naming the key."""
    dm = config["models"]["diffusion"]
    stated = dm.get("conditional", "auto")
    if dm["source"] == "demo" or is_sd(config):
        if stated is False:
            what = "the demo DDPM is class-conditional" if dm["source"] == "demo" else "Stable Diffusion takes prompts"
            raise DiffxaiError(CONDITIONAL_KEY, f"false, but {what}")
        return True
    found, where = read_conditional(str(dm.get("id") or ""))
    if stated == "auto":
        if found is None:
            raise DiffxaiError(
                CONDITIONAL_KEY,
                f"auto cannot tell whether {dm['id']} takes a class label ({where}): set it to true or false",
            )
        return found
    if found is not None and found != stated:
        has = "takes class labels" if found else "has no class embedding"
        raise DiffxaiError(CONDITIONAL_KEY, f"{str(stated).lower()}, but {where} says the model {has}")
    return bool(stated)


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
