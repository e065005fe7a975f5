"""TODO docstring."""

from __future__ import annotations

import copy
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from diffxai.core.batching import iter_batches, map_batches
from diffxai.core.errors import DiffxaiError
from diffxai.core.seeding import make_generator
from diffxai.core.argchecks import EDIT_RULES
from diffxai.core.argchecks import check_rho
from diffxai.config.experiment import class_prompt

ATTRIBUTION_COLUMNS = ["concept", "parameter", "n_weights", "positive_mass", "negative_mass", "top_fraction_mass"]


EDITING_COLUMNS = ["concept", "edit", "rho", "eval_class", "prob", "accuracy"]




# Default component sets when config.components.parameters is null.
PIXEL_DEFAULT_PATTERNS = [r"class_embedding\.weight$", r"time_emb_proj\.weight$"]


SD_DEFAULT_PATTERNS = [r"ff\.net\.0\.proj\.weight$", r"ff\.net\.2\.weight$"]


class ConceptModel:
    """What CAD needs from a denoiser: its U-Net, ε(x, t, cond), conditions, sampling, decoding.

    Subclasses wrap one model family; ``with_unet`` returns the same model around another U-Net
    (an edited copy) without copying anything else.
    """

    unet: torch.nn.Module

    def eps(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Predicted noise ``(B, C, H, W)`` for inputs ``(B, C, H, W)``, timesteps ``(B,)``, conditions ``(B, ...)``."""
        raise NotImplementedError

    def cond(self, concept: dict, n: int) -> torch.Tensor:
        """``n`` copies of the condition of a concept (a ``config.classes`` entry)."""
        raise NotImplementedError

    def null(self, n: int) -> torch.Tensor:
        """``n`` copies of the null condition ``c_b`` (null class / empty prompt)."""
        raise NotImplementedError

    def sample(self, concepts: list[dict], n_per: int, *, n_steps: int, guidance: float, seed: int, stage: str,
               record: bool = False, batch_size: int = 256) -> dict[str, torch.Tensor]:  # fmt: skip
        """Generate ``n_per`` samples per concept (concept-major order), sample ``i`` of a concept seeded by
        ``(seed, stage, concept name, i)``. Returns ``latents (B, C, h, w)`` (model space), ``images
        (B, C, H, W)`` in [-1, 1] and with ``record`` ``x_t (B, S, C, h, w)`` and ``timesteps (S,)``."""
        raise NotImplementedError

    def to_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] → the model's input space."""
        return images

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        raise NotImplementedError

    @property
    def num_train_timesteps(self) -> int:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def with_unet(self, unet: torch.nn.Module) -> "ConceptModel":
        new = copy.copy(self)
        new.unet = unet
        return new


class PixelConceptModel(ConceptModel):
    """A class-conditional pixel DDPM (:class:`diffxai.models.DiffusionModel`) whose null label is ``c_b``."""

    def __init__(self, model):
        if not model.conditional:
            raise DiffxaiError("config.models.diffusion", "component attribution needs a class-conditional model "
                               "with a null class (train the demo DDPM with label_dropout > 0)")  # fmt: skip
        self.model = model

    @property
    def unet(self):
        return self.model.unet

    @unet.setter
    def unet(self, value):
        self.model = copy.copy(self.model)
        self.model.unet = value

    def eps(self, x, t, cond):
        return self.model.eps(x, t, cond)

    def cond(self, concept, n):
        from diffxai.config.experiment import diffusion_label

        return torch.full((n,), diffusion_label(concept), dtype=torch.long, device=self.device)

    def null(self, n):
        return torch.full((n,), self.model.null_label, dtype=torch.long, device=self.device)

    @property
    def alphas_cumprod(self):
        return self.model.alphas_cumprod

    @property
    def num_train_timesteps(self):
        return self.model.num_train_timesteps

    def sample(self, concepts, n_per, *, n_steps, guidance, seed, stage, record=False, batch_size=256):
        from diffxai.core.timesteps import uniform_timesteps
        from diffxai.sampling.loop import ddim_sample
        from diffxai.sampling.noising import seeded_noise

        cfg = self.model.unet.config
        size = cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0]
        gens = [make_generator(seed, stage, c["name"], i) for c in concepts for i in range(n_per)]
        x_init = seeded_noise((cfg.in_channels, size, size), gens)
        labels = torch.cat([self.cond(c, n_per).cpu() for c in concepts])
        ts = uniform_timesteps(self.num_train_timesteps, n_steps)
        out = ddim_sample(self.model, x_init, ts, labels, guidance, record=record, batch_size=batch_size)
        res = {"latents": out["sample"], "images": out["sample"]}
        if record:
            res["x_t"] = out["x_t"]
            res["timesteps"] = torch.as_tensor(ts)
        return res


