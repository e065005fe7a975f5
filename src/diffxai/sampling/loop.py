"""The ONE sampling loop, for every backend (pixel or Stable Diffusion) and every scheduler.

:func:`sample` runs classifier-free guided sampling from ``x_init`` over a strictly decreasing
timestep list (uniform, exponential, an SDEdit tail) or a scheduler's own ``n_steps`` spacing,
batched over samples in chunks (:func:`diffxai.core.batching.iter_batches`: an out-of-memory
error halves the chunk and retries it; progress is logged). Per step it computes the guided ε̂,
x̂0 (clipped for pixel models, as the backend says) and the update:

* ``ddim``: the closed-form deterministic (η = 0) update
  x_{t'} = sqrt(ᾱ_{t'})·x̂0 + sqrt(1−ᾱ_{t'})·ε̂, valid on any timestep list; the last step goes to
  the scheduler's ``final_alpha_cumprod`` (1 for pixel DDPMs, i.e. it returns x̂0);
* ``ddpm`` (ancestral, stochastic; its noise comes from one generator per sample) and
  ``dpmsolver++`` (2nd-order multistep): the diffusers scheduler set to the same timesteps
  (``set_timesteps(timesteps=...)``).

Conditions may change per step (``(B, S, *cond_shape)``: a class label or prompt switched at
step k). Each sample depends only on its own initial noise and generators, never on its batch,
and a chunk retried after an out-of-memory error repeats its first try exactly.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from diffxai.core.batching import iter_batches
from diffxai.core.errors import DiffxaiError
from diffxai.core.timesteps import check_timesteps
from diffxai.models.backend import DiffusionBackend
from diffxai.models.schedulers import SCHEDULERS, make_scheduler


def _cond_at(cond: torch.Tensor | None, per_step: bool, i: int) -> torch.Tensor | None:
    if cond is None or not per_step:
        return cond
    return cond[:, i]


@torch.no_grad()
def sample(
    backend: DiffusionBackend,
    x_init: torch.Tensor,
    *,
    timesteps: np.ndarray | list[int] | None = None,
    n_steps: int | None = None,
    cond: torch.Tensor | None = None,
    guidance: float = 1.0,
    null: torch.Tensor | None = None,
    scheduler: str = "ddim",
    step_generators: list[torch.Generator] | None = None,
    record: bool = False,
    record_eps: bool = False,
    decode: bool = False,
    batch_size: int = 256,
    label: str | None = None,
) -> dict[str, torch.Tensor]:
    """Sample from ``x_init`` with guidance, batched over samples.

    Args:
        backend: the diffusion model (:class:`~diffxai.models.backend.DiffusionBackend`).
        x_init: ``(B, C, h, w)`` in the model's space at the first timestep (seeded noise, or a
            noised image for SDEdit).
        timesteps: ``(S,)`` strictly decreasing integer timesteps in ``[0, T)``; or ``None`` and
            ``n_steps``, for the scheduler's own spacing.
        cond: conditions ``(B, *cond_shape)`` from ``backend.encode``, per step
            ``(B, S, *cond_shape)``, or ``None`` (unconditional branch).
        guidance: classifier-free guidance weight w (1 = conditional branch only).
        null: the unconditional condition (default ``backend.null``; e.g. a negative prompt).
        scheduler: ``ddim``, ``ddpm`` or ``dpmsolver++``.
        step_generators: one generator per sample for the stochastic ``ddpm`` scheduler.
        record: also return ``x_t`` (the state entering each step) and ``x0_pred`` (x̂0 from the
            guided ε̂), ``(B, S, C, h, w)``; ``record_eps`` adds ``eps``.
        decode: also return ``images`` = ``backend.decode(sample)``.
        batch_size: samples per chunk (halved and retried on out-of-memory).
        label: what the progress lines call the run (default ``"<scheduler> sampling"``).
    Returns:
        ``sample`` ``(B, C, h, w)``, ``timesteps`` ``(S,)`` long, and the recordings; float32 on
        the CPU. Step 0 is the noisiest.
    """
    if scheduler not in SCHEDULERS:
        raise DiffxaiError("scheduler", f"unknown scheduler {scheduler!r} (allowed: {', '.join(SCHEDULERS)})")
    n = x_init.shape[0]
    T = backend.num_train_timesteps
    if timesteps is not None:
        ts = check_timesteps(timesteps, T)
        if n_steps is not None and int(n_steps) != len(ts):
            raise DiffxaiError("n_steps", f"{n_steps} disagrees with {len(ts)} custom timesteps")
    elif n_steps is None or int(n_steps) < 1:
        raise DiffxaiError("n_steps", f"need n_steps >= 1 or a timesteps list, got {n_steps}")
    per_step = False
    if cond is not None:
        if cond.shape[0] != n:
            raise ValueError(f"{cond.shape[0]} conditions for {n} samples")
        base = backend.null(1)
        per_step = base is not None and cond.ndim == base.ndim + 1
        if per_step and timesteps is not None and cond.shape[1] != len(ts):
            raise ValueError(f"per-step conditions have {cond.shape[1]} steps, the schedule {len(ts)}")
    if scheduler == "ddpm" and step_generators is not None and len(step_generators) != n:
        raise ValueError("ddpm sampling needs one generator per sample")
    device = backend.device
    abar = backend.alphas_cumprod.to(device)
    clip = backend.clip_x0
    # a chunk retried after an out-of-memory error restarts its generators from here
    entry = None if step_generators is None else [g.get_state() for g in step_generators]

    def chunk(sl: slice):
        sch = make_scheduler(scheduler, backend.scheduler.config, clip_sample=clip)
        if scheduler == "ddim" and timesteps is not None:
            steps = ts
        else:
            if timesteps is not None:
                sch.set_timesteps(timesteps=ts, device=device)
            else:
                sch.set_timesteps(int(n_steps), device=device)
            steps = [int(t) for t in sch.timesteps]
        step_kw = {}
        if step_generators is not None and "generator" in inspect.signature(sch.step).parameters:
            gens = list(step_generators[sl])
            for g, state in zip(gens, entry[sl]):
                g.set_state(state)
            step_kw["generator"] = gens
        x = x_init[sl].to(device, torch.float32) * float(sch.init_noise_sigma)
        c = None if cond is None else cond[sl].to(device)
        nl = None if null is None else null.to(device)
        rec: dict[str, list[torch.Tensor]] = {"x_t": [], "x0_pred": [], "eps": []}
        for i, t in enumerate(steps):
            x_in = x if scheduler == "ddim" else sch.scale_model_input(x, t)
            tt = torch.full((x.shape[0],), t, device=device, dtype=torch.long)
            eps = backend.eps_guided(x_in, tt, _cond_at(c, per_step, i), guidance, nl).float()
            a = abar[t].float()
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            if clip:
                x0 = x0.clamp(-1, 1)
            if record:
                rec["x_t"].append(x.cpu())
                rec["x0_pred"].append(x0.cpu())
                if record_eps:
                    rec["eps"].append(eps.cpu())
            if scheduler != "ddim":
                x = sch.step(eps, t, x, return_dict=False, **step_kw)[0]
                continue
            a_prev = abar[steps[i + 1]].float() if i + 1 < len(steps) else float(sch.final_alpha_cumprod)
            if i + 1 == len(steps) and float(a_prev) == 1.0:
                x = x0  # the last DDIM step to ᾱ = 1 is x̂0 itself
            else:
                a_prev = torch.as_tensor(a_prev, device=device, dtype=torch.float32)
                x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        if clip:
            x = x.clamp(-1, 1)
        out = {"sample": x.float().cpu()}
        if decode:
            out["images"] = backend.decode(x).float().cpu()
        if record:
            out.update({k: torch.stack(v, 1) for k, v in rec.items() if v})
        return steps, out

    what = f"{scheduler} sampling" if label is None else label
    parts: dict[str, list[torch.Tensor]] = {}
    steps: list[int] = []
    for _, (chunk_steps, out) in iter_batches(chunk, n, batch_size, what="samples", label=what):
        steps = chunk_steps  # every chunk runs the same steps
        for k, v in out.items():
            parts.setdefault(k, []).append(v)
    result = {k: torch.cat(v) for k, v in parts.items()}
    result["timesteps"] = torch.tensor(steps, dtype=torch.long)
    return result


def step_conditions(cond_a: torch.Tensor, cond_b: torch.Tensor, n_steps: int, switch_steps) -> torch.Tensor:
    """Per-step conditions ``(K, S, *cond_shape)`` that switch from ``cond_a`` to ``cond_b`` at
    step k, one row per k in ``switch_steps`` (``k = 0``: b throughout, ``k = S``: a throughout).

    ``cond_a``, ``cond_b``: one condition each, ``(1, *cond_shape)`` (a label or a prompt embedding).
    """
    k = torch.as_tensor(np.asarray(switch_steps), dtype=torch.long)
    i = torch.arange(n_steps)
    use_a = (i[None] < k[:, None]).to(cond_a.device)  # (K, S)
    shape = (len(k), n_steps) + tuple(cond_a.shape[1:])
    use_a = use_a.reshape(len(k), n_steps, *([1] * (cond_a.ndim - 1)))
    a = cond_a.reshape(1, 1, *cond_a.shape[1:])
    b = cond_b.reshape(1, 1, *cond_b.shape[1:])
    return torch.where(use_a, a, b).expand(shape)
