"""The one batching helper every stage uses.

Stages flatten their work (images x draws x steps, masks, samples, ...) to a leading batch
axis and push it through a model in chunks with :func:`map_batches`; nothing loops one sample
at a time where a batch works.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import torch

log = logging.getLogger(__name__)


def is_oom(exc: BaseException) -> bool:
    """True for a CUDA/CPU out-of-memory error raised by torch."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices covering ``range(n)`` in chunks of at most ``batch_size``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def map_batches(
    fn: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]],
    *tensors: torch.Tensor,
    batch_size: int,
    device: torch.device | str | None = None,
    out_device: torch.device | str | None = "cpu",
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Apply ``fn`` to aligned chunks of ``tensors`` (split along dim 0) and concatenate.

    Args:
        fn: called as ``fn(*chunks)``; returns a tensor or a tuple of tensors whose dim 0
            matches the chunk size.
        tensors: inputs sharing the same leading dimension ``B``.
        batch_size: maximum chunk size.
        device: where chunks are moved before ``fn`` (``None`` leaves them in place).
        out_device: where outputs are gathered (``None`` leaves them where ``fn`` put them).

    Returns:
        ``fn``'s outputs concatenated along dim 0 (same structure as one call's output).

    An out-of-memory error halves the batch size and retries the failed chunk (logged as a
    warning); the outputs are the same because every chunk is independent. Progress (items and
    rate) is logged at most every 30 seconds.
    """
    if not tensors:
        raise ValueError("map_batches needs at least one tensor")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = tensors[0].shape[0]
    outs: list = []
    start, started, last_report = 0, time.time(), time.time()
    while start < n:
        sl = slice(start, min(start + batch_size, n))
        try:
            chunk = [t[sl] if device is None else t[sl].to(device, non_blocking=True) for t in tensors]
            out = fn(*chunk)
        except Exception as exc:
            if not is_oom(exc) or batch_size == 1:
                raise
            del exc
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch_size = max(1, batch_size // 2)
            log.warning("out of memory: halving the batch size to %d and retrying items %d..", batch_size, start)
            continue
        if out_device is not None:
            out = tuple(o.to(out_device) for o in out) if isinstance(out, tuple) else out.to(out_device)
        outs.append(out)
        start = sl.stop
        if time.time() - last_report > 30 and start < n:
            last_report = time.time()
            log.info("progress %d/%d items (%.1f items/s)", start, n, start / (last_report - started))
    if isinstance(outs[0], tuple):
        return tuple(torch.cat([o[i] for o in outs]) for i in range(len(outs[0])))
    return torch.cat(outs)
