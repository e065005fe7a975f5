"""Reliability: identical tables across runs and --cores, and a killed run that resumes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time

import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY, run_snakemake, snakemake_cmd
from helpers import golden_rows


def _foundation_config(tmp_path):
    cfg = yaml.safe_load(TINY.read_text())
    cfg["stages"] = ["models", "trajectories", "likelihood"]
    path = tmp_path / "tiny-foundation.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


#: one job of each heavy rule, rerun with --cores 1 in a copy of the finished (--cores 2) tiny run
ONE_CORE_JOBS = [
    "attribution/ig/digit_3.stats.parquet",
    "saliency/dfrise/digit_3.parquet",
    "components/digit_7/attribution.parquet",
]


def test_one_core_jobs_are_byte_identical_to_the_two_core_run(tiny_run, tmp_path):
    """Same config, same machine: a job's tables have identical bytes whatever --cores and job
    order. One job of each heavy stage is redone with --cores 1 (alone) in a copy of the --cores 2
    run; the foundation is redone whole at --cores 1 by the kill/resume test below."""
    work = tmp_path / "work"
    shutil.copytree(tiny_run.parents[1], work, symlinks=True, ignore=shutil.ignore_patterns("locks"))
    res = work / "results" / "tiny"
    targets = [f"results/tiny/{t}" for t in ONE_CORE_JOBS]
    run_snakemake(
        work,
        "--cores",
        "1",
        "--forcerun",
        *targets,
        "--allowed-rules",
        "attribution_compute",
        "saliency_compute",
        "components_concept",
        "--",
        *targets,
    )
    for t in ONE_CORE_JOBS:
        assert (res / t).stat().st_mtime > (tiny_run / t).stat().st_mtime, f"{t} was not redone"
        assert (res / t).read_bytes() == (tiny_run / t).read_bytes(), f"{t} differs between --cores 2 and 1"


def test_killed_run_resumes_with_rerun_incomplete(tmp_path):
    """Kill a run mid-training, resume it: one class's likelihood table (behind it: both demo
    trainers, the class's trajectories) holds exactly the golden table's rows of that class (an
    uninterrupted run of the whole tiny DAG at --cores 2; so it also depends neither on --cores nor
    on which other jobs ran). Not on ``tiny_run``, so that it runs beside it on another worker."""
    cfg = _foundation_config(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    target = "results/tiny/likelihood/digit_3.parquet"
    proc = subprocess.Popen(
        snakemake_cmd(tmp_path, "--cores", "1", target, configfile=cfg),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # kill the whole run (snakemake and its job) while the DDPM is training
    log = tmp_path / "results" / "tiny" / "logs" / "models_train_ddpm.log"
    deadline = time.time() + 120
    while not log.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / target).exists()
    run_snakemake(tmp_path, "--unlock", "--cores", "1", configfile=cfg)
    run_snakemake(tmp_path, "--cores", "1", "--rerun-incomplete", target, configfile=cfg)
    got = pd.read_parquet(tmp_path / target)
    pd.testing.assert_frame_equal(got, golden_rows("likelihood", class_name="digit_3"), check_exact=True)


@pytest.mark.parametrize("experiment", ["../escape", "/abs", "a/b", ""])
def test_experiment_name_cannot_point_outside_results(tmp_path, experiment):
    cfg = yaml.safe_load(TINY.read_text())
    cfg["experiment"] = experiment
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, "-n", "--cores", "1", configfile=path, check=False)
    assert proc.returncode != 0 and "config.experiment" in proc.stderr


def test_model_files_load_only_safely():
    """safetensors or torch.load(weights_only=True); never trust_remote_code or pickle."""
    import re

    for path in (REPO / "src" / "diffxai").rglob("*.py"):
        text = path.read_text()
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path.name}: {line.strip()}"
        assert "trust_remote_code=True" not in text, path.name
        assert not re.search(r"^\s*import pickle|pickle\.load", text, re.M), path.name


# every long-running rule; its log must show how far it is (counts and a rate)
LONG_RULES = [
    "models_train_ddpm",
    "models_train_classifier",
    "trajectories_build",
    "likelihood_compute",
    "attribution_compute",
    "saliency_compute",
    "schedules_generate",
    "schedules_commitment",
    "components_baseline",
    "components_concept",
]
PROGRESS = re.compile(r"\d+/\d+ .*\(\d+(\.\d+)? [\w ]+/s")


@pytest.mark.parametrize("rule", LONG_RULES)
def test_long_stages_log_progress_with_counts_and_rates(tiny_run, rule):
    logs = sorted((tiny_run / "logs").glob(f"{rule}/**/*.log")) + sorted((tiny_run / "logs").glob(f"{rule}.log"))
    assert logs, f"no log of {rule}"
    for path in logs:
        text = path.read_text()
        assert PROGRESS.search(text), f"{path.relative_to(tiny_run)} has no progress line:\n{text[-1500:]}"
        assert text.rstrip().splitlines()[-1].endswith("s") and "done in" in text.splitlines()[-1]
