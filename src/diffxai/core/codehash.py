"""The code trigger of a rule, computed from what its script imports (never listed by hand).

A rule's script imports its driver (``from diffxai.stages import likelihood``); the rule's code
hash is the SHA-256 of the ASTs of every diffxai module in the transitive import closure of that
script. Imports are read statically (``ast``), at module level and inside functions alike, so a
lazily imported module counts; nothing is imported, so planning a run never imports torch.

Hashing the AST (``ast.dump`` without docstrings) makes the trigger blind to comments,
docstrings and formatting: a reworded comment in ``core/seeding.py`` reruns nothing, a real
change in ``core/batching.py`` reruns every job whose code imports it.
"""

from __future__ import annotations

import ast
import hashlib
import os
from functools import cache
from pathlib import Path

PACKAGE = "diffxai"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/diffxai
#: set by the workflow when it plans the jobs (Snakefile), read by every job's tables
SOURCE_HASH_ENV = "DIFFXAI_SOURCE_HASH"


def module_file(module: str) -> Path | None:
    """The source file of a diffxai module (package ``__init__`` included); None if not ours."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    rel = module.split(".")[1:]
    base = PACKAGE_DIR.joinpath(*rel)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


@cache
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _is_package(module: str) -> bool:
    f = module_file(module)
    return f is not None and f.name == "__init__.py"


def imported_modules(tree: ast.AST, module: str | None = None) -> set[str]:
    """The diffxai modules a parsed file imports anywhere (top level or inside functions).

    ``from diffxai.stages import likelihood`` imports ``diffxai.stages`` and
    ``diffxai.stages.likelihood``; relative imports are resolved against ``module``.
    """
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                for i in range(1, len(parts) + 1):
                    out.add(".".join(parts[:i]))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level and module:
                pkg = module if _is_package(module) else module.rsplit(".", 1)[0]
                up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            parts = base.split(".")
            for i in range(1, len(parts) + 1):
                out.add(".".join(parts[:i]))
            for alias in node.names:
                out.add(f"{base}.{alias.name}")
    return {m for m in out if module_file(m) is not None}


@cache
def _module_imports(module: str) -> frozenset[str]:
    """The diffxai modules ``module`` imports (parsed once per process: planning hashes 27 rules)."""
    return frozenset(imported_modules(_parse(module_file(module)), module))


def closure(script: str | Path) -> list[str]:
    """Every diffxai module the file ``script`` imports, directly or through other modules, sorted."""
    seen: set[str] = set()
    todo = sorted(imported_modules(_parse(Path(script).resolve())))
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        todo.extend(sorted(_module_imports(mod) - seen))
    return sorted(seen)


class _StripDocstrings(ast.NodeTransformer):
    def _strip(self, node):
        self.generic_visit(node)
        body: list[ast.stmt] | None = getattr(node, "body", None)
        if body:
            first = body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
        return node

    visit_Module = visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _strip


@cache
def module_digest(module: str) -> str:
    """SHA-256 of a module's AST without docstrings (comments and layout never reach the AST)."""
    path = module_file(module)
    if path is None:
        raise ValueError(f"{module!r} is not a diffxai module")
    tree = _StripDocstrings().visit(ast.parse(path.read_text(), filename=str(path)))
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()


def code_hash(script: str | Path) -> str:
    """The code trigger of the rule whose script is ``script`` (16 hex digits)."""
    h = hashlib.sha256()
    for mod in closure(script):
        h.update(mod.encode() + b"\0" + module_digest(mod).encode() + b"\n")
    return h.hexdigest()[:16]


def package_hash() -> str:
    """The AST hash of the whole package (the ``diffxai.source_hash`` of every table)."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        mod = ".".join([PACKAGE, *parts])
        h.update(mod.encode() + b"\0" + module_digest(mod).encode() + b"\n")
    return h.hexdigest()[:16]


def source_hash() -> str:
    """The package hash as the workflow computed it when it planned the job (``DIFFXAI_SOURCE_HASH``,
    set by the Snakefile once the rules' code hashes have parsed the package, so a job does not
    parse all of it again: 0.7 s per job), else computed now (a job run outside Snakemake)."""
    return os.environ.get(SOURCE_HASH_ENV) or package_hash()
