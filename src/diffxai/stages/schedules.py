"""TODO docstring."""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np
import pandas as pd
import torch

from diffxai.config.experiment import diffusion_label, n_classifier_classes
from diffxai.core.device import resolve_device
from diffxai.core.errors import DiffxaiError
from diffxai.core.seeding import make_generator
from diffxai.core.ssim_schedules import band_ssim
from diffxai.core.timesteps import Schedule, check_schedule_args, make_schedule
from diffxai.io.arrays import load_arrays, save_arrays
from diffxai.io.tables import concat_parquet, provenance, write_parquet
from diffxai.metrics.curves import commitment_step, decided_step
from diffxai.models.classifiers import classify, load_classifier
from diffxai.sampling.loop import generate, step_labels
from diffxai.sampling.noising import seeded_noise
from diffxai.config.experiment import classifier_spec
from diffxai.models.pixel import config_diffusion
from diffxai.config.experiment import class_prompt
from diffxai.config.experiment import commitment_pairs
from diffxai.config.experiment import is_sd
from diffxai.config.experiment import pair_id
from diffxai.config.experiment import stage_class
from diffxai.config.experiment import stage_classes

log = logging.getLogger(__name__)


STAGE = "schedules"


SAMPLING_COLUMNS = ["schedule", "gamma", "n_steps", "class_name", "seed", "prob", "top1_index"]


STEPS_COLUMNS = ["schedule", "gamma", "n_steps", "class_name", "seed", "step", "timestep", "prob", "top1_index"]


DISTANCE_COLUMNS = [
    "schedule_a",
    "schedule_b",
    "class_name",
    "seed",
    "ssim",
    "ssim_low",
    "ssim_high",
    "rmse_low",
    "rmse_high",
]


COMMITMENT_COLUMNS = ["pair", "class_a", "class_b", "schedule", "switch_step", "switch_timestep", "seed", "final_top1",
                      "prob_a", "prob_b", "ends_as"]  # fmt: skip


SUMMARY_COLUMNS = ["pair", "class_a", "class_b", "schedule", "switch_step", "switch_timestep", "share_a", "share_b",
                   "n_seeds", "commit_step", "commit_timestep"]  # fmt: skip














def build_schedule(config: dict, name: str, num_train_timesteps: int | None = None) -> Schedule:
    """The :class:`~diffxai.schedules.Schedule` named ``name`` (T from the model when given)."""
    entries = config["schedules"]["schedules"]
    names = [s["name"] for s in entries]
    if name not in names:
        raise DiffxaiError("schedule", f"unknown schedule {name!r} (config.schedules.schedules has {names})")
    i = names.index(name)
    s = entries[i]
    T = int(num_train_timesteps or config["models"]["diffusion"]["num_train_timesteps"])
    return make_schedule(
        s["kind"], T, s["n_steps"], s.get("gamma"), name=name, where=f"config.schedules.schedules[{i}]"
    )


def check_schedules_config(config: dict) -> None:
    """Up-front checks (parse time): every schedule valid for T, unique names, known pair classes.

    Raises a one-line :class:`DiffxaiError` naming the field and value.
    """
    sec = config["schedules"]
    T = int(config["models"]["diffusion"]["num_train_timesteps"])
    seen = set()
    for i, s in enumerate(sec["schedules"]):
        where = f"config.schedules.schedules[{i}]"
        if s["name"] in seen:
            raise DiffxaiError(f"{where}.name", f"duplicate schedule name {s['name']!r}")
        seen.add(s["name"])
        check_schedule_args(s["kind"], T, s["n_steps"], s.get("gamma"), where)
    classes = stage_classes(config)
    names = [c["name"] for c in classes]
    if len(set(names)) != len(names):
        raise DiffxaiError("config.schedules.classes", f"duplicate class names in {names}")
    n_out = n_classifier_classes(config)
    for i, c in enumerate(sec.get("classes") or []):
        if c["index"] >= n_out:
            raise DiffxaiError(
                f"config.schedules.classes[{i}].index",
                f"unknown class {c['index']}: the classifier has {n_out} classes",
            )
        if config["models"]["diffusion"]["source"] == "demo" and diffusion_label(c) >= n_out:
            raise DiffxaiError(f"config.schedules.classes[{i}].label", f"unknown digit class {diffusion_label(c)}")
    for i, pair in enumerate(sec["commitment"]["pairs"] or []):
        for j, c in enumerate(pair):
            if c not in names:
                raise DiffxaiError(
                    f"config.schedules.commitment.pairs[{i}][{j}]", f"unknown class {c!r} (classes: {names})"
                )
        if pair[0] == pair[1]:
            raise DiffxaiError(
                f"config.schedules.commitment.pairs[{i}]", f"a pair needs two different classes, got {pair}"
            )
    for i, name in enumerate(sec["commitment"]["schedules"] if commitment_pairs(config) else []):
        if name not in seen:
            raise DiffxaiError(
                f"config.schedules.commitment.schedules[{i}]", f"unknown schedule {name!r} (have {sorted(seen)})"
            )


