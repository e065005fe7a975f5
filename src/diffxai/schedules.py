"""Sampling schedules: uniform and the exponential time-step sampling of arXiv 2402.10404.

With T training timesteps, l sampling steps and shift γ ≥ 0, let δ = T^(1/(l+γ)) and
q_i = ⌊δ^(i+γ)⌋ for i = 1..l (so q_l = T). The paper's two schedules are

* **early** ("semantic" stage, dense near t ≈ T): p_i = T − q_i for i = 1..l, with T − 1
  prepended and the last (t = 0) dropped. T=1000, l=30, γ=60 → 999, 893, 884, 875, …, 143, 74.
* **latter** ("delicate" stage, dense at low t): p_i = q_i sorted descending, T clamped to
  T − 1. T=1000, l=30, γ=60 → 999, 926, 857, …, 125, 116, 107.
* **uniform** (for comparison): l timesteps evenly spaced from T − 1 down to 0, rounded to the
  nearest integer (the same spacing as :func:`diffxai.noising.level_timesteps`), so every
  schedule starts from pure noise at t = T − 1 and a seed's x_T is shared by all schedules.

Smaller γ concentrates the steps more. δ^(i+γ) is evaluated as T^((i+γ)/(l+γ)) and floored with a
relative tolerance of 1e-9, so exact powers (1000^(1/3) = 10) are not floored to 9 by rounding.

**Collision rule.** At small γ several q_i floor to the same integer (γ=0, l=30: 1, 1, 1, 2, …),
and the early schedule's first p_i can equal the prepended T − 1. Every schedule is therefore
passed through :func:`resolve_collisions`, which keeps exactly l distinct steps with the least
movement from the formula: sort descending and clip to [0, T − 1]; a downward pass sets
``a[j] = min(a[j], a[j-1] − 1)`` (keeps the larger value of a tie and pushes the rest down by
one each); an upward pass from the end sets ``a[-1] = max(a[-1], 0)`` and
``a[j] = max(a[j], a[j+1] + 1)`` (lifts anything pushed below 0). The result is strictly
decreasing, in [0, T − 1], has length l whenever l ≤ T, and equals the formula wherever the
formula had no collision. :attr:`Schedule.n_moved` counts the steps the rule moved.

**Generation.** :func:`generate` runs DDIM (η = 0, :func:`diffxai.sampling.ddim_sample`) or a
diffusers scheduler that takes custom timesteps (``ddpm``: DDPMScheduler, ``dpmsolver++``:
DPMSolverMultistepScheduler) on any such list, batched over samples, and records the
denoiser's x̂0 at every step. All samplers share one loop (:func:`diffxai.sampling.sample_chunks`);
only the per-step update differs. Labels may be per sample ``(B,)`` or per step ``(B, S)``; the
latter drives the commitment experiment (label a before the switch step k, label b from k on).

**Bands.** :func:`band_ssim` splits images into a Gaussian low-pass band (coarse layout) and the
high-pass residual (fine detail) and compares two images per band with SSIM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from diffxai.errors import DiffxaiError
from diffxai.models import DiffusionModel
from diffxai.sampling import check_timesteps_decreasing, ddim_sample, sample_chunks

SCHEDULE_KINDS = ("uniform", "early", "latter")
SAMPLERS = ("ddim", "ddpm", "dpmsolver++")
GAMMA_MAX = 10_000.0  # beyond this every step lies within rounding of T: almost surely a typo
_TOL = 1e-9


# --------------------------------------------------------------------------------------------
# schedules
# --------------------------------------------------------------------------------------------


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
    if T < n_steps:
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
    T, l, g = int(num_train_timesteps), int(n_steps), float(gamma)
    v = np.array([T ** ((i + g) / (l + g)) for i in range(1, l + 1)], dtype=np.float64)
    return np.floor(v * (1 + _TOL) + _TOL).astype(np.int64)


def formula_timesteps(kind: str, num_train_timesteps: int, n_steps: int, gamma: float | None = None) -> np.ndarray:
    """The schedule exactly as the formula gives it (sorted descending, may contain ties)."""
    check_schedule_args(kind, num_train_timesteps, n_steps, gamma)
    T, l = int(num_train_timesteps), int(n_steps)
    if kind == "uniform":
        return np.rint(np.linspace(T - 1, 0, l)).astype(np.int64)
    q = exponential_powers(T, l, gamma)
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
    kind: str, num_train_timesteps: int, n_steps: int, gamma: float | None = None, name: str | None = None,
    where: str = "schedule",
) -> Schedule:  # fmt: skip
    """Build and validate a schedule (see the module doc for the formulas and the collision rule).

    Raises:
        DiffxaiError: one line naming the value when γ or l is out of range or T < l.
    """
    check_schedule_args(kind, num_train_timesteps, n_steps, gamma, where)
    raw = formula_timesteps(kind, num_train_timesteps, n_steps, gamma)
    ts = resolve_collisions(raw, num_train_timesteps)
    return Schedule(
        name=name or kind, kind=kind, n_steps=int(n_steps), gamma=None if kind == "uniform" else float(gamma),
        num_train_timesteps=int(num_train_timesteps), timesteps=ts, formula=raw,
    )  # fmt: skip


def schedule_timesteps(kind: str, num_train_timesteps: int, n_steps: int, gamma: float | None = None) -> np.ndarray:
    """Shortcut: the resolved ``(l,)`` timesteps of :func:`make_schedule`."""
    return make_schedule(kind, num_train_timesteps, n_steps, gamma).timesteps


# --------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------


def step_labels(label_a: int, label_b: int, n_steps: int, switch_steps: list[int] | np.ndarray) -> torch.Tensor:
    """Per-step labels ``(len(switch_steps), S)``: ``a`` for steps ``< k``, ``b`` from step ``k`` on.

    ``k = 0`` is label b throughout, ``k = S`` label a throughout.
    """
    k = torch.as_tensor(np.asarray(switch_steps), dtype=torch.long)[:, None]
    i = torch.arange(n_steps)[None]
    return torch.where(i < k, torch.tensor(int(label_a)), torch.tensor(int(label_b)))


@torch.no_grad()
def scheduler_sample(
    model: DiffusionModel,
    x_init: torch.Tensor,
    timesteps: np.ndarray | list[int],
    labels: torch.Tensor | None = None,
    guidance: float = 1.0,
    sampler: str = "ddpm",
    generators: list[torch.Generator] | None = None,
    record: bool = False,
    batch_size: int = 256,
) -> dict[str, torch.Tensor]:
    """Sample with a diffusers scheduler set to custom ``timesteps`` (``set_timesteps(timesteps=…)``).

    Args:
        x_init: ``(B, C, H, W)`` noise at ``timesteps[0]``.
        timesteps: strictly decreasing integer timesteps ``(S,)``.
        labels: ``(B,)`` or per-step ``(B, S)`` class labels, or ``None``.
        sampler: ``ddpm`` (stochastic; its noise comes from ``generators``, one per sample, so a
            sample does not depend on its batch) or ``dpmsolver++`` (multistep, deterministic).
        record: also return ``x_t`` and the x̂0 at every step, ``(B, S, C, H, W)``.
    Returns:
        ``{"sample": (B, C, H, W)}`` (+ ``x_t``, ``x0_pred``).
    """
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    ts = check_timesteps_decreasing(timesteps)
    if sampler not in ("ddpm", "dpmsolver++"):
        raise ValueError(f"unknown sampler {sampler!r}")
    if sampler == "ddpm" and generators is not None and len(generators) != x_init.shape[0]:
        raise ValueError("ddpm sampling needs one generator per sample")
    device = model.device
    # a chunk retried after an out-of-memory error restarts its generators from here
    entry_states = None if generators is None else [g.get_state() for g in generators]

    def new_step(sl: slice):
        if sampler == "ddpm":
            sched = DDPMScheduler.from_config(model.scheduler.config)
        else:
            sched = DPMSolverMultistepScheduler.from_config(
                model.scheduler.config, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero"
            )
        sched.set_timesteps(timesteps=ts, device=device)
        kw = {}
        if sampler == "ddpm" and generators is not None:
            gens = list(generators[sl])
            for g, state in zip(gens, entry_states[sl]):
                g.set_state(state)
            kw["generator"] = gens

        def step(i: int, t: int, x: torch.Tensor, eps: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
            return sched.step(eps, t, x, **kw).prev_sample

        return step

    return sample_chunks(model, x_init, ts, labels, guidance, new_step, record=record, batch_size=batch_size,
                         clip=True, finish=lambda x: x.clamp(-1, 1), label=f"{sampler} sampling")  # fmt: skip


def generate(
    model: DiffusionModel,
    x_init: torch.Tensor,
    timesteps: np.ndarray | list[int],
    labels: torch.Tensor | None = None,
    guidance: float = 1.0,
    sampler: str = "ddim",
    generators: list[torch.Generator] | None = None,
    record: bool = True,
    batch_size: int = 256,
) -> dict[str, torch.Tensor]:
    """Generate under one schedule with the chosen sampler, batched over samples.

    Args:
        model: a pixel-space :class:`~diffxai.models.DiffusionModel`.
        x_init: ``(B, C, H, W)`` starting noise at ``timesteps[0]``.
        timesteps: ``(S,)`` strictly decreasing integer timesteps (e.g. ``Schedule.timesteps``).
        labels: ``(B,)`` class labels, per-step ``(B, S)`` labels, or ``None``.
        guidance: classifier-free guidance weight.
        sampler: ``ddim`` (η = 0), ``ddpm`` or ``dpmsolver++``.
        generators: per-sample generators for the stochastic ``ddpm`` sampler.
    Returns:
        ``{"sample": (B, C, H, W), "x_t", "x0_pred": (B, S, C, H, W)}`` in [-1, 1] (x_t unclipped).
    """
    if sampler not in SAMPLERS:
        raise DiffxaiError("config.schedules.sampler", f"unknown sampler {sampler!r} (allowed: {', '.join(SAMPLERS)})")
    if labels is not None and labels.ndim == 2 and labels.shape[1] != len(timesteps):
        raise ValueError(f"per-step labels have {labels.shape[1]} steps, the schedule {len(timesteps)}")
    if sampler == "ddim":
        return ddim_sample(model, x_init, timesteps, labels, guidance, record=record, batch_size=batch_size)
    return scheduler_sample(model, x_init, timesteps, labels, guidance, sampler, generators, record, batch_size)


def decided_step(top1: np.ndarray, target: int) -> int:
    """First step from which ``top1`` equals ``target`` through the last step; −1 if it never settles.

    Args:
        top1: ``(S,)`` top-1 class of x̂0 at each step (step 0 = noisiest).
    """
    top1 = np.asarray(top1)
    wrong = np.nonzero(top1 != target)[0]
    if len(wrong) == 0:
        return 0
    last = int(wrong[-1])
    return last + 1 if last + 1 < len(top1) else -1


def commitment_step(share_a: np.ndarray, threshold: float = 0.5) -> int:
    """Smallest switch step k with ``share_a[k'] >= threshold`` for every k' ≥ k; −1 if none.

    ``share_a[k]`` is the share of samples ending as class a when the label switches a→b at step
    k (k = 0..S). From the returned step on, the first label keeps winning: the model has
    committed to a.
    """
    s = np.asarray(share_a, dtype=float)
    below = np.nonzero(s < threshold)[0]
    if len(below) == 0:
        return 0
    last = int(below[-1])
    return last + 1 if last + 1 < len(s) else -1


# --------------------------------------------------------------------------------------------
# band-split SSIM
# --------------------------------------------------------------------------------------------


def gaussian_kernel1d(sigma: float, radius: int | None = None, dtype=torch.float64) -> torch.Tensor:
    """Normalised 1-D Gaussian of standard deviation ``sigma`` pixels (radius default ⌈3σ⌉)."""
    r = int(math.ceil(3 * sigma)) if radius is None else int(radius)
    x = torch.arange(-r, r + 1, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(x: torch.Tensor, k: torch.Tensor, padding: str) -> torch.Tensor:
    """Separable depthwise blur of ``(B, C, H, W)``; ``padding`` = ``reflect`` (same size) or ``valid``."""
    c = x.shape[1]
    r = (len(k) - 1) // 2
    kx = k.to(x).view(1, 1, 1, -1).expand(c, 1, 1, -1)
    ky = k.to(x).view(1, 1, -1, 1).expand(c, 1, -1, 1)
    if padding == "reflect":
        # reflect padding needs r < size; fall back to replicate for tiny images
        mode = "reflect" if r < min(x.shape[-2:]) else "replicate"
        x = F.pad(x, (r, r, r, r), mode=mode)
    return F.conv2d(F.conv2d(x, kx, groups=c), ky, groups=c)


def split_bands(x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)``: Gaussian low-pass (σ pixels, reflect padding) and the residual ``x − low``."""
    low = _blur(x.double(), gaussian_kernel1d(sigma), "reflect").to(x.dtype)
    return low, x - low


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    sigma: float = 1.5,
    window: int = 11,
    luminance: bool = True,
) -> torch.Tensor:
    """Mean SSIM per image pair, ``(B,)``, Gaussian window (Wang et al. 2004; K1=0.01, K2=0.03).

    Args:
        x, y: ``(B, C, H, W)`` non-negative intensities in ``[0, data_range]``.
        window: window side, shrunk to the largest odd size ≤ min(H, W) for small images;
            the SSIM map is taken over the valid region and averaged over channels and pixels.
        luminance: ``False`` drops the luminance term and returns the contrast-structure term
            (2σ_xy + C2) / (σ_x² + σ_y² + C2), MS-SSIM's term for signed, zero-mean bands.
    """
    if x.shape != y.shape:
        raise ValueError(f"ssim: shapes differ {tuple(x.shape)} vs {tuple(y.shape)}")
    size = min(window, min(x.shape[-2:]))
    size -= 1 - size % 2
    k = gaussian_kernel1d(sigma, radius=(size - 1) // 2)
    x, y = x.double(), y.double()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _blur(x, k, "valid"), _blur(y, k, "valid")
    vx = _blur(x * x, k, "valid") - mx * mx
    vy = _blur(y * y, k, "valid") - my * my
    cxy = _blur(x * y, k, "valid") - mx * my
    s = (2 * cxy + c2) / (vx + vy + c2)
    if luminance:
        s = s * (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return s.flatten(1).mean(1).float()


def band_ssim(x: torch.Tensor, y: torch.Tensor, sigma: float) -> dict[str, torch.Tensor]:
    """Compare image pairs per band: coarse layout (low-pass) and fine detail (high-pass).

    Args:
        x, y: ``(B, C, H, W)`` in [-1, 1].
        sigma: low-pass Gaussian σ in pixels.
    Returns:
        ``(B,)`` tensors: ``ssim`` (whole image) and ``ssim_low`` (low-pass band), both SSIM on
        intensities mapped to [0, 1]; ``ssim_high``: the contrast-structure SSIM term of the
        high-pass band (zero-mean, so no luminance term); ``rmse_low``, ``rmse_high``: RMS
        difference per band in image units ([-1, 1] scale). 1 = identical, lower = more different.
    """
    xl, xh = split_bands(x, sigma)
    yl, yh = split_bands(y, sigma)
    return {
        "ssim": ssim((x + 1) / 2, (y + 1) / 2),
        "ssim_low": ssim((xl + 1) / 2, (yl + 1) / 2),
        "ssim_high": ssim(xh / 2, yh / 2, luminance=False),
        "rmse_low": (xl - yl).pow(2).flatten(1).mean(1).sqrt().float(),
        "rmse_high": (xh - yh).pow(2).flatten(1).mean(1).sqrt().float(),
    }
