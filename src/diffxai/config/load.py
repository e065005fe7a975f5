"""Reading a config file and applying the JSON schema (package data ``schema.yaml``): defaults
filled in place, one-line errors naming the field, e.g.
``config.noise.n_levels: 'x' is not of type 'integer'``. A key given twice in one mapping is
refused (``my.yaml:31: duplicate key models.classifier (first at line 26)``): PyYAML, and so
Snakemake's own loader, silently keep the last one. No torch."""

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


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that gives the same key twice (``path``: the dotted key, ``first``: its first line)."""

    def __init__(self, path: str, mark, first: int):
        super().__init__(f"duplicate key {path} (first at line {first})")
        self.path, self.problem_mark, self.first = path, mark, first
        self.problem = str(self)


def _dotted(keys: list) -> str:
    out = ""
    for k in keys:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out


def _keys_to(root: yaml.Node, target: yaml.Node) -> list | None:
    """The keys (and list indices) leading from ``root`` to the node ``target``; None if absent."""
    stack: list[tuple[yaml.Node, list]] = [(root, [])]
    seen: set[int] = set()
    while stack:
        node, keys = stack.pop()
        if node is target:
            return keys
        if id(node) in seen:  # an alias: already walked
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack += [(v, [*keys, getattr(k, "value", "?")]) for k, v in node.value]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(v, [*keys, i]) for i, v in enumerate(node.value)]
    return None


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping, at any depth (merge keys
    ``<<`` may still be overridden, as YAML intends)."""

    _root: yaml.Node | None = None

    def construct_document(self, node):
        self._root = node
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    line = first.get(key)
                except TypeError:  # an unhashable key: construction refuses it below
                    continue
                if line is not None:
                    keys = _keys_to(self._root, node) if self._root is not None else None
                    dotted = _dotted([*(keys or []), key]) if keys is not None else str(key)
                    raise DuplicateKeyError(dotted, key_node.start_mark, line)
                first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_yaml(stream):
    """``yaml.safe_load`` that refuses duplicate keys (:class:`StrictLoader`)."""
    return yaml.load(stream, Loader=StrictLoader)  # noqa: S506  (a SafeLoader subclass)


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    with open(path) as f:
        return load_yaml(f)


def load_config(path: str | Path) -> dict:
    """Read a YAML config; malformed YAML, or a key given twice in one mapping, is a one-line error
    naming the file and line (and the dotted key)."""
    path = Path(path)
    if not path.is_file():
        raise DiffxaiError(str(path), "config file does not exist")
    try:
        with open(path) as f:
            cfg = load_yaml(f)
    except DuplicateKeyError as exc:
        raise DiffxaiError(f"{path}:{exc.problem_mark.line + 1}", str(exc)) from None
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
