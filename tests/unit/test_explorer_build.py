"""The explorer page's builder, in process, on small synthetic runs written to tmp_path: what each
stage adds (and that a stage left out adds no panel), that the numbers the page shows are the
tables' numbers at every step, the size budget, and one-line errors naming a broken file.

The page in a real browser is tests/test_explorer.py (on the tiny run)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diffxai.core.errors import DiffxaiError
from diffxai.plots import explorer
from diffxai.plots.explorer import Sources, page_size, read_data, write_page
from fake_runs import ATTR_STEPS, SAL_ALL, SAL_STEPS, TIMESTEPS, VIEWS, fake_run

SETTINGS = {"experiment": "fake", "class_names": ["digit_3", "digit_7"], "explorer": {}}


def class_files(out: Path) -> dict[str, dict]:
    _, _, manifest = read_data(out / "data" / "index.js")
    return {c["name"]: read_data(out / c["file"])[2] for c in manifest["classes"]}


@pytest.fixture
def run(tmp_path) -> Path:
    return fake_run(tmp_path / "results" / "fake")


def test_every_stage_has_its_panels_and_the_page_is_self_contained(run, tmp_path):
    out = tmp_path / "explorer"
    manifest = write_page(out, Sources.from_run(run), SETTINGS)
    assert [c["name"] for c in manifest["classes"]] == ["digit_3", "digit_7"]
    assert manifest["classes"][0]["has"] == ["trajectory", "likelihood", "attribution", "saliency", "schedules"]
    assert "saliency" not in manifest["classes"][1]["has"]  # saliency.classes: digit_3 only
    assert [c["name"] for c in manifest["concepts"]] == ["digit_3", "digit_7"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "data/class-000.js",
        "data/class-001.js",
        "data/concept-000.js",
        "data/concept-001.js",
        "data/index.js",
        "explorer.css",
        "explorer.js",
        "index.html",
    ]
    html = (out / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs and all(r.startswith("data:") or (out / r).is_file() for r in refs), refs
    for f in out.rglob("*"):
        if f.is_file():
            text = f.read_text()
            # no network: no remote URL (the SVG namespace is a name, never fetched), no fetch / XHR
            assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), f
            assert "fetch(" not in text and "XMLHttpRequest" not in text, f
    data = class_files(out)["digit_3"]
    assert data["axis"] == {"source": "trajectories", "steps": [0, 1, 2, 3, 4], "timesteps": TIMESTEPS}
    assert data["attribution"]["methods"] == ["ig", "occlusion"]
    assert data["saliency"]["methods"] == ["dfrise", "dfcam"]
    assert all(s["src"].startswith("data:image/png;base64,") for s in data["sheets"].values())
    assert not list(tmp_path.glob(".explorer*")), "temporary folders left behind"


def test_readouts_are_the_tables_values_at_every_step(run, tmp_path):
    out = tmp_path / "explorer"
    write_page(out, Sources.from_run(run), SETTINGS)
    data = class_files(out)["digit_3"]
    lik = pd.read_parquet(run / "tables" / "likelihood.parquet")
    lik = lik[lik["class_name"] == "digit_3"]
    for v in VIEWS:
        mean = lik[lik["view"] == v].groupby("step")["prob"].mean().to_numpy()
        np.testing.assert_allclose(data["likelihood"]["views"][v]["mean"], mean, rtol=1e-5)
        lo, hi = data["likelihood"]["views"][v]["lo"], data["likelihood"]["views"][v]["hi"]
        assert all(a <= m <= b for a, m, b in zip(lo, mean, hi))
        own = lik[(lik["view"] == v) & (lik["image_id"] == "img1") & (lik["draw"] == 1)].sort_values("step")
        k = 1 * data["trajectory"]["n_draws"] + 1  # image 1, draw 1
        np.testing.assert_allclose(data["likelihood"]["views"][v]["prob"][k], own["prob"], rtol=1e-5)
        assert data["likelihood"]["views"][v]["top1"][k] == own["top1_index"].tolist()
    fa = pd.read_parquet(run / "tables" / "faithfulness.parquet").set_index(
        ["class_name", "method", "view", "metric", "step"]
    )
    ig = data["attribution"]["maps"]["ig"]
    assert ig["steps"] == ATTR_STEPS and ig["timesteps"] == [999, 500, 0]
    for v in VIEWS:
        for metric in ("deletion_auc", "insertion_auc"):
            for j, st in enumerate(ATTR_STEPS):
                row = fa.loc[("digit_3", "ig", v, metric, st)]
                got = ig["faithfulness"][metric][v]["maps"][0][j]
                assert got == pytest.approx([row["value"], row["baseline_value"]], rel=1e-5)
    st = pd.read_parquet(run / "tables" / "saliency_stats.parquet").set_index(["class_name", "method", "step"])
    cam = data["saliency"]["maps"]["dfcam"]
    for j, step in enumerate(SAL_STEPS):
        want = st.loc[("digit_3", "dfcam", step), "deletion_auc"]
        assert cam["stats"]["deletion_auc"][0][j] == pytest.approx(want, rel=1e-5)
    steps = pd.read_parquet(run / "tables" / "schedule_steps.parquet")
    early = [it for it in data["schedules"]["items"] if it["name"] == "early"][0]
    want = steps[(steps["schedule"] == "early") & (steps["class_name"] == "digit_3")].groupby("step")["prob"].mean()
    np.testing.assert_allclose(early["curve"]["mean"], want.to_numpy(), rtol=1e-5)
    assert early["curve"]["timesteps"] == [999, 875, 749, 499]


def test_a_stage_left_out_leaves_no_panel(run, tmp_path):
    full = Sources.from_run(run)
    only = Sources(trajectories=full.trajectories, likelihood=full.likelihood, intervals=full.intervals)
    out = tmp_path / "explorer"
    manifest = write_page(out, only, SETTINGS)
    assert [c["has"] for c in manifest["classes"]] == [["trajectory", "likelihood"]] * 2
    assert manifest["concepts"] == []
    data = class_files(out)["digit_7"]
    assert data["attribution"] is data["saliency"] is data["schedules"] is data["tokens"] is None
    # Stable Diffusion's stages: saliency, schedules and components, no trajectories: the slider
    # runs over the saliency stage's sampling steps
    sd = Sources(saliency_maps=full.saliency_maps, saliency_stats=full.saliency_stats)
    manifest = write_page(out, sd, SETTINGS)
    assert [c["name"] for c in manifest["classes"]] == ["digit_3"]
    data = class_files(out)["digit_3"]
    assert data["axis"] == {"source": "saliency", "steps": [0, 1, 2, 3], "timesteps": SAL_ALL}
    assert data["trajectory"] is data["likelihood"] is data["attribution"] is None


def test_the_token_panel_appears_only_with_the_token_table(tmp_path):
    run = fake_run(tmp_path / "results" / "fake", tokens=True)
    out = tmp_path / "explorer"
    write_page(out, Sources.from_run(run), SETTINGS)
    data = class_files(out)
    assert data["digit_7"]["tokens"] is None
    tk = data["digit_3"]["tokens"]
    assert tk["tokens"] == ["a", "red", "digit"] and tk["timesteps"] == SAL_ALL
    table = pd.read_parquet(run / "tables" / "token_relevance.parquet")
    want = table[table["step"] == 2].groupby("token_index")["relevance"].mean().to_numpy()
    np.testing.assert_allclose(tk["relevance"][2], want, rtol=1e-5)


def test_a_demo_sized_page_stays_under_the_budget(tmp_path):
    """The demo's shapes (10 classes, 4 images x 3 draws x 20 steps x 2 views at 16 px, 3 methods
    at 10 steps) with incompressible random pixels: still far under 15 MB."""
    classes = [f"digit_{i}" for i in range(10)]
    ts = np.linspace(999, 0, 20).round().astype(int).tolist()
    run = fake_run(
        tmp_path / "results" / "demo",
        classes=classes,
        n_images=4,
        n_draws=3,
        size=16,
        timesteps=ts,
        attr_steps=list(range(0, 20, 2)),
        methods=("ig", "gradshap", "occlusion"),
        saliency=("digit_3", "digit_7"),
    )
    out = tmp_path / "explorer"
    write_page(out, Sources.from_run(run), {**SETTINGS, "class_names": classes})
    assert page_size(out) < 15e6
    largest = max(p.stat().st_size for p in (out / "data").glob("class-*.js"))
    assert largest < 1.5e6, "one class's file: the page loads a class only when it is shown"


def test_settings_limit_images_draws_and_size(run, tmp_path):
    out = tmp_path / "explorer"
    ex = {"max_images": 1, "max_draws": 1, "max_size": 4, "image_format": "webp", "quality": 50}
    write_page(out, Sources.from_run(run), {**SETTINGS, "explorer": ex})
    data = class_files(out)["digit_3"]
    tr = data["trajectory"]
    assert (tr["n_images"], tr["n_draws"]) == (1, 1)
    sheet = data["sheets"][tr["sheets"]["x_t"]]
    assert (sheet["h"], sheet["w"], sheet["n"]) == (4, 4, 5) and sheet["src"].startswith("data:image/webp;")
    assert data["sheets"][data["attribution"]["maps"]["ig"]["sheet"]]["src"].startswith("data:image/png;")


def test_a_broken_file_is_one_line_naming_it_and_leaves_the_old_page(run, tmp_path):
    out = tmp_path / "explorer"
    write_page(out, Sources.from_run(run), SETTINGS)
    before = (out / "data" / "class-000.js").read_text()
    bad = run / "tables" / "faithfulness.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DiffxaiError) as err:
        write_page(out, Sources.from_run(run), SETTINGS)
    assert str(err.value).startswith(f"{bad}: cannot read table") and "\n" not in str(err.value)
    assert (out / "data" / "class-000.js").read_text() == before, "a failed build replaced the page"
    assert not list(tmp_path.glob(".explorer*")), "temporary folders left behind"
    pd.DataFrame({"class_name": ["digit_3"]}).to_parquet(bad)
    with pytest.raises(DiffxaiError, match=r"faithfulness.parquet: missing columns \['image_id'"):
        write_page(out, Sources.from_run(run), SETTINGS)
    bad.unlink()
    traj = run / "trajectories" / "digit_7.safetensors"
    traj.write_bytes(traj.read_bytes()[:100])
    with pytest.raises(DiffxaiError, match=re.escape(str(traj)) + ": cannot read arrays"):
        write_page(out, Sources.from_run(run), SETTINGS)


def test_map_values_on_the_one_colour_scale():
    attr = np.zeros((4, 4))
    attr[1, 2], attr[0, 0], attr[3, 3] = 10.0, 0.1, -5.0
    v, ok = explorer.attribution_value(attr)
    assert ok and v[1, 2] == 1.0 and v[3, 3] == 0.0 and 0 < v[0, 0] < 0.05
    assert explorer.attribution_value(-np.ones((2, 2)))[0].max() == 0
    assert explorer.attribution_value(np.array([[np.nan, 1.0]]))[1] is False
    s = explorer.saliency_value(np.array([[2.0, 4.0], [3.0, 2.0]]))
    assert s.min() == 0 and s.max() == 1 and s[1, 0] == 0.5
    lut = explorer.colour_lut()
    assert len(lut) == 256 and all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in lut)


def test_a_panel_with_fewer_steps_shows_the_nearest_timestep():
    assert explorer.nearest([999, 500, 0], 749) == 1  # |500 - 749| < |999 - 749|
    assert explorer.nearest([666, 0], 999) == 0 and explorer.nearest([666, 0], 250) == 1
    assert explorer.nearest([750, 250], 500) == 0  # a tie: the first (noisier) step


def test_the_rule_reads_exactly_its_settings():
    from diffxai.config.checks import check_config
    from diffxai.config.load import load_config
    from diffxai.workflow.params import rule_params

    cfg = check_config(load_config(Path(__file__).resolve().parents[2] / "config" / "config.yaml"))
    params = rule_params("report_explorer", cfg)
    assert params == {
        "class_names": [c["name"] for c in cfg["classes"]],
        "experiment": "digits-demo",
        "explorer": {"image_format": "png", "max_draws": 3, "max_images": 4, "max_size": 256},
    }
    cfg["explorer"]["image_format"] = "webp"
    assert rule_params("report_explorer", cfg)["explorer"]["quality"] == 85
