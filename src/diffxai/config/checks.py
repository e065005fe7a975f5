"""Every check of a config, before any job: the schema, then what it cannot express (class
indices against the classifier, steps against the model's T, schedules, concepts, files, what
the diffusion model can do).

One function, :func:`check_config`, serves the Snakefile and ``diffxai check``. Each failure is
a :class:`DiffxaiError` whose one line names the field or file. No torch: planning a run never
imports it."""

from __future__ import annotations

from pathlib import Path

from diffxai.config.captum_methods import check_methods
from diffxai.config.experiment import (
    DEMO_N_CLASSES,
    commitment_pairs,
    diffusion_conditional,
    diffusion_label,
    eval_classes,
    is_sd,
    n_classifier_classes,
    num_timesteps,
    select_steps,
    stage_classes,
)
from diffxai.config.load import SCHEMA_PATH, apply_schema
from diffxai.core.argchecks import EDIT_RULES, check_eval_args, check_rho, check_rise_args
from diffxai.core.errors import DiffxaiError
from diffxai.core.files import class_folder
from diffxai.core.timesteps import check_schedule_args

#: every stage, in the order `rule all` lists them
ALL_STAGES = ("models", "trajectories", "likelihood", "attribution", "saliency", "schedules", "components")
#: the stages that need a diffusion model that takes a condition (a class label or a prompt)
CONDITIONAL_STAGES = ("components",)


def validate_config(config: dict, schema_path: str | Path = SCHEMA_PATH, check_files: bool = True) -> dict:
    """The schema (defaults filled in place), the cross-field checks and what the diffusion model
    can do (:func:`resolve_capabilities`); returns ``config``."""
    apply_schema(config, schema_path)
    _check_semantics(config, check_files)
    resolve_capabilities(config)
    return config


def resolve_capabilities(config: dict) -> dict:
    """Decide, before any job, what needs a class-conditional model, from what the model can do
    (:func:`~diffxai.config.experiment.diffusion_conditional`, written back to
    ``models.diffusion.conditional``): the defaults turn on only what the model supports
    (``stages: null`` = every stage it can serve; ``schedules.commitment.enabled: null`` = on for
    a class-conditional pixel model), and an explicit request it cannot serve is a one-line
    :class:`DiffxaiError` naming the key. Idempotent: a second call sees the resolved values."""
    dm = config["models"]["diffusion"]
    conditional = diffusion_conditional(config)
    dm["conditional"] = conditional
    model = "Stable Diffusion" if is_sd(config) else ("the demo DDPM" if dm["source"] == "demo" else str(dm["id"]))
    unconditional = f"{model} is unconditional (models.diffusion.conditional: false)"
    if config["stages"] is None:
        config["stages"] = [s for s in ALL_STAGES if conditional or s not in CONDITIONAL_STAGES]
        if not conditional and config["components"]["concepts"]:
            raise DiffxaiError(
                "config.components.concepts",
                f"component attribution needs a class-conditional model, and {unconditional}: remove the concepts",
            )
    elif not conditional:
        for i, stage in enumerate(config["stages"]):
            if stage in CONDITIONAL_STAGES:
                raise DiffxaiError(
                    f"config.stages[{i}]", f"{stage} needs a class-conditional model, and {unconditional}"
                )
    commit = config["schedules"]["commitment"]
    labels = conditional and not is_sd(config)  # a class label to switch
    if commit["enabled"] is None:
        commit["enabled"] = labels
        if not labels and commit["pairs"] and "schedules" in config["stages"]:
            raise DiffxaiError(
                "config.schedules.commitment.pairs",
                f"the commitment experiment switches class labels, and {_no_labels(config, unconditional)}",
            )
    elif commit["enabled"] and not labels and "schedules" in config["stages"]:
        raise DiffxaiError(
            "config.schedules.commitment.enabled",
            f"true, but the experiment switches class labels, and {_no_labels(config, unconditional)}",
        )
    tr = config["trajectories"]
    explained = {"trajectories", "likelihood", "attribution"} & set(config["stages"])
    if not conditional and tr["x0_condition"] == "class" and "x0_pred" in tr["views"] and explained:
        raise DiffxaiError("config.trajectories.x0_condition", f"class, but {unconditional}")
    return config


def _no_labels(config: dict, unconditional: str) -> str:
    return "Stable Diffusion takes prompts, not labels" if is_sd(config) else unconditional


def check_config(config: dict, check_files: bool = True) -> dict:
    """Everything the Snakefile checks before planning a job: :func:`validate_config` and every
    stage's own checks (classes, steps, schedules, concepts, ...). Used by the Snakefile and by
    ``diffxai check``, so both always agree. Raises :class:`DiffxaiError`; returns ``config``."""
    validate_config(config, check_files=check_files)
    check_attribution_config(config)
    check_schedules_config(config)
    if "saliency" in config["stages"]:
        check_saliency_config(config)
    if "components" in config["stages"] and config["components"]["concepts"]:
        check_components_config(config)
    return config


def _looks_like_hub_id(s: str) -> bool:
    return s.count("/") == 1 and not s.startswith((".", "/", "~")) and not Path(s).exists()


