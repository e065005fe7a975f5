"""The default demo end to end: wall time and peak memory of `snakemake --cores all`.

Runs the README's demo (config/config.yaml) in a fresh temporary directory so nothing is cached,
then prints the wall time, the largest resident set of any job, and the slowest rules. With
``--compare DIR`` (an earlier run's directory) it also checks that every Parquet table has the
same bytes as there: the demo run twice gives byte-identical tables.

    python bench/bench_demo.py [--cores 2] [--keep DIR] [--compare EARLIER_DIR]
"""

from __future__ import annotations

import argparse
import csv
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cores", default="all")
    ap.add_argument("--keep", help="run in this directory instead of a temporary one")
    ap.add_argument("--compare", help="an earlier run's directory: compare every Parquet table byte for byte")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="diffxai-demo-"))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(REPO / "config" / "config.yaml"),
        "--cores",
        str(args.cores),
        "--quiet",
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"demo wall time: {wall:.0f} s ({wall / 60:.1f} min) with --cores {args.cores}")
    print(f"peak resident memory of any job: {peak_mb:.0f} MiB")
    rows = []
    for tsv in (work / "results").glob("*/benchmarks/**/*.tsv"):
        with open(tsv) as f:
            rec = next(csv.DictReader(f, delimiter="\t"))
        rows.append((float(rec["s"]), float(rec.get("max_rss") or 0), str(tsv.relative_to(work))))
    for s, rss, name in sorted(rows, reverse=True)[:12]:
        print(f"  {s:7.1f} s  {rss:7.0f} MiB  {name}")
    print(f"results in {work}")
    if args.compare:
        other = Path(args.compare)
        tables = sorted(p.relative_to(work) for p in (work / "results").rglob("*.parquet"))
        differ = [
            str(t) for t in tables if not (other / t).is_file() or (other / t).read_bytes() != (work / t).read_bytes()
        ]
        print(f"{len(tables) - len(differ)}/{len(tables)} Parquet tables byte-identical to {other}")
        if differ:
            sys.exit(f"differ: {differ}")


if __name__ == "__main__":
    main()
