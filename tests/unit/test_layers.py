"""The layer rules of the library (design.md, Layout v2), checked statically on every import.

A module imports only its own layer's modules and the layers below it; stages never import each
other; nothing in the package has an import cycle; the workflow's planning path never imports
torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from diffxai.core.codehash import PACKAGE_DIR, imported_modules, module_file

#: layer -> the layers it may import (its own included)
ALLOWED = {
    "core": {"core"},
    "models": {"models", "core"},
    "sampling": {"sampling", "models", "core"},
    "metrics": {"metrics", "core"},
    "methods": {"methods", "models", "sampling", "metrics", "core"},
    "config": {"config", "core"},
    "io": {"io", "core"},
    "stages": {"stages", "config", "io", "methods", "metrics", "sampling", "models", "core"},
    "plots": {"plots", "io", "core"},
    "workflow": {"workflow", "stages", "config", "io", "core"},
}
TOP_LEVEL = {"diffxai", "diffxai.__main__"}


def modules() -> list[str]:
    out = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = [p for p in path.relative_to(PACKAGE_DIR).with_suffix("").parts if p != "__init__"]
        out.append(".".join(["diffxai", *parts]))
    return out


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def imports(module: str) -> set[str]:
    tree = ast.parse(module_file(module).read_text())
    return {m for m in imported_modules(tree, module) if m != "diffxai" and layer(m) is not None and m != module}


def test_every_module_is_in_a_layer():
    stray = [m for m in modules() if layer(m) is None and m not in TOP_LEVEL]
    assert not stray, f"modules outside the layers: {stray}"


@pytest.mark.parametrize("module", [m for m in modules() if layer(m)])
def test_module_imports_only_allowed_layers(module):
    own = layer(module)
    bad = sorted(m for m in imports(module) if layer(m) not in ALLOWED[own] and not _is_package_of(m, module))
    assert not bad, f"{module} ({own}) imports {bad}; {own} may import {sorted(ALLOWED[own])}"


def _is_package_of(candidate: str, module: str) -> bool:
    return module.startswith(candidate + ".")


def test_stages_never_import_each_other():
    stages = [m for m in modules() if layer(m) == "stages" and m != "diffxai.stages"]
    for m in stages:
        other = sorted(x for x in imports(m) if layer(x) == "stages" and x not in ("diffxai.stages", m))
        assert not other, f"{m} imports other stages: {other}"


def test_no_import_cycles():
    graph = {m: {x for x in imports(m) if x in set(modules())} for m in modules()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(m: str, path: list[str]) -> bool:
        state[m] = 1
        for n in sorted(graph[m]):
            if _is_package_of(n, m):
                continue  # a module importing its own package's __init__ is not a cycle
            if state.get(n) == 1:
                cycle.extend(path[path.index(n) :] + [n] if n in path else [m, n])
                return True
            if state.get(n) is None and visit(n, path + [n]):
                return True
        state[m] = 2
        return False

    for m in sorted(graph):
        if state.get(m) is None and visit(m, [m]):
            break
    assert not cycle, f"import cycle: {' -> '.join(cycle)}"


def test_planning_layers_import_without_torch():
    """What the Snakefile imports to plan a run (config, params, code hash) never imports torch."""
    code = (
        "import sys\n"
        "import diffxai.config, diffxai.config.experiment, diffxai.workflow.params, diffxai.core.codehash\n"
        "from diffxai.workflow.params import rule_params\n"
        "from diffxai.config.checks import check_config\nfrom diffxai.config.load import load_config\n"
        f"cfg = check_config(load_config({str(Path(__file__).parents[2] / 'config' / 'config.yaml')!r}))\n"
        "rule_params('likelihood_compute', cfg, {'cls': cfg['classes'][0]['name']})\n"
        "bad = sorted(m for m in ('torch', 'captum', 'diffusers', 'transformers') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
