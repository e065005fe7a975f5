"""The tiny config end to end on a real single-node SLURM, through `--profile profiles/slurm`.

tests/slurm/setup.sh stands up munge, MariaDB, slurmdbd, slurmctld and slurmd on loopback
(installing Debian's packages when missing; about 15-30 s) with one GPU GRES backed by a dummy
device; tests/slurm/teardown.sh stops them by PID. The run uses the repository's SLURM profile
with only the cluster-specific values replaced (partition, account, CPU cap, status-check
interval); the likelihood stage asks for one GPU per job, so its jobs go through `--gpus=1`, get
the GRES and see CUDA_VISIBLE_DEVICES from SLURM (the jobs compute on the CPU). Its tables must
equal the golden tables of the local tiny run (tests/golden), provenance metadata aside.

Skipped only when the SLURM packages cannot be installed (no root or no apt); set
DIFFXAI_SLURM_STATE to reuse a cluster that setup.sh already started there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY
from helpers import GOLDEN, golden_rows

pytestmark = pytest.mark.e2e

SETUP = REPO / "tests" / "slurm" / "setup.sh"
TEARDOWN = REPO / "tests" / "slurm" / "teardown.sh"
PROFILE = REPO / "profiles" / "slurm" / "config.v8+.yaml"
PARTITION, ACCOUNT = "debug", "diffxai"
FOUNDATION_STAGES = ["models", "trajectories", "likelihood"]
RUN_TIMEOUT = 900  # seconds; the plugin can wait forever when it cannot see a job's status


@pytest.fixture(scope="module")
def slurm_env():
    """Environment variables that point SLURM's clients at the test cluster."""
    reuse = os.environ.get("DIFFXAI_SLURM_STATE")
    state = Path(reuse) if reuse else Path(tempfile.mkdtemp(prefix="dxslurm-", dir="/tmp"))
    if not reuse:
        started = time.monotonic()
        proc = subprocess.run(["bash", str(SETUP), str(state)], capture_output=True, text=True, timeout=900)
        if proc.returncode in (3, 4):
            why = "packages could not be installed" if proc.returncode == 3 else "a real SLURM is configured here"
            pytest.skip(f"no test SLURM cluster ({why}): {proc.stderr.strip()[-500:]}")
        assert proc.returncode == 0, f"tests/slurm/setup.sh failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
        print(f"SLURM cluster up in {time.monotonic() - started:.0f}s")
    env = dict(os.environ, SLURM_CONF=str(state / "etc" / "slurm.conf"))
    try:
        yield env
    finally:
        if not reuse:
            subprocess.run(["bash", str(TEARDOWN), str(state)], capture_output=True, timeout=120)
            shutil.rmtree(state, ignore_errors=True)


def test_profile_declares_the_cluster_settings():
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm"
    assert profile["retries"] >= 1
    for key in ("slurm_partition", "slurm_account", "runtime", "mem_mb"):
        assert key in profile["default-resources"], key
    assert "attempt" in str(profile["default-resources"]["mem_mb"])
    for rules in (REPO / "rules").glob("*.smk"):
        text = rules.read_text()
        assert "slurm_partition" not in text and "slurm_account" not in text, f"{rules.name}: cluster settings in rules"
        # Memory and runtime of network rules grow with the attempt (rules/common.smk helpers).
        for key, helper in (("mem_mb", "stage_mem_mb"), ("runtime", "stage_runtime")):
            for value in re.findall(rf"^\s+{key}=(.+),$", text, re.M):
                assert value.startswith(f"{helper}("), f"{rules.name}: {key}={value}; use {key}={helper}(<stage>)"


