"""DF-RISE / DF-CAM: known answers on a toy denoiser, targets, hooks, determinism, bad input, the
stage's actions in process (pixel and tiny Stable Diffusion), and the tiny DAG (e2e)."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch
import torch.nn as nn

from diffxai.core.argchecks import EVAL_TARGETS
from diffxai.core.errors import DiffxaiError
from diffxai.methods.saliency import (
    TARGETS,
    CleanEstimate,
    Denoiser,
    NextState,
    NoisePrediction,
    deletion_insertion,
    df_cam,
    df_rise,
    fixed_step_denoiser,
    generate_masks,
    make_target,
    resolve_layers,
    structure_term,
    unet_layers,
)

torch.set_num_threads(1)
H = W = 16
ROWS, COLS = slice(4, 8), slice(9, 13)  # the region the toy reads (16 of 256 positions)
CONTRACT = [
    "class_name",
    "sample",
    "step",
    "timestep",
    "method",
    "layer",
    "entropy",
    "gini",
    "top10_mass",
    "deletion_auc",
    "insertion_auc",
]


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
    res = df_rise(
        den,
        x_input(seed),
        generator=torch.Generator().manual_seed(seed),
        n_masks=2000,
        mask="grid",
        grid_size=4,
        batch_size=500,
    )
    m = res.map
    assert m.shape == (H, W) and float(m.min()) >= 0 and float(m.max()) == pytest.approx(1.0)
    assert float(m[region > 0].mean() - m[region == 0].mean()) > 0.2
    assert precision_at_region(m, region) >= 0.5  # chance 0.0625


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dfrise_contrast_estimator_finds_the_region_with_pixel_masks(seed):
    den, region = toy_denoiser()
    res = df_rise(
        den,
        x_input(seed),
        generator=torch.Generator().manual_seed(seed),
        n_masks=500,
        batch_size=100,
        estimator="contrast",
    )
    assert float(res.map[region > 0].mean() - res.map[region == 0].mean()) > 0.1
    assert precision_at_region(res.map, region) >= 0.3


def test_deletion_insertion_rank_the_true_region_above_a_random_map():
    den, region = toy_denoiser()
    x = x_input(0)
    truth = region * (x[0] ** 2)  # what the toy actually uses
    rnd = torch.rand(H, W, generator=torch.Generator().manual_seed(5))
    out = deletion_insertion(den, torch.stack([x, x]), torch.stack([truth, rnd]), n_points=17, target=NoisePrediction())
    assert out["deletion_curve"].shape == (2, 17)
    assert out["deletion_auc"][0] < out["deletion_auc"][1] - 0.1
    assert out["insertion_auc"][0] > out["insertion_auc"][1] + 0.1
    # intact input scores 1 (SSIM with itself) at the start of deletion and the end of insertion
    assert out["deletion_curve"][:, 0] == pytest.approx(1.0, abs=1e-5)
    assert out["insertion_curve"][:, -1] == pytest.approx(1.0, abs=1e-5)


def test_structure_term_matches_a_direct_computation_and_has_no_nans():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 2, 12, 12, generator=g), torch.randn(1, 2, 12, 12, generator=g)
    s = structure_term(a, b)
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
    assert torch.allclose(structure_term(a, a), torch.ones(1, 12, 12), atol=1e-4)
    assert float(structure_term(a, -a).mean()) < -0.99
    const = torch.full((1, 1, 8, 8), 0.3)
    assert torch.isfinite(structure_term(const, const)).all()  # zero variance: no sqrt of negatives


def test_masks_pixel_and_grid():
    g = torch.Generator().manual_seed(0)
    m = generate_masks(400, (16, 16), 0.3, g)
    assert m.shape == (400, 1, 16, 16) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert float(m.mean()) == pytest.approx(0.3, abs=0.02)
    gm = generate_masks(400, (16, 12), 0.5, g, kind="grid", grid_size=4)
    assert gm.shape == (400, 1, 16, 12) and float(gm.min()) >= 0 and float(gm.max()) <= 1
    assert float(gm.mean()) == pytest.approx(0.5, abs=0.05)
    assert len(gm.unique()) > 2  # smooth (bilinear) masks


# ------------------------------------------------------------------------------ determinism, early stop


def test_dfrise_seeded_runs_are_identical_and_batch_size_free():
    den, _ = toy_denoiser()
    x = x_input(1)
    kw = {"n_masks": 96, "p": 0.5}
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
    early = df_rise(
        den,
        x,
        generator=torch.Generator().manual_seed(0),
        n_masks=1000,
        batch_size=50,
        early_stop_tol=0.5,
        check_every=100,
    )
    assert 100 <= early.n_masks_used < 1000 and early.n_masks_used % 50 == 0
    strict = df_rise(
        den,
        x,
        generator=torch.Generator().manual_seed(0),
        n_masks=300,
        batch_size=50,
        early_stop_tol=1e-9,
        check_every=100,
    )
    assert strict.n_masks_used == 300


def test_dfrise_next_reference_variant_runs():
    den, _ = toy_denoiser()
    x = x_input(3)
    nxt = den.next_step(x[None], den(x[None]))[0]
    res = df_rise(den, x, generator=torch.Generator().manual_seed(0), n_masks=64, batch_size=32, reference=nxt)
    base = df_rise(den, x, generator=torch.Generator().manual_seed(0), n_masks=64, batch_size=32)
    assert res.map.shape == (H, W) and not torch.equal(res.map, base.map)


# ------------------------------------------------------------------------------ targets


def test_targets_are_callables_on_the_denoiser():
    den, _ = toy_denoiser()
    x = x_input(4)[None]
    eps = den(x)
    assert torch.equal(NoisePrediction()(den, x), eps)
    assert torch.equal(CleanEstimate()(den, x), den.x0(x, eps))
    assert torch.equal(NextState()(den, x), den.next_step(x, eps))
    # by hand: x̂0 = (x − sqrt(1 − ᾱ) ε̂) / sqrt(ᾱ) with ᾱ = 0.5; next = sqrt(0.6) x̂0 + sqrt(0.4) ε̂
    x0 = (x - math.sqrt(0.5) * eps) / math.sqrt(0.5)
    assert torch.allclose(CleanEstimate()(den, x), x0, atol=1e-6)
    assert torch.allclose(NextState()(den, x), math.sqrt(0.6) * x0 + math.sqrt(0.4) * eps, atol=1e-6)
    last = Denoiser(den.module, den.branches, 1, 1.0, t=10, alpha_bar=0.9, alpha_bar_next=None, clip_x0=True)
    assert torch.equal(NextState()(last, x), CleanEstimate()(last, x))  # the last step returns x̂0
    assert float(CleanEstimate()(last, 100 * x).abs().max()) <= 1.0  # clipped for pixel models


def test_every_config_target_has_an_object():
    assert set(TARGETS) == set(EVAL_TARGETS)
    for name in EVAL_TARGETS:
        assert make_target(name).name == name
    with pytest.raises(DiffxaiError, match=r"saliency.evaluation.target: unknown target 'z0'") as exc:
        make_target("z0")
    assert "\n" not in str(exc.value)


def test_deletion_insertion_scores_any_callable_target():
    den, region = toy_denoiser()
    x = x_input(0)[None]
    m = (region * x[0, 0] ** 2)[None]
    calls = []

    def first_channel(d: Denoiser, xb: torch.Tensor) -> torch.Tensor:
        calls.append(xb.shape[0])
        return d(xb)[:, :1]  # the toy has one channel: the same as the noise prediction

    out = deletion_insertion(den, x, m, n_points=5, target=first_channel)
    ref = deletion_insertion(den, x, m, n_points=5, target=NoisePrediction())
    assert calls and torch.equal(out["deletion_curve"], ref["deletion_curve"])
    default = deletion_insertion(den, x, m, n_points=5)
    nxt = deletion_insertion(den, x, m, n_points=5, target=NextState())
    assert torch.equal(default["insertion_curve"], nxt["insertion_curve"])  # the default scores the next state
    with pytest.raises(DiffxaiError, match=r"saliency.evaluation.score: unknown score 'psnr'"):
        deletion_insertion(den, x, m, n_points=5, score="psnr")


# ------------------------------------------------------------------------------ real U-Nets, hooks


def _n_hooks(module: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._backward_hooks) + len(getattr(m, "_forward_pre_hooks", {}))
        for m in module.modules()
    )


def _den(model, t: int, label: int, w: float, t_next: int | None = None) -> Denoiser:
    return fixed_step_denoiser(model, t, model.encode([label]), w, t_next=t_next)


def test_fixed_step_denoiser_equals_eps_guided(small_unet):
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.full((3,), 400)
    for label, w in [(3, 2.0), (3, 1.0), (None, 2.0)]:
        cond = None if label is None else small_unet.encode([label])
        den = fixed_step_denoiser(small_unet, 400, cond, w, t_next=300)
        labels = None if label is None else small_unet.encode([label] * 3)
        assert torch.allclose(den(x), small_unet.eps_guided(x, t, labels, w), atol=1e-5)
        assert den.n_branches == (2 if label is not None and w != 1.0 else 1)
        assert den.clip_x0 and den.alpha_bar == float(small_unet.alphas_cumprod[400])
        assert den.alpha_bar_next == float(small_unet.alphas_cumprod[300])
    # an explicit null condition is the unconditional branch (here another class)
    other = fixed_step_denoiser(small_unet, 400, small_unet.encode([3]), 2.0, null=small_unet.encode([5]))
    e_c, e_u = small_unet.eps(x, t, small_unet.encode([3] * 3)), small_unet.eps(x, t, small_unet.encode([5] * 3))
    assert torch.allclose(other(x), e_u + 2.0 * (e_c - e_u), atol=1e-5)


def test_dfcam_leaves_no_hooks_and_repeats_exactly(small_unet):
    den = _den(small_unet, 600, 3, 2.0, t_next=500)
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
    den = _den(small_unet, 300, 7, 3.0)
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
    cond = df_cam(_den(small_unet, 500, 4, 1.0), x)
    two = _den(small_unet, 500, 4, 2.0)
    two.guidance = 1.0  # both branches run, combined with w = 1 -> the conditional branch
    assert torch.allclose(df_cam(two, x).layer_maps, cond.layer_maps, atol=1e-5)
    assert not torch.allclose(df_cam(_den(small_unet, 500, 4, 5.0), x).map, cond.map)


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"n_masks": 0}, r"n_masks: 0"),
        ({"p": 0.0}, r"rise.p: 0.0 is outside \(0, 1\)"),
        ({"p": 1.0}, r"rise.p: 1.0 is outside"),
        ({"p": 1.5}, r"rise.p: 1.5 is outside"),
        ({"mask": "stars"}, r"unknown mask kind 'stars'"),
        ({"estimator": "median"}, r"unknown estimator 'median'"),
    ],
)
def test_dfrise_bad_arguments(kw, match):
    den, _ = toy_denoiser()
    args = {"n_masks": 8, "p": 0.5} | kw
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
    from diffxai.config.checks import validate_config
    from diffxai.config.load import load_config

    cfg = load_config(TINY)
    cfg.setdefault("saliency", {}).update(saliency)
    return validate_config(cfg, check_files=False)


@pytest.mark.parametrize(
    "saliency, match",
    [
        ({"steps": [1, 4]}, r"config.saliency.steps\[1\]: step 4 is outside the 4-step schedule \(0..3\)"),
        ({"steps": [-1]}, r"step -1 is outside"),
        ({"classes": ["digit_5"]}, r"config.saliency.classes\[0\]: unknown class 'digit_5'"),
    ],
)
def test_bad_saliency_config(saliency, match):
    from diffxai.config.checks import check_saliency_config

    cfg = _config(**saliency)
    with pytest.raises(DiffxaiError, match=match):
        check_saliency_config(cfg)


@pytest.mark.parametrize(
    "rise, match",
    [
        ({"n_masks": 0}, r"config.saliency.rise.n_masks: 0 is less than the minimum of 1"),
        ({"p": 1.5}, r"config.saliency.rise.p: 1.5 is greater than or equal to the maximum of 1"),
        ({"p": 0}, r"config.saliency.rise.p: 0 is less than or equal to the minimum of 0"),
    ],
)
def test_schema_rejects_bad_rise_settings(rise, match):
    from conftest import TINY
    from diffxai.config.checks import validate_config
    from diffxai.config.load import load_config

    cfg = load_config(TINY)
    cfg["saliency"] = copy.deepcopy(cfg.get("saliency", {}))
    cfg["saliency"].setdefault("rise", {}).update(rise)
    with pytest.raises(DiffxaiError, match=match) as exc:
        validate_config(cfg, check_files=False)
    assert "\n" not in str(exc.value)


# ------------------------------------------------------------------------------ the stage's actions, in process


class Files(dict):
    """A rule's named inputs / outputs as an action reads them: ``files.name`` and ``files.get(name)``."""

    __getattr__ = dict.__getitem__


