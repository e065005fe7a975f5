"""What reruns after a change: dry runs (`snakemake -n`) on a finished run, one per change.

    python bench/bench_reruns.py WORKDIR [--configfile CONFIG] [--markdown]

WORKDIR holds a finished run of CONFIG (default: the demo, config/config.yaml). The workflow is
copied to a temporary snapshot, so code changes (a comment in ``core/seeding.py``, a real change in
``core/batching.py``) never touch the repository. Prints, per change, the number of jobs Snakemake
plans and which rules, and the planning time of the unchanged run. ``tests/e2e`` asserts these on
the tiny config; ``docs/running.md`` records them on the demo.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PARTS = ["Snakefile", "rules", "scripts", "src/diffxai", "config", "envs", "report"]


def snapshot_workflow(dest: Path) -> Path:
    for part in PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / part)
    return dest


def job_stats(output: str) -> Counter:
    """Rule -> planned jobs, from a dry run's "Job stats" table (empty when nothing is to be done)."""
    if "Nothing to be done" in output:
        return Counter()
    m = re.search(r"Job stats:\njob\s+count\n-+\s+-+\n(.*?)\ntotal\s+\d+", output, re.S)
    if not m:
        raise RuntimeError(f"no job stats in the dry run's output:\n{output[-3000:]}")
    return Counter({line.split()[0]: int(line.split()[1]) for line in m.group(1).strip().splitlines()})


def dry_run(snapshot: Path, work: Path, config: Path, *args: str) -> tuple[Counter, float, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(snapshot / "src"))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(snapshot / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(config),
        "--dry-run",
        *args,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"dry run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return job_stats(proc.stdout + proc.stderr), seconds, proc.stdout + proc.stderr


def _set(cfg: dict, key: str, fn: Callable) -> dict:
    out = copy.deepcopy(cfg)
    node = out
    *head, last = key.split(".")
    for k in head:
        node = node.setdefault(k, {})
    node[last] = fn(node.get(last))
    return out


def _reordered(obj):
    if isinstance(obj, dict):
        return {k: _reordered(obj[k]) for k in reversed(list(obj))}
    if isinstance(obj, list):
        return [_reordered(v) for v in obj]
    return obj


def config_cases(cfg: dict) -> list[tuple[str, dict]]:
    """(label, changed config) pairs."""
    n_images = cfg.get("data", {}).get("n_images", 4)
    spc = cfg.get("models", {}).get("evaluation", {}).get("samples_per_class", 20)
    window = cfg.get("likelihood", {}).get("window", 3)
    return [
        (f"`data.n_images: {n_images} -> {n_images + 1}`", _set(cfg, "data.n_images", lambda v: n_images + 1)),
        (
            f"`models.evaluation.samples_per_class: {spc} -> {spc + 1}`",
            _set(cfg, "models.evaluation.samples_per_class", lambda v: spc + 1),
        ),
        ("the same YAML with its keys in another order", _reordered(cfg)),
        ("`models.evaluation.guidance: 2.0` written as `2`", _set(cfg, "models.evaluation.guidance", lambda v: 2)),
        ("`resources.mem_mb: 8000` (execution only)", _set(cfg, "resources.mem_mb", lambda v: 8000)),
        (f"`likelihood.window: {window} -> {window + 1}`", _set(cfg, "likelihood.window", lambda v: window + 1)),
        ("`plots.dpi: 90`", _set(cfg, "plots.dpi", lambda v: 90)),
    ]


CODE_CASES = [
    ("a comment appended to `core/seeding.py`", "src/diffxai/core/seeding.py", "\n# a reworded comment\n"),
    ("a docstring reworded in `stages/likelihood.py`", "src/diffxai/stages/likelihood.py", None),
    ("a real change in `core/batching.py`", "src/diffxai/core/batching.py", "\n_RERUN_PROBE = 1\n"),
    ("a real change in `plots/likelihood.py`", "src/diffxai/plots/likelihood.py", "\n_RERUN_PROBE = 1\n"),
]


def _code_case(work: Path, config: Path, tmp: Path, rel: str, extra: str | None) -> Counter:
    """A dry run on a snapshot of the workflow with one source file edited."""
    snapshot = snapshot_workflow(tmp / "workflow")
    target = snapshot / rel
    text = target.read_text()
    target.write_text(text.replace('"""', '""" Reworded:', 1) if extra is None else text + extra)
    return dry_run(snapshot, work, config)[0]


def measure(work: Path, config: Path, parallel: int = 2) -> list[tuple[str, Counter]]:
    """(change, planned jobs) for every case; ``parallel`` dry runs at a time (each on its own
    snapshot, so no case sees another's edit)."""
    from concurrent.futures import ThreadPoolExecutor

    cfg = yaml.safe_load(config.read_text())
    with tempfile.TemporaryDirectory(prefix="diffxai-reruns-") as tmp_name:
        tmp = Path(tmp_name)
        snapshot = snapshot_workflow(tmp / "workflow")
        jobs, seconds, _ = dry_run(snapshot, work, config)
        rows = [(f"nothing (planning took {seconds:.1f} s)", jobs)]
        tasks = []
        for i, (label, changed) in enumerate(config_cases(cfg)):
            path = tmp / f"changed{i}.yaml"
            path.write_text(yaml.safe_dump(changed, sort_keys=False))
            tasks.append((label, lambda path=path: dry_run(snapshot, work, path)[0]))
        for i, (label, rel, extra) in enumerate(CODE_CASES):
            case_dir = tmp / f"code{i}"
            tasks.append((label, lambda d=case_dir, r=rel, e=extra: _code_case(work, config, d, r, e)))
        with ThreadPoolExecutor(parallel) as pool:
            results = list(pool.map(lambda task: task[1](), tasks))
        rows += [(label, jobs) for (label, _), jobs in zip(tasks, results)]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("work")
    ap.add_argument("--configfile", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    rows = measure(Path(args.work), Path(args.configfile))
    for label, jobs in rows:
        n = sum(v for k, v in jobs.items() if k != "all")
        rules = ", ".join(f"{k} x{v}" if v > 1 else k for k, v in sorted(jobs.items()) if k != "all") or "-"
        print(f"| {label} | {n} | {rules} |" if args.markdown else f"{n:4d} jobs  {label}: {rules}")


if __name__ == "__main__":
    main()
