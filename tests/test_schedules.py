"""Schedules stage: exponential time-step sampling (arXiv 2402.10404), generation under custom
timesteps, band SSIM and the commitment experiment; the stage's actions run in-process on a tiny
conditional DDPM, and one end-to-end check reads the tiny DAG run's tables."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from diffxai.core.errors import DiffxaiError
from diffxai.core.imageops import band_ssim, ssim
from diffxai.core.seeding import make_generator
from diffxai.core.timesteps import exponential_powers, make_schedule, resolve_collisions
from diffxai.metrics.curves import commitment_step, decided_step
from diffxai.models.pixel import load_diffusion
from diffxai.sampling.loop import sample, step_conditions
from diffxai.sampling.noising import seeded_noise
from diffxai.workflow.params import Tracked, merge, rule_execution, rule_params, unread
from helpers import build_tiny_pixel_ddpm

torch.set_num_threads(1)


class Files(dict):
    """Named inputs / outputs as Snakemake passes them: ``files.name``, ``files.get(name)``, ``files[0]``."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key):
        return list(self.values())[key] if isinstance(key, int) else dict.__getitem__(self, key)


def run_action(action, rule: str, cfg: dict, wildcards: dict, inputs: Files, outputs: Files) -> list[str]:
    """Run a stage action with the rule's params, as :func:`diffxai.workflow.jobs.run_job` does
    with tracking on; returns the settings the action never read."""
    settings = merge(rule_params(rule, cfg, wildcards), rule_execution(rule, cfg, wildcards).values)
    reads = {"threads"}  # run_job reads it (torch threads); the tests keep one thread
    action(Tracked(settings, reads), inputs, outputs)
    return unread(settings, reads)


# ---------------------------------------------------------------------------- the formula


def test_paper_values_t1000_l30_gamma60():
    early = make_schedule("early", 1000, 30, 60)
    latter = make_schedule("latter", 1000, 30, 60)
    assert early.timesteps[:4].tolist() == [999, 893, 884, 875]
    assert early.timesteps[-3:].tolist() == [206, 143, 74]
    assert latter.timesteps[:3].tolist() == [999, 926, 857]
    assert latter.timesteps[-3:].tolist() == [125, 116, 107]
    assert len(early.timesteps) == len(latter.timesteps) == 30
    assert early.n_moved == latter.n_moved == 0  # no collisions at γ=60
    # by hand: δ^(i+γ) = 1000^((i+60)/90); i=1 → 107.98, i=2 → 116.59
    assert exponential_powers(1000, 30, 60)[:2].tolist() == [107, 116]
    uni = make_schedule("uniform", 1000, 30)
    assert uni.timesteps[0] == 999 and uni.timesteps[-1] == 0 and uni.gamma is None


def test_exact_powers_are_not_floored_down():
    # 1000^(10/30) = 10 and 1000^(20/30) = 100 exactly; naive floats give 9.999… → 9
    q = exponential_powers(1000, 30, 0).tolist()
    assert q[9] == 10 and q[19] == 100 and q[-1] == 1000


@pytest.mark.parametrize("T", [1000, 50])
def test_schedules_monotonic_and_in_range(T):
    for n in (2, 3, 5, 10, 30, 50):
        if n > T:
            continue
        for gamma in (0, 0.5, 1, 3, 10, 60, 200, 5000):
            for kind in ("uniform", "early", "latter"):
                s = make_schedule(kind, T, n, gamma)
                ts = s.timesteps
                assert len(ts) == n, (kind, n, gamma)
                assert ts.dtype == np.int64
                assert np.all(np.diff(ts) < 0), (kind, n, gamma, ts)
                assert ts[0] == T - 1 and ts[-1] >= 0
                raw = s.formula
                if np.all(np.diff(raw) < 0) and raw[-1] >= 0 and raw[0] <= T - 1:
                    assert np.array_equal(ts, raw)  # the rule only acts on collisions


