"""Parquet tables with provenance, written atomically and checked against their contract spec.

Every Parquet file carries key-value metadata (``diffxai.*`` keys): the hash of the job's settings,
diffxai version and source (AST) hash, torch / diffusers / captum versions, device and seed.
:func:`write_table` checks a table against its spec (:mod:`diffxai.io.specs`) before writing it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

import diffxai
from diffxai.core.codehash import source_hash
from diffxai.io.atomic import _atomic_target
from diffxai.io.specs import TableSpec, check_table, get_spec

EXECUTION_KEYS = {"stages", "resources"}


def _scientific(obj):
    if isinstance(obj, dict):
        return {k: _scientific(v) for k, v in obj.items() if k not in EXECUTION_KEYS}
    if isinstance(obj, list):
        return [_scientific(v) for v in obj]
    return obj


def config_hash(config: dict) -> str:
    """SHA-256 (16 hex) of the config (canonical JSON, sorted keys), leaving out the keys that only
    say how and what to run (``stages``, ``resources``), which never change a table's values."""
    text = json.dumps(_scientific(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _version(mod: str) -> str:
    """Installed version of ``mod``, read from package metadata (importing diffusers costs seconds)."""
    from importlib import metadata

    try:
        return metadata.version(mod)
    except metadata.PackageNotFoundError:
        pass
    try:
        return __import__(mod).__version__
    except Exception:
        return "absent"


def provenance(config: dict, device: str | torch.device = "cpu") -> dict[str, str]:
    """The metadata every table carries: the hash of the settings the job ran with (its rule's
    params; the whole config when called with it), the diffxai source hash (AST), versions, device."""
    plain = config.untracked() if hasattr(config, "untracked") else config
    return {
        "diffxai.config_hash": config_hash(plain),
        "diffxai.version": diffxai.__version__,
        "diffxai.source_hash": source_hash(),
        "diffxai.torch": torch.__version__,
        "diffxai.diffusers": _version("diffusers"),
        "diffxai.captum": _version("captum"),
        "diffxai.device": str(device),
        "diffxai.seed": str(config.get("seed", "")),
        "diffxai.experiment": str(config.get("experiment", "")),
    }


def write_parquet(df: pd.DataFrame, path: str | Path, meta: dict[str, str]) -> None:
    """Write ``df`` with ``meta`` as schema metadata; the file appears only when complete."""
    path = Path(path)
    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    existing = table.schema.metadata or {}
    table = table.replace_schema_metadata({**existing, **{k.encode(): str(v).encode() for k, v in meta.items()}})
    tmp = _atomic_target(path)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_table(df: pd.DataFrame, path: str | Path, spec: TableSpec | str, meta: dict[str, str]) -> None:
    """Check ``df`` against its table spec (a :class:`~diffxai.io.specs.TableSpec` or its name in
    :data:`~diffxai.io.specs.SPECS`), then :func:`write_parquet` it; a table that breaks its
    contract raises a one-line :class:`~diffxai.core.errors.DiffxaiError` and writes nothing."""
    check_table(df, get_spec(spec))
    write_parquet(df, path, meta)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``diffxai.*`` metadata of a Parquet file."""
    md = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in md.items() if k.startswith(b"diffxai.")}


def concat_parquet(paths: list[str | Path]) -> pd.DataFrame:
    """Concatenate per-job tables in the given order."""
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def aggregate_meta(params: dict, inputs: list[str | Path]) -> dict[str, str]:
    """Provenance of a table made from per-job tables: the job's settings, and the device the
    per-job tables were computed on (read from the first input's metadata)."""
    device = read_metadata(inputs[0]).get("diffxai.device", "cpu") if inputs else "cpu"
    return provenance(params, device)


def aggregate_tables(params: dict, outputs: dict) -> None:
    """Concatenate per-job tables into aggregate tables: ``{out_path: ([job tables...], spec)}``,
    each checked against its contract spec, one provenance for all."""
    first = next(iter(outputs.values()))[0]
    meta = aggregate_meta(params, first)
    for out, (inputs, spec) in outputs.items():
        write_table(concat_parquet(inputs), out, spec, meta)
