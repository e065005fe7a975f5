"""bench/bench_gpu.py runs on a CPU: ``--small`` (tiny sizes, every section, float32) prints the
table and writes JSON with a rate, a ratio and a FLOP count per section, in well under a minute.
The real-size run needs a GPU (docs/performance.md, "GPU benchmark")."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the whole script as a user runs it (a subprocess, every section, ~30 s on 2 cores): end to end
pytestmark = pytest.mark.e2e
SECTIONS = ["ig", "gradshap", "occlusion", "dfrise", "dfcam", "cad", "schedules"]
CHECKED = {"ig", "gradshap", "occlusion", "dfcam", "schedules"}  # batched vs naive on the same items


def test_bench_gpu_small_runs_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "bench/bench_gpu.py", "--small", "--budget-s", "1", "--threads", "1"]
    proc = subprocess.run(
        [*cmd, "--device", "cpu", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| section | dtype |" in proc.stdout and "unknown peak" in proc.stdout
    res = json.loads(out.read_text())
    assert res["small"] and res["device"] == "cpu" and res["dtypes"] == ["float32"]
    rows = {r["section"]: r for r in res["rows"]}
    assert sorted(rows) == sorted(SECTIONS)
    for name, r in rows.items():
        assert not r["error"], (name, r["error"])
        d = r["derived"]
        assert d["batched_per_s"] > 0 and d["naive_per_s"] > 0 and math.isfinite(d["ratio"]), name
        assert r["flops_per_item"] > 0 and r["batch"] >= 1 and r["n_naive"] >= 1, name
        assert d["peak_share"] is None and r["peak_label"] == "unknown peak", name
        if name in CHECKED:
            assert r["check"] is not None and r["check"] < 1e-3, (name, r["check"])
    assert any("DF-RISE" in t for t in res["targets"])


def test_peak_table_knows_the_h100_and_h200():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import bench_gpu
    finally:
        sys.path.remove(str(REPO / "bench"))
    names = {"NVIDIA H100 80GB HBM3": 989.4, "NVIDIA H200": 989.4, "NVIDIA H100 PCIe": 756.0, "NVIDIA L40S": 362.1}
    for name, half in names.items():
        hit = next(p for p in bench_gpu.PEAK_TFLOPS if p[0] in name)
        assert hit[3] == half, name
    assert bench_gpu.peak_tflops(__import__("torch").device("cpu"), None, True) == (None, "unknown peak")
