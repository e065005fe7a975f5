"""Per-rule params: exactly the settings a rule's driver reads, canonical.

Every rule has ONE builder here, registered with :func:`builds`, that picks from the validated
config the settings its driver reads (and, for a wildcard job, only its own class, method,
schedule or concept). The rule passes them as ``params.settings``; its script hands them to the
driver, which never sees the rest of the config. So a changed setting reruns exactly the jobs
that read it: ``data.n_images`` reruns trajectories and what reads them, not the demo training;
``models.evaluation.samples_per_class`` reruns ``models_evaluate`` only.

Canonical: keys sorted at every level, tuples as lists, numbers typed by the schema (an integer
given for a ``number`` field is a float), so the same settings in another YAML key order, or
``2`` for ``2.0``, give the same repr and rerun nothing. Batch sizes are handed to the driver
too, but apart (:class:`Execution`): they say how a job batches its work, not what it computes, so
changing one reruns nothing.

``DIFFXAI_TRACK_PARAMS=1`` makes :func:`diffxai.workflow.jobs.run_job` record which settings a
driver read (:class:`Tracked`); the end-to-end test asserts that every setting a rule receives
is read by its driver, so params cannot silently grow broader than what the driver uses.

No torch, no stage: the Snakefile imports this module to plan a run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import diffxai.workflow.settings  # noqa: F401  (registers every rule's builder)
from diffxai.workflow.registry import BUILDERS, canonical, merge  # noqa: F401  (merge: re-exported)
from diffxai.workflow.tracking import Execution, Tracked, leaf_paths, unread  # noqa: F401  (re-exported)


def _wildcards(wildcards: Any) -> dict:
    if wildcards is None:
        return {}
    if isinstance(wildcards, Mapping):
        return dict(wildcards)
    return dict(wildcards.items())


def rule_params(rule: str, config: dict, wildcards: Any = None) -> dict:
    """The canonical settings of one job of ``rule``."""
    if rule not in BUILDERS:
        raise KeyError(f"no params builder for rule {rule!r} (add one to diffxai.workflow.params)")
    return canonical(split_execution(BUILDERS[rule](config, _wildcards(wildcards)))[0])


#: keys that only say how a job batches its work (never what it computes): not rerun triggers
EXECUTION_KEYS = frozenset({"batch_size"})
#: settings whose batch sizes DO change what is computed, so they stay settings: Captum's
#: NoiseTunnel (SmoothGrad, VarGrad) draws its noise per chunk of maps, DF-RISE its masks per chunk,
#: and a training batch size is a hyper-parameter of the trained model
RESULT_BATCH_SIZES = ("attribution.methods.", "saliency.rise.", "models.diffusion.train.", "models.classifier.train.")


def split_execution(obj: Any, _path: str = "") -> tuple[Any, dict]:
    """``(settings, execution)``: the nested ``batch_size`` leaves moved out of ``obj`` into their own
    nested dict (except under :data:`RESULT_BATCH_SIZES`, and inside lists, where they stay settings)."""
    if not isinstance(obj, Mapping):
        return obj, {}
    settings, execution = {}, {}
    for k, v in obj.items():
        path = f"{_path}{k}"
        keep = any(path.startswith(p) for p in RESULT_BATCH_SIZES)
        if k in EXECUTION_KEYS and not isinstance(v, Mapping) and not keep:
            execution[k] = v
            continue
        sub, ex = split_execution(v, path + ".")
        settings[k] = sub
        if ex:
            execution[k] = ex
    return settings, execution


def rule_execution(rule: str, config: dict, wildcards: Any = None) -> Execution:
    """The batch sizes of one job of ``rule`` (see :class:`Execution`)."""
    return Execution(canonical(split_execution(BUILDERS[rule](config, _wildcards(wildcards)))[1]))


def rule_threads(rule: str, config: dict) -> int:
    """The torch threads of a rule's jobs (the ``threads`` setting of its params; 1 if none).

    The example wildcards come from the same lists that define the rule's jobs, so a builder can
    only fail on them when the config gives the rule no job at all (e.g. no concepts, no
    commitment pairs); its threads are then never used, and ``config.threads`` is returned."""
    from diffxai.core.errors import DiffxaiError

    try:
        settings = BUILDERS[rule](config, example_wildcards(config))
    except (KeyError, IndexError, DiffxaiError):
        return int(config.get("threads", 1))
    return int(settings.get("threads", 1))


def _first(values: Sequence[str]) -> str | None:
    """The first of ``values``; ``None`` when there are none."""
    return values[0] if values else None


def example_wildcards(config: Mapping) -> dict:
    """One valid value of every wildcard (a rule's threads do not depend on which job it is)."""
    from diffxai.config.experiment import commitment_pairs, pair_id, saliency_classes

    classes = [c["name"] for c in config.get("classes") or []]
    pairs = [pair_id(a, b) for a, b in commitment_pairs(config)] if classes else []
    schedules = [s["name"] for s in config.get("schedules", {}).get("schedules") or []]
    methods = list(config.get("attribution", {}).get("methods") or [])
    sal = list(config.get("saliency", {}).get("methods") or [])
    concepts = list(config.get("components", {}).get("concepts") or [])
    wc = {
        "cls": _first(saliency_classes(config) or classes) if classes else None,
        "method": _first(methods),
        "saliency": _first(sal),
        "schedule": _first(schedules),
        "pair": _first(pairs),
        "concept": _first(concepts),
    }
    return {k: v for k, v in wc.items() if v is not None}
