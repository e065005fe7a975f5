"""Reading a config file and applying the JSON schema (package data ``schema.yaml``): defaults
filled in place, one-line errors naming the field, e.g.
``config.noise.n_levels: 'x' is not of type 'integer'``. No torch."""

from __future__ import annotations

from pathlib import Path

import yaml

from diffxai.core.errors import DiffxaiError

SCHEMA_PATH = Path(__file__).resolve().parent / "schema.yaml"


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


def apply_schema(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Fill the schema's defaults into ``config`` (in place) and check it against the schema;
    returns it. Raises a one-line :class:`DiffxaiError` naming the field."""
    schema = load_schema(schema_path)
    validator = _validator(schema)
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
    return _coerce_numbers(config, schema, schema)


def _types(sub: dict) -> set[str]:
    t = sub.get("type", [])
    return {t} if isinstance(t, str) else set(t)


def _is_number_field(sub) -> bool:
    return isinstance(sub, dict) and "number" in _types(sub) and "integer" not in _types(sub)


def _coerce_numbers(instance, sub: dict, root: dict):
    """Typed settings: an integer given for a ``number`` field becomes a float (in place), so
    ``guidance: 2`` and ``guidance: 2.0`` are the same setting and rerun nothing."""
    if "$ref" in sub:
        sub = root["definitions"][sub["$ref"].split("/")[-1]]
    if isinstance(instance, dict):
        props, extra = sub.get("properties", {}), sub.get("additionalProperties")
        for k, v in list(instance.items()):
            s = props.get(k, extra if isinstance(extra, dict) else None)
            if not isinstance(s, dict):
                continue
            if isinstance(v, int) and not isinstance(v, bool) and _is_number_field(s):
                instance[k] = float(v)
            else:
                _coerce_numbers(v, s, root)
    elif isinstance(instance, list) and isinstance(sub.get("items"), dict):
        s = sub["items"]
        for i, v in enumerate(instance):
            if isinstance(v, int) and not isinstance(v, bool) and _is_number_field(s):
                instance[i] = float(v)
            else:
                _coerce_numbers(v, s, root)
    return instance
