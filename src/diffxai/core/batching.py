"""Batched execution for every stage: chunks of items, out-of-memory halving, progress lines.

* :func:`iter_batches` calls ``fn(slice)`` on consecutive slices of ``range(n)``; an out-of-memory
  error (:func:`is_oom`) halves the chunk (a shared :class:`BatchSize` keeps the halving for later
  calls) and retries the same slice, so results equal a run at the reduced size bit for bit.
* :func:`map_batches` applies a function to aligned chunks of tensors and concatenates.
* :class:`Progress` logs ``label: done/total what (rate, time left)`` to ``diffxai.core.batching``
  at most every ``DIFFXAI_PROGRESS_SECONDS`` seconds (default 30; 0 = after every chunk).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

log = logging.getLogger(__name__)


T = TypeVar("T")


PROGRESS_ENV = "DIFFXAI_PROGRESS_SECONDS"


DEFAULT_PROGRESS_SECONDS = 30.0


def is_oom(exc: BaseException) -> bool:
    """True for a CUDA/CPU out-of-memory error raised by torch."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices covering ``range(n)`` in chunks of at most ``batch_size`` (no OOM handling)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def progress_seconds() -> float:
    """Seconds between progress lines: ``$DIFFXAI_PROGRESS_SECONDS`` (read at call time), default 30."""
    raw = os.environ.get(PROGRESS_ENV, "").strip()
    if not raw:
        return DEFAULT_PROGRESS_SECONDS
    try:
        value = float(raw)
    except ValueError:
        log.warning("ignoring %s=%r (not a number); using %g s", PROGRESS_ENV, raw, DEFAULT_PROGRESS_SECONDS)
        return DEFAULT_PROGRESS_SECONDS
    return max(0.0, value)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Counts finished items of a long stage and logs ``label: done/total what (rate, time left)``.

    A line is logged when at least ``$DIFFXAI_PROGRESS_SECONDS`` (read when the object is made)
    have passed since the last one; with 0 every :meth:`advance` logs. The final count is logged
    when anything was logged before it, so a long stage's log ends with its total and rate.
    """

    def __init__(self, total: int, what: str = "items", label: str = "progress"):
        self.total, self.what, self.label = int(total), what, label
        self.every = progress_seconds()
        self.done = 0
        self.started = self.last = time.monotonic()
        self.logged = False

    def advance(self, k: int) -> None:
        """Record ``k`` more finished items (logs when due)."""
        self.done += int(k)
        now = time.monotonic()
        finished = self.done >= self.total
        if now - self.last >= self.every or (finished and self.logged):
            self.last = now
            self.logged = True
            elapsed = max(now - self.started, 1e-9)
            rate = self.done / elapsed
            left = f", ~{_duration((self.total - self.done) / rate)} left" if not finished and rate > 0 else ""
            log.info("%s: %d/%d %s (%.1f %s/s%s)", self.label, self.done, self.total, self.what, rate, self.what, left)


class BatchSize:
    """A mutable batch size: pass the same object to several :func:`iter_batches` calls and a
    halving after an out-of-memory error in one call sticks for the later ones."""

    def __init__(self, value: int):
        if isinstance(value, bool) or int(value) < 1:
            raise ValueError(f"batch_size must be >= 1, got {value}")
        self.value = int(value)

    def __repr__(self) -> str:
        return f"BatchSize({self.value})"


def iter_batches(
    fn: Callable[[slice], T],
    n: int,
    batch_size: int | BatchSize,
    *,
    what: str = "items",
    label: str = "progress",
    progress: Progress | bool | None = True,
) -> Iterator[tuple[slice, T]]:
    """Call ``fn(slice)`` on consecutive slices covering ``range(n)`` and yield ``(slice, output)``.

    Args:
        fn: computes one chunk; must not change state that a retry of the same slice would see
            (it may be called again on a sub-slice after an out-of-memory error).
        n: number of items.
        batch_size: maximum chunk size, or a shared :class:`BatchSize` (updated on halving).
        what: the item noun for progress lines (``samples``, ``masks``, ...).
        label: the stage name that starts each log line.
        progress: ``True`` logs progress over the ``n`` items, a :class:`Progress` is advanced
            instead (several calls feeding one count), ``False``/``None`` logs none.

    An out-of-memory error (:func:`is_oom`) sets the batch size to half the failed chunk's size
    and retries from the failed slice's start; for a chunk of one item, or any other exception,
    the error propagates. Chunks
    are yielded in order and each item exactly once, so outputs can be gathered in order.
    """
    bs = batch_size if isinstance(batch_size, BatchSize) else BatchSize(batch_size)
    prog = Progress(n, what, label) if progress is True else (progress or None)
    start = 0
    while start < n:
        sl = slice(start, min(start + bs.value, n))
        try:
            out = fn(sl)
        except Exception as exc:
            size = sl.stop - sl.start
            if not is_oom(exc) or size == 1:
                raise
            del exc  # drop the traceback's references to the failed chunk's tensors
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            bs.value = max(1, size // 2)  # half of what failed (a short last chunk may be below bs)
            log.warning(
                "%s: out of memory: halving the batch size to %d and retrying items %d..", label, bs.value, start
            )
            continue
        start = sl.stop
        yield sl, out
        if prog is not None:
            prog.advance(sl.stop - sl.start)


def map_batches(
    fn: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]],
    *tensors: torch.Tensor,
    batch_size: int | BatchSize,
    device: torch.device | str | None = None,
    out_device: torch.device | str | None = "cpu",
    what: str = "items",
    label: str = "progress",
    progress: Progress | bool | None = True,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Apply ``fn`` to aligned chunks of ``tensors`` (split along dim 0) and concatenate.

    Args:
        fn: called as ``fn(*chunks)``; returns a tensor or a tuple of tensors whose dim 0
            matches the chunk size.
        tensors: inputs sharing the same leading dimension ``B``.
        batch_size: maximum chunk size (or a shared :class:`BatchSize`).
        device: where chunks are moved before ``fn`` (``None`` leaves them in place).
        out_device: where outputs are gathered (``None`` leaves them where ``fn`` put them).
        what, label, progress: the progress lines (see :func:`iter_batches`).

    Returns:
        ``fn``'s outputs concatenated along dim 0 (same structure as one call's output).

    An out-of-memory error halves the batch size and retries the failed chunk (logged as a
    warning); the outputs are the same because every chunk is independent. Progress (items and
    rate) is logged at most every ``$DIFFXAI_PROGRESS_SECONDS`` seconds (default 30).
    """
    if not tensors:
        raise ValueError("map_batches needs at least one tensor")

    def run(sl: slice):
        chunk = [t[sl] if device is None else t[sl].to(device, non_blocking=True) for t in tensors]
        out = fn(*chunk)
        if out_device is not None:
            out = tuple(o.to(out_device) for o in out) if isinstance(out, tuple) else out.to(out_device)
        return out

    chunks = iter_batches(run, tensors[0].shape[0], batch_size, what=what, label=label, progress=progress)
    outs = [out for _, out in chunks]
    if isinstance(outs[0], tuple):
        return tuple(torch.cat([o[i] for o in outs]) for i in range(len(outs[0])))
    return torch.cat(outs)
