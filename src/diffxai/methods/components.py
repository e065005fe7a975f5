"""Component attribution and concept editing (CAD, arXiv 2412.02542).

A *component* is one weight ``w_i`` of a selected parameter tensor of the denoiser. Its
attribution to an objective ``J`` is the linear counterfactual estimate of zeroing it::

    a_i = w_i · ∂J/∂w_i          (zeroing w_i changes J by ≈ −a_i)

with the gradient accumulated over samples and timesteps in batches (one backward pass per
batch of items, not per item). Two objectives:

* erase  ``J_e = Σ_k ‖ε(z_k, c, t_k) − sg[ε(z_k, c_b, t_k)]‖²`` on the latents ``z_k`` of
  trajectories sampled with concept ``c``; ``c_b`` is the backend's null condition (the null
  class of a class-conditional pixel model, the empty prompt of Stable Diffusion); ``sg`` =
  stop-gradient;
* amplify ``J_a = Σ_k ‖ε(√ᾱ_t x0_k + √(1−ᾱ_t) ε_k, c, t_k) − ε_k‖²``, the denoising loss on
  images of the concept.

Edits zero the components with the largest *positive* attribution (negative or zero
attributions are never zeroed): erase with ``J_e`` removes what makes the conditional
prediction differ from the unconditional one; amplify with ``J_a`` removes what raises the
concept's denoising loss (its suppressors). Rules:

* ``per_row``: for every output row of a tensor (dim 0; a 1-D tensor is one row) zero the top
  ``⌊ρ·fan_in⌋`` entries, ``fan_in`` = number of entries in the row (the paper, ρ = 0.001);
* ``global``: zero the top ``K`` entries over all selected tensors together.

Edits always apply to a deep copy of the U-Net; the source model is never changed.

The model is a :class:`~diffxai.models.backend.DiffusionBackend` (pixel or Stable Diffusion,
never asked which). A *condition* is what ``backend.encode`` returns for condition keys: a tensor
whose dim 0 is the batch (class labels ``(B,)`` or text embeddings ``(B, L, D)``). Classes are
named by strings (their names key the seeds); nothing here reads a config.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from diffxai.core.argchecks import EDIT_RULES, check_rho
from diffxai.core.batching import iter_batches, map_batches
from diffxai.core.errors import DiffxaiError
from diffxai.core.hooks import grad_enabled_for
from diffxai.core.seeding import make_generator
from diffxai.models.backend import DiffusionBackend
from diffxai.models.classifiers import classify
from diffxai.sampling.loop import sample
from diffxai.sampling.noising import seeded_noise

#: default component sets (``components.parameters: null``), by diffusion kind
DEFAULT_PATTERNS = {
    "pixel": [r"class_embedding\.weight$", r"time_emb_proj\.weight$"],
    "stable_diffusion": [r"ff\.net\.0\.proj\.weight$", r"ff\.net\.2\.weight$"],
}


# --------------------------------------------------------------------------------------------
# sampling and evaluation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    """How CAD samples: ``n_steps`` steps of ``scheduler`` with guidance weight ``guidance``, on the
    given ``timesteps`` (``(S,)`` strictly decreasing, e.g. DDIM's uniform spacing) or, when
    ``None``, on the scheduler's own spacing of ``n_steps``; ``batch_size`` samples per chunk."""

    n_steps: int
    guidance: float
    batch_size: int
    scheduler: str = "ddim"
    timesteps: tuple[int, ...] | None = None


def sample_classes(
    backend: DiffusionBackend,
    cond: torch.Tensor,
    names: Sequence[str],
    n_per: int,
    sampling: Sampling,
    *,
    seed: int,
    stage: str,
    record: bool = False,
    decode: bool = False,
) -> dict[str, torch.Tensor]:
    """``n_per`` samples of every class (class-major order) with classifier-free guidance.

    Args:
        cond: one condition per class ``(n_classes, *cond_shape)`` (``backend.encode``).
        names: the classes' names ``(n_classes,)``: sample ``i`` of class ``name`` starts from noise
            seeded by ``(seed, stage, name, i)``, and a stochastic scheduler's step noise comes from
            ``(seed, stage, "step-noise", name, i)``, so a sample never depends on its batch.
        record, decode: see :func:`diffxai.sampling.loop.sample`.
    Returns:
        ``sample`` ``(B, C, h, w)`` (model space), ``timesteps`` ``(S,)`` and, with ``record``,
        ``x_t`` ``(B, S, C, h, w)``; with ``decode`` ``images`` ``(B, C', H, W)`` in [-1, 1];
        ``B = n_classes · n_per``, float32 on the CPU.
    """
    keys = [(name, i) for name in names for i in range(n_per)]
    x_init = seeded_noise(backend.sample_shape(), [make_generator(seed, stage, *k) for k in keys])
    steps = [make_generator(seed, stage, "step-noise", *k) for k in keys]
    return sample(
        backend,
        x_init,
        timesteps=sampling.timesteps,
        n_steps=sampling.n_steps,
        cond=cond.repeat_interleave(n_per, 0),
        guidance=sampling.guidance,
        null=backend.null(1),
        scheduler=sampling.scheduler,
        step_generators=steps,
        record=record,
        decode=decode,
        batch_size=sampling.batch_size,
        label=f"{stage} sampling",
    )


@torch.no_grad()
def evaluate_classes(
    backend: DiffusionBackend,
    classifier: torch.nn.Module,
    cond: torch.Tensor,
    names: Sequence[str],
    indices: Sequence[int],
    n_per: int,
    sampling: Sampling,
    *,
    seed: int,
    stage: str = "components-eval",
) -> tuple[list[dict], torch.Tensor]:
    """Sample ``n_per`` images of every class (:func:`sample_classes`, all classes in one batched run)
    and classify them (``sampling.batch_size`` images per classifier call).

    Args:
        cond: one condition per class ``(n_classes, *cond_shape)``; ``names`` and ``indices``
            (the classifier's output index of each class) in the same order.
    Returns:
        one record per class (``eval_class, class_index, prob`` = mean classifier probability of the
        class, ``accuracy`` = share with top-1 = the class, ``n``) and the images
        ``(n_classes, n_per, C, H, W)`` in [-1, 1].
    """
    images = sample_classes(backend, cond, names, n_per, sampling, seed=seed, stage=stage, decode=True)["images"]
    probs = torch.softmax(classify(classifier, images, sampling.batch_size, backend.device).double(), -1)
    rows = []
    for j, (name, index) in enumerate(zip(names, indices)):
        p = probs[j * n_per : (j + 1) * n_per]
        rows.append(
            {
                "eval_class": name,
                "class_index": int(index),
                "prob": p[:, index].mean().item(),
                "accuracy": (p.argmax(1) == index).double().mean().item(),
                "n": n_per,
            }
        )
    return rows, images.view(len(names), n_per, *images.shape[1:])


def edit_score(
    edit: str, prob: np.ndarray, accuracy: np.ndarray, base_prob: np.ndarray, base_accuracy: np.ndarray, target: int
) -> tuple[float, float, float]:
    """``(score, target accuracy, retention)`` of one evaluated edit.

    ``prob`` / ``accuracy``: per evaluated class ``(n_classes,)`` (mean classifier probability of
    the class, share classified as it) for the edited model, ``base_*`` for the unedited one (same
    class order); ``target``: the concept's position. Retention = the other classes' summed
    accuracy relative to the unedited model's (1 = kept everything). Score (used to pick a sweep
    point) = the change of the concept's mean classifier probability in the desired direction
    (down for erase, up for amplify) minus the loss of the other classes' mean probability
    relative to the unedited model, ``max(0, 1 − p_others / p_others_base)``.
    """
    prob, accuracy = np.asarray(prob, np.float64), np.asarray(accuracy, np.float64)
    base_prob, base_accuracy = np.asarray(base_prob, np.float64), np.asarray(base_accuracy, np.float64)
    others = len(prob) > 1
    retention, kept = 1.0, 1.0
    if others:
        retention = float(np.delete(accuracy, target).sum() / max(np.delete(base_accuracy, target).sum(), 1e-12))
        kept = float(np.delete(prob, target).sum() / max(np.delete(base_prob, target).sum(), 1e-12))
    change = prob[target] - base_prob[target]
    gain = -change if edit == "erase" else change
    return float(gain - max(0.0, 1.0 - kept)), float(accuracy[target]), retention


# --------------------------------------------------------------------------------------------
# components and objectives
# --------------------------------------------------------------------------------------------


def select_parameters(
    module: torch.nn.Module, patterns: list[str], where: str = "config.components.parameters"
) -> dict[str, torch.nn.Parameter]:
    """Parameters whose names match any regex in ``patterns`` (``re.search``), in module order.

    Raises a one-line :class:`DiffxaiError` naming the first pattern that selects nothing (or
    that is not a valid regex).
    """
    if not patterns:
        raise DiffxaiError(where, "no parameter patterns given")
    named = list(module.named_parameters())
    chosen: dict[str, torch.nn.Parameter] = {}
    for pat in patterns:
        try:
            rx = re.compile(pat)
        except re.error as exc:
            raise DiffxaiError(where, f"pattern {pat!r} is not a valid regular expression ({exc})") from None
        hits = [(n, p) for n, p in named if rx.search(n)]
        if not hits:
            example = ", ".join(n for n, _ in named[:3])
            raise DiffxaiError(
                where, f"pattern {pat!r} selects no parameter of the U-Net (names look like: {example}, ...)"
            )
        chosen.update(hits)
    return {n: p for n, p in named if n in chosen}


@dataclass
class ObjectiveItems:
    """The items an objective sums over, flattened to one batch axis of length ``M``.

    ``kind == "erase"``: ``x`` are trajectory latents ``z_k`` ``(M, C, h, w)``, ``target`` is
    ``sg[ε(z_k, c_b, t_k)]`` from the unedited model. ``kind == "amplify"``: ``x`` are noised concept
    images and ``target`` the noise that was added. ``t`` ``(M,)`` timesteps, ``cond`` ``(M, ...)``;
    ``null`` ``(M, ...)``: the null conditions, to re-evaluate the erase target (erase only).
    """

    kind: str
    x: torch.Tensor
    t: torch.Tensor
    cond: torch.Tensor
    target: torch.Tensor
    null: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, idx) -> ObjectiveItems:
        return ObjectiveItems(
            self.kind,
            self.x[idx],
            self.t[idx],
            self.cond[idx],
            self.target[idx],
            None if self.null is None else self.null[idx],
        )


