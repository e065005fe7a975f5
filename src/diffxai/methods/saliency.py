"""DF-RISE and DF-CAM: which regions of its input does the denoiser use at one sampling step?

The two tools of arXiv 2402.10404 (Park, Ju, Lee), for any :class:`~diffxai.models.backend.DiffusionBackend`:
the demo's class-conditional pixel DDPM, any diffusers ``UNet2DModel`` pipeline and Stable
Diffusion (latent space, text prompts, classifier-free guidance).

Everything works on a :class:`Denoiser`: ε̂ at one fixed timestep with its conditioning bound
(class label or prompt embedding, CFG weight), callable on a batch of inputs ``(B, C, H, W)`` in
the model's input space (pixels in [-1, 1], or SD latents); :func:`fixed_step_denoiser` builds one
from any backend.

* **DF-RISE** (:func:`df_rise`): N random binary masks M_n on x_t (Bernoulli at full input
  resolution shared across channels, or RISE grid masks), ε̂(M_n ⊙ x_t) compared with the
  reference ε̂(x_t) by the local SSIM *structure* term S_n (15×15 Gaussian window, σ = 1.5,
  C3 = C2/2, C2 = (0.03·L)², L = 1, averaged over channels); saliency ReLU(Σ_n M_n ⊙ S_n),
  min–max normalised. Masks come from a seeded generator on the compute device and are
  streamed in batches (never all held at once); an optional early stop ends the run once the
  normalised map stops changing.
* **DF-CAM** (:func:`df_cam`): Grad-CAM of y = Σ ε̂ over U-Net blocks. Activations A and
  gradients G = ∂y/∂A of every hooked layer come from ONE forward and ONE backward pass; with
  CFG both are combined across the branches as A_u + w (A_c − A_u). Per-layer map
  ReLU(Σ_k mean_ij(G_k) A_k), upsampled to the input resolution and min–max normalised;
  DF-CAM is the normalised sum of the per-layer maps. Hooks are context-managed
  (:func:`diffxai.core.hooks.capture_activations`) and removed, also on errors.
* **Evaluation** (:func:`deletion_insertion`): deletion (to zeros) and insertion (from a
  Gaussian-blurred input) of the input positions in order of saliency
  (:func:`diffxai.metrics.faithfulness.deletion_insertion`); each partly restored input is scored
  by how close a *target* of the denoiser (an object: :class:`NextState` by default,
  :class:`NoisePrediction`, :class:`CleanEstimate`) is to the same target on the intact input;
  normalised trapezoid AUC.

Shapes: maps are ``(H, W)`` (or batched ``(B, H, W)``) at the denoiser's input resolution,
float32 in [0, 1].
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from diffxai.core.argchecks import EVAL_SCORES, EVAL_TARGETS, RISE_ESTIMATORS, check_rise_args
from diffxai.core.batching import BatchSize, Progress, batch_slices, map_batches
from diffxai.core.errors import DiffxaiError
from diffxai.core.hooks import capture_activations
from diffxai.core.imageops import minmax, ssim, upsample
from diffxai.metrics.faithfulness import deletion_insertion as _deletion_insertion
from diffxai.models.backend import DiffusionBackend

#: the local SSIM window of DF-RISE's structure term and of the ``ssim`` score: side and σ in pixels
SSIM_WINDOW = 15
SSIM_SIGMA = 1.5
CAM_REL_TOL = 1e-4  # a Grad-CAM map below this fraction of its terms' magnitude is round-off


# --------------------------------------------------------------------------------------------
# The denoiser at one fixed timestep
# --------------------------------------------------------------------------------------------


@dataclass
class Denoiser:
    """ε̂ at one fixed timestep with its conditioning bound.

    Attributes:
        module: the U-Net (DF-CAM hooks go on its sub-modules).
        branches: ``x (B, C, H, W) -> (n_branches * B, C, H, W)`` raw noise predictions of the
            stacked CFG branches, conditional first then unconditional (``n_branches`` 1 or 2).
            The input is repeated inside, so every hooked activation has the same layout.
        n_branches: 2 with classifier-free guidance, else 1.
        guidance: CFG weight w (ε̂ = ε_u + w (ε_c − ε_u)).
        t: the timestep explained.
        alpha_bar: ᾱ_t; ``alpha_bar_next``: ᾱ of the next sampling step (``None`` at the last
            step, where the sampler returns x̂0).
        clip_x0: clip x̂0 to [-1, 1] (pixel models, as the sampler does; not latents).
        device, dtype: where and in which dtype the U-Net runs.
    """

    module: nn.Module
    branches: Callable[[torch.Tensor], torch.Tensor]
    n_branches: int
    guidance: float
    t: int
    alpha_bar: float
    alpha_bar_next: float | None
    clip_x0: bool = True
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32

    def combine(self, stacked: torch.Tensor) -> torch.Tensor:
        """Combine a ``(n_branches * B, ...)`` tensor across CFG branches → ``(B, ...)``."""
        if self.n_branches == 1:
            return stacked
        c, u = stacked.chunk(2)
        return u + self.guidance * (c - u)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Guided ε̂ ``(B, C, H, W)`` (float32) for inputs ``(B, C, H, W)``."""
        return self.combine(self.branches(x.to(self.device, self.dtype)).float())

    def x0(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x̂0 = (x − sqrt(1 − ᾱ_t) ε̂) / sqrt(ᾱ_t) ``(B, C, H, W)``, clipped when :attr:`clip_x0`."""
        a = self.alpha_bar
        x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
        return x0.clamp(-1, 1) if self.clip_x0 else x0

    def next_step(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Deterministic DDIM (η = 0) update x_t → x_{t_next} ``(B, C, H, W)`` (x̂0 at the last step).

        For DPM-Solver++ this is its first-order update; the multistep correction needs the
        previous ε̂ and is not used for scoring (the reference output uses the same rule).
        """
        x0 = self.x0(x, eps)
        if self.alpha_bar_next is None:
            return x0
        a = self.alpha_bar_next
        return math.sqrt(a) * x0 + math.sqrt(1 - a) * eps


def fixed_step_denoiser(
    backend: DiffusionBackend,
    t: int,
    cond: torch.Tensor | None,
    guidance: float = 1.0,
    *,
    null: torch.Tensor | None = None,
    t_next: int | None = None,
) -> Denoiser:
    """The :class:`Denoiser` of ``backend`` at timestep ``t``: equal to
    ``backend.eps_guided(x, t, cond, guidance, null)`` (tested), for pixel and latent models alike.

    Args:
        backend: the diffusion model.
        t: the explained timestep; ``t_next``: the sampler's next timestep (``None`` at the last step).
        cond: one condition ``(1, *cond_shape)`` from ``backend.encode([key])`` (a label or a prompt
            embedding), or ``None``: the unconditional branch alone (all an unconditional model has).
        guidance: CFG weight w. Two branches (``cond`` then ``null``) when the model is conditional,
            ``cond`` is given and ``w != 1``; otherwise one branch.
        null: the unconditional condition ``(1, *cond_shape)`` (default ``backend.null(1)``; a
            negative prompt's embedding for SD).
    """
    cfg = backend.conditional and cond is not None and float(guidance) != 1.0
    n_br = 2 if cfg else 1
    if backend.conditional and (cfg or cond is None) and null is None:
        null = backend.null(1)
    if cond is None:
        cond = null  # the unconditional branch alone (None for an unconditional model)

    def branches(x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        c = None if cond is None else cond.expand(b, *cond.shape[1:])
        if cfg:
            c = torch.cat([c, null.to(c.device).expand(b, *null.shape[1:])])
            x = torch.cat([x, x])
        tt = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
        return backend.eps(x, tt, None if c is None else c.to(x.device))

    abar = backend.alphas_cumprod.double()
    a_next = None if t_next is None else float(abar[int(t_next)])
    return Denoiser(
        module=backend.unet,
        branches=branches,
        n_branches=n_br,
        guidance=float(guidance),
        t=int(t),
        alpha_bar=float(abar[int(t)]),
        alpha_bar_next=a_next,
        clip_x0=backend.clip_x0,
        device=torch.device(backend.device),
        dtype=backend.dtype,
    )


# --------------------------------------------------------------------------------------------
# What the evaluation scores: callable targets on the denoiser
# --------------------------------------------------------------------------------------------


class DenoiserTarget:
    """What of the denoiser's output a deletion / insertion game scores: ``target(denoiser, x)``
    maps inputs ``(B, C, H, W)`` to outputs ``(B, C, H, W)`` (float32, on the denoiser's device)."""

    #: the target's name in ``saliency.evaluation.target``
    name: str = ""

    def __call__(self, denoiser: Denoiser, x: torch.Tensor) -> torch.Tensor:
        """The target ``(B, C, H, W)`` of inputs ``x`` ``(B, C, H, W)`` (moved to the denoiser's device, float32)."""
        return self.output(denoiser, x.to(denoiser.device, torch.float32))

    def output(self, denoiser: Denoiser, x: torch.Tensor) -> torch.Tensor:
        """The target of float32 inputs already on the denoiser's device (what a subclass defines)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NoisePrediction(DenoiserTarget):
    """The guided noise prediction ε̂(x_t)."""

    name = "eps"

    def output(self, denoiser: Denoiser, x: torch.Tensor) -> torch.Tensor:
        return denoiser(x)


class CleanEstimate(DenoiserTarget):
    """The clean-image estimate x̂0(x_t) (clipped for pixel models)."""

    name = "x0"

    def output(self, denoiser: Denoiser, x: torch.Tensor) -> torch.Tensor:
        return denoiser.x0(x, denoiser(x))


class NextState(DenoiserTarget):
    """The deterministic next sampling state x_{t_next} (:meth:`Denoiser.next_step`)."""

    name = "next"

    def output(self, denoiser: Denoiser, x: torch.Tensor) -> torch.Tensor:
        return denoiser.next_step(x, denoiser(x))


#: every target by its name in ``saliency.evaluation.target``
TARGETS: dict[str, type[DenoiserTarget]] = {c.name: c for c in (NextState, NoisePrediction, CleanEstimate)}


def make_target(name: str) -> DenoiserTarget:
    """The target named ``name`` (``next``, ``eps`` or ``x0``); one-line error for another name."""
    if name not in TARGETS:
        raise DiffxaiError(
            "saliency.evaluation.target", f"unknown target {name!r} (use one of {', '.join(EVAL_TARGETS)})"
        )
    return TARGETS[name]()


# --------------------------------------------------------------------------------------------
# DF-RISE
# --------------------------------------------------------------------------------------------


def structure_term(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """DF-RISE's similarity S: the local SSIM *structure* term s = (σ_ab + C3) / (σ_a σ_b + C3),
    averaged over channels.

    Local statistics use a 15 × 15 Gaussian window (σ = 1.5 pixels) with zero padding (same size
    out), computed in float32; C3 = C2 / 2, C2 = (0.03 · data_range)²; negative variances from
    round-off are clamped to 0 before the square root (the reference code's NaN).

    Args:
        a, b: ``(B, C, H, W)`` (``a`` may be ``(1, C, H, W)`` and is compared with every ``b``).
    Returns:
        ``(B, H, W)`` float32 in [-1, 1] (≈ 1 where ``b`` has ``a``'s local structure).
    """
    return ssim(
        a,
        b,
        window=SSIM_WINDOW,
        sigma=SSIM_SIGMA,
        data_range=data_range,
        padding="zero",
        separable=False,
        terms="structure",
        clamp_variance=True,
        dtype=torch.float32,
        reduction="map",
    )


def generate_masks(
    n: int,
    size: tuple[int, int],
    p: float,
    generator: torch.Generator,
    kind: str = "pixel",
    grid_size: int = 8,
) -> torch.Tensor:
    """``(n, 1, H, W)`` float masks in [0, 1] on the generator's device.

    * ``pixel``: independent Bernoulli(p) per input position (the paper's DF-RISE masks);
    * ``grid``: RISE masks: Bernoulli(p) on a ``grid_size × grid_size`` grid, bilinearly
      upsampled to ``(grid_size + 1) × cell`` and cropped at a random shift in ``[0, cell)``.

    Draws consume ``generator`` sequentially, so consecutive calls stream one mask sequence.
    """
    h, w = size
    dev = generator.device
    if kind == "pixel":
        return (torch.rand((n, 1, h, w), generator=generator, device=dev) < p).float()
    s = grid_size
    ch, cw = math.ceil(h / s), math.ceil(w / s)
    grid = (torch.rand((n, 1, s, s), generator=generator, device=dev) < p).float()
    up = F.interpolate(grid, size=((s + 1) * ch, (s + 1) * cw), mode="bilinear", align_corners=False).clamp_(0, 1)
    dy = torch.randint(0, ch, (n,), generator=generator, device=dev)
    dx = torch.randint(0, cw, (n,), generator=generator, device=dev)
    rows = (dy[:, None] + torch.arange(h, device=dev))[:, :, None]  # n, H, 1
    cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, :]  # n, 1, W
    return up[torch.arange(n, device=dev)[:, None, None], 0, rows, cols][:, None]


def mask_stream(
    n_masks: int,
    size: tuple[int, int],
    p: float,
    generator: torch.Generator,
    batch_size: int,
    kind: str,
    grid_size: int,
) -> Iterator[torch.Tensor]:
    """``n_masks`` masks :func:`generate_masks` in batches ``(≤ batch_size, 1, H, W)`` drawn one after
    another from ``generator`` (only one batch lives at a time)."""
    for sl in batch_slices(n_masks, batch_size):
        yield generate_masks(sl.stop - sl.start, size, p, generator, kind, grid_size)


def _rise_estimate(estimator: str, acc, kept, s_sum, n) -> torch.Tensor:
    """The ``(H, W)`` DF-RISE estimate from the running sums Σ M⊙S (``acc``), Σ M (``kept``), Σ S
    (``s_sum``) over ``n`` masks (see :func:`df_rise`'s ``estimator``)."""
    if estimator == "sum":
        return acc
    mean_kept = acc / kept.clamp_min(1)
    if estimator == "mean":
        return mean_kept
    return mean_kept - (s_sum - acc) / (n - kept).clamp_min(1)


@dataclass
class RiseResult:
    """DF-RISE output: ``map`` ``(H, W)`` in [0, 1]; ``raw`` ``(H, W)`` the estimate (Σ_n M_n ⊙ S_n
    for the paper's ``sum``) before ReLU / normalisation; ``n_masks_used`` (< requested after an early stop)."""

    map: torch.Tensor
    raw: torch.Tensor
    n_masks_used: int


def df_rise(
    denoiser: Denoiser | Callable[[torch.Tensor], torch.Tensor],
    x_t: torch.Tensor,
    *,
    generator: torch.Generator,
    n_masks: int = 500,
    p: float = 0.5,
    mask: str = "pixel",
    grid_size: int = 8,
    batch_size: int = 64,
    reference: torch.Tensor | None = None,
    early_stop_tol: float | None = None,
    check_every: int = 100,
    data_range: float = 1.0,
    estimator: str = "sum",
) -> RiseResult:
    """DF-RISE saliency of one input.

    Args:
        denoiser: ``x (B, C, H, W) -> ε̂ (B, C, H, W)`` at the explained step (a
            :class:`Denoiser` or any callable).
        x_t: ``(C, H, W)`` the denoiser's input (pixels or latents).
        generator: seeded generator on the compute device (masks are drawn on its device).
        n_masks: N (paper: 500); ``p``: keep probability (paper: 0.5).
        mask: ``pixel`` (full-resolution Bernoulli, shared across channels) or ``grid``.
        batch_size: masks drawn per chunk and per denoiser forward (an out-of-memory error
            splits the forward passes, never the mask draw: the masks stay the same).
        reference: ``(C, H, W)`` what ε̂(M ⊙ x_t) is compared with; default ε̂(x_t) (the
            paper). The authors' code compared with the next latent x_{t−1}: pass it here.
        early_stop_tol: stop once the normalised running map changed by less than this (max
            absolute difference) between two checks ``check_every`` masks apart.
        data_range: L in C2 = (0.03 L)² of the structure term (paper: 1).
        estimator: ``sum`` = Σ_n M_n ⊙ S_n (the paper); ``mean`` = E[S | kept] = Σ M⊙S / Σ M;
            ``contrast`` = E[S | kept] − E[S | masked] (removes the binomial keep-count noise and
            the spatial pattern of the mean similarity that dominate ``sum`` at small N).
    Returns:
        :class:`RiseResult` with the map at the input resolution.
    """
    check_rise_args(n_masks, p, mask, grid_size, batch_size)
    if estimator not in RISE_ESTIMATORS:
        raise DiffxaiError(
            "saliency.rise.estimator", f"unknown estimator {estimator!r} (use one of {', '.join(RISE_ESTIMATORS)})"
        )
    if x_t.ndim != 3:
        raise ValueError(f"x_t must be (C, H, W), got {tuple(x_t.shape)}")
    dev = generator.device
    x = x_t.to(dev, torch.float32)[None]
    with torch.no_grad():
        ref = denoiser(x).float() if reference is None else reference.to(dev, torch.float32)[None]
        acc = torch.zeros(x.shape[-2:], device=dev, dtype=torch.float64)  # Σ M ⊙ S
        kept = torch.zeros_like(acc)  # Σ M
        s_sum = torch.zeros_like(acc)  # Σ S
        used, next_check, prev = 0, check_every, None
        # Masks are drawn in chunks of batch_size (the same masks whatever happens next); each
        # chunk's forward passes go through map_batches, so an out-of-memory error splits them
        # (the halved size sticks for the later chunks) instead of changing the masks.
        fwd_size = BatchSize(batch_size)
        progress = Progress(n_masks, "masks", "df_rise")

        def structure(mb: torch.Tensor) -> torch.Tensor:
            return structure_term(ref, denoiser(mb * x).float(), data_range=data_range)  # b, H, W

        for m in mask_stream(n_masks, tuple(x.shape[-2:]), p, generator, batch_size, mask, grid_size):
            s = map_batches(structure, m, batch_size=fwd_size, out_device=None, label="df_rise", progress=False)
            acc += (m[:, 0].double() * s.double()).sum(0)
            if estimator != "sum":
                kept += m[:, 0].double().sum(0)
                s_sum += s.double().sum(0)
            used += m.shape[0]
            progress.advance(m.shape[0])
            if early_stop_tol is not None and used >= next_check and used < n_masks:
                cur = minmax(_rise_estimate(estimator, acc, kept, s_sum, used).clamp_min(0).float())
                if prev is not None and (cur - prev).abs().max().item() < early_stop_tol:
                    break
                prev, next_check = cur, next_check + check_every
    raw = _rise_estimate(estimator, acc, kept, s_sum, used).float()
    return RiseResult(map=minmax(raw.clamp_min(0)).cpu(), raw=raw.cpu(), n_masks_used=used)


_UNET_LAYER = re.compile(
    r"^(down_blocks|up_blocks)\.\d+\.(resnets|attentions|downsamplers|upsamplers)\.\d+$"
    r"|^mid_block\.(resnets|attentions)\.\d+$"
)


def unet_layers(module: nn.Module) -> list[str]:
    """Names of the blocks DF-CAM explains, in forward order: every resnet, attention,
    down/up sampler of the down and up blocks and the mid block's resnets and attentions
    (SD 1.4: 44; the paper's 43 leave out the mid-block attention)."""
    names = [n for n, _ in module.named_modules() if _UNET_LAYER.match(n)]

    def order(n: str):
        part = n.split(".")
        block = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}[part[0]]
        if part[0] == "mid_block":
            return (block, 0, 0, int(part[2]), 0 if part[1] == "resnets" else 1)
        kind = {"resnets": 0, "attentions": 1, "downsamplers": 2, "upsamplers": 2}[part[2]]
        return (block, int(part[1]), kind == 2, int(part[3]), kind)

    # within a block the U-Net alternates resnet j, attention j; samplers come last
    return sorted(names, key=order)


def resolve_layers(module: nn.Module, layers: Sequence[str] | None = None) -> list[str]:
    """Validate user layer names (or discover them); one-line error for an unknown name."""
    if layers is None or len(layers) == 0:
        found = unet_layers(module)
        if not found:
            raise DiffxaiError(
                "saliency.cam.layers", f"no U-Net blocks found in {type(module).__name__}: name the layers to hook"
            )
        return found
    known = dict(module.named_modules())
    for name in layers:
        if name not in known or name == "":
            hint = ", ".join(unet_layers(module)[:4])
            raise DiffxaiError(
                "saliency.cam.layers", f"unknown layer {name!r} in {type(module).__name__} (e.g. {hint}, ...)"
            )
    return list(dict.fromkeys(layers))


def _as_map_layout(a: torch.Tensor) -> torch.Tensor:
    """Activations ``(B, K, h, w)``; token sequences ``(B, h·w, K)`` of a square grid are reshaped."""
    if a.ndim == 4:
        return a
    if a.ndim == 3:
        n = a.shape[1]
        s = int(round(math.sqrt(n)))
        if s * s == n:
            return a.transpose(1, 2).reshape(a.shape[0], a.shape[2], s, s)
    raise ValueError(f"cannot make a spatial map from an activation of shape {tuple(a.shape)}")


@dataclass
class CamResult:
    """DF-CAM output for a batch of B inputs.

    ``map`` ``(B, H, W)``: normalised sum of the per-layer maps, in [0, 1];
    ``layer_maps`` ``(B, L, H, W)``: each layer's normalised Grad-CAM map; ``layers``: names.
    """

    map: torch.Tensor
    layer_maps: torch.Tensor
    layers: list[str]


def df_cam(denoiser: Denoiser, x_t: torch.Tensor, layers: Sequence[str] | None = None) -> CamResult:
    """DF-CAM of a batch of inputs: every layer from ONE forward and ONE backward pass.

    Target y = Σ of the raw noise prediction (all CFG branches, as the reference code summed
    the stacked U-Net output), so each branch's gradient is that of its own ε̂; activations and
    gradients are then combined across branches as X_u + w (X_c − X_u). Grad-CAM per layer:
    α_k = mean_ij G_kij, map = ReLU(Σ_k α_k A_k), bilinear upsample to the input resolution,
    min–max. Samples in the batch do not interact (group norms are per sample), so batching
    B inputs gives the same maps as B separate calls.

    Args:
        denoiser: the U-Net at the explained step.
        x_t: ``(B, C, H, W)`` inputs.
        layers: sub-module names (default: :func:`unet_layers`).
    """
    names = resolve_layers(denoiser.module, layers)
    size = tuple(x_t.shape[-2:])
    x = x_t.to(denoiser.device, denoiser.dtype).detach().requires_grad_(True)
    with torch.enable_grad(), capture_activations(denoiser.module, names) as acts:
        y = denoiser.branches(x).float().sum()
        missing = [n for n in names if n not in acts]
        if missing:
            raise DiffxaiError("saliency.cam.layers", f"layer {missing[0]!r} did not run in the forward pass")
        tensors = [acts[n] for n in names]
        grads = torch.autograd.grad(y, tensors, allow_unused=True)
    maps = []
    for a, g in zip(tensors, grads):
        a = _as_map_layout(a.detach()).float()
        g = torch.zeros_like(a) if g is None else _as_map_layout(g).float()
        a, g = denoiser.combine(a), denoiser.combine(g)
        alpha = g.mean((2, 3), keepdim=True)
        terms = alpha * a
        cam = F.relu(terms.sum(1))  # B, h, w
        # A layer whose only consumer is a GroupNorm gets α ≈ 0 (the norm removes the mean of its
        # gradient): its map is float round-off; count it as empty rather than min-max the noise.
        scale = (g.abs().mean((2, 3), keepdim=True) * a.abs()).sum(1).flatten(1).amax(1)
        empty = cam.flatten(1).amax(1) <= CAM_REL_TOL * scale
        cam = torch.where(empty[:, None, None], torch.zeros_like(cam), cam)
        maps.append(minmax(upsample(cam, size)))
    del acts, tensors, grads
    layer_maps = torch.stack(maps, 1).cpu()  # B, L, H, W
    return CamResult(map=minmax(layer_maps.sum(1)), layer_maps=layer_maps, layers=names)


# --------------------------------------------------------------------------------------------
# Deletion / insertion in the denoiser's input space
# --------------------------------------------------------------------------------------------


def _score(out: torch.Tensor, ref: torch.Tensor, score: str, data_range: float) -> torch.Tensor:
    """``(B,)`` similarity of outputs ``out`` to references ``ref`` (both ``(B, C, H, W)``)."""
    if score == "ssim":
        return ssim(
            ref,
            out,
            window=SSIM_WINDOW,
            sigma=SSIM_SIGMA,
            data_range=data_range,
            padding="zero",
            separable=False,
            clamp_variance=True,
            dtype=torch.float32,
        )
    return -((out.float() - ref.float()) ** 2).flatten(1).mean(1)


def deletion_insertion(
    denoiser: Denoiser,
    x_t: torch.Tensor,
    maps: torch.Tensor,
    *,
    target: Callable[[Denoiser, torch.Tensor], torch.Tensor] | None = None,
    score: str = "ssim",
    n_points: int = 17,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
    data_range: float = 2.0,
    batch_size: int = 256,
) -> dict[str, torch.Tensor]:
    """Deletion and insertion games in the denoiser's input space (arXiv 2402.10404 §4).

    Input positions (shared across channels) are ranked by saliency. Deletion starts from x_t
    and sets the top positions to 0; insertion starts from a blurred x_t (Gaussian, kernel 11,
    σ = 5 pixels) and copies the top positions back; ``n_points`` evenly spaced position counts
    (paper: 65 on a 64×64 latent). Each input is scored by how close ``target(denoiser, ·)`` is to
    the same target on the intact x_t (``score``: mean ``ssim`` with ``data_range``, or
    ``neg_mse``) — a cheap stand-in for the paper's single-image FID. A faithful map has a low
    deletion AUC and a high insertion AUC. The protocol is
    :func:`diffxai.metrics.faithfulness.deletion_insertion` (batched).

    Args:
        denoiser: the denoiser at the explained step.
        x_t: ``(B, C, H, W)`` inputs (repeat one input to score several maps of it).
        maps: ``(B, H, W)`` saliency maps at the input resolution.
        target: what is scored: ``target(denoiser, x)`` → ``(B, C, H, W)``, a :class:`DenoiserTarget`
            or any callable of that shape (default :class:`NextState`: the next sampling state).
        score: ``ssim`` or ``neg_mse``.
    Returns:
        ``deletion_auc``, ``insertion_auc`` ``(B,)`` and ``deletion_curve``, ``insertion_curve``
        ``(B, n_points)`` (CPU float32).
    """
    if score not in EVAL_SCORES:
        raise DiffxaiError(
            "saliency.evaluation.score", f"unknown score {score!r} (use one of {', '.join(EVAL_SCORES)})"
        )
    target = NextState() if target is None else target
    x = x_t.to(denoiser.device, torch.float32)
    with torch.no_grad():  # the intact inputs in one pass (split only by an out-of-memory error)
        ref = map_batches(
            lambda xb: target(denoiser, xb),
            x,
            batch_size=max(1, x.shape[0]),
            out_device=None,
            label="deletion/insertion reference",
            progress=False,
        )

        def score_fn(xb: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
            return _score(target(denoiser, xb), ref[src], score, data_range)

        out = _deletion_insertion(
            x,
            maps.to(x.device).float(),
            score_fn,
            n_points=n_points,
            blur_kernel=blur_kernel,
            blur_sigma=blur_sigma,
            batch_size=batch_size,
        )
    return {k: v.float().cpu() for k, v in out.items()}
