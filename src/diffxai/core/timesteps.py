"""Timestep maths (numpy): the step/timestep convention, noise levels, uniform and exponential
schedules, and the ONE timestep check.

``step`` runs as generation does: step 0 is the noisiest, step S-1 the cleanest; ``timestep`` is
the scheduler's t in ``[0, T)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from diffxai.core.errors import DiffxaiError


def level_timesteps(num_train_timesteps: int, n_levels: int, field: str = "config.noise.n_levels") -> np.ndarray:
    """``n_levels`` timesteps from ``T-1`` (step 0, noisiest) down to 0 (step S-1), strictly decreasing."""
    if n_levels < 2 or n_levels > num_train_timesteps:
        raise DiffxaiError(field, f"{n_levels} must be in [2, {num_train_timesteps}] (the model's timesteps)")
    return np.rint(np.linspace(num_train_timesteps - 1, 0, n_levels)).astype(np.int64)


def uniform_timesteps(num_train_timesteps: int, n_steps: int) -> np.ndarray:
    """diffusers' "leading" DDIM spacing: ``T//n * arange(n)`` reversed (starts at ``T - T//n``)."""
    step = num_train_timesteps // n_steps
    return (np.arange(n_steps) * step)[::-1].copy().astype(np.int64)


def check_timesteps(timesteps, num_train_timesteps: int, where: str = "timesteps") -> list[int]:
    """The ONE timestep check: a schedule is non-empty, integer, strictly decreasing and within
    ``[0, T)``; returns it as ints (one-line :class:`DiffxaiError` naming ``where`` otherwise)."""
    ts = [int(t) for t in np.asarray(timesteps).reshape(-1)]
    if not ts:
        raise DiffxaiError(where, "empty timestep list")
    if any(b >= a for a, b in zip(ts, ts[1:])):
        raise DiffxaiError(where, f"must be strictly decreasing, got {ts[:6]}{'...' if len(ts) > 6 else ''}")
    if ts[0] >= num_train_timesteps or ts[-1] < 0:
        raise DiffxaiError(where, f"must lie in [0, {num_train_timesteps}), got {ts[0]}..{ts[-1]}")
    return ts


SCHEDULE_KINDS = ("uniform", "early", "latter")


GAMMA_MAX = 10_000.0  # beyond this every step lies within rounding of T: almost surely a typo


_TOL = 1e-9


def check_schedule_args(
    kind: str, num_train_timesteps: int, n_steps: int, gamma: float | None, where: str = "schedule"
):
    """Raise a one-line :class:`DiffxaiError` naming the bad value; ``where`` prefixes the field."""
    if kind not in SCHEDULE_KINDS:
        raise DiffxaiError(f"{where}.kind", f"unknown schedule kind {kind!r} (allowed: {', '.join(SCHEDULE_KINDS)})")
    T = num_train_timesteps
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 2:
        raise DiffxaiError(f"{where}.num_train_timesteps", f"T={T!r} must be an integer >= 2")
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 2:
        raise DiffxaiError(f"{where}.n_steps", f"l={n_steps!r} is out of range: need an integer >= 2")
    if n_steps > T:
        raise DiffxaiError(f"{where}.n_steps", f"T={T} training timesteps is smaller than l={n_steps} sampling steps")
    if kind != "uniform":
        if gamma is None:
            raise DiffxaiError(f"{where}.gamma", f"required for the {kind} schedule (paper: 60)")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.integer, np.floating)):
            raise DiffxaiError(f"{where}.gamma", f"γ={gamma!r} must be a number")
        if not math.isfinite(float(gamma)) or not 0 <= float(gamma) <= GAMMA_MAX:
            raise DiffxaiError(f"{where}.gamma", f"γ={gamma} is out of range [0, {GAMMA_MAX:g}]")


def exponential_powers(num_train_timesteps: int, n_steps: int, gamma: float) -> np.ndarray:
    """q_i = ⌊δ^(i+γ)⌋ = ⌊T^((i+γ)/(l+γ))⌋ for i = 1..l, ascending ``(l,)`` int64 (q_l = T)."""
    T, n, g = int(num_train_timesteps), int(n_steps), float(gamma)
    v = np.array([T ** ((i + g) / (n + g)) for i in range(1, n + 1)], dtype=np.float64)
    return np.floor(v * (1 + _TOL) + _TOL).astype(np.int64)