def _rows_of(cond: torch.Tensor, m: int) -> torch.Tensor:
    """One condition ``(1, *cond_shape)`` as ``m`` rows (a view)."""
    return cond.expand(m, *cond.shape[1:])


@torch.no_grad()
def erase_items(
    backend: DiffusionBackend, x_t: torch.Tensor, timesteps: torch.Tensor, cond: torch.Tensor, batch_size: int
) -> ObjectiveItems:
    """Items of ``J_e`` from trajectories ``x_t (N, S, C, h, w)`` sampled with the concept's condition
    ``cond`` ``(1, *cond_shape)`` at ``timesteps (S,)``: every (sample, step) is one item; the
    stop-gradient target ``ε(z, c_b, t)`` is computed here, batched."""
    n, s = x_t.shape[:2]
    x = x_t.reshape(n * s, *x_t.shape[2:]).to(backend.device)
    t = torch.as_tensor(timesteps, dtype=torch.long).to(backend.device).repeat(n)
    null = backend.null(n * s)
    target = map_batches(backend.eps, x, t, null, batch_size=batch_size, out_device=None, label="erase target")
    return ObjectiveItems("erase", x, t, _rows_of(cond.to(backend.device), n * s), target, null)


@torch.no_grad()
def amplify_items(
    backend: DiffusionBackend,
    x0: torch.Tensor,
    cond: torch.Tensor,
    name: str,
    timesteps: torch.Tensor,
    *,
    seed: int,
    stage: str = "components-amplify",
) -> ObjectiveItems:
    """Items of ``J_a``: every concept image ``x0 (N, C, h, w)`` (model space) noised at every timestep of
    ``timesteps (S,)`` with noise seeded by ``(seed, stage, name, image, step)``; ``cond``
    ``(1, *cond_shape)`` is the concept's condition, ``name`` its name."""
    n, s = x0.shape[0], len(timesteps)
    abar = backend.alphas_cumprod.to(backend.device).float()
    t = torch.as_tensor(timesteps, dtype=torch.long).to(backend.device).repeat(n)
    gens = [make_generator(seed, stage, name, i, j) for i in range(n) for j in range(s)]
    noise = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in gens]).to(backend.device)
    x0r = x0.to(backend.device).repeat_interleave(s, 0)
    a = abar[t].view(-1, *([1] * (x0.dim() - 1)))
    x = a.sqrt() * x0r + (1 - a).sqrt() * noise
    return ObjectiveItems("amplify", x, t, _rows_of(cond.to(backend.device), n * s), noise, None)


