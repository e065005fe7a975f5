"""Torch-free rules for one ``config.attribution.methods`` entry, shared by the runtime path
(:func:`diffxai.methods.attribution.build_method`, which reads Captum's classes) and the planning
path (:mod:`diffxai.config.captum_methods`, which reads Captum's source without importing it).

Everything here is independent of how a Captum class is looked up: the caller passes a
``signature(captum_name, where)`` function that raises for unusable classes (see
:func:`check_class_kind`) and returns the class's :class:`Signature`. Every failure is a one-line
:class:`DiffxaiError` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from diffxai.core.errors import DiffxaiError

# Set by us for every call; configuring them is an error.
RESERVED = {"inputs", "target", "additional_forward_args", "return_convergence_delta", "show_progress", "kwargs"}

NOISE_TUNNEL_KEYS = {"nt_type", "nt_samples", "nt_samples_batch_size", "stdevs", "draw_baseline_from_distrib"}

# The keys of one method entry.
METHOD_KEYS = {"captum", "args", "attribute", "batch_size", "reference_size", "noise_tunnel"}

# What the first constructor argument of a usable class is called (it receives the model).
MODEL_ARGS = ("forward_func", "model")

# The kinds of a name looked up in ``captum.attr`` (see :func:`check_class_kind`).
INPUT, UNKNOWN, NOISE_TUNNEL, LAYER = "input", "unknown", "noise_tunnel", "layer"


class Signature(NamedTuple):
    """The parameters of a Captum class, as ``inspect.signature`` lists them (``self`` included).

    ``init``: ``(name, has_default)`` per parameter of ``__init__`` (``*args``/``**kwargs`` count
    as parameters without default). ``attribute``: the parameter names of ``attribute``, or
    ``None`` when the class has no ``attribute`` method (Captum's abstract bases)."""

    init: tuple[tuple[str, bool], ...]
    attribute: tuple[str, ...] | None


class CheckedMethod(NamedTuple):
    """A validated method entry; the fields of :class:`diffxai.methods.attribution.MethodSpec`."""

    name: str
    captum: str
    args: dict
    attribute: dict
    batch_size: int
    reference_size: int | None
    noise_tunnel: dict | None


def method_where(name: str) -> str:
    """The config path of method ``name``: ``config.attribution.methods.<name>``."""
    return f"config.attribution.methods.{name}"


def is_class_name(name) -> bool:
    """Whether ``name`` can name a class of ``captum.attr`` at all (a string starting upper-case)."""
    return isinstance(name, str) and name[:1].isupper()


def check_class_kind(name, kind: str, where: str) -> None:
    """Raise the one-line error for a ``captum:`` name of ``kind`` other than :data:`INPUT`;
    returns ``None`` for input-attribution classes."""
    if kind == UNKNOWN:
        raise DiffxaiError(f"{where}.captum", f"unknown Captum attribution method {name!r}")
    if kind == NOISE_TUNNEL:
        raise DiffxaiError(f"{where}.captum", "NoiseTunnel is a wrapper: set `noise_tunnel:` on a method instead")
    if kind == LAYER:
        raise DiffxaiError(f"{where}.captum", f"{name!r} attributes to a layer or neuron, not to the input pixels")
    if kind != INPUT:
        raise ValueError(f"unknown class kind {kind!r}")


def check_keys(given: dict, allowed: set[str], where: str, owner: str) -> None:
    """Raise for the first key of ``given`` that is reserved or not in ``allowed``; returns ``None``."""
    for key in given:
        if key in RESERVED:
            raise DiffxaiError(f"{where}.{key}", f"set by diffxai for every call; remove it from {owner}")
        if key not in allowed:
            options = ", ".join(sorted(allowed))
            raise DiffxaiError(f"{where}.{key}", f"unknown parameter of {owner} (allowed: {options})")


def check_gradshap(attribute: dict, where: str) -> None:
    """Raise unless GradientShap's ``baselines`` (multipliers of the input) and ``stdevs`` (a
    number) are usable; ``where`` is the method's path. Returns ``None``."""
    base = attribute.get("baselines", [0.0, 1.0])
    if not (isinstance(base, (list, tuple)) and base and all(isinstance(v, (int, float)) for v in base)):
        raise DiffxaiError(
            f"{where}.attribute.baselines",
            f"GradientShap baselines are a list of multipliers of the input, e.g. [0.0, 1.0]; got {base!r}",
        )
    if not isinstance(attribute.get("stdevs", 0.0), (int, float)):
        raise DiffxaiError(f"{where}.attribute.stdevs", "must be a number")


def check_sizes(entry: dict, where: str) -> tuple[int, int | None]:
    """``(batch_size, reference_size)`` of a method entry (defaults 64 and ``None``), checked."""
    bs = entry.get("batch_size", 64)
    if not isinstance(bs, int) or bs < 1:
        raise DiffxaiError(f"{where}.batch_size", f"must be a positive integer, got {bs!r}")
    ref = entry.get("reference_size")
    if ref is not None and (not isinstance(ref, int) or ref < 1):
        raise DiffxaiError(f"{where}.reference_size", f"must be a positive integer or null, got {ref!r}")
    return bs, ref


def check_method(
    name: str, entry: dict, signature: Callable[[str, str], Signature], where: str | None = None
) -> CheckedMethod:
    """Validate one method entry against its Captum class's ``signature(captum_name, where)``;
    returns the :class:`CheckedMethod` (raises a one-line :class:`DiffxaiError` otherwise)."""
    where = where or method_where(name)
    if not isinstance(entry, dict) or "captum" not in entry:
        raise DiffxaiError(where, "a method needs at least `captum: <class name>`")
    for key in entry:
        if key not in METHOD_KEYS:
            raise DiffxaiError(f"{where}.{key}", f"unknown key (allowed: {', '.join(sorted(METHOD_KEYS))})")
    captum = entry["captum"]
    sig = signature(captum, where)
    args, attribute = dict(entry.get("args") or {}), dict(entry.get("attribute") or {})
    nt = entry.get("noise_tunnel")
    init = [(p, has_default) for p, has_default in sig.init if p != "self"]
    if not init or init[0][0] not in MODEL_ARGS:
        raise DiffxaiError(f"{where}.captum", f"{captum!r} does not take a model as first argument")
    _check_init(captum, init[1:], args, where)
    if sig.attribute is None:
        raise DiffxaiError(f"{where}.captum", f"{captum!r} has no attribute method (an abstract base class)")
    allowed = {p for p in sig.attribute if p != "self"} - RESERVED
    check_keys(attribute, allowed, f"{where}.attribute", f"{captum}.attribute")
    if nt is not None:
        if not isinstance(nt, dict):
            raise DiffxaiError(f"{where}.noise_tunnel", "must be a mapping of NoiseTunnel.attribute arguments")
        check_keys(nt, NOISE_TUNNEL_KEYS, f"{where}.noise_tunnel", "NoiseTunnel.attribute")
    elif captum == "GradientShap":
        check_gradshap(attribute, where)
    bs, ref = check_sizes(entry, where)
    return CheckedMethod(name, captum, args, attribute, bs, ref, nt)


def _check_init(captum: str, params: list[tuple[str, bool]], args: dict, where: str) -> None:
    """Raise unless ``args`` names only constructor parameters and every required one; returns ``None``."""
    check_keys(args, {p for p, _ in params}, f"{where}.args", f"{captum}()")
    missing = [p for p, has_default in params if not has_default and p not in args]
    if missing:
        raise DiffxaiError(f"{where}.args.{missing[0]}", f"required by {captum}()")


def check_method_table(methods) -> None:
    """Raise unless ``config.attribution.methods`` is a non-empty mapping; returns ``None``."""
    if not isinstance(methods, dict) or not methods:
        raise DiffxaiError("config.attribution.methods", "needs at least one method")
