"""Golden test: the ONE sampling loop (:func:`diffxai.sampling.loop.sample`) reproduces, bit for
bit, the loops it replaced.

``tests/golden/sampling_old.safetensors`` holds outputs of the pre-v2 loops (diffxai commit
d22046c: pixel ``sampling.ddim_sample``, ``schedules.scheduler_sample`` with ``ddpm`` and
``dpmsolver++``, and ``sd.sd_sample`` with three schedulers, default and custom timesteps and a
negative prompt), run with one torch thread on the seeded tiny models of
``helpers.build_tiny_pixel_ddpm(image_size=8, channels=1, n_classes=3)`` and
``tiny_sd.build_tiny_sd``. Stored per run ``<run>/<key>``, float32 ``(B, ...)``: the final
``sample`` (old SD key ``latents``), ``x_t.1`` (the state entering step 1), ``x0_pred.0`` /
``x0_pred.last`` (x̂0 at the first / last step), for SD also ``eps.0`` / ``eps.last``, the decoded
``images`` and the scheduler's ``timesteps`` (int64).

The builders are bit-reproducible (same weights on every run: seeded, and the files' md5s agree
across builds), so the comparison is ``torch.equal``. The metadata also records a SHA-256 of each
tiny model's weights: if that check fails, the builders (or torch/diffusers) changed, not the loop.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from diffxai.core.seeding import make_generator
from diffxai.models.loading import load_backend
from diffxai.sampling.loop import sample, step_conditions
from diffxai.sampling.noising import seeded_noise
from helpers import build_tiny_pixel_ddpm
from tiny_sd import build_tiny_sd

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "sampling_old.safetensors"
PIXEL_TS = [999, 700, 400, 150, 20]
PIXEL_RUNS = ["ddim", "ddim_perstep", "ddpm", "dpm"]
SD_RUNS = [f"sd_{s}{c}" for s in ("dpmsolver++", "ddim", "ddpm") for c in ("", "_custom")]


def weights_sha256(*nets: torch.nn.Module) -> str:
    """SHA-256 of the networks' state dicts (sorted names, raw bytes)."""
    h = hashlib.sha256()
    for net in nets:
        for name, v in sorted(net.state_dict().items()):
            h.update(name.encode())
            h.update(v.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def golden() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(GOLDEN), "pt") as f:
        names = list(f.keys())
        return {k: f.get_tensor(k) for k in names}, f.metadata()


@pytest.fixture(scope="module")
def pixel(tmp_path_factory):
    path = build_tiny_pixel_ddpm(tmp_path_factory.mktemp("golden") / "px", image_size=8, channels=1, n_classes=3)
    return load_backend("pixel", str(path))


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return load_backend("stable_diffusion", str(build_tiny_sd(tmp_path_factory.mktemp("golden") / "sd")))


def pixel_run(m, run: str) -> dict[str, torch.Tensor]:
    """The new call that replaces the old pixel call of ``run`` (same inputs)."""
    x = seeded_noise((1, 8, 8), [make_generator(0, "eq", i) for i in range(5)])
    labels = m.encode([0, 1, 2, 0, 1])
    common = {"timesteps": PIXEL_TS, "record": True}
    if run == "ddim":
        return sample(m, x, cond=labels, guidance=2.0, batch_size=2, **common)
    if run == "ddim_perstep":  # old labels (5, 5): class 0 for steps 0-1, class 1 from step 2
        per = step_conditions(m.encode([0]), m.encode([1]), 5, [2]).expand(5, 5)
        return sample(m, x, cond=per, guidance=2.0, batch_size=3, **common)
    if run == "ddpm":
        gens = [make_generator(0, "eqg", i) for i in range(5)]
        return sample(m, x, cond=labels, guidance=2.0, scheduler="ddpm", step_generators=gens, batch_size=2, **common)
    return sample(m, x, cond=labels, guidance=1.5, scheduler="dpmsolver++", batch_size=4, **common)


def sd_run(sd, run: str) -> dict[str, torch.Tensor]:
    """The new call that replaces old ``sd_sample(seed=0, stage="eq", keys=...)`` of ``run``: the
    initial latent and DDPM step noise of key k come from the old per-key generators."""
    scheduler = run.removeprefix("sd_").removesuffix("_custom")
    if run.endswith("_custom"):
        prompts, keys = ["a cat", "a dog"], [0, 1]
        kw = {"timesteps": [900, 500, 100], "guidance": 3.0, "batch_size": 1, "null": sd.encode(["a dog"])}
    else:
        prompts, keys = ["a cat", "a dog", "a cat"], [0, 1, 2]
        kw = {"n_steps": 4, "guidance": 7.5, "batch_size": 2}
    x = seeded_noise(sd.sample_shape(), [make_generator(0, "eq", k) for k in keys])
    gens = [make_generator(0, "eq", "step-noise", k) for k in keys]
    cond = sd.encode(prompts)
    return sample(
        sd, x, cond=cond, scheduler=scheduler, step_generators=gens, record=True, record_eps=True, decode=True, **kw
    )


def recorded(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The stored subset of a run's outputs (see the module doc)."""
    x_t, x0 = out["x_t"], out["x0_pred"]
    got = {"sample": out["sample"], "x_t.1": x_t[:, 1], "x0_pred.0": x0[:, 0], "x0_pred.last": x0[:, -1]}
    if "eps" in out:
        eps = out["eps"]
        got.update({"eps.0": eps[:, 0], "eps.last": eps[:, -1], "images": out["images"], "timesteps": out["timesteps"]})
    return got


def assert_golden(golden, run: str, got: dict[str, torch.Tensor]) -> None:
    want = {k.split("/", 1)[1]: v for k, v in golden[0].items() if k.startswith(f"{run}/")}
    assert want and set(want) == set(got), (run, sorted(want), sorted(got))
    for key, v in want.items():
        assert got[key].dtype == v.dtype and got[key].shape == v.shape, (run, key)
        diff = (got[key].double() - v.double()).abs().max().item()
        assert torch.equal(got[key], v), f"{run}/{key} differs from the old loop (max |diff| {diff:.3g})"


def test_golden_file_is_small_and_complete(golden):
    assert GOLDEN.stat().st_size < 300_000
    runs = {k.split("/")[0] for k in golden[0]}
    assert runs == set(PIXEL_RUNS + SD_RUNS)


def test_tiny_models_are_the_recorded_ones(golden, pixel, sd):
    meta = golden[1]
    assert weights_sha256(pixel.unet) == meta["pixel_weights_sha256"], "build_tiny_pixel_ddpm changed"
    assert weights_sha256(sd.unet, sd.vae, sd.text_encoder) == meta["sd_weights_sha256"], "build_tiny_sd changed"


@pytest.mark.parametrize("run", PIXEL_RUNS)
def test_pixel_loop_equals_old_loop(golden, pixel, run):
    assert_golden(golden, run, recorded(pixel_run(pixel, run)))


@pytest.mark.parametrize("run", SD_RUNS)
def test_sd_loop_equals_old_sd_sample(golden, sd, run):
    assert_golden(golden, run, recorded(sd_run(sd, run)))
