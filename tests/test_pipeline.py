"""End-to-end runs of the DAG: the tiny digits config, a poster-like config on tiny checkpoints and
a dry run's planned jobs (bad input: tests/test_bad_input.py)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import yaml

from conftest import TINY, run_snakemake
from diffxai.io.specs import SPECS
from diffxai.io.tables import read_metadata
from diffxai.metrics.curves import INTERVAL_COLUMNS
from helpers import (
    build_tiny_pixel_ddpm,
    build_tiny_resnet_state_dict,
    tiny_config,
    write_config,
    write_image_folder,
)

FOUNDATION = ["models", "trajectories", "likelihood"]


def test_tiny_run_writes_the_contract_tables(tiny_run):
    cfg = tiny_config()
    n_cls, n_img, k, s = len(cfg["classes"]), cfg["data"]["n_images"], cfg["noise"]["n_draws"], cfg["noise"]["n_levels"]
    lik = pd.read_parquet(tiny_run / "tables" / "likelihood.parquet")
    assert set(SPECS["likelihood"].names) <= set(lik.columns)
    assert len(lik) == n_cls * n_img * k * s * 2
    assert lik["prob"].between(0, 1).all() and lik["top1_prob"].between(0, 1).all()
    assert set(lik["view"]) == {"x_t", "x0_pred"} and lik["step"].max() == s - 1
    assert (lik.groupby("step")["timestep"].first().diff().dropna() < 0).all(), "step 0 is the noisiest"
    assert not lik.duplicated(["class_name", "image_id", "draw", "step", "view"]).any()
    iv = pd.read_parquet(tiny_run / "tables" / "critical_intervals.parquet")
    assert list(iv.columns) == INTERVAL_COLUMNS and len(iv) == n_cls * 2
    assert (iv["step_end"] > iv["step_start"]).all() and iv["final_prob"].between(0, 1).all()
    models = pd.read_parquet(tiny_run / "tables" / "models.parquet")
    assert {"classifier", "diffusion"} <= set(models["model"])
    assert models["value"].between(0, 1).all()
    for name in ["likelihood", "critical_intervals", "models"]:
        md = read_metadata(tiny_run / "tables" / f"{name}.parquet")
        assert md["diffxai.experiment"] == "tiny" and md["diffxai.device"] == "cpu"
    for plot in ["likelihood_by_view", "likelihood_by_class", "trajectories", "model_samples"]:
        assert (tiny_run / "plots" / f"{plot}.png").stat().st_size > 1000
    for rule in ["models_train_ddpm", "trajectories_build/digit_3", "likelihood_compute/digit_7"]:
        assert (tiny_run / "logs" / f"{rule}.log").is_file()
        assert (tiny_run / "benchmarks" / f"{rule}.tsv").is_file()
    assert (tiny_run / "models" / "ddpm" / "unet" / "diffusion_pytorch_model.safetensors").is_file()


def _planned_jobs(stdout: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run into {rule: count}."""
    jobs, in_table = {}, False
    for line in stdout.splitlines():
        if line.startswith("job") and "count" in line:
            in_table = True
            continue
        if in_table:
            m = re.match(r"^(\S+)\s+(\d+)\s*$", line.strip())
            if m and m.group(1) != "total":
                jobs[m.group(1)] = int(m.group(2))
            elif line.strip().startswith("total"):
                break
    return jobs


def test_dry_run_plans_the_foundation_jobs(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_config(stages=FOUNDATION))
    proc = run_snakemake(tmp_path, "-n", "--cores", "1", configfile=cfg)
    jobs = _planned_jobs(proc.stdout + proc.stderr)
    assert jobs == {
        "all": 1,
        "models_train_ddpm": 1,
        "models_train_classifier": 1,
        "models_evaluate": 1,
        "models_plot": 1,
        "trajectories_build": 2,
        "trajectories_plot": 1,
        "likelihood_compute": 2,
        "likelihood_aggregate": 1,
        "likelihood_plot": 1,
        "report_tables": 1,
        "report_explorer": 1,
    }


#: the poster's ResNet-18 preprocessing, stated as a state dict's must be
IMAGENET = {"resize": 256, "crop": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def test_poster_config_on_tiny_checkpoints(tmp_path, monkeypatch):
    """The imagenet_cats path (user photos, hub-style pixel DDPM, torchvision ResNet-18) end to end,
    with checkpoints built here: the same loading code the real run uses, no network."""
    names = ["persian_cat", "siamese_cat", "egyptian_cat", "tiger"]
    root = write_image_folder(tmp_path / "photos", names, n=2)
    # two of the poster's four classes: every class runs the same two jobs
    ddpm = build_tiny_pixel_ddpm(tmp_path / "ddpm-cat-tiny", image_size=16, channels=3)
    weights = build_tiny_resnet_state_dict(tmp_path / "resnet18.safetensors", num_classes=1000)
    poster = yaml.safe_load((TINY.parents[2] / "config" / "imagenet_cats.yaml").read_text())
    cfg = {
        **poster,
        "experiment": "cats-tiny",
        "classes": [poster["classes"][0], poster["classes"][2]],  # JPEG+EXIF, gray, RGBA, palette
        "stages": FOUNDATION,
        "device": "cpu",
        "resources": {"gpu": 0, "mem_mb": 2000, "runtime": 10},
        "models": {
            "diffusion": {"source": "pretrained", "id": str(ddpm)},
            "classifier": {"source": "state_dict", "arch": "resnet18", "path": str(weights), "preprocess": IMAGENET},
        },
        "data": {"source": "folder", "root": str(root), "image_size": 16, "channels": 3, "n_images": 2},
        "noise": {"n_levels": 4, "n_draws": 2},
        "likelihood": {"window": 2},
        "plots": {"dpi": 50},
    }
    assert [c["index"] for c in poster["classes"]] == [283, 284, 285, 292]
    assert poster["noise"]["n_levels"] == 100 and poster["models"]["classifier"]["weights"] == "IMAGENET1K_V1"
    res = tmp_path / "results" / "cats-tiny"
    out = "results/cats-tiny"  # targets relative to the working directory, like the rules' outputs
    targets = [
        f"{out}/tables/likelihood.parquet",
        f"{out}/tables/models.parquet",
        f"{out}/plots/likelihood_by_view.png",
    ]
    run_snakemake(tmp_path, "--cores", "2", "--", *targets, configfile=write_config(tmp_path / "cats.yaml", cfg))
    lik = pd.read_parquet(res / "tables" / "likelihood.parquet")
    assert len(lik) == 2 * 2 * 2 * 4 * 2 and set(lik["class_index"]) == {283, 285}
    assert lik["prob"].between(0, 1).all()
    assert set(lik["image_id"]) == {"img0.jpg", "img0.png", "img1.png", "img1.jpg"} & set(lik["image_id"])
    models = pd.read_parquet(res / "tables" / "models.parquet")
    assert np.isnan(models.loc[models.model == "diffusion", "value"]).all()  # unconditional: no class check
    assert (res / "plots" / "likelihood_by_view.png").is_file()
