"""The workflow is clean under `snakemake --lint` and `snakefmt --check` (every stage's rules)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import REPO

ENV = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))


def test_snakemake_lint_is_clean(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--lint",
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(REPO / "config" / "config.yaml"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    out = (proc.stdout + proc.stderr).strip()
    offenders = sorted({line.strip() for line in out.splitlines() if line.startswith("Lints for")})
    assert proc.returncode == 0 and not offenders, "snakemake --lint:\n" + "\n".join(offenders) + "\n\n" + out[-4000:]


def test_snakefmt_check_is_clean():
    snakefmt = shutil.which("snakefmt") or str(os.path.join(os.path.dirname(sys.executable), "snakefmt"))
    proc = subprocess.run([snakefmt, "--check", "."], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"snakefmt --check . (run `snakefmt .` to fix):\n{proc.stdout}{proc.stderr}"
