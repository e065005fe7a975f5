"""Tests of component attribution (CAD) and concept editing: known answers, the edit rules (the
authors'), batched gradients against the naive loop, bad input, the stage's actions in process on
tiny pixel and Stable Diffusion checkpoints (with exact settings), and the tiny DAG's tables."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn as nn

from diffxai.core.errors import DiffxaiError
from diffxai.core.seeding import make_generator
from diffxai.core.timesteps import uniform_timesteps
from diffxai.methods import components as cad
from diffxai.models.backend import DiffusionBackend
from helpers import build_tiny_pixel_ddpm


class ToyUNet(nn.Module):
    """ε(x, t, label) = lin(x) + emb[label]; label 2 is the null class. Only emb[0, 2] differs between
    the concept's (label 0) and the null embedding, so that one weight carries the concept."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.emb = nn.Embedding(3, 4)
        self.other = nn.Linear(4, 4)  # never used in the forward: must get zero attribution
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            self.lin.weight.copy_(0.05 * torch.randn(4, 4, generator=g))
            self.emb.weight.zero_()
            self.emb.weight[0, 2] = 3.0
            self.emb.weight[1] = 0.5  # another concept

    def forward(self, x, t, labels):
        return self.lin(x) + self.emb(labels)


class ToyBackend(DiffusionBackend):
    """The toy U-Net as a diffusion backend: conditions are labels, 2 is the null label."""

    def __init__(self, unet):
        self.unet = unet

    def encode(self, keys):
        return torch.as_tensor([int(k) for k in keys], dtype=torch.long)

    def null(self, n):
        return torch.full((n,), 2, dtype=torch.long)

    def eps(self, x, t, cond):
        return self.unet(x, t, cond)

    @property
    def alphas_cumprod(self):
        return torch.linspace(0.99, 0.01, 1000, dtype=torch.float64)

    @property
    def num_train_timesteps(self):
        return 1000


def toy_items(backend, n=5, s=3):
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(n, s, 4, generator=g)
    return cad.erase_items(backend, x_t, torch.tensor([900, 500, 100]), backend.encode([0]), batch_size=4)


def test_toy_concept_weight_ranks_first():
    backend = ToyBackend(ToyUNet())
    params = cad.select_parameters(backend.unet, [r"\.weight$"])
    attr, j = cad.attribute(backend, toy_items(backend), params, batch_size=4)
    flat = torch.cat([a.reshape(-1) for a in attr.values()])
    names = list(attr)
    top = int(flat.argmax())
    assert names[0] == "lin.weight" and names[1] == "emb.weight"
    assert top == attr["lin.weight"].numel() + 2, "emb[0, 2] carries the concept and must rank first"
    # J_e = 15 items × 3² ; a = w · 2w · 15 for that weight
    assert j == pytest.approx(15 * 9.0, rel=1e-5)
    assert attr["emb.weight"][0, 2].item() == pytest.approx(2 * 9.0 * 15, rel=1e-5)
    assert torch.all(attr["other.weight"] == 0), "an unused weight has no attribution"
    assert torch.all(attr["emb.weight"][1] == 0), "another concept's row is untouched by this concept's J_e"
    # the erase edit of the single top weight removes the concept: J_e drops to ~0
    edited = backend.with_unet(cad.apply_edit(backend.unet, cad.global_masks(attr, 1)))
    assert cad.objective_value(edited, toy_items(backend), 4, refresh_target=True) == pytest.approx(0.0, abs=1e-8)
    rows = cad.attribution_rows(attr, top_fraction=1 / flat.numel())
    assert [r["parameter"] for r in rows] == names
    emb = rows[1]
    assert emb["top_fraction_mass"] == pytest.approx(attr["emb.weight"][0, 2].item() / flat.clamp(min=0).sum().item())
    assert emb["negative_mass"] <= 0 <= emb["positive_mass"] and rows[2]["abs_mass"] == 0


