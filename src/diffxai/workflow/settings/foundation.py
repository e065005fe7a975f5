"""Settings of the foundation stages' rules: models, trajectories, likelihood, report."""

from __future__ import annotations

from collections.abc import Mapping

from diffxai.workflow.registry import builds, merge, pick
from diffxai.workflow.settings.common import (
    aggregate,
    class_entry,
    classifier,
    diffusion,
    image_class_keys,
    images,
    job,
)


@builds("models_train_ddpm")
def _train_ddpm(config: Mapping, wc: dict) -> dict:
    return merge(
        pick(config, "device", "seed", "data.image_size"),
        {"threads": config["models"]["threads"]},
        pick(config, "models.diffusion.train", "models.diffusion.num_train_timesteps"),
        pick(config, "models.diffusion.beta_start", "models.diffusion.beta_end"),
    )


@builds("models_train_classifier")
def _train_classifier(config: Mapping, wc: dict) -> dict:
    return merge(
        pick(config, "device", "seed", "data.image_size", "models.classifier.train"), {"threads": config["threads"]}
    )


@builds("models_evaluate")
def _evaluate(config: Mapping, wc: dict) -> dict:
    data = config["data"]
    keys = image_class_keys(config) if data["source"] != "digits" else ("name", "index")
    classes = [
        {k: c[k] for k in keys + (("label",) if c.get("label") is not None else ()) if k in c}
        for c in config["classes"]
    ]
    return merge(
        job(config, config["models"]["threads"]),
        classifier(config),
        diffusion(config),
        pick(config, "models.evaluation", "models.classifier.source", "models.diffusion.source"),
        pick(config, "likelihood.batch_size", "data.source", "data.channels", "data.image_size"),
        images(config) if data["source"] != "digits" else {},
        {"classes": classes},
    )


@builds("models_plot")
def _models_plot(config: Mapping, wc: dict) -> dict:
    return pick(config, "plots.dpi")


@builds("trajectories_plot")
def _trajectories_plot(config: Mapping, wc: dict) -> dict:
    return pick(config, "plots.dpi", "plots.strip_steps")


@builds("trajectories_build")
def _trajectories(config: Mapping, wc: dict) -> dict:
    tr = config["trajectories"]
    keys = ["trajectories.mode", "trajectories.views", "trajectories.x0_condition", "trajectories.batch_size"]
    if tr["mode"] == "reverse":
        keys += ["trajectories.guidance", "trajectories.sdedit_strength"]
    label = ("label",) if class_entry(config, wc["cls"], "label")["cls"].get("label") is not None else ()
    return merge(
        job(config, tables=False),
        diffusion(config),
        images(config),
        pick(config, "noise.n_levels", "noise.n_draws", *keys),
        class_entry(config, wc["cls"], *image_class_keys(config), *label),
    )


@builds("likelihood_compute")
def _likelihood(config: Mapping, wc: dict) -> dict:
    return merge(
        job(config),
        classifier(config),
        pick(config, "likelihood.batch_size"),
        class_entry(config, wc["cls"], "name", "index"),
    )


@builds("likelihood_aggregate")
def _likelihood_aggregate(config: Mapping, wc: dict) -> dict:
    return merge(aggregate(config), pick(config, "likelihood.window"))


@builds("likelihood_plot")
def _likelihood_plot(config: Mapping, wc: dict) -> dict:
    return merge(pick(config, "seed", "plots.dpi"), {"class_names": [c["name"] for c in config["classes"]]})


@builds("report_tables")
def _report(config: Mapping, wc: dict) -> dict:
    return {"max_rows": 500}
