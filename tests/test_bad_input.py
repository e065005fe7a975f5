"""Bad input: every case must stop with ONE line naming the field or file.

In-process (fast): every config case calls the config checks the Snakefile runs
(:func:`diffxai.config.checks.check_config`), every unusable checkpoint calls the loader a job uses.
End to end (``e2e``, one case of each kind): through Snakemake a config error stops before any job
(no ``results/`` at all) with one ``diffxai config error:`` line; a broken checkpoint fails the
first job that loads it with one ``diffxai error:`` line and Snakemake removes its outputs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_snakemake
from diffxai.config.checks import check_config
from diffxai.core.errors import DiffxaiError
from helpers import (
    build_tiny_pixel_ddpm,
    build_tiny_resnet_state_dict,
    one_line_error,
    tiny_config,
    write_config,
    write_image_folder,
)


def merge(base: dict, change: dict) -> dict:
    """``change`` merged into ``base``: nested mappings key by key, everything else replaced."""
    out = dict(base)
    for key, val in change.items():
        out[key] = merge(out[key], val) if isinstance(val, dict) and isinstance(out.get(key), dict) else val
    return out


def error_lines(text: str, prefix: str = "diffxai config error") -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(prefix)]


def assert_stopped_before_any_job(proc, tmp_path, expected: str) -> None:
    assert proc.returncode != 0
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and expected in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "results").exists(), "no job may start on bad input"


# --- config errors: one line naming the field, before any job ---------------------------------

CONFIG_CASES = {
    "unknown_key": ({"noise": {"n_levls": 5}}, "config.noise.n_levls: unknown key"),
    "wrong_type": ({"noise": {"n_levels": "many"}}, "config.noise.n_levels"),
    "wrong_type_nested": ({"saliency": {"rise": {"p": "half"}}}, "config.saliency.rise.p"),
    "empty_class_list": ({"classes": []}, "config.classes"),
    "duplicate_class_names": (
        {"classes": [{"name": "a", "index": 1}, {"name": "a", "index": 2}]},
        "config.classes[1].name",
    ),
    "unknown_class_index": ({"classes": [{"name": "digit_3", "index": 12}]}, "config.classes[0].index"),
    "negative_class_index": ({"classes": [{"name": "digit_3", "index": -1}]}, "config.classes[0].index"),
    "too_few_noise_levels": ({"noise": {"n_levels": 1}}, "config.noise.n_levels"),
    "more_levels_than_timesteps": ({"noise": {"n_levels": 1001}}, "config.noise.n_levels"),
    "attribution_step_out_of_range": ({"attribution": {"steps": [7]}}, "config.attribution.steps"),
    "saliency_step_out_of_range": ({"saliency": {"steps": [1, 4]}}, "config.saliency.steps"),
    "rise_keep_probability": ({"saliency": {"rise": {"p": 1.5}}}, "config.saliency.rise.p"),
    "schedule_more_steps_than_timesteps": (
        {"schedules": {"schedules": [{"name": "uniform", "kind": "uniform", "n_steps": 5000}]}},
        "config.schedules.schedules[0].n_steps",
    ),
    "schedule_negative_gamma": (
        {"schedules": {"schedules": [{"name": "early", "kind": "early", "gamma": -1, "n_steps": 4}]}},
        "config.schedules.schedules[0].gamma",
    ),
    "commitment_unknown_schedule": (
        {"schedules": {"commitment": {"schedules": ["nope"]}}},
        "config.schedules.commitment.schedules[0]",
    ),
    "unknown_concept": ({"components": {"concepts": ["digit_9"]}}, "config.components.concepts[0]"),
    "experiment_escapes_results": ({"experiment": "../elsewhere"}, "config.experiment"),
    "class_name_escapes_results": ({"classes": [{"name": "../../x", "index": 3}]}, "config.classes[0].name"),
    "missing_classifier_checkpoint": (
        {"models": {"classifier": {"source": "state_dict", "path": "/nonexistent/clf.pt"}}},
        "/nonexistent/clf.pt",
    ),
    "missing_diffusion_checkpoint": (
        {
            "data": {"source": "folder", "root": "/nonexistent/photos", "channels": 3},
            "models": {
                "diffusion": {"source": "pretrained", "id": "/nonexistent/ddpm"},
                "classifier": {"source": "torchvision"},
            },
            "classes": [{"name": "tiger", "index": 292}],
        },
        "/nonexistent/ddpm",
    ),
}


def one_line_config_error(cfg: dict) -> str:
    """The message of the DiffxaiError the config checks raise (asserted to be one line)."""
    return one_line_error(check_config, cfg)


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_is_one_line_naming_the_field(case):
    change, expected = CONFIG_CASES[case]
    assert expected in one_line_config_error(merge(tiny_config(), change))


@pytest.mark.e2e
def test_bad_config_stops_snakemake_before_any_job(tmp_path):
    change, expected = CONFIG_CASES["more_levels_than_timesteps"]
    path = write_config(tmp_path / "bad.yaml", merge(tiny_config(), change))
    proc = run_snakemake(tmp_path, "--cores", "1", configfile=path, check=False)
    assert_stopped_before_any_job(proc, tmp_path, expected)


# --- malformed YAML -------------------------------------------------------------------------

MALFORMED = "experiment: x\nclasses: [a, b\n  seed: 3\n"


def _diffxai(tmp_path, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run(
        [sys.executable, "-m", "diffxai", *args], cwd=tmp_path, capture_output=True, text=True, env=env
    )


def test_malformed_yaml_names_the_file_and_line(tmp_path, monkeypatch, capsys):
    from diffxai.workflow.cli import main

    (tmp_path / "bad.yaml").write_text(MALFORMED)
    monkeypatch.chdir(tmp_path)
    for args in (
        ["check", "bad.yaml"],
        ["run", "--cores", "1", "-s", str(REPO / "Snakefile"), "--configfile", "bad.yaml"],
    ):
        assert main(args) == 1
        assert error_lines(capsys.readouterr().err) == [
            "diffxai config error: bad.yaml:3: malformed YAML (expected ',' or ']', but got ':')"
        ]
    assert not (tmp_path / "results").exists()


@pytest.mark.e2e
def test_malformed_yaml_names_the_file_and_line_through_the_command(tmp_path):
    (tmp_path / "bad.yaml").write_text(MALFORMED)
    for args in (["check", "bad.yaml"],):
        proc = _diffxai(tmp_path, *args)
        assert proc.returncode == 1
        assert error_lines(proc.stderr) == [
            "diffxai config error: bad.yaml:3: malformed YAML (expected ',' or ']', but got ':')"
        ], proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.e2e
def test_malformed_default_config_names_the_file(tmp_path):
    """Without --configfile the Snakefile reads config/config.yaml itself, after checking it."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(MALFORMED)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "-n"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 1
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "config/config.yaml:3: malformed YAML" in lines[0], proc.stderr
    assert not (tmp_path / "results").exists()