def _noise_generators(config: dict, class_names: list[str], n_seeds: int, stage: str = STAGE) -> list[torch.Generator]:
    return [make_generator(config["seed"], stage, c, s) for c in class_names for s in range(n_seeds)]


def _probs(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    p = torch.softmax(logits.double(), -1)
    top_p, top = p.max(-1)
    return p, top, top_p


def _pixel_generation(config, model, sched: Schedule, classes: list[dict]) -> dict[str, torch.Tensor]:
    sec = config["schedules"]
    n_seeds = sec["n_seeds"]
    names = [c["name"] for c in classes]
    c, s = model.unet.config.in_channels, model.unet.config.sample_size
    s = s if isinstance(s, int) else s[0]
    x_init = seeded_noise((c, s, s), _noise_generators(config, names, n_seeds))
    labels = None
    if model.conditional:
        labels = torch.as_tensor([diffusion_label(cl) for cl in classes]).repeat_interleave(n_seeds)
    gens = _noise_generators(config, names, n_seeds, "schedules-ddpm") if sec["sampler"] == "ddpm" else None
    return generate(model, x_init, sched.timesteps, labels, sec["guidance"], sec["sampler"], gens, record=True,
                    batch_size=sec["batch_size"])  # fmt: skip


def _sd_generation(config, model, sched: Schedule, classes: list[dict]) -> dict[str, torch.Tensor]:
    from diffxai.core.batching import map_batches
    from diffxai.sampling.loop import sd_sample

    sec = config["schedules"]
    n_seeds = sec["n_seeds"]
    prompts = [class_prompt(cl) for cl in classes for _ in range(n_seeds)]
    keys = [(cl["name"], s) for cl in classes for s in range(n_seeds)]
    sampler = {"ddim": "ddim", "ddpm": "ddpm", "dpmsolver++": "dpmsolver++"}[sec["sampler"]]
    h = sec["sd"]["height"]
    out = sd_sample(model, prompts, n_steps=sched.n_steps, guidance=sec["guidance"], seed=config["seed"], stage=STAGE,
                    keys=keys, timesteps=sched.timesteps, scheduler=sampler, record=True, batch_size=sec["batch_size"],
                    height=h, width=h)  # fmt: skip
    b, S = out["x0_pred"].shape[:2]
    started = time.time()
    x0_img = map_batches(lambda z: model.decode(z).float(), out["x0_pred"].reshape(b * S, *out["x0_pred"].shape[2:]),
                         batch_size=sec["sd"]["decode_batch_size"], device=model.device, what="latents",
                         label="decode x0_pred")  # fmt: skip
    log.info("decoded %d x̂0 latents in %.1fs", b * S, time.time() - started)
    return {"sample": out["images"], "x0_pred": x0_img.view(b, S, *x0_img.shape[1:])}


def generate_schedule(
    config: dict,
    schedule_name: str,
    ddpm_dir: str | None,
    classifier_path: str | None,
    out_samples: str,
    out_table: str,
    out_steps: str,
) -> None:
    """Generate every class x seed under one schedule; classify final samples and every x̂0.

    Writes the sample arrays ``(K, N, C, H, W)`` and two per-job tables (module doc).
    """
    device = resolve_device(config["device"])
    check_schedules_config(config)
    sec = config["schedules"]
    classes = stage_classes(config)
    names = [c["name"] for c in classes]
    k, n = len(classes), sec["n_seeds"]
    clf = load_classifier(classifier_spec(config, classifier_path), device)
    started = time.time()
    if is_sd(config):
        from diffxai.models.sd import load_sd

        dtype = sec["sd"]["dtype"]
        dtype = torch.float16 if dtype == "float16" or (dtype == "auto" and device.type == "cuda") else torch.float32
        model = load_sd(config["models"]["diffusion"]["id"], device, dtype=dtype)
        sched = build_schedule(config, schedule_name, model.num_train_timesteps)
        out = _sd_generation(config, model, sched, classes)
    else:
        model = config_diffusion(config, ddpm_dir, device)
        sched = build_schedule(config, schedule_name, model.num_train_timesteps)
        out = _pixel_generation(config, model, sched, classes)
    log.info("%s: %d samples x %d steps (%s) in %.1fs; timesteps %s", sched.name, k * n, sched.n_steps,
             sec["sampler"], time.time() - started, sched.timesteps.tolist())  # fmt: skip
    samples, x0 = out["sample"], out["x0_pred"]
    S = x0.shape[1]
    bs = config["likelihood"]["batch_size"]
    p_final, top_final, topp_final = _probs(classify(clf, samples, bs, device))
    p_steps, top_steps, topp_steps = _probs(classify(clf, x0.reshape(-1, *x0.shape[2:]), bs, device))
    idx = torch.as_tensor([c["index"] for c in classes]).repeat_interleave(n)
    p_steps, top_steps, topp_steps = p_steps.view(k * n, S, -1), top_steps.view(k * n, S), topp_steps.view(k * n, S)
    prob_steps = p_steps.gather(2, idx.view(-1, 1, 1).expand(-1, S, 1))[..., 0]
    gamma = np.nan if sched.gamma is None else sched.gamma
    base = dict(schedule=sched.name, kind=sched.kind, gamma=gamma, n_steps=sched.n_steps)
    cls_col = np.repeat(names, n)
    seed_col = np.tile(np.arange(n, dtype=np.int64), k)
    decided = np.array([decided_step(top_steps[i].numpy(), int(idx[i])) for i in range(k * n)], dtype=np.int64)
    ts = sched.timesteps
    final = pd.DataFrame({
        **base, "class_name": cls_col, "class_index": idx.numpy().astype(np.int64), "seed": seed_col,
        "prob": p_final[torch.arange(k * n), idx].numpy(), "top1_index": top_final.numpy().astype(np.int64),
        "top1_prob": topp_final.numpy(), "correct": (top_final == idx).numpy(),
        "x0_prob_mean": prob_steps.mean(1).numpy(),
        "decided_step": decided, "decided_timestep": np.where(decided >= 0, ts[np.maximum(decided, 0)], -1),
        "sampler": sec["sampler"], "guidance": float(sec["guidance"]), "first_timestep": int(ts[0]),
        "last_timestep": int(ts[-1]), "n_moved": sched.n_moved,
    })  # fmt: skip
    steps = pd.DataFrame({
        **base, "class_name": np.repeat(cls_col, S), "seed": np.repeat(seed_col, S),
        "step": np.tile(np.arange(S, dtype=np.int64), k * n), "timestep": np.tile(ts.astype(np.int64), k * n),
        "prob": prob_steps.reshape(-1).numpy(), "top1_index": top_steps.reshape(-1).numpy().astype(np.int64),
        "top1_prob": topp_steps.reshape(-1).numpy(), "class_index": np.repeat(idx.numpy().astype(np.int64), S),
    })  # fmt: skip
    meta = provenance(config, device)
    save_arrays(out_samples, {"samples": samples.reshape(k, n, *samples.shape[1:]),
                              "timesteps": torch.as_tensor(ts), "formula": torch.as_tensor(sched.formula)},
                {"class_names": names, "schedule": sched.name, "kind": sched.kind, "gamma": sched.gamma,
                 "n_steps": sched.n_steps, "layout": "samples: (K classes, N seeds, C, H, W) in [-1, 1]"})  # fmt: skip
    write_parquet(final, out_table, meta)
    write_parquet(steps, out_steps, meta)


def switch_steps(n_steps: int, stride: int) -> np.ndarray:
    """Switch steps 0, stride, 2·stride, …, always including S (= label a throughout)."""
    ks = list(range(0, n_steps + 1, max(1, int(stride))))
    if ks[-1] != n_steps:
        ks.append(n_steps)
    return np.asarray(ks, dtype=np.int64)


def commitment_pair(config: dict, pair: str, ddpm_dir: str | None, classifier_path: str | None, out_table: str) -> None:
    """For one class pair (a, b) and every commitment schedule: switch the label a → b at step
    k for k in :func:`switch_steps`, from the same seeds as class a's generation, and record the
    final sample's class. ``k = S`` reproduces class a's sample of :func:`generate_schedule`.
    """
    device = resolve_device(config["device"])
    check_schedules_config(config)
    pairs = {pair_id(a, b): (a, b) for a, b in commitment_pairs(config)}
    if pair not in pairs:
        raise DiffxaiError("pair", f"unknown commitment pair {pair!r} (have {sorted(pairs)})")
    a, b = pairs[pair]
    ca, cb = stage_class(config, a), stage_class(config, b)
    sec, csec = config["schedules"], config["schedules"]["commitment"]
    n = csec["n_seeds"] or sec["n_seeds"]
    model = config_diffusion(config, ddpm_dir, device)
    if not model.conditional:
        raise DiffxaiError(
            "config.schedules.commitment", "the diffusion model is unconditional: no class label to switch"
        )
    clf = load_classifier(classifier_spec(config, classifier_path), device)
    c, s = model.unet.config.in_channels, model.unet.config.sample_size
    s = s if isinstance(s, int) else s[0]
    noise = seeded_noise((c, s, s), _noise_generators(config, [a], n))  # (n, C, H, W): class a's seeds
    frames = []
    for name in csec["schedules"]:
        sched = build_schedule(config, name, model.num_train_timesteps)
        ks = switch_steps(sched.n_steps, csec["switch_stride"])
        kk, ss = np.repeat(ks, n), np.tile(np.arange(n), len(ks))
        labels = step_labels(diffusion_label(ca), diffusion_label(cb), sched.n_steps, kk)
        x_init = noise[ss]
        gens = (
            [make_generator(config["seed"], "schedules-ddpm", a, int(i)) for i in ss]
            if sec["sampler"] == "ddpm"
            else None
        )
        started = time.time()
        out = generate(model, x_init, sched.timesteps, labels, sec["guidance"], sec["sampler"], gens, record=False,
                       batch_size=sec["batch_size"])  # fmt: skip
        log.info("%s / %s: %d samples in %.1fs", pair, name, len(kk), time.time() - started)
        p, top, _ = _probs(classify(clf, out["sample"], config["likelihood"]["batch_size"], device))
        top = top.numpy()
        ends = np.where(top == ca["index"], "a", np.where(top == cb["index"], "b", "other"))
        ts = sched.timesteps
        frames.append(pd.DataFrame({
            "pair": pair, "class_a": a, "class_b": b, "schedule": name, "switch_step": kk.astype(np.int64),
            "switch_timestep": np.where(kk < sched.n_steps, ts[np.minimum(kk, sched.n_steps - 1)], -1).astype(np.int64),
            "seed": ss.astype(np.int64), "final_top1": top.astype(np.int64), "prob_a": p[:, ca["index"]].numpy(),
            "prob_b": p[:, cb["index"]].numpy(), "ends_as": ends, "n_steps": sched.n_steps, "kind": sched.kind,
        }))  # fmt: skip
    write_parquet(pd.concat(frames, ignore_index=True), out_table, provenance(config, device))


def commitment_summary(df: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Per (pair, schedule): share ending as a / b per switch step, and the commitment step.

    ``commit_step`` = :func:`~diffxai.schedules.commitment_step` of the share-a curve (−1 if
    a never keeps winning); ``commit_timestep`` = the timestep of that step (−1 if none or S).
    """
    rows = []
    for (pair, sched), sub in df.groupby(["pair", "schedule"], sort=False):
        g = sub.groupby("switch_step", sort=True)
        share_a = g["ends_as"].apply(lambda e: float((e == "a").mean()))
        share_b = g["ends_as"].apply(lambda e: float((e == "b").mean()))
        ts = g["switch_timestep"].first()
        k = commitment_step(share_a.to_numpy(), threshold)
        kstep = int(share_a.index[k]) if k >= 0 else -1
        for step in share_a.index:
            rows.append(dict(pair=pair, class_a=sub["class_a"].iloc[0], class_b=sub["class_b"].iloc[0], schedule=sched,
                             switch_step=int(step), switch_timestep=int(ts[step]), share_a=share_a[step],
                             share_b=share_b[step], n_seeds=int(g.size()[step]), commit_step=kstep,
                             commit_timestep=int(ts[kstep]) if kstep >= 0 else -1))  # fmt: skip
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _commitment_tables(inputs: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The commitment table and its summary (empty tables with the columns when no pair ran)."""
    if not inputs:
        return pd.DataFrame(columns=COMMITMENT_COLUMNS + ["n_steps", "kind"]), pd.DataFrame(columns=SUMMARY_COLUMNS)
    df = concat_parquet(inputs)
    return df, commitment_summary(df)


def schedule_distances(samples: dict[str, torch.Tensor], class_names: list[str], sigma: float) -> pd.DataFrame:
    """Band-split SSIM between every pair of schedules, seed by seed.

    Args:
        samples: schedule name → ``(K classes, N seeds, C, H, W)`` from the same seeds.
        sigma: low-pass Gaussian σ in pixels.
    Returns:
        One row per (schedule pair, class, seed): ``DISTANCE_COLUMNS``.
    """
    rows = []
    for sa, sb in itertools.combinations(list(samples), 2):
        xa, xb = samples[sa], samples[sb]
        if xa.shape != xb.shape:
            raise DiffxaiError(
                "schedules", f"samples of {sa} {tuple(xa.shape)} and {sb} {tuple(xb.shape)} differ in shape"
            )
        k, n = xa.shape[:2]
        d = band_ssim(xa.reshape(k * n, *xa.shape[2:]), xb.reshape(k * n, *xb.shape[2:]), sigma)
        rows.append(pd.DataFrame({"schedule_a": sa, "schedule_b": sb, "class_name": np.repeat(class_names, n),
                                  "seed": np.tile(np.arange(n, dtype=np.int64), k),
                                  **{key: v.numpy() for key, v in d.items()}}))  # fmt: skip
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=DISTANCE_COLUMNS)


def aggregate_schedules(
    config: dict,
    tables: list[str],
    steps: list[str],
    sample_paths: list[str],
    commitment: list[str],
    out_sampling: str,
    out_steps: str,
    out_distances: str,
    out_commitment: str,
    out_commitment_summary: str,
) -> None:
    """Concatenate the per-schedule and per-pair tables; compute the between-schedule distances
    and the commitment summary (empty commitment tables when no pair applies)."""
    meta = provenance(config, resolve_device(config["device"]))
    final = concat_parquet(tables)
    samples, names = {}, None
    for p in sample_paths:
        arr, m = load_arrays(p)
        samples[m["schedule"]] = arr["samples"]
        names = m["class_names"]
    dist = schedule_distances(samples, names, config["schedules"]["lowpass_sigma"])
    if len(dist):
        top = final.set_index(["schedule", "class_name", "seed"])["top1_index"]
        ka = pd.MultiIndex.from_frame(dist[["schedule_a", "class_name", "seed"]])
        kb = pd.MultiIndex.from_frame(dist[["schedule_b", "class_name", "seed"]])
        dist["same_top1"] = top.reindex(ka).to_numpy() == top.reindex(kb).to_numpy()
    com, summary = _commitment_tables(commitment)
    write_parquet(final, out_sampling, meta)
    write_parquet(concat_parquet(steps), out_steps, meta)
    write_parquet(dist, out_distances, meta)
    write_parquet(com, out_commitment, meta)
    write_parquet(summary, out_commitment_summary, meta)


def plot_schedules(
    config: dict, sampling: str, steps: str, distances: str, commitment: str, commitment_summary: str,
    sample_paths: list[str], out_grid: str, out_prob: str, out_distances: str, out_commitment: str,
) -> None:  # fmt: skip
    """All plots of the stage (see :mod:`diffxai.plots_schedules`)."""
    from diffxai.plots import schedules as ps

    dpi = config["plots"]["dpi"]
    samples = {}
    for p in sample_paths:
        arr, m = load_arrays(p)
        samples[m["schedule"]] = (arr["samples"], m)
    final, st, dist = pd.read_parquet(sampling), pd.read_parquet(steps), pd.read_parquet(distances)
    ps.schedule_grid(samples, final, out_grid, n_seeds=config["schedules"]["plot_seeds"], dpi=dpi)
    ps.schedule_probability(st, out_prob, dpi=dpi, seed=config["seed"])
    ps.schedule_distances(dist, out_distances, sigma=config["schedules"]["lowpass_sigma"], dpi=dpi, seed=config["seed"])
    ps.commitment_curves(pd.read_parquet(commitment), pd.read_parquet(commitment_summary), out_commitment, dpi=dpi)
