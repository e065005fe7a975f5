"""TODO docstring."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import torch

from diffxai.config.experiment import diffusion_label
from diffxai.core.device import resolve_device
from diffxai.core.seeding import make_generator
from diffxai.core.timesteps import uniform_timesteps
from diffxai.io.images import load_digits_split
from diffxai.io.tables import provenance, write_parquet
from diffxai.models.classifiers import classify, load_classifier
from diffxai.models.demo import save_demo_classifier, save_demo_diffusion, train_demo_classifier, train_demo_ddpm
from diffxai.sampling.loop import ddim_sample
from diffxai.sampling.noising import seeded_noise
from diffxai.io.images import class_images
from diffxai.config.experiment import classifier_spec
from diffxai.models.pixel import config_diffusion
from diffxai.config.experiment import diffusion_location

log = logging.getLogger(__name__)










def train_ddpm(config: dict, out_dir: str) -> None:
    device = resolve_device(config["device"])
    dm, data = config["models"]["diffusion"], config["data"]
    x, y, _, _ = load_digits_split(data["image_size"], seed=config["seed"])
    tr = dm["train"]
    model = train_demo_ddpm(
        x, y, 10, steps=tr["steps"], batch_size=tr["batch_size"], lr=tr["lr"], label_dropout=tr["label_dropout"],
        block_out_channels=tuple(tr["block_out_channels"]), ema_decay=tr["ema_decay"],
        num_train_timesteps=dm["num_train_timesteps"], beta_start=dm["beta_start"], beta_end=dm["beta_end"],
        seed=config["seed"], device=device,
    )  # fmt: skip
    save_demo_diffusion(model, out_dir, {"dataset": "sklearn-digits", "image_size": data["image_size"], "n_classes": 10})


def train_classifier(config: dict, out_path: str) -> None:
    device = resolve_device(config["device"])
    tr, data = config["models"]["classifier"]["train"], config["data"]
    x, y, xt, yt = load_digits_split(data["image_size"], seed=config["seed"])
    net = train_demo_classifier(
        x, y, 10, epochs=tr["epochs"], batch_size=tr["batch_size"], lr=tr["lr"], width=tr["width"],
        seed=config["seed"], device=device,
    )  # fmt: skip
    acc = (classify(net, xt, 512, device).argmax(1) == yt).float().mean().item()
    log.info("held-out accuracy %.4f", acc)
    save_demo_classifier(net, out_path, {"n_classes": 10, "in_channels": x.shape[1], "width": tr["width"]})


def evaluate_models(config: dict, ddpm_dir: str | None, classifier_path: str | None, out_table: str, out_plot: str) -> None:
    """``models.parquet``: classifier held-out accuracy and the share of class-conditional
    samples the classifier assigns to their class (per class and overall), plus a sample grid."""
    device = resolve_device(config["device"])
    seed, ev = config["seed"], config["models"]["evaluation"]
    clf = load_classifier(classifier_spec(config, classifier_path), device)
    dm = config_diffusion(config, ddpm_dir, device)
    rows = []
    n_clf = sum(p.numel() for p in clf.parameters())
    n_dm = sum(p.numel() for p in dm.unet.parameters())
    # classifier accuracy on held-out / user images of the configured classes
    if config["data"]["source"] == "digits":
        _, _, xt, yt = load_digits_split(config["data"]["image_size"], seed=seed)
        what = "held-out sklearn digits"
    else:
        xs, ys = [], []
        for c in config["classes"]:
            x, _ = class_images(config, c)
            xs.append(x)
            ys.append(torch.full((x.shape[0],), c["index"]))
        xt, yt = torch.cat(xs), torch.cat(ys)
        what = "user images of the configured classes"
    acc = (classify(clf, xt, config["likelihood"]["batch_size"], device).argmax(1) == yt).float().mean().item()
    rows.append(dict(model="classifier", role="classifier", source=config["models"]["classifier"]["source"],
                     n_parameters=n_clf, metric="accuracy", class_name="all", value=acc, n_eval=len(yt),
                     evaluated_on=what))  # fmt: skip
    grid = None
    if dm.conditional:
        k = ev["samples_per_class"]
        labels = torch.as_tensor([diffusion_label(c) for c in config["classes"]]).repeat_interleave(k)
        gens = [make_generator(seed, "models-eval", c["name"], i) for c in config["classes"] for i in range(k)]
        shape = (dm.unet.config.in_channels, dm.unet.config.sample_size, dm.unet.config.sample_size)
        started = time.time()
        samples = ddim_sample(dm, seeded_noise(shape, gens),
                              uniform_timesteps(dm.num_train_timesteps, ev["steps"]), labels, ev["guidance"])["sample"]  # fmt: skip
        log.info("generated %d samples in %.1fs", len(samples), time.time() - started)
        pred = classify(clf, samples, config["likelihood"]["batch_size"], device).argmax(1)
        target = torch.as_tensor([c["index"] for c in config["classes"]]).repeat_interleave(k)
        hit = (pred == target).float()
        for j, c in enumerate(config["classes"]):
            rows.append(dict(model="diffusion", role="diffusion", source=config["models"]["diffusion"]["source"],
                             n_parameters=n_dm, metric="sample_accuracy", class_name=c["name"],
                             value=hit[j * k:(j + 1) * k].mean().item(), n_eval=k,
                             evaluated_on=f"DDIM {ev['steps']} steps, guidance {ev['guidance']}"))  # fmt: skip
        rows.append(dict(model="diffusion", role="diffusion", source=config["models"]["diffusion"]["source"],
                         n_parameters=n_dm, metric="sample_accuracy", class_name="all", value=hit.mean().item(),
                         n_eval=len(hit), evaluated_on=f"DDIM {ev['steps']} steps, guidance {ev['guidance']}"))  # fmt: skip
        grid = (samples.view(len(config["classes"]), k, *shape), [c["name"] for c in config["classes"]])
    else:
        rows.append(dict(model="diffusion", role="diffusion", source=config["models"]["diffusion"]["source"],
                         n_parameters=n_dm, metric="sample_accuracy", class_name="all", value=float("nan"),
                         n_eval=0, evaluated_on="unconditional model: no class to check"))  # fmt: skip
    df = pd.DataFrame(rows)
    df["model_id"] = np.where(df["role"] == "classifier",
                              str(classifier_path or config["models"]["classifier"].get("arch")),
                              str(diffusion_location(config, ddpm_dir)))  # fmt: skip
    write_parquet(df, out_table, provenance(config, device))
    from diffxai.plots import common as plots

    plots.sample_grid(grid, df, out_plot, dpi=config["plots"]["dpi"])