def _run(rule: str, cfg: dict, action, inputs, outputs, **wildcards) -> None:
    """Run ``action`` as ``run_job`` does (the rule's settings and batch sizes, tracked) and check
    that it read every one of them."""
    from diffxai.workflow.params import Tracked, merge, rule_execution, rule_params, unread

    settings = merge(rule_params(rule, cfg, wildcards), rule_execution(rule, cfg, wildcards).values)
    reads: set[str] = set()
    params = Tracked(settings, reads)
    params.get("threads")  # run_job reads them (and sets torch's threads)
    action(params, inputs, outputs)
    assert unread(settings, reads) == [], f"{rule} never read these settings"


@pytest.fixture(scope="module")
def pixel_config(tmp_path_factory):
    """The tiny config on a tiny class-conditional pixel DDPM (8x8, one channel) built by the test."""
    from conftest import TINY
    from diffxai.config.checks import validate_config
    from diffxai.config.load import load_config
    from helpers import build_tiny_pixel_ddpm

    ddpm = build_tiny_pixel_ddpm(tmp_path_factory.mktemp("ddpm") / "ddpm", image_size=8, channels=1, n_classes=10)
    cfg = load_config(TINY)
    cfg["models"]["diffusion"] = {"source": "pretrained", "id": str(ddpm)}
    cfg["saliency"]["classes"] = ["digit_7"]
    cfg["classes"][1]["label"] = 2  # the diffusion label differs from the classifier index
    return validate_config(cfg)


