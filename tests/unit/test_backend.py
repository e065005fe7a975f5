"""The pixel and Stable Diffusion backends agree on the one interface
(:class:`diffxai.models.backend.DiffusionBackend`), on tiny seeded models built offline."""

from __future__ import annotations

import copy

import pytest
import torch

from diffxai.core.errors import DiffxaiError
from diffxai.models.backend import DiffusionBackend, model_dtype
from diffxai.models.loading import load_backend
from helpers import build_tiny_pixel_ddpm
from tiny_sd import MAX_LENGTH, build_tiny_sd

KINDS = ["pixel", "stable_diffusion"]


@pytest.fixture(scope="module")
def backends(tmp_path_factory) -> dict[str, DiffusionBackend]:
    root = tmp_path_factory.mktemp("backends")
    return {
        "pixel": load_backend("pixel", str(build_tiny_pixel_ddpm(root / "px", 8, 1, n_classes=3))),
        "stable_diffusion": load_backend("stable_diffusion", str(build_tiny_sd(root / "sd"))),
        "unconditional": load_backend("pixel", str(build_tiny_pixel_ddpm(root / "unc", 8, 3))),
    }


def keys(kind: str) -> list:
    """Three condition keys: class labels (pixel) or prompts (SD)."""
    return [0, 2, 1] if kind == "pixel" else ["a photo of a cat", "a church", "a fish"]


def inputs(backend: DiffusionBackend) -> tuple[torch.Tensor, torch.Tensor]:
    """x ``(3, *sample_shape)`` and timesteps ``(3,)``, seeded."""
    x = torch.randn(3, *backend.sample_shape(), generator=torch.Generator().manual_seed(0))
    return x, torch.tensor([900, 500, 20])


