"""Settings of the saliency stage's rules (see :mod:`diffxai.workflow.params`)."""

from __future__ import annotations

from collections.abc import Mapping

from diffxai.config.experiment import class_spec, diffusion_kind
from diffxai.workflow.registry import builds, merge, pick
from diffxai.workflow.settings.common import aggregate, diffusion, job

#: what ``saliency_compute`` reads of ``config.saliency`` for every model and method
_COMMON = ("n_samples", "sampling_steps", "steps", "guidance")
#: Stable Diffusion only: the sampler, the null prompt, the image size and the weights' dtype
_SD = ("scheduler", "negative_prompt", "image_size", "dtype")
_RISE = ("n_masks", "p", "mask", "grid_size", "estimator", "reference", "batch_size", "early_stop_tol", "check_every")
_EVALUATION = ("n_points", "score", "target", "blur_kernel", "blur_sigma", "data_range", "batch_size")


def _class_keys(cls: Mapping, kind: str) -> dict:
    """The keys of a class entry that ``condition_key`` and the job read: the name, and the
    prompt (text models, when set) or the diffusion label (``label`` when set, else ``index``)."""
    if kind == "stable_diffusion":
        keys = ("name", "prompt") if cls.get("prompt") else ("name",)
    else:
        keys = ("name", "label") if cls.get("label") is not None else ("name", "index")
    return {"cls": {k: cls[k] for k in keys}}


@builds("saliency_compute")
def _compute(config: Mapping, wc: dict) -> dict:
    method, kind = wc["saliency"], diffusion_kind(config)
    keys = [f"saliency.{k}" for k in _COMMON + (_SD if kind == "stable_diffusion" else ())]
    keys += [f"saliency.evaluation.{k}" for k in _EVALUATION]
    if method == "dfrise":
        keys += [f"saliency.rise.{k}" for k in _RISE]
    else:
        keys += ["saliency.cam.layers", "saliency.evaluation.per_layer"]
    if kind != "stable_diffusion":
        keys.append("data.channels")
    return merge(
        job(config),
        diffusion(config, "type"),
        pick(config, *keys),
        {"method": method},
        _class_keys(class_spec(config, wc["cls"]), kind),
    )


@builds("saliency_aggregate")
def _aggregate(config: Mapping, wc: dict) -> dict:
    return aggregate(config)


@builds("saliency_plot")
def _plot(config: Mapping, wc: dict) -> dict:
    return pick(config, "seed", "plots.dpi")