def objective_terms(backend: DiffusionBackend, items: ObjectiveItems, refresh_target: bool = False) -> torch.Tensor:
    """Per-item objective ``‖ε(x, c, t) − target‖²`` ``(M,)`` (differentiable in the U-Net weights).

    With ``refresh_target`` (erase only) the target ``ε(x, c_b, t)`` is re-evaluated by this model
    (both branches in one forward), i.e. the full effect of an edit rather than the stop-gradient one.
    """
    if refresh_target and items.kind == "erase":
        m = len(items)
        e = backend.eps(
            torch.cat([items.x, items.x]), torch.cat([items.t, items.t]), torch.cat([items.cond, items.null])
        )
        e_c, target = e[:m], e[m:]
    else:
        e_c, target = backend.eps(items.x, items.t, items.cond), items.target
    return (e_c.float() - target.float()).pow(2).flatten(1).sum(1)


@torch.no_grad()
def objective_value(
    backend: DiffusionBackend, items: ObjectiveItems, batch_size: int, refresh_target: bool = False
) -> float:
    """``J`` = sum of :func:`objective_terms` over all items, in batches."""
    chunks = iter_batches(
        lambda sl: objective_terms(backend, items.subset(sl), refresh_target).double().sum(),
        len(items),
        batch_size,
        label="objective",
    )
    return float(sum(out for _, out in chunks))