class SDConceptModel(ConceptModel):
    """Stable Diffusion (:class:`diffxai.sd.SDModel`): prompts are the conditions, ``""`` is ``c_b``."""

    def __init__(self, model, scheduler: str = "ddim"):
        self.model = model
        self.scheduler = scheduler
        self._emb: dict[str, torch.Tensor] = {}

    @property
    def unet(self):
        return self.model.unet

    @unet.setter
    def unet(self, value):
        import dataclasses

        self.model = dataclasses.replace(self.model, unet=value)

    def _embed(self, prompt: str) -> torch.Tensor:
        if prompt not in self._emb:
            with torch.no_grad():
                self._emb[prompt] = self.model.encode_prompts([prompt])[0]
        return self._emb[prompt]

    def eps(self, x, t, cond):
        return self.model.eps(x, t, cond)

    def cond(self, concept, n):
        return self._embed(class_prompt(concept)).unsqueeze(0).expand(n, -1, -1)

    def null(self, n):
        return self._embed("").unsqueeze(0).expand(n, -1, -1)

    @property
    def alphas_cumprod(self):
        return torch.as_tensor(self.model.alphas_cumprod, dtype=torch.float64)

    @property
    def num_train_timesteps(self):
        return int(self.model.num_train_timesteps)

    def to_latents(self, images):
        with torch.no_grad():
            return self.model.to_model_space(images.to(self.device))

    def sample(self, concepts, n_per, *, n_steps, guidance, seed, stage, record=False, batch_size=16):
        from diffxai.sampling.loop import sd_sample

        prompts = [class_prompt(c) for c in concepts for _ in range(n_per)]
        keys = [(c["name"], i) for c in concepts for i in range(n_per)]
        out = sd_sample(self.model, prompts, n_steps=n_steps, guidance=guidance, seed=seed, stage=stage, keys=keys,
                        scheduler=self.scheduler, record=record, batch_size=batch_size)  # fmt: skip
        res = {"latents": out["latents"].cpu(), "images": out["images"].cpu()}
        if record:
            res["x_t"] = out["x_t"].cpu()
            res["timesteps"] = torch.as_tensor(out["timesteps"])
        return res




def select_parameters(module: torch.nn.Module, patterns: list[str], where: str = "config.components.parameters"
                      ) -> dict[str, torch.nn.Parameter]:  # fmt: skip
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
            raise DiffxaiError(where, f"pattern {pat!r} selects no parameter of the U-Net (names look like: {example}, ...)")
        chosen.update(hits)
    return {n: p for n, p in named if n in chosen}




@dataclass
class ObjectiveItems:
    """The items an objective sums over, flattened to one batch axis of length ``M``.

    ``kind == "erase"``: ``x`` are trajectory latents ``z_k`` ``(M, C, h, w)``, ``target`` is
    ``sg[ε(z_k, c_b, t_k)]`` from the unedited model. ``kind == "amplify"``: ``x`` are noised concept
    images and ``target`` the noise that was added. ``t`` ``(M,)`` timesteps, ``cond`` ``(M, ...)``.
    """

    kind: str
    x: torch.Tensor
    t: torch.Tensor
    cond: torch.Tensor
    target: torch.Tensor
    null: torch.Tensor | None = None  # (M, ...) null conditions, to re-evaluate the erase target

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, idx) -> "ObjectiveItems":
        return ObjectiveItems(self.kind, self.x[idx], self.t[idx], self.cond[idx], self.target[idx],
                              None if self.null is None else self.null[idx])  # fmt: skip


@torch.no_grad()
def erase_items(model: ConceptModel, x_t: torch.Tensor, timesteps: torch.Tensor, concept: dict,
                batch_size: int) -> ObjectiveItems:  # fmt: skip
    """Items of ``J_e`` from trajectories ``x_t (N, S, C, h, w)`` sampled with ``concept`` at ``timesteps (S,)``:
    every (sample, step) is one item; the stop-gradient target ``ε(z, c_b, t)`` is computed here, batched."""
    n, s = x_t.shape[:2]
    x = x_t.reshape(n * s, *x_t.shape[2:]).to(model.device)
    t = torch.as_tensor(timesteps, dtype=torch.long).to(model.device).repeat(n)
    cond, null = model.cond(concept, n * s), model.null(n * s)
    target = map_batches(model.eps, x, t, null, batch_size=batch_size, out_device=None, label="erase target")
    return ObjectiveItems("erase", x, t, cond, target, null)


