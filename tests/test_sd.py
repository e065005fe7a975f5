"""Stable Diffusion (:mod:`diffxai.models.sd`, sampled by :func:`diffxai.sampling.loop.sample`) on a
tiny pipeline built offline (tests/tiny_sd.py)."""

from __future__ import annotations

import dataclasses
import os
import shutil

import pytest
import torch

from diffxai.core.errors import DiffxaiError
from diffxai.core.seeding import make_generator
from diffxai.models.loading import load_backend
from diffxai.models.schedulers import make_scheduler
from diffxai.models.sd import SDModel
from diffxai.sampling.loop import sample
from diffxai.sampling.noising import seeded_noise
from tiny_sd import build_tiny_sd

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = ["a photo of a cat", "an image of a church", "a fish"]


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> None:
    """Equal up to float32 round-off, relative to the tensors' scale (the untrained tiny U-Net's
    x̂0 reaches ~50, so batch-size-dependent kernels differ by ~1e-6 relative)."""
    scale = max(1.0, float(b.abs().max()))
    torch.testing.assert_close(a, b, rtol=rel, atol=rel * scale)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


@pytest.fixture(scope="module")
def sd(tiny_sd_dir) -> SDModel:
    return load_backend("stable_diffusion", str(tiny_sd_dir), "cpu")


def initial_latents(sd, keys, seed=3) -> torch.Tensor:
    """``(B, 4, h, w)``: sample k's initial latent from ``make_generator(seed, "test", k)``."""
    return seeded_noise(sd.sample_shape(), [make_generator(seed, "test", k) for k in keys])


def generate(sd, prompts=PROMPTS, keys=(0, 1, 2), seed=3, **kw):
    """Text-to-image sampling of ``prompts`` (DPM-Solver++, 4 steps, w = 7.5 unless given), each
    sample seeded by its key: initial latent and DDPM step noise from per-key generators."""
    kw = {"n_steps": 4, "guidance": 7.5, "scheduler": "dpmsolver++", "decode": True, **kw}
    gens = [make_generator(seed, "test", "step-noise", k) for k in keys]
    return sample(sd, initial_latents(sd, keys, seed), cond=sd.encode(list(prompts)), step_generators=gens, **kw)