@pytest.fixture(scope="module")
def pixel_jobs(pixel_config, tmp_path_factory):
    """Both methods' jobs, the aggregate and the plots of the pixel config, run in process."""
    from diffxai.plots import saliency as plots
    from diffxai.stages import saliency

    out = tmp_path_factory.mktemp("pixel-saliency")
    jobs = {}
    for method in ("dfrise", "dfcam"):
        files = Files(maps=out / f"{method}.safetensors", table=out / f"{method}.parquet")
        _run("saliency_compute", pixel_config, saliency.compute, Files(), files, saliency=method, cls="digit_7")
        jobs[method] = files
    table = out / "saliency_stats.parquet"
    _run("saliency_aggregate", pixel_config, saliency.aggregate, [jobs[m].table for m in jobs], [table])
    plots_out = Files(overlays=out / "overlays.png", layers=out / "layers.png", auc=out / "auc.png")
    _run("saliency_plot", pixel_config, plots.plot, Files(table=table, maps=[jobs[m].maps for m in jobs]), plots_out)
    return jobs, table, plots_out


def test_pixel_jobs_write_maps_tables_and_plots(pixel_config, pixel_jobs):
    from diffxai.io.arrays import load_arrays
    from diffxai.io.tables import read_metadata

    jobs, table, plots_out = pixel_jobs
    s = pixel_config["saliency"]
    n, k = s["n_samples"], len(s["steps"])
    df = pd.read_parquet(table)
    assert list(df.columns[: len(CONTRACT)]) == CONTRACT and "diffxai.config_hash" in read_metadata(table)
    assert len(df) == len(pd.read_parquet(jobs["dfrise"].table)) + len(pd.read_parquet(jobs["dfcam"].table))
    top = df[df["layer"] == "all"]
    assert len(top) == 2 * n * k and set(top["class_name"]) == {"digit_7"}
    assert (top["model_type"] == "pixel").all() and top["prompt"].isna().all()
    assert (top["eval_target"] == "next").all() and (top["guidance"] == s["guidance"]).all()
    assert (top.loc[top["method"] == "dfrise", "n_masks_used"] == s["rise"]["n_masks"]).all()
    assert top[["deletion_auc", "insertion_auc", "random_deletion_auc", "entropy"]].notna().all().all()
    # the random baseline is the same map for both methods
    r = top.set_index(["sample", "step", "method"])["random_deletion_auc"].unstack("method")
    assert float((r["dfrise"] - r["dfcam"]).abs().max()) == 0.0
    arr, meta = load_arrays(jobs["dfcam"].maps)
    assert arr["maps"].shape == (n, k, 8, 8) and arr["display"].shape == (n, k, 1, 8, 8)
    cam_layers = df.loc[(df["method"] == "dfcam") & (df["layer"] != "all"), "layer"].unique()
    assert arr["layer_maps"].shape[2] == len(meta["layers"]) == len(cam_layers)
    assert meta["model_type"] == "pixel" and meta["prompt"] is None
    assert meta["all_timesteps"] == [999, 666, 333, 0] and arr["timesteps"].tolist() == [666, 0]
    for path in plots_out.values():
        assert path.stat().st_size > 1000