def formula_timesteps(kind: str, num_train_timesteps: int, n_steps: int, gamma: float | None = None) -> np.ndarray:
    """The schedule exactly as the formula gives it, ``(l,)`` int64 sorted descending (may contain ties).

    With T training timesteps, l steps, shift γ and q_i = ⌊T^((i+γ)/(l+γ))⌋ (:func:`exponential_powers`):
    ``early`` (arXiv 2402.10404's "semantic" stage, dense near t ≈ T) is T − q_i with T − 1
    prepended and the last (t = 0) dropped, e.g. T=1000, l=30, γ=60 → 999, 893, 884, …, 143, 74;
    ``latter`` (the "delicate" stage, dense at low t) is q_i descending with T clamped to T − 1,
    → 999, 926, 857, …, 116, 107; ``uniform`` is round(linspace(T − 1, 0, l)). Every schedule starts
    at t = T − 1, so a seed's x_T is shared by all of them. Smaller γ concentrates the steps more.
    """
    check_schedule_args(kind, num_train_timesteps, n_steps, gamma)
    T, n = int(num_train_timesteps), int(n_steps)
    if kind == "uniform" or gamma is None:  # check_schedule_args: early / latter always have a γ
        return np.rint(np.linspace(T - 1, 0, n)).astype(np.int64)
    q = exponential_powers(T, n, gamma)
    if kind == "early":
        p = np.concatenate([[T - 1], T - q])[:-1]
    else:
        p = np.minimum(q, T - 1)[::-1]
    return np.sort(p)[::-1].astype(np.int64)


def resolve_collisions(timesteps: np.ndarray, num_train_timesteps: int) -> np.ndarray:
    """Make a schedule strictly decreasing in [0, T−1] with the same length (module doc rule).

    Args:
        timesteps: ``(l,)`` integer timesteps in any order, ties allowed; ``l <= T``.
    Returns:
        ``(l,)`` int64, strictly decreasing; unchanged where there were no ties.
    """
    T = int(num_train_timesteps)
    a = np.clip(np.sort(np.asarray(timesteps, dtype=np.int64))[::-1], 0, T - 1).copy()
    if len(a) > T:
        raise DiffxaiError("schedule.n_steps", f"T={T} training timesteps is smaller than l={len(a)} sampling steps")
    for j in range(1, len(a)):
        a[j] = min(a[j], a[j - 1] - 1)
    if len(a):
        a[-1] = max(a[-1], 0)
    for j in range(len(a) - 2, -1, -1):
        a[j] = max(a[j], a[j + 1] + 1)
    return a


@dataclass(frozen=True)
class Schedule:
    """A named sampling schedule: ``timesteps`` ``(l,)`` strictly decreasing ints in [0, T−1]."""

    name: str
    kind: str
    n_steps: int
    gamma: float | None
    num_train_timesteps: int
    timesteps: np.ndarray
    formula: np.ndarray

    @property
    def n_moved(self) -> int:
        """How many steps the collision rule moved away from the formula."""
        return int((self.timesteps != self.formula).sum())


def make_schedule(
    kind: str,
    num_train_timesteps: int,
    n_steps: int,
    gamma: float | None = None,
    name: str | None = None,
    where: str = "schedule",
) -> Schedule:
    """Build and validate a schedule: :func:`formula_timesteps` made strictly decreasing by
    :func:`resolve_collisions` (at small γ several q_i floor to the same integer; the rule keeps
    exactly l distinct steps in [0, T − 1] and moves only the colliding ones).

    Raises:
        DiffxaiError: one line naming the value (prefixed by ``where``) when γ or l is out of
            range or T < l.
    """
    check_schedule_args(kind, num_train_timesteps, n_steps, gamma, where)
    raw = formula_timesteps(kind, num_train_timesteps, n_steps, gamma)
    ts = resolve_collisions(raw, num_train_timesteps)
    return Schedule(
        name=name or kind,
        kind=kind,
        n_steps=int(n_steps),
        gamma=None if kind == "uniform" or gamma is None else float(gamma),
        num_train_timesteps=int(num_train_timesteps),
        timesteps=ts,
        formula=raw,
    )
