"""What the diffusion model can do is known before any job starts (no torch): whether it takes a
class label is read from its files (the demo and Stable Diffusion always do), the defaults turn on
only what it supports, and an explicit request it cannot serve is one line naming the key.

Before this, an unconditional pixel DDPM (a ``DDPMPipeline`` directory like ``google/ddpm-cat-256``)
passed ``diffxai check`` and its schedules commitment and components jobs failed minutes into the
run, although the config never asked for either."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from diffxai.config.checks import check_config, validate_config
from diffxai.config.experiment import commitment_pairs, diffusion_conditional, read_conditional
from diffxai.config.load import load_config
from diffxai.core.errors import DiffxaiError
from helpers import build_tiny_pixel_ddpm, tiny_config

REPO = Path(__file__).resolve().parents[2]
ALL = ["models", "trajectories", "likelihood", "attribution", "saliency", "schedules", "components"]


@pytest.fixture(scope="module")
def ddpms(tmp_path_factory):
    """A tiny unconditional and a tiny class-conditional DDPMPipeline directory (no diffxai.json)."""
    d = tmp_path_factory.mktemp("ddpms")
    return {
        "uncond": build_tiny_pixel_ddpm(d / "uncond", image_size=8, channels=1),
        "cond": build_tiny_pixel_ddpm(d / "cond", image_size=8, channels=1, n_classes=10),
    }


def own_model(path, **diffusion) -> dict:
    """The tiny config with its demo DDPM replaced by the DDPMPipeline directory ``path``; nothing
    else changed (its demo classifier, digits, schedules and components with concepts)."""
    cfg = tiny_config()
    cfg["models"]["diffusion"] = {"source": "pretrained", "id": str(path), **diffusion}
    return cfg


def error(cfg: dict, check=check_config) -> str:
    with pytest.raises(DiffxaiError) as err:
        check(cfg)
    text = str(err.value)
    assert "\n" not in text
    return text


# --- reading what the model is -------------------------------------------------------------


def test_read_from_the_pipeline_directory(ddpms, tmp_path):
    assert read_conditional(str(ddpms["uncond"]))[0] is False
    assert read_conditional(str(ddpms["cond"]))[0] is True
    # a root config.json (a bare UNet2DModel directory) is read too
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", "num_class_embeds": 11}))
    assert read_conditional(str(bare)) == (True, str(bare / "config.json"))
    # the demo's metadata (its null label) comes first, as the loader reads it
    (bare / "diffxai.json").write_text(json.dumps({"null_label": None}))
    assert read_conditional(str(bare))[0] is False
    assert read_conditional(str(tmp_path / "nothing-here"))[0] is None


def test_a_continuous_class_embedding_is_refused_up_front(tmp_path):
    d = tmp_path / "ddpm" / "unet"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"class_embed_type": "timestep", "num_class_embeds": None}))
    cfg = own_model(tmp_path / "ddpm", conditional="auto")
    assert "class_embed_type 'timestep'" in error(cfg) and str(d / "config.json") in error(cfg)


def test_a_hub_id_is_read_from_the_local_cache_only(tmp_path, monkeypatch):
    """No network: the hub model's unet/config.json in the Hugging Face cache, else one line asking
    for models.diffusion.conditional."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    cfg = own_model("google/ddpm-cat-256")
    del cfg["components"]
    text = error(copy.deepcopy(cfg), lambda c: validate_config(c, check_files=False))
    assert text == (
        "config.models.diffusion.conditional: auto cannot tell whether google/ddpm-cat-256 takes a class label "
        "(google/ddpm-cat-256 is not in the local Hugging Face cache): set it to true or false"
    )
    snapshot = cache / "models--google--ddpm-cat-256" / "snapshots" / "abc123"
    (snapshot / "unet").mkdir(parents=True)
    (snapshot / "unet" / "config.json").write_text(json.dumps({"num_class_embeds": None}))
    (cache / "models--google--ddpm-cat-256" / "refs").mkdir()
    (cache / "models--google--ddpm-cat-256" / "refs" / "main").write_text("abc123")
    assert read_conditional("google/ddpm-cat-256") == (
        False,
        "google/ddpm-cat-256/unet/config.json in the Hugging Face cache",
    )
    out = validate_config(copy.deepcopy(cfg), check_files=False)
    assert out["models"]["diffusion"]["conditional"] is False and "components" not in out["stages"]


def test_the_demo_and_stable_diffusion_are_conditional():
    assert diffusion_conditional(check_config(tiny_config())) is True
    sd = {"models": {"diffusion": {"source": "pretrained", "type": "stable_diffusion", "id": "x/y"}}}
    assert diffusion_conditional(sd) is True
    sd["models"]["diffusion"]["conditional"] = False
    with pytest.raises(DiffxaiError, match=r"config\.models\.diffusion\.conditional: false, but Stable Diffusion"):
        diffusion_conditional(sd)


def test_a_stated_value_the_files_contradict_is_refused(ddpms):
    text = error(own_model(ddpms["uncond"], conditional=True))
    assert text.startswith("config.models.diffusion.conditional: true, but ")
    assert "unet/config.json says the model has no class embedding" in text


