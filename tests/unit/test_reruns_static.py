"""Reruns are exact by construction: code hashes cover what a rule's driver imports and ignore
comments, docstrings and formatting; a rule's settings are canonical and only its own."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from diffxai.config.checks import check_config
from diffxai.config.load import load_config
from diffxai.core import codehash
from diffxai.core.codehash import closure, code_hash, module_digest
from diffxai.workflow.params import BUILDERS, Tracked, canonical, leaf_paths, rule_params, rule_threads, unread

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO / "scripts").glob("*.py"))
RULES = sorted(re.findall(r"^rule (\w+):", "\n".join(p.read_text() for p in (REPO / "rules").glob("*.smk")), re.M))


def demo_config() -> dict:
    return check_config(load_config(REPO / "config" / "config.yaml"))


def test_every_rule_has_a_script_and_a_settings_builder():
    import diffxai.workflow.settings  # noqa: F401  (registers the builders)

    assert {p.stem for p in SCRIPTS} == set(RULES) - {"all"}
    assert set(BUILDERS) == set(RULES) - {"all"}


PROBE = """
import json, os, sys
# the heavy third-party libraries once, before any diffxai module: each probe below forks from here
import torch, diffusers, transformers, captum.attr, pandas, pyarrow.parquet, matplotlib.pyplot, seaborn, scipy.stats
import sklearn.datasets, safetensors.torch, PIL.Image, yaml, jsonschema
assert not any(m.startswith("diffxai") for m in sys.modules)
out = {}
for i, imports in enumerate(json.loads(sys.argv[1])):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        exec(imports, {})
        os.write(w, json.dumps(sorted(m for m in sys.modules if m.startswith("diffxai"))).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.waitpid(pid, 0)
    out[i] = json.loads(data)
print(json.dumps(out))
"""


def test_code_hash_covers_every_module_the_driver_imports():
    """Import what each script imports (not run it) in a fresh interpreter: every diffxai module
    that lands in sys.modules must be in the rule's hashed closure. One interpreter loads the
    third-party libraries, then forks a child per distinct set of script imports."""
    by_imports: dict[str, list[Path]] = {}
    for script in SCRIPTS:
        tree = ast.parse(script.read_text())
        imports = "\n".join(ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))
        by_imports.setdefault(imports, []).append(script)
    keys = list(by_imports)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(keys)], capture_output=True, text=True, check=True, cwd=REPO
    )
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    for i, imports in enumerate(keys):
        for script in by_imports[imports]:
            missing = set(loaded[str(i)]) - set(closure(script))
            assert not missing, f"{script.stem}: its code hash misses {sorted(missing)}"
            assert f"diffxai.{script.read_text().split('from diffxai.')[1].split(' import')[0]}" in loaded[str(i)]


def _digest_of(source: str, tmp_path: Path) -> str:
    mod = tmp_path / "probe.py"
    mod.write_text(source)
    tree = codehash._StripDocstrings().visit(ast.parse(mod.read_text()))
    return ast.dump(tree, annotate_fields=False)


def test_no_job_imports_the_settings_builders():
    """A builder decides a rule's params (rerun through them); in a job's code hash it would rerun
    every job of a finished run whenever any builder changes."""
    for script in SCRIPTS:
        mods = closure(script)
        assert not [m for m in mods if m.startswith("diffxai.workflow.settings") or m == "diffxai.workflow.params"], (
            script.name
        )


def test_hash_ignores_comments_docstrings_and_layout(tmp_path):
    base = textwrap.dedent(
        '''
        """Module doc."""
        def f(x, y):
            """Doc."""
            return x + y  # a comment
        '''
    )
    reworded = textwrap.dedent(
        '''
        """Another module doc, longer."""
        # a new comment line
        def f(x,
              y):
            """Reworded doc."""
            return (x + y)
        '''
    )
    changed = base.replace("x + y", "x - y")
    assert _digest_of(base, tmp_path) == _digest_of(reworded, tmp_path)
    assert _digest_of(base, tmp_path) != _digest_of(changed, tmp_path)


def test_a_change_in_batching_reaches_every_rule_that_batches():
    batching = "diffxai.core.batching"
    users = {p.stem for p in SCRIPTS if batching in closure(p)}
    for rule in (
        "schedules_generate",
        "schedules_commitment",
        "components_concept",
        "components_baseline",
        "attribution_compute",
        "saliency_compute",
        "likelihood_compute",
        "trajectories_build",
    ):
        assert rule in users, f"{rule}'s code hash does not cover core.batching"
    # and plots / aggregates that never batch are not rerun by it
    assert "likelihood_plot" not in users


def test_module_digest_is_stable():
    assert module_digest("diffxai.core.seeding") == module_digest("diffxai.core.seeding")
    assert code_hash(REPO / "scripts" / "likelihood_compute.py") == code_hash(
        REPO / "scripts" / "likelihood_compute.py"
    )


def test_settings_are_canonical_key_order_and_number_type():
    cfg = demo_config()
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())

    def reorder(obj):
        if isinstance(obj, dict):
            return {k: reorder(obj[k]) for k in reversed(list(obj))}
        if isinstance(obj, list):
            return [reorder(v) for v in obj]
        return obj

    other = reorder(raw)
    other["models"]["evaluation"]["guidance"] = int(other["models"]["evaluation"]["guidance"])
    other = check_config(other)
    for rule in sorted(BUILDERS):
        wc = _wildcards(rule, cfg)
        a, b = rule_params(rule, cfg, wc), rule_params(rule, other, wc)
        assert repr(a) == repr(b), rule


def _wildcards(rule: str, cfg: dict) -> dict:
    return {
        "cls": cfg["classes"][0]["name"],
        "method": next(iter(cfg["attribution"]["methods"])),
        "saliency": cfg["saliency"]["methods"][0],
        "schedule": cfg["schedules"]["schedules"][0]["name"],
        "pair": "-to-".join(c["name"] for c in cfg["classes"][:2]),
        "concept": (cfg["components"]["concepts"] or [cfg["classes"][0]["name"]])[0],
    }


@pytest.mark.parametrize(
    ("key", "value", "rerun", "kept"),
    [
        ("data.n_images", 5, {"trajectories_build"}, {"models_train_ddpm", "models_train_classifier"}),
        (
            "models.evaluation.samples_per_class",
            21,
            {"models_evaluate"},
            {"components_concept", "components_baseline", "trajectories_build"},
        ),
        ("resources.mem_mb", 8000, set(), set(BUILDERS)),
        ("plots.dpi", 60, {"likelihood_plot"}, {"likelihood_compute", "trajectories_build", "models_train_ddpm"}),
    ],
)
def test_a_setting_reaches_exactly_the_rules_that_read_it(key, value, rerun, kept):
    cfg = demo_config()
    changed = json.loads(json.dumps(cfg))
    node = changed
    *head, last = key.split(".")
    for k in head:
        node = node[k]
    node[last] = value
    for rule in sorted(BUILDERS):
        wc = _wildcards(rule, cfg)
        differs = rule_params(rule, cfg, wc) != rule_params(rule, changed, wc)
        if rule in rerun:
            assert differs, f"{rule} does not see {key}"
        if rule in kept:
            assert not differs, f"{rule} sees {key} although it never reads it"


def test_rule_threads_are_the_torch_threads_of_the_settings():
    cfg = demo_config()
    assert rule_threads("models_train_ddpm", cfg) == cfg["models"]["threads"]
    assert rule_threads("likelihood_compute", cfg) == cfg["threads"]
    assert rule_threads("likelihood_aggregate", cfg) == 1


def test_tracked_records_reads_and_unread_leaves():
    reads: set[str] = set()
    t = Tracked({"a": {"b": 1, "c": 2}, "xs": [{"n": "u", "m": 1}], "z": 3}, reads)
    assert t["a"]["b"] == 1
    assert [x["n"] for x in t["xs"]] == ["u"]
    assert t.get("missing") is None
    assert unread(t.untracked(), reads) == ["a.c", "xs[].m", "z"]
    assert leaf_paths({"a": {"b": 1}, "l": [1, 2], "e": {}}) == {"a.b", "l", "e"}
    assert canonical({"b": 1, "a": (1, {"d": 0, "c": 1})}) == {"a": [1, {"c": 1, "d": 0}], "b": 1}
