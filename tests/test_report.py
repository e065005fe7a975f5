"""`snakemake --report` on the tiny run: every plot with its caption, every table as a page."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from conftest import run_snakemake
from diffxai.plots.report import table_html

pytestmark = pytest.mark.e2e


def report_section(html: str, name: str) -> dict:
    m = re.search(rf'<script id="{name}">\s*var {name} = (.*?);\s*</script>', html, re.S)
    assert m, f"no {name} in the report"
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    run_snakemake(tiny_run.parents[1], "--report", str(out))
    html = out.read_text(encoding="utf-8")
    return html, report_section(html, "results"), report_section(html, "categories")


def caption_text(entry: dict) -> str:
    return re.sub(r"<[^>]+>", "", entry.get("caption") or "").strip()


def test_every_plot_is_in_the_report_with_a_caption(tiny_run, report):
    _, results, categories = report
    plots = sorted(p.relative_to(tiny_run.parents[1]).as_posix() for p in (tiny_run / "plots").rglob("*.png"))
    assert plots, "the tiny run made no plots"
    missing = [p for p in plots if p not in results]
    assert not missing, f"plots not marked report(...) in their rule: {missing}"
    short = [p for p in plots if len(caption_text(results[p])) < 80]
    assert not short, f"plots without a real caption: {short}"
    for foundation in ("Models", "Trajectories", "Likelihood", "Tables"):
        assert foundation in categories, categories.keys()
    assert "Jinja" not in "".join(caption_text(r) for r in results.values())


def test_every_table_is_in_the_report(tiny_run, report):
    _, results, categories = report
    tables = sorted(p.stem for p in (tiny_run / "tables").glob("*.parquet"))
    pages = {f"results/tiny/report/tables/{t}.html" for t in tables}
    assert pages <= set(results), sorted(pages - set(results))
    listed = {p for files in categories["Tables"].values() for p in files}
    assert pages <= listed
    assert all(t in caption_text(results[f"results/tiny/report/tables/{t}.html"]) for t in tables)


def test_captions_fill_in_the_config(report):
    html, results, _ = report
    caption = caption_text(results["results/tiny/plots/likelihood_by_view.png"])
    assert "2 images × 2 noise draws" in caption  # data.n_images and noise.n_draws of tiny.yaml
    desc = re.search(r'<script id="workflow-desc">(.*?)</script>', html, re.S).group(1)
    assert "tiny" in desc and "digit_3, digit_7" in desc


def test_table_page_shows_rows_columns_and_provenance(tiny_run):
    path = tiny_run / "tables" / "likelihood.parquet"
    df = pd.read_parquet(path)
    page = table_html(path, max_rows=3)
    for col in ("class_name", "step", "view", "prob"):
        assert f"<th>{col}</th>" in page
    assert f"{len(df)} rows" in page and f"(first 3 of {len(df)})" in page
    assert "diffxai.config_hash" in page and "One row per class, image, noise draw" in page
    assert page.count("<tr><td>") == 3