def _check_semantics(config: dict, check_files: bool) -> None:
    from diffxai.core.files import check_image, list_images

    names = [c["name"] for c in config["classes"]]
    seen = set()
    for i, name in enumerate(names):
        if name in seen:
            raise DiffxaiError(f"config.classes[{i}].name", f"duplicate class name {name!r}")
        seen.add(name)
    n = n_classifier_classes(config)
    for i, c in enumerate(config["classes"]):
        if c["index"] >= n:
            raise DiffxaiError(
                f"config.classes[{i}].index", f"unknown class {c['index']}: the classifier has {n} classes"
            )
    models, data = config["models"], config["data"]
    T = num_timesteps(config)
    if config["noise"]["n_levels"] > T:
        raise DiffxaiError(
            "config.noise.n_levels", f"{config['noise']['n_levels']} must be in [2, {T}] (the model's timesteps)"
        )
    if models["diffusion"]["source"] == "demo":
        if data["source"] != "digits":
            raise DiffxaiError(
                "config.models.diffusion.source", "the demo model trains on digits: set data.source: digits"
            )
        for i, c in enumerate(config["classes"]):
            if diffusion_label(c) >= DEMO_N_CLASSES:
                raise DiffxaiError(f"config.classes[{i}].label", f"unknown digit class {diffusion_label(c)}")
    else:
        dm = models["diffusion"]["id"]
        if not dm:
            raise DiffxaiError("config.models.diffusion.id", "required when source is pretrained")
        if check_files and not _looks_like_hub_id(dm) and not Path(dm).is_dir():
            raise DiffxaiError(dm, "diffusion checkpoint path does not exist")
    clf = models["classifier"]
    if clf["source"] == "demo" and data["source"] != "digits":
        raise DiffxaiError(
            "config.models.classifier.source", "the demo classifier trains on digits: set data.source: digits"
        )
    check_classifier(clf, "config.models.classifier", check_files)
    own = config["components"]["classifier"]
    if own is not None and "components" in (config["stages"] or ALL_STAGES):
        check_classifier(own, "config.components.classifier", check_files)
    if data["source"] == "folder":
        if not data["root"] and not all(c.get("folder") for c in config["classes"]):
            raise DiffxaiError("config.data.root", "required when data.source is folder")
        if check_files:
            for c in config["classes"]:
                for f in list_images(class_folder(config, c))[: data["n_images"]]:
                    check_image(f)
    if data["source"] == "digits" and data["channels"] != 1:
        raise DiffxaiError("config.data.channels", "digits have 1 channel")


def check_classifier(clf: dict, where: str, check_files: bool = True) -> None:
    """A classifier spec (``models.classifier`` or a stage's own): its checkpoint and its
    ``preprocess`` (required for a state dict, none for the demo; ``mean`` and ``std`` alike)."""
    pre = clf.get("preprocess")
    if clf["source"] == "state_dict":
        if not clf["path"]:
            raise DiffxaiError(f"{where}.path", "required when source is state_dict")
        if check_files and not Path(clf["path"]).is_file():
            raise DiffxaiError(clf["path"], "classifier checkpoint does not exist")
        if pre is None:
            raise DiffxaiError(
                f"{where}.preprocess",
                "required for source state_dict: the resize, crop, mean and std your weights were trained with "
                "(e.g. {resize: 256, crop: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}), "
                "or none (see docs/classifiers.md)",
            )
    if clf["source"] == "demo" and pre not in (None, "none"):
        raise DiffxaiError(f"{where}.preprocess", "the demo classifier is trained on [-1, 1] images: none (or unset)")
    if clf["source"] == "torchvision" and pre is None and clf.get("weights") is None:
        raise DiffxaiError(f"{where}.preprocess", "required when weights is null (no weights' transforms to use)")
    if isinstance(pre, dict):
        mean, std = pre["mean"], pre["std"]
        if (mean is None) != (std is None) or (mean is not None and len(mean) != len(std)):
            raise DiffxaiError(f"{where}.preprocess.std", f"give as many values as mean ({mean} vs {std})")
        if mean is not None and len(mean) == 2:
            raise DiffxaiError(f"{where}.preprocess.mean", f"{mean}: give 1 value (all channels) or 3 (RGB)")


def check_attribution_config(config: dict) -> None:
    """Up-front checks of ``config.attribution`` beyond the schema (methods and their parameters,
    steps within the trajectories' ``noise.n_levels`` steps)."""
    check_methods(config["attribution"]["methods"])
    select_steps(config["attribution"]["steps"], config["noise"]["n_levels"])


