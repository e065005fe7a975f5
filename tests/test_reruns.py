"""Incremental reruns: a change reruns exactly the jobs it touches (asserted from dry runs).

The finished tiny run (the session's ``tiny_run``) is copied together with a snapshot of the
workflow (Snakefile, rules, scripts, src, ...), so that library code and scripts can be edited
without touching the repository. Every check is a dry run with Snakemake's default rerun
triggers (mtime, params, input, software-env, code): parameter changes reach a job through its
``params:``, library changes through its ``code=get_code_hash(...)`` param, script changes through
the script's modification time.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY

pytestmark = pytest.mark.e2e

R = "results/tiny"
# The foundation's outputs: targets of the dry runs whose job sets are asserted exactly.
FOUNDATION = [
    f"{R}/tables/models.parquet",
    f"{R}/plots/model_samples.png",
    f"{R}/plots/trajectories.png",
    f"{R}/tables/likelihood.parquet",
    f"{R}/tables/critical_intervals.parquet",
    f"{R}/plots/likelihood_by_view.png",
    f"{R}/plots/likelihood_by_class.png",
]
N_CLASSES = len(yaml.safe_load(TINY.read_text())["classes"])
WORKFLOW_PARTS = ["Snakefile", "rules", "scripts", "src/diffxai", "config", "envs", "report"]


def snakemake(snapshot: Path, work: Path, *args: str, configfile: Path = TINY) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(snapshot / "src"))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snapshot / "Snakefile"), "--directory", str(work), *args,
           "--configfile", str(configfile)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def parse_job_stats(output: str) -> Counter:
    """Rule -> number of jobs from a dry run's "Job stats" table (empty when nothing is to be done)."""
    if "Nothing to be done" in output:
        return Counter()
    m = re.search(r"Job stats:\njob\s+count\n-+\s+-+\n(.*?)\ntotal\s+\d+", output, re.S)
    assert m, f"no job stats in:\n{output[-3000:]}"
    jobs = Counter()
    for line in m.group(1).strip().splitlines():
        name, count = line.split()
        jobs[name] = int(count)
    return jobs


