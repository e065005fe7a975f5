"""Unit tests of the foundation library (no Snakemake)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from diffxai.core.batching import map_batches
from diffxai.core.errors import DiffxaiError
from diffxai.core.seeding import derive_seed, make_generator
from diffxai.core.timesteps import level_timesteps, uniform_timesteps
from diffxai.io.arrays import load_arrays, save_arrays
from diffxai.io.images import load_digits_split, load_folder, load_image, stroke_mask
from diffxai.io.specs import SPECS
from diffxai.io.tables import read_metadata, write_parquet
from diffxai.metrics.curves import critical_interval, critical_intervals
from diffxai.models.classifiers import DemoCNN, load_classifier
from diffxai.models.loading import load_backend
from diffxai.sampling.noising import forward_noise, linear_alphas_cumprod, predict_x0
from diffxai.sampling.trajectories import forward_trajectories, reverse_trajectories
from diffxai.stages.likelihood import likelihood_frame
from helpers import (
    build_tiny_pixel_ddpm,
    build_tiny_resnet_state_dict,
    write_image_folder,
)


def test_forward_noise_equals_closed_form_and_diffusers():
    from diffusers import DDPMScheduler

    abar = linear_alphas_cumprod(1000, 1e-4, 0.02)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 3, 8, 8, generator=g) * 2 - 1
    eps = torch.randn(6, 3, 8, 8, generator=g)
    t = torch.tensor([0, 1, 10, 500, 998, 999])
    xt = forward_noise(x0, eps, t, abar)
    a = abar[t].float().view(-1, 1, 1, 1)
    torch.testing.assert_close(xt, a.sqrt() * x0 + (1 - a).sqrt() * eps)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    torch.testing.assert_close(xt, sched.add_noise(x0, eps, t), rtol=1e-5, atol=1e-5)
    # the denoiser's estimate with the true noise recovers x0
    torch.testing.assert_close(predict_x0(xt, eps, t, abar), x0.clamp(-1, 1), rtol=1e-3, atol=2e-3)


def test_level_timesteps_order_and_poster_levels():
    ts = level_timesteps(1000, 100)
    assert ts[0] == 999 and ts[-1] == 0 and len(ts) == 100
    assert np.all(np.diff(ts) < 0), "step 0 is the noisiest: timesteps strictly decrease with step"
    assert list(level_timesteps(1000, 5)) == [999, 749, 500, 250, 0]
    with pytest.raises(DiffxaiError, match="n_levels"):
        level_timesteps(1000, 1)


def test_uniform_timesteps_matches_diffusers_leading_spacing():
    from diffusers import DDIMScheduler

    s = DDIMScheduler(num_train_timesteps=1000)
    s.set_timesteps(25)
    assert list(uniform_timesteps(1000, 25)) == s.timesteps.tolist()


def test_critical_interval_on_synthetic_curves():
    steps = np.arange(40)
    curve = 1 / (1 + np.exp(-(steps - 22) / 1.5))
    iv = critical_interval(curve, window=4)
    assert iv["step_start"] <= 22 <= iv["step_end"]
    assert iv["step_end"] - iv["step_start"] == 4
    assert iv["step_half"] == 22
    assert iv["max_slope"] == pytest.approx((curve[iv["step_end"]] - curve[iv["step_start"]]) / 4)
    assert iv["final_prob"] == pytest.approx(curve[-1])
    flat = critical_interval(np.full(10, 0.1), window=3)
    assert flat["step_half"] == -1 and flat["max_slope"] == pytest.approx(0)
    # two rises: the steeper one wins
    two = np.concatenate([np.linspace(0, 0.3, 10), np.full(5, 0.3), np.linspace(0.3, 1.0, 4), np.ones(5)])
    assert critical_interval(two, 2)["step_start"] >= 14


def test_likelihood_frame_and_intervals():
    n, k, s, c = 2, 3, 4, 5
    logits = torch.randn(n, k, s, c, generator=torch.Generator().manual_seed(0))
    df = likelihood_frame(logits, "a", 2, ["i0", "i1"], np.array([999, 600, 300, 0]), "x_t")
    assert list(df.columns) == SPECS["likelihood"].names and len(df) == n * k * s
    p = torch.softmax(logits.double(), -1)
    np.testing.assert_allclose(df["prob"], p[..., 2].reshape(-1).numpy())
    row = df[(df.image_id == "i1") & (df.draw == 2) & (df.step == 3)].iloc[0]
    assert row.timestep == 0 and row.top1_index == int(p[1, 2, 3].argmax())
    assert (df["entropy"] >= 0).all() and (df["entropy"] <= np.log(c) + 1e-9).all()
    iv = critical_intervals(df, 2)
    assert len(iv) == 1 and iv.iloc[0]["view"] == "x_t"


def test_seeding_is_keyed_and_stable():
    assert derive_seed(0, "a", 1) == derive_seed(0, "a", 1)
    assert derive_seed(0, "a", 1) != derive_seed(0, "a", 2) != derive_seed(1, "a", 1)
    a = torch.randn(3, generator=make_generator(0, "x", "cls", "img", 0))
    b = torch.randn(3, generator=make_generator(0, "x", "cls", "img", 0))
    assert torch.equal(a, b)


def test_map_batches_equals_one_call():
    x = torch.randn(37, 4)
    w = torch.randn(4, 3)
    out = map_batches(lambda xb: xb @ w, x, batch_size=5)
    torch.testing.assert_close(out, x @ w)
    a, b = map_batches(lambda xb: (xb.sum(1), xb.max(1).values), x, batch_size=8)
    torch.testing.assert_close(a, x.sum(1))


def test_digits_split_range_and_mask():
    x, y, xt, yt = load_digits_split(16)
    assert x.shape[1:] == (1, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert len(x) + len(xt) == 1797 and set(yt.tolist()) == set(range(10))
    m = stroke_mask(xt[:4])
    assert m.shape == (4, 16, 16) and 0.05 < m.float().mean() < 0.8


def test_image_modes_are_converted(tmp_path):
    root = write_image_folder(tmp_path, ["a", "b", "c"], n=2)
    for name in ["a", "b", "c"]:
        x, ids = load_folder(root / name, 2, 24, 3)
        assert x.shape == (2, 3, 24, 24) and x.min() >= -1 and x.max() <= 1
    # EXIF orientation 6 (rotate 90° clockwise for display) is applied before anything else
    from PIL import Image

    arr = np.zeros((20, 20, 3), np.uint8)
    arr[:, :5] = 255  # white stripe on the left edge
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "rot.jpg", exif=exif, quality=100)
    x = load_image(tmp_path / "rot.jpg", 10, 3)
    assert x[:, :3, :].mean() > 0.5 and x[:, -3:, :].mean() < -0.5  # stripe moved to the top


def test_sixteen_bit_and_transparent_images_keep_their_values(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(tmp_path / "mid16.png")  # half of 65535
    assert abs(load_image(tmp_path / "mid16.png", 8, 1).mean().item()) < 0.01
    Image.fromarray(np.full((8, 8), 4096, np.uint16)).save(tmp_path / "dark16.png")  # dark stays dark
    assert load_image(tmp_path / "dark16.png", 8, 1).mean().item() < -0.8
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 17  # hidden colour under a fully transparent left half
    rgba[:, 4:, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "half.png")
    x = load_image(tmp_path / "half.png", 8, 3)
    assert torch.allclose(x[:, :, :3], torch.ones(1)) and x[:, :, 5:].max() < -0.8


def test_bad_images_name_the_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DiffxaiError, match="no images"):
        load_folder(tmp_path / "empty", 1, 8)
    with pytest.raises(DiffxaiError, match="does not exist"):
        load_folder(tmp_path / "missing", 1, 8)
    d = tmp_path / "bad"
    d.mkdir()
    (d / "x.png").write_bytes(b"not an image")
    with pytest.raises(DiffxaiError, match="x.png"):
        load_folder(d, 1, 8)
    (d / "x.png").write_bytes(b"")
    with pytest.raises(DiffxaiError, match="empty"):
        load_folder(d, 1, 8)


def test_load_tiny_diffusers_checkpoint_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = build_tiny_pixel_ddpm(tmp_path / "ddpm", image_size=16, channels=3)
    dm = load_backend("pixel", str(path))
    assert not dm.conditional and dm.num_train_timesteps == 1000 and dm.kind == "pixel"
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([10, 900])
    from diffusers import UNet2DModel

    ref = UNet2DModel.from_pretrained(path, subfolder="unet").eval()
    with torch.no_grad():
        torch.testing.assert_close(dm.eps(x, t, None), ref(x, t).sample)
    with pytest.raises(DiffxaiError, match="does not exist"):
        load_backend("pixel", str(tmp_path / "nope"))
    (tmp_path / "broken" / "unet").mkdir(parents=True)
    with pytest.raises(DiffxaiError, match="broken"):
        load_backend("pixel", str(tmp_path / "broken"))


def test_load_torchvision_classifier_from_state_dict(tmp_path):
    import torchvision

    p = build_tiny_resnet_state_dict(tmp_path / "r18.safetensors", num_classes=300)
    imagenet = {"resize": 256, "crop": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    spec = {"source": "state_dict", "arch": "resnet18", "path": str(p), "num_classes": 300, "preprocess": imagenet}
    clf = load_classifier(spec)
    ref = torchvision.models.resnet18(weights=None, num_classes=300)
    from safetensors.torch import load_file

    ref.load_state_dict(load_file(str(p)))
    ref.eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        # Classifier applies its preprocess (here Resize(256) + CenterCrop(224) + ImageNet mean/std) itself
        from torchvision.transforms.v2 import functional as TF

        xi = TF.center_crop(TF.resize((x + 1) / 2, [256], antialias=True), [224, 224])
        xi = TF.normalize(xi, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        torch.testing.assert_close(clf(x), ref(xi), rtol=1e-4, atol=1e-4)
    # a .pt state dict is read with weights_only=True
    torch.save(ref.state_dict(), tmp_path / "r18.pt")
    clf2 = load_classifier({**spec, "path": str(tmp_path / "r18.pt")})
    with torch.no_grad():
        torch.testing.assert_close(clf2(x), clf(x))
    # wrong architecture: one-line error naming the file
    with pytest.raises(DiffxaiError, match="r18.safetensors"):
        load_classifier({**spec, "arch": "resnet34"})


def _tiny_conditional(tmp_path):
    return load_backend("pixel", str(build_tiny_pixel_ddpm(tmp_path / "c", image_size=8, channels=1, n_classes=10)))


def test_forward_trajectories_shapes_and_shared_noise(tmp_path):
    dm = _tiny_conditional(tmp_path)
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1
    ts = level_timesteps(1000, 4)
    out = forward_trajectories(dm, x0, ["a", "b"], ts, 3, seed=0, class_name="c", batch_size=5)
    assert out["x_t"].shape == (2, 3, 4, 1, 8, 8) == out["x0_pred"].shape
    # the cleanest level (t=0) is almost the image; one ε per (image, draw) shared by all levels
    torch.testing.assert_close(out["x_t"][:, :, -1], x0[:, None].expand(2, 3, 1, 8, 8), atol=0.03, rtol=0)
    abar = dm.alphas_cumprod
    eps = (out["x_t"][0, 1, 1] - abar[ts[1]].sqrt() * x0[0]) / (1 - abar[ts[1]]).sqrt()
    eps2 = (out["x_t"][0, 1, 2] - abar[ts[2]].sqrt() * x0[0]) / (1 - abar[ts[2]]).sqrt()
    torch.testing.assert_close(eps.float(), eps2.float(), atol=1e-4, rtol=1e-4)
    again = forward_trajectories(dm, x0, ["a", "b"], ts, 3, seed=0, class_name="c", batch_size=7)
    torch.testing.assert_close(again["x0_pred"], out["x0_pred"], rtol=1e-5, atol=1e-5)


def test_reverse_trajectories_conditional_and_sdedit(tmp_path):
    dm = _tiny_conditional(tmp_path)
    out, ids = reverse_trajectories(dm, 2, 2, 6, (1, 8, 8), seed=0, class_name="c", label=3, guidance=2.0)
    assert out["x_t"].shape == (2, 2, 6, 1, 8, 8) and ids == ["sample-0", "sample-1"]
    assert out["timesteps"][0] == 999 and out["timesteps"][-1] == 0
    unc = load_backend("pixel", str(build_tiny_pixel_ddpm(tmp_path / "u", image_size=8, channels=3)))
    x0 = torch.rand(1, 3, 8, 8) * 2 - 1
    out, ids = reverse_trajectories(
        unc,
        1,
        2,
        4,
        (3, 8, 8),
        seed=0,
        class_name="c",
        label=None,
        guidance=1.0,
        x0=x0,
        image_ids=["p"],
        sdedit_strength=0.5,
    )
    assert out["timesteps"][0] == 500 and out["x_t"].shape == (1, 2, 4, 3, 8, 8)


def test_tables_carry_provenance_and_arrays_roundtrip(tmp_path):
    from diffxai.io.tables import provenance

    cfg = {"experiment": "e", "seed": 3}
    write_parquet(pd.DataFrame({"a": [1, 2]}), tmp_path / "t.parquet", provenance(cfg, "cpu"))
    md = read_metadata(tmp_path / "t.parquet")
    for key in ["config_hash", "version", "source_hash", "torch", "diffusers", "captum", "device", "seed"]:
        assert f"diffxai.{key}" in md
    assert md["diffxai.seed"] == "3"
    save_arrays(tmp_path / "a.safetensors", {"x": torch.arange(6).view(2, 3)}, {"ids": ["a", "b"]})
    arrays, meta = load_arrays(tmp_path / "a.safetensors")
    assert torch.equal(arrays["x"], torch.arange(6).view(2, 3)) and meta["ids"] == ["a", "b"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_demo_cnn_shapes():
    assert DemoCNN(10, 1, 8)(torch.zeros(3, 1, 16, 16)).shape == (3, 10)


def test_map_batches_halves_the_batch_on_out_of_memory(caplog):
    x = torch.arange(40.0).view(20, 2)
    calls = []

    def fn(xb):
        calls.append(len(xb))
        if len(xb) > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB (injected)")
        return xb * 2

    with caplog.at_level("WARNING"):
        out = map_batches(fn, x, batch_size=16)
    torch.testing.assert_close(out, x * 2)
    assert calls[:3] == [16, 8, 4] and max(calls[3:]) == 4
    assert "halving the batch size to 8" in caplog.text and "halving the batch size to 4" in caplog.text
    with pytest.raises(ValueError, match="boom"):
        map_batches(lambda xb: (_ for _ in ()).throw(ValueError("boom")), x, batch_size=4)


def test_nan_from_a_model_is_a_one_line_error():
    from diffxai.core.errors import require_finite

    require_finite(torch.zeros(3, 2), "m", "logits")
    bad = torch.zeros(4, 2)
    bad[1, 0] = float("nan")
    bad[3, 1] = float("inf")
    with pytest.raises(DiffxaiError, match=r"^classifier x: produced NaN/Inf logits for 2 of 4 inputs$"):
        require_finite(bad, "classifier x", "logits")
