"""Torch-free check of ``config.attribution.methods``: the rules of
:func:`diffxai.methods.attribution.build_method` (shared, in :mod:`diffxai.core.attrspec`) against
Captum's classes as its *source* describes them, so planning a run never imports captum or torch.

The installed package is located with ``importlib.util.find_spec("captum")`` (the top-level spec
only: finding ``captum.attr`` would import ``captum``). ``captum/attr/__init__.py`` is parsed with
:mod:`ast` to map each exported name to its defining module; that module (and, through the
bases, the modules of its base classes) is parsed to read each class's bases and the parameters
of ``__init__`` and ``attribute``, looked up along the method resolution order (C3, as Python
does) when a class does not define them itself. Only parameter names and whether they have a
default are read, which is all the rules use. The parsed index is cached per installed Captum
(its location and version).
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from diffxai.core.attrspec import (
    INPUT,
    LAYER,
    NOISE_TUNNEL,
    UNKNOWN,
    CheckedMethod,
    Signature,
    check_class_kind,
    check_method_table,
    is_class_name,
)
from diffxai.core.attrspec import check_method as _check_method
from diffxai.core.errors import DiffxaiError

PACKAGE = "captum"
EXPORTS = "captum.attr"

# Bases outside captum that define neither ``__init__`` nor ``attribute`` (the lookup walks past them).
_EMPTY_EXTERNAL = {("builtins", "object"), ("typing", "Generic"), ("typing", "Protocol"), ("abc", "ABC")}

# ``inspect.signature(object.__init__)``: ``(self, /, *args, **kwargs)``.
_OBJECT_INIT = (("self", False), ("args", False), ("kwargs", False))

# Decorators after which ``inspect.signature`` no longer reports the function's own parameters.
_SIGNATURE_CHANGING = {"staticmethod", "classmethod", "property", "cached_property"}

_MEMBERS = ("__init__", "attribute")

# The classes of ``captum.attr`` that decide a name's kind.
_BASES = ("Attribution", "LayerAttribution", "NeuronAttribution", "NoiseTunnel")


class Unreadable(Exception):
    """Captum's source does not say a class's signature plainly (an assignment, an unknown base, ...)."""


@dataclass(frozen=True)
class CaptumClass:
    """What the source says about one name exported by ``captum.attr``.

    ``kind``: one of :data:`~diffxai.core.attrspec.INPUT`, ``UNKNOWN`` (not an ``Attribution``
    class), ``NOISE_TUNNEL``, ``LAYER`` (a ``LayerAttribution``/``NeuronAttribution`` subclass).
    ``module``/``qualname``: where the class is defined (``None`` for non-classes). ``signature``:
    its :class:`~diffxai.core.attrspec.Signature` (``None`` for non-classes)."""

    name: str
    kind: str
    module: str | None = None
    qualname: str | None = None
    signature: Signature | None = None


@dataclass
class _Module:
    """One parsed module: its top-level bindings and ``from ... import *`` sources."""

    name: str
    is_package: bool
    bindings: dict
    star: list


def _params(args: ast.arguments) -> tuple[tuple[str, bool], ...]:
    """``(name, has_default)`` per parameter, in ``inspect.signature`` order (``*args``/``**kwargs``
    have no default)."""
    pos = args.posonlyargs + args.args
    first_default = len(pos) - len(args.defaults)
    out = [(a.arg, i >= first_default) for i, a in enumerate(pos)]
    if args.vararg:
        out.append((args.vararg.arg, False))
    out += [(a.arg, d is not None) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg:
        out.append((args.kwarg.arg, False))
    return tuple(out)


def _decorator_name(node: ast.expr) -> str:
    """The last dotted part of a decorator expression (``functools.cached_property`` → ``cached_property``)."""
    node = node.func if isinstance(node, ast.Call) else node
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _is_type_checking(test: ast.expr) -> bool:
    """Whether an ``if`` test is ``TYPE_CHECKING`` / ``typing.TYPE_CHECKING`` (never true at run time)."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(body: list[ast.stmt]):
    """The statements of ``body`` that run at import time, descending into ``if``/``try``/``with``
    blocks (the ``try`` body is assumed to succeed); yields ``(statement, is_fallback)``, where
    ``is_fallback`` marks statements of ``except`` handlers."""
    for node in body:
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _statements(node.body)
            yield from _statements(node.orelse)
        elif isinstance(node, ast.Try):
            yield from _statements(node.body)
            yield from _statements(node.orelse)
            yield from _statements(node.finalbody)
            for handler in node.handlers:
                yield from ((n, True) for n, _ in _statements(handler.body))
        elif isinstance(node, ast.With):
            yield from _statements(node.body)
        else:
            yield node, False


