"""Stage drivers: one function per Snakemake rule, callable without Snakemake.

Each takes the validated config plus explicit input and output paths, so tests drive the same
code the DAG runs. Scripts in ``scripts/`` only unpack ``snakemake`` and call these.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import torch

from diffxai.config import class_folder, diffusion_label
from diffxai.data import digits_for_class, load_digits_split, load_folder, stroke_mask
from diffxai.device import resolve_device
from diffxai.errors import DiffxaiError
from diffxai.likelihood import classify, critical_intervals, likelihood_frame
from diffxai.models import (
    DiffusionModel,
    load_classifier,
    load_diffusion,
    save_demo_classifier,
    save_demo_diffusion,
    train_demo_classifier,
    train_demo_ddpm,
)
from diffxai.noising import level_timesteps
from diffxai.sampling import ddim_sample, seeded_noise, uniform_timesteps
from diffxai.seeding import make_generator
from diffxai.tables import concat_parquet, load_arrays, provenance, save_arrays, write_parquet
from diffxai.trajectories import forward_trajectories, reverse_trajectories

log = logging.getLogger(__name__)


def class_spec(config: dict, name: str, classes: list[dict] | None = None, what: str = "class") -> dict:
    """The entry named ``name`` in ``classes`` (default ``config.classes``); unknown → one-line error."""
    classes = config["classes"] if classes is None else classes
    for c in classes:
        if c["name"] == name:
            return c
    raise DiffxaiError(what, f"unknown {what} {name!r} (known: {[c['name'] for c in classes]})")


def diffusion_location(config: dict, demo_dir: str | None) -> str:
    """Where the diffusion pipeline lives: the DAG-trained demo dir or ``models.diffusion.id``."""
    return demo_dir if config["models"]["diffusion"]["source"] == "demo" else config["models"]["diffusion"]["id"]


def config_diffusion(config: dict, demo_dir: str | None, device) -> DiffusionModel:
    """The experiment's pixel diffusion model, checked against the data's channel count."""
    return load_diffusion(diffusion_location(config, demo_dir), device, channels=config["data"]["channels"])


def classifier_spec(config: dict, demo_path: str | None) -> dict:
    spec = dict(config["models"]["classifier"])
    if spec["source"] == "demo":
        spec["path"] = demo_path
    return spec


def class_images(config: dict, cls: dict) -> tuple[torch.Tensor, list[str]]:
    """The N real images of a class ``(N, C, S, S)`` in [-1, 1] and their ids."""
    data = config["data"]
    if data["source"] == "digits":
        return digits_for_class(cls["index"], data["n_images"], data["image_size"], seed=config["seed"])
    return load_folder(class_folder(config, cls), data["n_images"], data["image_size"], data["channels"])


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------


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
    from diffxai import plots

    plots.sample_grid(grid, df, out_plot, dpi=config["plots"]["dpi"])


# --------------------------------------------------------------------------------------------
# trajectories and likelihood
# --------------------------------------------------------------------------------------------


def build_trajectories(config: dict, cls_name: str, ddpm_dir: str | None, out_path: str) -> None:
    """Trajectories of one class (see :mod:`diffxai.trajectories`), saved as safetensors."""
    device = resolve_device(config["device"])
    cls = class_spec(config, cls_name)
    tr, noise = config["trajectories"], config["noise"]
    model = config_diffusion(config, ddpm_dir, device)
    seed = config["seed"]
    if tr["mode"] == "forward" or not model.conditional:
        x0, ids = class_images(config, cls)
        size = model.unet.config.sample_size
        size = size if isinstance(size, int) else size[0]
        if x0.shape[-1] != size or x0.shape[1] != model.unet.config.in_channels:
            raise DiffxaiError("config.data.image_size", f"images are {tuple(x0.shape[1:])} but the diffusion model takes "
                               f"({model.unet.config.in_channels}, {size}, {size})")  # fmt: skip
    else:
        x0, ids = None, None
    label = diffusion_label(cls) if model.conditional else None
    if tr["mode"] == "forward":
        ts = level_timesteps(model.num_train_timesteps, noise["n_levels"])
        out = forward_trajectories(
            model, x0, ids, ts, noise["n_draws"], seed=seed, class_name=cls_name,
            x0_label=label if tr["x0_condition"] == "class" else None, views=tuple(tr["views"]),
            batch_size=tr["batch_size"],
        )  # fmt: skip
    else:
        c, s = model.unet.config.in_channels, model.unet.config.sample_size
        out, ids = reverse_trajectories(
            model, config["data"]["n_images"], noise["n_draws"], noise["n_levels"], (c, s, s), seed=seed,
            class_name=cls_name, label=label, guidance=tr["guidance"], x0=x0, image_ids=ids,
            sdedit_strength=tr["sdedit_strength"], batch_size=tr["batch_size"],
        )  # fmt: skip
    if "x0" in out and config["data"]["source"] == "digits":
        out["mask"] = stroke_mask(out["x0"])
    meta = {"class_name": cls_name, "class_index": cls["index"], "image_ids": ids, "mode": tr["mode"],
            "views": [v for v in tr["views"] if v in out], "layout": "x_t/x0_pred: (N images, K draws, S steps, C, H, W)"}  # fmt: skip
    save_arrays(out_path, out, meta)


def compute_likelihood(config: dict, cls_name: str, traj_path: str, classifier_path: str | None, out_path: str) -> None:
    device = resolve_device(config["device"])
    cls = class_spec(config, cls_name)
    arrays, meta = load_arrays(traj_path)
    clf = load_classifier(classifier_spec(config, classifier_path), device)
    frames = []
    for view in meta["views"]:
        x = arrays[view]
        n, k, s = x.shape[:3]
        started = time.time()
        logits = classify(clf, x.reshape(-1, *x.shape[3:]), config["likelihood"]["batch_size"], device)
        log.info("%s: %d images classified in %.2fs", view, n * k * s, time.time() - started)
        frames.append(likelihood_frame(logits.view(n, k, s, -1), cls_name, cls["index"], meta["image_ids"],
                                       arrays["timesteps"].numpy(), view))  # fmt: skip
    write_parquet(pd.concat(frames, ignore_index=True), out_path, provenance(config, device))


def aggregate_likelihood(config: dict, inputs: list[str], out_likelihood: str, out_intervals: str) -> None:
    df = concat_parquet(inputs)
    meta = provenance(config, resolve_device(config["device"]))
    write_parquet(df, out_likelihood, meta)
    write_parquet(critical_intervals(df, config["likelihood"]["window"]), out_intervals, meta)


def plot_likelihood(config: dict, likelihood: str, intervals: str, out_by_view: str, out_by_class: str) -> None:
    from diffxai import plots

    df, iv = pd.read_parquet(likelihood), pd.read_parquet(intervals)
    names = [c["name"] for c in config["classes"]]
    plots.likelihood_by_view(df, iv, names, out_by_view, dpi=config["plots"]["dpi"], seed=config["seed"])
    plots.likelihood_by_class(df, iv, names, out_by_class, dpi=config["plots"]["dpi"], seed=config["seed"])


def plot_trajectories(config: dict, traj_paths: list[str], out_path: str) -> None:
    from diffxai import plots

    rows = []
    for p in traj_paths:
        arrays, meta = load_arrays(p)
        rows.append((meta["class_name"], {v: arrays[v][0, 0] for v in meta["views"]}, arrays["timesteps"].numpy()))
    plots.trajectory_strips(rows, out_path, n_cols=config["plots"]["strip_steps"], dpi=config["plots"]["dpi"])