def test_load_and_shapes(sd, tiny_sd_dir):
    assert (tiny_sd_dir / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert sd.latent_shape(16, 16) == (4, 8, 8) and sd.sample_shape() == (4, 8, 8)
    assert sd.num_train_timesteps == 1000 and sd.alphas_cumprod.dtype == torch.float64
    assert sd.alphas_cumprod.shape == (1000,) and sd.device.type == "cpu"
    assert all(not p.requires_grad for p in sd.unet.parameters())
    emb = sd.encode_prompts(["a photo of a cat", ""])
    assert emb.shape == (2, sd.tokenizer.model_max_length, sd.text_encoder.config.hidden_size)
    # the null prompt differs from a real one, and the tokenizer knows the words as whole tokens
    assert not torch.allclose(emb[0], emb[1])
    toks = sd.tokenizer.convert_ids_to_tokens(sd.tokenize(["a photo of a cat"])[0, :6].tolist())
    assert toks == ["<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>"]
    with pytest.raises(DiffxaiError, match="height/width"):
        sd.latent_shape(15, 16)


def test_vae_roundtrip_shapes(sd):
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    z = sd.encode_images(x)
    assert z.shape == (2, 4, 8, 8) and torch.equal(sd.to_model_space(x), z)
    img = sd.decode(z)
    assert img.shape == (2, 3, 16, 16) and img.min() >= -1 and img.max() <= 1
    # the scaling factor is applied on both paths
    raw = sd.vae.encode(x).latent_dist.mean
    close(z, raw * sd.vae.config.scaling_factor)


def test_eps_guided_matches_two_forwards(sd):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([900, 500, 20])
    cond = sd.encode_prompts(PROMPTS)
    negative = sd.encode_prompts(["a dog"])
    with torch.no_grad():
        e_c = sd.unet(x, t, encoder_hidden_states=cond).sample
        e_u = sd.unet(x, t, encoder_hidden_states=sd.encode_prompts([""]).expand(3, -1, -1)).sample
        e_n = sd.unet(x, t, encoder_hidden_states=negative.expand(3, -1, -1)).sample
        close(sd.eps_guided(x, t, cond, 7.5), e_u + 7.5 * (e_c - e_u))
        close(sd.eps_guided(x, t, cond, 7.5, negative), e_n + 7.5 * (e_c - e_n))  # a negative prompt
        close(sd.eps_guided(x, 500, cond, 1.0), sd.eps(x, 500, cond))


def test_sample_deterministic_and_seeded(sd):
    a = generate(sd, record=True, record_eps=True)
    b = generate(sd, record=True, record_eps=True)
    for k in ("sample", "images", "x_t", "x0_pred", "eps", "timesteps"):
        assert torch.equal(a[k], b[k]), k
    c = generate(sd, seed=4)
    assert not torch.allclose(a["sample"], c["sample"])
    assert a["images"].shape == (3, 3, 16, 16) and a["sample"].shape == (3, 4, 8, 8)
    assert a["x_t"].shape == a["x0_pred"].shape == a["eps"].shape == (3, 4, 4, 8, 8)
    # step 0 is the noisiest; the recorded x̂0 is the one implied by the recorded ε (latents: no clipping)
    ts = a["timesteps"]
    assert ts.shape == (4,) and torch.all(ts[1:] < ts[:-1])
    abar = sd.alphas_cumprod[ts].float().view(1, -1, 1, 1, 1)
    close(a["x0_pred"], (a["x_t"] - (1 - abar).sqrt() * a["eps"]) / abar.sqrt())
    assert a["x0_pred"].abs().max() > 1
    # DPM-Solver++ starts from the initial latents as given (init_noise_sigma = 1)
    assert torch.equal(a["x_t"][:, 0], initial_latents(sd, [0, 1, 2]))
    # the images are the VAE decoding of the final latents
    with torch.no_grad():
        close(a["images"], sd.decode(a["sample"]))


def test_matches_diffusers_pipeline(sd):
    """DPM-Solver++ sampling equals diffusers' own StableDiffusionPipeline on the same latents."""
    from diffusers import StableDiffusionPipeline

    ours = generate(sd, prompts=PROMPTS[:2], keys=[0, 1], n_steps=5)
    pipe = StableDiffusionPipeline(
        vae=sd.vae,
        text_encoder=sd.text_encoder,
        tokenizer=sd.tokenizer,
        unet=sd.unet,
        scheduler=make_scheduler("dpmsolver++", sd.scheduler.config, clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    z0 = initial_latents(sd, [0, 1])
    ref = pipe(
        PROMPTS[:2], num_inference_steps=5, guidance_scale=7.5, latents=z0, height=16, width=16, output_type="latent"
    ).images
    close(ours["sample"], ref)


def test_ddim_matches_diffusers_step(sd):
    """Our DDIM (η=0) update equals DDIMScheduler.step on its own (leading) schedule."""
    from diffusers import DDIMScheduler

    model = dataclasses.replace(
        sd, scheduler=DDIMScheduler.from_config(sd.scheduler.config, timestep_spacing="leading")
    )
    ours = generate(model, scheduler="ddim", n_steps=5, record=True)
    sch = DDIMScheduler.from_config(model.scheduler.config, clip_sample=False)
    sch.set_timesteps(5)
    assert ours["timesteps"].tolist() == sch.timesteps.tolist()
    x = ours["x_t"][:, 0]
    cond = model.encode_prompts(PROMPTS)
    with torch.no_grad():
        for t in sch.timesteps:
            x = sch.step(model.eps_guided(x, int(t), cond, 7.5), t, x, eta=0.0).prev_sample
    close(ours["sample"], x)


@pytest.mark.parametrize("scheduler", ["dpmsolver++", "ddim", "ddpm"])
def test_custom_timesteps(sd, scheduler):
    ts = [999, 893, 500, 143, 74]
    one = {"prompts": PROMPTS[:1], "keys": [0], "scheduler": scheduler}
    r = generate(sd, timesteps=ts, n_steps=None, record=True, **one)
    assert r["timesteps"].tolist() == ts
    assert r["x_t"].shape[1] == len(ts)
    default = generate(sd, n_steps=5, **one)
    assert not torch.allclose(r["sample"], default["sample"])
    with pytest.raises(DiffxaiError, match="timesteps"):
        generate(sd, timesteps=[10, 500], n_steps=None, **one)
    with pytest.raises(DiffxaiError, match="timesteps"):
        generate(sd, timesteps=[1000, 10], n_steps=None, **one)


def test_sample_bad_inputs(sd):
    with pytest.raises(ValueError, match="3 conditions for 1 samples"):
        sample(sd, initial_latents(sd, [0]), n_steps=3, cond=sd.encode(PROMPTS))
    with pytest.raises(DiffxaiError, match="scheduler"):
        generate(sd, scheduler="euler")
    with pytest.raises(DiffxaiError, match="n_steps"):
        generate(sd, n_steps=3, timesteps=[900, 500])


@pytest.mark.parametrize("part", ["unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"])
def test_load_corrupt_checkpoint(tiny_sd_dir, tmp_path, part):
    broken = shutil.copytree(tiny_sd_dir, tmp_path / "broken")
    f = broken / part
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(DiffxaiError, match=part.split("/")[0]) as err:
        load_backend("stable_diffusion", str(broken))
    assert str(broken) in str(err.value) and "\n" not in str(err.value)


def test_load_missing_component(tiny_sd_dir, tmp_path):
    broken = shutil.copytree(tiny_sd_dir, tmp_path / "novae")
    shutil.rmtree(broken / "vae")
    with pytest.raises(DiffxaiError, match="vae"):
        load_backend("stable_diffusion", str(broken))
