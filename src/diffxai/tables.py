"""Parquet tables and array files with provenance, written atomically.

Every Parquet file carries key-value metadata (``diffxai.*`` keys): config hash, diffxai
version and source hash, torch / diffusers / captum versions, device and seed. Arrays (maps,
trajectories) are safetensors files with string metadata; never pickles.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

import diffxai

PACKAGE_DIR = Path(diffxai.__file__).resolve().parent


@lru_cache(maxsize=None)
def source_hash(*modules: str) -> str:
    """SHA-256 (16 hex) of the package's source files, or of the named modules only."""
    files = sorted(PACKAGE_DIR.glob("*.py")) if not modules else [PACKAGE_DIR / f"{m}.py" for m in modules]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


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
    """The metadata every table carries."""
    return {
        "diffxai.config_hash": config_hash(config),
        "diffxai.version": diffxai.__version__,
        "diffxai.source_hash": source_hash(),
        "diffxai.torch": torch.__version__,
        "diffxai.diffusers": _version("diffusers"),
        "diffxai.captum": _version("captum"),
        "diffxai.device": str(device),
        "diffxai.seed": str(config.get("seed", "")),
        "diffxai.experiment": str(config.get("experiment", "")),
    }


def _atomic_target(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


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


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``diffxai.*`` metadata of a Parquet file."""
    md = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in md.items() if k.startswith(b"diffxai.")}


def concat_parquet(paths: list[str | Path]) -> pd.DataFrame:
    """Concatenate per-job tables in the given order."""
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def aggregate_tables(config: dict, device, outputs: dict[str, list[str | Path]]) -> None:
    """Concatenate per-job tables into aggregate tables: ``{out_path: [job tables...]}``, one
    provenance for all."""
    meta = provenance(config, device)
    for out, inputs in outputs.items():
        write_parquet(concat_parquet(inputs), out, meta)


def save_arrays(path: str | Path, arrays: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    """Save named tensors as safetensors (contiguous CPU copies), JSON-encoded metadata, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = _atomic_target(path)
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in arrays.items()}
        save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in (meta or {}).items()})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_arrays(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Inverse of :func:`save_arrays`: ``(tensors, metadata)``."""
    from safetensors import safe_open

    out = {}
    with safe_open(str(path), "pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        for k in f.keys():
            out[k] = f.get_tensor(k)
    return out, meta