def unet_rows(backend: DiffusionBackend, fn) -> list[int]:
    """Batch sizes of the U-Net's forward calls while ``fn()`` runs."""
    rows: list[int] = []
    handle = backend.unet.register_forward_pre_hook(lambda m, a, k: rows.append(a[0].shape[0]), with_kwargs=True)
    try:
        fn()
    finally:
        handle.remove()
    return rows


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal up to float32 round-off relative to the scale (one batched forward vs two)."""
    scale = max(1.0, float(b.abs().max()))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("kind", KINDS)
def test_eps_guided_is_the_guidance_formula_in_one_forward(backends, kind):
    m = backends[kind]
    x, t = inputs(m)
    cond = m.encode(keys(kind))
    with torch.no_grad():
        e_c, e_u = m.eps(x, t, cond), m.eps(x, t, m.null(3))
        want = e_u + 4.0 * (e_c - e_u)
        got = m.eps_guided(x, t, cond, 4.0)
        close(got, want)
        assert unet_rows(m, lambda: m.eps_guided(x, t, cond, 4.0)) == [6]  # both branches in one forward
        # another null condition (SD: a negative prompt), given as one row and broadcast
        other = m.encode(keys(kind)[1:2])
        e_o = m.eps(x, t, other.expand(3, *other.shape[1:]))
        close(m.eps_guided(x, t, cond, 4.0, other), e_o + 4.0 * (e_c - e_o))


@pytest.mark.parametrize("kind", KINDS)
def test_guidance_one_runs_one_branch(backends, kind):
    m = backends[kind]
    x, t = inputs(m)
    cond = m.encode(keys(kind))
    with torch.no_grad():
        assert unet_rows(m, lambda: m.eps_guided(x, t, cond, 1.0)) == [3]
        assert torch.equal(m.eps_guided(x, t, cond, 1.0), m.eps(x, t, cond))
        # no condition: the unconditional branch alone, whatever the guidance
        assert unet_rows(m, lambda: m.eps_guided(x, t, None, 7.5)) == [3]
        assert torch.equal(m.eps(x, t, None), m.eps(x, t, m.null(3)))


def test_unconditional_model_ignores_guidance(backends):
    m = backends["unconditional"]
    x, t = inputs(m)
    assert not m.conditional and m.encode([0, 1]) is None and m.null(4) is None
    with torch.no_grad():
        assert unet_rows(m, lambda: m.eps_guided(x, t, None, 3.0)) == [3]
        assert torch.equal(m.eps_guided(x, t, None, 3.0), m.eps(x, t, None))


def test_conditions_and_null_shapes(backends):
    px, sd = backends["pixel"], backends["stable_diffusion"]
    labels = px.encode([2, 0])
    assert labels.dtype == torch.long and labels.tolist() == [2, 0]
    assert px.conditional and px.null(4).tolist() == [3] * 4  # the null label is n_classes
    emb = sd.encode(["a cat", "a dog"])
    d = sd.text_encoder.config.hidden_size
    assert sd.conditional and emb.shape == (2, MAX_LENGTH, d) and emb.dtype == sd.dtype
    null = sd.null(3)
    assert null.shape == (3, MAX_LENGTH, d)
    assert torch.equal(null[2], sd.encode([""])[0]) and not torch.allclose(null[0], emb[0])
    # a condition batch has one row more dimension than one condition: what per-step conditions rely on
    assert px.null(1).ndim == 1 and sd.null(1).ndim == 3


def test_with_unet_swaps_only_the_unet(backends):
    for kind in KINDS:
        m = backends[kind]
        twin = copy.deepcopy(m.unet)
        new = m.with_unet(twin)
        assert new is not m and type(new) is type(m)
        assert new.unet is twin and m.unet is not twin  # the original keeps its U-Net
        for name, value in vars(m).items():
            if name != "unet":
                assert getattr(new, name) is value, (kind, name)  # nothing else is copied or replaced
        x, t = inputs(m)
        cond = m.encode(keys(kind))
        with torch.no_grad():
            torch.nn.init.zeros_(next(twin.parameters()))
            before = m.eps(x, t, cond)
            assert not torch.equal(new.eps(x, t, cond), before)
            assert torch.equal(m.eps(x, t, cond), before)


def test_sample_shape_and_spaces(backends):
    px, sd = backends["pixel"], backends["stable_diffusion"]
    assert px.sample_shape() == (1, 8, 8) and px.sample_shape(16, 12) == (1, 16, 12)
    assert backends["unconditional"].sample_shape() == (3, 8, 8)
    assert sd.sample_shape() == (4, 8, 8) and sd.sample_shape(32, 16) == (4, 16, 8)  # VAE factor 2
    with pytest.raises(DiffxaiError, match="height/width"):
        sd.sample_shape(15, 16)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert torch.equal(px.to_model_space(images[:, :1]), images[:, :1]) and px.decode(images) is images
    with torch.no_grad():
        z = sd.to_model_space(images)
        assert z.shape == (2, *sd.sample_shape()) and torch.equal(z, sd.encode_images(images))
        out = sd.decode(z)
    assert out.shape == images.shape and out.min() >= -1 and out.max() <= 1
    assert px.clip_x0 and not sd.clip_x0


@pytest.mark.parametrize("kind", KINDS)
def test_schedule_and_predict_x0(backends, kind):
    m = backends[kind]
    abar = m.alphas_cumprod
    assert m.num_train_timesteps == 1000 and abar.shape == (1000,) and abar.dtype == torch.float64
    assert torch.all(abar[1:] < abar[:-1]) and 0 < abar[-1] < abar[0] < 1
    assert m.device.type == "cpu" and m.dtype == torch.float32
    x0 = torch.rand(3, *m.sample_shape(), generator=torch.Generator().manual_seed(2)) * 2 - 1
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([999, 400, 0])
    a = abar[t].float().view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    # with the true noise x̂0 is x0 (up to the round-off 1/sqrt(ᾱ) amplifies at t = 999)
    torch.testing.assert_close(m.predict_x0(x_t, t, eps), x0, rtol=0, atol=2e-3)
    wild = m.predict_x0(x_t, t, -eps).abs().max()  # a wrong ε: x̂0 far outside [-1, 1] unless clipped
    assert (wild <= 1) if m.clip_x0 else (wild > 1)


def test_model_dtype():
    assert model_dtype("auto", "cpu") == torch.float32
    assert model_dtype("auto", torch.device("cuda", 0)) == torch.float16
    assert model_dtype("float16", "cpu") == torch.float16 and model_dtype("bfloat16", "cuda") == torch.bfloat16
    assert model_dtype("float32", "cuda") == torch.float32


@pytest.mark.parametrize("kind", KINDS)
def test_load_backend_missing_path_is_one_line(tmp_path, kind):
    missing = tmp_path / "no-such-model"
    with pytest.raises(DiffxaiError, match=str(missing)) as err:
        load_backend(kind, str(missing))
    assert "\n" not in str(err.value) and "does not exist" in str(err.value)
    with pytest.raises(DiffxaiError, match="not-a-hub-id") as err:
        load_backend(kind, "not-a-hub-id/with/slashes")
    assert "\n" not in str(err.value)


def test_load_backend_checks_the_channels(tmp_path):
    path = build_tiny_pixel_ddpm(tmp_path / "px", 8, 1)
    with pytest.raises(DiffxaiError, match="1-channel images but config.data.channels is 3") as err:
        load_backend("pixel", str(path), channels=3)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
