"""GPU benchmark: every heavy stage at real size, diffxai's batched way vs the seed-style naive loop.

Sections (``--sections``, default all; each in every dtype of ``--dtypes``):

=========  =====================================================================================
ig         Integrated Gradients (n_steps 20) of a random-weight torchvision ResNet-18, 256-px
gradshap   images seen at 224 px (Resize 256, CenterCrop 224); GradientSHAP (50 samples,
occlusion  baselines {0, x}); Occlusion (15x15 windows, stride 8 at 224 px). diffxai:
           ``methods.attribution.MapAttributor`` (maps batched per Captum call); naive: one Captum
           call per image with Captum's defaults, as the poster's code (Occlusion: one perturbation
           per forward).
dfrise     DF-RISE, maps of 500 masks (p 0.5, 64x64 latent) on the random-weight SD 1.4 U-Net at
           step 15 of 20 DPM-Solver++ steps with guidance 7.5 (2 rows per mask): ``df_rise``
           (masks per forward batched) vs one mask per forward. Item: a mask.
dfcam      DF-CAM over the 44 U-Net blocks: ``df_cam`` (every block from one forward+backward,
           inputs batched, as the saliency stage) vs one forward+backward per block. Item: a map.
cad        CAD component attribution a = w * dJ_e/dw for the U-Net's feed-forward weights (149 M):
           ``methods.components.attribute`` (one backward per batch of items) vs one backward per
           (sample, timestep) item.
schedules  Generation with DPM-Solver++ on an exponential "early" schedule (30 steps, gamma 60,
           guidance 7.5): ``sampling.loop.sample`` (samples batched) vs one sample at a time.
=========  =====================================================================================

Per (section, dtype) it prints, and writes to ``--out`` as JSON: items/s of both ways and their
ratio (measured in the same run, on the same model and inputs); FLOPs per item (counted with
``torch.utils.flop_counter.FlopCounterMode`` on one call); achieved TFLOP/s and its share of the
device's peak (a table of known devices by ``torch.cuda.get_device_name``: H100 SXM / H200 dense
989 TFLOP/s in bf16/fp16, 67 in fp32, 495 in TF32; "unknown peak" elsewhere); the batch size
reached (it starts large and ``diffxai.core.batching``'s out-of-memory halving brings it down to
what fits, logged as a warning) and the peak device memory; a check of the batched output
against the naive one where both explain the same items. Targets reported at the end: IG at
least 25% of peak, DF-RISE at least 10x the one-mask-per-forward loop.

Weights are random (``diffxai.models.realsize``): the published architectures, so time and memory
are real, the outputs meaningless. float16 / bfloat16 rows run the networks in that dtype (the
saliency and schedules stages' ``dtype`` setting; for attribution and CAD, whose stages run
float32, the 16-bit rows are marked "bench only").

Run (from a repository checkout; diffxai is imported from ``src/``, nothing needs installing)::

    python bench/bench_gpu.py --out bench_gpu.json                 # CUDA: real size, < 10 min
    python bench/bench_gpu.py --dtypes float32,bfloat16,float16   # more dtypes (longer)
    python bench/bench_gpu.py --small --budget-s 5                 # CPU (auto there): tiny sizes, minutes
    python bench/bench_gpu.py --sections dfrise,cad --budget-s 20

A machine with torch, torchvision and transformers but without diffusers or captum: on a machine
that reaches the package registry, ``pip download --no-deps -d wheels diffusers==0.42.1
captum==0.9.0`` (the pins of constraints.txt), carry ``wheels/`` along, and there
``pip install --no-deps wheels/*.whl`` (if an import then names another missing package, download
that one the same way).

``--budget-s`` caps each timed run (default 15 s on CUDA, 5 s on a CPU; the naive loop gets
half); ``--total-budget-s`` (default 500 s on CUDA, counted from the start) skips the rows that
would start later, so that the whole run stays within 10 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import platform
import re
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

T0 = time.perf_counter()  # the total budget counts from the start, imports included
REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

SECTIONS = ("ig", "gradshap", "occlusion", "dfrise", "dfcam", "cad", "schedules")
SD_SECTIONS = ("dfrise", "dfcam", "cad", "schedules")

#: dense peak TFLOP/s by a substring of torch.cuda.get_device_name (first match wins):
#: (float32 without tensor cores, TF32 tensor cores, bf16/fp16 tensor cores with fp32 accumulation)
PEAK_TFLOPS = (
    ("H200", 67.0, 494.7, 989.4),  # same chip as the H100 SXM (also GH200)
    ("H100 PCIe", 51.2, 378.0, 756.0),
    ("H100 NVL", 60.0, 417.5, 835.0),
    ("H100", 67.0, 494.7, 989.4),  # SXM, e.g. "NVIDIA H100 80GB HBM3"
    ("A100", 19.5, 156.0, 312.0),
    ("L40S", 91.6, 183.0, 362.1),
    ("L40", 90.5, 90.5, 181.0),
    ("L4", 30.3, 60.0, 121.0),
)

PROMPT = "a photo of a tiger"


def _log() -> logging.Logger:
    return logging.getLogger("bench_gpu")


# --------------------------------------------------------------------------------------------
# measurement helpers
# --------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def peak_tflops(device: torch.device, dtype: torch.dtype, tf32: bool) -> tuple[float | None, str]:
    """The device's dense peak for ``dtype`` (TF32 for float32 when TF32 is on) and its label."""
    if device.type != "cuda":
        return None, "unknown peak"
    name = torch.cuda.get_device_name(device)
    for key, fp32, t32, half in PEAK_TFLOPS:
        if key in name:
            if dtype == torch.float32:
                return (t32, f"{key} tf32") if tf32 else (fp32, f"{key} fp32")
            return half, f"{key} 16-bit"
    return None, "unknown peak"