class CaptumIndex:
    """Captum's ``captum.attr`` classes read from the source under ``root`` (the package folder).

    Modules are parsed on first use; :meth:`read` answers for one exported name."""

    def __init__(self, root: Path, version: str):
        self.root = Path(root)
        self.version = version
        self._modules: dict[str, _Module | None] = {}
        self._classes: dict[tuple[str, str, str], tuple] = {}
        self._mro: dict[tuple[str, str, str], list] = {}
        self._read: dict[str, CaptumClass] = {}
        exports = self._module(EXPORTS)
        if exports is None:
            raise Unreadable(f"{self.root / 'attr' / '__init__.py'} is missing")
        bases = {n: self._class_key(EXPORTS, n) for n in _BASES}
        if None in bases.values():
            raise Unreadable(f"captum.attr does not export {', '.join(_BASES)}")
        self._bases: dict[str, tuple[str, str]] = {n: k for n, k in bases.items() if k is not None}

    # -- modules ---------------------------------------------------------------------------------

    def _path(self, module: str) -> tuple[Path, bool] | None:
        """``(file, is_package)`` of captum module ``module``, or ``None`` when there is none."""
        parts = module.split(".")
        if parts[0] != PACKAGE:
            return None
        base = self.root.joinpath(*parts[1:])
        if (base / "__init__.py").is_file():
            return base / "__init__.py", True
        if base.with_suffix(".py").is_file() and len(parts) > 1:
            return base.with_suffix(".py"), False
        return None

    def _module(self, module: str) -> _Module | None:
        """The parsed captum module ``module`` (``None`` when it is not a captum source file)."""
        if module not in self._modules:
            found = self._path(module)
            self._modules[module] = None if found is None else self._parse(module, *found)
        return self._modules[module]

    def _parse(self, module: str, path: Path, is_package: bool) -> _Module:
        """Parse ``path`` and collect its top-level bindings; returns the :class:`_Module`."""
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = module if is_package else module.rpartition(".")[0]
        bindings: dict[str, tuple] = {}
        star: list[str] = []

        def bind(name: str, value: tuple, fallback: bool) -> None:
            if fallback:
                bindings.setdefault(name, value)
            else:
                bindings[name] = value

        for node, fallback in _statements(tree.body):
            if isinstance(node, ast.ClassDef):
                bind(node.name, ("class", node), fallback)
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(node.module, node.level, package)
                for alias in node.names:
                    if alias.name == "*":
                        star.append(source)
                    else:
                        bind(alias.asname or alias.name, ("import", source, alias.name), fallback)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        bind(alias.asname, ("module", alias.name), fallback)
                    else:
                        head = alias.name.split(".")[0]
                        bind(head, ("module", head), fallback)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                bind(node.name, ("other",), fallback)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if isinstance(node, ast.AnnAssign) and node.value is None:
                    continue
                for target in targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name):
                            bind(name.id, ("other",), fallback)
        return _Module(module, is_package, bindings, star)

    def _resolve(self, module: str, name: str, depth: int = 0) -> tuple | None:
        """What ``name`` is in captum module ``module``: ``("class", module, node)``,
        ``("module", dotted)``, ``("external", module, name)``, ``("other",)``, or ``None`` when unbound."""
        if depth > 50:
            raise Unreadable(f"import cycle resolving {module}.{name}")
        mod = self._module(module)
        if mod is None:
            return ("external", module, name)
        binding = mod.bindings.get(name)
        if binding is None:
            for source in mod.star:
                found = self._resolve(source, name, depth + 1)
                if found is not None:
                    return found
            if mod.is_package and self._path(f"{module}.{name}") is not None:
                return ("module", f"{module}.{name}")
            return None
        if binding[0] == "class":
            return ("class", module, binding[1])
        if binding[0] == "import":
            found = self._resolve(binding[1], binding[2], depth + 1)
            return found if found is not None else ("other",)
        return binding

    def _class_key(self, module: str, name: str) -> tuple[str, str] | None:
        """``(module, qualname)`` of the captum class ``name`` names in ``module``, else ``None``."""
        found = self._resolve(module, name)
        if found is None or found[0] != "class":
            return None
        return found[1], found[2].name

    # -- classes ---------------------------------------------------------------------------------

    def _base(self, module: str, expr: ast.expr) -> tuple:
        """The key of a base-class expression in ``module``: ``("captum", module, qualname)`` or
        ``("external", module, name)``."""
        if isinstance(expr, ast.Subscript):  # Generic[T]
            return self._base(module, expr.value)
        found: tuple | None
        if isinstance(expr, ast.Name):
            found = self._resolve(module, expr.id) or ("external", "builtins", expr.id)
        elif isinstance(expr, ast.Attribute):
            owner = self._base_owner(module, expr.value)
            found = self._resolve(owner, expr.attr) if self._module(owner) else ("external", owner, expr.attr)
        else:
            raise Unreadable(f"base class {ast.unparse(expr)} in {module}")
        if found is None or found[0] not in ("class", "external"):
            raise Unreadable(f"base class {ast.unparse(expr)} in {module} is not a class")
        return ("captum", found[1], found[2].name) if found[0] == "class" else found

    def _base_owner(self, module: str, expr: ast.expr) -> str:
        """The dotted module an attribute chain like ``nn.modules`` names in ``module``."""
        if isinstance(expr, ast.Name):
            found = self._resolve(module, expr.id)
            if found is not None and found[0] == "module":
                return found[1]
            if found is not None and found[0] == "external":
                return f"{found[1]}.{found[2]}"
            raise Unreadable(f"{expr.id} in {module} is not a module")
        if isinstance(expr, ast.Attribute):
            return f"{self._base_owner(module, expr.value)}.{expr.attr}"
        raise Unreadable(f"{ast.unparse(expr)} in {module}")

    def _class(self, key: tuple) -> tuple[list, dict]:
        """``(bases, members)`` of captum class ``key``: base keys, and for ``__init__``/``attribute``
        defined in the class body the ``inspect``-style parameters (or :class:`Unreadable`)."""
        if key not in self._classes:
            _, module, qualname = key
            found = self._resolve(module, qualname)
            if found is None or found[0] != "class":
                raise Unreadable(f"{module}.{qualname} is not a class")
            node: ast.ClassDef = found[2]
            bases = [self._base(module, b) for b in node.bases]
            members: dict = {}
            for stmt, _ in _statements(node.body):
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name in _MEMBERS:
                    changing = [
                        _decorator_name(d) for d in stmt.decorator_list if _decorator_name(d) in _SIGNATURE_CHANGING
                    ]
                    if changing:
                        members[stmt.name] = Unreadable(f"{qualname}.{stmt.name} is a {changing[0]}")
                    else:
                        members[stmt.name] = _params(stmt.args)
                elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and getattr(stmt, "value", None) is not None:
                    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                    for target in targets:
                        if isinstance(target, ast.Name) and target.id in _MEMBERS:
                            members[target.id] = Unreadable(f"{qualname}.{target.id} is assigned, not defined")
            self._classes[key] = (bases, members)
        return self._classes[key]

    def mro(self, key: tuple) -> list[tuple]:
        """The method resolution order of class ``key`` (C3, as Python computes it; ``object``
        and the bases of classes outside captum left out)."""
        if key not in self._mro:
            if key[0] == "external":
                return [key]
            self._mro[key] = []  # guards against cycles
            bases = self._class(key)[0]
            self._mro[key] = [key] + _c3_merge([self.mro(b) for b in bases] + [list(bases)], key)
        return self._mro[key]

    def _lookup(self, key: tuple, member: str):
        """The parameters of ``member`` as ``getattr(cls, member)`` finds it: the first class in
        the MRO defining it; ``None`` when none does (for ``__init__``: ``object.__init__``'s)."""
        for k in self.mro(key):
            if k[0] == "external":
                if k[1:] in _EMPTY_EXTERNAL:
                    continue
                raise Unreadable(f"{member} may come from {k[1]}.{k[2]}, outside captum")
            params = self._class(k)[1].get(member)
            if isinstance(params, Unreadable):
                raise params
            if params is not None:
                return params
        return _OBJECT_INIT if member == "__init__" else None

    def read(self, name: str) -> CaptumClass:
        """What ``getattr(captum.attr, name)`` is, read from the source; raises :class:`Unreadable`
        when the source does not say plainly."""
        if name not in self._read:
            class_key = self._class_key(EXPORTS, name) if is_class_name(name) else None
            key = ("captum", *class_key) if class_key else None
            mro = self.mro(key) if key else []
            attribution, layer, neuron, nt = (("captum", *self._bases[n]) for n in _BASES)
            if key is None or attribution not in mro:
                self._read[name] = CaptumClass(name, UNKNOWN, *(key[1:] if key else (None, None)))
            else:
                attribute = self._lookup(key, "attribute")
                signature = Signature(
                    self._lookup(key, "__init__"), None if attribute is None else tuple(p for p, _ in attribute)
                )
                kind = NOISE_TUNNEL if key == nt else LAYER if (layer in mro or neuron in mro) else INPUT
                self._read[name] = CaptumClass(name, kind, key[1], key[2], signature)
        return self._read[name]

    def exported_names(self) -> list[str]:
        """The names bound at the top level of ``captum/attr/__init__.py``, sorted."""
        exports = self._module(EXPORTS)
        assert exports is not None  # checked in __init__; parsed modules are cached
        return sorted(exports.bindings)


