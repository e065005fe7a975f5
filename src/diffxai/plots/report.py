"""Tables for ``snakemake --report``: each Parquet table rendered as a self-contained HTML page.

The report shows images and HTML inline but offers other files only as downloads, so every
``results/NAME/tables/<name>.parquet`` that ``rule all`` builds gets a page
``results/NAME/report/tables/<name>.html`` (one job renders them all): what one row is, the columns and their types, the
provenance metadata the table carries, and the rows (the first ``max_rows``; the Parquet file
itself stays the complete record).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from diffxai.io.atomic import _atomic_target
from diffxai.io.tables import read_metadata

# One row per ... (the output contract of design.md; tables not listed get a generic line).
TABLE_ROWS = {
    "likelihood": "class, image, noise draw, step and view: the classifier's probability of the class",
    "critical_intervals": "class and view: the steps over which the class probability rises fastest",
    "attribution_stats": "class, image, draw, step, view and attribution method: statistics of one map",
    "faithfulness": "map group and metric: deletion / insertion AUC against a random map",
    "sanity": "method and randomised layer: similarity of the maps before and after randomisation",
    "saliency_stats": "class/prompt, sample, step, saliency method and layer: statistics of one saliency map",
    "schedule_sampling": "schedule, class/prompt and seed: how well the generated sample shows its class",
    "schedule_steps": "schedule, class/prompt, seed and step: the class probability of the x0 prediction",
    "component_attribution": "concept and parameter tensor: how much attribution mass the tensor carries",
    "concept_editing": "concept, edit, rho and evaluated class: classifier probability after the edit",
    "models": "model: what it is and how good it is",
}


CSS = """
body { font-family: sans-serif; font-size: 13px; margin: 1em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; }
td.l, th.l { text-align: left; }
caption { text-align: left; font-weight: bold; padding: 4px 0; }
"""


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_html(path: str | Path, name: str | None = None, max_rows: int = 500) -> str:
    """The HTML page for one Parquet table (see the module doc); ``name`` defaults to the file stem."""
    path = Path(path)
    name = name or path.stem
    df = pd.read_parquet(path)
    meta = read_metadata(path)
    schema = pq.read_schema(path)
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{esc(name)}</title><style>{CSS}</style></head><body>",
        f"<h2>{esc(name)}.parquet</h2>",
        f"<p>One row per {esc(TABLE_ROWS.get(name, 'record'))}. {len(df)} rows, {df.shape[1]} columns.</p>",
        "<table><caption>Columns</caption><tr><th class='l'>column</th><th class='l'>type</th></tr>",
    ]
    parts += [f"<tr><td class='l'>{esc(f.name)}</td><td class='l'>{esc(str(f.type))}</td></tr>" for f in schema]
    parts.append("</table>")
    if meta:
        parts.append("<table><caption>Provenance</caption>")
        parts += [f"<tr><td class='l'>{esc(k)}</td><td class='l'>{esc(v)}</td></tr>" for k, v in sorted(meta.items())]
        parts.append("</table>")
    shown = df.head(max_rows)
    note = f" (first {max_rows} of {len(df)})" if len(df) > max_rows else ""
    parts.append(f"<table><caption>Rows{note}</caption><tr>")
    parts += [f"<th>{esc(str(c))}</th>" for c in shown.columns]
    parts.append("</tr>")
    for row in shown.itertuples(index=False):
        parts.append("<tr>" + "".join(f"<td>{esc(_fmt(v))}</td>" for v in row) + "</tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)


def write_tables_html(parquets: list[str | Path], out_dir: str | Path, max_rows: int = 500) -> None:
    """Render each table to ``out_dir/<stem>.html`` (each page written atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for parquet in parquets:
        out = out_dir / f"{Path(parquet).stem}.html"
        tmp = _atomic_target(out)
        try:
            tmp.write_text(table_html(parquet, max_rows=max_rows), encoding="utf-8")
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)


def tables(params: dict, inputs, outputs) -> None:
    """One HTML page per table of the run (rule ``report_tables``; shown by ``snakemake --report``)."""
    write_tables_html(list(inputs), outputs[0], max_rows=params["max_rows"])