# --------------------------------------------------------------------------------------------
# attribution
# --------------------------------------------------------------------------------------------


def attribute(
    backend: DiffusionBackend, items: ObjectiveItems, params: dict[str, torch.nn.Parameter], batch_size: int
) -> tuple[dict[str, torch.Tensor], float]:
    """Attributions ``a = w · ∂J/∂w`` for every weight of ``params`` (same shapes, float32, on CPU).

    The gradient of ``J`` (a sum over items) is accumulated over batches of ``batch_size`` items:
    one forward and one backward per batch (an out-of-memory error halves the batch and retries the
    chunk; a chunk's gradient is added only once it succeeded). Returns ``(attributions, J)``.
    Model weights and their ``.grad`` are left untouched.
    """
    names = list(params)
    tensors = [params[n] for n in names]
    acc = [torch.zeros_like(p, dtype=torch.float64) for p in tensors]  # float64: order-independent sums
    total = 0.0

    def chunk(sl: slice):  # autograd.grad does not touch .grad: a chunk retried after out-of-memory is safe
        j = objective_terms(backend, items.subset(sl)).sum()
        return torch.autograd.grad(j, tensors, allow_unused=True), j.detach()

    with grad_enabled_for(params):
        for _, (grads, j) in iter_batches(chunk, len(items), batch_size, label="attribution"):
            for a, g in zip(acc, grads):  # accumulate only once the chunk succeeded
                if g is not None:
                    a.add_(g.double())
            total += float(j)
    return {n: (p.detach().double() * g).float().cpu() for n, p, g in zip(names, tensors, acc)}, total


