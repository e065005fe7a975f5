"""Shared fixtures: one end-to-end run of the tiny config, reused by every end-to-end test.

Lanes: ``pytest -m "not e2e"`` is the fast lane (in-process unit and stage tests); every test that
starts Snakemake is marked ``e2e`` automatically (it uses the ``tiny_run`` fixture, lives in
``tests/e2e/``, or calls :func:`run_snakemake`), so nobody has to remember the marker.

Workers: the suite runs on pytest-xdist (``-n auto --dist loadgroup`` in pyproject.toml). Every
test that reads the tiny run is put in the xdist group ``tiny``, so the run is made once, on one
worker, while the other workers take the rest of the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"

torch.set_num_threads(1)


def snakemake_cmd(workdir: Path, *args: str, configfile: Path = TINY) -> list[str]:
    """A snakemake command line running this repository's Snakefile in ``workdir``."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        *args,
    ]


def run_snakemake(workdir: Path, *args: str, configfile: Path = TINY, check: bool = True, timeout: int = 900):
    # progress lines after every chunk, so the tiny runs' logs show what a long run logs every 30 s
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO / "src"),
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        DIFFXAI_TRACK_PARAMS="1",
        DIFFXAI_PROGRESS_SECONDS="0",
    )
    proc = subprocess.run(
        snakemake_cmd(workdir, *args, configfile=configfile), capture_output=True, text=True, env=env, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    import inspect

    for item in items:
        if "tiny_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("tiny"))
        if item.get_closest_marker("e2e"):
            continue
        fn = getattr(item, "function", None)
        src = ""
        if fn is not None:
            try:
                src = inspect.getsource(fn)
            except (OSError, TypeError):
                src = ""
        if (
            "tiny_run" in getattr(item, "fixturenames", ())
            or "/e2e/" in str(item.path)
            or "run_snakemake(" in src
            or "snakemake_cmd(" in src
        ):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """Run the whole DAG on ``tests/configs/tiny.yaml`` once; returns ``results/tiny``."""
    work = tmp_path_factory.mktemp("tiny-run")
    run_snakemake(work, "--cores", "2")
    return work / "results" / "tiny"


@pytest.fixture
def repo() -> Path:
    return REPO


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
