"""Glue for Snakemake scripts: logging to the rule's log, threads, GPU slots, one-line errors.

A script is two lines::

    from diffxai.stages import trajectories
    from diffxai.workflow.jobs import run_job

    run_job(snakemake, trajectories.build)

:func:`run_job` calls ``action(params, inputs, outputs)`` with the rule's ``params.settings``
(exactly the settings the driver reads, built by :mod:`diffxai.workflow.params` and never imported here; never the whole
config), after sending ``logging`` to ``snakemake.log[0]``, setting torch's threads to the
settings' ``threads`` (the rule's ``threads:`` are the same number), and reserving the job's GPUs
(``resources.gpu``; :mod:`diffxai.workflow.gpu_slots`) before anything touches CUDA. A
:class:`DiffxaiError` becomes one line on stderr and exit status 1 (Snakemake then removes the
job's partial outputs; every output is written atomically by :mod:`diffxai.io`).

With ``DIFFXAI_TRACK_PARAMS=1`` the settings are a :class:`~diffxai.workflow.tracking.Tracked`
dict and the paths the driver read are written next to the log (``<log>.params.json``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from diffxai.core.device import set_threads
from diffxai.core.errors import DiffxaiError
from diffxai.workflow.gpu_slots import gpu_slots
from diffxai.workflow.registry import merge
from diffxai.workflow.tracking import Execution, Tracked

TRACK_ENV = "DIFFXAI_TRACK_PARAMS"

Action = Callable[[dict, object, object], None]


def setup_logging(path: str | None) -> None:
    handlers = [logging.FileHandler(path, mode="w")] if path else [logging.StreamHandler(sys.stderr)]
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", handlers=handlers, force=True
    )


def run_job(smk, action: Action) -> None:
    """Run ``action(settings, smk.input, smk.output)`` as a Snakemake job (see module doc)."""
    log_path = smk.log[0] if len(smk.log) else None
    setup_logging(log_path)
    settings = merge(smk.params.settings, getattr(smk.params, "execution", Execution({})).values)
    reads: set[str] = set()
    tracking = os.environ.get(TRACK_ENV, "") not in ("", "0")
    params = Tracked(settings, reads) if tracking else settings
    # the settings' threads, never the job's --cores share: CPU float reductions depend on the
    # thread count, and tables must not depend on --cores
    set_threads(params.get("threads") or 1)
    log = logging.getLogger("diffxai.job")
    started = time.time()
    log.info("rule %s wildcards %s threads %s", smk.rule, dict(smk.wildcards), smk.threads)
    try:
        with gpu_slots(int(getattr(smk.resources, "gpu", 0) or 0)):
            action(params, smk.input, smk.output)
    except DiffxaiError as exc:
        log.error("%s", exc)
        print(f"diffxai error: {exc}", file=sys.stderr)
        sys.exit(1)
    log.info("done in %.1fs", time.time() - started)
    if tracking and log_path:
        record = {"rule": smk.rule, "settings": settings, "reads": sorted(reads)}
        Path(f"{log_path}.params.json").write_text(json.dumps(record, indent=1, default=str))