def test_batched_accumulation_equals_one_backward_per_item(tmp_path):
    from diffxai.models.loading import load_backend

    path = build_tiny_pixel_ddpm(tmp_path / "ddpm", image_size=8, channels=1, n_classes=10)
    backend = load_backend("pixel", str(path))
    cond = backend.encode([3])
    sampling = cad.Sampling(4, 2.0, 256, timesteps=tuple(int(t) for t in uniform_timesteps(1000, 4)))
    traj = cad.sample_classes(backend, cond, ["digit_3"], 3, sampling, seed=0, stage="test", record=True)
    assert traj["x_t"].shape == (3, 4, 1, 8, 8) and traj["timesteps"].tolist() == [750, 500, 250, 0]
    # sample i of a class starts from noise keyed by (seed, stage, name, i), whatever its batch
    assert torch.equal(traj["x_t"][2, 0], torch.randn((1, 8, 8), generator=make_generator(0, "test", "digit_3", 2)))
    items = cad.erase_items(backend, traj["x_t"], traj["timesteps"], cond, batch_size=5)
    params = cad.select_parameters(backend.unet, cad.DEFAULT_PATTERNS["pixel"])
    before = {n: p.detach().clone() for n, p in backend.unet.named_parameters()}
    a_batched, j_b = cad.attribute(backend, items, params, batch_size=12)
    a_naive, j_n = cad.attribute_naive(backend, items, params)
    assert j_b == pytest.approx(j_n, rel=1e-5)
    for n in a_batched:
        scale = a_naive[n].abs().max().item()
        torch.testing.assert_close(a_batched[n], a_naive[n], rtol=1e-4, atol=1e-4 * scale)
    assert all(not p.requires_grad and p.grad is None for p in backend.unet.parameters())
    for n, p in backend.unet.named_parameters():
        assert torch.equal(p, before[n])
    # amplify items: N images × S timesteps, noise seeded
    amp = cad.amplify_items(backend, traj["sample"], cond, "digit_3", traj["timesteps"], seed=0)
    amp2 = cad.amplify_items(backend, traj["sample"], cond, "digit_3", traj["timesteps"], seed=0)
    assert len(amp) == 12 and torch.equal(amp.x, amp2.x)
    a_amp, j_a = cad.attribute(backend, amp, params, batch_size=12)
    assert j_a > 0 and all(torch.isfinite(a).all() for a in a_amp.values())
    # counterfactual: restores the weight, and zeroing a weight with zero attribution does nothing
    comps = cad.sample_components(a_batched, n_random=3, n_top=2, seed=0, key="digit_3")
    assert [g for _, _, g in comps].count("top") == 2 and len(comps) == 5
    cf = pd.DataFrame(cad.counterfactual(backend, items, a_batched, comps, batch_size=12))
    assert list(cf["group"]).count("top") == 2 and cf["actual_delta"].notna().all()
    for n, p in backend.unet.named_parameters():
        assert torch.equal(p, before[n])


def _attributions():
    g = torch.Generator().manual_seed(0)
    return {
        "a.weight": torch.randn(6, 250, generator=g),  # fan_in 250
        "b.weight": torch.randn(4, 3, 3, 3, generator=g),  # fan_in 27
        "c.bias": torch.randn(40, generator=g),  # 1-D: one row of 40
    }


@pytest.mark.parametrize("rho", [0.001, 0.02, 0.1, 0.5])
def test_per_row_rule_counts_and_never_zeroes_negative(rho):
    attr = _attributions()
    attr["a.weight"][0] = -attr["a.weight"][0].abs()  # a row with only negative attributions
    masks = cad.per_row_masks(attr, rho)
    for name, a in attr.items():
        rows = a.reshape(1, -1) if a.dim() < 2 else a.reshape(a.shape[0], -1)
        m = masks[name].reshape(rows.shape)
        k = math.floor(rho * rows.shape[1])
        for r in range(rows.shape[0]):
            topk = rows[r].topk(k).values if k else rows[r][:0]
            assert int(m[r].sum()) == int((topk > 0).sum()) <= k
            assert torch.all(rows[r][m[r]] > 0), "negative attributions are never zeroed"
            rest = rows[r][~m[r]]
            if m[r].any() and (rest > 0).any():
                assert rows[r][m[r]].min() >= rest[rest > 0].max(), "the zeroed entries are the row's top ones"
    assert masks["a.weight"][0].sum() == 0
    if rho == 0.02:
        assert int(masks["a.weight"][1:].sum()) == 5 * 5 and int(masks["b.weight"].sum()) == 0


