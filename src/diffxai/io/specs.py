"""One spec per table: the columns, their dtype kinds and the row key of every Parquet table the
pipeline writes, checked when the table is written (:func:`diffxai.io.tables.write_table`).

The contract tables are those of the design's "Output contract" (``results/NAME/tables/``); the
``required`` columns of a spec are the contract's columns plus the row key, and a table may carry
more columns than its spec lists (extra columns are allowed and not checked). Per-job partial
tables (``likelihood/{cls}.parquet``, ``attribution/{method}/{cls}.stats.parquet``, …) share the
spec of the table they are aggregated into; :func:`spec_for_path` finds it from a path.

Dtype kinds (what :func:`dtype_kind` returns for a pandas column):

- ``"string"``: pandas' string dtype, or ``object`` holding only ``str`` (and missing values);
- ``"int64"``, ``"int32"``, …, ``"float64"``, ``"float32"``, …: the numpy width (nullable
  ``Int64``/``Float64`` count as ``int64``/``float64``); ``"bool"``: numpy or nullable boolean;
- ``"null"``: an ``object`` column with no value at all (an empty table, or a column that is
  ``None`` throughout, such as ``prompt`` for pixel models). It matches every kind: nothing in it
  contradicts the spec.

A spec may say ``"float"`` for a column whose width follows the data it is computed from (any
float width matches).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import pandas as pd
import pyarrow as pa

from diffxai.core.errors import DiffxaiError

STRING, INT, FLOAT, BOOL = "string", "int64", "float64", "bool"
ANY_FLOAT = "float"
NULL = "null"


@dataclass(frozen=True)
class TableSpec:
    """A table's contract.

    Attributes:
        name: the table's registry name (the file stem of ``results/NAME/tables/NAME.parquet``).
        description: one line, what a row is.
        columns: column → dtype kind (see the module doc), for every column the table is known
            to carry; columns outside it are allowed and not checked.
        key: the columns that identify a row ("one row per"); no two rows may share them.
        required: the columns every table of this kind must have (contract columns + key).
    """

    name: str
    description: str
    columns: dict[str, str] = field(hash=False)
    key: tuple[str, ...]
    required: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        """Every column, in the order the stage writes them."""
        return list(self.columns)

    def __post_init__(self):
        unknown = [c for c in dict.fromkeys((*self.key, *self.required)) if c not in self.columns]
        if unknown:
            raise ValueError(f"spec {self.name}: key/required columns {unknown} have no dtype in columns")
        missing_key = [c for c in self.key if c not in self.required]
        if missing_key:
            raise ValueError(f"spec {self.name}: key columns {missing_key} must be required")


def _spec(
    name: str,
    description: str,
    key: tuple[str, ...],
    required: list[str],
    extra: dict[str, str],
    kinds: dict[str, str],
    order: list[str] | None = None,
) -> TableSpec:
    """A spec from its required columns (dtype from ``kinds``, ``float64`` unless given) plus
    ``extra`` optional columns; ``order`` is the column order the stage writes (default: required,
    then extra)."""
    req = list(required) + [c for c in key if c not in required]
    cols = {c: kinds.get(c, FLOAT) for c in req}
    for c, kind in extra.items():
        cols.setdefault(c, kind)
    if order is not None:
        assert sorted(order) == sorted(cols), f"{name}: order must list every column once"
        cols = {c: cols[c] for c in order}
    return TableSpec(name, description, cols, tuple(key), tuple(req))


# dtype kinds of the column names shared by several tables (everything else float64 unless stated)
_KINDS = {
    **dict.fromkeys(
        (
            "class_name",
            "image_id",
            "view",
            "method",
            "layer",
            "metric",
            "schedule",
            "pair",
            "class_a",
            "class_b",
            "ends_as",
            "kind",
            "schedule_a",
            "schedule_b",
            "concept",
            "parameter",
            "edit",
            "eval_class",
            "objective",
            "group",
            "rule",
            "model",
            "role",
            "source",
            "evaluated_on",
            "model_id",
            "prompt",
            "model_type",
            "eval_score",
            "eval_target",
            "sampler",
            "captum",
            "shape",
        ),
        STRING,
    ),
    **dict.fromkeys(
        (
            "class_index",
            "draw",
            "step",
            "timestep",
            "top1_index",
            "step_start",
            "step_end",
            "step_half",
            "sample",
            "n_steps",
            "seed",
            "switch_step",
            "switch_timestep",
            "final_top1",
            "n_seeds",
            "commit_step",
            "commit_timestep",
            "n_weights",
            "k",
            "flat_index",
            "n_items",
            "cascade_index",
            "n_maps",
            "n_valid",
            "n_masks_used",
            "n",
            "sweep_index",
            "n_edited",
            "n_selected",
            "n_parameters",
            "n_eval",
            "decided_step",
            "decided_timestep",
            "first_timestep",
            "last_timestep",
            "n_moved",
        ),
        INT,
    ),
    **dict.fromkeys(("nonfinite", "correct", "same_top1", "selected", "is_target"), BOOL),
}

_SPEC_LIST = [
    # ---- the design's contract tables -------------------------------------------------------
    _spec(
        "likelihood",
        "classifier softmax: one row per class, image, noise draw, step, view",
        key=("class_name", "image_id", "draw", "step", "view"),
        required=[
            "class_name",
            "class_index",
            "image_id",
            "draw",
            "step",
            "timestep",
            "view",
            "prob",
            "logit",
            "top1_index",
            "top1_prob",
            "entropy",
        ],
        extra={},
        kinds=_KINDS,
    ),
    _spec(
        "critical_intervals",
        "steepest rise of the mean class probability: one row per class, view",
        key=("class_name", "view"),
        required=["class_name", "view", "step_start", "step_end", "max_slope", "step_half", "final_prob"],
        extra={},
        kinds=_KINDS,
    ),
    _spec(
        "attribution_stats",
        "statistics of one attribution map: one row per class, image, draw, step, view, method",
        key=("class_name", "image_id", "draw", "step", "view", "method"),
        required=[
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
        ],
        extra={
            "class_index": INT,
            "nonfinite": BOOL,
            "mask_share": FLOAT,
            "mask_area": FLOAT,
            "pointing_hit": FLOAT,
            "captum": STRING,
        },
        kinds=_KINDS,
    ),
    # "one row per map and metric": a map is (class, image, draw, step, view, method)
    _spec(
        "faithfulness",
        "deletion/insertion AUC of a map against a random map: one row per map and metric",
        key=("class_name", "image_id", "draw", "step", "view", "method", "metric"),
        required=["class_name", "method", "step", "metric", "value", "baseline_value"],
        extra={"timestep": INT, "nonfinite": BOOL},
        kinds=_KINDS,
        order=[
            "class_name",
            "image_id",
            "draw",
            "step",
            "timestep",
            "view",
            "method",
            "metric",
            "value",
            "baseline_value",
            "nonfinite",
        ],
    ),
    _spec(
        "sanity",
        "model-randomisation sanity check: one row per method, randomised layer",
        key=("method", "layer"),
        required=["method", "layer", "spearman", "ssim"],
        extra={
            "cascade_index": INT,
            "spearman_signed": FLOAT,
            "spearman_std": FLOAT,
            "ssim_std": FLOAT,
            "n_maps": INT,
            "n_valid": INT,
        },
        kinds=_KINDS,
        order=[
            "method",
            "layer",
            "cascade_index",
            "spearman",
            "ssim",
            "spearman_signed",
            "spearman_std",
            "ssim_std",
            "n_maps",
            "n_valid",
        ],
    ),
    _spec(
        "saliency_stats",
        "DF-RISE / DF-CAM map statistics: one row per class/prompt, sample, step, "
        "saliency method, layer ('all' when aggregated)",
        key=("class_name", "sample", "step", "method", "layer"),
        required=[
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
        ],
        extra={
            "random_deletion_auc": FLOAT,
            "random_insertion_auc": FLOAT,
            "n_masks_used": INT,
            "prompt": STRING,
            "model_type": STRING,
            "guidance": FLOAT,
            "eval_score": STRING,
            "eval_target": STRING,
        },
        kinds=_KINDS,
    ),
    # gamma is NaN for the uniform schedule
    _spec(
        "schedule_sampling",
        "final sample of a generation: one row per schedule, class/prompt, seed",
        key=("schedule", "class_name", "seed"),
        required=["schedule", "gamma", "n_steps", "class_name", "seed", "prob", "top1_index"],
        extra={
            "kind": STRING,
            "class_index": INT,
            "top1_prob": FLOAT,
            "correct": BOOL,
            "x0_prob_mean": FLOAT,
            "decided_step": INT,
            "decided_timestep": INT,
            "sampler": STRING,
            "guidance": FLOAT,
            "first_timestep": INT,
            "last_timestep": INT,
            "n_moved": INT,
        },
        kinds=_KINDS,
    ),
    # the design says "one row per concept, parameter tensor"; the stage writes one per objective too
    _spec(
        "component_attribution",
        "attribution mass of a parameter tensor: one row per concept, objective (erase / amplify), parameter tensor",
        key=("concept", "objective", "parameter"),
        required=["concept", "parameter", "n_weights", "positive_mass", "negative_mass", "top_fraction_mass"],
        extra={"abs_mass": FLOAT, "max_attribution": FLOAT, "shape": STRING, "objective_value": FLOAT},
        kinds=_KINDS,
    ),
    _spec(
        "concept_editing",
        "classifier check of an edited model: one row per concept, edit, rho, evaluated class",
        key=("concept", "edit", "rho", "eval_class"),
        required=["concept", "edit", "rho", "eval_class", "prob", "accuracy"],
        extra={
            "rule": STRING,
            "k": INT,
            "class_index": INT,
            "n": INT,
            "sweep_index": INT,
            "n_edited": INT,
            "n_selected": INT,
            "score": FLOAT,
            "retention": FLOAT,
            "selected": BOOL,
            "is_target": BOOL,
        },
        kinds=_KINDS,
    ),
    # the design says "one row per model"; the stage writes one per model, metric and class
    _spec(
        "models",
        "what each model is and how good it is: one row per model, metric, class ('all' overall)",
        key=("model", "metric", "class_name"),
        required=["model", "metric", "class_name", "value"],
        extra={
            "role": STRING,
            "source": STRING,
            "n_parameters": INT,
            "n_eval": INT,
            "evaluated_on": STRING,
            "model_id": STRING,
        },
        kinds=_KINDS,
    ),
    # ---- the stages' further tables -----------------------------------------------------------
    _spec(
        "schedule_steps",
        "x̂0 class probability during a generation: one row per schedule, class/prompt, seed, step",
        key=("schedule", "class_name", "seed", "step"),
        required=["schedule", "gamma", "n_steps", "class_name", "seed", "step", "timestep", "prob", "top1_index"],
        extra={"kind": STRING, "top1_prob": FLOAT, "class_index": INT},
        kinds=_KINDS,
    ),
    # the distances keep the dtype of the stored samples (float32 in the demo)
    _spec(
        "schedule_distances",
        "band-split SSIM between two schedules' samples: one row per schedule pair, class/prompt, seed",
        key=("schedule_a", "schedule_b", "class_name", "seed"),
        required=[
            "schedule_a",
            "schedule_b",
            "class_name",
            "seed",
            "ssim",
            "ssim_low",
            "ssim_high",
            "rmse_low",
            "rmse_high",
        ],
        extra={"same_top1": BOOL},
        kinds={**_KINDS, **dict.fromkeys(("ssim", "ssim_low", "ssim_high", "rmse_low", "rmse_high"), ANY_FLOAT)},
    ),
    _spec(
        "commitment",
        "class switch during generation: one row per class pair, schedule, switch step, seed",
        key=("pair", "schedule", "switch_step", "seed"),
        required=[
            "pair",
            "class_a",
            "class_b",
            "schedule",
            "switch_step",
            "switch_timestep",
            "seed",
            "final_top1",
            "prob_a",
            "prob_b",
            "ends_as",
        ],
        extra={"n_steps": INT, "kind": STRING},
        kinds=_KINDS,
    ),
    _spec(
        "commitment_summary",
        "share of seeds ending as either class: one row per class pair, schedule, switch step",
        key=("pair", "schedule", "switch_step"),
        required=[
            "pair",
            "class_a",
            "class_b",
            "schedule",
            "switch_step",
            "switch_timestep",
            "share_a",
            "share_b",
            "n_seeds",
            "commit_step",
            "commit_timestep",
        ],
        extra={},
        kinds=_KINDS,
    ),
    _spec(
        "component_counterfactual",
        "one weight zeroed alone, predicted vs actual change: one row per concept, "
        "objective, parameter tensor, flat index",
        key=("concept", "objective", "parameter", "flat_index"),
        required=[
            "concept",
            "objective",
            "parameter",
            "flat_index",
            "group",
            "weight",
            "attribution",
            "predicted_delta",
            "actual_delta",
            "actual_delta_full",
            "n_items",
            "pearson",
            "spearman",
            "pearson_random",
            "spearman_random",
        ],
        extra={},
        kinds=_KINDS,
    ),
    # not under tables/: components/baseline.parquet, the unedited model's evaluation
    _spec(
        "component_baseline",
        "classifier check of the unedited model: one row per evaluated class",
        key=("edit", "eval_class"),
        required=["edit", "eval_class", "prob", "accuracy"],
        extra={"class_index": INT, "n": INT},
        kinds=_KINDS,
    ),
]

SPECS: dict[str, TableSpec] = {s.name: s for s in _SPEC_LIST}
"""Every table spec, by registry name (= the file stem under ``results/NAME/tables/``)."""

# per-job tables → the spec of their aggregate, as glob patterns on a path's last parts (in order:
# the first pattern that matches wins)
PARTIAL_PATTERNS: tuple[tuple[str, str], ...] = (
    ("likelihood/*.parquet", "likelihood"),
    ("attribution/sanity/*.parquet", "sanity"),
    ("attribution/*/*.stats.parquet", "attribution_stats"),
    ("attribution/*/*.faithfulness.parquet", "faithfulness"),
    ("saliency/*/*.parquet", "saliency_stats"),
    ("schedules/commitment/*.parquet", "commitment"),
    ("schedules/*_steps.parquet", "schedule_steps"),
    ("schedules/*.parquet", "schedule_sampling"),
    ("components/baseline.parquet", "component_baseline"),
    ("components/*/attribution.parquet", "component_attribution"),
    ("components/*/editing.parquet", "concept_editing"),
    ("components/*/counterfactual.parquet", "component_counterfactual"),
)


def get_spec(spec: TableSpec | str) -> TableSpec:
    """``spec`` itself, or the registered spec of that name (one-line :class:`DiffxaiError` if none)."""
    if isinstance(spec, TableSpec):
        return spec
    try:
        return SPECS[spec]
    except KeyError:
        raise DiffxaiError(str(spec), f"no table spec of this name (known: {', '.join(sorted(SPECS))})") from None


def spec_for_path(path: str | Path) -> TableSpec:
    """The spec of a table file under ``results/NAME/``: ``tables/STEM.parquet`` by its stem, a
    per-job table by :data:`PARTIAL_PATTERNS`."""
    parts = PurePath(path).parts
    if len(parts) >= 2 and parts[-2] == "tables":
        return get_spec(PurePath(path).name.removesuffix(".parquet"))
    for pattern, name in PARTIAL_PATTERNS:
        n = len(PurePath(pattern).parts)
        if len(parts) >= n and fnmatch.fnmatchcase("/".join(parts[-n:]), pattern):
            return SPECS[name]
    raise DiffxaiError(str(path), "no table spec for this path")


def dtype_kind(col: pd.Series) -> str:
    """The dtype kind of a column (see the module doc)."""
    dt = col.dtype
    if isinstance(dt, pd.ArrowDtype):
        at = dt.pyarrow_dtype
        if pa.types.is_string(at) or pa.types.is_large_string(at):
            return STRING
        if pa.types.is_null(at):
            return NULL
    if pd.api.types.is_bool_dtype(dt):
        return BOOL
    if isinstance(dt, pd.StringDtype):
        return STRING
    if pd.api.types.is_integer_dtype(dt) or pd.api.types.is_float_dtype(dt):
        return getattr(dt, "numpy_dtype", dt).name
    if pd.api.types.is_object_dtype(dt):
        inferred = pd.api.types.infer_dtype(col, skipna=True)
        if inferred == "empty":
            return NULL
        if inferred == "string":
            return STRING
        return f"object ({inferred})"
    return str(dt)


def kind_matches(actual: str, expected: str) -> bool:
    """Whether a column of kind ``actual`` satisfies a spec's ``expected`` kind."""
    return actual in (expected, NULL) or (expected == ANY_FLOAT and actual.startswith("float"))


