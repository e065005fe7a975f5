"""Stage ``saliency``: DF-RISE / DF-CAM of the denoiser along its own sampling trajectory.

Rules: ``saliency_compute`` (one job per saliency method and class or prompt, :func:`compute`),
``saliency_aggregate`` (:func:`aggregate`); the plot rule's action is
:func:`diffxai.plots.saliency.plot`.

A job, for any diffusion backend (pixel DDPM or Stable Diffusion; chosen once by ``load_backend``):

1. sample ``saliency.n_samples`` trajectories with the class's condition (``condition_key``: its
   label, or its prompt) and classifier-free guidance ``saliency.guidance`` through the one
   sampling loop (pixel: DDIM on ``sampling_steps`` evenly spaced timesteps from T−1; SD: the
   configured scheduler's own ``sampling_steps`` spacing), recording x_t at every step (step 0 =
   noisiest); initial noise from ``make_generator(seed, "saliency", class, sample)``, so both
   methods explain the same trajectories;
2. at each step in ``saliency.steps`` explain the fixed-step denoiser (same timestep, condition,
   null condition and CFG as the sampler) with DF-RISE or DF-CAM;
3. score every map and a random map (shared by both methods) by deletion / insertion, the
   scored output being the target named by ``saliency.evaluation.target``;
4. write the maps (``maps/saliency/{method}/{cls}.safetensors``) and one table row per (sample,
   step, layer) (``layer`` = ``all`` for the method's map; DF-CAM also one row per U-Net block).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pandas as pd
import torch

from diffxai.config.experiment import class_prompt, condition_key, diffusion_kind, diffusion_location
from diffxai.core.batching import Progress, map_batches
from diffxai.core.device import resolve_device
from diffxai.core.errors import DiffxaiError
from diffxai.core.seeding import make_generator
from diffxai.core.timesteps import level_timesteps
from diffxai.io.arrays import save_arrays
from diffxai.io.specs import SPECS
from diffxai.io.tables import aggregate_tables, provenance, write_table
from diffxai.methods.saliency import (
    Denoiser,
    deletion_insertion,
    df_cam,
    df_rise,
    fixed_step_denoiser,
    make_target,
    resolve_layers,
)
from diffxai.metrics.maps import map_statistics, random_maps
from diffxai.models.backend import DiffusionBackend
from diffxai.models.loading import load_backend
from diffxai.sampling.loop import sample
from diffxai.sampling.noising import seeded_noise

log = logging.getLogger(__name__)

METHODS = ("dfrise", "dfcam")
STAGE = "saliency"
#: samples per chunk of the sampling loop and x̂0 predictions per decoder call
SAMPLE_BATCH = 8
CURVES = ("deletion_curve", "insertion_curve", "random_deletion_curve", "random_insertion_curve")


@dataclass
class Explained:
    """The states one job explains (``n`` samples, ``k`` selected steps).

    ``x_t`` ``(n, k, C, H, W)``: the denoiser's input at each selected step (pixels or latents);
    ``next`` ``(n, k, C, H, W)``: the state the sampler produced from it (the authors' code
    variant compares against it); ``display`` ``(n, k, C', H', W')``: the step's x̂0 as an image
    in [-1, 1] (decoded for SD); ``final`` ``(n, C', H', W')``: the generated images in [-1, 1];
    ``timesteps`` ``(k,)`` of the selected steps and ``all_timesteps`` ``(S,)`` of the schedule;
    ``denoiser(j)``: the :class:`~diffxai.methods.saliency.Denoiser` of selected step j;
    ``prompt``: the text prompt (text-conditioned models only).
    """

    x_t: torch.Tensor
    next: torch.Tensor
    display: torch.Tensor
    final: torch.Tensor
    timesteps: list[int]
    all_timesteps: list[int]
    denoiser: Callable[[int], Denoiser]
    prompt: str | None = None


def load_model(params: dict, inputs, device: torch.device) -> DiffusionBackend:
    """The experiment's diffusion backend (pixel: checked against ``data.channels``; SD: in
    ``saliency.dtype``)."""
    kind = diffusion_kind(params)
    location = diffusion_location(params, inputs.get("ddpm") or None)
    if kind == "stable_diffusion":
        return load_backend(kind, location, device, dtype=params["saliency"]["dtype"])
    return load_backend(kind, location, device, channels=params["data"]["channels"])


def explained_states(params: dict, backend: DiffusionBackend) -> Explained:
    """Sample the class's trajectories with ``backend`` and return the states to explain.

    Pixel models: DDIM on ``sampling_steps`` evenly spaced timesteps from T−1 to 0, the null
    label as the unconditional branch. Text-conditioned models: ``saliency.scheduler`` with its
    own spacing of ``sampling_steps``, ``saliency.negative_prompt`` as the unconditional branch,
    images of ``saliency.image_size`` pixels. The same loop, denoiser and decoding otherwise.
    """
    s, cls, seed = params["saliency"], params["cls"], params["seed"]
    kind = diffusion_kind(params)
    n, n_steps = s["n_samples"], s["sampling_steps"]
    steps = [int(v) for v in s["steps"]]
    if kind == "stable_diffusion":
        null, size, prompt = backend.encode([s["negative_prompt"]]), s["image_size"], class_prompt(cls)
        schedule = {"n_steps": n_steps, "scheduler": s["scheduler"]}
    else:
        null, size, prompt = backend.null(1), None, None
        ts = level_timesteps(backend.num_train_timesteps, n_steps, field="config.saliency.sampling_steps")
        schedule = {"timesteps": ts, "scheduler": "ddim"}
    key = condition_key(cls, kind)
    x_init = seeded_noise(
        backend.sample_shape(size, size), [make_generator(seed, STAGE, cls["name"], i) for i in range(n)]
    )
    with torch.no_grad():
        res = sample(
            backend,
            x_init,
            cond=backend.encode([key] * n),
            guidance=s["guidance"],
            null=null,
            record=True,
            decode=True,
            batch_size=SAMPLE_BATCH,
            label=f"saliency {cls['name']} sampling",
            **schedule,
        )
        ts = [int(t) for t in res["timesteps"]]
        if len(ts) != n_steps:
            raise DiffxaiError("config.saliency.sampling_steps", f"the scheduler made {len(ts)} steps, not {n_steps}")
        x0 = res["x0_pred"][:, steps]
        display = map_batches(
            lambda z: backend.decode(z).float(),
            x0.reshape(-1, *x0.shape[2:]),
            batch_size=SAMPLE_BATCH,
            device=backend.device,
            what="latents",
            label="decoding x0_pred",
        )
        cond = backend.encode([key])
    x_all = torch.cat([res["x_t"], res["sample"][:, None]], 1)  # n, S+1, ...

    def denoiser(j: int) -> Denoiser:
        i = steps[j]
        t_next = ts[i + 1] if i + 1 < len(ts) else None
        return fixed_step_denoiser(backend, ts[i], cond, s["guidance"], null=null, t_next=t_next)

    return Explained(
        x_t=res["x_t"][:, steps],
        next=x_all[:, [i + 1 for i in steps]],
        display=display.view(n, len(steps), *display.shape[1:]),
        final=res["images"],
        timesteps=[ts[i] for i in steps],
        all_timesteps=ts,
        denoiser=denoiser,
        prompt=prompt,
    )


def _cam_maps(den: Denoiser, layers: list[str], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DF-CAM of inputs ``x`` ``(B, C, H, W)``: the maps ``(B, H, W)`` and layer maps ``(B, L, H, W)``."""
    res = df_cam(den, x, layers)
    return res.map, res.layer_maps


def _stat_rows(maps: torch.Tensor, base: list[dict], layer: str) -> list[dict]:
    """``base`` rows (one per map of ``maps`` ``(n, H, W)``) with ``layer`` and the map statistics."""
    st = map_statistics(maps)
    return [
        dict(
            row,
            layer=layer,
            entropy=float(st["entropy"][i]),
            gini=float(st["gini"][i]),
            top10_mass=float(st["top10_mass"][i]),
        )
        for i, row in enumerate(base)
    ]


def compute(params: dict, inputs, outputs) -> None:
    """One (method, class) job → ``outputs.maps`` (safetensors) and ``outputs.table`` (per-job
    ``saliency_stats``); see the module doc. Unknown DF-CAM layer names fail before any sampling."""
    method, cls, seed = params["method"], params["cls"], params["seed"]
    if method not in METHODS:
        raise DiffxaiError("saliency", f"unknown saliency method {method!r} (use one of {', '.join(METHODS)})")
    s = params["saliency"]
    ev = s["evaluation"]
    name = cls["name"]
    device = resolve_device(params["device"])
    started = time.time()
    backend = load_model(params, inputs, device)
    layers = resolve_layers(backend.unet, s["cam"]["layers"]) if method == "dfcam" else []
    ex = explained_states(params, backend)
    n, k = ex.x_t.shape[:2]
    log.info("%s %s: %d samples x %d steps sampled in %.1fs", method, name, n, k, time.time() - started)
    size = tuple(ex.x_t.shape[-2:])
    maps = torch.zeros(n, k, *size)
    layer_maps = torch.zeros(n, k, len(layers), *size) if layers else None
    used = torch.zeros(n, k, dtype=torch.long)
    curves = {key: torch.zeros(n, k, ev["n_points"]) for key in CURVES}
    rows: list[dict] = []
    eval_kw = {
        "target": make_target(ev["target"]),
        "score": ev["score"],
        "n_points": ev["n_points"],
        "blur_kernel": ev["blur_kernel"],
        "blur_sigma": ev["blur_sigma"],
        "data_range": ev["data_range"],
        "batch_size": ev["batch_size"],
    }
    rise_progress = Progress(n * k, "maps", f"dfrise {name}")  # one DF-RISE map per (sample, step)
    for j, t in enumerate(ex.timesteps):
        step = int(s["steps"][j])
        den = ex.denoiser(j)
        x = ex.x_t[:, j]
        t0 = time.time()
        if method == "dfrise":
            r = s["rise"]
            for i in range(n):
                g = make_generator(seed, STAGE, "dfrise", name, i, step, device=device)
                ref = ex.next[i, j] if r["reference"] == "next" else None
                res = df_rise(
                    den,
                    x[i],
                    generator=g,
                    n_masks=r["n_masks"],
                    p=r["p"],
                    mask=r["mask"],
                    grid_size=r["grid_size"],
                    batch_size=r["batch_size"],
                    reference=ref,
                    early_stop_tol=r["early_stop_tol"],
                    check_every=r["check_every"],
                    estimator=r["estimator"],
                )
                maps[i, j], used[i, j] = res.map, res.n_masks_used
                rise_progress.advance(1)
        else:  # all samples in one pass; an out-of-memory error splits them (maps are per sample)
            maps[:, j], layer_maps[:, j] = map_batches(
                partial(_cam_maps, den, layers), x, batch_size=n, what="samples", label="df_cam", progress=False
            )
        t_map = time.time() - t0
        rnd = random_maps(size, [make_generator(seed, STAGE, "random", name, i, step) for i in range(n)])
        di = deletion_insertion(den, torch.cat([x, x]), torch.cat([maps[:, j], rnd]), **eval_kw)
        for game in ("deletion", "insertion"):
            curves[f"{game}_curve"][:, j] = di[f"{game}_curve"][:n]
            curves[f"random_{game}_curve"][:, j] = di[f"{game}_curve"][n:]
        base = [
            {
                "class_name": name,
                "sample": i,
                "step": step,
                "timestep": int(t),
                "method": method,
                "deletion_auc": float(di["deletion_auc"][i]),
                "insertion_auc": float(di["insertion_auc"][i]),
                "random_deletion_auc": float(di["deletion_auc"][n + i]),
                "random_insertion_auc": float(di["insertion_auc"][n + i]),
                "n_masks_used": int(used[i, j]) if method == "dfrise" else 0,
            }
            for i in range(n)
        ]
        rows += _stat_rows(maps[:, j], base, "all")
        if layers:
            rows += _layer_rows(den, x, layer_maps[:, j], layers, base, eval_kw, ev["per_layer"])
        log.info("step %d (t=%d): %s maps in %.2fs, evaluation done at %.1fs", step, t, method, t_map, time.time() - t0)
    df = pd.DataFrame(rows)
    df["prompt"] = ex.prompt
    df["model_type"] = backend.kind
    df["guidance"] = float(s["guidance"])
    df["eval_score"], df["eval_target"] = ev["score"], ev["target"]
    contract = list(SPECS["saliency_stats"].required)
    df = df[contract + [c for c in df.columns if c not in contract]]
    arrays = {
        "maps": maps,
        "x_t": ex.x_t,
        "display": ex.display,
        "final": ex.final,
        "timesteps": torch.as_tensor(ex.timesteps),
        "steps": torch.as_tensor([int(v) for v in s["steps"]]),
        **curves,
    }
    if method == "dfrise":
        arrays["n_masks_used"] = used
    if layers:
        arrays["layer_maps"] = layer_maps
    meta = {
        "class_name": name,
        "method": method,
        "prompt": ex.prompt,
        "layers": layers,
        "all_timesteps": ex.all_timesteps,
        "model_type": backend.kind,
        "layout": "maps: (n samples, k steps, H, W); layer_maps: (n, k, L, H, W); x_t: (n, k, C, H, W)",
    }
    save_arrays(outputs.maps, arrays, meta)
    write_table(df, outputs.table, "saliency_stats", provenance(params, device))
    log.info("%s %s done in %.1fs", method, name, time.time() - started)


def _layer_rows(
    den: Denoiser,
    x: torch.Tensor,
    layer_maps: torch.Tensor,
    layers: list[str],
    base: list[dict],
    eval_kw: dict,
    per_layer: bool,
) -> list[dict]:
    """DF-CAM's rows of one step, one per (sample, layer): map statistics of ``layer_maps``
    ``(n, L, H, W)`` and, with ``per_layer``, each layer map's deletion / insertion AUCs (NaN without)."""
    size = tuple(layer_maps.shape[-2:])
    per = None
    if per_layer:
        per = deletion_insertion(den, x.repeat_interleave(len(layers), 0), layer_maps.reshape(-1, *size), **eval_kw)
    rows = []
    for li, layer in enumerate(layers):
        lb = [dict(b) for b in base]
        for i, b in enumerate(lb):
            b.update(
                deletion_auc=float(per["deletion_auc"][i * len(layers) + li]) if per else float("nan"),
                insertion_auc=float(per["insertion_auc"][i * len(layers) + li]) if per else float("nan"),
            )
        rows += _stat_rows(layer_maps[:, li], lb, layer)
    return rows


def aggregate(params: dict, inputs, outputs) -> None:
    """``saliency_stats.parquet``: the per-job tables concatenated (rule ``saliency_aggregate``)."""
    aggregate_tables(params, {outputs[0]: (list(inputs), "saliency_stats")})