def test_check_command_accepts_the_shipped_configs(tmp_path, monkeypatch, capsys):
    from diffxai.workflow.cli import main

    monkeypatch.chdir(REPO)
    for name in ("config.yaml", "imagenet_cats.yaml", "sd14.yaml"):
        assert main(["check", "--no-files", f"config/{name}"]) == 0
        assert ": ok (experiment" in capsys.readouterr().out
    path = write_config(tmp_path / "bad.yaml", merge(tiny_config(), {"noise": {"n_levels": 1}}))
    assert main(["check", str(path)]) == 1
    assert error_lines(capsys.readouterr().err)[0].startswith("diffxai config error: config.noise.n_levels")


@pytest.mark.e2e
def test_a_configfile_replaces_the_demo_config(tmp_path):
    """Where config/config.yaml exists (the repository root; a copy here) --configfile must not be
    merged into it: the SD config has no digits, and the demo's digit classes must not leak in."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "-n",
        "--cores",
        "1",
        "--configfile",
        "config/sd14.yaml",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "digit_" not in proc.stdout + proc.stderr


# --- image files: missing, empty, corrupt, not an image ----------------------------------------


@pytest.mark.parametrize("problem", ["missing_folder", "empty_folder", "only_non_images", "corrupt", "empty_file"])
def test_bad_image_files_name_the_path(tmp_path, problem):
    root = write_image_folder(tmp_path / "photos", ["tiger"], n=1)
    bad = root / "lion"
    if problem != "missing_folder":
        bad.mkdir()
    if problem == "only_non_images":
        (bad / "notes.txt").write_text("not an image")
    elif problem == "corrupt":
        bad = bad / "broken.jpg"
        bad.write_bytes(b"\xff\xd8 not really a jpeg")
    elif problem == "empty_file":
        bad = bad / "empty.png"
        bad.write_bytes(b"")
    cfg = tiny_config(
        data={"source": "folder", "root": str(root), "channels": 3, "image_size": 16, "n_images": 1},
        models={
            "diffusion": {"source": "pretrained", "id": "google/ddpm-cat-256"},
            "classifier": {"source": "torchvision", "arch": "resnet18"},
        },
        classes=[{"name": "tiger", "index": 292}, {"name": "lion", "index": 291}],
    )
    assert str(bad) in one_line_config_error(cfg)


def test_non_image_files_beside_images_are_ignored(tmp_path):
    from diffxai.core.files import list_images

    root = write_image_folder(tmp_path, ["tiger"], n=2)
    (root / "tiger" / "README.txt").write_text("where these came from")
    (root / "tiger" / ".DS_Store").write_bytes(b"\0\1")
    assert [p.name for p in list_images(root / "tiger")] == ["img0.jpg", "img1.png"]


# --- checkpoints that exist but cannot be used: found by the first job that loads them ---------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("checkpoints")
    ddpm = build_tiny_pixel_ddpm(d / "ddpm", image_size=16, channels=3)
    resnet = build_tiny_resnet_state_dict(d / "resnet18.safetensors", num_classes=1000)
    photos = write_image_folder(d / "photos", ["tiger", "lion"], n=1)
    return {"ddpm": ddpm, "resnet": resnet, "photos": photos, "dir": d}


def _broken(checkpoints, problem: str) -> tuple[dict, str]:
    """A pretrained-model config with one broken checkpoint; returns (config, text the error names)."""
    d = checkpoints["dir"] / problem
    d.mkdir(exist_ok=True)
    ddpm, resnet, arch = str(checkpoints["ddpm"]), str(checkpoints["resnet"]), "resnet18"
    if problem == "ddpm_wrong_channels":  # a sound grayscale model, but the data are RGB
        ddpm = str(build_tiny_pixel_ddpm(d / "ddpm", image_size=16, channels=1))
        expected = ddpm
    elif problem in ("ddpm_corrupt", "ddpm_wrong_architecture", "ddpm_nan"):
        ddpm = str(shutil.copytree(checkpoints["ddpm"], d / "ddpm", dirs_exist_ok=True))
        weights = d / "ddpm" / "unet" / "diffusion_pytorch_model.safetensors"
        unet_cfg = d / "ddpm" / "unet" / "config.json"
        if problem == "ddpm_corrupt":
            weights.write_bytes(b"\0" * 64)
        elif problem == "ddpm_nan":
            from safetensors.torch import load_file, save_file

            sd = load_file(str(weights))
            sd["conv_out.bias"] = torch.full_like(sd["conv_out.bias"], float("nan"))
            save_file(sd, str(weights))
        else:  # the config describes another network than the weights
            c = json.loads(unet_cfg.read_text())
            c["block_out_channels"] = [16, 32]
            unet_cfg.write_text(json.dumps(c))
        expected = ddpm
    else:
        resnet = str(d / "resnet18.safetensors")
        if problem == "classifier_corrupt":
            (d / "resnet18.safetensors").write_bytes(b"\x08" * 64)
        elif problem == "classifier_pickle":
            resnet = str(d / "resnet18.pt")
            torch.save({"fc.weight": torch.zeros(2), "note": object()}, resnet)  # not a plain state dict
        elif problem == "classifier_wrong_architecture":
            shutil.copy(checkpoints["resnet"], resnet)
            arch = "resnet34"
        elif problem == "classifier_nan":
            from safetensors.torch import load_file, save_file

            sd = load_file(str(checkpoints["resnet"]))
            sd["fc.bias"] = torch.full_like(sd["fc.bias"], float("inf"))
            save_file(sd, resnet)
        expected = resnet
    cfg = {
        "experiment": "broken",
        "seed": 0,
        "device": "cpu",
        "stages": ["models", "trajectories", "likelihood"],
        "models": {
            "diffusion": {"source": "pretrained", "id": ddpm},
            "classifier": {"source": "state_dict", "arch": arch, "path": resnet, "preprocess": "none"},
        },
        "data": {
            "source": "folder",
            "root": str(checkpoints["photos"]),
            "image_size": 16,
            "channels": 3,
            "n_images": 1,
        },
        "classes": [{"name": "tiger", "index": 292}, {"name": "lion", "index": 291}],
        "noise": {"n_levels": 3, "n_draws": 1},
        "likelihood": {"window": 2},
        "plots": {"dpi": 50},
    }
    return cfg, expected


JOB_CASES = {
    "ddpm_corrupt": "cannot load diffusion pipeline",
    "ddpm_wrong_architecture": "cannot load diffusion pipeline",
    "ddpm_wrong_channels": "the U-Net takes 1-channel images but config.data.channels is 3",
    "ddpm_nan": "NaN/Inf",
    "classifier_corrupt": "cannot load classifier",
    "classifier_pickle": "not a plain tensor state dict",
    "classifier_wrong_architecture": "weights do not fit the architecture",
    "classifier_nan": "NaN/Inf logits",
}


def _load_what_the_jobs_load(cfg: dict) -> None:
    """What the first jobs of a pretrained-model run do with the checkpoints: load the diffusion
    model (trajectories_build) and run the classifier on images (likelihood_compute)."""
    from diffxai.io.images import load_folder
    from diffxai.models.classifiers import classify, load_classifier
    from diffxai.models.loading import load_backend

    m = cfg["models"]
    model = load_backend("pixel", m["diffusion"]["id"], "cpu", channels=cfg["data"]["channels"])
    x, _ = load_folder(Path(cfg["data"]["root"]) / "tiger", 1, cfg["data"]["image_size"], cfg["data"]["channels"])
    model.eps(x, torch.tensor([500]), None)
    classify(load_classifier(m["classifier"], "cpu"), x, 4, "cpu")


@pytest.mark.parametrize("problem", list(JOB_CASES))
def test_unusable_checkpoint_is_one_line_naming_it(checkpoints, problem):
    cfg, names = _broken(checkpoints, problem)
    with pytest.raises(DiffxaiError) as err:
        _load_what_the_jobs_load(cfg)
    text = str(err.value)
    assert "\n" not in text and names in text and JOB_CASES[problem] in text, text


@pytest.mark.e2e
def test_unusable_checkpoint_fails_its_job_with_one_line(tmp_path, checkpoints):
    """One case through Snakemake (the job's error plumbing); every case in-process above."""
    cfg, names = _broken(checkpoints, problem := "ddpm_nan")
    proc = run_snakemake(tmp_path, "--cores", "1", configfile=write_config(tmp_path / "c.yaml", cfg), check=False)
    assert proc.returncode != 0
    lines = error_lines(proc.stderr, "diffxai error:")
    assert len(lines) == 1, proc.stderr[-3000:]
    assert names in lines[0] and JOB_CASES[problem] in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    # the failed job's outputs are gone, nothing half-written is left anywhere
    failed = re.search(r"Error in rule (\w+):", proc.stderr).group(1)
    outputs = re.search(r"^\s+output: (.+)$", proc.stderr.split(f"Error in rule {failed}:")[1], re.M).group(1)
    for out in outputs.split(", "):
        assert not (tmp_path / out.strip()).exists(), f"{failed} left {out}"
    leftovers = [p for p in (tmp_path / "results").rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    log = tmp_path / "results" / "broken" / "logs"
    assert any(names in p.read_text() for p in log.rglob("*.log")), "the job's log must say it too"