def attribute_naive(
    backend: DiffusionBackend, items: ObjectiveItems, params: dict[str, torch.nn.Parameter]
) -> tuple[dict[str, torch.Tensor], float]:
    """Reference: one forward and one backward per item (sample × timestep). Same result as :func:`attribute`."""
    return attribute(backend, items, params, batch_size=1)


def attribution_rows(attributions: dict[str, torch.Tensor], top_fraction: float = 0.01) -> list[dict]:
    """One record per tensor: ``parameter``, ``n_weights``, ``positive_mass`` (Σ a⁺), ``negative_mass``
    (Σ a⁻, ≤ 0) and ``top_fraction_mass``: the share of the total positive mass (all tensors) held by
    this tensor's weights that lie in the global top ``top_fraction`` of attributions; also
    ``abs_mass``, ``max_attribution`` and ``shape``."""
    flat = torch.cat([a.reshape(-1) for a in attributions.values()]).double()
    k = max(1, int(round(top_fraction * flat.numel())))
    thresh = flat.topk(k).values[-1]
    total_pos = flat.clamp(min=0).sum().item() or 1.0
    rows = []
    for name, a in attributions.items():
        a = a.double()
        top = a[(a >= thresh) & (a > 0)]
        rows.append(
            {
                "parameter": name,
                "n_weights": a.numel(),
                "positive_mass": a.clamp(min=0).sum().item(),
                "negative_mass": a.clamp(max=0).sum().item(),
                "top_fraction_mass": top.sum().item() / total_pos,
                "abs_mass": a.abs().sum().item(),
                "max_attribution": a.max().item(),
                "shape": str(tuple(a.shape)),
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# edits
# --------------------------------------------------------------------------------------------


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(1, -1) if t.dim() < 2 else t.reshape(t.shape[0], -1)


def per_row_masks(attributions: dict[str, torch.Tensor], rho: float) -> dict[str, torch.Tensor]:
    """Boolean masks of the weights to zero: in every output row (dim 0; 1-D tensors are one row) the
    top ``⌊ρ·fan_in⌋`` entries by attribution, keeping only strictly positive ones."""
    check_rho(rho)
    masks = {}
    for name, a in attributions.items():
        rows = _rows(a)
        k = int(math.floor(rho * rows.shape[1]))
        m = torch.zeros_like(rows, dtype=torch.bool)
        if k > 0:
            vals, idx = rows.topk(k, dim=1)
            m.scatter_(1, idx, vals > 0)
        masks[name] = m.reshape(a.shape)
    return masks


def global_masks(attributions: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Boolean masks of the top ``k`` strictly positive attributions over all tensors together
    (ties broken by tensor order, then flat index)."""
    if int(k) < 1:
        raise DiffxaiError("config.components.sweep.global", f"K must be >= 1, got {k}")
    names = list(attributions)
    flat = torch.cat([attributions[n].reshape(-1) for n in names])
    k = min(int(k), flat.numel())
    vals, idx = flat.topk(k)
    idx = idx[vals > 0]
    m = torch.zeros(flat.numel(), dtype=torch.bool)
    m[idx] = True
    out, start = {}, 0
    for n in names:
        size = attributions[n].numel()
        out[n] = m[start : start + size].reshape(attributions[n].shape)
        start += size
    return out


def edit_masks(attributions: dict[str, torch.Tensor], rule: str, value: float) -> dict[str, torch.Tensor]:
    """Masks for ``rule`` ``per_row`` (``value`` = ρ) or ``global`` (``value`` = K)."""
    if rule == "per_row":
        return per_row_masks(attributions, value)
    if rule == "global":
        return global_masks(attributions, int(value))
    raise DiffxaiError("config.components.rule", f"unknown edit rule {rule!r} (use one of {EDIT_RULES})")


@torch.no_grad()
def apply_edit(unet: torch.nn.Module, masks: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A deep copy of ``unet`` with the masked weights set to zero; ``unet`` itself is unchanged."""
    edited = copy.deepcopy(unet)
    params = dict(edited.named_parameters())
    for name, m in masks.items():
        if name not in params:
            raise DiffxaiError("components", f"edit names parameter {name!r} that the U-Net does not have")
        params[name].masked_fill_(m.to(params[name].device), 0.0)
    return edited


# --------------------------------------------------------------------------------------------
# counterfactual check of the linear estimate
# --------------------------------------------------------------------------------------------


def sample_components(
    attributions: dict[str, torch.Tensor], n_random: int, n_top: int, seed: int, key: str
) -> list[tuple[str, int, str]]:
    """``(parameter, flat index, group)`` for ``n_top`` top-attributed weights and ``n_random`` weights drawn
    uniformly (without replacement, seeded by ``(seed, "components-counterfactual", key)``)."""
    names = list(attributions)
    sizes = np.array([attributions[n].numel() for n in names])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    flat = torch.cat([attributions[n].reshape(-1) for n in names])
    chosen: dict[int, str] = {}
    for i in flat.topk(min(n_top, flat.numel())).indices.tolist():
        chosen[i] = "top"
    g = make_generator(seed, "components-counterfactual", key)
    for i in torch.randperm(flat.numel(), generator=g).tolist():
        if len([v for v in chosen.values() if v == "random"]) >= n_random:
            break
        chosen.setdefault(i, "random")
    out = []
    for i, grp in chosen.items():
        t = int(np.searchsorted(offsets, i, side="right") - 1)
        out.append((names[t], int(i - offsets[t]), grp))
    return out


@torch.no_grad()
def counterfactual(
    backend: DiffusionBackend,
    items: ObjectiveItems,
    attributions: dict[str, torch.Tensor],
    components: list[tuple[str, int, str]],
    batch_size: int,
) -> list[dict]:
    """Zero each component alone (on a copy of the U-Net) and measure the actual change of ``J``.

    One record per component: ``parameter, flat_index, group, weight, attribution,
    predicted_delta`` (= −a_i, the linear estimate), ``actual_delta`` (J with the stop-gradient
    target held fixed, the function that was differentiated) and ``actual_delta_full`` (erase: the
    target re-evaluated by the edited model; NaN for amplify).
    """
    work = backend.with_unet(copy.deepcopy(backend.unet))
    params = dict(work.unet.named_parameters())
    full = items.kind == "erase" and items.null is not None
    base = objective_value(work, items, batch_size)
    base_full = objective_value(work, items, batch_size, refresh_target=True) if full else float("nan")
    rows = []
    for name, idx, grp in components:
        flat = params[name].data.view(-1)
        w = flat[idx].item()
        flat[idx] = 0.0
        try:
            j = objective_value(work, items, batch_size)
            j_full = objective_value(work, items, batch_size, refresh_target=True) if full else float("nan")
        finally:
            flat[idx] = w
        a = attributions[name].reshape(-1)[idx].item()
        rows.append(
            {
                "parameter": name,
                "flat_index": idx,
                "group": grp,
                "weight": w,
                "attribution": a,
                "predicted_delta": -a,
                "actual_delta": j - base,
                "actual_delta_full": j_full - base_full,
            }
        )
    return rows


def correlations(pred: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    """(Pearson, Spearman) of two vectors; NaN when either is constant or shorter than 3."""
    from scipy.stats import pearsonr, spearmanr

    pred, actual = np.asarray(pred, float), np.asarray(actual, float)
    if len(pred) < 3 or np.ptp(pred) == 0 or np.ptp(actual) == 0:
        return float("nan"), float("nan")
    return float(pearsonr(pred, actual)[0]), float(spearmanr(pred, actual)[0])