def test_pixel_job_explains_the_sampler_step(pixel_config):
    """The explained denoiser is the sampler's: its next state is the state the sampler produced,
    with the class's diffusion label (not the classifier index) and CFG."""
    from diffxai.methods.saliency import NextState
    from diffxai.stages.saliency import explained_states, load_model
    from diffxai.workflow.params import rule_params

    params = rule_params("saliency_compute", pixel_config, {"saliency": "dfrise", "cls": "digit_7"})
    assert params["cls"] == {"name": "digit_7", "label": 2}
    backend = load_model(params, Files(), torch.device("cpu"))
    ex = explained_states(params, backend)
    for j in range(len(ex.timesteps)):
        den = ex.denoiser(j)
        assert den.t == ex.timesteps[j] and den.n_branches == 2
        assert torch.allclose(NextState()(den, ex.x_t[:, j]), ex.next[:, j], atol=1e-5)
    assert torch.equal(ex.display, ex.display.clamp(-1, 1)) and torch.equal(ex.final, ex.next[:, -1])


def test_params_hold_only_what_the_job_reads(pixel_config, tiny_sd):
    from diffxai.workflow.params import rule_params

    rise = rule_params("saliency_compute", pixel_config, {"saliency": "dfrise", "cls": "digit_7"})["saliency"]
    cam = rule_params("saliency_compute", pixel_config, {"saliency": "dfcam", "cls": "digit_7"})["saliency"]
    assert "rise" in rise and "cam" not in rise and "per_layer" not in rise["evaluation"]
    assert "cam" in cam and "rise" not in cam and "per_layer" in cam["evaluation"]
    assert not {"scheduler", "negative_prompt", "image_size", "dtype"} & set(rise)
    sd = rule_params("saliency_compute", _sd_config(tiny_sd), {"saliency": "dfcam", "cls": "car"})
    assert {"scheduler", "negative_prompt", "image_size", "dtype"} <= set(sd["saliency"])
    assert "data" not in sd and sd["cls"] == {"name": "car", "prompt": "a red car"}


