"""TODO docstring."""

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
from diffxai.core.batching import map_batches
from diffxai.core.errors import DiffxaiError
from diffxai.core.seeding import derive_seed

POSTER_METHODS = {
    "ig": {"captum": "IntegratedGradients", "attribute": {"baselines": 0.0, "n_steps": 20, "internal_batch_size": 2048}},
    "gradshap": {"captum": "GradientShap", "attribute": {"n_samples": 50, "stdevs": 0.0001, "baselines": [0.0, 1.0]}},
    "occlusion": {
        "captum": "Occlusion",
        "reference_size": 224,
        "attribute": {"sliding_window_shapes": ["C", 15, 15], "strides": ["C", 8, 8], "baselines": 0.0,
                      "perturbations_per_eval": 64},
    },
}  # fmt: skip


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
    from captum.attr import (
        Attribution,
        LayerAttribution,
        NeuronAttribution,
        NoiseTunnel,
    )

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


def method_spec(config: dict, name: str) -> MethodSpec:
    methods = config["attribution"]["methods"]
    if name not in methods:
        raise DiffxaiError("method", f"unknown attribution method {name!r} (configured: {', '.join(methods)})")
    return build_method(name, methods[name])


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
                kw[key] = v[:-2] + (max(1, round(v[-2] * h / spec.reference_size)),
                                    max(1, round(v[-1] * w / spec.reference_size)))  # fmt: skip
            elif isinstance(v, int):
                kw[key] = max(1, round(v * min(h, w) / spec.reference_size))
    return kw


def reduce_channels(maps: torch.Tensor) -> torch.Tensor:
    """``(M, C, H, W)`` → ``(M, H, W)``: sum over channels (Captum's visualisation convention)."""
    return maps.sum(dim=1)


class ProbabilityOutput(nn.Module):
    """Wrap a logit classifier so attributions explain the softmax probability."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=-1)


def forward_function(classifier: nn.Module, output: str = "logit") -> nn.Module:
    """What maps explain: the classifier's logits (the poster) or softmax probabilities."""
    if output == "logit":
        return classifier
    if output == "prob":
        return ProbabilityOutput(classifier)
    raise DiffxaiError("config.attribution.output", f"unknown output {output!r} (logit, prob)")


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
        forward_func: the model (e.g. :class:`diffxai.models.Classifier`); output ``(B, classes)``.
        spec: the method (see :func:`build_method`).
    """

    def __init__(self, forward_func: nn.Module | Callable, spec: MethodSpec):
        self.forward_func = forward_func
        self.spec = spec
        self.method = None if spec.is_gradshap else _instantiate(spec, forward_func)

    def attribute(
        self,
        inputs: torch.Tensor,
        target: torch.Tensor | int,
        seeds: Sequence[int] | None = None,
        *,
        device: torch.device | str | None = None,
        batch_size: int | None = None,
        out_device: torch.device | str | None = "cpu",
    ) -> torch.Tensor:
        """Attribution maps ``(M, C, H, W)`` for ``inputs`` ``(M, C, H, W)``.

        Args:
            target: ``(M,)`` class indices (or one int for all).
            seeds: one integer per map; randomised methods (GradientSHAP, NoiseTunnel) draw
                from them. Required for those, ignored by deterministic ones.
            device: where the model runs (default: the inputs' device).
            batch_size: maps per Captum call (default ``spec.batch_size``).
        """
        m = inputs.shape[0]
        target = torch.full((m,), int(target), dtype=torch.long) if isinstance(target, int) else torch.as_tensor(target)
        if target.shape != (m,):
            raise ValueError(f"target must be ({m},), got {tuple(target.shape)}")
        random = self.spec.is_gradshap or bool(self.spec.noise_tunnel)
        if random and (seeds is None or len(seeds) != m):
            raise ValueError(f"{self.spec.captum}: one seed per map is required")
        device = torch.device(device) if device is not None else inputs.device
        kw = attribute_kwargs(self.spec, inputs.shape[1:])
        seeds_t = torch.as_tensor(list(seeds) if seeds is not None else [0] * m, dtype=torch.long)

        def chunk(x: torch.Tensor, t: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
            if self.spec.is_gradshap:
                return self._gradshap(x, t, sd.tolist()).detach()
            if self.spec.noise_tunnel:
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    torch.manual_seed(derive_seed(int(sd[0]), "noise-tunnel", len(sd)))
                    return self.method.attribute(x, target=t, **self.spec.noise_tunnel, **kw).detach()
            return self.method.attribute(x, target=t, **kw).detach()

        # map_batches halves the chunk and retries on out-of-memory (logged); maps do not depend on
        # the chunking except for NoiseTunnel, whose noise is drawn per chunk.
        return map_batches(chunk, inputs, target, seeds_t, batch_size=batch_size or self.spec.batch_size,
                           device=device, out_device=out_device, what="maps", label=self.spec.name)  # fmt: skip

    def _gradshap(self, x: torch.Tensor, target: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
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
        xn = x.repeat_interleave(n, dim=0) + torch.stack(noise).view(b * n, *shape)
        base = mult[idx].view(b * n, *([1] * len(shape))) * x.repeat_interleave(n, dim=0)
        scaled = (alpha * xn + (1.0 - alpha) * base).requires_grad_()
        grads = Saliency(self.forward_func).attribute(scaled, target=target.repeat_interleave(n), abs=False)
        multiply = self.spec.args.get("multiply_by_inputs", True)
        attr = (xn - base) * grads if multiply else grads
        return attr.view(b, n, *shape).sum(dim=1) * 1 / n


def attribute_reference(
    forward_func: nn.Module | Callable,
    spec: MethodSpec,
    inputs: torch.Tensor,
    target: torch.Tensor | Sequence[int],
    seeds: Sequence[int] | None = None,
) -> torch.Tensor:
    """The poster's loop: one Captum call per image, ``(M, C, H, W)`` on the inputs' device.

    GradientShap gets the per-image baseline set ``{m·x for m in baselines}`` and runs with
    torch's and numpy's global RNGs seeded from the map's seed (both restored afterwards);
    randomised methods need ``seeds``."""
    import captum.attr as ca

    kw = attribute_kwargs(spec, inputs.shape[1:])
    method = ca.GradientShap(forward_func, **spec.args) if spec.is_gradshap else _instantiate(spec, forward_func)
    device = inputs.device
    outs = []
    for i in range(inputs.shape[0]):
        x, t = inputs[i : i + 1], int(target[i])
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
                        a = method.attribute(x, baselines=dist, n_samples=int(at.get("n_samples", 5)),
                                             stdevs=float(at.get("stdevs", 0.0)), target=t)  # fmt: skip
                    else:
                        a = method.attribute(x, target=t, **spec.noise_tunnel, **kw)
            finally:
                np.random.set_state(state)
        else:
            a = method.attribute(x, target=t, **kw)
        outs.append(a.detach())
    return torch.cat(outs)


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
                    for (pn, p), (_, q) in zip(own, fresh.named_parameters(recurse=False)):
                        p.copy_(q.to(p.device, p.dtype))
            else:
                with torch.no_grad():
                    for _, p in own:
                        std = float(p.detach().float().std()) if p.numel() > 1 else 1.0
                        p.copy_(torch.randn(p.shape, generator=g).mul_(std or 1.0).to(p.device, p.dtype))