def test_global_rule_and_edit_copy_only_touches_chosen_tensors():
    net = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4))
    original = copy.deepcopy(net.state_dict())
    params = cad.select_parameters(net, [r"^0\.weight$"])
    assert list(params) == ["0.weight"]
    g = torch.Generator().manual_seed(3)
    attr = {"0.weight": torch.randn(6, 8, generator=g)}
    masks = cad.global_masks(attr, 7)
    assert int(masks["0.weight"].sum()) == 7
    assert torch.all(attr["0.weight"][masks["0.weight"]] >= attr["0.weight"][~masks["0.weight"]].max())
    edited = cad.apply_edit(net, masks)
    for n, v in net.state_dict().items():
        assert torch.equal(v, original[n]), "the source model is never changed"
    sd = edited.state_dict()
    assert torch.all(sd["0.weight"][masks["0.weight"]] == 0)
    assert torch.equal(sd["0.weight"][~masks["0.weight"]], original["0.weight"][~masks["0.weight"]])
    for n in ("0.bias", "2.weight", "2.bias"):
        assert torch.equal(sd[n], original[n])
    # per-row: exactly floor(rho * fan_in) entries per row when all are positive
    pos = {"0.weight": torch.rand(6, 8, generator=g) + 0.1}
    m = cad.per_row_masks(pos, 0.3)  # floor(2.4) = 2
    assert m["0.weight"].sum(1).tolist() == [2] * 6
    # K larger than the number of positive attributions zeroes only the positive ones
    assert int(cad.global_masks({"x": torch.tensor([1.0, -1.0, 2.0])}, 3)["x"].sum()) == 2


def test_edit_score_known_answer():
    # concept (position 1) prob 0.8 → 0.2, others' prob 0.9+0.7 → 0.8+0.7, accuracy 1+1 → 0.5+1
    base_p, base_a = [0.9, 0.8, 0.7], [1.0, 1.0, 1.0]
    p, a = [0.8, 0.2, 0.7], [0.5, 0.0, 1.0]
    score, target_acc, retention = cad.edit_score("erase", p, a, base_p, base_a, 1)
    assert score == pytest.approx(0.6 - (1 - 1.5 / 1.6)) and target_acc == 0.0 and retention == pytest.approx(0.75)
    assert cad.edit_score("amplify", p, a, base_p, base_a, 1)[0] == pytest.approx(-0.6 - (1 - 1.5 / 1.6))
    assert cad.edit_score("erase", [0.1], [0.0], [0.5], [1.0], 0) == (pytest.approx(0.4), 0.0, 1.0)


def test_bad_inputs_are_one_line_errors():
    for rho in (0, 1, 1.5, -0.1, float("nan")):
        with pytest.raises(DiffxaiError, match="rho must be in"):
            cad.per_row_masks(_attributions(), rho)
    with pytest.raises(DiffxaiError, match=r"pattern 'nope' selects no parameter"):
        cad.select_parameters(nn.Linear(2, 2), ["weight", "nope"])
    with pytest.raises(DiffxaiError, match="not a valid regular expression"):
        cad.select_parameters(nn.Linear(2, 2), ["("])
    with pytest.raises(DiffxaiError, match="unknown edit rule"):
        cad.edit_masks(_attributions(), "columns", 1)
    from conftest import TINY
    from diffxai.config.checks import check_components_config, validate_config
    from diffxai.config.load import load_config

    cfg = validate_config(load_config(TINY))
    cfg["components"]["concepts"] = ["digit_3", "digit_9"]
    with pytest.raises(DiffxaiError, match=r"concepts\[1\]: unknown concept 'digit_9'") as exc:
        check_components_config(cfg)
    assert "\n" not in str(exc.value)
    cfg = validate_config(load_config(TINY))
    cfg["components"]["concepts"] = ["digit_3"]
    cfg["components"]["sweep"] = [{"rule": "per_row", "rho": 1.0}]
    with pytest.raises(DiffxaiError, match=r"sweep\[0\]\.rho: rho must be in \(0, 1\)"):
        check_components_config(cfg)


# ------------------------------------------------------------------------------ the stage's actions


