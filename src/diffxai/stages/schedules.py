"""Stage ``schedules``: exponential time-step sampling (arXiv 2402.10404) and class commitment.

Rules:

* ``schedules_generate`` (one job per ``{schedule}``, :func:`generate`): every class (or prompt)
  x seed is generated under that schedule in batches, from the same initial noise in every
  schedule (``make_generator(seed, "schedules", class_name, s)``; DDPM's step noise from
  ``make_generator(seed, "schedules-ddpm", class_name, s)``), and the classifier judges the
  final sample and the denoiser's x̂0 at every step (decoded to images first for a latent model).
* ``schedules_commitment`` (one job per class pair ``{a}-to-{b}``, :func:`commitment`): the
  condition switches from class a to class b at step k (k = 0..S, every ``switch_stride`` steps),
  from class a's seeds, and the classifier reads which class the final sample is. It needs a
  conditional model (the job stops with one line otherwise); which pairs exist is decided from
  the config (:func:`diffxai.config.experiment.commitment_pairs`).
* ``schedules_aggregate`` (:func:`aggregate`): joins the per-job tables, compares schedules seed by
  seed in a coarse (low-pass) and a fine (high-pass) band and summarises the commitment curves.

Outputs (``R = results/<experiment>``):

* ``R/samples/schedules/{schedule}.safetensors``: ``samples`` ``(K classes, N seeds, C, H, W)``
  in [-1, 1], ``timesteps`` and ``formula`` ``(S,)``; metadata ``class_names``, ``schedule``.
* ``R/schedules/{schedule}.parquet`` (one row per class x seed) and
  ``R/schedules/{schedule}_steps.parquet`` (one row per class x seed x step).
* ``R/schedules/commitment/{pair}.parquet``: one row per schedule x switch step x seed.
* ``R/tables/schedule_sampling.parquet``, ``schedule_steps.parquet``,
  ``schedule_distances.parquet``, ``commitment.parquet``, ``commitment_summary.parquet`` (the two
  commitment tables are empty, with their columns, when no pair applies).
"""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np
import pandas as pd
import torch

from diffxai.config.experiment import classifier_spec, condition_key, diffusion_kind, diffusion_location, pair_id
from diffxai.core.batching import map_batches
from diffxai.core.device import resolve_device
from diffxai.core.errors import DiffxaiError
from diffxai.core.imageops import band_ssim
from diffxai.core.seeding import make_generator
from diffxai.core.timesteps import Schedule, make_schedule
from diffxai.io.arrays import load_arrays, save_arrays
from diffxai.io.specs import SPECS
from diffxai.io.tables import aggregate_meta, concat_parquet, provenance, write_table
from diffxai.metrics.curves import commitment_step, decided_step
from diffxai.models.backend import DiffusionBackend
from diffxai.models.classifiers import classify, load_classifier
from diffxai.models.loading import load_backend
from diffxai.sampling.loop import sample, step_conditions
from diffxai.sampling.noising import seeded_noise

log = logging.getLogger(__name__)

STAGE = "schedules"
#: the stage key of DDPM's per-step noise generators
STEP_NOISE = "schedules-ddpm"


# --------------------------------------------------------------------------------------------
# shared by the two network rules
# --------------------------------------------------------------------------------------------


def build_schedule(entry: dict, num_train_timesteps: int) -> Schedule:
    """The :class:`~diffxai.core.timesteps.Schedule` of a ``schedules.schedules`` entry for the
    model's T (one-line error naming the entry when T is too small for it)."""
    name = entry["name"]
    return make_schedule(
        entry["kind"],
        int(num_train_timesteps),
        entry["n_steps"],
        entry.get("gamma"),
        name=name,
        where=f"config.schedules.schedules[{name}]",
    )


def _load(params: dict, inputs, device: torch.device):
    """The diffusion backend and the classifier of a job. ``schedules.sd`` (dtype, height, decode
    batch size) is in the settings of a Stable Diffusion experiment only; without it the pixel
    model keeps its own dtype and size."""
    kind = diffusion_kind(params)
    sd = params["schedules"].get("sd") or {}
    backend = load_backend(
        kind,
        diffusion_location(params, inputs.get("ddpm") or None),
        device,
        dtype=sd.get("dtype", "float32"),
        channels=params["data"]["channels"],
    )
    clf = load_classifier(classifier_spec(params, inputs.get("classifier") or None), device)
    return backend, clf


