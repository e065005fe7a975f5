"""``diffxai``: check a config before a run, or run the pipeline with the config checked first.

::

    diffxai check config/imagenet_cats.yaml      # syntax, schema, every field, every input file
    diffxai run --cores all --configfile my.yaml  # = snakemake ..., after checking each --configfile
    diffxai build-checkpoints ckpt --only sd14 --dtype float16   # real-size random-weight checkpoints

``snakemake --configfile my.yaml`` works too, but Snakemake parses that file before the workflow's
code runs, so a YAML syntax error there comes back as Snakemake's own message without the file
name. ``diffxai check`` / ``diffxai run`` report it as one line naming the file and line. Several
files merge in order, as Snakemake merges them; without a file the demo ``config/config.yaml`` is
checked (run from the repository root, like Snakemake).

``diffxai build-checkpoints OUTDIR [--only sd14,ddpm-cat-256,resnet18,resnet50] [--dtype float16]
[--tiny] [--images]`` writes the real architectures with random weights, saved like the real
checkpoints (no network; :mod:`diffxai.models.realsize`, run as ``python -m
diffxai.models.realsize`` in a child process so that this module never imports torch).
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
from pathlib import Path

from diffxai.config.checks import check_config
from diffxai.config.load import load_config
from diffxai.core.errors import DiffxaiError

DEFAULT_CONFIG = "config/config.yaml"


def merged_config(paths: list[str]) -> dict:
    """Read ``paths`` (one-line errors for missing or malformed files) and merge them in order,
    nested mappings key by key, exactly as Snakemake merges several ``--configfile`` files."""
    from snakemake.utils import update_config

    merged: dict = {}
    for path in paths:
        update_config(merged, copy.deepcopy(load_config(path)))
    return merged


def configfiles_in(args: list[str]) -> list[str]:
    """The files given to ``--configfile`` / ``--configfiles`` in a snakemake command line."""
    files, taking = [], False
    for arg in args:
        if arg.startswith("-"):
            name, _, value = arg.partition("=")
            taking = name in ("--configfile", "--configfiles")
            if taking and value:
                files.append(value)
                taking = False
        elif taking:
            files.append(arg)
    return files


def cmd_check(paths: list[str], check_files: bool) -> str:
    config = check_config(merged_config(paths or [DEFAULT_CONFIG]), check_files=check_files)
    return (
        f"{', '.join(paths or [DEFAULT_CONFIG])}: ok (experiment {config['experiment']!r}, "
        f"{len(config['classes'])} classes, stages: {', '.join(config['stages'])})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diffxai", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate config files without running anything")
    check.add_argument("configs", nargs="*", help=f"config files, merged in order (default {DEFAULT_CONFIG})")
    check.add_argument("--no-files", action="store_true", help="do not look for image folders and checkpoints")
    sub.add_parser("run", help="check every --configfile, then run snakemake with the same arguments", add_help=False)
    sub.add_parser(
        "build-checkpoints",
        help="write SD 1.4, ddpm-cat-256, ResNet-18/50 at real size with random weights (no network)",
        add_help=False,
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    # everything after "run" belongs to snakemake, after "build-checkpoints" to diffxai.models.realsize
    args = parser.parse_args(argv[:1] if argv[:1] in (["run"], ["build-checkpoints"]) else argv)
    snakemake_args = argv[1:]
    if args.command == "build-checkpoints":  # torch lives below the workflow layer: a child process
        return subprocess.call([sys.executable, "-m", "diffxai.models.realsize", *argv[1:]])
    try:
        if args.command == "check":
            print(cmd_check(args.configs, check_files=not args.no_files))
            return 0
        files = configfiles_in(snakemake_args)
        if files:
            merged_config(files)  # syntax only; the Snakefile checks the fields
        elif not Path(DEFAULT_CONFIG).is_file():
            raise DiffxaiError(DEFAULT_CONFIG, "not found: run from the repository root or give --configfile")
    except DiffxaiError as exc:
        print(f"diffxai config error: {exc}", file=sys.stderr)
        return 1
    cmd = [sys.executable, "-m", "snakemake", *snakemake_args]
    os.execv(sys.executable, cmd)
    return 0  # pragma: no cover
