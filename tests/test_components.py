"""Tests of component attribution (CAD) and concept editing: known answers, edit rules, bad input,
and the tiny end-to-end run's tables and plots."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn as nn
from helpers import build_tiny_pixel_ddpm

from diffxai.core.errors import DiffxaiError
from diffxai.methods import components as cad

CONCEPT = {"name": "thing", "index": 0}


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


class ToyModel(cad.ConceptModel):
    def __init__(self, unet):
        self.unet = unet

    def eps(self, x, t, cond):
        return self.unet(x, t, cond)

    def cond(self, concept, n):
        return torch.full((n,), concept["index"], dtype=torch.long)

    def null(self, n):
        return torch.full((n,), 2, dtype=torch.long)

    @property
    def alphas_cumprod(self):
        return torch.linspace(0.99, 0.01, 1000, dtype=torch.float64)

    @property
    def num_train_timesteps(self):
        return 1000


def toy_items(model, n=5, s=3):
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(n, s, 4, generator=g)
    return cad.erase_items(model, x_t, torch.tensor([900, 500, 100]), CONCEPT, batch_size=4)


def test_toy_concept_weight_ranks_first():
    model = ToyModel(ToyUNet())
    params = cad.select_parameters(model.unet, [r"\.weight$"])
    attr, j = cad.attribute(model, toy_items(model), params, batch_size=4)
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
    edited = model.with_unet(cad.apply_edit(model.unet, cad.global_masks(attr, 1)))
    assert cad.objective_value(edited, toy_items(model), 4, refresh_target=True) == pytest.approx(0.0, abs=1e-8)


def test_batched_accumulation_equals_one_backward_per_item(tmp_path):
    from diffxai.models.pixel import load_diffusion

    path = build_tiny_pixel_ddpm(tmp_path / "ddpm", image_size=8, channels=1, n_classes=10)
    model = cad.PixelConceptModel(load_diffusion(str(path)))
    concept = {"name": "digit_3", "index": 3}
    traj = model.sample([concept], 3, n_steps=4, guidance=2.0, seed=0, stage="test", record=True)
    assert traj["x_t"].shape == (3, 4, 1, 8, 8) and traj["timesteps"].tolist() == [750, 500, 250, 0]
    items = cad.erase_items(model, traj["x_t"], traj["timesteps"], concept, batch_size=5)
    params = cad.select_parameters(model.unet, cad.PIXEL_DEFAULT_PATTERNS)
    before = {n: p.detach().clone() for n, p in model.unet.named_parameters()}
    a_batched, j_b = cad.attribute(model, items, params, batch_size=12)
    a_naive, j_n = cad.attribute_naive(model, items, params)
    assert j_b == pytest.approx(j_n, rel=1e-5)
    for n in a_batched:
        scale = a_naive[n].abs().max().item()
        torch.testing.assert_close(a_batched[n], a_naive[n], rtol=1e-4, atol=1e-4 * scale)
    assert all(not p.requires_grad and p.grad is None for p in model.unet.parameters())
    for n, p in model.unet.named_parameters():
        assert torch.equal(p, before[n])
    # amplify items: N images × S timesteps, noise seeded
    amp = cad.amplify_items(model, traj["latents"], concept, traj["timesteps"], seed=0)
    amp2 = cad.amplify_items(model, traj["latents"], concept, traj["timesteps"], seed=0)
    assert len(amp) == 12 and torch.equal(amp.x, amp2.x)
    a_amp, j_a = cad.attribute(model, amp, params, batch_size=12)
    assert j_a > 0 and all(torch.isfinite(a).all() for a in a_amp.values())
    # counterfactual: restores the weight, and zeroing a weight with zero attribution does nothing
    comps = cad.sample_components(a_batched, n_random=3, n_top=2, seed=0, concept="digit_3")
    assert [g for _, _, g in comps].count("top") == 2 and len(comps) == 5
    cf = cad.counterfactual(model, items, a_batched, comps, batch_size=12)
    assert list(cf["group"]).count("top") == 2 and cf["actual_delta"].notna().all()
    for n, p in model.unet.named_parameters():
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
            if m[r].any():
                assert rows[r][m[r]].min() >= rows[r][~m[r]].max() or not (rows[r][~m[r]] > 0).any() or \
                    rows[r][m[r]].min() >= rows[r][~m[r]][rows[r][~m[r]] > 0].max()  # fmt: skip
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

    from diffxai.config.load import load_config, validate_config
    from diffxai.stages.components import check_components_config

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


def test_tiny_run_component_tables_and_plots(tiny_run):
    from diffxai.io.tables import read_metadata

    tables = tiny_run / "tables"
    attr = pd.read_parquet(tables / "component_attribution.parquet")
    assert set(cad.ATTRIBUTION_COLUMNS) <= set(attr.columns)
    assert set(attr["concept"]) == {"digit_3", "digit_7"} and set(attr["objective"]) == {"erase", "amplify"}
    assert (attr["positive_mass"] >= 0).all() and (attr["negative_mass"] <= 0).all() and (attr["n_weights"] > 0).all()
    assert attr["parameter"].str.contains("class_embedding|time_emb_proj").all()
    ed = pd.read_parquet(tables / "concept_editing.parquet")
    assert set(cad.EDITING_COLUMNS + ["rule", "k", "selected"]) <= set(ed.columns)
    assert set(ed["edit"]) == {"none", "erase", "amplify"}
    assert ed["prob"].between(0, 1).all() and ed["accuracy"].between(0, 1).all()
    for (concept, edit), g in ed[ed["selected"]].groupby(["concept", "edit"]):
        assert set(g["eval_class"]) == {"digit_3", "digit_7"}, (concept, edit)
    cf = pd.read_parquet(tables / "component_counterfactual.parquet")
    assert {"predicted_delta", "actual_delta", "pearson", "spearman"} <= set(cf.columns) and len(cf) > 0
    assert read_metadata(tables / "concept_editing.parquet")["diffxai.seed"] == "0"
    for name in ("components_attribution_mass", "components_editing", "components_counterfactual", "components_samples"):
        assert (tiny_run / "plots" / f"{name}.png").stat().st_size > 1000


def test_sd_path_on_tiny_stable_diffusion(tmp_path):
    """The whole concept driver on a tiny SD pipeline: prompts as concepts, "" as c_b, ff weights."""
    from helpers import build_tiny_resnet_state_dict
    from tiny_sd import build_tiny_sd

    from diffxai.config.load import validate_config
    from diffxai.stages.components import components_baseline, components_concept, components_plot

    sd = build_tiny_sd(tmp_path / "sd")
    clf = build_tiny_resnet_state_dict(tmp_path / "clf.safetensors", num_classes=10)
    cfg = validate_config({
        "experiment": "tiny-sd", "device": "cpu", "stages": ["components"],
        "models": {"diffusion": {"source": "pretrained", "type": "stable_diffusion", "id": str(sd)},
                   "classifier": {"source": "state_dict", "arch": "resnet18", "path": str(clf), "num_classes": 10}},
        "classes": [{"name": "church", "index": 0}, {"name": "golf_ball", "index": 1}],
        "components": {"concepts": ["church"], "objective": {"n_samples": 2, "n_steps": 3, "guidance": 3.0},
                       "sweep": [{"rule": "per_row", "rho": 0.05}, {"rule": "global", "k": 10}],
                       "evaluation": {"samples_per_class": 2, "n_steps": 2, "grid_per_class": 2},
                       "counterfactual": {"n_random": 3, "n_top": 1, "n_items": 3}},
        "plots": {"dpi": 50},
    })  # fmt: skip
    out = tmp_path / "out"
    components_baseline(cfg, None, None, str(out / "base.parquet"), str(out / "base.safetensors"))
    paths = [str(out / f) for f in ("attr.parquet", "edit.parquet", "cf.parquet", "arrays.safetensors")]
    components_concept(cfg, "church", None, None, str(out / "base.parquet"), *paths)
    attr = pd.read_parquet(paths[0])
    assert attr["parameter"].str.contains(r"ff\.net\.(?:0\.proj|2)\.weight").all() and len(attr) >= 4
    ed = pd.read_parquet(paths[1])
    assert set(ed["edit"]) == {"none", "erase", "amplify"} and set(ed["eval_class"]) == {"church", "golf_ball"}
    assert (ed.loc[ed["rule"] == "global", "n_edited"] == 10).all()
    cf = pd.read_parquet(paths[2])
    assert len(cf) == 8 and cf["actual_delta"].notna().all()
    plots = [str(tmp_path / f"{n}.png") for n in ("mass", "edit", "cf", "grid")]
    components_plot(cfg, paths[0], paths[1], paths[2], str(out / "base.safetensors"), [paths[3]], *plots)
    assert all(Path(p).stat().st_size > 1000 for p in plots)
