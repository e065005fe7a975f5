"""Configuration: JSON-schema validation with defaults, and up-front semantic checks.

:func:`validate_config` fills defaults in place and raises :class:`DiffxaiError` with one line
naming the field, e.g. ``config.noise.n_levels: 'x' is not of type 'integer'``. The Snakefile
calls it before any job is planned, so bad input never starts a job.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from diffxai.errors import DiffxaiError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"
DEMO_N_CLASSES = 10


def _field(path) -> str:
    out = "config"
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _validator(schema: dict):
    import jsonschema

    base = jsonschema.Draft7Validator

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    import copy

                    instance[name] = copy.deepcopy(sub["default"])
            # Schema order, not file order: rules pass config sections as params, and Snakemake
            # compares them by repr, so reordering keys in a config file must not rerun jobs.
            # Keys the schema does not name (user-keyed maps such as methods) keep their order.
            ordered = [k for k in properties if k in instance] + [k for k in instance if k not in properties]
            if ordered != list(instance):
                items = {k: instance[k] for k in ordered}
                instance.clear()
                instance.update(items)
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})(schema)


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def load_config(path: str | Path) -> dict:
    """Read a YAML config; malformed YAML is a one-line error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DiffxaiError(str(path), "config file does not exist")
    try:
        with open(path) as f:
            cfg = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise DiffxaiError(where, f"malformed YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(cfg, dict):
        raise DiffxaiError(str(path), "config must be a YAML mapping")
    return cfg


def validate_config(config: dict, schema_path: str | Path = SCHEMA_PATH, check_files: bool = True) -> dict:
    """Fill defaults and check ``config`` (in place); returns it. Raises :class:`DiffxaiError`."""
    validator = _validator(load_schema(schema_path))
    # Fill defaults in two passes: nested defaults appear only after their parents exist.
    for _ in range(2):
        errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        err = errors[0]
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            allowed = ", ".join(sorted(err.schema.get("properties", {})))
            raise DiffxaiError(_field(list(err.absolute_path) + [extra[0]]), f"unknown key (allowed: {allowed})")
        msg = err.message if len(err.message) < 200 else err.message[:200] + "..."
        raise DiffxaiError(_field(err.absolute_path), msg)
    _check_semantics(config, check_files)
    return config


def check_config(config: dict, check_files: bool = True) -> dict:
    """Everything the Snakefile checks before planning a job: :func:`validate_config` and every
    stage's own checks (classes, steps, schedules, concepts, ...). Used by the Snakefile and by
    ``diffxai check``, so both always agree. Raises :class:`DiffxaiError`; returns ``config``."""
    from diffxai.pipeline_attribution import check_attribution_config
    from diffxai.pipeline_components import check_components_config
    from diffxai.pipeline_saliency import check_saliency_config
    from diffxai.pipeline_schedules import check_schedules_config

    validate_config(config, check_files=check_files)
    check_attribution_config(config)
    check_schedules_config(config)
    if "saliency" in config["stages"]:
        check_saliency_config(config)
    if "components" in config["stages"] and config["components"]["concepts"]:
        check_components_config(config)
    return config


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


def class_folder(config: dict, cls: dict) -> Path:
    if cls.get("folder"):
        return Path(cls["folder"])
    return Path(config["data"]["root"]) / cls["name"]


def diffusion_label(cls: dict) -> int:
    """The diffusion model's class label for a class (defaults to the classifier index)."""
    return int(cls["label"] if cls.get("label") is not None else cls["index"])


def _looks_like_hub_id(s: str) -> bool:
    return s.count("/") == 1 and not s.startswith((".", "/", "~")) and not Path(s).exists()


def _check_semantics(config: dict, check_files: bool) -> None:
    from diffxai.data import check_image, list_images

    names = [c["name"] for c in config["classes"]]
    seen = set()
    for i, name in enumerate(names):
        if name in seen:
            raise DiffxaiError(f"config.classes[{i}].name", f"duplicate class name {name!r}")
        seen.add(name)
    n = n_classifier_classes(config)
    for i, c in enumerate(config["classes"]):
        if c["index"] >= n:
            raise DiffxaiError(f"config.classes[{i}].index", f"unknown class {c['index']}: the classifier has {n} classes")
    models, data = config["models"], config["data"]
    T = num_timesteps(config)
    if config["noise"]["n_levels"] > T:
        raise DiffxaiError("config.noise.n_levels", f"{config['noise']['n_levels']} must be in [2, {T}] (the model's timesteps)")
    if models["diffusion"]["source"] == "demo":
        if data["source"] != "digits":
            raise DiffxaiError("config.models.diffusion.source", "the demo model trains on digits: set data.source: digits")
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
        raise DiffxaiError("config.models.classifier.source", "the demo classifier trains on digits: set data.source: digits")
    if clf["source"] == "state_dict":
        if not clf["path"]:
            raise DiffxaiError("config.models.classifier.path", "required when source is state_dict")
        if check_files and not Path(clf["path"]).is_file():
            raise DiffxaiError(clf["path"], "classifier checkpoint does not exist")
    if data["source"] == "folder":
        if not data["root"] and not all(c.get("folder") for c in config["classes"]):
            raise DiffxaiError("config.data.root", "required when data.source is folder")
        if check_files:
            for c in config["classes"]:
                for f in list_images(class_folder(config, c))[: data["n_images"]]:
                    check_image(f)
    if data["source"] == "digits" and data["channels"] != 1:
        raise DiffxaiError("config.data.channels", "digits have 1 channel")