def test_tiny_run_on_slurm_equals_the_local_run(slurm_env, tmp_path):
    # The repository's profile, with this cluster's partition and account and faster polling.
    profile = yaml.safe_load(PROFILE.read_text())
    profile["default-resources"].update(slurm_partition=PARTITION, slurm_account=ACCOUNT)
    # Two threads at most, as in the local run (conftest runs it with --cores 2), so that the demo
    # trainers compute the same models; fewer if the node has fewer CPUs (a job asking for more
    # CPUs than the node has would stay pending forever).
    threads = min(2, len(os.sched_getaffinity(0)))
    profile.update({"max-threads": threads, "latency-wait": 5, "slurm-init-seconds-before-status-checks": 2})
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.v8+.yaml").write_text(yaml.safe_dump(profile))
    # The tiny config, with the likelihood jobs asking SLURM for a GPU. By default only the jobs
    # behind one class's likelihood table run (both trainers, the class's trajectories and its
    # likelihood: every job costs two snakemake start-ups on top of its work, and CI time is
    # short); DIFFXAI_SLURM_STAGES=all runs every stage of the tiny config.
    cfg = yaml.safe_load(TINY.read_text())
    cfg["likelihood"] = {**cfg.get("likelihood", {}), "resources": {"gpu": 1}}
    stages = os.environ.get("DIFFXAI_SLURM_STAGES", ",".join(FOUNDATION_STAGES))
    if stages != "all":
        cfg["stages"] = stages.split(",")
    (tmp_path / "tiny_slurm.yaml").write_text(yaml.safe_dump(cfg))
    work = tmp_path / "work"
    env = dict(slurm_env, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        str(tmp_path / "profile"),
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(tmp_path / "tiny_slurm.yaml"),
    ]
    one = cfg["classes"][0]["name"]
    if stages != "all":
        cmd.insert(3, f"results/tiny/likelihood/{one}.parquet")  # a target before the options
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        subprocess.run(["scancel", "--user", os.environ.get("USER", "root")], env=slurm_env, capture_output=True)
        pytest.fail(f"snakemake on SLURM did not finish in {RUN_TIMEOUT}s:\n{(exc.stderr or b'')[-4000:]!r}")
    assert proc.returncode == 0, f"snakemake on SLURM failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    print(f"tiny DAG on SLURM in {time.monotonic() - started:.0f}s")

    # Every job went through sbatch; the likelihood jobs were allocated the GPU GRES.
    acct = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobName,Comment,State,AllocTRES", "--starttime", "now-1day"],
        capture_output=True,
        text=True,
        env=slurm_env,
        check=True,
    ).stdout
    rows = [line.split("|") for line in acct.strip().splitlines()]
    assert rows, "sacct shows no jobs"
    run_name = rows[-1][0]  # every job of one snakemake run has the run's UUID as its name
    ours = [r[1:] for r in rows if r[0] == run_name]
    assert all(r[0].startswith("rule_") and r[1] == "COMPLETED" for r in ours), ours
    jobs = work / "results" / "tiny" / "benchmarks"
    assert len(ours) == len(list(jobs.rglob("*.tsv"))), "every job ran through sbatch"
    gpu_jobs = {r[0] for r in ours if "gres/gpu=1" in r[2]}
    classes = [c["name"] for c in cfg["classes"]] if stages == "all" else [one]
    assert gpu_jobs == {f"rule_likelihood_compute_wildcards_{c}" for c in classes}, ours
    for c in classes:
        log = (work / "results" / "tiny" / "logs" / "likelihood_compute" / f"{c}.log").read_text()
        assert "CUDA_VISIBLE_DEVICES=0 as given by the scheduler" in log, log

    # Same values as the local run: each class's likelihood table holds exactly the golden table's
    # rows of that class (the golden tables are the local --cores 2 run of the whole tiny DAG).
    res = work / "results" / "tiny"
    for c in classes:
        got = pd.read_parquet(res / "likelihood" / f"{c}.parquet")
        pd.testing.assert_frame_equal(got, golden_rows("likelihood", class_name=c), check_exact=True, obj=c)
    if stages == "all":
        for table in sorted(GOLDEN.glob("*.parquet")):
            want = pd.read_parquet(table)
            pd.testing.assert_frame_equal(pd.read_parquet(res / "tables" / table.name), want, obj=table.name)