@torch.no_grad()
def amplify_items(model: ConceptModel, x0: torch.Tensor, concept: dict, timesteps: torch.Tensor, *, seed: int,
                  stage: str = "components-amplify") -> ObjectiveItems:  # fmt: skip
    """Items of ``J_a``: every concept latent ``x0 (N, C, h, w)`` noised at every timestep of ``timesteps (S,)``
    with noise seeded by ``(seed, stage, concept, image, step)``."""
    n, s = x0.shape[0], len(timesteps)
    abar = model.alphas_cumprod.to(model.device).float()
    t = torch.as_tensor(timesteps, dtype=torch.long).to(model.device).repeat(n)
    gens = [make_generator(seed, stage, concept["name"], i, j) for i in range(n) for j in range(s)]
    noise = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in gens]).to(model.device)
    x0r = x0.to(model.device).repeat_interleave(s, 0)
    a = abar[t].view(-1, *([1] * (x0.dim() - 1)))
    x = a.sqrt() * x0r + (1 - a).sqrt() * noise
    return ObjectiveItems("amplify", x, t, model.cond(concept, n * s), noise, None)


def objective_terms(model: ConceptModel, items: ObjectiveItems, refresh_target: bool = False) -> torch.Tensor:
    """Per-item objective ``‖ε(x, c, t) − target‖²`` ``(M,)`` (differentiable in the U-Net weights).

    With ``refresh_target`` (erase only) the target ``ε(x, c_b, t)`` is re-evaluated by this model
    (both branches in one forward), i.e. the full effect of an edit rather than the stop-gradient one.
    """
    if refresh_target and items.kind == "erase":
        m = len(items)
        e = model.eps(torch.cat([items.x, items.x]), torch.cat([items.t, items.t]), torch.cat([items.cond, items.null]))
        e_c, target = e[:m], e[m:]
    else:
        e_c, target = model.eps(items.x, items.t, items.cond), items.target
    return (e_c.float() - target.float()).pow(2).flatten(1).sum(1)


@torch.no_grad()
def objective_value(model: ConceptModel, items: ObjectiveItems, batch_size: int, refresh_target: bool = False) -> float:
    """``J`` = sum of :func:`objective_terms` over all items, in batches."""
    chunks = iter_batches(lambda sl: objective_terms(model, items.subset(sl), refresh_target).double().sum(),
                          len(items), batch_size, label="objective")  # fmt: skip
    return float(sum(out for _, out in chunks))


@contextmanager
def _grad_enabled_for(params: dict[str, torch.nn.Parameter]):
    """Temporarily make exactly ``params`` require grad (restored on exit)."""
    before = {n: p.requires_grad for n, p in params.items()}
    try:
        for p in params.values():
            p.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for n, p in params.items():
            p.requires_grad_(before[n])


def attribute(model: ConceptModel, items: ObjectiveItems, params: dict[str, torch.nn.Parameter],
              batch_size: int) -> tuple[dict[str, torch.Tensor], float]:  # fmt: skip
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
        j = objective_terms(model, items.subset(sl)).sum()
        return torch.autograd.grad(j, tensors, allow_unused=True), j.detach()

    with _grad_enabled_for(params):
        for _, (grads, j) in iter_batches(chunk, len(items), batch_size, label="attribution"):
            for a, g in zip(acc, grads):  # accumulate only once the chunk succeeded
                if g is not None:
                    a.add_(g.double())
            total += float(j)
    return {n: (p.detach().double() * g).float().cpu() for n, p, g in zip(names, tensors, acc)}, total


def attribute_naive(model: ConceptModel, items: ObjectiveItems, params: dict[str, torch.nn.Parameter]
                    ) -> tuple[dict[str, torch.Tensor], float]:  # fmt: skip
    """Reference: one forward and one backward per item (sample × timestep). Same result as :func:`attribute`."""
    return attribute(model, items, params, batch_size=1)


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
        out[n] = m[start:start + size].reshape(attributions[n].shape)
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


def attribution_summary(concept: str, attributions: dict[str, torch.Tensor], top_fraction: float = 0.01) -> pd.DataFrame:
    """One row per tensor: ``n_weights``, ``positive_mass`` (Σ a⁺), ``negative_mass`` (Σ a⁻, ≤ 0) and
    ``top_fraction_mass``: the share of the concept's total positive mass (all tensors) held by this
    tensor's weights that lie in the global top ``top_fraction`` of attributions."""
    flat = torch.cat([a.reshape(-1) for a in attributions.values()]).double()
    k = max(1, int(round(top_fraction * flat.numel())))
    thresh = flat.topk(k).values[-1]
    total_pos = flat.clamp(min=0).sum().item() or 1.0
    rows = []
    for name, a in attributions.items():
        a = a.double()
        top = a[(a >= thresh) & (a > 0)]
        rows.append(dict(concept=concept, parameter=name, n_weights=a.numel(), positive_mass=a.clamp(min=0).sum().item(),
                         negative_mass=a.clamp(max=0).sum().item(), top_fraction_mass=top.sum().item() / total_pos,
                         abs_mass=a.abs().sum().item(), max_attribution=a.max().item(), shape=str(tuple(a.shape))))  # fmt: skip
    return pd.DataFrame(rows)


