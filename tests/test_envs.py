"""envs/ agrees with the Python lock (constraints.txt), and every rule uses the env.

Run as a script to regenerate the environment file from the lock:
``python tests/test_envs.py > envs/diffxai.yaml``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
ENV = REPO / "envs" / "diffxai.yaml"
LOCK = REPO / "constraints.txt"

HEADER = """\
# Conda environment for `snakemake --sdm conda`: every rule runs in it (`conda: "../envs/diffxai.yaml"`).
# The pip section pins exactly the packages of ../constraints.txt (the Python lock); tests/test_envs.py
# checks that they agree. After changing constraints.txt, regenerate the list with:
#   python tests/test_envs.py > envs/diffxai.yaml
# diffxai itself comes from the workflow's src/ (rules/common.smk puts it on PYTHONPATH).
name: diffxai
channels:
  - conda-forge
  - nodefaults
dependencies:
  - python={python}
  - pip
  - pip:
"""


def normalise(name: str) -> str:
    """PEP 503 name normalisation (``Jinja2`` == ``jinja2``, ``foo_bar`` == ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(lines) -> dict[str, str]:
    pins = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert m, f"not an exact pin: {raw!r}"
        pins[normalise(m.group(1))] = m.group(2)
    return pins


def lock_pins() -> dict[str, str]:
    return parse_pins(LOCK.read_text().splitlines())


def env_spec() -> dict:
    return yaml.safe_load(ENV.read_text())


def env_pip_pins(spec: dict) -> dict[str, str]:
    pip = [d for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "envs/diffxai.yaml needs exactly one pip: section"
    return parse_pins(pip[0]["pip"])


def render_env(python: str = "3.11") -> str:
    lines = [ln.strip() for ln in LOCK.read_text().splitlines() if ln.split("#", 1)[0].strip()]
    return HEADER.format(python=python) + "".join(f"      - {ln}\n" for ln in lines)


def test_env_pins_equal_the_lock():
    env, lock = env_pip_pins(env_spec()), lock_pins()
    missing = sorted(set(lock) - set(env))
    extra = sorted(set(env) - set(lock))
    differ = sorted(f"{k}: env {env[k]} != lock {lock[k]}" for k in set(env) & set(lock) if env[k] != lock[k])
    assert not (missing or extra or differ), f"missing {missing}; extra {extra}; differ {differ}"


def test_env_python_satisfies_the_project():
    spec = env_spec()
    pythons = [d for d in spec["dependencies"] if isinstance(d, str) and re.match(r"python\b", d)]
    assert len(pythons) == 1, "pin the Python version once"
    version = tuple(int(x) for x in re.search(r"(\d+)\.(\d+)", pythons[0]).groups())
    requires = re.search(r'requires-python\s*=\s*">=\s*(\d+)\.(\d+)"', (REPO / "pyproject.toml").read_text())
    assert version >= tuple(int(x) for x in requires.groups())
    assert "pip" in spec["dependencies"]
    assert "conda-forge" in spec["channels"]


def test_project_dependencies_are_in_the_env():
    deps = re.search(r"dependencies\s*=\s*\[(.*?)\]", (REPO / "pyproject.toml").read_text(), re.S).group(1)
    names = {normalise(re.match(r"\s*([A-Za-z0-9._-]+)", d).group(1)) for d in re.findall(r'"([^"]+)"', deps)}
    missing = names - set(env_pip_pins(env_spec()))
    assert not missing, f"pyproject dependencies without a pin in envs/diffxai.yaml: {sorted(missing)}"


def test_every_rule_uses_an_existing_env():
    rule_files = sorted((REPO / "rules").glob("*.smk"))
    for f in rule_files:
        text = f.read_text()
        n_rules = len(re.findall(r"^rule \w+:", text, re.M))
        envs = re.findall(r"^    conda:\n        \"([^\"]+)\"", text, re.M)
        assert len(envs) == n_rules, f"{f.name}: {n_rules} rules but {len(envs)} conda: directives"
        for e in envs:
            assert (f.parent / e).resolve().is_file(), f"{f.name}: conda env {e} does not exist"


if __name__ == "__main__":
    sys.stdout.write(render_env())