# ------------------------------------------------------------------------------ Stable Diffusion


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from tiny_sd import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


def _sd_config(tiny_sd, **saliency) -> dict:
    from diffxai.config.checks import validate_config

    return validate_config(
        {
            "experiment": "sd-tiny",
            "device": "cpu",
            "stages": ["saliency"],
            "models": {"diffusion": {"source": "pretrained", "type": "stable_diffusion", "id": str(tiny_sd)}},
            "classes": [{"name": "car", "index": 0, "prompt": "a red car"}],
            "saliency": {
                "n_samples": 2,
                "sampling_steps": 5,
                "steps": [1, 4],
                "guidance": 7.5,
                "rise": {"n_masks": 16, "batch_size": 8},
                "evaluation": {"n_points": 5},
                **saliency,
            },
        }
    )


def test_sd_fixed_step_denoiser_and_both_methods(tiny_sd):
    from diffxai.models.sd import load_sd

    model = load_sd(str(tiny_sd))
    with torch.no_grad():
        cond, unc, neg = model.encode(["a red car"]), model.null(1), model.encode(["a blue car"])
    den = fixed_step_denoiser(model, 500, cond, 7.5, t_next=450)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(den(x), model.eps_guided(x, 500, cond, 7.5, unc), atol=1e-5)
    assert not den.clip_x0 and den.n_branches == 2
    negative = fixed_step_denoiser(model, 500, cond, 7.5, null=neg)
    assert torch.allclose(negative(x), model.eps_guided(x, 500, cond, 7.5, neg), atol=1e-5)
    cam = df_cam(den, x)
    layers = cam.layers
    assert any(".attentions." in n for n in layers) and any("upsamplers" in n for n in layers)
    assert cam.map.shape == (2, 8, 8) and torch.isfinite(cam.layer_maps).all()
    assert _n_hooks(model.unet) == 0
    rise = df_rise(den, x[0], generator=torch.Generator().manual_seed(0), n_masks=32, batch_size=16)
    assert rise.map.shape == (8, 8) and torch.isfinite(rise.map).all()


