"""The ONE atomic write: a temporary file beside the target, renamed into place when complete."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _atomic_target(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)
