import os
import sys
from pathlib import Path

# The library lives in src/; make it importable here and in every script's process.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        [SRC] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
)

from diffxai.config.load import load_config
from diffxai.core.errors import DiffxaiError


def or_exit(check, *args):
    """Run a config check; a DiffxaiError becomes one line on stderr and exit status 1."""
    try:
        return check(*args)
    except DiffxaiError as exc:
        sys.stderr.write(f"diffxai config error: {exc}\n")
        sys.exit(1)


def check_config_file(path):
    """One line naming the file (and line) for a missing or malformed config file, before
    Snakemake's own loader reports it without the file name."""
    or_exit(load_config, path)


def check_config_files(paths):
    """Re-read every --configfile with diffxai's loader: Snakemake's own has read them already and
    silently kept the last of a key given twice, which ours refuses (one line: file, line, key).
    Paths inside the working directory are named relative to it."""
    cwd = Path.cwd()
    for path in map(Path, paths):
        check_config_file(path.relative_to(cwd) if path.is_relative_to(cwd) else path)