def check_components_config(config: dict) -> dict:
    """Validate the ``components`` section up front (one-line errors); returns it."""
    cc = config["components"]
    names = [c["name"] for c in eval_classes(config)]
    if not cc["concepts"]:
        raise DiffxaiError("config.components.concepts", "list at least one concept (a config.classes name)")
    for i, concept in enumerate(cc["concepts"]):
        if concept not in names:
            raise DiffxaiError(
                f"config.components.concepts[{i}]", f"unknown concept {concept!r} (known classes: {names})"
            )
    n = n_classifier_classes(config, "components")
    where = "config.components.eval_classes" if cc.get("eval_classes") else "config.classes"
    for i, c in enumerate(eval_classes(config)):
        if c["index"] >= n:
            raise DiffxaiError(f"{where}[{i}].index", f"unknown class {c['index']}: the classifier has {n} classes")
    if not cc["sweep"]:
        raise DiffxaiError(
            "config.components.sweep", "list at least one edit ({rule: per_row, rho: ...} or {rule: global, k: ...})"
        )
    for i, point in enumerate(cc["sweep"]):
        where = f"config.components.sweep[{i}]"
        if point["rule"] == "per_row":
            if point.get("rho") is None:
                raise DiffxaiError(f"{where}.rho", "the per_row rule needs rho in (0, 1)")
            check_rho(point["rho"], f"{where}.rho")
        elif point["rule"] == "global":
            if point.get("k") is None or int(point["k"]) < 1:
                raise DiffxaiError(f"{where}.k", "the global rule needs k >= 1")
        else:
            raise DiffxaiError(f"{where}.rule", f"unknown edit rule {point['rule']!r} (use one of {EDIT_RULES})")
    if (
        cc["amplify_images"] == "real"
        and config["models"]["diffusion"]["type"] == "stable_diffusion"
        and config["data"]["source"] != "folder"
    ):
        raise DiffxaiError(
            "config.components.amplify_images", "real images for Stable Diffusion need data.source: folder"
        )
    return cc


def check_saliency_config(config: dict) -> None:
    """Up-front checks the schema cannot express; one-line :class:`DiffxaiError`."""
    s = config["saliency"]
    names = [c["name"] for c in config["classes"]]
    for i, name in enumerate(s.get("classes") or []):
        if name not in names:
            raise DiffxaiError(f"config.saliency.classes[{i}]", f"unknown class {name!r} (config.classes has {names})")
    n, T = s["sampling_steps"], num_timesteps(config)
    if n > T:
        raise DiffxaiError("config.saliency.sampling_steps", f"{n} must be in [2, {T}] (the model's timesteps)")
    for i, step in enumerate(s["steps"]):
        if not 0 <= int(step) < n:
            raise DiffxaiError(
                f"config.saliency.steps[{i}]", f"step {step} is outside the {n}-step schedule (0..{n - 1})"
            )
    r, e = s["rise"], s["evaluation"]
    check_rise_args(r["n_masks"], r["p"], r["mask"], r["grid_size"], r["batch_size"])
    check_eval_args(e["n_points"], e["score"], e["target"])
    if not is_sd(config) and s["guidance"] < 0:
        raise DiffxaiError("config.saliency.guidance", f"{s['guidance']} must be >= 0")
    if is_sd(config) and not config["models"]["diffusion"].get("id"):
        raise DiffxaiError("config.models.diffusion.id", "Stable Diffusion needs a hub id or local pipeline directory")


def check_schedules_config(config: dict) -> None:
    """Up-front checks (parse time): every schedule valid for T, unique names, known pair classes.

    Raises a one-line :class:`DiffxaiError` naming the field and value.
    """
    sec = config["schedules"]
    T = int(config["models"]["diffusion"]["num_train_timesteps"])
    seen = set()
    for i, s in enumerate(sec["schedules"]):
        where = f"config.schedules.schedules[{i}]"
        if s["name"] in seen:
            raise DiffxaiError(f"{where}.name", f"duplicate schedule name {s['name']!r}")
        seen.add(s["name"])
        check_schedule_args(s["kind"], T, s["n_steps"], s.get("gamma"), where)
    classes = stage_classes(config)
    names = [c["name"] for c in classes]
    if len(set(names)) != len(names):
        raise DiffxaiError("config.schedules.classes", f"duplicate class names in {names}")
    n_out = n_classifier_classes(config)
    for i, c in enumerate(sec.get("classes") or []):
        if c["index"] >= n_out:
            raise DiffxaiError(
                f"config.schedules.classes[{i}].index",
                f"unknown class {c['index']}: the classifier has {n_out} classes",
            )
        if config["models"]["diffusion"]["source"] == "demo" and diffusion_label(c) >= n_out:
            raise DiffxaiError(f"config.schedules.classes[{i}].label", f"unknown digit class {diffusion_label(c)}")
    for i, pair in enumerate(sec["commitment"]["pairs"] or []):
        for j, c in enumerate(pair):
            if c not in names:
                raise DiffxaiError(
                    f"config.schedules.commitment.pairs[{i}][{j}]", f"unknown class {c!r} (classes: {names})"
                )
        if pair[0] == pair[1]:
            raise DiffxaiError(
                f"config.schedules.commitment.pairs[{i}]", f"a pair needs two different classes, got {pair}"
            )
    for i, name in enumerate(sec["commitment"]["schedules"] if commitment_pairs(config) else []):
        if name not in seen:
            raise DiffxaiError(
                f"config.schedules.commitment.schedules[{i}]", f"unknown schedule {name!r} (have {sorted(seen)})"
            )
