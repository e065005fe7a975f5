"""Properties and known answers of the ONE sampling loop :func:`diffxai.sampling.loop.sample`
(and :func:`~diffxai.sampling.loop.step_conditions`) on tiny seeded pixel and SD models."""

from __future__ import annotations

import pytest
import torch

from diffxai.core.errors import DiffxaiError
from diffxai.core.seeding import make_generator
from diffxai.models.backend import DiffusionBackend
from diffxai.models.loading import load_backend
from diffxai.sampling.loop import sample, step_conditions
from diffxai.sampling.noising import seeded_noise
from helpers import build_tiny_pixel_ddpm
from tiny_sd import build_tiny_sd

SCHEDULERS = ["ddim", "ddpm", "dpmsolver++"]
TS = [999, 800, 450, 120, 10]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, DiffusionBackend]:
    root = tmp_path_factory.mktemp("sampling")
    return {
        "pixel": load_backend("pixel", str(build_tiny_pixel_ddpm(root / "px", 8, 1, n_classes=3))),
        "sd": load_backend("stable_diffusion", str(build_tiny_sd(root / "sd"))),
        "unconditional": load_backend("pixel", str(build_tiny_pixel_ddpm(root / "unc", 8, 1))),
    }


def keys(kind: str, n: int = 4) -> list:
    """``n`` condition keys cycling through three classes (pixel) or prompts (SD)."""
    base = [0, 1, 2] if kind == "pixel" else ["a cat", "a dog", "a fish"]
    return [base[i % 3] for i in range(n)]


def noise(m: DiffusionBackend, n: int, stage: str = "x") -> torch.Tensor:
    return seeded_noise(m.sample_shape(), [make_generator(0, stage, i) for i in range(n)])


def gens(n: int, stage: str = "steps") -> list[torch.Generator]:
    return [make_generator(0, stage, i) for i in range(n)]


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> None:
    """Equal up to float32 round-off relative to the scale: other batch sizes run other conv
    kernels, and sampling amplifies the difference by 1/sqrt(ᾱ) at the noisy steps."""
    scale = max(1.0, float(b.abs().max()))
    torch.testing.assert_close(a, b, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("kind,scheduler", [(kind, s) for kind in ("pixel", "sd") for s in SCHEDULERS])
def test_a_sample_does_not_depend_on_its_batch(models, kind, scheduler):
    m = models["pixel" if kind == "pixel" else "sd"]
    x, cond = noise(m, 4), m.encode(keys(kind))
    kw = {"n_steps": 4, "guidance": 3.0, "scheduler": scheduler, "record": True}
    one = sample(m, x, cond=cond, step_generators=gens(4), batch_size=1, **kw)
    four = sample(m, x, cond=cond, step_generators=gens(4), batch_size=4, **kw)
    alone = sample(m, x[2:3], cond=cond[2:3], step_generators=gens(4)[2:3], batch_size=4, **kw)
    assert torch.equal(one["timesteps"], four["timesteps"])
    for key in ("sample", "x_t", "x0_pred"):
        close(one[key], four[key])
        assert torch.equal(alone[key][0], one[key][2]), key  # the same computation: bit for bit


@pytest.mark.parametrize("kind", ["pixel", "sd"])
def test_ddim_is_deterministic(models, kind):
    m = models[kind]
    x, cond = noise(m, 3), m.encode(keys(kind, 3))
    a = sample(m, x, timesteps=TS, cond=cond, guidance=2.0, record=True, record_eps=True, decode=True)
    b = sample(m, x.clone(), timesteps=TS, cond=cond, guidance=2.0, record=True, record_eps=True, decode=True)
    assert a.keys() == b.keys() == {"sample", "timesteps", "x_t", "x0_pred", "eps", "images"}
    assert all(torch.equal(a[k], b[k]) for k in a)
    # generators are ignored by the deterministic update
    c = sample(m, x, timesteps=TS, cond=cond, guidance=2.0, step_generators=gens(3, "other"))
    assert torch.equal(c["sample"], a["sample"])


def test_ddpm_is_reproducible_with_the_same_generators_only(models):
    m = models["pixel"]
    x, cond = noise(m, 3), m.encode([0, 1, 2])
    run = lambda g: sample(m, x, timesteps=TS, cond=cond, guidance=2.0, scheduler="ddpm", step_generators=g)  # noqa: E731
    a, b, other = run(gens(3)), run(gens(3)), run(gens(3, "other"))
    assert torch.equal(a["sample"], b["sample"])
    for i in range(3):  # every sample's noise changed
        assert not torch.allclose(a["sample"][i], other["sample"][i])
    # only sample 1's generator changed: only sample 1 changed
    mixed = run([make_generator(0, "steps", 0), make_generator(0, "other", 1), make_generator(0, "steps", 2)])
    assert torch.equal(mixed["sample"][[0, 2]], a["sample"][[0, 2]]) and torch.equal(
        mixed["sample"][1], other["sample"][1]
    )
    assert not torch.allclose(a["sample"], sample(m, x, timesteps=TS, cond=cond, guidance=2.0)["sample"])
    with pytest.raises(ValueError, match="one generator per sample"):
        run(gens(2))


def test_ddim_known_answers(models):
    """The recorded steps obey the closed-form DDIM (η = 0) update, x̂0 is clipped for pixels,
    and the last step to ᾱ = 1 returns x̂0."""
    m = models["pixel"]
    x, cond = noise(m, 3), m.encode([2, 0, 1])
    r = sample(m, x, timesteps=TS, cond=cond, guidance=2.0, record=True, record_eps=True)
    assert r["timesteps"].tolist() == TS and r["timesteps"].dtype == torch.long
    assert r["x_t"].shape == r["x0_pred"].shape == r["eps"].shape == (3, len(TS), 1, 8, 8)
    assert all(v.dtype == torch.float32 and v.device.type == "cpu" for k, v in r.items() if k != "timesteps")
    assert torch.equal(r["x_t"][:, 0], x)
    abar = m.alphas_cumprod[TS].float().view(1, -1, 1, 1, 1)
    x0 = ((r["x_t"] - (1 - abar).sqrt() * r["eps"]) / abar.sqrt()).clamp(-1, 1)
    close(r["x0_pred"], x0, 1e-5)
    a_next = abar[:, 1:]
    close(r["x_t"][:, 1:], a_next.sqrt() * r["x0_pred"][:, :-1] + (1 - a_next).sqrt() * r["eps"][:, :-1], 1e-5)
    assert torch.equal(r["sample"], r["x0_pred"][:, -1])
    # the recorded ε̂ is the guided one of the backend
    with torch.no_grad():
        e = m.eps_guided(r["x_t"][:, 2], torch.full((3,), TS[2]), cond, 2.0)
    close(r["eps"][:, 2], e, 1e-5)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_custom_timesteps_are_used_as_given(models, scheduler):
    m = models["pixel"]
    x = noise(m, 2)
    kw = {"cond": m.encode([0, 1]), "guidance": 2.0, "scheduler": scheduler}
    r = sample(m, x, timesteps=TS, step_generators=gens(2), record=True, **kw)
    assert r["timesteps"].tolist() == TS and r["x_t"].shape[1] == len(TS)
    d = sample(m, x, n_steps=len(TS), step_generators=gens(2), **kw)
    assert d["timesteps"].tolist() != TS and not torch.allclose(d["sample"], r["sample"])


def test_unconditional_and_guidance_one(models):
    unc, px = models["unconditional"], models["pixel"]
    x = noise(unc, 2)
    r = sample(unc, x, timesteps=TS, cond=None, guidance=5.0)  # SDEdit-style: no condition at all
    assert r["sample"].shape == (2, 1, 8, 8) and r["sample"].abs().max() <= 1
    cond = px.encode([1, 2])
    one = sample(px, x, timesteps=TS, cond=cond, guidance=1.0)["sample"]
    assert not torch.allclose(one, sample(px, x, timesteps=TS, cond=cond, guidance=3.0)["sample"])
    null = sample(px, x, timesteps=TS, cond=None)["sample"]
    assert torch.equal(null, sample(px, x, timesteps=TS, cond=px.null(2))["sample"])


def test_step_conditions_values():
    a, b = torch.tensor([4]), torch.tensor([7])
    c = step_conditions(a, b, 5, [0, 2, 5])
    assert c.shape == (3, 5) and c.tolist() == [[7] * 5, [4, 4, 7, 7, 7], [4] * 5]
    ea, eb = torch.zeros(1, 3, 2), torch.ones(1, 3, 2)
    e = step_conditions(ea, eb, 4, [1, 3])
    assert e.shape == (2, 4, 3, 2)
    assert e[:, :, 0, 0].tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]