def planned(snapshot: Path, work: Path, *targets: str, configfile: Path = TINY) -> Counter:
    proc = snakemake(snapshot, work, "--dry-run", *(targets or FOUNDATION), configfile=configfile)
    return parse_job_stats(proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def rerun(tiny_run, tmp_path_factory):
    """(snapshot, work): a copy of the workflow and of the finished tiny run, brought up to date.

    The update run is a no-op on a clean checkout; it only matters while the working tree is being
    edited during the session (the tiny run may then predate a library change).
    """
    base = tmp_path_factory.mktemp("reruns")
    snapshot = base / "workflow"
    for part in WORKFLOW_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, snapshot / part, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (snapshot / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, snapshot / part)
    work = base / "work"
    shutil.copytree(tiny_run.parents[1], work, symlinks=True, ignore=shutil.ignore_patterns("slurm_logs", "locks"))
    snakemake(snapshot, work, "all", *FOUNDATION, "--cores", "2")
    return snapshot, work


def tiny_with(tmp_path: Path, **changes) -> Path:
    """tests/configs/tiny.yaml with ``section={key: value}`` changes merged in."""
    cfg = yaml.safe_load(TINY.read_text())
    for section, values in changes.items():
        cfg[section] = {**cfg.get(section, {}), **values}
    path = tmp_path / "tiny_changed.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@contextmanager
def edited(path: Path, extra: str):
    """Append ``extra`` to a file; afterwards restore its content and modification time."""
    text, st = path.read_text(), path.stat()
    path.write_text(text + extra)
    now = time.time_ns()
    os.utime(path, ns=(now, now))  # an edit now: newer than every output
    try:
        yield
    finally:
        path.write_text(text)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_nothing_changed_reruns_nothing(rerun):
    snapshot, work = rerun
    assert planned(snapshot, work) == Counter()
    assert planned(snapshot, work, "all") == Counter()


def test_reordering_config_keys_reruns_nothing(rerun, tmp_path):
    snapshot, work = rerun
    sorted_cfg = tmp_path / "tiny_sorted.yaml"
    sorted_cfg.write_text(yaml.safe_dump(yaml.safe_load(TINY.read_text()), sort_keys=True))
    assert sorted_cfg.read_text() != TINY.read_text()
    assert planned(snapshot, work, "all", configfile=sorted_cfg) == Counter()


def test_likelihood_window_reruns_only_the_aggregate_and_its_plot(rerun, tmp_path):
    snapshot, work = rerun
    cfg = tiny_with(tmp_path, likelihood={"window": 3})
    assert planned(snapshot, work, configfile=cfg) == Counter({"likelihood_aggregate": 1, "likelihood_plot": 1})


def test_likelihood_window_in_the_whole_dag_reaches_only_readers_of_its_tables(rerun, tmp_path):
    snapshot, work = rerun
    jobs = planned(snapshot, work, "all", configfile=tiny_with(tmp_path, likelihood={"window": 3}))
    assert {"likelihood_aggregate", "likelihood_plot", "report_tables", "all"} <= set(jobs)
    upstream = {"models_train_ddpm", "models_train_classifier", "models_evaluate", "trajectories_build",
                "trajectories_plot", "likelihood_compute"}  # fmt: skip
    assert not upstream & set(jobs), jobs
    # Whatever else reruns reads the likelihood tables: an aggregate or a plot, never a compute job.
    assert all(re.search(r"(aggregate|plot|report|all)", name) for name in jobs), jobs


def test_noise_draws_rerun_trajectories_and_everything_downstream(rerun, tmp_path):
    snapshot, work = rerun
    cfg = tiny_with(tmp_path, noise={"n_draws": 3})
    assert planned(snapshot, work, configfile=cfg) == Counter(
        {
            "trajectories_build": N_CLASSES,
            "trajectories_plot": 1,
            "likelihood_compute": N_CLASSES,
            "likelihood_aggregate": 1,
            "likelihood_plot": 1,
        }
    )


def test_library_code_change_reruns_the_rules_that_use_it(rerun):
    snapshot, work = rerun
    with edited(snapshot / "src/diffxai/likelihood.py", "\n# a change to the likelihood code\n"):
        jobs = planned(snapshot, work)
    # likelihood_compute and likelihood_aggregate list `likelihood` in their code hash; the plot
    # reads the new table.
    assert jobs == Counter({"likelihood_compute": N_CLASSES, "likelihood_aggregate": 1, "likelihood_plot": 1})
    with edited(snapshot / "src/diffxai/plots.py", "\n# a change to the plotting code\n"):
        jobs = planned(snapshot, work)
    assert jobs == Counter({"models_evaluate": 1, "trajectories_plot": 1, "likelihood_plot": 1})


def test_script_change_reruns_its_rule(rerun):
    snapshot, work = rerun
    with edited(snapshot / "scripts/likelihood_aggregate.py", "\n# a change to the script\n"):
        jobs = planned(snapshot, work)
    assert jobs == Counter({"likelihood_aggregate": 1, "likelihood_plot": 1})



def test_one_attribution_method_reruns_only_that_method(rerun, tmp_path):
    from diffxai.config.load import load_schema

    snapshot, work = rerun
    tiny = yaml.safe_load(TINY.read_text())
    if "attribution" not in tiny.get("stages", ["attribution"]):
        pytest.skip("the tiny config does not run the attribution stage")
    default = load_schema(snapshot / "config" / "schema.yaml")["properties"]["attribution"]["properties"]["methods"]
    methods = copy.deepcopy(tiny.get("attribution", {}).get("methods") or default["default"])
    if "n_steps" not in methods.get("ig", {}).get("attribute", {}):
        pytest.skip("no Integrated Gradients method with n_steps in the tiny config")
    methods["ig"]["attribute"]["n_steps"] += 1
    cfg = tiny_with(tmp_path, attribution={"methods": methods})
    assert planned(snapshot, work, "all", configfile=cfg) == Counter(
        {
            "attribution_compute": N_CLASSES,  # ig only, every class
            "attribution_sanity": 1,  # ig only
            "attribution_aggregate": 1,
            "attribution_plot_maps": 1,
            "attribution_plot": 1,
            "report_tables": 1,
            "all": 1,
        }
    )