def test_sd_job_in_process(tiny_sd, tmp_path):
    """The stage's action on tiny SD: prompts, CFG, DPM-Solver++, decoded x̂0, maps and table."""
    from diffxai.io.arrays import load_arrays
    from diffxai.stages import saliency

    cfg = _sd_config(tiny_sd)
    for method in ("dfrise", "dfcam"):
        files = Files(maps=tmp_path / f"{method}.safetensors", table=tmp_path / f"{method}.parquet")
        _run("saliency_compute", cfg, saliency.compute, Files(), files, saliency=method, cls="car")
        arr, meta = load_arrays(files.maps)
        assert arr["maps"].shape == (2, 2, 8, 8) and arr["display"].shape == (2, 2, 3, 16, 16)
        assert arr["final"].shape == (2, 3, 16, 16) and arr["x_t"].shape == (2, 2, 4, 8, 8)
        assert meta["prompt"] == "a red car" and meta["model_type"] == "stable_diffusion"
        assert len(meta["all_timesteps"]) == 5
        df = pd.read_parquet(files.table)
        assert set(df["step"]) == {1, 4} and (df["prompt"] == "a red car").all()
        assert df.loc[df["layer"] == "all", "deletion_auc"].notna().all()


def test_sd_job_rejects_unknown_layer_before_sampling(tiny_sd, tmp_path, monkeypatch):
    from diffxai.stages import saliency

    cfg = _sd_config(tiny_sd, sampling_steps=3, steps=[1], cam={"layers": ["mid_block.resnets.0", "up_blocks.7"]})

    def no_sampling(*a, **k):
        raise AssertionError("sampled before validating the layers")

    monkeypatch.setattr(saliency, "sample", no_sampling)
    files = Files(maps=tmp_path / "m.safetensors", table=tmp_path / "t.parquet")
    with pytest.raises(DiffxaiError, match=r"saliency.cam.layers: unknown layer 'up_blocks.7'") as exc:
        _run("saliency_compute", cfg, saliency.compute, Files(), files, saliency="dfcam", cls="car")
    assert "\n" not in str(exc.value)
    assert not files.maps.exists() and not files.table.exists()


# ------------------------------------------------------------------------------ end to end (tiny DAG)


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