@pytest.mark.parametrize("kind", ["pixel", "sd"])
def test_per_step_conditions_at_the_ends_equal_constant_conditions(models, kind):
    m = models[kind]
    S = len(TS)
    a, b = m.encode(keys(kind)[:1]), m.encode(keys(kind)[1:2])
    ks = [S, 0, 2]
    x = noise(m, len(ks))
    per = step_conditions(a, b, S, ks)
    assert per.shape == (3, S, *a.shape[1:])
    run = lambda cond: sample(m, x, timesteps=TS, cond=cond, guidance=2.5, batch_size=1)["sample"]  # noqa: E731
    switched = run(per)
    const_a, const_b = run(a.expand(3, *a.shape[1:])), run(b.expand(3, *b.shape[1:]))
    assert torch.equal(switched[0], const_a[0])  # k = S: a throughout
    assert torch.equal(switched[1], const_b[1])  # k = 0: b throughout
    assert not torch.allclose(switched[2], const_a[2]) and not torch.allclose(switched[2], const_b[2])
    with pytest.raises(ValueError, match="per-step conditions have 5 steps, the schedule 4"):
        sample(m, x, timesteps=TS[:4], cond=per)


@pytest.mark.parametrize(
    "timesteps,match",
    [
        ([10, 20], "strictly decreasing"),
        ([500, 500, 10], "strictly decreasing"),
        ([1000, 10], r"must lie in \[0, 1000\)"),
        ([10, -1], r"must lie in \[0, 1000\)"),
        ([], "empty"),
    ],
)
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_bad_timesteps_are_one_line_errors(models, timesteps, match, scheduler):
    m = models["pixel"]
    with pytest.raises(DiffxaiError, match=match) as err:
        sample(m, noise(m, 1), timesteps=timesteps, cond=m.encode([0]), scheduler=scheduler)
    assert str(err.value).startswith("timesteps") and "\n" not in str(err.value)


def test_bad_arguments(models):
    m = models["pixel"]
    x, cond = noise(m, 2), m.encode([0, 1])
    with pytest.raises(DiffxaiError, match="n_steps.*disagrees with 5 custom timesteps"):
        sample(m, x, timesteps=TS, n_steps=4, cond=cond)
    with pytest.raises(DiffxaiError, match="need n_steps >= 1 or a timesteps list"):
        sample(m, x, cond=cond)
    with pytest.raises(DiffxaiError, match="unknown scheduler 'euler'"):
        sample(m, x, n_steps=3, cond=cond, scheduler="euler")
    with pytest.raises(ValueError, match="3 conditions for 2 samples"):
        sample(m, x, n_steps=3, cond=m.encode([0, 1, 2]))