def _show(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def check_table(df: pd.DataFrame, spec: TableSpec | str) -> None:
    """Check ``df`` against its spec; raise a one-line :class:`DiffxaiError` ``"<table>: <problem>"``
    when a required column is missing, a spec column has the wrong dtype kind, or two rows share the
    row key (missing values in the key count as equal)."""
    spec = get_spec(spec)
    missing = [c for c in spec.required if c not in df.columns]
    if missing:
        raise DiffxaiError(
            spec.name, f"missing contract column{'s' if len(missing) > 1 else ''} {', '.join(repr(c) for c in missing)}"
        )
    dup_names = df.columns[df.columns.duplicated()].unique().tolist()
    if dup_names:
        raise DiffxaiError(spec.name, f"column {dup_names[0]!r} appears more than once")
    for c, expected in spec.columns.items():
        if c in df.columns:
            actual = dtype_kind(df[c])
            if not kind_matches(actual, expected):
                raise DiffxaiError(spec.name, f"column {c!r} has dtype {actual}, the spec says {expected}")
    key = list(spec.key)
    dup = df.duplicated(subset=key, keep=False)
    if bool(dup.any()):
        first = df.loc[dup, key].iloc[0]
        example = ", ".join(f"{c}={_show(first[c])}" for c in key)
        raise DiffxaiError(spec.name, f"{int(dup.sum())} rows share their row key ({', '.join(key)}), e.g. {example}")
