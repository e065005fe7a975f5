"""DF-RISE / DF-CAM: known answers on a toy denoiser, hooks, determinism, bad input, SD, end to end."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch
import torch.nn as nn

from diffxai.core.errors import DiffxaiError
from diffxai.core.imageops import ssim
from diffxai.methods.saliency import Denoiser, deletion_insertion, df_cam, df_rise, generate_masks, pixel_denoiser, resolve_layers, unet_layers

torch.set_num_threads(1)
H = W = 16
ROWS, COLS = slice(4, 8), slice(9, 13)  # the region the toy reads (16 of 256 positions)


class Reader(nn.Module):
    """The only layer that sees the input: x² inside the region, 0 elsewhere."""

    def __init__(self, region: torch.Tensor):
        super().__init__()
        self.register_buffer("region", region)

    def forward(self, x):
        return (x * self.region) ** 2


class RegionToy(nn.Module):
    """ε̂(x) = P1 + s(x)·P2 with s = mean of x² over one region.

    The output depends on the input only through the region. P1, P2 are locally orthogonal
    stripe patterns, so the local SSIM structure between two outputs is the same at every
    position (DF-RISE compares outputs position by position).
    """

    def __init__(self):
        super().__init__()
        region = torch.zeros(1, 1, H, W)
        region[..., ROWS, COLS] = 1
        self.reader = Reader(region)
        i = torch.arange(H)[:, None].expand(H, W)
        j = torch.arange(W)[None, :].expand(H, W)
        self.register_buffer("p1", ((-1.0) ** i)[None].clone())
        self.register_buffer("p2", ((-1.0) ** j + 1)[None].clone())

    def forward(self, x):
        s = self.reader(x).sum((1, 2, 3)) / self.reader.region.sum()
        return self.p1 + s[:, None, None, None] * self.p2


def toy_denoiser() -> tuple[Denoiser, torch.Tensor]:
    toy = RegionToy().eval().requires_grad_(False)
    den = Denoiser(toy, lambda x: toy(x), 1, 1.0, t=500, alpha_bar=0.5, alpha_bar_next=0.6, clip_x0=False)
    return den, toy.reader.region[0, 0]


def x_input(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, H, W, generator=torch.Generator().manual_seed(seed))


def precision_at_region(m: torch.Tensor, region: torch.Tensor) -> float:
    """Share of the |R| most salient positions that lie in the region (chance: |R| / H·W)."""
    k = int(region.sum())
    return float(region.flatten()[m.flatten().topk(k).indices].mean())


@pytest.fixture(scope="module")
def small_unet():
    from diffusers import DDPMScheduler

    from diffxai.models.demo import build_demo_unet
    from diffxai.models.pixel import DiffusionModel

    torch.manual_seed(0)
    unet = build_demo_unet(8, 1, 10, (8, 16)).eval().requires_grad_(False)
    return DiffusionModel(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000), null_label=10)


# ------------------------------------------------------------------------------ known answers


def test_dfcam_finds_the_region_the_toy_reads():
    den, region = toy_denoiser()
    for seed in range(3):
        res = df_cam(den, x_input(seed)[None], layers=["reader"])
        m = res.map[0]
        assert res.layer_maps.shape == (1, 1, H, W)
        assert float((m * region).sum() / m.sum()) > 0.99
        assert precision_at_region(m, region) == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dfrise_paper_estimator_finds_the_region_with_grid_masks(seed):
    den, region = toy_denoiser()
    res = df_rise(den, x_input(seed), generator=torch.Generator().manual_seed(seed), n_masks=2000, mask="grid",
                  grid_size=4, batch_size=500)  # fmt: skip
    m = res.map
    assert m.shape == (H, W) and 0 <= float(m.min()) and float(m.max()) == pytest.approx(1.0)
    assert float(m[region > 0].mean() - m[region == 0].mean()) > 0.2
    assert precision_at_region(m, region) >= 0.5  # chance 0.0625


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dfrise_contrast_estimator_finds_the_region_with_pixel_masks(seed):
    den, region = toy_denoiser()
    res = df_rise(den, x_input(seed), generator=torch.Generator().manual_seed(seed), n_masks=500, batch_size=100,
                  estimator="contrast")  # fmt: skip
    assert float(res.map[region > 0].mean() - res.map[region == 0].mean()) > 0.1
    assert precision_at_region(res.map, region) >= 0.3


def test_deletion_insertion_rank_the_true_region_above_a_random_map():
    den, region = toy_denoiser()
    x = x_input(0)
    truth = region * (x[0] ** 2)  # what the toy actually uses
    rnd = torch.rand(H, W, generator=torch.Generator().manual_seed(5))
    out = deletion_insertion(den, torch.stack([x, x]), torch.stack([truth, rnd]), n_points=17, target="eps")
    assert out["deletion_curve"].shape == (2, 17)
    assert out["deletion_auc"][0] < out["deletion_auc"][1] - 0.1
    assert out["insertion_auc"][0] > out["insertion_auc"][1] + 0.1
    # intact input scores 1 (SSIM with itself) at the start of deletion and the end of insertion
    assert out["deletion_curve"][:, 0] == pytest.approx(1.0, abs=1e-5)
    assert out["insertion_curve"][:, -1] == pytest.approx(1.0, abs=1e-5)


def test_structure_term_matches_a_direct_computation_and_has_no_nans():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 2, 12, 12, generator=g), torch.randn(1, 2, 12, 12, generator=g)
    s = ssim(a, b, window=15, padding="zero", separable=False, terms="structure", clamp_variance=True, dtype=torch.float32, reduction="map")
    assert s.shape == (1, 12, 12)
    # direct float64 computation at one interior position (the 15x15 window covers the image)
    r = torch.arange(15, dtype=torch.float64) - 7
    w1 = torch.exp(-(r**2) / (2 * 1.5**2))
    win = torch.outer(w1, w1) / w1.sum() ** 2
    y0, x0 = 6, 5
    vals = []
    for c in range(2):
        pa = torch.nn.functional.pad(a[0, c].double(), (7, 7, 7, 7))[y0 : y0 + 15, x0 : x0 + 15]
        pb = torch.nn.functional.pad(b[0, c].double(), (7, 7, 7, 7))[y0 : y0 + 15, x0 : x0 + 15]
        ma, mb = (win * pa).sum(), (win * pb).sum()
        va, vb = (win * pa * pa).sum() - ma**2, (win * pb * pb).sum() - mb**2
        cov = (win * pa * pb).sum() - ma * mb
        c3 = (0.03**2) / 2
        vals.append((cov + c3) / (va.sqrt() * vb.sqrt() + c3))
    assert float(s[0, y0, x0]) == pytest.approx(float(sum(vals) / 2), abs=1e-4)
    assert torch.allclose(ssim(a, a, window=15, padding="zero", separable=False, terms="structure", clamp_variance=True, dtype=torch.float32, reduction="map"), torch.ones(1, 12, 12), atol=1e-4)
    assert float(ssim(a, -a, window=15, padding="zero", separable=False, terms="structure", clamp_variance=True, dtype=torch.float32, reduction="map").mean()) < -0.99
    const = torch.full((1, 1, 8, 8), 0.3)
    assert torch.isfinite(ssim(const, const, window=15, padding="zero", separable=False, terms="structure", clamp_variance=True, dtype=torch.float32, reduction="map")).all()  # zero variance: no sqrt of negatives


def test_masks_pixel_and_grid():
    g = torch.Generator().manual_seed(0)
    m = generate_masks(400, (16, 16), 0.3, g)
    assert m.shape == (400, 1, 16, 16) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert float(m.mean()) == pytest.approx(0.3, abs=0.02)
    gm = generate_masks(400, (16, 12), 0.5, g, kind="grid", grid_size=4)
    assert gm.shape == (400, 1, 16, 12) and 0 <= float(gm.min()) and float(gm.max()) <= 1
    assert float(gm.mean()) == pytest.approx(0.5, abs=0.05)
    assert len(gm.unique()) > 2  # smooth (bilinear) masks


# ------------------------------------------------------------------------------ determinism, early stop


def test_dfrise_seeded_runs_are_identical_and_batch_size_free():
    den, _ = toy_denoiser()
    x = x_input(1)
    kw = dict(n_masks=96, p=0.5)
    a = df_rise(den, x, generator=torch.Generator().manual_seed(7), batch_size=32, **kw)
    b = df_rise(den, x, generator=torch.Generator().manual_seed(7), batch_size=32, **kw)
    c = df_rise(den, x, generator=torch.Generator().manual_seed(7), batch_size=96, **kw)
    d = df_rise(den, x, generator=torch.Generator().manual_seed(8), batch_size=32, **kw)
    assert torch.equal(a.map, b.map)
    assert torch.allclose(a.raw, c.raw, atol=1e-4)  # same mask stream in other batch sizes
    assert not torch.equal(a.map, d.map)


def test_dfrise_early_stop_records_masks_used():
    den, _ = toy_denoiser()
    x = x_input(2)
    full = df_rise(den, x, generator=torch.Generator().manual_seed(0), n_masks=1000, batch_size=50)
    assert full.n_masks_used == 1000
    early = df_rise(den, x, generator=torch.Generator().manual_seed(0), n_masks=1000, batch_size=50,
                    early_stop_tol=0.5, check_every=100)  # fmt: skip
    assert 100 <= early.n_masks_used < 1000 and early.n_masks_used % 50 == 0
    strict = df_rise(den, x, generator=torch.Generator().manual_seed(0), n_masks=300, batch_size=50,
                     early_stop_tol=1e-9, check_every=100)  # fmt: skip
    assert strict.n_masks_used == 300


def test_dfrise_next_reference_variant_runs():
    den, _ = toy_denoiser()
    x = x_input(3)
    nxt = den.next_step(x[None], den(x[None]))[0]
    res = df_rise(den, x, generator=torch.Generator().manual_seed(0), n_masks=64, batch_size=32, reference=nxt)
    base = df_rise(den, x, generator=torch.Generator().manual_seed(0), n_masks=64, batch_size=32)
    assert res.map.shape == (H, W) and not torch.equal(res.map, base.map)


# ------------------------------------------------------------------------------ real U-Nets, hooks


def _n_hooks(module: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(getattr(m, "_forward_pre_hooks", {}))
               for m in module.modules())  # fmt: skip


def test_pixel_denoiser_equals_eps_guided(small_unet):
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.full((3,), 400)
    for label, w in [(3, 2.0), (3, 1.0), (None, 2.0)]:
        den = pixel_denoiser(small_unet, 400, label, w)
        labels = None if label is None else torch.full((3,), label)
        assert torch.allclose(den(x), small_unet.eps_guided(x, t, labels, w), atol=1e-5)
        assert den.n_branches == (2 if label is not None and w != 1.0 else 1)


def test_dfcam_leaves_no_hooks_and_repeats_exactly(small_unet):
    den = pixel_denoiser(small_unet, 600, 3, 2.0, t_next=500)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    before = _n_hooks(small_unet.unet)
    a = df_cam(den, x)
    assert _n_hooks(small_unet.unet) == before == 0
    b = df_cam(den, x)
    assert torch.equal(a.map, b.map) and torch.equal(a.layer_maps, b.layer_maps)
    assert a.layers == unet_layers(small_unet.unet) and len(a.layers) >= 10
    assert a.map.shape == (2, 8, 8) and a.layer_maps.shape == (2, len(a.layers), 8, 8)
    assert float(a.map.max()) == pytest.approx(1.0) and float(a.map.min()) == 0.0
    # hooks are removed on errors too
    with pytest.raises(RuntimeError):
        df_cam(den, torch.randn(2, 3, 8, 8))  # wrong channel count fails inside the forward
    assert _n_hooks(small_unet.unet) == 0
    # the layer list is discovered from the model in forward order
    assert a.layers[0].startswith("down_blocks.0") and a.layers[-1].startswith("up_blocks.")


def test_dfcam_one_pass_equals_one_run_per_layer_and_per_sample(small_unet):
    den = pixel_denoiser(small_unet, 300, 7, 3.0)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    full = df_cam(den, x)
    for li, name in enumerate(full.layers):
        one = df_cam(den, x, layers=[name])
        assert torch.allclose(one.layer_maps[:, 0], full.layer_maps[:, li], atol=1e-5), name
    single = df_cam(den, x[1:])
    assert torch.allclose(single.layer_maps[0], full.layer_maps[1], atol=1e-5)


def test_dfcam_combines_cfg_branches(small_unet):
    """With guidance w the activations and gradients are A_u + w (A_c − A_u): w = 1 must equal the
    plain conditional branch, and a different w must change the maps."""
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    cond = df_cam(pixel_denoiser(small_unet, 500, 4, 1.0), x)
    two = pixel_denoiser(small_unet, 500, 4, 2.0)
    two.guidance = 1.0  # both branches run, combined with w = 1 -> the conditional branch
    assert torch.allclose(df_cam(two, x).layer_maps, cond.layer_maps, atol=1e-5)
    assert not torch.allclose(df_cam(pixel_denoiser(small_unet, 500, 4, 5.0), x).map, cond.map)


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(n_masks=0), r"n_masks: 0"),
        (dict(p=0.0), r"rise.p: 0.0 is outside \(0, 1\)"),
        (dict(p=1.0), r"rise.p: 1.0 is outside"),
        (dict(p=1.5), r"rise.p: 1.5 is outside"),
        (dict(mask="stars"), r"unknown mask kind 'stars'"),
        (dict(estimator="median"), r"unknown estimator 'median'"),
    ],
)
def test_dfrise_bad_arguments(kw, match):
    den, _ = toy_denoiser()
    args = dict(n_masks=8, p=0.5) | kw
    with pytest.raises(DiffxaiError, match=match) as exc:
        df_rise(den, x_input(), generator=torch.Generator().manual_seed(0), **args)
    assert "\n" not in str(exc.value)


def test_unknown_layer_is_a_one_line_error(small_unet):
    with pytest.raises(DiffxaiError, match=r"unknown layer 'down_blocks.9.resnets.0'") as exc:
        resolve_layers(small_unet.unet, ["down_blocks.0.resnets.0", "down_blocks.9.resnets.0"])
    assert "\n" not in str(exc.value)
    with pytest.raises(DiffxaiError, match="no U-Net blocks found"):
        resolve_layers(nn.Sequential(nn.Conv2d(1, 1, 1)))


def _config(**saliency):
    from conftest import TINY

    from diffxai.config.load import load_config, validate_config

    cfg = load_config(TINY)
    cfg.setdefault("saliency", {}).update(saliency)
    return validate_config(cfg, check_files=False)


@pytest.mark.parametrize(
    "saliency, match",
    [
        (dict(steps=[1, 4]), r"config.saliency.steps\[1\]: step 4 is outside the 4-step schedule \(0..3\)"),
        (dict(steps=[-1]), r"step -1 is outside"),
        (dict(classes=["digit_5"]), r"config.saliency.classes\[0\]: unknown class 'digit_5'"),
    ],
)
def test_bad_saliency_config(saliency, match):
    from diffxai.stages.saliency import check_saliency_config

    cfg = _config(**saliency)
    with pytest.raises(DiffxaiError, match=match):
        check_saliency_config(cfg)


@pytest.mark.parametrize(
    "rise, match",
    [
        (dict(n_masks=0), r"config.saliency.rise.n_masks: 0 is less than the minimum of 1"),
        (dict(p=1.5), r"config.saliency.rise.p: 1.5 is greater than or equal to the maximum of 1"),
        (dict(p=0), r"config.saliency.rise.p: 0 is less than or equal to the minimum of 0"),
    ],
)
def test_schema_rejects_bad_rise_settings(rise, match):
    from conftest import TINY

    from diffxai.config.load import load_config, validate_config

    cfg = load_config(TINY)
    cfg["saliency"] = copy.deepcopy(cfg.get("saliency", {}))
    cfg["saliency"].setdefault("rise", {}).update(rise)
    with pytest.raises(DiffxaiError, match=match) as exc:
        validate_config(cfg, check_files=False)
    assert "\n" not in str(exc.value)


# ------------------------------------------------------------------------------ Stable Diffusion


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from tiny_sd import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


def test_sd_denoiser_and_both_methods(tiny_sd):
    from diffxai.methods.saliency import sd_denoiser
    from diffxai.models.sd import load_sd

    model = load_sd(str(tiny_sd))
    with torch.no_grad():
        cond, unc = model.encode_prompts(["a red car"]), model.encode_prompts([""])
    den = sd_denoiser(model, 500, cond, unc, 7.5, t_next=450)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(den(x), model.eps_guided(x, 500, cond, unc, 7.5), atol=1e-5)
    cam = df_cam(den, x)
    layers = cam.layers
    assert any(".attentions." in n for n in layers) and any("upsamplers" in n for n in layers)
    assert cam.map.shape == (2, 8, 8) and torch.isfinite(cam.layer_maps).all()
    assert _n_hooks(model.unet) == 0
    rise = df_rise(den, x[0], generator=torch.Generator().manual_seed(0), n_masks=32, batch_size=16)
    assert rise.map.shape == (8, 8) and torch.isfinite(rise.map).all()


def test_sd_job_end_to_end(tiny_sd, tmp_path):
    """The stage driver on tiny SD: prompts, CFG, DPM-Solver++, maps and table."""
    from diffxai.config.load import validate_config
    from diffxai.io.arrays import load_arrays
    from diffxai.stages.saliency import compute_saliency

    cfg = validate_config({
        "experiment": "sd-tiny", "device": "cpu", "stages": ["saliency"],
        "models": {"diffusion": {"source": "pretrained", "type": "stable_diffusion", "id": str(tiny_sd)}},
        "classes": [{"name": "car", "index": 0, "prompt": "a red car"}],
        "saliency": {"n_samples": 2, "sampling_steps": 5, "steps": [1, 4], "guidance": 7.5,
                     "rise": {"n_masks": 16, "batch_size": 8}, "evaluation": {"n_points": 5}},
    })  # fmt: skip
    for method in ("dfrise", "dfcam"):
        maps, table = tmp_path / f"{method}.safetensors", tmp_path / f"{method}.parquet"
        compute_saliency(cfg, method, "car", None, str(maps), str(table))
        arr, meta = load_arrays(maps)
        assert arr["maps"].shape == (2, 2, 8, 8) and arr["display"].shape == (2, 2, 3, 16, 16)
        assert meta["prompt"] == "a red car" and meta["model_type"] == "stable_diffusion"
        df = pd.read_parquet(table)
        assert set(df["step"]) == {1, 4} and (df["prompt"] == "a red car").all()
        assert df.loc[df["layer"] == "all", "deletion_auc"].notna().all()


# ------------------------------------------------------------------------------ end to end (tiny DAG)

CONTRACT = ["class_name", "sample", "step", "timestep", "method", "layer", "entropy", "gini", "top10_mass",
            "deletion_auc", "insertion_auc"]  # fmt: skip


def test_tiny_run_saliency_outputs(tiny_run):
    from conftest import TINY

    from diffxai.config.load import load_config
    from diffxai.io.arrays import load_arrays
    from diffxai.io.tables import read_metadata

    cfg = load_config(TINY)["saliency"]
    path = tiny_run / "tables" / "saliency_stats.parquet"
    df = pd.read_parquet(path)
    assert list(df.columns[: len(CONTRACT)]) == CONTRACT
    assert {"random_deletion_auc", "random_insertion_auc", "n_masks_used"} <= set(df.columns)
    assert "diffxai.config_hash" in read_metadata(path)
    top = df[df["layer"] == "all"]
    assert set(top["method"]) == {"dfrise", "dfcam"}
    assert set(top["class_name"]) == set(cfg["classes"])
    assert sorted(top["step"].unique()) == cfg["steps"]
    assert len(top) == 2 * len(cfg["classes"]) * cfg["n_samples"] * len(cfg["steps"])
    assert top[["deletion_auc", "insertion_auc", "random_deletion_auc", "entropy"]].notna().all().all()
    assert (top.loc[top["method"] == "dfrise", "n_masks_used"] == cfg["rise"]["n_masks"]).all()
    cam_layers = df[(df["method"] == "dfcam") & (df["layer"] != "all")]["layer"].unique()
    assert len(cam_layers) >= 8
    # timesteps follow the sampler's schedule (step 0 = t 999)
    assert top.groupby("step")["timestep"].first().is_monotonic_decreasing
    arr, meta = load_arrays(tiny_run / "maps" / "saliency" / "dfcam" / f"{cfg['classes'][0]}.safetensors")
    n, k = cfg["n_samples"], len(cfg["steps"])
    assert arr["maps"].shape[:2] == (n, k) and arr["layer_maps"].shape[2] == len(meta["layers"]) == len(cam_layers)
    assert float(arr["maps"].max()) <= 1.0 and float(arr["maps"].min()) >= 0.0
    for name in ("saliency_overlays", "saliency_dfcam_layers", "saliency_auc"):
        assert (tiny_run / "plots" / f"{name}.png").stat().st_size > 1000


def test_random_baseline_is_shared_between_methods(tiny_run):
    df = pd.read_parquet(tiny_run / "tables" / "saliency_stats.parquet")
    top = df[df["layer"] == "all"].set_index(["class_name", "sample", "step", "method"]).sort_index()
    r = top["random_deletion_auc"].unstack("method")
    assert math.isclose(float((r["dfrise"] - r["dfcam"]).abs().max()), 0.0, abs_tol=1e-7)


def test_sd_job_rejects_unknown_layer_before_sampling(tiny_sd, tmp_path, monkeypatch):
    from diffxai.config.load import validate_config
    from diffxai.stages import saliency as pipeline_saliency

    cfg = validate_config({
        "experiment": "sd-tiny", "device": "cpu", "stages": ["saliency"],
        "models": {"diffusion": {"source": "pretrained", "type": "stable_diffusion", "id": str(tiny_sd)}},
        "classes": [{"name": "car", "index": 0}],
        "saliency": {"sampling_steps": 3, "steps": [1], "cam": {"layers": ["mid_block.resnets.0", "up_blocks.7"]}},
    })  # fmt: skip

    def no_sampling(*a, **k):
        raise AssertionError("sampled before validating the layers")

    monkeypatch.setattr("diffxai.sd.sd_sample", no_sampling)
    with pytest.raises(DiffxaiError, match=r"saliency.cam.layers: unknown layer 'up_blocks.7'") as exc:
        pipeline_saliency.compute_saliency(cfg, "dfcam", "car", None, str(tmp_path / "m.safetensors"), str(tmp_path / "t.parquet"))
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "t.parquet").exists()