class _GlobalOnly:
    """Stands in for FlopCounterMode's module tracker: every FLOP counts under "Global" only."""

    parents = ("Global",)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False


def count_flops(fn) -> float:
    """FLOPs of one call of ``fn`` (forward and backward ops alike), by
    ``torch.utils.flop_counter.FlopCounterMode``: its op registry and dispatch mode, without its
    per-module tracker, whose backward hooks break Captum's ``autograd.grad(torch.unbind(...))``
    ("A leaf node was passed to _will_engine_execute_node")."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnly()
    with counter:
        fn()
    return float(counter.get_total_flops())


class HalvingWatch(logging.Handler):
    """Records the batch sizes that diffxai.core.batching's out-of-memory halving settles on."""

    PATTERN = re.compile(r"halving the batch size to (\d+)")

    def __init__(self):
        super().__init__(logging.WARNING)
        self.sizes: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        m = self.PATTERN.search(record.getMessage())
        if m:
            self.sizes.append(int(m.group(1)))

    @contextlib.contextmanager
    def watching(self):
        logger = logging.getLogger("diffxai.core.batching")
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)

    def reached(self, start: int) -> int:
        return min([start, *self.sizes])


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float().cpu(), b.float().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


# --------------------------------------------------------------------------------------------
# sizes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the real-size run and ``--small``."""

    tiny: bool
    image: int  # attribution input side (the network sees 224 px after Resize 256 + CenterCrop 224)
    preprocess: str  # "imagenet" (real) or "none" (small: the network sees the image as it is)
    attr_batch: dict  # maps per Captum call to start from (OOM halving lowers it)
    attr_max: int  # most maps in the timed batched run
    occlusion_ppe: int  # perturbations per forward (batched way); 0 = every window of an image at once
    n_masks: int  # DF-RISE masks per map
    rise_batch: int
    cam_batch: int
    cam_max: int
    cad_samples: int  # CAD items = samples x timesteps
    cad_steps: int
    cad_batch: int
    sched_steps: int
    sched_batch: int
    sched_max: int
    naive_max: int  # most items of a naive loop