def test_collision_rule_known_answers():
    # sorted [5,5,5,1,1,0] → down pass [5,4,3,1,0,-1] → up pass [5,4,3,2,1,0]
    assert resolve_collisions(np.array([1, 5, 0, 5, 1, 5]), 10).tolist() == [5, 4, 3, 2, 1, 0]
    assert resolve_collisions(np.array([9, 9, 9]), 10).tolist() == [9, 8, 7]
    assert resolve_collisions(np.array([2, 2, 2]), 3).tolist() == [2, 1, 0]  # l == T: every timestep
    assert resolve_collisions(np.array([40, 30, 20]), 100).tolist() == [40, 30, 20]
    # γ = 0, l = 30: the latter formula ends 10, 7, 6, 5, 3, 3, 2, 1, 1, 1 (ties); the down pass
    # gives … 3, 2, 2→1, 1→0, 1→-1, 1→-2 and the up pass lifts that to … 8, 7, 6, 5, 4, 3, 2, 1, 0
    s = make_schedule("latter", 1000, 30, 0)
    assert s.formula[-10:].tolist() == [10, 7, 6, 5, 3, 3, 2, 1, 1, 1]
    assert s.timesteps[-10:].tolist() == [10, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert s.n_moved == 8
    e = make_schedule("early", 1000, 30, 0)
    assert e.formula[:4].tolist() == [999, 999, 999, 999]  # T−1 prepended, T−1, T−1, T−1
    assert e.timesteps[:4].tolist() == [999, 998, 997, 996]


@pytest.mark.parametrize(
    "args, match",
    [
        (("early", 1000, 30, -1), "γ=-1 is out of range"),
        (("latter", 1000, 30, float("nan")), "γ=nan is out of range"),
        (("early", 1000, 30, 1e6), "out of range"),
        (("early", 1000, 30, None), "gamma: required"),
        (("latter", 1000, 1, 60), "l=1 is out of range"),
        (("uniform", 10, 20, None), "T=10 training timesteps is smaller than l=20"),
        (("fancy", 1000, 30, 60), "unknown schedule kind 'fancy'"),
    ],
)
def test_bad_schedule_arguments_are_one_line_errors(args, match):
    with pytest.raises(DiffxaiError, match=match) as exc:
        make_schedule(*args)
    assert "\n" not in str(exc.value)


def test_schedule_config_checks(repo):
    from diffxai.config.checks import check_schedules_config, validate_config
    from diffxai.config.load import load_config

    base = validate_config(load_config(repo / "tests/configs/tiny.yaml"), check_files=False)
    check_schedules_config(base)
    cfg = copy.deepcopy(base)
    cfg["schedules"]["schedules"][1]["gamma"] = None
    with pytest.raises(DiffxaiError, match=r"config.schedules.schedules\[1\].gamma"):
        check_schedules_config(cfg)
    cfg = copy.deepcopy(base)
    cfg["schedules"]["schedules"][0]["n_steps"] = 5000
    with pytest.raises(DiffxaiError, match=r"schedules\[0\].n_steps: T=1000 .* smaller than l=5000"):
        check_schedules_config(cfg)
    cfg = copy.deepcopy(base)
    cfg["schedules"]["schedules"][2]["name"] = "uniform"
    with pytest.raises(DiffxaiError, match="duplicate schedule name"):
        check_schedules_config(cfg)
    cfg = copy.deepcopy(base)
    cfg["schedules"]["commitment"]["pairs"] = [["digit_3", "digit_9"]]
    with pytest.raises(DiffxaiError, match=r"pairs\[0\]\[1\]: unknown class 'digit_9'"):
        check_schedules_config(cfg)
    cfg = copy.deepcopy(base)
    cfg["schedules"]["commitment"]["schedules"] = ["nope"]
    with pytest.raises(DiffxaiError, match="unknown schedule 'nope'"):
        check_schedules_config(cfg)
    cfg = copy.deepcopy(base)
    cfg["schedules"]["classes"] = [{"name": "digit_5", "index": 12}]
    with pytest.raises(DiffxaiError, match=r"config.schedules.classes\[0\].index: unknown class 12"):
        check_schedules_config(cfg)
    bad = copy.deepcopy(base)
    bad["schedules"]["schedules"][1]["gamma"] = -3
    with pytest.raises(DiffxaiError, match="gamma"):
        validate_config(bad, check_files=False)  # the schema refuses it too


@pytest.mark.e2e
def test_bad_gamma_stops_the_dag_before_any_job(tmp_path, repo):
    from conftest import run_snakemake

    good = "gamma: 6, n_steps: 4}\n    - {name: latter"
    cfg = (repo / "tests/configs/tiny.yaml").read_text().replace(good, good.replace("n_steps: 4", "n_steps: 4000"))
    path = tmp_path / "bad.yaml"
    path.write_text(cfg)
    proc = run_snakemake(tmp_path, "-n", configfile=path, check=False)
    assert proc.returncode != 0
    assert "config.schedules.schedules[1].n_steps: T=1000 training timesteps is smaller than l=4000" in proc.stderr


# ---------------------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def tiny_cond(tmp_path_factory):
    path = build_tiny_pixel_ddpm(tmp_path_factory.mktemp("ddpm") / "ddpm", image_size=8, channels=1, n_classes=10)
    return load_diffusion(str(path), "cpu")


def _noise(n, keys=("t",)):
    return seeded_noise((1, 8, 8), [make_generator(0, *keys, i) for i in range(n)])


def _labels(model, labels):
    return model.encode(labels)


def test_generation_with_custom_schedule_is_deterministic_and_batch_independent(tiny_cond):
    ts = make_schedule("early", 1000, 6, 10).timesteps
    x, cond = _noise(3), _labels(tiny_cond, [3, 7, 1])

    def run(x, **kw):
        return sample(tiny_cond, x, timesteps=ts, cond=cond, guidance=2.0, record=True, **kw)

    a, b = run(x), run(x.clone(), batch_size=1)
    assert a["x0_pred"].shape == (3, 6, 1, 8, 8) and a["x_t"].shape == (3, 6, 1, 8, 8)
    # float32 convolutions of a batch of 3 and of 1 differ in the last bits (~1e-7); x̂0 divides by
    # sqrt(ᾱ_999) ≈ 0.006, so the samples differ by up to ~5e-5 on [-1, 1]
    assert torch.allclose(a["sample"], b["sample"], atol=1e-4)
    assert torch.equal(a["sample"], run(x.clone())["sample"])
    assert torch.equal(a["sample"], a["x0_pred"][:, -1])  # DDIM's last step returns x̂0
    assert torch.equal(a["x_t"][:, 0], x)
    other = sample(tiny_cond, x, timesteps=make_schedule("latter", 1000, 6, 10).timesteps, cond=cond, guidance=2.0)
    assert not torch.allclose(a["sample"], other["sample"])  # the schedule matters


@pytest.mark.parametrize("sampler", ["ddpm", "dpmsolver++"])
def test_diffusers_schedulers_take_custom_timesteps(tiny_cond, sampler):
    ts = make_schedule("latter", 1000, 5, 5).timesteps
    x, cond = _noise(2), _labels(tiny_cond, [2, 5])

    def run(x, **kw):
        gens = [make_generator(0, "ddpm", i) for i in range(2)]
        return sample(
            tiny_cond,
            x,
            timesteps=ts,
            cond=cond,
            guidance=2.0,
            scheduler=sampler,
            step_generators=gens,
            record=True,
            **kw,
        )

    a, b = run(x), run(x.clone(), batch_size=1)
    assert a["sample"].shape == (2, 1, 8, 8) and a["x0_pred"].shape == (2, 5, 1, 8, 8)
    assert a["timesteps"].tolist() == ts.tolist()
    assert torch.isfinite(a["sample"]).all()
    assert torch.allclose(a["sample"], b["sample"], atol=1e-5)
    assert torch.equal(a["sample"], run(x.clone())["sample"])  # the step noise comes from the generators
    with pytest.raises(DiffxaiError, match="unknown scheduler 'euler'"):
        sample(tiny_cond, x, timesteps=ts, cond=cond, guidance=2.0, scheduler="euler")


def test_per_step_conditions_switch_the_class(tiny_cond):
    cond = step_conditions(_labels(tiny_cond, [3]), _labels(tiny_cond, [7]), 4, [0, 2, 4])
    assert cond.tolist() == [[7, 7, 7, 7], [3, 3, 7, 7], [3, 3, 3, 3]]
    ts = make_schedule("uniform", 1000, 4).timesteps
    x = _noise(3)
    per_step = sample(tiny_cond, x, timesteps=ts, cond=cond, guidance=2.0)["sample"]
    plain_a = sample(tiny_cond, x[2:], timesteps=ts, cond=_labels(tiny_cond, [3]), guidance=2.0)["sample"]
    plain_b = sample(tiny_cond, x[:1], timesteps=ts, cond=_labels(tiny_cond, [7]), guidance=2.0)["sample"]
    # batches of 3 and of 1: the same samples up to float32 rounding (see the test above)
    assert torch.allclose(per_step[2:], plain_a, atol=1e-4)  # k = S: label a throughout
    assert torch.allclose(per_step[:1], plain_b, atol=1e-4)  # k = 0: label b throughout
    same_noise_a = sample(tiny_cond, x[1:2], timesteps=ts, cond=_labels(tiny_cond, [3]), guidance=2.0)["sample"]
    assert (per_step[1] - same_noise_a[0]).abs().max() > 0.1  # k = 2: the switch changes the sample


def test_switch_steps():
    from diffxai.stages.schedules import switch_steps

    assert switch_steps(4, 1).tolist() == [0, 1, 2, 3, 4]
    assert switch_steps(5, 2).tolist() == [0, 2, 4, 5]  # S is always included
    assert switch_steps(4, 10).tolist() == [0, 4]


def test_decided_and_commitment_steps():
    assert decided_step(np.array([1, 3, 3, 3]), 3) == 1
    assert decided_step(np.array([3, 1, 3, 3]), 3) == 2
    assert decided_step(np.array([3, 3, 3, 1]), 3) == -1
    assert decided_step(np.array([3, 3]), 3) == 0
    assert commitment_step(np.array([0, 0.2, 0.6, 0.4, 0.8, 1.0])) == 4
    assert commitment_step(np.array([0.6, 0.7, 1.0])) == 0
    assert commitment_step(np.array([0, 0, 0.3])) == -1


def test_commitment_summary_on_known_table():
    from diffxai.stages.schedules import commitment_summary

    ends = {0: ["b", "b"], 1: ["a", "b"], 2: ["a", "a"], 3: ["a", "other"], 4: ["a", "a"]}
    rows = [
        {
            "pair": "x-to-y",
            "class_a": "x",
            "class_b": "y",
            "schedule": "u",
            "switch_step": k,
            "switch_timestep": [9, 7, 5, 3, -1][k],
            "seed": s,
            "ends_as": e,
        }
        for k, es in ends.items()
        for s, e in enumerate(es)
    ]
    out = commitment_summary(pd.DataFrame(rows))
    assert out["share_a"].tolist() == [0, 0.5, 1, 0.5, 1]
    assert out["share_b"].tolist() == [1, 0.5, 0, 0, 0]
    assert set(out["commit_step"]) == {1} and set(out["commit_timestep"]) == {7}


# ---------------------------------------------------------------------------- band SSIM


def test_ssim_known_answers():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 11, 11, generator=g)
    y = torch.rand(3, 2, 11, 11, generator=g)

    def schedules_ssim(a, b):  # the variant band_ssim uses for its whole-image and low-pass scores
        return ssim(a, b, terms="cs*l", out_dtype=torch.float32)

    assert torch.allclose(schedules_ssim(x, x), torch.ones(3))
    assert torch.allclose(schedules_ssim(x, y), schedules_ssim(y, x))
    # 11x11 images, 11x11 window: one Gaussian-weighted window per channel, by hand
    r = torch.arange(-5, 6, dtype=torch.float64)
    w1 = torch.exp(-0.5 * (r / 1.5) ** 2)
    w = (w1[:, None] * w1[None]) / (w1.sum() ** 2)
    xd, yd = x.double(), y.double()
    mx, my = (w * xd).sum((-2, -1)), (w * yd).sum((-2, -1))
    vx = (w * xd * xd).sum((-2, -1)) - mx**2
    vy = (w * yd * yd).sum((-2, -1)) - my**2
    cxy = (w * xd * yd).sum((-2, -1)) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ref = ((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean(1)
    assert torch.allclose(schedules_ssim(x, y), ref.float(), atol=1e-6)


def test_band_ssim_separates_layout_from_detail():
    g = torch.Generator().manual_seed(1)
    base = torch.rand(4, 1, 16, 16, generator=g) * 0.6 - 0.3
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    ramp = (0.5 * torch.sin(xx / 16 * np.pi))[None, None]  # smooth: low band only
    checker = (0.3 * (-1.0) ** (xx + yy))[None, None]  # Nyquist: high band only
    coarse = band_ssim(base, base + ramp, sigma=1.0)
    fine = band_ssim(base, base + checker, sigma=1.0)
    assert (coarse["ssim_high"] > 0.97).all() and (coarse["ssim_low"] < 0.9).all()
    assert (fine["ssim_low"] > 0.97).all() and (fine["ssim_high"] < 0.8).all()
    assert (fine["rmse_low"] < 0.05).all() and (coarse["rmse_high"] < 0.05).all()


def test_schedule_distances_of_identical_samples():
    from diffxai.io.specs import SPECS
    from diffxai.stages.schedules import schedule_distances

    x = torch.rand(2, 3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    d = schedule_distances({"u": x, "e": x.clone(), "l": x.flip(-1)}, ["a", "b"], sigma=1.0)
    assert list(d.columns) == list(SPECS["schedule_distances"].required) and len(d) == 3 * 2 * 3
    same = d[(d["schedule_a"] == "u") & (d["schedule_b"] == "e")]
    assert (
        np.allclose(same[["ssim", "ssim_low", "ssim_high"]], 1) and (same[["rmse_low", "rmse_high"]] == 0).all().all()
    )
    assert (d[d["schedule_b"] == "l"]["ssim"] < 1).all()
    assert len(schedule_distances({"u": x}, ["a", "b"], 1.0)) == 0  # one schedule: nothing to compare


# ---------------------------------------------------------------------------- the stage, in process


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny class-conditional DDPM directory and a demo classifier checkpoint."""
    from diffxai.models.classifiers import DemoCNN
    from diffxai.models.demo import save_demo_classifier

    root = tmp_path_factory.mktemp("schedules-models")
    ddpm = build_tiny_pixel_ddpm(root / "ddpm", image_size=8, channels=1, n_classes=10)
    torch.manual_seed(0)
    clf = root / "classifier.safetensors"
    save_demo_classifier(DemoCNN(10, 1, 4), clf, {"n_classes": 10, "in_channels": 1, "width": 4})
    return Files(ddpm=str(ddpm), classifier=str(clf))


def tiny_cfg(repo, **schedules) -> dict:
    from diffxai.config.checks import validate_config
    from diffxai.config.load import load_config

    cfg = load_config(repo / "tests/configs/tiny.yaml")
    cfg["schedules"].update(schedules)
    return validate_config(cfg, check_files=False)


def generate_jobs(cfg: dict, models: Files, out) -> tuple[dict, list[str]]:
    """Every ``schedules_generate`` job of ``cfg`` into ``out``: its outputs per schedule, and the
    settings any job left unread."""
    from diffxai.stages import schedules

    outs, left = {}, []
    for s in cfg["schedules"]["schedules"]:
        name = s["name"]
        o = Files(
            samples=str(out / f"{name}.safetensors"),
            table=str(out / f"{name}.parquet"),
            steps=str(out / f"{name}_steps.parquet"),
        )
        left += run_action(schedules.generate, "schedules_generate", cfg, {"schedule": name}, models, o)
        outs[name] = o
    return outs, left


#: the aggregate's and the plot's named outputs (rules/schedules.smk) -> file stems
TABLES = {
    "sampling": "schedule_sampling",
    "steps": "schedule_steps",
    "distances": "schedule_distances",
    "commitment": "commitment",
    "commitment_summary": "commitment_summary",
}
PLOTS = {
    "grid": "schedule_grid",
    "prob": "schedule_class_prob",
    "distances": "schedule_distances",
    "commitment": "commitment",
}


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory, models):
    """Every job of the stage on the tiny config (with the tiny models), run in-process."""
    from conftest import REPO
    from diffxai.config.experiment import commitment_pairs, pair_id
    from diffxai.plots import schedules as plots
    from diffxai.stages import schedules

    out = tmp_path_factory.mktemp("schedules-run")
    cfg = tiny_cfg(REPO)
    gen, left = generate_jobs(cfg, models, out)
    commit = []
    for a, b in commitment_pairs(cfg):
        commit.append(str(out / f"{pair_id(a, b)}.parquet"))
        left += run_action(
            schedules.commitment, "schedules_commitment", cfg, {"pair": pair_id(a, b)}, models, Files(table=commit[-1])
        )
    (out / "tables").mkdir()
    agg_in = Files(
        tables=[o.table for o in gen.values()],
        steps=[o.steps for o in gen.values()],
        samples=[o.samples for o in gen.values()],
        commitment=commit,
    )
    agg_out = Files({k: str(out / "tables" / f"{f}.parquet") for k, f in TABLES.items()})
    left += run_action(schedules.aggregate, "schedules_aggregate", cfg, {}, agg_in, agg_out)
    plot_in = Files(**agg_out, samples=agg_in.samples)
    plot_out = Files({k: str(out / "plots" / f"{f}.png") for k, f in PLOTS.items()})
    left += run_action(plots.plot, "schedules_plot", cfg, {}, plot_in, plot_out)
    return cfg, out, left


def check_stage_outputs(cfg: dict, tables, samples, plots) -> None:
    """The stage's contract on a run's outputs (tables, sample arrays and plots directories)."""
    from diffxai.io.arrays import load_arrays
    from diffxai.io.specs import SPECS
    from diffxai.io.tables import read_metadata

    sec = cfg["schedules"]
    n_cls, n_seeds = len(cfg["classes"]), sec["n_seeds"]
    names = [s["name"] for s in sec["schedules"]]
    final = pd.read_parquet(tables / "schedule_sampling.parquet")
    assert set(SPECS["schedule_sampling"].required) <= set(final.columns)
    assert len(final) == len(names) * n_cls * n_seeds
    assert final["prob"].between(0, 1).all() and final["top1_index"].between(0, 9).all()
    assert "diffxai.config_hash" in read_metadata(tables / "schedule_sampling.parquet")
    steps = pd.read_parquet(tables / "schedule_steps.parquet")
    assert set(SPECS["schedule_steps"].required) <= set(steps.columns)
    for s in sec["schedules"]:
        sub = steps[steps["schedule"] == s["name"]]
        assert len(sub) == n_cls * n_seeds * s["n_steps"]
        ts = sub[(sub["class_name"] == sub["class_name"].iloc[0]) & (sub["seed"] == 0)].sort_values("step")["timestep"]
        assert ts.tolist() == make_schedule(s["kind"], 1000, s["n_steps"], s["gamma"]).timesteps.tolist()
    assert steps["prob"].between(0, 1).all()
    dist = pd.read_parquet(tables / "schedule_distances.parquet")
    assert set(SPECS["schedule_distances"].required) <= set(dist.columns)
    assert len(dist) == len(names) * (len(names) - 1) // 2 * n_cls * n_seeds
    assert dist[["ssim", "ssim_low", "ssim_high"]].apply(lambda c: c.between(-1, 1.0001)).all().all()
    arrs = {n: load_arrays(samples / f"{n}.safetensors")[0]["samples"] for n in names}
    assert all(a.shape == (n_cls, n_seeds, 1, 8, 8) for a in arrs.values())
    # same seeds across schedules: every schedule's step-0 x̂0 comes from the same x_T at t = 999
    s0 = steps[steps["step"] == 0].pivot_table(index=["class_name", "seed"], columns="schedule", values="prob")
    assert np.allclose(s0.to_numpy(), s0.to_numpy()[:, :1], atol=1e-6)
    com = pd.read_parquet(tables / "commitment.parquet")
    assert set(SPECS["commitment"].required) <= set(com.columns)
    S = {s["name"]: s["n_steps"] for s in sec["schedules"]}
    assert set(com["schedule"]) == set(sec["commitment"]["schedules"])
    for name, sub in com.groupby("schedule"):
        assert sorted(set(sub["switch_step"])) == list(range(S[name] + 1))
        # switching at k = S is class a throughout: the same sample as the class-a generation
        a = sub["class_a"].iloc[0]
        full = sub[sub["switch_step"] == S[name]].set_index("seed")["final_top1"].sort_index()
        ref = final[(final["schedule"] == name) & (final["class_name"] == a)].set_index("seed")["top1_index"]
        assert full.tolist() == ref.sort_index().tolist()
    summary = pd.read_parquet(tables / "commitment_summary.parquet")
    assert summary[["share_a", "share_b"]].apply(lambda c: c.between(0, 1)).all().all()
    for p in ("schedule_grid", "schedule_class_prob", "schedule_distances", "commitment"):
        f = plots / f"{p}.png"
        assert f.is_file() and f.stat().st_size > 2000


def test_stage_outputs(stage_run):
    cfg, out, _ = stage_run
    check_stage_outputs(cfg, out / "tables", out, out / "plots")


def test_every_setting_is_read(stage_run):
    assert stage_run[2] == []


def test_ddpm_step_noise_is_per_sample(tmp_path, models, repo):
    """With the stochastic sampler, a sample depends only on its own seeds, never on its batch."""
    cfg = tiny_cfg(repo, sampler="ddpm", schedules=[{"name": "early", "kind": "early", "gamma": 6, "n_steps": 4}])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, _ = generate_jobs(cfg, models, tmp_path / "a")
    cfg["schedules"]["batch_size"] = 1
    other, _ = generate_jobs(cfg, models, tmp_path / "b")
    a, b = pd.read_parquet(one["early"].steps), pd.read_parquet(other["early"].steps)
    assert np.allclose(a["prob"], b["prob"], atol=1e-5) and (a["top1_index"] == b["top1_index"]).all()


def test_commitment_needs_a_conditional_model(tmp_path, models, repo):
    from diffxai.stages import schedules

    uncond = build_tiny_pixel_ddpm(tmp_path / "ddpm", image_size=8, channels=1)
    with pytest.raises(DiffxaiError, match="unconditional") as exc:
        run_action(
            schedules.commitment,
            "schedules_commitment",
            tiny_cfg(repo),
            {"pair": "digit_3-to-digit_7"},
            Files(ddpm=str(uncond), classifier=models.classifier),
            Files(table=str(tmp_path / "c.parquet")),
        )
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------------------- Stable Diffusion


def test_sd_generation_under_a_custom_schedule(tmp_path, repo):
    from diffxai.config.checks import validate_config
    from diffxai.config.load import load_config
    from diffxai.io.arrays import load_arrays
    from diffxai.stages import schedules
    from helpers import build_tiny_resnet_state_dict
    from tiny_sd import build_tiny_sd

    sd_dir = build_tiny_sd(tmp_path / "sd")
    clf = build_tiny_resnet_state_dict(tmp_path / "clf.safetensors", num_classes=300)
    cfg = load_config(repo / "tests/configs/tiny.yaml")
    cfg["models"] = {
        "diffusion": {"source": "pretrained", "type": "stable_diffusion", "id": str(sd_dir)},
        "classifier": {
            "source": "state_dict",
            "arch": "resnet18",
            "path": str(clf),
            "num_classes": 300,
            "preprocess": {"resize": 32, "mean": [0.5], "std": [0.5]},
        },
    }
    cfg["data"] = {"source": "folder", "root": str(tmp_path), "image_size": 16, "channels": 3, "n_images": 1}
    cfg["classes"] = [{"name": "surfer", "index": 0, "prompt": "a man on a wave"}]  # other stages' prompts
    # this stage's own prompts, with classifier classes
    cfg["schedules"]["classes"] = [
        {"name": "tiger", "index": 292},
        {"name": "persian_cat", "index": 283, "prompt": "a persian cat"},
    ]
    cfg["schedules"].update(
        {
            "schedules": [{"name": "early", "kind": "early", "gamma": 6, "n_steps": 3}],
            "n_seeds": 1,
            "sampler": "dpmsolver++",
            "guidance": 3.0,
        }
    )
    cfg = validate_config(cfg, check_files=False)
    outs = Files(
        samples=str(tmp_path / "s.safetensors"), table=str(tmp_path / "t.parquet"), steps=str(tmp_path / "st.parquet")
    )
    assert run_action(schedules.generate, "schedules_generate", cfg, {"schedule": "early"}, Files(), outs) == []
    arr, meta = load_arrays(outs.samples)
    assert arr["samples"].shape == (2, 1, 3, 16, 16) and meta["class_names"] == ["tiger", "persian_cat"]
    assert arr["timesteps"].tolist() == make_schedule("early", 1000, 3, 6).timesteps.tolist()
    steps = pd.read_parquet(outs.steps)
    assert len(steps) == 2 * 3 and steps["prob"].between(0, 1).all()
    first = pd.read_parquet(outs.table)["prob"].to_numpy()
    run_action(schedules.generate, "schedules_generate", cfg, {"schedule": "early"}, Files(), outs)
    assert np.array_equal(first, pd.read_parquet(outs.table)["prob"].to_numpy())  # deterministic for a seed


# ---------------------------------------------------------------------------- end to end


@pytest.mark.e2e
def test_tiny_run_schedule_tables(tiny_run):
    from conftest import TINY
    from diffxai.config.checks import validate_config
    from diffxai.config.load import load_config

    cfg = validate_config(load_config(TINY), check_files=False)
    check_stage_outputs(cfg, tiny_run / "tables", tiny_run / "samples" / "schedules", tiny_run / "plots")
