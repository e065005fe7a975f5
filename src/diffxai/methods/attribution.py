"""Captum attribution maps, batched, for configured methods and callable targets.

A method is configured as::

    ig:
      captum: IntegratedGradients         # any input-attribution class of captum.attr
      args: {multiply_by_inputs: true}    # constructor arguments (after the forward function)
      attribute: {baselines: 0.0, n_steps: 20, internal_batch_size: 2048}   # .attribute() kwargs
      batch_size: 64                      # maps per Captum call
      reference_size: null                # see below
      noise_tunnel: null                  # or {nt_type: smoothgrad, nt_samples: 10, stdevs: 0.1}

so Saliency, DeepLift, InputXGradient, FeatureAblation, ... and NoiseTunnel-wrapped versions
are added by config alone (:func:`build_method`; the rules are shared with the torch-free
planning check in :mod:`diffxai.core.attrspec`). Unknown classes or parameters are one-line
:class:`DiffxaiError`\\ s naming the config field.

**Targets.** What a map explains is an object, as pytorch-grad-cam's ``ClassifierOutputTarget``:
:class:`ClassLogit` (the class's logit, the poster) or :class:`ClassProbability` (its softmax
probability), each holding the class index and callable on the model's output ``(..., n_classes)``.
Captum still receives a forward function and ``target=`` indices: the target's
:meth:`~ClassTarget.forward_function` (the model itself for logits, the model followed by a
softmax for probabilities) and the targets' indices, so ``target(model(x)) ==
target.forward_function(model)(x)[..., target.index]``. The maps of one call share one kind of
target (one forward function); the indices may differ per map.

Conventions:

* Inputs ``(M, C, H, W)`` in [-1, 1] (what the classifier takes); one target per map (or one for
  all); maps come back ``(M, C, H, W)`` like Captum's, and :func:`reduce_channels` sums the
  channel axis (as Captum's image visualisation does) to the stored ``(M, H, W)``.
* List values containing the string ``"C"`` (e.g. ``sliding_window_shapes: [C, 15, 15]``) get
  the image's channel count. With ``reference_size: 224`` the last two entries of
  ``sliding_window_shapes`` and ``strides`` are given for a 224-px image and scaled to the
  input's size (``max(1, round(v·H/224))``): Occlusion's (C, 15, 15) / (C, 8, 8) becomes
  (C, 17, 17) / (C, 9, 9) at 256 px and (C, 1, 1) / (C, 1, 1) on 16-px digits.
* **GradientSHAP** (``captum: GradientShap``) takes ``baselines`` as a list of multipliers of
  the input: ``[0.0, 1.0]`` is the poster's distribution {0·x, 1·x}, per image. Captum's
  GradientShap draws from one shared baseline set for the whole batch and from the global
  RNGs, so the batched path here draws, for every map, exactly what a one-image Captum call
  seeded with that map's seed draws (baseline indices and the interpolation coefficients from
  ``numpy.random.RandomState(seed % 2**32)``, the input noise from a ``torch.Generator`` seeded
  with ``seed``), then takes Captum's gradients (``Saliency``) of all images × samples of a
  chunk at once. The result equals :func:`attribute_reference` (one image per call, Captum's
  GradientShap) and does not depend on the batch size.
* NoiseTunnel wrappers draw from torch's global RNG; each chunk runs under
  ``torch.random.fork_rng`` seeded from its first map's seed: deterministic for a given
  ``batch_size``, but not independent of it.

:func:`map_faithfulness` scores maps against random maps by deletion / insertion
(:func:`diffxai.metrics.faithfulness.deletion_insertion`); :func:`parameter_layers` and
:func:`randomise_layer` are the cascading model randomisation of the sanity check (Adebayo et
al. 2018).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from diffxai.core.attrspec import (
    INPUT,
    LAYER,
    NOISE_TUNNEL,
    UNKNOWN,
    Signature,
    check_class_kind,
    check_method,
    check_method_table,
    is_class_name,
    method_where,
)
from diffxai.core.batching import Progress, batch_slices, map_batches
from diffxai.core.errors import DiffxaiError
from diffxai.core.seeding import derive_seed
from diffxai.metrics.faithfulness import ScoreFn, deletion_insertion

#: the poster's three methods (Integrated Gradients, GradientSHAP, Occlusion) as config entries
POSTER_METHODS = {
    "ig": {
        "captum": "IntegratedGradients",
        "attribute": {"baselines": 0.0, "n_steps": 20, "internal_batch_size": 2048},
    },
    "gradshap": {"captum": "GradientShap", "attribute": {"n_samples": 50, "stdevs": 0.0001, "baselines": [0.0, 1.0]}},
    "occlusion": {
        "captum": "Occlusion",
        "reference_size": 224,
        "attribute": {
            "sliding_window_shapes": ["C", 15, 15],
            "strides": ["C", 8, 8],
            "baselines": 0.0,
            "perturbations_per_eval": 64,
        },
    },
}


#: `attribute` keys whose last two entries `reference_size` scales to the image
SCALED_KEYS = ("sliding_window_shapes", "strides")


@dataclass(frozen=True)
class MethodSpec:
    """One configured attribution method (see module doc)."""

    name: str
    captum: str
    args: dict = field(default_factory=dict)
    attribute: dict = field(default_factory=dict)
    batch_size: int = 64
    reference_size: int | None = None
    noise_tunnel: dict | None = None

    @property
    def where(self) -> str:
        return method_where(self.name)

    @property
    def is_gradshap(self) -> bool:
        return self.captum == "GradientShap" and not self.noise_tunnel


def captum_class(name: str, where: str) -> type:
    """The ``captum.attr`` input-attribution class called ``name``."""
    import captum.attr as ca
    from captum.attr import Attribution, LayerAttribution, NeuronAttribution, NoiseTunnel

    cls = getattr(ca, name, None) if is_class_name(name) else None
    if not (inspect.isclass(cls) and issubclass(cls, Attribution)):
        kind = UNKNOWN
    elif cls is NoiseTunnel:
        kind = NOISE_TUNNEL
    elif issubclass(cls, (LayerAttribution, NeuronAttribution)):
        kind = LAYER
    else:
        kind = INPUT
    check_class_kind(name, kind, where)
    return cls


def _params(fn) -> tuple[tuple[str, bool], ...]:
    """``(name, has_default)`` per parameter of ``fn``, from ``inspect.signature``."""
    return tuple((p.name, p.default is not inspect.Parameter.empty) for p in inspect.signature(fn).parameters.values())


def captum_signature(name: str, where: str) -> Signature:
    """The :class:`~diffxai.core.attrspec.Signature` of input-attribution class ``name`` (raises otherwise)."""
    cls = captum_class(name, where)
    attribute = tuple(p for p, _ in _params(cls.attribute)) if hasattr(cls, "attribute") else None
    return Signature(_params(cls.__init__), attribute)


def build_method(name: str, entry: dict, where: str | None = None) -> MethodSpec:
    """Validate one config entry (see module doc and :func:`diffxai.core.attrspec.check_method`)
    and return its :class:`MethodSpec`."""
    return MethodSpec(*check_method(name, entry, captum_signature, where))


def build_methods(methods: dict) -> dict[str, MethodSpec]:
    """Validate every entry of ``config.attribution.methods``; ``{name: MethodSpec}``."""
    check_method_table(methods)
    return {name: build_method(name, entry) for name, entry in methods.items()}


def _resolve(value, channels: int):
    if isinstance(value, (list, tuple)):
        return tuple(channels if v == "C" else _resolve(v, channels) for v in value)
    if value == "C":
        return channels
    return value


def attribute_kwargs(spec: MethodSpec, image_shape: Sequence[int]) -> dict:
    """``spec.attribute`` for inputs of shape ``(C, H, W)``: ``"C"`` filled in, windows scaled."""
    c, h, w = image_shape
    kw = {k: _resolve(v, c) for k, v in spec.attribute.items() if not (spec.is_gradshap and k == "baselines")}
    if spec.reference_size:
        for key in SCALED_KEYS:
            v = kw.get(key)
            if isinstance(v, tuple) and len(v) >= 2:
                ref = spec.reference_size
                kw[key] = v[:-2] + (max(1, round(v[-2] * h / ref)), max(1, round(v[-1] * w / ref)))
            elif isinstance(v, int):
                kw[key] = max(1, round(v * min(h, w) / spec.reference_size))
    return kw


def reduce_channels(maps: torch.Tensor) -> torch.Tensor:
    """``(M, C, H, W)`` → ``(M, H, W)``: sum over channels (Captum's visualisation convention)."""
    return maps.sum(dim=1)


@dataclass(frozen=True)
class ClassTarget:
    """What a map explains: one class's score in a classifier's output (see module doc).

    ``index``: the class. Subclasses define :meth:`scores` (every class's score from the logits)
    and :meth:`forward_function` (the model composed with it, what Captum differentiates)."""

    index: int

    def __post_init__(self):
        object.__setattr__(self, "index", int(self.index))

    @staticmethod
    def scores(logits: torch.Tensor) -> torch.Tensor:
        """Every class's score ``(..., n_classes)`` from logits ``(..., n_classes)``."""
        raise NotImplementedError

    @classmethod
    def forward_function(cls, model: nn.Module) -> nn.Module:
        """The model whose output ``(B, n_classes)`` holds this kind of score of every class."""
        raise NotImplementedError

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """This class's score ``(...)`` from the model's logits ``(..., n_classes)``."""
        return self.scores(logits)[..., self.index]


@dataclass(frozen=True)
class ClassLogit(ClassTarget):
    """The logit of class ``index`` (the poster's target); Captum differentiates the model itself."""

    @staticmethod
    def scores(logits: torch.Tensor) -> torch.Tensor:
        return logits

    @classmethod
    def forward_function(cls, model: nn.Module) -> nn.Module:
        return model


class _Softmax(nn.Module):
    """A logit model followed by a softmax over classes."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ClassProbability.scores(self.net(x))


@dataclass(frozen=True)
class ClassProbability(ClassTarget):
    """The softmax probability of class ``index`` (in [0, 1])."""

    @staticmethod
    def scores(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)

    @classmethod
    def forward_function(cls, model: nn.Module) -> nn.Module:
        return _Softmax(model)


def target_kind(targets: Sequence[ClassTarget]) -> type[ClassTarget]:
    """The one :class:`ClassTarget` subclass of ``targets`` (a ``ValueError`` when they mix kinds)."""
    kinds = {type(t) for t in targets}
    if len(kinds) != 1 or not issubclass(next(iter(kinds)), ClassTarget):
        raise ValueError(f"targets must be one ClassTarget kind, got {sorted(k.__name__ for k in kinds)}")
    return kinds.pop()


def _per_map(targets: ClassTarget | Sequence[ClassTarget], m: int) -> list[ClassTarget]:
    """One target per map: ``targets`` repeated ``m`` times, or the ``m`` given ones."""
    out = [targets] * m if isinstance(targets, ClassTarget) else list(targets)
    if len(out) != m:
        raise ValueError(f"one target per map is required ({m}), got {len(out)}")
    return out


def _indices(targets: Sequence[ClassTarget]) -> torch.Tensor:
    return torch.tensor([t.index for t in targets], dtype=torch.long)


def target_score(model: nn.Module, targets: Sequence[ClassTarget]) -> ScoreFn:
    """A :data:`~diffxai.metrics.faithfulness.ScoreFn` for ``deletion_insertion``: row ``src`` of a
    perturbed batch ``x`` ``(B, C, H, W)`` scores ``targets[src]`` on ``model(x)`` (logits cast to
    float32), ``(B,)``."""
    kind, index = target_kind(targets), _indices(targets)

    def score(x: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        s = kind.scores(model(x).float())
        return s.gather(1, index.to(x.device)[src].view(-1, 1)).squeeze(1)

    return score


def _instantiate(spec: MethodSpec, forward_func: nn.Module | Callable):
    cls = captum_class(spec.captum, spec.where)
    method = cls(forward_func, **spec.args)
    if spec.noise_tunnel:
        from captum.attr import NoiseTunnel

        method = NoiseTunnel(method)
    return method


def _gradshap_draws(seed: int, n_samples: int, n_baselines: int, shape, stdev: float, device):
    """What Captum's one-image GradientShap draws after ``torch.manual_seed(seed)`` and
    ``np.random.seed(seed % 2**32)``: baseline indices, input noise, interpolation coefficients."""
    rs = np.random.RandomState(seed % 2**32)
    idx = rs.choice(n_baselines, n_samples)  # NoiseTunnel._expand_partial (numpy)
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    std = torch.tensor(stdev, device=device).repeat((n_samples, *shape))
    noise = torch.normal(0, std, generator=g)  # NoiseTunnel._add_noise_to_input (torch)
    alpha = rs.uniform(0.0, 1.0, n_samples)  # InputBaselineXGradient.attribute (numpy)
    return idx, noise, alpha


class MapAttributor:
    """Batched attribution maps of one configured method for one model.

    Args:
        model: the classifier (e.g. :class:`diffxai.models.classifiers.Classifier`), logits
            ``(B, n_classes)``; what is differentiated is chosen per call by the targets.
        spec: the method (see :func:`build_method`).
    """

    def __init__(self, model: nn.Module | Callable, spec: MethodSpec):
        self.model = model
        self.spec = spec

    def attribute(
        self,
        inputs: torch.Tensor,
        targets: ClassTarget | Sequence[ClassTarget],
        seeds: Sequence[int] | None = None,
        *,
        device: torch.device | str | None = None,
        batch_size: int | None = None,
        out_device: torch.device | str | None = "cpu",
    ) -> torch.Tensor:
        """Attribution maps ``(M, C, H, W)`` for ``inputs`` ``(M, C, H, W)``, in the explained
        score's units per input unit (times the input, for methods that multiply by it).

        Args:
            targets: what each map explains, one :class:`ClassTarget` per map (or one for all),
                all of one kind.
            seeds: one integer per map; randomised methods (GradientSHAP, NoiseTunnel) draw
                from them. Required for those, ignored by deterministic ones.
            device: where the model runs (default: the inputs' device).
            batch_size: maps per Captum call (default ``spec.batch_size``).
        """
        m = inputs.shape[0]
        targets = _per_map(targets, m)
        forward = target_kind(targets).forward_function(self.model)
        index = _indices(targets)
        random = self.spec.is_gradshap or bool(self.spec.noise_tunnel)
        if random and (seeds is None or len(seeds) != m):
            raise ValueError(f"{self.spec.captum}: one seed per map is required")
        device = torch.device(device) if device is not None else inputs.device
        kw = attribute_kwargs(self.spec, inputs.shape[1:])
        seeds_t = torch.as_tensor(list(seeds) if seeds is not None else [0] * m, dtype=torch.long)
        method = None if self.spec.is_gradshap else _instantiate(self.spec, forward)

        def chunk(x: torch.Tensor, t: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
            if self.spec.is_gradshap:
                return self._gradshap(forward, x, t, sd.tolist()).detach()
            if self.spec.noise_tunnel:
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    torch.manual_seed(derive_seed(int(sd[0]), "noise-tunnel", len(sd)))
                    return method.attribute(x, target=t, **self.spec.noise_tunnel, **kw).detach()
            return method.attribute(x, target=t, **kw).detach()

        # map_batches halves the chunk and retries on out-of-memory (logged); maps do not depend on
        # the chunking except for NoiseTunnel, whose noise is drawn per chunk.
        return map_batches(
            chunk,
            inputs,
            index,
            seeds_t,
            batch_size=batch_size or self.spec.batch_size,
            device=device,
            out_device=out_device,
            what="maps",
            label=self.spec.name,
        )

    def _gradshap(
        self, forward: nn.Module | Callable, x: torch.Tensor, target: torch.Tensor, seeds: Sequence[int]
    ) -> torch.Tensor:
        """GradientSHAP of a chunk with per-map randomness identical to one-image Captum calls."""
        from captum.attr import Saliency

        at = self.spec.attribute
        n = int(at.get("n_samples", 5))
        stdev = float(at.get("stdevs", 0.0))
        mult = torch.tensor([float(v) for v in at.get("baselines", [0.0, 1.0])], device=x.device, dtype=x.dtype)
        b, shape = x.shape[0], tuple(x.shape[1:])
        idx, noise, alpha = [], [], []
        for s in seeds:
            i, e, a = _gradshap_draws(int(s), n, len(mult), shape, stdev, x.device)
            idx.append(torch.as_tensor(i))
            noise.append(e)
            alpha.append(torch.as_tensor(a))
        idx = torch.stack(idx).to(x.device)  # (B, n)
        alpha = torch.stack(alpha).to(device=x.device, dtype=x.dtype).view(b * n, *([1] * len(shape)))
        xn = x.repeat_interleave(n, dim=0) + torch.stack(noise).view(b * n, *shape).to(x.dtype)
        base = mult[idx].view(b * n, *([1] * len(shape))) * x.repeat_interleave(n, dim=0)
        scaled = (alpha * xn + (1.0 - alpha) * base).requires_grad_()
        grads = Saliency(forward).attribute(scaled, target=target.repeat_interleave(n), abs=False)
        multiply = self.spec.args.get("multiply_by_inputs", True)
        attr = (xn - base) * grads if multiply else grads
        return attr.view(b, n, *shape).sum(dim=1) * 1 / n


def attribute_reference(
    model: nn.Module | Callable,
    spec: MethodSpec,
    inputs: torch.Tensor,
    targets: ClassTarget | Sequence[ClassTarget],
    seeds: Sequence[int] | None = None,
) -> torch.Tensor:
    """The poster's loop: one Captum call per image, ``(M, C, H, W)`` on the inputs' device.

    GradientShap gets the per-image baseline set ``{m·x for m in baselines}`` and runs with
    torch's and numpy's global RNGs seeded from the map's seed (both restored afterwards);
    randomised methods need ``seeds``."""
    import captum.attr as ca

    targets = _per_map(targets, inputs.shape[0])
    forward = target_kind(targets).forward_function(model)
    kw = attribute_kwargs(spec, inputs.shape[1:])
    method = ca.GradientShap(forward, **spec.args) if spec.is_gradshap else _instantiate(spec, forward)
    device = inputs.device
    outs = []
    for i in range(inputs.shape[0]):
        x, t = inputs[i : i + 1], targets[i].index
        if spec.is_gradshap or spec.noise_tunnel:
            seed = int(seeds[i])
            state = np.random.get_state()
            try:
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    torch.manual_seed(seed)
                    np.random.seed(seed % 2**32)
                    if spec.is_gradshap:
                        at = spec.attribute
                        dist = torch.cat([float(m) * x for m in at.get("baselines", [0.0, 1.0])])
                        a = method.attribute(
                            x,
                            baselines=dist,
                            n_samples=int(at.get("n_samples", 5)),
                            stdevs=float(at.get("stdevs", 0.0)),
                            target=t,
                        )
                    else:
                        a = method.attribute(x, target=t, **spec.noise_tunnel, **kw)
            finally:
                np.random.set_state(state)
        else:
            a = method.attribute(x, target=t, **kw)
        outs.append(a.detach())
    return torch.cat(outs)


@torch.no_grad()
def map_faithfulness(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    random: torch.Tensor,
    targets: Sequence[ClassTarget],
    *,
    n_points: int,
    blur_kernel: int,
    blur_sigma: float,
    substrate: float,
    batch_size: int,
    device: torch.device | str,
) -> dict[str, torch.Tensor]:
    """Deletion / insertion AUCs of ``maps`` and of ``random`` maps on the inputs they explain.

    Args:
        images: ``(M, C, H, W)`` in [-1, 1]; maps, random: ``(M, H, W)`` (larger = more important).
        targets: the score of each row (e.g. :class:`ClassProbability`), one kind.
        n_points, blur_kernel, blur_sigma (pixels), substrate, batch_size: see
            :func:`~diffxai.metrics.faithfulness.deletion_insertion` (``batch_size`` perturbed
            images per model call).
    Returns:
        ``{"deletion_auc", "insertion_auc", "deletion_auc_random", "insertion_auc_random"}``, each
        ``(M,)`` float32 on the CPU. Maps and their random maps go through ``deletion_insertion``
        together, in chunks of ``4 · (batch_size // n_points)`` maps (at least 1).
    """
    m = images.shape[0]
    targets = _per_map(targets, m)
    chunk = max(1, (batch_size // n_points) * 4)
    res = {k: [] for k in ("deletion_auc", "insertion_auc", "deletion_auc_random", "insertion_auc_random")}
    progress = Progress(m, "maps", "faithfulness")
    for sl in batch_slices(m, chunk):  # (each deletion_insertion call halves its own batch on OOM)
        b = sl.stop - sl.start
        imgs = images[sl].to(device)
        both = torch.cat([maps[sl], random[sl]]).to(device)
        out = deletion_insertion(
            torch.cat([imgs, imgs]),
            both,
            target_score(model, targets[sl] * 2),
            n_points=n_points,
            blur_kernel=blur_kernel,
            blur_sigma=blur_sigma,
            substrate=substrate,
            batch_size=batch_size,
        )
        for metric in ("deletion", "insertion"):
            auc = out[f"{metric}_auc"].cpu()
            res[f"{metric}_auc"].append(auc[:b])
            res[f"{metric}_auc_random"].append(auc[b:])
        progress.advance(b)
    return {k: torch.cat(v) for k, v in res.items()}


def parameter_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters directly, from the output back to the input
    (the cascading order: the top layer is randomised first)."""
    names = [n for n, mod in model.named_modules() if n and any(True for _ in mod.parameters(recurse=False))]
    return names[::-1]


def randomise_layer(model: nn.Module, name: str, seed: int) -> None:
    """Re-initialise every parameter under module ``name`` in place, deterministically.

    Modules with ``reset_parameters`` use their own initialiser (run on a CPU copy under a
    forked, seeded RNG); other parameters are redrawn as N(0, std of the trained weights)."""
    modules = dict(model.named_modules())
    if name not in modules:
        options = ", ".join(parameter_layers(model)[:12])
        raise DiffxaiError("config.attribution.sanity.layers", f"unknown layer {name!r} (e.g. {options})")
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for sub in modules[name].modules():
            own = list(sub.named_parameters(recurse=False))
            if not own:
                continue
            if hasattr(sub, "reset_parameters"):
                fresh = copy.deepcopy(sub).to("cpu")
                fresh.reset_parameters()
                with torch.no_grad():
                    for (_, p), (_, q) in zip(own, fresh.named_parameters(recurse=False)):
                        p.copy_(q.to(p.device, p.dtype))
            else:
                with torch.no_grad():
                    for _, p in own:
                        std = float(p.detach().float().std()) if p.numel() > 1 else 1.0
                        p.copy_(torch.randn(p.shape, generator=g).mul_(std or 1.0).to(p.device, p.dtype))