REAL = Sizes(
    tiny=False,
    image=256,
    preprocess="imagenet",
    attr_batch={"ig": 128, "gradshap": 64, "occlusion": 16},
    attr_max=4096,
    occlusion_ppe=0,
    n_masks=500,
    rise_batch=256,
    cam_batch=32,
    cam_max=256,
    cad_samples=32,
    cad_steps=8,
    cad_batch=64,
    sched_steps=30,
    sched_batch=32,
    sched_max=512,
    naive_max=64,
)

SMALL = Sizes(
    tiny=True,
    image=16,
    preprocess="none",
    attr_batch={"ig": 4, "gradshap": 2, "occlusion": 2},
    attr_max=8,
    occlusion_ppe=64,
    n_masks=32,
    rise_batch=8,
    cam_batch=2,
    cam_max=4,
    cad_samples=2,
    cad_steps=4,
    cad_batch=4,
    sched_steps=5,
    sched_batch=4,
    sched_max=4,
    naive_max=2,
)


# --------------------------------------------------------------------------------------------
# one row of the table
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    section: str
    dtype: str
    item: str = ""
    batch_start: int = 0
    batch: int = 0
    n_batched: int = 0
    t_batched: float = float("nan")
    n_naive: int = 0
    t_naive: float = float("nan")
    flops_per_item: float = float("nan")
    peak_tflops: float | None = None
    peak_label: str = ""
    mem_peak_gib: float = float("nan")
    mem_total_gib: float = float("nan")
    check: float | None = None
    note: str = ""
    error: str = ""
    derived: dict = field(default_factory=dict)

    def finish(self) -> Row:
        rb = self.n_batched / self.t_batched if self.t_batched > 0 else float("nan")
        rn = self.n_naive / self.t_naive if self.t_naive > 0 else float("nan")
        achieved = self.flops_per_item * rb / 1e12
        self.derived = {
            "batched_per_s": rb,
            "naive_per_s": rn,
            "ratio": rb / rn if rn > 0 else float("nan"),
            "achieved_tflops": achieved,
            "peak_share": achieved / self.peak_tflops if self.peak_tflops else None,
        }
        return self


class Section:
    """One benchmarked stage: ``batched(n, bs)`` runs diffxai's way on the first ``n`` items with
    ``bs`` items per call, ``naive(n)`` the seed-style loop, ``probe()`` one small call whose
    FLOPs are counted (returns the number of items it covers)."""

    item = "items"
    note = ""

    def batched(self, n: int, bs: int):
        raise NotImplementedError

    def naive(self, n: int):
        raise NotImplementedError

    def probe_items(self, bs: int) -> int:
        """Items of the call whose FLOPs are counted (one, by default)."""
        return 1

    def probe(self, bs: int) -> None:
        k = self.probe_items(bs)
        self.batched(k, min(k, bs))

    def check(self, batched_out, naive_out, n_naive: int) -> float | None:
        return None


# --------------------------------------------------------------------------------------------
# attribution: Captum maps of ResNet-18
# --------------------------------------------------------------------------------------------


