"""GPU slot binding (diffxai.gpu_slots) without CUDA: DIFFXAI_GPU_COUNT stands in for the driver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from diffxai.core.errors import DiffxaiError
from diffxai.workflow import gpu_slots
from diffxai.workflow.jobs import run_job

# A job process: take `n` slots, report the devices, hold them until the release file appears.
HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from diffxai.workflow.gpu_slots import acquire_gpus
    n, out, release = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    lease = acquire_gpus(n, timeout=float(sys.argv[4]), poll=0.05)
    out.write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "") + "\\n")
    while not release.exists():
        time.sleep(0.02)
    if len(sys.argv) > 5:
        os.kill(os.getpid(), 9)  # crash while holding the slot
    """
)


@pytest.fixture
def slot_env(tmp_path, monkeypatch):
    """Two fake GPUs, a private lock directory, and no scheduler in the environment."""
    env = {gpu_slots.ENV_DIR: str(tmp_path / "slots"), gpu_slots.ENV_COUNT: "2"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", gpu_slots.ENV_MODE):
        monkeypatch.delenv(k, raising=False)
    return dict(os.environ)


def start_holder(tmp_path, env, name, n=1, timeout=20.0, crash=False):
    out, release = tmp_path / f"{name}.out", tmp_path / f"{name}.release"
    args = [sys.executable, "-c", HOLDER, str(n), str(out), str(release), str(timeout)] + (["crash"] if crash else [])
    return subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True), out, release


def wait_for(path: Path, proc, timeout=20.0) -> str:
    deadline = time.monotonic() + timeout
    # the holder writes the devices and a newline: an existing but still empty file is not ready
    while not (path.exists() and path.read_text().endswith("\n")):
        if proc.poll() is not None:
            raise AssertionError(f"holder exited {proc.returncode}: {proc.stderr.read()}")
        assert time.monotonic() < deadline, f"{path} not written"
        time.sleep(0.02)
    return path.read_text().strip()


def test_concurrent_processes_get_distinct_slots_and_release_on_exit(tmp_path, slot_env):
    p1, out1, rel1 = start_holder(tmp_path, slot_env, "a")
    p2, out2, rel2 = start_holder(tmp_path, slot_env, "b")
    got = {wait_for(out1, p1), wait_for(out2, p2)}
    assert got == {"0", "1"}
    # Both devices are taken: a third job cannot get one now ...
    with pytest.raises(DiffxaiError, match="resources.gpu"):
        gpu_slots.acquire_gpus(1, timeout=0.3, poll=0.05)
    # ... and gets the one the first job leaves behind when it exits.
    first = out1.read_text().strip()
    rel1.touch()
    assert p1.wait(20) == 0
    lease = gpu_slots.acquire_gpus(1, timeout=5, poll=0.05)
    try:
        assert lease.devices == [first] and lease.source == "slots"
        assert os.environ["CUDA_VISIBLE_DEVICES"] == first
    finally:
        lease.release()
        rel2.touch()
        p2.wait(20)


def test_a_crashed_job_frees_its_slot(tmp_path, slot_env):
    proc, out, release = start_holder(tmp_path, slot_env, "crash", n=2, crash=True)
    assert wait_for(out, proc) == "0,1"
    assert gpu_slots.try_acquire(1, ["0", "1"], gpu_slots.slots_dir()) is None
    release.touch()
    assert proc.wait(20) == -signal.SIGKILL
    lease = gpu_slots.try_acquire(2, ["0", "1"], gpu_slots.slots_dir())
    assert lease is not None and lease.devices == ["0", "1"]
    lease.release()


def test_all_or_nothing_so_multi_gpu_jobs_cannot_deadlock(tmp_path, slot_env):
    directory = gpu_slots.slots_dir()
    one = gpu_slots.try_acquire(1, ["0", "1"], directory)
    assert one.devices == ["0"]
    assert gpu_slots.try_acquire(2, ["0", "1"], directory) is None
    # The failed attempt did not keep device 1 locked.
    other = gpu_slots.try_acquire(1, ["0", "1"], directory)
    assert other.devices == ["1"]
    one.release()
    other.release()


def test_visible_devices_restrict_the_pool(slot_env, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with gpu_slots.gpu_slots(1) as lease:
        assert lease.devices == ["2"]
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"


def test_scheduler_binding_is_used_as_given(tmp_path, slot_env, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    lease = gpu_slots.acquire_gpus(1)
    assert lease.source == "scheduler" and lease.devices == ["5"]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    assert not list(gpu_slots.slots_dir().glob("*.lock"))


def test_no_gpu_requested_or_present_changes_nothing(slot_env, monkeypatch):
    assert gpu_slots.acquire_gpus(0).source == "none"
    monkeypatch.setenv(gpu_slots.ENV_COUNT, "0")
    assert gpu_slots.acquire_gpus(1).source == "none"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_too_many_gpus_and_bad_count_are_one_line_errors(slot_env, monkeypatch):
    with pytest.raises(DiffxaiError, match="asks for 3 GPUs"):
        gpu_slots.acquire_gpus(3)
    monkeypatch.setenv(gpu_slots.ENV_COUNT, "two")
    with pytest.raises(DiffxaiError, match=gpu_slots.ENV_COUNT):
        gpu_slots.acquire_gpus(1)


def test_run_job_binds_the_device_before_the_job_runs(tmp_path, slot_env):
    seen = {}

    def job(params, inputs, outputs):
        seen["visible"] = os.environ.get("CUDA_VISIBLE_DEVICES")
        seen["locked"] = gpu_slots.try_acquire(2, ["0", "1"], gpu_slots.slots_dir())
        seen["args"] = (dict(params), inputs, outputs)

    smk = SimpleNamespace(
        log=[str(tmp_path / "job.log")],
        threads=1,
        rule="demo",
        wildcards={},
        resources=SimpleNamespace(gpu=1),
        params=SimpleNamespace(settings={"threads": 1}),
        input=["in"],
        output=["out"],
    )
    run_job(smk, job)
    assert seen["args"] == ({"threads": 1}, ["in"], ["out"])
    assert seen["visible"] == "0"
    assert seen["locked"] is None  # device 0 was held while the job ran
    assert "CUDA_VISIBLE_DEVICES=0" in (tmp_path / "job.log").read_text()
    # released afterwards
    lease = gpu_slots.try_acquire(2, ["0", "1"], gpu_slots.slots_dir())
    assert lease is not None
    lease.release()
