"""The timestep explorer (rule ``report_explorer``, :func:`build`): one static page,
``results/NAME/explorer/index.html``, that shows every stage of one run side by side at the same
step.

A class (or prompt) picker and one step slider (0 = pure noise → the cleanest step; arrow keys
step through) drive every panel at once: the trajectory's ``x_t`` and the denoiser's ``x̂0``, each
attribution method's map on each view, DF-RISE and DF-CAM on the denoiser's own trajectory, and
token relevance when the token stage ran; beside them the class-probability curve with its band
and critical interval, a cursor at the step and the numbers at the cursor. The schedules' final
samples and the component edits (before / after samples) have their own sections.

What the page is made of (everything inside the folder; no network, no CDN):

* ``index.html``, ``explorer.css``, ``explorer.js`` (:mod:`diffxai.plots.explorer_page`; plain
  JavaScript);
* ``data/index.js``: the manifest (classes, what ran, the colour scale);
* ``data/class-NNN.js`` per class, ``data/concept-NNN.js`` per component concept: numbers and
  images, loaded when that class or concept is shown.

Data files are JavaScript (``DIFFXAI_EXPLORER.register(...)``) so that the page works from
``file://``, where browsers refuse ``fetch``. Images are sprite sheets (one PNG, WebP or JPEG per
kind of panel, ``explorer.image_format``) inside them as data URIs; maps are 8-bit PNGs of the
map's value on the page's one colour scale, coloured in the browser.

The colour scale: every map is drawn as ``v`` in [0, 1] through matplotlib's ``turbo`` colours
over its image at the page's overlay opacity. ``v`` is, for an attribution map, its positive part
÷ the value at which the sorted positive mass reaches 95% (clipped at 1; as the attribution grids:
Captum's ``blended_heat_map``, ``sign="positive"``, ``outlier_perc=5``), and for DF-RISE / DF-CAM
the map min–max normalised (as the saliency overlays). Maps are per-map relative: compare where a
map points, not magnitudes across maps; the magnitudes are in ``attribution_stats.parquet``.

Only the stages that ran appear: :class:`Sources` holds the files the rule was given, and a kind
of panel without its files is left out of the page (no broken panel). A table or array that
cannot be read is a one-line error naming the file; the page is written to a temporary folder
and renamed into place when complete.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from PIL import Image

from diffxai.core.errors import DiffxaiError
from diffxai.io.readers import read_arrays, read_table
from diffxai.plots.attribution import _mean_ci, cumulative_threshold
from diffxai.plots.common import to_display
from diffxai.plots.explorer_page import CSS, INDEX_HTML, JS

METHOD_NAMES = {
    "ig": "IG",
    "gradshap": "GradientSHAP",
    "occlusion": "Occlusion",
    "dfrise": "DF-RISE",
    "dfcam": "DF-CAM",
}
VIEW_NAMES = {"x_t": "xₜ", "x0_pred": "x̂₀"}
VIEW_TITLES = {"x_t": "noisy input xₜ", "x0_pred": "denoiser's one-step x̂₀"}
#: the page's one colour scale (matplotlib colormap name) and default overlay opacity
COLOUR_MAP = "turbo"
OPACITY = 0.5
#: attribution maps: the top OUTLIER_PERC % of the positive mass is clipped (as the map grids)
OUTLIER_PERC = 5.0
#: the widest / tallest sprite sheet (WebP and JPEG stop at 16383 px)
MAX_SHEET_PX = 16000
#: the schema's defaults of ``explorer`` (a builder call without them, e.g. in a notebook)
DEFAULTS = {"max_images": 4, "max_draws": 3, "max_size": 256, "image_format": "png", "quality": 85}


TOKEN_COLUMNS = ["prompt", "sample", "step", "timestep", "token", "token_index", "relevance"]
SALIENCY_AUCS = ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc")
LIST_FIELDS = ("trajectories", "attribution_maps", "saliency_maps", "schedule_samples", "component_arrays")


@dataclass
class Sources:
    """The files of one run the page is built from; a stage that did not run has none."""

    trajectories: list[Path] = field(default_factory=list)
    likelihood: Path | None = None
    intervals: Path | None = None
    attribution_maps: list[Path] = field(default_factory=list)
    faithfulness: Path | None = None
    saliency_maps: list[Path] = field(default_factory=list)
    saliency_stats: Path | None = None
    schedule_samples: list[Path] = field(default_factory=list)
    schedule_sampling: Path | None = None
    schedule_steps: Path | None = None
    component_baseline: Path | None = None
    component_arrays: list[Path] = field(default_factory=list)
    concept_editing: Path | None = None
    token_relevance: Path | None = None

    @classmethod
    def from_inputs(cls, inputs) -> Sources:
        """From a rule's named inputs (Snakemake's ``input``, or any object with those attributes)."""
        kw: dict = {}
        for f in fields(cls):
            value = getattr(inputs, f.name, None)
            if f.name in LIST_FIELDS:
                values = [] if value is None else [value] if isinstance(value, (str, Path)) else list(value)
                kw[f.name] = [Path(str(v)) for v in values]
            elif value is not None and not isinstance(value, (list, tuple)):
                kw[f.name] = Path(str(value))
        return cls(**kw)

    @classmethod
    def from_run(cls, results: str | Path) -> Sources:
        """Every file a finished run ``results/NAME`` has (for a page built outside the DAG)."""
        r = Path(results)

        def one(rel: str) -> Path | None:
            return r / rel if (r / rel).is_file() else None

        def many(pattern: str) -> list[Path]:
            return sorted(r.glob(pattern))

        return cls(
            trajectories=many("trajectories/*.safetensors"),
            likelihood=one("tables/likelihood.parquet"),
            intervals=one("tables/critical_intervals.parquet"),
            attribution_maps=many("maps/attribution/*/*.safetensors"),
            faithfulness=one("tables/faithfulness.parquet"),
            saliency_maps=many("maps/saliency/*/*.safetensors"),
            saliency_stats=one("tables/saliency_stats.parquet"),
            schedule_samples=many("samples/schedules/*.safetensors"),
            schedule_sampling=one("tables/schedule_sampling.parquet"),
            schedule_steps=one("tables/schedule_steps.parquet"),
            component_baseline=one("components/baseline_samples.safetensors"),
            component_arrays=many("components/*/arrays.safetensors"),
            concept_editing=one("tables/concept_editing.parquet"),
            token_relevance=one("tables/token_relevance.parquet"),
        )


# --------------------------------------------------------------------------------------------
# encoding: images and maps as sprite sheets
# --------------------------------------------------------------------------------------------


def image_uint8(img, max_size: int) -> np.ndarray:
    """A ``(C, H, W)`` image in [-1, 1] as ``(h, w)`` or ``(h, w, 3)`` uint8, its longer side at
    most ``max_size`` (Lanczos downscaling; never upscaled: the page scales with nearest pixels)."""
    a = np.round(to_display(np.asarray(img, dtype=np.float32)) * 255).astype(np.uint8)
    return _fit(a, max_size, Image.Resampling.LANCZOS)


def _fit(a: np.ndarray, max_size: int, resample) -> np.ndarray:
    h, w = a.shape[:2]
    if max(h, w) <= max_size:
        return a
    scale = max_size / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(a).resize(size, resample))


def attribution_value(attr) -> tuple[np.ndarray, bool]:
    """``(v, finite)``: the map's positive part ÷ its 95%-mass threshold, clipped to [0, 1]
    (the module doc's colour scale); a map with NaN/Inf gives zeros and ``finite = False``."""
    a = np.asarray(attr, dtype=np.float64)
    if not np.isfinite(a).all():
        return np.zeros(a.shape), False
    pos = np.clip(a, 0, None)
    if pos.sum() <= 0:
        return np.zeros(a.shape), True
    thr = cumulative_threshold(pos, 100 - OUTLIER_PERC)
    return (np.clip(pos / thr, 0, 1) if thr > 0 else (pos > 0).astype(float)), True


def saliency_value(m) -> np.ndarray:
    """A DF-RISE / DF-CAM map min–max normalised to [0, 1] (zeros for a constant map)."""
    a = np.nan_to_num(np.asarray(m, dtype=np.float64))
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.zeros(a.shape)


def map_uint8(v: np.ndarray, max_size: int) -> np.ndarray:
    """A map value in [0, 1] ``(H, W)`` as uint8 (bilinear downscaling past ``max_size``)."""
    return _fit(np.round(np.clip(v, 0, 1) * 255).astype(np.uint8), max_size, Image.Resampling.BILINEAR)


def data_uri(a: np.ndarray, fmt: str = "png", quality: int = 85) -> str:
    """An ``(H, W)`` or ``(H, W, 3)`` uint8 array as a ``data:`` URI (PNG lossless; WebP / JPEG
    lossy at ``quality``)."""
    img = Image.fromarray(a)
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, format="PNG", optimize=True)
    elif fmt == "webp":
        img.convert("RGB").save(buf, format="WEBP", quality=quality, method=6)
    elif fmt == "jpeg":
        img.save(buf, format="JPEG", quality=quality)
    else:
        raise DiffxaiError("config.explorer.image_format", f"unknown format {fmt!r} (png, webp, jpeg)")
    return f"data:image/{fmt};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def sprite(cells: list[np.ndarray] | np.ndarray, fmt: str = "png", quality: int = 85) -> dict:
    """Equal-sized uint8 cells ``(n, h, w[, 3])`` packed row-major into one roughly square sheet:
    ``{"src": data URI, "n", "cols", "h", "w", "rgb"}``; cell ``i`` is at column ``i % cols``,
    row ``i // cols``."""
    cells = np.stack(list(cells)) if not isinstance(cells, np.ndarray) else cells
    n, h, w = cells.shape[:3]
    cols = max(1, min(n, math.ceil(math.sqrt(n * h / w)), MAX_SHEET_PX // w))
    rows = -(-n // cols)
    if rows * h > MAX_SHEET_PX:
        raise DiffxaiError(
            "config.explorer", f"{n} images of {h}x{w} px do not fit one sheet: lower max_images or max_size"
        )
    sheet = np.zeros((rows * h, cols * w, *cells.shape[3:]), dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = cells[i]
    return {"src": data_uri(sheet, fmt, quality), "n": int(n), "cols": int(cols), "h": int(h), "w": int(w)}


def colour_lut(name: str = COLOUR_MAP) -> list[str]:
    """The colour scale as 256 ``#rrggbb`` colours (index = round(255 · v))."""
    cmap = matplotlib.colormaps[name]
    return [matplotlib.colors.to_hex(cmap(i / 255)) for i in range(256)]


def nearest(values: Iterable[int], target: int) -> int:
    """The index of the value nearest ``target`` (the first of equals): how a panel whose stage
    computed fewer steps picks what to show at the cursor's timestep."""
    values = list(values)
    return min(range(len(values)), key=lambda i: (abs(int(values[i]) - int(target)), i))


def _num(x) -> float | None:
    """A JSON-safe float (NaN / Inf → ``None``), rounded to 6 significant digits."""
    if x is None:
        return None
    x = float(x)
    return float(f"{x:.6g}") if math.isfinite(x) else None


def _nums(xs) -> list:
    return [_num(x) for x in xs]


# --------------------------------------------------------------------------------------------
# what each stage contributes to one class's data
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    """The run's tables and array files, read once and keyed by class."""

    src: Sources
    settings: dict
    likelihood: pd.DataFrame | None = None
    intervals: pd.DataFrame | None = None
    faithfulness: pd.DataFrame | None = None
    saliency_stats: pd.DataFrame | None = None
    schedule_sampling: pd.DataFrame | None = None
    schedule_steps: pd.DataFrame | None = None
    concept_editing: pd.DataFrame | None = None
    tokens: pd.DataFrame | None = None
    trajectories: dict[str, Path] = field(default_factory=dict)
    attribution: dict[str, dict[str, Path]] = field(default_factory=dict)
    saliency: dict[str, dict[str, Path]] = field(default_factory=dict)
    schedules: list[tuple[dict, dict]] = field(default_factory=list)

    @classmethod
    def read(cls, src: Sources, settings: dict) -> Run:
        run = cls(src=src, settings=settings)
        t = {
            "likelihood": (src.likelihood, ["class_name", "image_id", "draw", "step", "view", "prob", "top1_index"]),
            "intervals": (src.intervals, ["class_name", "view", "step_start", "step_end", "max_slope", "step_half"]),
            "faithfulness": (
                src.faithfulness,
                ["class_name", "image_id", "draw", "step", "view", "method", "metric", "value", "baseline_value"],
            ),
            "saliency_stats": (
                src.saliency_stats,
                ["class_name", "sample", "step", "method", "layer", "deletion_auc", "insertion_auc"],
            ),
            "schedule_sampling": (src.schedule_sampling, ["schedule", "class_name", "seed", "prob", "top1_index"]),
            "schedule_steps": (src.schedule_steps, ["schedule", "class_name", "seed", "step", "timestep", "prob"]),
            "concept_editing": (src.concept_editing, ["concept", "edit", "eval_class", "prob", "accuracy"]),
            "tokens": (
                src.token_relevance,
                ["prompt", "sample", "step", "timestep", "token", "token_index", "relevance"],
            ),
        }
        for name, (path, cols) in t.items():
            if path is not None:
                setattr(run, name, read_table(path, cols))
        for p in src.trajectories:
            run.trajectories[_meta_of(p, "class_name")] = p
        for p in src.attribution_maps:
            meta = _meta(p)
            run.attribution.setdefault(_key(meta, "class_name", p), {})[_key(meta, "method", p)] = p
        for p in src.saliency_maps:
            meta = _meta(p)
            run.saliency.setdefault(_key(meta, "class_name", p), {})[_key(meta, "method", p)] = p
        for p in src.schedule_samples:
            arrays, meta = read_arrays(p, ["samples", "timesteps"])
            run.schedules.append((arrays, meta))
        return run

    def class_names(self, order: list[str]) -> list[str]:
        """The classes / prompts any stage has, in the config's order (``order``) first."""
        seen = list(order)
        extra = set(self.trajectories) | set(self.saliency) | set(self.attribution)
        if self.likelihood is not None:
            extra |= set(self.likelihood["class_name"])
        if self.tokens is not None:
            extra |= set(map(str, self.tokens["prompt"]))
        for name in sorted(extra - set(seen)):
            seen.append(name)
        return [n for n in seen if self.has_any(n)]

    def has_any(self, name: str) -> bool:
        return bool(
            name in self.trajectories
            or name in self.saliency
            or (self.tokens is not None and name in set(map(str, self.tokens["prompt"])))
            or any(name in m["class_names"] for _, m in self.schedules)
        )


def _meta(path: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    except Exception as exc:  # a file that is not safetensors, or damaged metadata
        raise DiffxaiError(str(path), f"cannot read arrays ({type(exc).__name__}: {exc})") from None


def _key(meta: dict, key: str, path: Path) -> str:
    if key not in meta:
        raise DiffxaiError(str(path), f"no {key!r} in its metadata (it has {sorted(meta)})")
    return str(meta[key])


def _meta_of(path: Path, key: str) -> str:
    return _key(_meta(path), key, path)


class Sheets:
    """The sprite sheets of one data file, deduplicated (the same cells are stored once)."""

    def __init__(self, fmt: str, quality: int):
        self.fmt, self.quality = fmt, quality
        self.sheets: dict[str, dict] = {}
        self._ids: dict[bytes, str] = {}

    def add(self, cells: list[np.ndarray], kind: str = "image") -> str:
        """Store ``cells`` (images in the configured format, maps always as PNG); its id."""
        stack = np.stack(cells)
        key = stack.tobytes() + str(stack.shape).encode() + kind.encode()
        if key not in self._ids:
            fmt = self.fmt if kind == "image" else "png"
            sid = f"s{len(self.sheets)}"
            self.sheets[sid] = sprite(stack, fmt, self.quality)
            self._ids[key] = sid
        return self._ids[key]


def _band(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean and 95% normal interval (1.96 standard errors, clipped to [0, 1]) of ``prob``."""
    out = _mean_ci(df, by, "prob")
    out["lo"] = (out["mean"] - out["ci"]).clip(0, 1)
    out["hi"] = (out["mean"] + out["ci"]).clip(0, 1)
    return out


def trajectory_part(run: Run, name: str, sheets: Sheets) -> dict | None:
    """x_t / x̂0 of the first images and draws, and the clean image, per view."""
    path = run.trajectories.get(name)
    if path is None:
        return None
    s = run.settings
    views = list(_meta(path).get("views") or [])
    head = dict.fromkeys(views, (s["max_images"], s["max_draws"]))
    arrays, meta = read_arrays(path, [*views, "timesteps"], head={**head, "x0": (s["max_images"],)})
    n, k, n_steps = arrays[views[0]].shape[:3]
    out = {
        "views": views,
        "image_ids": list(meta["image_ids"][:n]),
        "n_images": int(n),
        "n_draws": int(k),
        "steps": list(range(n_steps)),
        "timesteps": [int(t) for t in arrays["timesteps"].tolist()],
        "mode": meta.get("mode", "forward"),
        "sheets": {},
    }
    for v in views:
        x = arrays[v].float().numpy()
        out["sheets"][v] = sheets.add(
            [image_uint8(x[i, j, t], s["max_size"]) for i in range(n) for j in range(k) for t in range(n_steps)]
        )
    if "x0" in arrays:
        out["sheets"]["x0"] = sheets.add([image_uint8(x, s["max_size"]) for x in arrays["x0"].float().numpy()])
    return out


def likelihood_part(run: Run, name: str, traj: dict | None) -> dict | None:
    """P(class) per step and view: the band over every image × draw, and each shown image's own."""
    if run.likelihood is None:
        return None
    df = run.likelihood[run.likelihood["class_name"] == name]
    if df.empty:
        return None
    steps = sorted(int(s) for s in df["step"].unique())
    band = _band(df, ["view", "step"]).set_index(["view", "step"])
    own = {key: g.set_index("step").reindex(steps) for key, g in df.groupby(["view", "image_id", "draw"])}
    shown = [(img, d) for img in (traj["image_ids"] if traj else []) for d in range(traj["n_draws"] if traj else 0)]
    out: dict = {"views": {}, "intervals": {}, "steps": steps}
    for v in dict.fromkeys(df["view"]):
        b = band.loc[v].reindex(steps)
        entry: dict = {"mean": _nums(b["mean"]), "lo": _nums(b["lo"]), "hi": _nums(b["hi"]), "n": int(b["count"].max())}
        rows = [own.get((v, img, d)) for img, d in shown]
        entry["prob"] = [None if r is None else _nums(r["prob"]) for r in rows]
        entry["top1"] = [None if r is None else [None if pd.isna(x) else int(x) for x in r["top1_index"]] for r in rows]
        entry["top1_prob"] = [None if r is None or "top1_prob" not in r else _nums(r["top1_prob"]) for r in rows]
        out["views"][v] = entry
    if run.intervals is not None:
        for r in run.intervals[run.intervals["class_name"] == name].itertuples(index=False):
            out["intervals"][r.view] = {
                "start": int(r.step_start),
                "end": int(r.step_end),
                "half": int(r.step_half),
                "slope": _num(r.max_slope),
                "final": _num(getattr(r, "final_prob", None)),
            }
    return out


def attribution_part(run: Run, name: str, traj: dict | None, sheets: Sheets) -> dict | None:
    """Each method's maps (positive part, 95%-mass scale) at its steps, and their faithfulness."""
    files = run.attribution.get(name)
    if not files:
        return None
    s = run.settings
    out: dict = {"methods": [], "labels": {}, "captum": {}, "maps": {}}
    fa = run.faithfulness
    if fa is not None:
        fa = fa[fa["class_name"] == name]
    for method, path in sorted(files.items(), key=lambda kv: _method_order(kv[0])):
        arrays, meta = read_arrays(path, ["maps", "steps", "timesteps"])
        maps = arrays["maps"].float().numpy()  # (N, K, S', V, H, W)
        bad = arrays["nonfinite"].numpy() if "nonfinite" in arrays else np.zeros(maps.shape[:4], bool)
        n_img = min(maps.shape[0], traj["n_images"] if traj else maps.shape[0])
        draws = [int(d) for d in arrays["draws"].tolist()] if "draws" in arrays else list(range(maps.shape[1]))
        keep = [j for j, d in enumerate(draws) if d < s["max_draws"]]
        views, steps = list(meta["views"]), [int(x) for x in arrays["steps"].tolist()]
        cells, finite = [], []
        for i in range(n_img):
            for j in keep:
                for t in range(len(steps)):
                    for v in range(len(views)):
                        val, ok = attribution_value(maps[i, j, t, v])
                        ok = ok and not bool(bad[i, j, t, v])
                        cells.append(map_uint8(val if ok else np.zeros_like(val), s["max_size"]))
                        finite.append(ok)
        ids = list(meta["image_ids"][:n_img])
        entry = {
            "views": views,
            "steps": steps,
            "timesteps": [int(x) for x in arrays["timesteps"].tolist()],
            "image_ids": ids,
            "draws": [draws[j] for j in keep],
            "sheet": sheets.add(cells, kind="map"),
            "finite": finite,
            "faithfulness": _faithfulness(fa, method, views, steps, ids, [draws[j] for j in keep]),
        }
        out["methods"].append(method)
        out["labels"][method] = METHOD_NAMES.get(method, method)
        out["captum"][method] = meta.get("captum", "")
        out["maps"][method] = entry
    return out


def _method_order(method: str) -> tuple[int, str]:
    """The poster's methods first (IG, GradientSHAP, Occlusion), DF-RISE before DF-CAM, others by name."""
    order = list(METHOD_NAMES)
    return (order.index(method) if method in order else len(order), method)


def _faithfulness(fa, method, views, steps, ids, draws) -> dict | None:
    """Deletion / insertion AUC (and the random map's) per shown map, and the class mean per step."""
    if fa is None:
        return None
    sub = fa[fa["method"] == method]
    if sub.empty:
        return None
    if "nonfinite" in sub:
        sub = sub[~sub["nonfinite"].astype(bool)]
    idx = sub.set_index(["metric", "view", "image_id", "draw", "step"])
    mean = sub.groupby(["metric", "view", "step"])[["value", "baseline_value"]].mean()
    out: dict = {}
    for metric in ("deletion_auc", "insertion_auc"):
        if metric not in set(sub["metric"]):
            continue
        per_view = {}
        for v in views:
            cells = []
            for img in ids:
                for d in draws:
                    row = []
                    for st in steps:
                        key = (metric, v, img, d, st)
                        if key in idx.index:
                            r = idx.loc[key]
                            r = r.iloc[0] if isinstance(r, pd.DataFrame) else r
                            row.append([_num(r["value"]), _num(r["baseline_value"])])
                        else:
                            row.append(None)
                    cells.append(row)
            m = [
                [_num(mean.loc[(metric, v, st), "value"]), _num(mean.loc[(metric, v, st), "baseline_value"])]
                if (metric, v, st) in mean.index
                else None
                for st in steps
            ]
            per_view[v] = {"maps": cells, "mean": m}
        out[metric] = per_view
    return out or None


def saliency_part(run: Run, name: str, sheets: Sheets) -> dict | None:
    """DF-RISE / DF-CAM maps over the step's x̂0 on the denoiser's own sampling trajectory."""
    files = run.saliency.get(name)
    if not files:
        return None
    s = run.settings
    st = run.saliency_stats
    if st is not None:
        st = st[(st["class_name"] == name) & (st["layer"] == "all")]
    out: dict = {"methods": [], "labels": {}, "maps": {}}
    for method, path in sorted(files.items(), key=lambda kv: _method_order(kv[0])):
        arrays, meta = read_arrays(path, ["maps", "display", "steps", "timesteps"])
        n = min(arrays["maps"].shape[0], s["max_images"])
        k = arrays["maps"].shape[1]
        maps, display = arrays["maps"].float().numpy(), arrays["display"].float().numpy()
        pixel = meta.get("model_type", "pixel") == "pixel"
        entry = {
            "steps": [int(x) for x in arrays["steps"].tolist()],
            "timesteps": [int(x) for x in arrays["timesteps"].tolist()],
            "all_timesteps": [int(x) for x in meta.get("all_timesteps") or arrays["timesteps"].tolist()],
            "n_samples": int(n),
            "model_type": meta.get("model_type", "pixel"),
            "prompt": meta.get("prompt"),
            "sheet": sheets.add(
                [map_uint8(saliency_value(maps[i, j]), s["max_size"]) for i in range(n) for j in range(k)], kind="map"
            ),
            "display": sheets.add([image_uint8(display[i, j], s["max_size"]) for i in range(n) for j in range(k)]),
            "stats": None,
        }
        if pixel and "x_t" in arrays and arrays["x_t"].shape[2] in (1, 3):
            x = arrays["x_t"].float().numpy()
            entry["x_t"] = sheets.add([image_uint8(x[i, j], s["max_size"]) for i in range(n) for j in range(k)])
        if "final" in arrays:
            entry["final"] = sheets.add([image_uint8(f, s["max_size"]) for f in arrays["final"][:n].float().numpy()])
        if st is not None:
            m = st[st["method"] == method].set_index(["sample", "step"])
            cols = [
                c for c in ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc") if c in m
            ]
            entry["stats"] = {
                c: [
                    [_num(m.loc[(i, stp), c]) if (i, stp) in m.index else None for stp in entry["steps"]]
                    for i in range(n)
                ]
                for c in cols
            }
        out["methods"].append(method)
        out["labels"][method] = METHOD_NAMES.get(method, method)
        out["maps"][method] = entry
    return out


def schedules_part(run: Run, name: str, sheets: Sheets) -> dict | None:
    """The same seeds' final samples under each schedule, and P(class) of x̂0 along generation."""
    items = []
    for arrays, meta in run.schedules:
        if name not in meta["class_names"]:
            continue
        ci = meta["class_names"].index(name)
        samples = arrays["samples"][ci, : run.settings["max_images"]].float().numpy()
        sched = meta["schedule"]
        item = {
            "name": sched,
            "kind": meta.get("kind", ""),
            "gamma": _num(meta.get("gamma")),
            "timesteps": [int(x) for x in arrays["timesteps"].tolist()],
            "sheet": sheets.add([image_uint8(x, run.settings["max_size"]) for x in samples]),
            "seeds": list(range(len(samples))),
            "prob": None,
            "correct": None,
            "curve": None,
        }
        if run.schedule_sampling is not None:
            f = run.schedule_sampling
            f = f[(f["schedule"] == sched) & (f["class_name"] == name)].set_index("seed")
            item["prob"] = [_num(f.loc[i, "prob"]) if i in f.index else None for i in item["seeds"]]
            if "correct" in f:
                item["correct"] = [bool(f.loc[i, "correct"]) if i in f.index else None for i in item["seeds"]]
        if run.schedule_steps is not None:
            g = run.schedule_steps
            g = g[(g["schedule"] == sched) & (g["class_name"] == name)]
            if len(g):
                b = _band(g, ["step"])
                ts = g.groupby("step")["timestep"].first()
                item["curve"] = {
                    "steps": [int(x) for x in b["step"]],
                    "timesteps": [int(ts[x]) for x in b["step"]],
                    "mean": _nums(b["mean"]),
                    "lo": _nums(b["lo"]),
                    "hi": _nums(b["hi"]),
                    "n": int(b["count"].max()),
                }
        items.append(item)
    return {"items": items} if items else None


def tokens_part(run: Run, name: str, label: str) -> dict | None:
    """Token relevance per step (the token stage's ``token_relevance.parquet``; mean over samples
    of the aggregated layer ``all`` and method ``relevance`` where those columns exist)."""
    if run.tokens is None:
        return None
    df = run.tokens[run.tokens["prompt"].astype(str).isin([name, label])]
    if "layer" in df:
        df = df[df["layer"].astype(str) == "all"]
    if "method" in df and (df["method"] == "relevance").any():
        df = df[df["method"] == "relevance"]
    if df.empty:
        return None
    tokens = df.drop_duplicates("token_index").sort_values("token_index")
    mean = df.groupby(["step", "token_index"])["relevance"].mean()
    steps = sorted(df["step"].unique().tolist())
    ts = df.groupby("step")["timestep"].first()
    return {
        "tokens": [str(t) for t in tokens["token"]],
        "steps": [int(x) for x in steps],
        "timesteps": [int(ts[x]) for x in steps],
        "relevance": [[_num(mean.get((st, ti))) for ti in tokens["token_index"]] for st in steps],
    }


def step_axis(part: dict) -> dict | None:
    """The slider's steps of a class: the trajectory's noise levels, else the saliency stage's
    sampling steps, else the token stage's steps."""
    traj, sal, tok = part.get("trajectory"), part.get("saliency"), part.get("tokens")
    if traj:
        return {"source": "trajectories", "steps": traj["steps"], "timesteps": traj["timesteps"]}
    if sal:
        ts = sal["maps"][sal["methods"][0]]["all_timesteps"]
        return {"source": "saliency", "steps": list(range(len(ts))), "timesteps": ts}
    if tok:
        return {"source": "tokens", "steps": tok["steps"], "timesteps": tok["timesteps"]}
    return None


def class_data(run: Run, name: str, label: str) -> dict:
    """Everything the page shows of one class / prompt (the ``data/class-NNN.js`` file)."""
    s = run.settings
    sheets = Sheets(s["image_format"], s["quality"])
    part: dict = {"name": name, "label": label}
    part["trajectory"] = trajectory_part(run, name, sheets)
    part["likelihood"] = likelihood_part(run, name, part["trajectory"])
    part["attribution"] = attribution_part(run, name, part["trajectory"], sheets)
    part["saliency"] = saliency_part(run, name, sheets)
    part["schedules"] = schedules_part(run, name, sheets)
    part["tokens"] = tokens_part(run, name, label)
    part["axis"] = step_axis(part)
    part["sheets"] = sheets.sheets
    return part


def concept_data(run: Run, path: Path, base: dict | None) -> dict:
    """One concept's component edits: samples of every class unedited / erased / amplified (same
    seeds) and the classifier's accuracy on them (the selected edit of the sweep)."""
    s = run.settings
    arrays, meta = read_arrays(path)
    concept = _key(meta, "concept", path)
    sheets = Sheets(s["image_format"], s["quality"])
    classes = list(meta.get("classes") or [])
    edits: dict = {}
    for e in ("none", "erase", "amplify"):
        arr = base.get("none") if e == "none" and base else arrays.get(f"samples/{e}")
        if arr is None:
            continue
        n = min(arr.shape[1], s["max_images"])
        imgs = arr[:, :n].float().numpy() / 127.5 - 1
        edits[e] = {
            "n": int(n),
            "sheet": sheets.add([image_uint8(imgs[c, j], s["max_size"]) for c in range(len(imgs)) for j in range(n)]),
            "accuracy": None,
            "prob": None,
            "setting": None,
        }
    ed = run.concept_editing
    if ed is not None:
        sel = ed[ed["concept"] == concept]
        if "selected" in sel:
            sel = sel[sel["selected"].astype(bool)]
        for e, entry in edits.items():
            rows = sel[sel["edit"] == e].set_index("eval_class")
            if rows.empty:
                continue
            entry["accuracy"] = [_num(rows.loc[c, "accuracy"]) if c in rows.index else None for c in classes]
            entry["prob"] = [_num(rows.loc[c, "prob"]) if c in rows.index else None for c in classes]
            r0 = rows.iloc[0]
            entry["setting"] = {
                k: (_num(r0[k]) if isinstance(r0[k], (int, float, np.number)) else str(r0[k]))
                for k in ("rule", "rho", "k", "n_edited")
                if k in rows
            }
    return {"concept": concept, "classes": classes, "edits": edits, "sheets": sheets.sheets}


# --------------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------------


def _script(kind: str, key, data: dict) -> str:
    body = json.dumps(data, separators=(",", ":"), allow_nan=False)  # ASCII: any server's charset
    return f"DIFFXAI_EXPLORER.register({json.dumps(kind)},{json.dumps(key)},{body});\n"


def read_data(path: str | Path) -> tuple[str, object, dict]:
    """``(kind, key, data)`` of one of the page's data files (the inverse of how they are written)."""
    text = Path(path).read_text(encoding="utf-8")
    head = "DIFFXAI_EXPLORER.register("
    if not text.startswith(head) or not text.rstrip().endswith(");"):
        raise DiffxaiError(str(path), "not an explorer data file")
    kind, rest = json.JSONDecoder().raw_decode(text, len(head))
    key, rest = json.JSONDecoder().raw_decode(text, rest + 1)
    data, _ = json.JSONDecoder().raw_decode(text, rest + 1)
    return kind, key, data


def _labels(run: Run, names: list[str]) -> dict[str, str]:
    """A class's label: its prompt when the saliency files carry one, else its name."""
    out = {n: n for n in names}
    for name, files in run.saliency.items():
        for p in files.values():
            prompt = _meta(p).get("prompt")
            if prompt and name in out:
                out[name] = f"{name}: {prompt}"
    return out


def write_page(out_dir: str | Path, src: Sources, settings: dict) -> dict:
    """Build the page into ``out_dir`` (replaced as a whole, atomically); returns the manifest.

    ``settings``: ``experiment``, ``class_names`` (order of the picker) and ``explorer``
    (``max_images``, ``max_draws``, ``max_size``, ``image_format``, ``quality``)."""
    ex = {**DEFAULTS, **dict(settings.get("explorer") or {})}
    flat = {k: ex[k] for k in DEFAULTS} | {"experiment": settings["experiment"]}
    run = Run.read(src, flat)
    names = run.class_names(list(settings.get("class_names") or []))
    labels = _labels(run, names)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        (tmp / "data").mkdir()
        classes = []
        for i, name in enumerate(names):
            data = class_data(run, name, labels[name])
            file = f"data/class-{i:03d}.js"
            (tmp / file).write_text(_script("class", i, data), encoding="utf-8")
            has = [k for k in ("trajectory", "likelihood", "attribution", "saliency", "schedules", "tokens") if data[k]]
            classes.append({"name": name, "label": labels[name], "file": file, "has": has})
        base = read_arrays(src.component_baseline)[0] if src.component_baseline else None
        concepts = []
        for i, path in enumerate(src.component_arrays):
            data = concept_data(run, path, base)
            file = f"data/concept-{i:03d}.js"
            (tmp / file).write_text(_script("concept", i, data), encoding="utf-8")
            concepts.append({"name": data["concept"], "file": file})
        manifest = {
            "experiment": settings["experiment"],
            "classes": classes,
            "concepts": concepts,
            "views": VIEW_NAMES,
            "view_titles": VIEW_TITLES,
            "colour": {"name": COLOUR_MAP, "lut": colour_lut(), "opacity": OPACITY, "outlier_perc": OUTLIER_PERC},
            "settings": {k: ex[k] for k in DEFAULTS},
        }
        (tmp / "data" / "index.js").write_text(_script("manifest", 0, manifest), encoding="utf-8")
        (tmp / "explorer.js").write_text(JS, encoding="utf-8")
        (tmp / "explorer.css").write_text(CSS, encoding="utf-8")
        title = f"diffxai explorer: {settings['experiment']}"
        (tmp / "index.html").write_text(INDEX_HTML.replace("{{title}}", _html_escape(title)), encoding="utf-8")
        for p in [tmp, *tmp.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        _replace_dir(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return manifest


def _html_escape(s: str) -> str:
    import html

    return html.escape(s)


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target`` (an old ``target`` is moved aside first and
    removed after, so a reader sees the old page or the new one, never half of one)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old.{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def page_size(out_dir: str | Path) -> int:
    """The page's size in bytes (every file of the folder)."""
    return sum(p.stat().st_size for p in Path(out_dir).rglob("*") if p.is_file())


def build(params: dict, inputs, outputs) -> None:
    """The explorer page of the run (rule ``report_explorer``): ``outputs[0]`` = ``explorer/``."""
    import logging

    manifest = write_page(outputs[0], Sources.from_inputs(inputs), params)
    size = page_size(outputs[0])
    logging.getLogger("diffxai.explorer").info(
        "explorer: %d classes, %d concepts, %.2f MB", len(manifest["classes"]), len(manifest["concepts"]), size / 1e6
    )