class Attribution(Section):
    item = "maps"

    def __init__(self, name: str, model, sizes: Sizes, device, dtype, n_max: int):
        from diffxai.methods.attribution import POSTER_METHODS, ClassLogit

        self.name, self.model, self.sizes, self.device, self.dtype = name, model, sizes, device, dtype
        g = torch.Generator().manual_seed(0)
        self.x = (torch.rand(n_max, 3, sizes.image, sizes.image, generator=g) * 2 - 1).to(device, dtype)
        self.targets = [ClassLogit(int(i)) for i in torch.randint(0, 1000, (n_max,), generator=g)]
        self.seeds = [1_000_003 * i + 17 for i in range(n_max)]
        self.entry = POSTER_METHODS[name]
        self.note = "bench only (the stage runs float32)" if dtype != torch.float32 else ""
        if name == "occlusion":
            self.note = ("naive: 1 perturbation/forward; " + self.note).strip("; ")

    def spec(self, bs: int):
        from diffxai.methods.attribution import build_method

        entry = {**self.entry, "batch_size": bs, "attribute": dict(self.entry["attribute"])}
        if self.name == "ig":
            entry["attribute"]["internal_batch_size"] = bs * int(entry["attribute"]["n_steps"])
        if self.name == "occlusion":
            entry["attribute"]["perturbations_per_eval"] = self.sizes.occlusion_ppe or self.n_windows()
        return build_method(self.name, entry)

    def n_windows(self) -> int:
        """Occlusion windows per image (Captum's count: ceil((size - window) / stride) + 1 per axis)."""
        from diffxai.methods.attribution import attribute_kwargs, build_method

        shape = tuple(self.x.shape[1:])
        kw = attribute_kwargs(build_method(self.name, self.entry), shape)
        windows, strides = kw["sliding_window_shapes"], kw["strides"]
        return math.prod(math.ceil((d - w) / s) + 1 for d, w, s in zip(shape, windows, strides))

    def batched(self, n: int, bs: int):
        from diffxai.methods.attribution import MapAttributor

        att = MapAttributor(self.model, self.spec(bs))
        return att.attribute(self.x[:n], self.targets[:n], self.seeds[:n], device=self.device)

    def naive(self, n: int):
        """The poster's loop: one Captum call per image with Captum's defaults."""
        import captum.attr as ca

        from diffxai.methods.attribution import attribute_kwargs

        kw = attribute_kwargs(self.spec(1), tuple(self.x.shape[1:]))
        outs = []
        for i in range(n):
            x, t = self.x[i : i + 1], self.targets[i].index
            if self.name == "ig":
                a = ca.IntegratedGradients(self.model).attribute(x, target=t, n_steps=int(kw["n_steps"]))
            elif self.name == "gradshap":
                at = self.entry["attribute"]
                state = np.random.get_state()
                with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                    torch.manual_seed(self.seeds[i])
                    np.random.seed(self.seeds[i] % 2**32)
                    a = ca.GradientShap(self.model).attribute(
                        x,
                        baselines=torch.cat([float(m) * x for m in at["baselines"]]),
                        n_samples=int(at["n_samples"]),
                        stdevs=float(at["stdevs"]),
                        target=t,
                    )
                np.random.set_state(state)
            else:
                a = ca.Occlusion(self.model).attribute(
                    x,
                    sliding_window_shapes=kw["sliding_window_shapes"],
                    strides=kw["strides"],
                    baselines=kw["baselines"],
                    target=t,
                )
            outs.append(a.detach().float().cpu())
        return torch.cat(outs)

    def check(self, batched_out, naive_out, n_naive: int) -> float | None:
        return max_rel_diff(batched_out[:n_naive], naive_out)


# --------------------------------------------------------------------------------------------
# SD 1.4 U-Net sections
# --------------------------------------------------------------------------------------------


