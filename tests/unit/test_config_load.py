"""A config file that gives a key twice is refused with one line naming the file, the line and the
dotted key (PyYAML, and so Snakemake's own loader, silently keep the last one: config/sd14.yaml
once judged CAD's edits by ResNet-18 instead of ResNet-50 that way)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from diffxai.config.load import load_config
from helpers import one_line_error

REPO = Path(__file__).resolve().parents[2]

DUPLICATE_CLASSIFIER = """\
experiment: twice
models:
  classifier:          # the first one
    source: torchvision
    arch: resnet50
  classifier:
    source: torchvision
    arch: resnet18
classes:
  - {name: tiger, index: 292}
"""


def _error(path: Path) -> str:
    return one_line_error(load_config, path)


@pytest.mark.parametrize(
    "text, line, key, first",
    [
        (DUPLICATE_CLASSIFIER, 6, "models.classifier", 3),
        ("experiment: a\nseed: 1\nexperiment: b\n", 3, "experiment", 1),
        (
            "experiment: a\nclasses:\n  - {name: a, index: 1}\n  - {name: b, index: 2, name: c}\n",
            4,
            "classes[1].name",
            4,
        ),
        (
            "experiment: a\nschedules:\n  commitment:\n    enabled: true\n    enabled: false\n",
            5,
            "schedules.commitment.enabled",
            4,
        ),
    ],
)
def test_a_duplicate_key_is_one_line_naming_file_line_and_key(tmp_path, text, line, key, first):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    assert _error(path) == f"{path}:{line}: duplicate key {key} (first at line {first})"


def test_merge_keys_may_still_be_overridden(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("experiment: a\nbase: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n")
    assert load_config(path)["other"] == {"x": 3, "y": 2}


@pytest.mark.parametrize("name", ["config.yaml", "imagenet_cats.yaml", "sd14.yaml"])
def test_the_shipped_configs_give_every_key_once(name):
    load_config(REPO / "config" / name)


def test_the_schema_gives_every_key_once():
    from diffxai.config.load import SCHEMA_PATH

    load_config(SCHEMA_PATH)


def test_diffxai_check_refuses_a_duplicate_key(tmp_path, monkeypatch, capsys):
    from diffxai.workflow.cli import main

    (tmp_path / "dup.yaml").write_text(DUPLICATE_CLASSIFIER)
    monkeypatch.chdir(tmp_path)
    assert main(["check", "--no-files", "dup.yaml"]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("diffxai config error")]
    assert err == ["diffxai config error: dup.yaml:6: duplicate key models.classifier (first at line 3)"]


@pytest.mark.e2e
def test_snakemake_configfile_with_a_duplicate_key_stops_before_any_job(tmp_path):
    """Snakemake reads --configfile with its own loader (keeps the last duplicate); the Snakefile
    re-reads every --configfile with diffxai's and stops with one line."""
    (tmp_path / "dup.yaml").write_text(DUPLICATE_CLASSIFIER)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--configfile", "dup.yaml"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("diffxai config error")]
    assert lines == ["diffxai config error: dup.yaml:6: duplicate key models.classifier (first at line 3)"], proc.stderr
    assert not (tmp_path / "results").exists()