def sample_components(attributions: dict[str, torch.Tensor], n_random: int, n_top: int, seed: int, concept: str
                      ) -> list[tuple[str, int, str]]:  # fmt: skip
    """``(parameter, flat index, group)`` for ``n_top`` top-attributed weights and ``n_random`` weights drawn
    uniformly (without replacement, seeded by ``(seed, "components-counterfactual", concept)``)."""
    names = list(attributions)
    sizes = np.array([attributions[n].numel() for n in names])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    flat = torch.cat([attributions[n].reshape(-1) for n in names])
    chosen: dict[int, str] = {}
    for i in flat.topk(min(n_top, flat.numel())).indices.tolist():
        chosen[i] = "top"
    g = make_generator(seed, "components-counterfactual", concept)
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
def counterfactual(model: ConceptModel, items: ObjectiveItems, attributions: dict[str, torch.Tensor],
                   components: list[tuple[str, int, str]], batch_size: int) -> pd.DataFrame:  # fmt: skip
    """Zero each component alone (on a copy of the U-Net) and measure the actual change of ``J``.

    Columns: ``parameter, flat_index, group, weight, attribution, predicted_delta`` (= −a_i, the
    linear estimate), ``actual_delta`` (J with the stop-gradient target held fixed, the function
    that was differentiated) and for erase ``actual_delta_full`` (target re-evaluated by the edited
    model).
    """
    work = model.with_unet(copy.deepcopy(model.unet))
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
        rows.append(dict(parameter=name, flat_index=idx, group=grp, weight=w, attribution=a, predicted_delta=-a,
                         actual_delta=j - base, actual_delta_full=j_full - base_full))  # fmt: skip
    return pd.DataFrame(rows)


def correlations(pred: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    """(Pearson, Spearman) of two vectors; NaN when either is constant or shorter than 3."""
    from scipy.stats import pearsonr, spearmanr

    pred, actual = np.asarray(pred, float), np.asarray(actual, float)
    if len(pred) < 3 or np.ptp(pred) == 0 or np.ptp(actual) == 0:
        return float("nan"), float("nan")
    return float(pearsonr(pred, actual)[0]), float(spearmanr(pred, actual)[0])


@torch.no_grad()
def evaluate_classes(model: ConceptModel, classifier: torch.nn.Module, classes: list[dict], n_per: int, *,
                     n_steps: int, guidance: float, seed: int, batch_size: int, stage: str = "components-eval"
                     ) -> tuple[pd.DataFrame, torch.Tensor]:  # fmt: skip
    """Sample ``n_per`` images of every class (fixed seeds, all classes in one batched run) and classify them.

    Returns one row per class (``eval_class, class_index, prob`` = mean classifier probability of the
    class, ``accuracy`` = share with top-1 = the class, ``n``) and the images ``(n_classes, n_per, C, H, W)``.
    """
    from diffxai.models.classifiers import classify

    out = model.sample(classes, n_per, n_steps=n_steps, guidance=guidance, seed=seed, stage=stage,
                       batch_size=batch_size)  # fmt: skip
    images = out["images"]
    probs = torch.softmax(classify(classifier, images, batch_size, model.device).double(), -1)
    rows = []
    for j, c in enumerate(classes):
        p = probs[j * n_per:(j + 1) * n_per]
        rows.append(dict(eval_class=c["name"], class_index=int(c["index"]), prob=p[:, c["index"]].mean().item(),
                         accuracy=(p.argmax(1) == c["index"]).double().mean().item(), n=n_per))  # fmt: skip
    return pd.DataFrame(rows), images.view(len(classes), n_per, *images.shape[1:])


def edit_score(edit: str, table: pd.DataFrame, baseline: pd.DataFrame, concept: str) -> tuple[float, float, float]:
    """``(score, target accuracy, retention)`` of one evaluated edit.

    Retention = the other classes' summed accuracy relative to the unedited model's (1 = kept
    everything). Score (used to pick a sweep point) = the change of the concept's mean classifier
    probability in the desired direction (down for erase, up for amplify) minus the loss of the
    other classes' mean probability relative to the unedited model, ``max(0, 1 − p_others / p_others_base)``.
    """
    t, b = table.set_index("eval_class"), baseline.set_index("eval_class")
    others = [c for c in t.index if c != concept]
    retention = float(t.loc[others, "accuracy"].sum() / max(b.loc[others, "accuracy"].sum(), 1e-12)) if others else 1.0
    kept = float(t.loc[others, "prob"].sum() / max(b.loc[others, "prob"].sum(), 1e-12)) if others else 1.0
    change = t.loc[concept, "prob"] - b.loc[concept, "prob"]
    gain = -change if edit == "erase" else change
    return float(gain - max(0.0, 1.0 - kept)), float(t.loc[concept, "accuracy"]), retention