class Files(dict):
    """Snakemake's named input/output lists as the actions read them (``x.name``, ``x.get(name)``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def run_action(action, rule: str, cfg: dict, inputs: dict, outputs: dict, wildcards: dict | None = None) -> None:
    """Run a rule's action as ``run_job`` does (its settings and batch sizes, tracked) and assert that it
    read every one of them."""
    from diffxai.workflow.params import Tracked, merge, rule_execution, rule_params, unread

    settings = merge(rule_params(rule, cfg, wildcards), rule_execution(rule, cfg, wildcards).values)
    reads: set[str] = set()
    params = Tracked(settings, reads)
    params.get("threads")  # run_job reads them (and sets torch's threads)
    action(params, Files(inputs), Files(outputs))
    assert unread(settings, reads) == [], f"{rule} never read these settings"


def run_stage(cfg: dict, out: Path, concept: str, inputs: dict) -> dict[str, str]:
    """Every components action on ``cfg`` (the concept's job only), outputs under ``out``."""
    from diffxai.plots import components as plots
    from diffxai.stages import components

    o = {
        k: str(out / f)
        for k, f in [
            ("table", "baseline.parquet"),
            ("samples", "baseline.safetensors"),
            ("attribution", "attr.parquet"),
            ("editing", "edit.parquet"),
            ("counterfactual", "cf.parquet"),
            ("arrays", "arrays.safetensors"),
        ]
    }
    run_action(components.baseline, "components_baseline", cfg, inputs, {k: o[k] for k in ("table", "samples")})
    job = {k: o[k] for k in ("attribution", "editing", "counterfactual", "arrays")}
    run_action(
        components.concept, "components_concept", cfg, {**inputs, "baseline": o["table"]}, job, {"concept": concept}
    )
    agg = {k: str(out / "tables" / f"{k}.parquet") for k in ("attribution", "editing", "counterfactual")}
    run_action(components.aggregate, "components_aggregate", cfg, {k: [o[k]] for k in agg}, agg)
    plots_out = {k: str(out / f"{k}.png") for k in ("mass", "editing", "scatter", "grid")}
    plot_in = {**{k: agg[k] for k in agg}, "baseline_samples": o["samples"], "arrays": [o["arrays"]]}
    run_action(plots.plot, "components_plot", cfg, plot_in, plots_out)
    assert all(Path(p).stat().st_size > 1000 for p in plots_out.values())
    return {**o, **{f"table_{k}": v for k, v in agg.items()}}


def test_stage_on_a_tiny_pixel_model(tmp_path):
    """The actions in process on a tiny class-conditional pixel DDPM and an untrained demo classifier:
    tables, exact settings, and an edit that zeroes nothing reusing the baseline's evaluation."""
    from diffxai.config.checks import validate_config
    from diffxai.models.classifiers import DemoCNN
    from diffxai.models.demo import save_demo_classifier

    ddpm = build_tiny_pixel_ddpm(tmp_path / "ddpm", image_size=8, channels=1, n_classes=10)
    torch.manual_seed(0)
    save_demo_classifier(
        DemoCNN(10, 1, 4), tmp_path / "clf.safetensors", {"n_classes": 10, "in_channels": 1, "width": 4}
    )
    cfg = validate_config(
        {
            "experiment": "tiny-pixel",
            "device": "cpu",
            "stages": ["components"],
            "models": {"diffusion": {"source": "pretrained", "id": str(ddpm)}, "classifier": {"source": "demo"}},
            "data": {"source": "digits", "image_size": 8, "n_images": 2},
            "classes": [{"name": "digit_3", "index": 3}, {"name": "digit_7", "index": 7, "label": 7}],
            "components": {
                "concepts": ["digit_7"],
                "objective": {"n_samples": 2, "n_steps": 3, "batch_size": 4},
                "amplify_images": "real",
                "sweep": [{"rule": "per_row", "rho": 0.001}, {"rule": "global", "k": 4}],
                "evaluation": {"samples_per_class": 2, "n_steps": 2, "grid_per_class": 1},
                "counterfactual": {"n_random": 3, "n_top": 1, "n_items": 4},
            },
        }
    )
    out = run_stage(
        cfg, tmp_path / "out", "digit_7", {"ddpm": str(ddpm), "classifier": str(tmp_path / "clf.safetensors")}
    )
    base = pd.read_parquet(out["table"])
    ed = pd.read_parquet(out["table_editing"])
    assert list(ed["eval_class"][:2]) == ["digit_3", "digit_7"] and set(ed["edit"]) == {"none", "erase", "amplify"}
    # ρ = 0.001 zeroes nothing (fan-in < 1000): its rows are the baseline's, and never selected
    nothing = ed[ed["rule"] == "per_row"]
    assert (nothing["n_edited"] == 0).all() and not nothing["selected"].any()
    for _, g in nothing.groupby("edit"):
        assert g["prob"].tolist() == base["prob"].tolist() and g["accuracy"].tolist() == base["accuracy"].tolist()
    assert (ed.loc[ed["rule"] == "global", "n_edited"] <= 4).all()
    assert ed.loc[ed["rule"] == "global", "selected"].all()
    attr = pd.read_parquet(out["table_attribution"])
    assert attr["parameter"].str.contains("class_embedding|time_emb_proj").all()
    cf = pd.read_parquet(out["table_counterfactual"])
    assert len(cf) == 8 and (cf["n_items"] == 4).all() and cf["actual_delta"].notna().all()


def test_unconditional_model_is_a_one_line_error(tmp_path):
    """Known when the config is checked (the model's unet/config.json has no class embedding); the
    job still refuses one (a model that changed after planning)."""
    from diffxai.config.checks import validate_config
    from diffxai.stages import components

    ddpm = build_tiny_pixel_ddpm(tmp_path / "ddpm", image_size=8, channels=1)

    def config(model):
        return {
            "experiment": "uncond",
            "device": "cpu",
            "stages": ["components"],
            "models": {"diffusion": {"source": "pretrained", "id": str(model)}, "classifier": {"source": "demo"}},
            "data": {"source": "digits", "image_size": 8, "n_images": 2},
            "classes": [{"name": "digit_3", "index": 3}],
            "components": {"concepts": ["digit_3"]},
        }

    with pytest.raises(DiffxaiError, match=r"config\.stages\[0\]: components needs a class-conditional model") as exc:
        validate_config(config(ddpm))
    assert "\n" not in str(exc.value)
    cond = build_tiny_pixel_ddpm(tmp_path / "cond", image_size=8, channels=1, n_classes=10)
    cfg = validate_config(config(cond))
    from diffxai.workflow.params import merge, rule_execution, rule_params

    params = merge(rule_params("components_baseline", cfg), rule_execution("components_baseline", cfg).values)
    params["models"]["diffusion"]["id"] = str(ddpm)  # the model was replaced after the check
    with pytest.raises(DiffxaiError, match="needs a class-conditional model") as exc:
        components.baseline(params, Files(ddpm=str(ddpm), classifier=""), Files(table="t", samples="s"))
    assert "\n" not in str(exc.value)


def test_sd_path_on_tiny_stable_diffusion(tmp_path):
    """The whole stage on a tiny SD pipeline: prompts as concepts, "" as c_b, ff weights, the
    configured scheduler on its own spacing."""
    from diffxai.config.checks import validate_config
    from helpers import build_tiny_resnet_state_dict
    from tiny_sd import build_tiny_sd

    sd = build_tiny_sd(tmp_path / "sd")
    clf = build_tiny_resnet_state_dict(tmp_path / "clf.safetensors", num_classes=10)
    cfg = validate_config(
        {
            "experiment": "tiny-sd",
            "device": "cpu",
            "stages": ["components"],
            "models": {
                "diffusion": {"source": "pretrained", "type": "stable_diffusion", "id": str(sd)},
                "classifier": {
                    "source": "state_dict",
                    "arch": "resnet18",
                    "path": str(clf),
                    "num_classes": 10,
                    "preprocess": "none",
                },
            },
            "classes": [{"name": "church", "index": 0}, {"name": "golf_ball", "index": 1, "prompt": "a golf ball"}],
            "components": {
                "concepts": ["church"],
                "objective": {"n_samples": 2, "n_steps": 3, "guidance": 3.0},
                "sd_scheduler": "dpmsolver++",
                "sweep": [{"rule": "per_row", "rho": 0.05}, {"rule": "global", "k": 10}],
                "evaluation": {"samples_per_class": 2, "n_steps": 2, "grid_per_class": 2},
                "counterfactual": {"n_random": 3, "n_top": 1, "n_items": 3},
            },
            "plots": {"dpi": 50},
        }
    )
    out = run_stage(cfg, tmp_path / "out", "church", {"ddpm": [], "classifier": []})
    attr = pd.read_parquet(out["table_attribution"])
    assert attr["parameter"].str.contains(r"ff\.net\.(?:0\.proj|2)\.weight").all() and len(attr) >= 4
    ed = pd.read_parquet(out["table_editing"])
    assert set(ed["edit"]) == {"none", "erase", "amplify"} and set(ed["eval_class"]) == {"church", "golf_ball"}
    assert (ed.loc[ed["rule"] == "global", "n_edited"] == 10).all()
    cf = pd.read_parquet(out["table_counterfactual"])
    assert len(cf) == 8 and cf["actual_delta"].notna().all()


def test_tiny_run_component_tables_and_plots(tiny_run):
    from diffxai.io.specs import SPECS
    from diffxai.io.tables import read_metadata

    tables = tiny_run / "tables"
    attr = pd.read_parquet(tables / "component_attribution.parquet")
    assert set(SPECS["component_attribution"].required) <= set(attr.columns)
    assert set(attr["concept"]) == {"digit_3", "digit_7"} and set(attr["objective"]) == {"erase", "amplify"}
    assert (attr["positive_mass"] >= 0).all() and (attr["negative_mass"] <= 0).all() and (attr["n_weights"] > 0).all()
    assert attr["parameter"].str.contains("class_embedding|time_emb_proj").all()
    ed = pd.read_parquet(tables / "concept_editing.parquet")
    assert set(SPECS["concept_editing"].required) | {"rule", "k", "selected"} <= set(ed.columns)
    assert set(ed["edit"]) == {"none", "erase", "amplify"}
    assert ed["prob"].between(0, 1).all() and ed["accuracy"].between(0, 1).all()
    for (concept, edit), g in ed[ed["selected"]].groupby(["concept", "edit"]):
        assert set(g["eval_class"]) == {"digit_3", "digit_7"}, (concept, edit)
    cf = pd.read_parquet(tables / "component_counterfactual.parquet")
    assert {"predicted_delta", "actual_delta", "pearson", "spearman"} <= set(cf.columns) and len(cf) > 0
    assert read_metadata(tables / "concept_editing.parquet")["diffxai.seed"] == "0"
    for name in (
        "components_attribution_mass",
        "components_editing",
        "components_counterfactual",
        "components_samples",
    ):
        assert (tiny_run / "plots" / f"{name}.png").stat().st_size > 1000


def test_the_stage_can_name_its_own_classifier(tmp_path, monkeypatch):
    """``components.classifier`` judges the stage's samples instead of ``models.classifier`` (CAD's
    ResNet-50 on Imagenette while the other stages keep theirs): the jobs get exactly that spec
    (and read all of it), no demo classifier input, and load it."""
    from diffxai.config.checks import validate_config
    from diffxai.stages import components
    from diffxai.workflow.params import rule_params
    from helpers import build_tiny_resnet_state_dict

    ddpm = build_tiny_pixel_ddpm(tmp_path / "ddpm", image_size=8, channels=1, n_classes=10)
    clf = build_tiny_resnet_state_dict(tmp_path / "r18.safetensors", num_classes=10)
    own = {"source": "state_dict", "arch": "resnet18", "path": str(clf), "num_classes": 10}
    own["preprocess"] = {"resize": 16, "mean": [0.5], "std": [0.5]}
    cfg = validate_config(
        {
            "experiment": "own-judge",
            "device": "cpu",
            "stages": ["components"],
            "models": {"diffusion": {"source": "pretrained", "id": str(ddpm)}, "classifier": {"source": "demo"}},
            "data": {"source": "digits", "image_size": 8, "n_images": 2},
            "classes": [{"name": "digit_3", "index": 3}, {"name": "digit_7", "index": 7}],
            "components": {
                "concepts": ["digit_7"],
                "classifier": own,
                "evaluation": {"samples_per_class": 2, "n_steps": 2, "grid_per_class": 1},
            },
        }
    )
    settings = rule_params("components_baseline", cfg)
    assert "classifier" not in settings.get("models", {})
    assert settings["components"]["classifier"] == {
        "arch": "resnet18",
        "num_classes": 10,
        "path": str(clf),
        "preprocess": {"crop": None, "interpolation": "bilinear", "mean": [0.5], "resize": 16, "std": [0.5]},
        "source": "state_dict",
    }
    concept = rule_params("components_concept", cfg, {"concept": "digit_7"})
    assert concept["components"]["classifier"]["arch"] == "resnet18"
    loaded = []
    real = components.load_classifier
    monkeypatch.setattr(components, "load_classifier", lambda spec, device: loaded.append(spec) or real(spec, device))
    out = {"table": str(tmp_path / "b.parquet"), "samples": str(tmp_path / "b.safetensors")}
    run_action(components.baseline, "components_baseline", cfg, {"ddpm": str(ddpm), "classifier": []}, out)
    assert [(s["source"], s["path"]) for s in loaded] == [("state_dict", str(clf))]
    assert len(pd.read_parquet(out["table"])) == 2
    # without its own, the stage keeps models.classifier (the settings as before)
    del cfg["components"]["classifier"]
    cfg["components"]["classifier"] = None
    assert rule_params("components_baseline", cfg)["models"]["classifier"] == {"source": "demo"}


def test_its_classifier_is_checked_up_front(tmp_path):
    """Its classes' indices against ITS classifier, its checkpoint and preprocess, one line each."""
    from diffxai.config.checks import check_config
    from helpers import tiny_config

    cfg = tiny_config()
    cfg["classes"] = [{"name": "digit_3", "index": 3, "label": 3}, {"name": "digit_7", "index": 7, "label": 7}]
    cfg["components"]["eval_classes"] = [{"name": "digit_3", "index": 3}, {"name": "digit_7", "index": 497}]
    cfg["components"]["classifier"] = {"source": "torchvision", "arch": "resnet50"}
    assert check_config(copy.deepcopy(cfg))["components"]["classifier"]["weights"] == "IMAGENET1K_V1"
    cfg["components"]["classifier"] = {"source": "state_dict", "path": str(tmp_path / "r.pt"), "num_classes": 10}
    with pytest.raises(DiffxaiError, match=r"^.*r\.pt: classifier checkpoint does not exist$"):
        check_config(copy.deepcopy(cfg))
    (tmp_path / "r.pt").write_bytes(b"")
    required = r"^config\.components\.classifier\.preprocess: required for source state_dict"
    with pytest.raises(DiffxaiError, match=required):
        check_config(copy.deepcopy(cfg))
    cfg["components"]["classifier"]["preprocess"] = "none"
    unknown = r"^config\.components\.eval_classes\[1\]\.index: unknown class 497: the classifier has 10 classes"
    with pytest.raises(DiffxaiError, match=unknown):
        check_config(copy.deepcopy(cfg))
    cfg["components"]["classifier"]["source"] = "demo"
    with pytest.raises(DiffxaiError, match=r"^config\.components\.classifier\.source"):
        check_config(copy.deepcopy(cfg))


def test_sd14_judges_cad_by_resnet50_and_the_rest_by_resnet18():
    """config/sd14.yaml once gave models.classifier twice (the YAML loader kept the last, ResNet-18,
    for everything); now the stage names the paper's ResNet-50 itself."""
    from diffxai.config.checks import check_config
    from diffxai.config.load import load_config
    from diffxai.workflow.params import rule_params

    repo = Path(__file__).resolve().parents[1]
    cfg = check_config(load_config(repo / "config" / "sd14.yaml"), check_files=False)
    assert rule_params("components_baseline", cfg)["components"]["classifier"] == {
        "arch": "resnet50",
        "source": "torchvision",
        "weights": "IMAGENET1K_V1",
    }
    assert rule_params("schedules_generate", cfg, {"schedule": "uniform"})["models"]["classifier"]["arch"] == "resnet18"
