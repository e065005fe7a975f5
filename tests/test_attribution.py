"""Attribution stage: known-answer maps, targets, batched = per-image parity, config errors, stage actions,
e2e tables."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from diffxai.core.errors import DiffxaiError
from diffxai.methods.attribution import (
    POSTER_METHODS,
    ClassLogit,
    ClassProbability,
    MapAttributor,
    attribute_kwargs,
    attribute_reference,
    build_method,
    build_methods,
    parameter_layers,
    randomise_layer,
    reduce_channels,
    target_score,
)
from diffxai.models.classifiers import Classifier, DemoCNN

torch.set_num_threads(1)

PATCH = (slice(4, 8), slice(9, 13))  # rows, cols of the patch class 1 reads


class PatchModel(nn.Module):
    """Three logits; logit k reads only patch k (class 1: rows 4-7, cols 9-12), through a ReLU."""

    def __init__(self, size=16):
        super().__init__()
        w = torch.zeros(3, 1, size, size)
        w[0, :, 0:4, 0:4] = 1.0
        w[1, :, PATCH[0], PATCH[1]] = 2.0
        w[2, :, 12:16, 0:4] = 1.0
        self.register_buffer("w", w)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x):
        return torch.relu((x[:, None] * self.w[None]).flatten(2).sum(-1)) + self.bias


def _patch_share(maps: torch.Tensor) -> torch.Tensor:
    a = reduce_channels(maps).abs()
    return a[:, PATCH[0], PATCH[1]].flatten(1).sum(1) / a.flatten(1).sum(1)


def _images(n=5, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.2 + 0.8 * torch.rand(n, 1, size, size, generator=g)


def _seeds(n, base=11):
    return [base * 1_000_003 + i * 7919 for i in range(n)]


EXTRA_METHODS = {
    "saliency": {"captum": "Saliency", "attribute": {"abs": False}},
    "smoothgrad": {
        "captum": "Saliency",
        "attribute": {"abs": False},
        "noise_tunnel": {"nt_type": "smoothgrad", "nt_samples": 4, "stdevs": 0.01},
    },
    "inputxgrad": {"captum": "InputXGradient"},
}


@pytest.mark.parametrize("name", list(POSTER_METHODS) + list(EXTRA_METHODS))
def test_toy_model_mass_in_patch(name):
    """A logit that reads one patch: every method puts (nearly) all its mass there."""
    spec = build_method(name, {**POSTER_METHODS, **EXTRA_METHODS}[name])
    x = _images()
    maps = MapAttributor(PatchModel(), spec).attribute(x, ClassLogit(1), _seeds(len(x)), batch_size=2)
    assert maps.shape == x.shape
    share = _patch_share(maps)
    assert (share > 0.99).all(), (name, share)
    pos = reduce_channels(maps)
    assert (pos[:, PATCH[0], PATCH[1]] > 0).all()  # the patch raises the logit


def test_toy_model_wide_occlusion_points_at_patch():
    """A 3x3 occlusion window smears attribution past the patch edge, but the peak and most of
    the positive mass stay inside."""
    window = {"sliding_window_shapes": ["C", 3, 3], "strides": ["C", 1, 1]}
    spec = build_method("occ3", {"captum": "Occlusion", "attribute": window})
    maps = reduce_channels(MapAttributor(PatchModel(), spec).attribute(_images(), ClassLogit(1)))
    flat = maps.flatten(1).argmax(1)
    rows, cols = flat // 16, flat % 16
    assert ((rows >= 4) & (rows < 8) & (cols >= 9) & (cols < 13)).all()
    assert (_patch_share(maps[:, None]) > 0.5).all()


def _cnn(seed=0, channels=1, width=8):
    torch.manual_seed(seed)
    net = DemoCNN(10, channels, width)
    for p in net.parameters():  # larger weights so logits are far from zero (relative errors meaningful)
        p.data.mul_(2.0)
    return Classifier(net).eval().requires_grad_(False)


@pytest.mark.parametrize("name", list(POSTER_METHODS) + ["saliency", "inputxgrad"])
@pytest.mark.parametrize(
    "channels, dtype, tol", [(1, torch.float64, 1e-5), (3, torch.float64, 1e-5), (1, torch.float32, 1e-4)]
)
@pytest.mark.parametrize("kind", [ClassLogit, ClassProbability])
def test_batched_equals_one_image_per_call(name, channels, dtype, tol, kind):
    """The batched maps equal Captum called on one image at a time: within 1e-5 of the map's
    scale in float64. In float32, batched convolutions round differently from single-image
    ones; Occlusion subtracts logits, so that rounding (~1e-7 of the logits) shows at ~1e-5 of
    the map scale: float32 is checked at 1e-4."""
    spec = build_method(name, {**POSTER_METHODS, **EXTRA_METHODS}[name])
    model = _cnn(channels=channels).to(dtype)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(7, channels, 16, 16, generator=g) * 2 - 1).to(dtype)
    t = [kind(int(i)) for i in torch.randint(0, 10, (7,), generator=g)]
    seeds = _seeds(7)
    batched = MapAttributor(model, spec).attribute(x, t, seeds, batch_size=3)
    reference = attribute_reference(model, spec, x, t, seeds)
    scale = reference.abs().max()
    assert scale > 0
    err = float((batched - reference).abs().max() / scale)
    assert err <= tol, (name, err)


def test_gradshap_independent_of_batch_size_and_seeded():
    spec = build_method("gradshap", POSTER_METHODS["gradshap"])
    model = _cnn()
    x = torch.rand(5, 1, 16, 16) * 2 - 1
    att = MapAttributor(model, spec)
    t = ClassLogit(3)
    a1 = att.attribute(x, t, _seeds(5), batch_size=1)
    a5 = att.attribute(x, t, _seeds(5), batch_size=5)
    torch.testing.assert_close(a1, a5, rtol=1e-5, atol=1e-6 * float(a5.abs().max()))
    again = att.attribute(x, t, _seeds(5), batch_size=2)
    torch.testing.assert_close(again, a5, rtol=1e-5, atol=1e-6 * float(a5.abs().max()))
    other = att.attribute(x, t, _seeds(5, base=12), batch_size=5)
    assert (other - a5).abs().max() > 1e-6 * a5.abs().max()
    with pytest.raises(ValueError, match="seed"):
        att.attribute(x, t, None)
    # the global RNGs are not touched by the reference loop either
    state, np_state = torch.get_rng_state(), np.random.get_state()
    attribute_reference(model, spec, x[:1], [t], _seeds(1))
    assert torch.equal(state, torch.get_rng_state())
    assert np.array_equal(np_state[1], np.random.get_state()[1])


def test_gradshap_keeps_a_16_bit_model_in_its_dtype():
    """The noise is drawn in float32 (Captum's draws, bit for bit) and added in the input's dtype:
    a bfloat16 model gets bfloat16 inputs, not float32 ones it cannot take."""
    spec = build_method("gradshap", POSTER_METHODS["gradshap"])
    model = _cnn().to(torch.bfloat16)
    x = (torch.rand(2, 1, 16, 16) * 2 - 1).to(torch.bfloat16)
    maps = MapAttributor(model, spec).attribute(x, ClassLogit(3), _seeds(2), batch_size=2)
    assert maps.shape[0] == 2 and torch.isfinite(maps.float()).all()


class _Softmax(nn.Module):
    """The old ``forward_function(model, "prob")``: the model followed by a softmax."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.softmax(self.net(x), dim=-1)


def test_targets_read_their_class_from_the_output():
    model = _cnn().double()
    x = torch.rand(4, 1, 16, 16, dtype=torch.float64) * 2 - 1
    logits = model(x)
    assert torch.equal(ClassLogit(2)(logits), logits[:, 2])
    assert torch.equal(ClassProbability(2)(logits), torch.softmax(logits, -1)[:, 2])
    for target in (ClassLogit(2), ClassProbability(2)):  # what Captum differentiates reads the same
        assert torch.equal(target.forward_function(model)(x)[:, target.index], target(logits))
    assert ClassLogit(2).forward_function(model) is model
    assert ClassLogit(2) == ClassLogit(2) and ClassLogit(2) != ClassProbability(2)
    p = ClassProbability(5)(logits)
    assert ((p > 0) & (p < 1)).all()


def test_probability_target_is_the_softmax_model_bit_for_bit():
    """A ClassProbability map is Captum's map of the softmax-wrapped model at the class index."""
    spec = build_method("ig", POSTER_METHODS["ig"])
    model = _cnn()
    x = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    new = MapAttributor(model, spec).attribute(x, ClassProbability(4), batch_size=2)
    old = MapAttributor(_Softmax(model), spec).attribute(x, ClassLogit(4), batch_size=2)
    assert torch.equal(new, old)


def test_targets_of_one_call_share_one_kind():
    spec = build_method("saliency", EXTRA_METHODS["saliency"])
    x = _images(2)
    with pytest.raises(ValueError, match="one ClassTarget kind"):
        MapAttributor(PatchModel(), spec).attribute(x, [ClassLogit(1), ClassProbability(1)])
    with pytest.raises(ValueError, match="one target per map"):
        MapAttributor(PatchModel(), spec).attribute(x, [ClassLogit(1)])


def test_target_score_is_the_probability_of_each_source_row():
    model = _cnn()
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    score = target_score(model, [ClassProbability(1), ClassProbability(7)])
    src = torch.tensor([0, 1, 1])
    p = torch.softmax(model(x), -1)
    assert torch.equal(score(x, src), torch.stack([p[0, 1], p[1, 7], p[2, 7]]))


def test_map_faithfulness_known_answer_and_chunking():
    """The patch the toy model reads, as a map, beats a random map on deletion and insertion; the
    joint chunked pass equals ``deletion_insertion`` run on maps and random maps separately."""
    from diffxai.methods.attribution import map_faithfulness
    from diffxai.metrics.faithfulness import deletion_insertion
    from diffxai.metrics.maps import random_maps

    model = PatchModel()
    x = 0.1 * _images(6)
    x[:, :, PATCH[0], PATCH[1]] = 0.25  # a bright patch on a dark image: blurring dims it
    perfect = torch.zeros(6, 16, 16)
    perfect[:, PATCH[0], PATCH[1]] = 1.0
    perfect += 0.01 * torch.rand(6, 16, 16, generator=torch.Generator().manual_seed(1))
    rnd = random_maps((16, 16), [torch.Generator().manual_seed(i) for i in range(6)])
    targets = [ClassProbability(1)] * 6
    kw = {"n_points": 9, "blur_kernel": 11, "blur_sigma": 5.0, "substrate": 0.0}
    fa = map_faithfulness(model, x, perfect, rnd, targets, batch_size=18, device="cpu", **kw)
    assert (fa["deletion_auc"] < fa["deletion_auc_random"]).all()
    assert (fa["insertion_auc"] > fa["insertion_auc_random"]).all()
    alone = deletion_insertion(x, perfect, target_score(model, targets), batch_size=1000, **kw)
    torch.testing.assert_close(fa["deletion_auc"], alone["deletion_auc"], rtol=0, atol=1e-6)
    alone = deletion_insertion(x, rnd, target_score(model, targets), batch_size=1000, **kw)
    torch.testing.assert_close(fa["insertion_auc_random"], alone["insertion_auc"], rtol=0, atol=1e-6)


def test_occlusion_window_scaled_to_image_size():
    spec = build_method("occlusion", POSTER_METHODS["occlusion"])
    assert attribute_kwargs(spec, (3, 224, 224))["sliding_window_shapes"] == (3, 15, 15)
    assert attribute_kwargs(spec, (3, 256, 256))["sliding_window_shapes"] == (3, 17, 17)
    assert attribute_kwargs(spec, (3, 256, 256))["strides"] == (3, 9, 9)
    assert attribute_kwargs(spec, (1, 16, 16))["sliding_window_shapes"] == (1, 1, 1)
    assert attribute_kwargs(spec, (1, 16, 16))["strides"] == (1, 1, 1)


@pytest.mark.parametrize(
    "entry, where",
    [
        ({"captum": "IntegratedGradientz"}, "methods.m.captum"),
        ({"captum": "IntegratedGradients", "attribute": {"n_stepz": 3}}, "methods.m.attribute.n_stepz"),
        ({"captum": "IntegratedGradients", "args": {"multiply": True}}, "methods.m.args.multiply"),
        ({"captum": "IntegratedGradients", "attribute": {"target": 3}}, "methods.m.attribute.target"),
        ({"captum": "LayerGradCam"}, "methods.m.captum"),
        ({"captum": "NoiseTunnel"}, "methods.m.captum"),
        ({"captum": "GradientShap", "attribute": {"baselines": 0.0}}, "methods.m.attribute.baselines"),
        ({"captum": "Saliency", "noise_tunnel": {"nt_sample": 3}}, "methods.m.noise_tunnel.nt_sample"),
        ({"captum": "Saliency", "batch_size": 0}, "methods.m.batch_size"),
        ({"captum": "Saliency", "extra": 1}, "methods.m.extra"),
        ({"attribute": {}}, "methods.m"),
    ],
)
def test_bad_method_is_one_line_error_naming_it(entry, where):
    with pytest.raises(DiffxaiError) as exc:
        build_method("m", entry)
    msg = str(exc.value)
    assert "\n" not in msg and f"config.attribution.{where}" in msg, msg


def test_config_validation_of_methods(repo):
    from diffxai.config.checks import check_attribution_config, validate_config
    from diffxai.config.load import load_config

    cfg = validate_config(load_config(repo / "config" / "config.yaml"))
    assert set(build_methods(cfg["attribution"]["methods"])) == {"ig", "gradshap", "occlusion"}
    bad = copy.deepcopy(cfg)
    bad["attribution"]["methods"]["ig"]["attribute"]["n_step"] = 5
    with pytest.raises(DiffxaiError, match=r"config\.attribution\.methods\.ig\.attribute\.n_step"):
        check_attribution_config(bad)
    raw = load_config(repo / "tests" / "configs" / "tiny.yaml")
    raw["attribution"]["methods"] = {"x": {"args": {}}}
    with pytest.raises(DiffxaiError, match="captum"):
        validate_config(raw)
    imagenet = validate_config(load_config(repo / "config" / "imagenet_cats.yaml"), check_files=False)
    check_attribution_config(imagenet)
    assert imagenet["attribution"]["steps"] == "all"


def test_select_steps():
    from diffxai.config.experiment import select_steps

    assert select_steps("all", 4) == [0, 1, 2, 3]
    assert select_steps(3, 20) == [0, 10, 19]
    assert select_steps(10, 20)[0] == 0 and select_steps(10, 20)[-1] == 19 and len(select_steps(10, 20)) == 10
    assert select_steps([-1, 0, 5], 20) == [0, 5, 19]
    with pytest.raises(DiffxaiError, match=r"config\.attribution\.steps: step 20"):
        select_steps([20], 20)


def test_cascading_randomisation_layers_and_determinism():
    model = _cnn()
    layers = parameter_layers(model)
    assert layers[0] == "net.head" and layers[-1] == "net.features.0" and len(layers) == 5
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    randomise_layer(a, "net.head", 5)
    randomise_layer(b, "net.head", 5)
    assert torch.equal(a.net.head.weight, b.net.head.weight)
    assert not torch.equal(a.net.head.weight, model.net.head.weight)
    assert torch.equal(a.net.features[0].weight, model.net.features[0].weight)
    with pytest.raises(DiffxaiError, match="unknown layer 'net.nope'"):
        randomise_layer(a, "net.nope", 5)


# --------------------------------------------------------------------------------------------
# the stage actions on a hand-made trajectory file
# --------------------------------------------------------------------------------------------


class Files(list):
    """Stands in for Snakemake's input / output lists: positional and named entries."""

    def __init__(self, *items, **named):
        super().__init__([*items, *named.values()])
        self._named = named
        self.__dict__.update(named)

    def get(self, name, default=None):
        return self._named.get(name, default)

    def items(self):
        return self._named.items()


@pytest.fixture
def small_job(tmp_path, repo):
    """A validated tiny config (every step, image and draw), one class's trajectory file and a demo
    classifier checkpoint."""
    from diffxai.config.checks import validate_config
    from diffxai.config.load import load_config
    from diffxai.io.arrays import save_arrays
    from diffxai.models.demo import save_demo_classifier

    cfg = validate_config(load_config(repo / "tests" / "configs" / "tiny.yaml"))
    cfg["attribution"].update(steps="all", max_images=None, draws=None)
    g = torch.Generator().manual_seed(0)
    n, k, s, size = 2, 2, 3, 8
    x0 = torch.rand(n, 1, size, size, generator=g) * 2 - 1
    xt = torch.rand(n, k, s, 1, size, size, generator=g) * 2 - 1
    traj = tmp_path / "digit_3.safetensors"
    arrays = {
        "x_t": xt,
        "x0_pred": xt.flip(-1),
        "timesteps": torch.tensor([999, 500, 0]),
        "x0": x0,
        "mask": x0[:, 0] > 0,
    }
    meta = {"class_name": "digit_3", "class_index": 3, "image_ids": ["a", "b"], "views": ["x_t", "x0_pred"]}
    save_arrays(traj, arrays, meta)
    torch.manual_seed(0)
    net = DemoCNN(10, 1, 4)
    clf = tmp_path / "classifier.safetensors"
    save_demo_classifier(net, clf, {"n_classes": 10, "in_channels": 1, "width": 4})
    return cfg, traj, clf, net


def _compute_files(tmp_path, traj, clf, tag=""):
    out = Files(
        maps=str(tmp_path / f"maps{tag}.safetensors"),
        stats=str(tmp_path / f"stats{tag}.parquet"),
        faithfulness=str(tmp_path / f"faith{tag}.parquet"),
    )
    return Files(trajectories=str(traj), classifier=str(clf)), out


def _params(rule, cfg, wildcards=None):
    """A job's settings as :func:`diffxai.workflow.jobs.run_job` hands them to its action (batch sizes
    merged in)."""
    from diffxai.workflow.params import merge, rule_execution, rule_params

    return merge(rule_params(rule, cfg, wildcards), rule_execution(rule, cfg, wildcards).values)


def _tracked(settings):
    """The settings as a job receives them with DIFFXAI_TRACK_PARAMS=1 (``threads`` read by run_job),
    and the set of paths read."""
    from diffxai.workflow.params import Tracked

    reads: set[str] = set()
    params = Tracked(settings, reads)
    params.get("threads")
    return params, reads


def test_compute_job(small_job, tmp_path):
    from diffxai.io.arrays import load_arrays
    from diffxai.io.tables import read_metadata
    from diffxai.stages.attribution import compute
    from diffxai.workflow.params import unread

    cfg, traj, clf, _ = small_job
    settings = _params("attribution_compute", cfg, {"cls": "digit_3", "method": "ig"})
    params, reads = _tracked(settings)
    inputs, out = _compute_files(tmp_path, traj, clf)
    compute(params, inputs, out)
    assert unread(settings, reads) == []  # the job reads every setting it is given
    arrays, meta = load_arrays(out.maps)
    assert arrays["maps"].shape == (2, 2, 3, 2, 8, 8)
    assert meta["views"] == ["x_t", "x0_pred"] and meta["captum"] == "IntegratedGradients"
    assert meta["output"] == "logit" and meta["class_index"] == 3
    stats, faith = pd.read_parquet(out.stats), pd.read_parquet(out.faithfulness)
    assert len(stats) == 24 and len(faith) == 48 and not stats["nonfinite"].any()
    assert stats["mask_share"].between(0, 1).all() and stats["pointing_hit"].isin([0.0, 1.0]).all()
    # the stored maps are the ones the stats describe
    row = stats.iloc[5]
    m = arrays["maps"][0, 0, 2, 1]
    assert (row["image_id"], row["draw"], row["step"], row["view"]) == ("a", 0, 2, "x0_pred")
    assert np.isclose(row["total_abs"], float(m.abs().sum()), rtol=1e-5)
    assert "diffxai.config_hash" in read_metadata(out.stats)
    # deterministic: a second run gives the same tables
    inputs, out2 = _compute_files(tmp_path, traj, clf, "2")
    compute(settings, inputs, out2)
    for a, b in ((out.stats, out2.stats), (out.faithfulness, out2.faithfulness)):
        assert Path(a).read_bytes() == Path(b).read_bytes()


def test_probability_output_changes_only_the_explained_score(small_job, tmp_path):
    """``attribution.output: prob`` explains the class's softmax probability: smaller maps, the same
    faithfulness baseline (random maps and the score do not depend on what is explained)."""
    from diffxai.stages.attribution import compute

    cfg, traj, clf, _ = small_job
    stats = {}
    for output in ("logit", "prob"):
        cfg["attribution"]["output"] = output
        inputs, out = _compute_files(tmp_path, traj, clf, output)
        compute(_params("attribution_compute", cfg, {"cls": "digit_3", "method": "ig"}), inputs, out)
        stats[output] = (pd.read_parquet(out.stats), pd.read_parquet(out.faithfulness))
    assert (stats["prob"][0]["total_abs"] < stats["logit"][0]["total_abs"]).all()
    assert stats["prob"][1]["baseline_value"].equals(stats["logit"][1]["baseline_value"])


def test_nan_maps_are_flagged_not_plotted(small_job, tmp_path):
    """A map holding NaN/Inf (e.g. an overflowing gradient) is flagged, never given a statistic,
    and hatched in the grid."""
    from diffxai.io.arrays import load_arrays
    from diffxai.io.trajectories import select_trajectories
    from diffxai.metrics.maps import map_statistics
    from diffxai.plots.attribution import map_grid
    from diffxai.plots.common import plot_style
    from diffxai.stages.attribution import compute

    cfg, traj, clf, _ = small_job
    inputs, out = _compute_files(tmp_path, traj, clf)
    compute(_params("attribution_compute", cfg, {"cls": "digit_3", "method": "gradshap"}), inputs, out)
    arrays, meta = load_arrays(out.maps)
    arrays["maps"][0, 1, 2, 0, 3, 3] = float("nan")
    arrays["maps"][1, 0, 0, 1, 0, 0] = float("inf")
    stats = map_statistics(arrays["maps"].float().flatten(0, 3))
    bad = stats["nonfinite"].view(arrays["nonfinite"].shape)
    assert int(bad.sum()) == 2 and bad[0, 1, 2, 0] and bad[1, 0, 0, 1]
    finite = stats["entropy"][~stats["nonfinite"]]
    assert stats["entropy"][stats["nonfinite"]].isnan().all() and not finite.isnan().any()
    arrays["nonfinite"] = bad
    png = tmp_path / "grid.png"
    traj_arrays, traj_meta = load_arrays(traj)
    sel = select_trajectories(traj_arrays, traj_meta, [0, 1, 2], meta["views"])
    with plot_style():
        map_grid(arrays, meta, sel.x, png, dpi=50)
    assert png.stat().st_size > 0


def test_nan_classifier_stops_the_job_with_one_line(small_job, tmp_path):
    """NaN logits are the model's fault, not a map to flag: one line naming the checkpoint, no outputs."""
    from diffxai.models.demo import save_demo_classifier
    from diffxai.stages.attribution import compute

    cfg, traj, _, net = small_job
    with torch.no_grad():
        net.features[0].weight[0, 0, 0, 0] = float("nan")
    bad_clf = tmp_path / "nan.safetensors"
    save_demo_classifier(net, bad_clf, {"n_classes": 10, "in_channels": 1, "width": 4})
    inputs, out = _compute_files(tmp_path, traj, bad_clf)
    params = _params("attribution_compute", cfg, {"cls": "digit_3", "method": "gradshap"})
    with pytest.raises(DiffxaiError, match=r"^classifier .*nan\.safetensors: produced NaN/Inf logits for \d+ of \d+"):
        compute(params, inputs, out)
    assert not any(os.path.exists(p) for p in out)


def test_unknown_view_is_one_line_error(small_job, tmp_path):
    from diffxai.stages.attribution import compute

    cfg, traj, clf, _ = small_job
    params = _params("attribution_compute", cfg, {"cls": "digit_3", "method": "ig"})
    inputs, out = _compute_files(tmp_path, traj, clf)
    params["attribution"]["views"] = ["x0_pred", "x0"]
    with pytest.raises(DiffxaiError, match=r"^config\.attribution\.views: view 'x0' is not in the trajectories"):
        compute(params, inputs, out)


def test_sanity_job_and_aggregate(small_job, tmp_path):
    from diffxai.stages.attribution import aggregate, compute, sanity
    from diffxai.workflow.params import unread

    cfg, traj, clf, _ = small_job
    settings = _params("attribution_sanity", cfg, {"method": "ig"})
    params, reads = _tracked(settings)
    out = tmp_path / "sanity.parquet"
    sanity(params, Files(trajectories=[str(traj)], classifier=str(clf)), Files(str(out)))
    assert unread(settings, reads) == []
    df = pd.read_parquet(out)
    assert list(df["layer"]) == ["net.head", "net.features.8", "net.features.5", "net.features.2", "net.features.0"]
    assert list(df["cascade_index"]) == [1, 2, 3, 4, 5]
    assert df["spearman"].between(-1, 1).all() and df["ssim"].between(-1, 1).all()
    assert (df["n_maps"] == 1).all()  # images_per_class 1, draw 0, one step, one view
    # randomising everything destroys the similarity of gradient maps
    assert df["spearman"].iloc[-1] < 0.9
    # the aggregate concatenates the jobs' tables under their contract specs
    inputs, job = _compute_files(tmp_path, traj, clf)
    compute(_params("attribution_compute", cfg, {"cls": "digit_3", "method": "ig"}), inputs, job)
    tables = Files(
        stats=str(tmp_path / "all_stats.parquet"),
        faithfulness=str(tmp_path / "all_faith.parquet"),
        sanity=str(tmp_path / "all_sanity.parquet"),
    )
    aggregate(
        _params("attribution_aggregate", cfg),
        Files(stats=[job.stats], faithfulness=[job.faithfulness], sanity=[str(out)]),
        tables,
    )
    assert pd.read_parquet(tables.sanity).equals(df)
    assert pd.read_parquet(tables.stats).equals(pd.read_parquet(job.stats))


def test_plot_actions(small_job, tmp_path):
    """The plot rules' actions draw every figure from a job's maps and tables."""
    from diffxai.plots.attribution import plot, plot_maps
    from diffxai.stages.attribution import compute, sanity

    cfg, traj, clf, _ = small_job
    inputs, job = _compute_files(tmp_path, traj, clf)
    compute(_params("attribution_compute", cfg, {"cls": "digit_3", "method": "occlusion"}), inputs, job)
    grid = tmp_path / "grid.png"
    plot_maps(_params("attribution_plot_maps", cfg), Files(maps=[job.maps], trajectories=[str(traj)]), Files(str(grid)))
    sanity_table = tmp_path / "sanity.parquet"
    sanity(
        _params("attribution_sanity", cfg, {"method": "occlusion"}),
        Files(trajectories=[str(traj)], classifier=str(clf)),
        Files(str(sanity_table)),
    )
    intervals = tmp_path / "intervals.parquet"
    pd.DataFrame(
        {
            "class_name": ["digit_3"] * 2,
            "view": ["x_t", "x0_pred"],
            "step_start": [0, 1],
            "step_end": [1, 2],
            "max_slope": [0.1, 0.2],
            "step_half": [1, -1],
            "final_prob": [0.5, 0.6],
        }
    ).to_parquet(intervals)
    names = ["stats_x_t", "stats_x0_pred", "classes", "faithfulness", "sanity"]
    figures = Files(**{n: str(tmp_path / f"{n}.png") for n in names})
    plot(
        _params("attribution_plot", cfg),
        Files(stats=job.stats, faithfulness=job.faithfulness, sanity=str(sanity_table), intervals=str(intervals)),
        figures,
    )
    for path in [grid, *figures]:
        assert os.path.getsize(path) > 1000, path


# --------------------------------------------------------------------------------------------
# end to end: the tiny DAG
# --------------------------------------------------------------------------------------------

STATS_CONTRACT = [
    "class_name",
    "image_id",
    "draw",
    "step",
    "timestep",
    "view",
    "method",
    "total_abs",
    "positive_fraction",
    "entropy",
    "gini",
    "top10_mass",
    "centroid_x",
    "centroid_y",
]
FAITH_CONTRACT = ["class_name", "method", "step", "metric", "value", "baseline_value"]
SANITY_CONTRACT = ["method", "layer", "spearman", "ssim"]


@pytest.mark.e2e
def test_tiny_run_attribution_tables(tiny_run):
    tables = tiny_run / "tables"
    st = pd.read_parquet(tables / "attribution_stats.parquet")
    fa = pd.read_parquet(tables / "faithfulness.parquet")
    sa = pd.read_parquet(tables / "sanity.parquet")
    assert set(STATS_CONTRACT + ["nonfinite", "mask_share", "pointing_hit"]) <= set(st.columns)
    assert set(FAITH_CONTRACT) <= set(fa.columns) and set(SANITY_CONTRACT) <= set(sa.columns)
    # tiny: 2 classes x 1 image x 1 draw x 3 steps x 2 views x 3 methods
    assert len(st) == 2 * 1 * 1 * 3 * 2 * 3
    assert len(fa) == 2 * len(st) and set(fa["metric"]) == {"deletion_auc", "insertion_auc"}
    assert set(st["method"]) == set(fa["method"]) == set(sa["method"]) == {"ig", "gradshap", "occlusion"}
    assert sorted(st["step"].unique()) == [0, 2, 4]
    assert len(sa) == 3 * 5  # 3 methods x 5 DemoCNN layers with parameters
    ok = st[~st["nonfinite"]]
    for col in ["positive_fraction", "entropy", "gini", "top10_mass", "centroid_x", "centroid_y", "mask_share"]:
        assert ok[col].between(0, 1).all(), col
    assert (ok["total_abs"] >= 0).all()
    assert fa["value"].dropna().between(0, 1).all() and fa["baseline_value"].between(0, 1).all()
    assert sa["spearman"].dropna().between(-1, 1).all() and sa["ssim"].dropna().between(-1, 1).all()
    # maps stored in the documented format
    from diffxai.io.arrays import load_arrays

    arrays, meta = load_arrays(tiny_run / "maps" / "attribution" / "occlusion" / "digit_7.safetensors")
    assert arrays["maps"].shape == (1, 1, 3, 2, 8, 8) and arrays["steps"].tolist() == [0, 2, 4]
    assert meta["spec"]["sliding_window_shapes"] == [1, 1, 1] and meta["class_index"] == 7
    json.dumps(meta)
    for name in [
        "attribution_classes",
        "attribution_faithfulness",
        "attribution_sanity",
        "attribution_stats_x_t",
        "attribution_stats_x0_pred",
        "attribution/ig/digit_3",
        "attribution/gradshap/digit_7",
        "attribution/occlusion/digit_3",
    ]:
        assert (tiny_run / "plots" / f"{name}.png").stat().st_size > 1000, name
