"""TODO docstring."""

from __future__ import annotations

import logging
import sys
import time

from diffxai.core.device import set_threads
from diffxai.core.errors import DiffxaiError
from diffxai.workflow.gpu_slots import gpu_slots


def setup_logging(path: str | None) -> None:
    handlers = [logging.FileHandler(path, mode="w")] if path else [logging.StreamHandler(sys.stderr)]
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", handlers=handlers, force=True
    )


def run_job(smk, fn) -> None:
    """Run ``fn(smk)`` as a Snakemake job (see module doc)."""
    setup_logging(smk.log[0] if len(smk.log) else None)
    # A fixed thread count from the config, not the job's --cores share: CPU float reductions
    # depend on the number of threads, and tables must not depend on --cores.
    # params.torch_threads (per rule) or config.threads, never the job's --cores share.
    params = getattr(smk, "params", None)
    fixed = getattr(params, "torch_threads", None) if params is not None else None
    set_threads(fixed or (getattr(smk, "config", None) or {}).get("threads") or smk.threads)
    log = logging.getLogger("diffxai.job")
    started = time.time()
    log.info("rule %s wildcards %s threads %s", smk.rule, dict(smk.wildcards), smk.threads)
    try:
        with gpu_slots(int(getattr(smk.resources, "gpu", 0) or 0)):
            fn(smk)
    except DiffxaiError as exc:
        log.error("%s", exc)
        print(f"diffxai error: {exc}", file=sys.stderr)
        sys.exit(1)
    log.info("done in %.1fs", time.time() - started)
