"""Checked readers of a finished run's tables and arrays: a missing, truncated or foreign file is
one line naming the file (a :class:`~diffxai.core.errors.DiffxaiError`), never a library traceback.

The stages read their own inputs with :func:`pandas.read_parquet` and
:func:`diffxai.io.arrays.load_arrays` (a stage's input was written by the job just before it);
readers of the whole run, such as the explorer page, go through these so that a file another
tool damaged, or a table from an older version, says what is wrong and where.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd
import torch

from diffxai.core.errors import DiffxaiError, short_error
from diffxai.io.arrays import load_arrays


def read_table(path: str | Path, columns: Iterable[str] = ()) -> pd.DataFrame:
    """The Parquet table at ``path``; it must have every one of ``columns``.

    Raises:
        DiffxaiError: ``<path>: cannot read table (...)`` or ``<path>: missing columns [...]``.
    """
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow and the OS raise several unrelated types
        raise DiffxaiError(str(path), f"cannot read table ({short_error(exc)})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DiffxaiError(str(path), f"missing columns {missing} (it has {list(df.columns)})")
    return df


def read_arrays(
    path: str | Path, keys: Iterable[str] = (), head: Mapping[str, tuple[int, ...]] | None = None
) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, metadata)`` of a safetensors file written by :func:`diffxai.io.arrays.save_arrays`
    (metadata JSON-decoded); it must hold every tensor of ``keys``.

    ``head``: the leading lengths to read per tensor (:func:`~diffxai.io.arrays.load_arrays`).

    Raises:
        DiffxaiError: ``<path>: cannot read arrays (...)`` or ``<path>: no tensor 'maps' (...)``.
    """
    try:
        out, meta = load_arrays(path, head)
    except Exception as exc:  # safetensors, OS and JSON errors alike
        raise DiffxaiError(str(path), f"cannot read arrays ({short_error(exc)})") from None
    missing = [k for k in keys if k not in out]
    if missing:
        raise DiffxaiError(str(path), f"no tensor {missing[0]!r} (it has {sorted(out)})")
    return out, meta