def _shape(params: dict, backend: DiffusionBackend) -> tuple[int, int, int]:
    """``(C, h, w)`` of the initial noise (``schedules.sd.height`` for a latent model)."""
    h = (params["schedules"].get("sd") or {}).get("height")
    return backend.sample_shape(h, h)


def _conditions(backend: DiffusionBackend, classes: list[dict], kind: str) -> torch.Tensor | None:
    """One condition per class ``(K, *cond_shape)`` (``None`` for an unconditional model)."""
    return backend.encode([condition_key(c, kind) for c in classes])


def _step_generators(params: dict, keys: list[tuple[str, int]]) -> list[torch.Generator] | None:
    """DDPM's per-sample step-noise generators (``None`` for the deterministic samplers)."""
    if params["schedules"]["sampler"] != "ddpm":
        return None
    return [make_generator(params["seed"], STEP_NOISE, c, s) for c, s in keys]


def _probs(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax ``(B, n_classes)`` in float64, its top-1 index and top-1 probability ``(B,)``."""
    p = torch.softmax(logits.double(), -1)
    top_p, top = p.max(-1)
    return p, top, top_p


# --------------------------------------------------------------------------------------------
# schedules_generate
# --------------------------------------------------------------------------------------------


def generate(params: dict, inputs, outputs) -> None:
    """Generate every class x seed under the job's schedule; classify final samples and every x̂0.

    Writes ``outputs.samples`` (``(K, N, C, H, W)`` images in [-1, 1]), ``outputs.table`` (one row
    per class x seed) and ``outputs.steps`` (one row per class x seed x step).
    """
    device = resolve_device(params["device"])
    sec, classes, seed = params["schedules"], params["classes"], params["seed"]
    names = [c["name"] for c in classes]
    k, n = len(classes), sec["n_seeds"]
    backend, clf = _load(params, inputs, device)
    sched = build_schedule(params["schedule"], backend.num_train_timesteps)
    kind = diffusion_kind(params)
    keys = [(c, s) for c in names for s in range(n)]
    x_init = seeded_noise(_shape(params, backend), [make_generator(seed, STAGE, c, s) for c, s in keys])
    cond = _conditions(backend, classes, kind)
    started = time.time()
    out = sample(
        backend,
        x_init,
        timesteps=sched.timesteps,
        cond=None if cond is None else cond.repeat_interleave(n, 0),
        guidance=sec["guidance"],
        scheduler=sec["sampler"],
        step_generators=_step_generators(params, keys),
        record=True,
        decode=True,
        batch_size=sec["batch_size"],
    )
    log.info(
        "%s: %d samples x %d steps (%s) in %.1fs; timesteps %s",
        sched.name,
        k * n,
        sched.n_steps,
        sec["sampler"],
        time.time() - started,
        sched.timesteps.tolist(),
    )
    samples, x0_model = out["images"], out["x0_pred"]
    S = x0_model.shape[1]
    started = time.time()
    decode_bs = (sec.get("sd") or {}).get("decode_batch_size", sec["batch_size"])
    x0 = map_batches(
        lambda z: backend.decode(z).float(),
        x0_model.reshape(k * n * S, *x0_model.shape[2:]),
        batch_size=decode_bs,
        device=device,
        what="x0_pred",
        label="decode x0_pred",
    )
    log.info("decoded %d x̂0 in %.1fs", k * n * S, time.time() - started)
    bs = params["likelihood"]["batch_size"]
    p_final, top_final, topp_final = _probs(classify(clf, samples, bs, device))
    p_steps, top_steps, topp_steps = _probs(classify(clf, x0, bs, device))
    idx = torch.as_tensor([c["index"] for c in classes]).repeat_interleave(n)
    p_steps, top_steps, topp_steps = p_steps.view(k * n, S, -1), top_steps.view(k * n, S), topp_steps.view(k * n, S)
    prob_steps = p_steps.gather(2, idx.view(-1, 1, 1).expand(-1, S, 1))[..., 0]
    gamma = np.nan if sched.gamma is None else sched.gamma
    base = {"schedule": sched.name, "kind": sched.kind, "gamma": gamma, "n_steps": sched.n_steps}
    cls_col = np.repeat(names, n)
    seed_col = np.tile(np.arange(n, dtype=np.int64), k)
    decided = np.array([decided_step(top_steps[i].numpy(), int(idx[i])) for i in range(k * n)], dtype=np.int64)
    ts = sched.timesteps
    final = pd.DataFrame(
        {
            **base,
            "class_name": cls_col,
            "class_index": idx.numpy().astype(np.int64),
            "seed": seed_col,
            "prob": p_final[torch.arange(k * n), idx].numpy(),
            "top1_index": top_final.numpy().astype(np.int64),
            "top1_prob": topp_final.numpy(),
            "correct": (top_final == idx).numpy(),
            "x0_prob_mean": prob_steps.mean(1).numpy(),
            "decided_step": decided,
            "decided_timestep": np.where(decided >= 0, ts[np.maximum(decided, 0)], -1),
            "sampler": sec["sampler"],
            "guidance": float(sec["guidance"]),
            "first_timestep": int(ts[0]),
            "last_timestep": int(ts[-1]),
            "n_moved": sched.n_moved,
        }
    )
    steps = pd.DataFrame(
        {
            **base,
            "class_name": np.repeat(cls_col, S),
            "seed": np.repeat(seed_col, S),
            "step": np.tile(np.arange(S, dtype=np.int64), k * n),
            "timestep": np.tile(ts.astype(np.int64), k * n),
            "prob": prob_steps.reshape(-1).numpy(),
            "top1_index": top_steps.reshape(-1).numpy().astype(np.int64),
            "top1_prob": topp_steps.reshape(-1).numpy(),
            "class_index": np.repeat(idx.numpy().astype(np.int64), S),
        }
    )
    meta = provenance(params, device)
    save_arrays(
        outputs.samples,
        {
            "samples": samples.reshape(k, n, *samples.shape[1:]),
            "timesteps": torch.as_tensor(ts),
            "formula": torch.as_tensor(sched.formula),
        },
        {
            "class_names": names,
            "schedule": sched.name,
            "kind": sched.kind,
            "gamma": sched.gamma,
            "n_steps": sched.n_steps,
            "layout": "samples: (K classes, N seeds, C, H, W) in [-1, 1]",
        },
    )
    write_table(final, outputs.table, "schedule_sampling", meta)
    write_table(steps, outputs.steps, "schedule_steps", meta)


# --------------------------------------------------------------------------------------------
# schedules_commitment
# --------------------------------------------------------------------------------------------


def switch_steps(n_steps: int, stride: int) -> np.ndarray:
    """Switch steps 0, stride, 2·stride, …, always including S (= class a throughout), ``(K,)`` int64."""
    ks = list(range(0, n_steps + 1, max(1, int(stride))))
    if ks[-1] != n_steps:
        ks.append(n_steps)
    return np.asarray(ks, dtype=np.int64)


def commitment(params: dict, inputs, outputs) -> None:
    """For the job's class pair (a, b) and every commitment schedule: switch the condition a → b
    at step k for k in :func:`switch_steps`, from the same seeds as class a's generation, and
    record the final sample's class (``outputs[0]``). ``k = S`` reproduces class a's sample of
    :func:`generate`."""
    device = resolve_device(params["device"])
    sec, csec = params["schedules"], params["schedules"]["commitment"]
    ca, cb = params["pair"]["a"], params["pair"]["b"]
    a, b = ca["name"], cb["name"]
    pair = pair_id(a, b)
    n = csec["n_seeds"]
    backend, clf = _load(params, inputs, device)
    if not backend.conditional:
        raise DiffxaiError(
            "config.schedules.commitment", "the diffusion model is unconditional: no condition to switch"
        )
    kind = diffusion_kind(params)
    cond_a, cond_b = _conditions(backend, [ca], kind), _conditions(backend, [cb], kind)
    noise = seeded_noise(_shape(params, backend), [make_generator(params["seed"], STAGE, a, s) for s in range(n)])
    entries = {s["name"]: s for s in sec["schedules"]}
    frames = []
    for name in csec["schedules"]:
        sched = build_schedule(entries[name], backend.num_train_timesteps)
        ks = switch_steps(sched.n_steps, csec["switch_stride"])
        kk, ss = np.repeat(ks, n), np.tile(np.arange(n), len(ks))
        started = time.time()
        out = sample(
            backend,
            noise[ss],
            timesteps=sched.timesteps,
            cond=step_conditions(cond_a, cond_b, sched.n_steps, kk),
            guidance=sec["guidance"],
            scheduler=sec["sampler"],
            step_generators=_step_generators(params, [(a, int(s)) for s in ss]),
            decode=True,
            batch_size=sec["batch_size"],
        )
        log.info("%s / %s: %d samples in %.1fs", pair, name, len(kk), time.time() - started)
        p, top, _ = _probs(classify(clf, out["images"], params["likelihood"]["batch_size"], device))
        top = top.numpy()
        ends = np.where(top == ca["index"], "a", np.where(top == cb["index"], "b", "other"))
        ts = sched.timesteps
        frames.append(
            pd.DataFrame(
                {
                    "pair": pair,
                    "class_a": a,
                    "class_b": b,
                    "schedule": name,
                    "switch_step": kk.astype(np.int64),
                    "switch_timestep": np.where(kk < sched.n_steps, ts[np.minimum(kk, sched.n_steps - 1)], -1).astype(
                        np.int64
                    ),
                    "seed": ss.astype(np.int64),
                    "final_top1": top.astype(np.int64),
                    "prob_a": p[:, ca["index"]].numpy(),
                    "prob_b": p[:, cb["index"]].numpy(),
                    "ends_as": ends,
                    "n_steps": sched.n_steps,
                    "kind": sched.kind,
                }
            )
        )
    write_table(pd.concat(frames, ignore_index=True), outputs[0], "commitment", provenance(params, device))


# --------------------------------------------------------------------------------------------
# schedules_aggregate
# --------------------------------------------------------------------------------------------


def commitment_summary(df: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Per (pair, schedule): share ending as a / b per switch step, and the commitment step.

    ``commit_step`` = :func:`~diffxai.metrics.curves.commitment_step` of the share-a curve (−1 if
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
            rows.append(
                {
                    "pair": pair,
                    "class_a": sub["class_a"].iloc[0],
                    "class_b": sub["class_b"].iloc[0],
                    "schedule": sched,
                    "switch_step": int(step),
                    "switch_timestep": int(ts[step]),
                    "share_a": share_a[step],
                    "share_b": share_b[step],
                    "n_seeds": int(g.size()[step]),
                    "commit_step": kstep,
                    "commit_timestep": int(ts[kstep]) if kstep >= 0 else -1,
                }
            )
    return pd.DataFrame(rows, columns=SPECS["commitment_summary"].required)


def _commitment_tables(paths: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The commitment table and its summary (empty tables with the columns when no pair ran)."""
    if not paths:
        return pd.DataFrame(columns=[*SPECS["commitment"].required, "n_steps", "kind"]), pd.DataFrame(
            columns=SPECS["commitment_summary"].required
        )
    df = concat_parquet(paths)
    return df, commitment_summary(df)


def schedule_distances(samples: dict[str, torch.Tensor], class_names: list[str], sigma: float) -> pd.DataFrame:
    """Band-split SSIM between every pair of schedules, seed by seed.

    Args:
        samples: schedule name → ``(K classes, N seeds, C, H, W)`` in [-1, 1] from the same seeds.
        sigma: low-pass Gaussian σ in pixels.
    Returns:
        One row per (schedule pair, class, seed): the ``schedule_distances`` spec's columns
        (:func:`diffxai.core.imageops.band_ssim`).
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
        rows.append(
            pd.DataFrame(
                {
                    "schedule_a": sa,
                    "schedule_b": sb,
                    "class_name": np.repeat(class_names, n),
                    "seed": np.tile(np.arange(n, dtype=np.int64), k),
                    **{key: v.numpy() for key, v in d.items()},
                }
            )
        )
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=SPECS["schedule_distances"].required)


def aggregate(params: dict, inputs, outputs) -> None:
    """Concatenate the per-schedule and per-pair tables; compute the between-schedule distances
    (with ``same_top1``: both schedules' samples get the same top-1 class) and the commitment
    summary (empty commitment tables when no pair applies)."""
    tables = list(inputs.tables)
    meta = aggregate_meta(params, tables)
    final = concat_parquet(tables)
    samples, names = {}, None
    for path in inputs.samples:
        arr, m = load_arrays(path)
        samples[m["schedule"]] = arr["samples"]
        names = m["class_names"]
    dist = schedule_distances(samples, names, params["schedules"]["lowpass_sigma"])
    if len(dist):
        top = final.set_index(["schedule", "class_name", "seed"])["top1_index"]
        ka = pd.MultiIndex.from_frame(dist[["schedule_a", "class_name", "seed"]])
        kb = pd.MultiIndex.from_frame(dist[["schedule_b", "class_name", "seed"]])
        dist["same_top1"] = top.reindex(ka).to_numpy() == top.reindex(kb).to_numpy()
    com, summary = _commitment_tables(list(inputs.commitment))
    write_table(final, outputs.sampling, "schedule_sampling", meta)
    write_table(concat_parquet(list(inputs.steps)), outputs.steps, "schedule_steps", meta)
    write_table(dist, outputs.distances, "schedule_distances", meta)
    write_table(com, outputs.commitment, "commitment", meta)
    write_table(summary, outputs.commitment_summary, "commitment_summary", meta)