def _absolute(module: str | None, level: int, package: str) -> str:
    """The absolute module of ``from <level dots><module> import ...`` inside ``package``."""
    if not level:
        return module or ""
    base = package.split(".")
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([module] if module else []))


def _c3_merge(seqs: list[list], key: tuple) -> list:
    """The C3 merge of the bases' linearisations (raises :class:`Unreadable` where Python would
    raise ``TypeError``)."""
    seqs = [list(s) for s in seqs if s]
    out = []
    while seqs:
        for seq in seqs:
            head = seq[0]
            if not any(head in s[1:] for s in seqs):
                break
        else:
            raise Unreadable(f"no consistent method resolution order for {key[1]}.{key[2]}")
        out.append(head)
        seqs = [rest for rest in ([x for x in s if x != head] for s in seqs) if rest]
    return out


def _installed() -> tuple[str, str]:
    """``(package folder, version)`` of the installed captum, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DiffxaiError("config.attribution.methods", "captum is not installed (pip install captum)")
    root = Path(list(spec.submodule_search_locations)[0])
    version = None
    init = root / "__init__.py"
    if init.is_file():
        for node in ast.parse(init.read_text(encoding="utf-8")).body:
            if not isinstance(node, ast.Assign):
                continue
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if "__version__" in names and isinstance(node.value, ast.Constant):
                version = str(node.value.value)
    if version is None:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        try:
            version = dist_version(PACKAGE)
        except PackageNotFoundError:
            version = "unknown"
    return str(root), version


@lru_cache(maxsize=4)
def _index(root: str, version: str) -> CaptumIndex:
    """The :class:`CaptumIndex` of the captum under ``root`` at ``version`` (cached)."""
    return CaptumIndex(Path(root), version)


def captum_index() -> CaptumIndex:
    """The :class:`CaptumIndex` of the installed captum (one per location and version)."""
    root, version = _installed()
    try:
        return _index(root, version)
    except (Unreadable, SyntaxError, OSError) as exc:
        raise DiffxaiError("config.attribution.methods", f"cannot read Captum {version} at {root}: {exc}") from None


def captum_signature(name: str, where: str) -> Signature:
    """The :class:`~diffxai.core.attrspec.Signature` of ``captum.attr`` input-attribution class
    ``name``, read from Captum's source; raises the one-line errors of
    :func:`diffxai.methods.attribution.captum_class` for other names."""
    index = captum_index()
    try:
        info = index.read(name)
    except (Unreadable, SyntaxError, OSError) as exc:
        problem = f"cannot read {name!r} from Captum {index.version}'s source: {exc}"
        raise DiffxaiError(f"{where}.captum", problem) from None
    check_class_kind(name, info.kind, where)
    assert info.signature is not None  # read() sets a signature on every INPUT class
    return info.signature


def check_method(name: str, entry: dict, where: str | None = None) -> CheckedMethod:
    """Validate one ``config.attribution.methods`` entry as
    :func:`diffxai.methods.attribution.build_method` does, without importing captum or torch;
    returns its :class:`~diffxai.core.attrspec.CheckedMethod`."""
    return _check_method(name, entry, captum_signature, where)


def check_methods(methods: dict) -> dict[str, CheckedMethod]:
    """Validate every entry of ``config.attribution.methods`` (as
    :func:`diffxai.methods.attribution.build_methods`); returns ``{name: CheckedMethod}``."""
    check_method_table(methods)
    return {name: check_method(name, entry) for name, entry in methods.items()}
