"""TODO docstring."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pandas as pd
import torch

from diffxai.config.experiment import diffusion_label, num_timesteps
from diffxai.core.batching import Progress, map_batches
from diffxai.core.device import resolve_device
from diffxai.core.errors import DiffxaiError
from diffxai.core.seeding import make_generator
from diffxai.core.timesteps import level_timesteps
from diffxai.io.arrays import load_arrays, save_arrays
from diffxai.io.tables import aggregate_tables, provenance, write_parquet
from diffxai.methods.saliency import Denoiser, deletion_insertion, df_cam, df_rise, pixel_denoiser, resolve_layers, sd_denoiser
from diffxai.core.argchecks import check_eval_args, check_rise_args
from diffxai.metrics.maps import map_statistics, random_maps
from diffxai.config.experiment import class_prompt
from diffxai.config.experiment import is_sd
from diffxai.models.sd import sd_dtype

log = logging.getLogger(__name__)


METHODS = ("dfrise", "dfcam")


CONTRACT = ["class_name", "sample", "step", "timestep", "method", "layer", "entropy", "gini", "top10_mass",
            "deletion_auc", "insertion_auc"]  # fmt: skip


STAGE = "saliency"








def check_saliency_config(config: dict) -> None:
    """Up-front checks the schema cannot express; one-line :class:`DiffxaiError`."""
    s = config["saliency"]
    names = [c["name"] for c in config["classes"]]
    for i, name in enumerate(s.get("classes") or []):
        if name not in names:
            raise DiffxaiError(f"config.saliency.classes[{i}]", f"unknown class {name!r} (config.classes has {names})")
    n, T = s["sampling_steps"], num_timesteps(config)
    if n > T:
        raise DiffxaiError("config.saliency.sampling_steps", f"{n} must be in [2, {T}] (the model's timesteps)")
    for i, step in enumerate(s["steps"]):
        if not 0 <= int(step) < n:
            raise DiffxaiError(f"config.saliency.steps[{i}]", f"step {step} is outside the {n}-step schedule (0..{n - 1})")
    r, e = s["rise"], s["evaluation"]
    check_rise_args(r["n_masks"], r["p"], r["mask"], r["grid_size"], r["batch_size"])
    check_eval_args(e["n_points"], e["score"], e["target"])
    if not is_sd(config) and s["guidance"] < 0:
        raise DiffxaiError("config.saliency.guidance", f"{s['guidance']} must be >= 0")
    if is_sd(config) and not config["models"]["diffusion"].get("id"):
        raise DiffxaiError("config.models.diffusion.id", "Stable Diffusion needs a hub id or local pipeline directory")


@dataclass
class Explained:
    """The states one job explains (``n`` samples, ``k`` selected steps).

    ``x_t`` ``(n, k, C, H, W)``: the denoiser's input at each selected step (pixels or latents);
    ``next`` ``(n, k, C, H, W)``: the state the sampler produced from it (the authors' code
    variant compares against it); ``display`` ``(n, k, C', H', W')``: the step's x̂0 as an image
    in [-1, 1] (decoded for SD); ``final`` ``(n, C', H', W')``: the generated images;
    ``timesteps`` ``(k,)``; ``denoiser(j)``: the :class:`Denoiser` of selected step j;
    ``module``: the U-Net.
    """

    x_t: torch.Tensor
    next: torch.Tensor
    display: torch.Tensor
    final: torch.Tensor
    timesteps: list[int]
    all_timesteps: list[int]
    denoiser: Callable[[int], Denoiser]
    module: torch.nn.Module
    prompt: str | None = None


def _pixel_trajectory(config: dict, cls: dict, ddpm_dir: str | None, device, check) -> Explained:
    from diffxai.sampling.loop import ddim_sample
    from diffxai.sampling.noising import seeded_noise
    from diffxai.models.pixel import config_diffusion

    s = config["saliency"]
    model = config_diffusion(config, ddpm_dir, device)
    check(model.unet)
    steps = [int(v) for v in s["steps"]]
    ts = level_timesteps(model.num_train_timesteps, s["sampling_steps"], field="config.saliency.sampling_steps")
    label = diffusion_label(cls) if model.conditional else None
    cfg_u = model.unet.config
    size = cfg_u.sample_size if isinstance(cfg_u.sample_size, int) else cfg_u.sample_size[0]
    shape = (cfg_u.in_channels, size, size)
    n = s["n_samples"]
    x_init = seeded_noise(shape, [make_generator(config["seed"], STAGE, cls["name"], i) for i in range(n)])
    labels = None if label is None else torch.full((n,), label, dtype=torch.long)
    res = ddim_sample(model, x_init, ts, labels, s["guidance"], record=True)
    x_all = torch.cat([res["x_t"], res["sample"][:, None]], 1)  # n, S+1, ...

    def denoiser(j: int) -> Denoiser:
        i = steps[j]
        t_next = int(ts[i + 1]) if i + 1 < len(ts) else None
        return pixel_denoiser(model, int(ts[i]), label, s["guidance"], t_next=t_next, clip_x0=True)

    return Explained(
        x_t=res["x_t"][:, steps], next=x_all[:, [i + 1 for i in steps]], display=res["x0_pred"][:, steps],
        final=res["sample"], timesteps=[int(ts[i]) for i in steps], all_timesteps=[int(t) for t in ts],
        denoiser=denoiser, module=model.unet,
    )  # fmt: skip




def _sd_trajectory(config: dict, cls: dict, device, check) -> Explained:
    from diffxai.models.sd import load_sd
    from diffxai.sampling.loop import sd_sample

    s = config["saliency"]
    model = load_sd(config["models"]["diffusion"]["id"], device, sd_dtype(config, device))
    check(model.unet)
    steps = [int(v) for v in s["steps"]]
    prompt = class_prompt(cls)
    n = s["n_samples"]
    size = s.get("image_size")
    res = sd_sample(model, [prompt] * n, n_steps=s["sampling_steps"], guidance=s["guidance"], seed=config["seed"],
                    stage=STAGE, keys=[(cls["name"], i) for i in range(n)], scheduler=s["scheduler"], record=True,
                    batch_size=min(n, 8), negative_prompt=s["negative_prompt"], height=size, width=size)  # fmt: skip
    ts = [int(t) for t in res["timesteps"]]
    if len(ts) != s["sampling_steps"]:
        raise DiffxaiError("config.saliency.sampling_steps", f"the scheduler made {len(ts)} steps, not {s['sampling_steps']}")
    x_all = torch.cat([res["x_t"], res["latents"][:, None]], 1)
    with torch.no_grad():
        cond = model.encode_prompts([prompt])
        uncond = model.encode_prompts([s["negative_prompt"]])
        x0 = res["x0_pred"][:, steps]
        display = map_batches(lambda z: model.decode(z).float(), x0.reshape(-1, *x0.shape[2:]), batch_size=8,
                              device=device, what="latents", label="decoding x0_pred")  # fmt: skip
    display = display.view(n, len(steps), *display.shape[1:])

    def denoiser(j: int) -> Denoiser:
        i = steps[j]
        t_next = ts[i + 1] if i + 1 < len(ts) else None
        return sd_denoiser(model, ts[i], cond, uncond, s["guidance"], t_next=t_next)

    return Explained(
        x_t=res["x_t"][:, steps], next=x_all[:, [i + 1 for i in steps]], display=display, final=res["images"],
        timesteps=[ts[i] for i in steps], all_timesteps=ts, denoiser=denoiser, module=model.unet, prompt=prompt,
    )  # fmt: skip


def explained_states(config: dict, cls: dict, ddpm_dir: str | None, device, check=lambda unet: None) -> Explained:
    """Load the model, run ``check(unet)`` (e.g. layer-name validation) before any sampling, then
    sample the class's trajectories and return the states to explain."""
    if is_sd(config):
        return _sd_trajectory(config, cls, device, check)
    return _pixel_trajectory(config, cls, ddpm_dir, device, check)


def _cam_maps(den: Denoiser, layers: list[str], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    res = df_cam(den, x, layers)
    return res.map, res.layer_maps


def _stat_rows(maps: torch.Tensor, base: list[dict], layer: str) -> list[dict]:
    st = map_statistics(maps)
    return [
        dict(row, layer=layer, entropy=float(st["entropy"][i]), gini=float(st["gini"][i]),
             top10_mass=float(st["top10_mass"][i]))  # fmt: skip
        for i, row in enumerate(base)
    ]


def compute_saliency(config: dict, method: str, cls_name: str, ddpm_dir: str | None, out_maps: str, out_table: str) -> None:
    """One (method, class) job; see the module doc."""
    from diffxai.config.experiment import class_spec

    if method not in METHODS:
        raise DiffxaiError("saliency", f"unknown saliency method {method!r} (use one of {', '.join(METHODS)})")
    check_saliency_config(config)
    cls = class_spec(config, cls_name)
    s, seed = config["saliency"], config["seed"]
    r, ev = s["rise"], s["evaluation"]
    device = resolve_device(config["device"])
    started = time.time()
    layers: list[str] = []

    def check(unet) -> None:  # unknown layer names fail before any sampling
        if method == "dfcam":
            layers.extend(resolve_layers(unet, s["cam"]["layers"]))

    ex = explained_states(config, cls, ddpm_dir, device, check)
    log.info("%s %s: %d samples x %d steps sampled in %.1fs", method, cls_name, ex.x_t.shape[0], ex.x_t.shape[1],
             time.time() - started)  # fmt: skip
    n, k = ex.x_t.shape[:2]
    size = tuple(ex.x_t.shape[-2:])
    maps = torch.zeros(n, k, *size)
    layer_maps = torch.zeros(n, k, len(layers), *size) if layers else None
    used = torch.zeros(n, k, dtype=torch.long)
    curves = {key: torch.zeros(n, k, ev["n_points"]) for key in
              ("deletion_curve", "insertion_curve", "random_deletion_curve", "random_insertion_curve")}  # fmt: skip
    rows: list[dict] = []
    eval_kw = dict(n_points=ev["n_points"], score=ev["score"], target=ev["target"], blur_kernel=ev["blur_kernel"],
                   blur_sigma=ev["blur_sigma"], data_range=ev["data_range"], batch_size=ev["batch_size"])  # fmt: skip
    rise_progress = Progress(n * k, "maps", f"dfrise {cls_name}")  # one DF-RISE map per (sample, step)
    for j, t in enumerate(ex.timesteps):
        step = int(s["steps"][j])
        den = ex.denoiser(j)
        x = ex.x_t[:, j]
        t0 = time.time()
        if method == "dfrise":
            for i in range(n):
                g = make_generator(seed, STAGE, "dfrise", cls_name, i, step, device=device)
                ref = ex.next[i, j] if r["reference"] == "next" else None
                res = df_rise(den, x[i], generator=g, n_masks=r["n_masks"], p=r["p"], mask=r["mask"],
                              grid_size=r["grid_size"], batch_size=r["batch_size"], reference=ref,
                              early_stop_tol=r["early_stop_tol"], check_every=r["check_every"],
                              estimator=r["estimator"])  # fmt: skip
                maps[i, j], used[i, j] = res.map, res.n_masks_used
                rise_progress.advance(1)
        else:  # all samples in one pass; an out-of-memory error splits them (maps are per sample)
            maps[:, j], layer_maps[:, j] = map_batches(partial(_cam_maps, den, layers), x, batch_size=n,
                                                       what="samples", label="df_cam", progress=False)  # fmt: skip
        t_map = time.time() - t0
        rnd = random_maps(size, [make_generator(seed, STAGE, "random", cls_name, i, step) for i in range(n)])
        di = deletion_insertion(den, torch.cat([x, x]), torch.cat([maps[:, j], rnd]), **eval_kw)
        for key in ("deletion", "insertion"):
            curves[f"{key}_curve"][:, j] = di[f"{key}_curve"][:n]
            curves[f"random_{key}_curve"][:, j] = di[f"{key}_curve"][n:]
        base = [
            dict(class_name=cls_name, sample=i, step=step, timestep=int(t), method=method,
                 deletion_auc=float(di["deletion_auc"][i]), insertion_auc=float(di["insertion_auc"][i]),
                 random_deletion_auc=float(di["deletion_auc"][n + i]), random_insertion_auc=float(di["insertion_auc"][n + i]),
                 n_masks_used=int(used[i, j]) if method == "dfrise" else 0)  # fmt: skip
            for i in range(n)
        ]
        rows += _stat_rows(maps[:, j], base, "all")
        if layers:
            lm = layer_maps[:, j]  # n, L, H, W
            per = None
            if ev["per_layer"]:
                flat = lm.reshape(-1, *size)
                per = deletion_insertion(den, x.repeat_interleave(len(layers), 0), flat, **eval_kw)
            for li, name in enumerate(layers):
                lb = [dict(b) for b in base]
                for i, b in enumerate(lb):
                    b.update(deletion_auc=float(per["deletion_auc"][i * len(layers) + li]) if per else float("nan"),
                             insertion_auc=float(per["insertion_auc"][i * len(layers) + li]) if per else float("nan"))  # fmt: skip
                rows += _stat_rows(lm[:, li], lb, name)
        log.info("step %d (t=%d): %s maps in %.2fs, evaluation done at %.1fs", step, t, method, t_map, time.time() - t0)
    df = pd.DataFrame(rows)
    df["prompt"] = ex.prompt
    df["model_type"] = "stable_diffusion" if is_sd(config) else "pixel"
    df["guidance"] = float(s["guidance"])
    df["eval_score"], df["eval_target"] = ev["score"], ev["target"]
    df = df[CONTRACT + [c for c in df.columns if c not in CONTRACT]]
    arrays = {"maps": maps, "x_t": ex.x_t, "display": ex.display, "final": ex.final,
              "timesteps": torch.as_tensor(ex.timesteps), "steps": torch.as_tensor([int(v) for v in s["steps"]]),
              **curves}  # fmt: skip
    if method == "dfrise":
        arrays["n_masks_used"] = used
    if layers:
        arrays["layer_maps"] = layer_maps
    meta = {"class_name": cls_name, "method": method, "prompt": ex.prompt, "layers": layers,
            "all_timesteps": ex.all_timesteps, "model_type": df["model_type"].iloc[0],
            "layout": "maps: (n samples, k steps, H, W); layer_maps: (n, k, L, H, W); x_t: (n, k, C, H, W)"}  # fmt: skip
    prov = provenance(config, device)
    save_arrays(out_maps, arrays, meta)
    write_parquet(df, out_table, prov)
    log.info("%s %s done in %.1fs", method, cls_name, time.time() - started)


def aggregate_saliency(config: dict, inputs: list[str], out_path: str) -> None:
    aggregate_tables(config, resolve_device(config["device"]), {out_path: inputs})


def plot_saliency(config: dict, table: str, map_paths: list[str], out_overlays: str, out_layers: str, out_auc: str) -> None:
    from diffxai.plots import saliency as plots_saliency

    df = pd.read_parquet(table)
    loaded = [load_arrays(p) for p in map_paths]
    dpi = config["plots"]["dpi"]
    plots_saliency.overlays(loaded, out_overlays, dpi=dpi)
    plots_saliency.cam_layers([x for x in loaded if x[1]["method"] == "dfcam"], out_layers, dpi=dpi)
    plots_saliency.auc_vs_step(df, out_auc, dpi=dpi, seed=config["seed"])