class SDContext:
    """The random-weight SD 1.4 of one dtype and what every SD section shares."""

    def __init__(self, sizes: Sizes, device, dtype):
        from diffxai.models.realsize import build_sd14
        from diffxai.models.schedulers import make_scheduler

        self.backend = build_sd14(sizes.tiny, device=device, dtype=dtype)
        self.device, self.dtype, self.sizes = device, dtype, sizes
        with torch.no_grad():
            self.cond = self.backend.encode([PROMPT])  # (1, 77, 768)
            self.null = self.backend.null(1)
        sch = make_scheduler("dpmsolver++", self.backend.scheduler.config, clip_sample=False)
        sch.set_timesteps(20)
        ts = [int(t) for t in sch.timesteps]
        self.t, self.t_next = ts[15], ts[16]  # the paper's explained step 15 of 20
        self.latent = tuple(self.backend.sample_shape())  # (4, 64, 64)

    def denoiser(self):
        from diffxai.methods.saliency import fixed_step_denoiser

        return fixed_step_denoiser(self.backend, self.t, self.cond, 7.5, null=self.null, t_next=self.t_next)

    def latents(self, n: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randn(n, *self.latent, generator=g)


class DFRise(Section):
    item = "masks"

    def __init__(self, sd: SDContext):
        self.sd, self.den = sd, sd.denoiser()
        self.x = sd.latents(1, 0)[0].to(sd.device)
        self.n_map = sd.sizes.n_masks

    def gen(self):
        return torch.Generator(device=self.sd.device).manual_seed(1)

    def batched(self, n: int, bs: int):
        from diffxai.methods.saliency import df_rise

        done, maps = 0, []
        while done < n:  # maps of n_masks masks each (the last one may be shorter)
            k = min(self.n_map, n - done)
            maps.append(df_rise(self.den, self.x, generator=self.gen(), n_masks=k, batch_size=min(bs, k)).map)
            done += k
        return maps

    def probe_items(self, bs: int) -> int:
        return min(self.n_map, bs)  # one forward of a full batch of masks (plus the reference)

    def naive(self, n: int):
        """One denoiser forward (both CFG branches) per mask, same masks and similarity."""
        from diffxai.core.imageops import minmax
        from diffxai.methods.saliency import mask_stream, structure_term

        x = self.x[None].float()
        with torch.no_grad():
            ref = self.den(x)
            acc = torch.zeros(x.shape[-2:], dtype=torch.float64, device=x.device)
            for masks in mask_stream(n, tuple(x.shape[-2:]), 0.5, self.gen(), 64, "pixel", 8):
                for m in masks:
                    acc += m[0].double() * structure_term(ref, self.den(m[None] * x))[0].double()
        return minmax(acc.clamp_min(0).float()).cpu()


class DFCam(Section):
    item = "maps"

    def __init__(self, sd: SDContext, n_max: int):
        from diffxai.methods.saliency import resolve_layers

        self.sd, self.den = sd, sd.denoiser()
        self.x = sd.latents(n_max, 2).to(sd.device)
        self.layers = resolve_layers(self.den.module)
        self.note = f"{len(self.layers)} blocks; naive: 1 run per block"

    def batched(self, n: int, bs: int):
        from diffxai.core.batching import map_batches
        from diffxai.methods.saliency import df_cam

        return map_batches(
            lambda xb: df_cam(self.den, xb).layer_maps, self.x[:n], batch_size=bs, label="df_cam", progress=False
        )

    def naive(self, n: int):
        from diffxai.methods.saliency import df_cam

        return torch.cat(
            [
                torch.cat([df_cam(self.den, self.x[i : i + 1], layers=[name]).layer_maps for name in self.layers], 1)
                for i in range(n)
            ]
        )

    def check(self, batched_out, naive_out, n_naive: int) -> float | None:
        return float((batched_out[:n_naive] - naive_out).abs().max())  # maps are in [0, 1]


class CAD(Section):
    item = "items"

    def __init__(self, sd: SDContext):
        from diffxai.core.timesteps import uniform_timesteps
        from diffxai.methods import components as cad

        s = sd.sizes
        self.sd = sd
        ts = torch.as_tensor(uniform_timesteps(1000, 50)[:: max(1, 50 // s.cad_steps)][: s.cad_steps].copy())
        x_t = sd.latents(s.cad_samples * s.cad_steps, 3).view(s.cad_samples, s.cad_steps, *sd.latent)
        self.items = cad.erase_items(sd.backend, x_t, ts, sd.cond, s.cad_batch)
        self.params = cad.select_parameters(sd.backend.unet, cad.DEFAULT_PATTERNS["stable_diffusion"])
        n_w = sum(p.numel() for p in self.params.values())
        self.note = f"{len(self.params)} ff tensors, {n_w / 1e6:.0f} M weights"
        if sd.dtype != torch.float32:
            self.note += "; bench only (the stage runs float32)"

    def batched(self, n: int, bs: int):
        from diffxai.methods import components as cad

        return cad.attribute(self.sd.backend, self.items.subset(slice(0, n)), self.params, bs)

    def naive(self, n: int):
        """One forward and one backward per (sample, timestep) item."""
        from diffxai.core.hooks import grad_enabled_for
        from diffxai.methods.components import objective_terms

        tensors = list(self.params.values())
        acc = [torch.zeros_like(p, dtype=torch.float64) for p in tensors]
        with grad_enabled_for(self.params):
            for i in range(n):
                j = objective_terms(self.sd.backend, self.items.subset(slice(i, i + 1))).sum()
                for a, g in zip(acc, torch.autograd.grad(j, tensors, allow_unused=True)):
                    if g is not None:
                        a.add_(g.double())
        return acc


class Schedules(Section):
    item = "samples"

    def __init__(self, sd: SDContext, n_max: int):
        from diffxai.core.timesteps import make_schedule

        self.sd = sd
        self.ts = make_schedule("early", 1000, sd.sizes.sched_steps, 60.0).timesteps
        self.x = sd.latents(n_max, 4)
        self.cond = sd.cond.expand(n_max, *sd.cond.shape[1:])
        self.note = f"DPM-Solver++, {len(self.ts)} steps, CFG 7.5"

    def run(self, sl: slice, bs: int):
        from diffxai.sampling.loop import sample

        return sample(
            self.sd.backend,
            self.x[sl],
            timesteps=self.ts,
            cond=self.cond[sl],
            guidance=7.5,
            null=self.sd.null,
            scheduler="dpmsolver++",
            batch_size=bs,
            label="bench sampling",
        )["sample"]

    def batched(self, n: int, bs: int):
        return self.run(slice(0, n), bs)

    def naive(self, n: int):
        return torch.cat([self.run(slice(i, i + 1), 1) for i in range(n)])

    def check(self, batched_out, naive_out, n_naive: int) -> float | None:
        return max_rel_diff(batched_out[:n_naive], naive_out)


# --------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------


def measure(
    row: Row, sec: Section, bs_start: int, n_max: int, sizes: Sizes, device, budget: float, tf32: bool, dtype
) -> Row:
    """Warm up (and find the batch size), count FLOPs, time the batched way, time the naive loop."""
    row.item, row.note, row.batch_start = sec.item, sec.note, bs_start
    row.peak_tflops, row.peak_label = peak_tflops(device, dtype, tf32)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        row.mem_total_gib = torch.cuda.get_device_properties(device).total_memory / 2**30
    watch = HalvingWatch()
    n_warm = min(bs_start, n_max)
    with watch.watching():
        _, t_warm = timed(lambda: sec.batched(n_warm, bs_start), device)  # fills memory, halving on OOM
    row.batch = watch.reached(bs_start)
    row.flops_per_item = count_flops(lambda: sec.probe(row.batch)) / sec.probe_items(row.batch)
    # the timed batched run: as many items as fit the budget by the warm-up's rate, >= one batch
    rate = n_warm / max(t_warm, 1e-9)
    n = int(min(n_max, max(row.batch, rate * budget)))
    with watch.watching():
        out_b, row.t_batched = timed(lambda: sec.batched(n, row.batch), device)
    row.batch = watch.reached(row.batch)
    row.n_batched = n
    # the naive loop: one item to warm up and size it, then as many as fit half the budget
    out_n, t_one = timed(lambda: sec.naive(1), device)
    n_naive = int(min(sizes.naive_max, n, 0.5 * budget / max(t_one, 1e-9)))
    if n_naive < 2:  # one item already fills the naive half of the budget: that is the measurement
        n_naive, row.t_naive = 1, t_one
    else:
        out_n, row.t_naive = timed(lambda: sec.naive(n_naive), device)
    row.n_naive = n_naive
    row.check = sec.check(out_b, out_n, n_naive)
    if device.type == "cuda":
        row.mem_peak_gib = torch.cuda.max_memory_allocated(device) / 2**30
    return row.finish()


class CastInput(torch.nn.Module):
    """A 16-bit classifier that casts its input to its dtype: diffxai's batched GradientSHAP draws
    its input noise in float32 (the attribution stage runs float32 only), which would promote the
    16-bit images to float32 before the network."""

    def __init__(self, net: torch.nn.Module, dtype: torch.dtype):
        super().__init__()
        self.net, self.dtype = net, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(self.dtype))


def build_resnet(sizes: Sizes, device, dtype) -> torch.nn.Module:
    from diffxai.models.classifiers import Classifier
    from diffxai.models.realsize import build_resnet as realsize_resnet

    net = realsize_resnet("resnet18", device=device)
    pre = "imagenet" if sizes.preprocess == "imagenet" else None
    clf = Classifier(net, pre, 1000, source="realsize:resnet18").eval().requires_grad_(False).to(device, dtype)
    return clf if dtype == torch.float32 else CastInput(clf, dtype)


def fmt(v, spec: str, missing: str = "—") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return missing
    return format(v, spec)


def table(rows: list[Row]) -> str:
    head = (
        "| section | dtype | item | batch (start) | batched /s | naive /s | ratio | GFLOP/item | TFLOP/s "
        "| % of peak | peak mem GiB | check | note |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        d = r.derived
        if r.error:
            lines.append(f"| {r.section} | {r.dtype} | | | | | | | | | | | {r.error} |")
            continue
        share = d.get("peak_share")
        lines.append(
            f"| {r.section} | {r.dtype} | {r.item} | {r.batch} ({r.batch_start}) | {fmt(d['batched_per_s'], '.3g')} "
            f"| {fmt(d['naive_per_s'], '.3g')} | {fmt(d['ratio'], '.1f')}x | {fmt(r.flops_per_item / 1e9, '.4g')} "
            f"| {fmt(d['achieved_tflops'], '.3g')} | "
            f"{fmt(None if share is None else 100 * share, '.1f', r.peak_label)}"
            f"{'' if share is None else ' (' + r.peak_label + ')'} "
            f"| {fmt(r.mem_peak_gib, '.1f')} | {fmt(r.check, '.1e')} | {r.note} |"
        )
    return "\n".join(lines)


def targets(rows: list[Row], small: bool = False) -> list[str]:
    out = ["(tiny sizes: the targets are for a GPU at real size)"] if small else []
    ig = [r for r in rows if r.section == "ig" and not r.error]
    shares = [(r.derived["peak_share"], r.dtype) for r in ig if r.derived.get("peak_share") is not None]
    if shares:
        best, dt = max(shares)
        verdict = "met" if best >= 0.25 else "NOT met"
        out.append(f"IG >= 25% of peak: best {100 * best:.1f}% ({dt}): {verdict}")
    else:
        out.append("IG >= 25% of peak: unknown peak (no known CUDA device)" if ig else "IG: not run")
    rise = [r for r in rows if r.section == "dfrise" and not r.error and math.isfinite(r.derived["ratio"])]
    if rise:
        best_r = max(rise, key=lambda r: r.derived["ratio"])
        verdict = "met" if best_r.derived["ratio"] >= 10 else "NOT met"
        out.append(
            f"DF-RISE >= 10x one mask per forward: best {best_r.derived['ratio']:.1f}x ({best_r.dtype}): {verdict}"
        )
    else:
        out.append("DF-RISE: not run")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--dtypes", default=None, help="comma-separated (default: float32,float16 on CUDA, float32 on CPU)")
    ap.add_argument("--small", action="store_true", help="tiny sizes (automatic without CUDA)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--budget-s", type=float, default=None, help="seconds per timed run (default 15 CUDA, 5 CPU)")
    ap.add_argument(
        "--total-budget-s", type=float, default=None, help="skip rows that would start later (default 500 on CUDA)"
    )
    ap.add_argument("--no-tf32", dest="tf32", action="store_false", help="float32 without TF32 (peak: fp32)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--out", default="bench_gpu.json", help="JSON results")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    from diffxai.core.device import resolve_device

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    small = args.small or not cuda
    sizes = SMALL if small else REAL
    budget = args.budget_s if args.budget_s is not None else (15.0 if cuda else 5.0)
    total_budget = args.total_budget_s if args.total_budget_s is not None else (500.0 if cuda else float("inf"))
    dtypes = (args.dtypes or ("float32,float16" if cuda else "float32")).split(",")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        ap.error(f"unknown section {bad[0]!r} (use {','.join(SECTIONS)})")
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    chip = torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu"
    print(
        f"device {device} ({chip}), torch {torch.__version__}, {'small (tiny sizes)' if small else 'real size'}, "
        f"dtypes {','.join(dtypes)}, budget {budget:g} s per timed run, tf32 {'on' if args.tf32 else 'off'}, "
        f"{torch.get_num_threads()} CPU thread(s)",
        flush=True,
    )
    started = T0
    rows: list[Row] = []
    for dname in dtypes:
        dtype = getattr(torch, dname)
        resnet = sd = None
        for name in sections:
            row = Row(section=name, dtype=dname)
            rows.append(row)
            if time.perf_counter() - started > total_budget:
                row.error = f"skipped: past --total-budget-s {total_budget:g}"
                continue
            try:
                if name in ("ig", "gradshap", "occlusion"):
                    if resnet is None:
                        resnet = build_resnet(sizes, device, dtype)
                    sec: Section = Attribution(name, resnet, sizes, device, dtype, sizes.attr_max)
                    bs, n_max = sizes.attr_batch[name], sizes.attr_max
                else:
                    if sd is None:
                        sd = SDContext(sizes, device, dtype)
                    if name == "dfrise":
                        sec, bs, n_max = DFRise(sd), sizes.rise_batch, max(sizes.n_masks, 1) * (1 if small else 8)
                    elif name == "dfcam":
                        sec, bs, n_max = DFCam(sd, sizes.cam_max), sizes.cam_batch, sizes.cam_max
                    elif name == "cad":
                        sec = CAD(sd)
                        bs, n_max = sizes.cad_batch, len(sec.items)
                    else:
                        sec, bs, n_max = Schedules(sd, sizes.sched_max), sizes.sched_batch, sizes.sched_max
                measure(row, sec, bs, n_max, sizes, device, budget, args.tf32, dtype)
            except Exception as exc:  # one row's failure (e.g. NaN in float16) must not stop the others
                row.error = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                _log().warning("%s %s failed:\n%s", name, dname, traceback.format_exc())
            finally:
                sec = None
                if cuda:
                    torch.cuda.empty_cache()
            print(f"  {name} {dname}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        del resnet, sd
        if cuda:
            torch.cuda.empty_cache()
    print()
    print(table(rows))
    print()
    for line in targets(rows, small):
        print(line)
    elapsed = time.perf_counter() - started
    print(f"\ntotal {elapsed:.0f} s")
    result = {
        "device": str(device),
        "device_name": chip,
        "torch": torch.__version__,
        "small": small,
        "dtypes": dtypes,
        "budget_s": budget,
        "tf32": args.tf32,
        "sizes": asdict(sizes),
        "elapsed_s": elapsed,
        "targets": targets(rows, small),
        "rows": [asdict(r) for r in rows],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
