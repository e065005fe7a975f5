"""Stage ``models``: the embedded demo's models trained in the DAG, and how good the models are.

Rules: ``models_train_ddpm`` (:func:`train_ddpm`), ``models_train_classifier``
(:func:`train_classifier`), ``models_evaluate`` (:func:`evaluate`). Each action takes the rule's
settings (``params``: exactly what it reads, see :mod:`diffxai.workflow.settings.foundation`) and
its Snakemake ``inputs`` / ``outputs`` (or plain dicts, in tests).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import torch

from diffxai.config.experiment import classifier_spec, diffusion_label, diffusion_location
from diffxai.core.device import resolve_device
from diffxai.core.seeding import make_generator
from diffxai.core.timesteps import uniform_timesteps
from diffxai.io.arrays import save_arrays
from diffxai.io.images import class_images, load_digits_split
from diffxai.io.tables import provenance, write_table
from diffxai.models.classifiers import classify, load_classifier
from diffxai.models.demo import save_demo_classifier, save_demo_diffusion, train_demo_classifier, train_demo_ddpm
from diffxai.models.loading import load_backend
from diffxai.sampling.loop import sample
from diffxai.sampling.noising import seeded_noise

log = logging.getLogger(__name__)


def train_ddpm(params: dict, inputs, outputs) -> None:
    """The demo's class-conditional DDPM on scikit-learn's digits → ``outputs[0]`` (a
    ``DDPMPipeline`` directory, safetensors)."""
    device = resolve_device(params["device"])
    dm, data = params["models"]["diffusion"], params["data"]
    x, y, _, _ = load_digits_split(data["image_size"], seed=params["seed"])
    tr = dm["train"]
    model = train_demo_ddpm(
        x,
        y,
        10,
        steps=tr["steps"],
        batch_size=tr["batch_size"],
        lr=tr["lr"],
        label_dropout=tr["label_dropout"],
        block_out_channels=tuple(tr["block_out_channels"]),
        ema_decay=tr["ema_decay"],
        num_train_timesteps=dm["num_train_timesteps"],
        beta_start=dm["beta_start"],
        beta_end=dm["beta_end"],
        seed=params["seed"],
        device=device,
    )
    meta = {"dataset": "sklearn-digits", "image_size": data["image_size"], "n_classes": 10}
    save_demo_diffusion(model, outputs[0], meta)


def train_classifier(params: dict, inputs, outputs) -> None:
    """The demo's CNN classifier on scikit-learn's digits → ``outputs[0]`` (safetensors)."""
    device = resolve_device(params["device"])
    tr, data = params["models"]["classifier"]["train"], params["data"]
    x, y, xt, yt = load_digits_split(data["image_size"], seed=params["seed"])
    net = train_demo_classifier(
        x,
        y,
        10,
        epochs=tr["epochs"],
        batch_size=tr["batch_size"],
        lr=tr["lr"],
        width=tr["width"],
        seed=params["seed"],
        device=device,
    )
    acc = (classify(net, xt, 512, device).argmax(1) == yt).float().mean().item()
    log.info("held-out accuracy %.4f", acc)
    save_demo_classifier(net, outputs[0], {"n_classes": 10, "in_channels": x.shape[1], "width": tr["width"]})


def _row(
    role: str,
    source: str,
    n_parameters: int,
    metric: str,
    class_name: str,
    value: float,
    n_eval: int,
    evaluated_on: str,
) -> dict:
    return {
        "model": role,
        "role": role,
        "source": source,
        "n_parameters": n_parameters,
        "metric": metric,
        "class_name": class_name,
        "value": value,
        "n_eval": n_eval,
        "evaluated_on": evaluated_on,
    }


def evaluate(params: dict, inputs, outputs) -> None:
    """``models.parquet``: the classifier's held-out accuracy and the share of class-conditional
    samples the classifier assigns to their class (per class and overall); the samples go to
    ``outputs.samples`` for the ``models_plot`` grid."""
    device = resolve_device(params["device"])
    seed, ev, models = params["seed"], params["models"]["evaluation"], params["models"]
    ddpm_dir, classifier_path = inputs.get("ddpm") or None, inputs.get("classifier") or None
    clf = load_classifier(classifier_spec(params, classifier_path), device)
    location = diffusion_location(params, ddpm_dir)
    dm = load_backend("pixel", location, device, channels=params["data"]["channels"])
    classes = params["classes"]
    n_clf = sum(p.numel() for p in clf.parameters())
    n_dm = sum(p.numel() for p in dm.unet.parameters())
    if params["data"]["source"] == "digits":
        _, _, xt, yt = load_digits_split(params["data"]["image_size"], seed=seed)
        what = "held-out sklearn digits"
    else:
        xs, ys = [], []
        for c in classes:
            x, _ = class_images(params, c)
            xs.append(x)
            ys.append(torch.full((x.shape[0],), c["index"]))
        xt, yt = torch.cat(xs), torch.cat(ys)
        what = "user images of the configured classes"
    batch = params["likelihood"]["batch_size"]
    acc = (classify(clf, xt, batch, device).argmax(1) == yt).float().mean().item()
    rows = [_row("classifier", models["classifier"]["source"], n_clf, "accuracy", "all", acc, len(yt), what)]
    source = models["diffusion"]["source"]
    samples = torch.zeros(0)
    if dm.conditional:
        k = ev["samples_per_class"]
        labels = dm.encode([diffusion_label(c) for c in classes for _ in range(k)])
        gens = [make_generator(seed, "models-eval", c["name"], i) for c in classes for i in range(k)]
        shape = dm.sample_shape()
        started = time.time()
        ts = uniform_timesteps(dm.num_train_timesteps, ev["steps"])
        samples = sample(dm, seeded_noise(shape, gens), timesteps=ts, cond=labels, guidance=ev["guidance"])["sample"]
        log.info("generated %d samples in %.1fs", len(samples), time.time() - started)
        pred = classify(clf, samples, batch, device).argmax(1)
        target = torch.as_tensor([c["index"] for c in classes]).repeat_interleave(k)
        hit = (pred == target).float()
        how = f"DDIM {ev['steps']} steps, guidance {ev['guidance']}"
        for j, c in enumerate(classes):
            value = hit[j * k : (j + 1) * k].mean().item()
            rows.append(_row("diffusion", source, n_dm, "sample_accuracy", c["name"], value, k, how))
        rows.append(_row("diffusion", source, n_dm, "sample_accuracy", "all", hit.mean().item(), len(hit), how))
        samples = samples.view(len(classes), k, *shape)
    else:
        how = "unconditional model: no class to check"
        rows.append(_row("diffusion", source, n_dm, "sample_accuracy", "all", float("nan"), 0, how))
    df = pd.DataFrame(rows)
    clf_id = str(classifier_path or models["classifier"].get("arch"))
    df["model_id"] = np.where(df["role"] == "classifier", clf_id, str(location))
    write_table(df, outputs.table, "models", provenance(params, device))
    save_arrays(outputs.samples, {"samples": samples}, {"class_names": [c["name"] for c in classes]})