# --- the defaults turn on only what the model supports -------------------------------------


def test_the_defaults_plan_no_label_switching_for_an_unconditional_model(ddpms):
    cfg = own_model(ddpms["uncond"])
    del cfg["components"]  # the tiny config asks for concepts: see the next test
    out = check_config(cfg)
    assert out["stages"] == [s for s in ALL if s != "components"]
    assert out["schedules"]["commitment"]["enabled"] is False and commitment_pairs(out) == []


def test_the_defaults_are_unchanged_for_a_conditional_model(ddpms):
    for cfg in (tiny_config(), own_model(ddpms["cond"])):
        out = check_config(cfg)
        assert out["stages"] == ALL and out["schedules"]["commitment"]["enabled"] is True
        assert commitment_pairs(out) == [("digit_3", "digit_7")]
    again = check_config(out)  # idempotent: a second check sees the resolved values
    assert again["stages"] == ALL and commitment_pairs(again) == [("digit_3", "digit_7")]


# --- an explicit request the model cannot serve: one line naming the key ------------------------

EXPLICIT = {
    "components_in_stages": (
        {"stages": ["models", "schedules", "components"]},
        "config.stages[2]: components needs a class-conditional model",
    ),
    "concepts_with_default_stages": ({}, "config.components.concepts: component attribution needs"),
    "commitment_enabled": (
        {"components": {}, "schedules": {"commitment": {"enabled": True}}},
        "config.schedules.commitment.enabled: true, but the experiment switches class labels",
    ),
    "commitment_pairs": (
        {"components": {}, "schedules": {"commitment": {"pairs": [["digit_3", "digit_7"]]}}},
        "config.schedules.commitment.pairs: the commitment experiment switches class labels",
    ),
    "x0_view_with_the_class": (
        {"components": {}, "trajectories": {"x0_condition": "class"}},
        "config.trajectories.x0_condition: class, but",
    ),
}


@pytest.mark.parametrize("case", list(EXPLICIT))
def test_an_explicit_request_an_unconditional_model_cannot_serve(ddpms, case):
    change, expected = EXPLICIT[case]
    cfg = own_model(ddpms["uncond"])
    cfg.update(copy.deepcopy(change))
    if "schedules" in change:
        cfg["schedules"] = {**tiny_config()["schedules"], **change["schedules"]}
    text = error(cfg)
    assert text.startswith(expected), text
    assert f"{ddpms['uncond']} is unconditional" in text or "Stable Diffusion" in text


def test_a_stage_left_out_asks_for_nothing(ddpms):
    """Concepts or commitment settings of a stage that `stages` leaves out are not requests."""
    cfg = own_model(ddpms["uncond"], conditional=False)
    cfg["stages"] = ["models", "trajectories", "likelihood"]
    cfg["schedules"]["commitment"]["enabled"] = True
    assert check_config(cfg)["stages"] == ["models", "trajectories", "likelihood"]


def test_stable_diffusion_has_no_label_to_switch():
    cfg = load_config(REPO / "config" / "sd14.yaml")
    cfg["schedules"]["commitment"] = {"enabled": True}
    text = error(cfg, lambda c: check_config(c, check_files=False))
    assert text.startswith("config.schedules.commitment.enabled: true") and "Stable Diffusion takes prompts" in text


# --- the poster's config ------------------------------------------------------------------


def test_imagenet_cats_checks_and_plans_no_commitment_or_components(ddpms):
    """config/imagenet_cats.yaml (ddpm-cat-256, no `stages:`) with a tiny unconditional
    DDPMPipeline directory in place of the hub id, `conditional: auto`: it reads the directory."""
    cfg = load_config(REPO / "config" / "imagenet_cats.yaml")
    assert cfg["models"]["diffusion"]["conditional"] is False and "stages" not in cfg  # as shipped
    cfg["models"]["diffusion"].update(id=str(ddpms["uncond"]), conditional="auto")
    out = check_config(cfg, check_files=False)
    assert out["stages"] == ["models", "trajectories", "likelihood", "attribution", "saliency", "schedules"]
    assert commitment_pairs(out) == [] and out["components"]["concepts"] == []


@pytest.mark.e2e
def test_imagenet_cats_dry_run_plans_no_commitment_or_components(ddpms, tmp_path):
    """The same through Snakemake's planning (`snakemake -n`): no schedules_commitment and no
    components job (the photo folders are made here; nothing runs)."""
    import yaml

    from helpers import write_image_folder

    cfg = load_config(REPO / "config" / "imagenet_cats.yaml")
    del cfg["models"]["diffusion"]["conditional"]
    cfg["models"]["diffusion"]["id"] = str(ddpms["uncond"])
    names = [c["name"] for c in cfg["classes"]]
    cfg["data"]["root"] = str(write_image_folder(tmp_path / "cats", names, n=1))
    (tmp_path / "cats.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--configfile", "cats.yaml"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "schedules_generate" in proc.stdout and "saliency_compute" in proc.stdout
    assert "schedules_commitment" not in proc.stdout and "components_" not in proc.stdout
