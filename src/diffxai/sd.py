"""Stable Diffusion support: loading, text conditioning, guided noise prediction, sampling.

:class:`SDModel` wraps the parts of a diffusers ``StableDiffusionPipeline`` directory (or hub id
such as ``CompVis/stable-diffusion-v1-4``) that the explanation stages need, with the same shape
conventions as :class:`diffxai.models.DiffusionModel`:

* latents ``(B, 4, h, w)`` in the VAE's *scaled* latent space (``vae.config.scaling_factor``
  applied), images ``(B, 3, H, W)`` in [-1, 1], ``H = h * vae_scale_factor``;
* text embeddings ``(B, L, D)`` = the CLIP text encoder's ``last_hidden_state`` for prompts padded
  to ``tokenizer.model_max_length`` (``L = 77``, ``D = 768`` for SD 1.x); ``""`` is the null prompt;
* integer timesteps in ``[0, num_train_timesteps)``; step 0 of a trajectory is the noisiest.

:func:`sd_sample` is batched text-to-image sampling with classifier-free guidance
(``ε = ε_u + w (ε_c − ε_u)``, both branches in one U-Net forward). Each sample's initial latent
comes from its own generator ``make_generator(seed, stage, *keys[i])``, so a sample does not
depend on which other samples share its batch.

Loading is safe: safetensors only, never ``trust_remote_code``; local directories never touch the
network and ``HF_HUB_OFFLINE`` is honoured for hub ids.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffxai.batching import iter_batches
from diffxai.errors import DiffxaiError, require_finite
from diffxai.models import ScheduledDenoiser, _hub_offline
from diffxai.seeding import make_generator

SCHEDULERS = ("dpmsolver++", "ddim", "ddpm")


@dataclass
class SDModel(ScheduledDenoiser):
    """The components of a Stable Diffusion pipeline, in eval mode with gradients disabled on weights.

    Inputs keep flowing gradients (``eps`` / ``decode`` are not wrapped in ``no_grad``), so
    saliency and attribution code can differentiate with respect to latents or enable
    ``requires_grad`` on chosen weights.
    """

    unet: torch.nn.Module  # diffusers.UNet2DConditionModel
    vae: torch.nn.Module  # diffusers.AutoencoderKL
    text_encoder: torch.nn.Module  # transformers.CLIPTextModel
    tokenizer: object  # transformers.CLIPTokenizer
    scheduler: object  # the pipeline's scheduler (class from scheduler/scheduler_config.json)
    source: str = ""

    # ---------------------------------------------------------------- properties
    @property
    def dtype(self) -> torch.dtype:
        """The U-Net's weight dtype (float32, or float16 when loaded so)."""
        return next(self.unet.parameters()).dtype

    @property
    def vae_scale_factor(self) -> int:
        """Image pixels per latent pixel along each side (8 for SD 1.x)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def default_size(self) -> int:
        """Default image side in pixels (512 for SD 1.4)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    def latent_shape(self, height: int | None = None, width: int | None = None) -> tuple[int, int, int]:
        """``(C, h, w)`` of the latent for an image of ``height`` x ``width`` pixels (default size if None)."""
        height = self.default_size if height is None else int(height)
        width = self.default_size if width is None else int(width)
        f = self.vae_scale_factor
        if height <= 0 or width <= 0 or height % f or width % f:
            raise DiffxaiError("height/width", f"{height}x{width} must be positive multiples of {f}")
        return (self.latent_channels, height // f, width // f)

    # ---------------------------------------------------------------- text
    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token ids ``(B, L)`` (long), padded/truncated to ``tokenizer.model_max_length``."""
        if isinstance(prompts, str):
            prompts = [prompts]
        enc = self.tokenizer(
            list(prompts),
            padding="max_length",
            truncation=True,
            max_length=self.tokenizer.model_max_length,
            return_tensors="pt",
        )
        return enc.input_ids

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text embeddings ``(B, L, D)`` (the text encoder's ``last_hidden_state``) in the U-Net's dtype."""
        ids = self.tokenize(prompts).to(self.device)
        return self.text_encoder(ids).last_hidden_state.to(self.dtype)

    # ---------------------------------------------------------------- denoiser
    def eps(self, latents: torch.Tensor, t, text_emb: torch.Tensor) -> torch.Tensor:
        """Predicted noise ε̂(z_t, t, c) ``(B, 4, h, w)`` in ``latents``' dtype.

        Args:
            latents: ``(B, 4, h, w)`` scaled latents z_t.
            t: an int, a 0-d tensor, or ``(B,)`` integer timesteps.
            text_emb: ``(B, L, D)`` embeddings from :meth:`encode_prompts` (or ``(1, L, D)``, broadcast).
        """
        b = latents.shape[0]
        t = torch.as_tensor(t, device=latents.device)
        if t.ndim == 0:
            t = t.expand(b)
        if text_emb.shape[0] == 1 and b > 1:
            text_emb = text_emb.expand(b, -1, -1)
        out = self.unet(latents.to(self.dtype), t, encoder_hidden_states=text_emb.to(self.dtype)).sample
        require_finite(out.detach(), f"U-Net of {self.source} ({self.dtype})", "noise predictions")
        return out.to(latents.dtype)

    def eps_guided(
        self, latents: torch.Tensor, t, cond_emb: torch.Tensor, uncond_emb: torch.Tensor, guidance: float
    ) -> torch.Tensor:
        """Classifier-free guided noise ε_u + w (ε_c − ε_u) ``(B, 4, h, w)``.

        Both branches run in ONE batched U-Net forward (``[cond; uncond]``). ``uncond_emb`` may be
        ``(1, L, D)`` (broadcast to the batch). ``guidance == 1`` runs only the conditional branch.
        """
        b = latents.shape[0]
        if float(guidance) == 1.0:
            return self.eps(latents, t, cond_emb)
        t = torch.as_tensor(t, device=latents.device)
        t = t.expand(b) if t.ndim == 0 else t
        cond_emb = cond_emb.expand(b, -1, -1) if cond_emb.shape[0] == 1 else cond_emb
        uncond_emb = uncond_emb.expand(b, -1, -1) if uncond_emb.shape[0] == 1 else uncond_emb
        e = self.eps(torch.cat([latents, latents]), torch.cat([t, t]), torch.cat([cond_emb, uncond_emb]))
        e_c, e_u = e.chunk(2)
        return e_u + guidance * (e_c - e_u)

    def predict_x0(self, latents: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """x̂0 = (z_t − sqrt(1−ᾱ_t) ε) / sqrt(ᾱ_t), ``(B, 4, h, w)`` (``t`` int or ``(B,)``)."""
        abar = self.alphas_cumprod.to(latents.device)[torch.as_tensor(t, device=latents.device)]
        abar = abar.to(latents.dtype).reshape(-1, *([1] * (latents.ndim - 1)))
        return (latents - (1 - abar).sqrt() * eps) / abar.sqrt()

    # ---------------------------------------------------------------- VAE
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [-1, 1] from scaled latents ``(B, 4, h, w)`` (output dtype = input dtype)."""
        z = latents.to(self.vae.dtype) / self.vae.config.scaling_factor
        images = self.vae.decode(z).sample
        # (SD's VAE is known to overflow in float16: the message names the dtype)
        require_finite(images.detach(), f"VAE of {self.source} ({self.vae.dtype})", "images")
        return images.clamp(-1, 1).to(latents.dtype)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``(B, 4, h, w)`` (posterior mean x ``scaling_factor``) of images ``(B, 3, H, W)`` in [-1, 1]."""
        z = self.vae.encode(images.to(self.vae.dtype)).latent_dist.mean
        return (z * self.vae.config.scaling_factor).to(images.dtype)


# ------------------------------------------------------------------------------------ loading


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:300]


def load_sd(id_or_path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> SDModel:
    """Load a Stable Diffusion pipeline (``unet``, ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler``).

    Args:
        id_or_path: a local ``StableDiffusionPipeline`` directory or a hub id
            (e.g. ``CompVis/stable-diffusion-v1-4``).
        device: where the networks go.
        dtype: weight dtype of U-Net, VAE and text encoder (``torch.float16`` on GPUs halves memory).
    Raises:
        DiffxaiError: missing path, missing component, or unreadable / non-safetensors weights.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    name = str(id_or_path)
    path = Path(name)
    local = path.exists()
    if not local and (name.startswith((".", "/", "~")) or name.count("/") != 1):
        raise DiffxaiError(name, "Stable Diffusion checkpoint path does not exist")
    if local and not path.is_dir():
        raise DiffxaiError(name, "Stable Diffusion checkpoint must be a pipeline directory")
    kw = dict(local_files_only=local or _hub_offline())
    try:
        part = "scheduler"
        cfg = DDPMScheduler.load_config(name, subfolder="scheduler", **kw)
        scheduler = _scheduler_class(cfg.get("_class_name")).from_config(cfg)
        part = "tokenizer"
        tokenizer = CLIPTokenizer.from_pretrained(name, subfolder="tokenizer", **kw)
        part = "text_encoder"
        text_encoder = CLIPTextModel.from_pretrained(
            name, subfolder="text_encoder", use_safetensors=True, dtype=dtype, **kw
        )
        part = "unet"
        unet = UNet2DConditionModel.from_pretrained(
            name, subfolder="unet", use_safetensors=True, torch_dtype=dtype, **kw
        )
        part = "vae"
        vae = AutoencoderKL.from_pretrained(name, subfolder="vae", use_safetensors=True, torch_dtype=dtype, **kw)
    except Exception as exc:  # diffusers/transformers raise many types for missing or corrupt files
        hint = (
            " (HF_HUB_OFFLINE is set: download it once online, or give a local directory)"
            if not local and _hub_offline()
            else ""
        )
        raise DiffxaiError(name, f"cannot load Stable Diffusion {part}: {_one_line(exc)}{hint}") from None
    for net in (unet, vae, text_encoder):
        net.eval().requires_grad_(False).to(device)
    model = SDModel(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler, source=name
    )
    if int(vae.config.latent_channels) != int(unet.config.in_channels):
        raise DiffxaiError(
            name, f"VAE has {vae.config.latent_channels} latent channels, U-Net expects {unet.config.in_channels}"
        )
    return model


def _scheduler_class(class_name: str | None):
    """The diffusers scheduler class named in a scheduler config (DDPMScheduler when unknown)."""
    import diffusers
    from diffusers import DDPMScheduler
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    cls = getattr(diffusers, str(class_name), None)
    if isinstance(cls, type) and issubclass(cls, SchedulerMixin):
        return cls
    return DDPMScheduler


def make_scheduler(model: SDModel, name: str = "dpmsolver++"):
    """A fresh sampling scheduler built ``from_config(model.scheduler.config)``.

    ``dpmsolver++``: ``DPMSolverMultistepScheduler`` (``algorithm_type="dpmsolver++"``, 2nd order,
    the setting of arXiv 2402.10404); ``ddim``: ``DDIMScheduler`` (η = 0); ``ddpm``:
    ``DDPMScheduler`` (ancestral, stochastic). Latents are never clipped (``clip_sample=False``).
    """
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    cfg = model.scheduler.config
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler.from_config(cfg, algorithm_type="dpmsolver++", solver_order=2)
    if name == "ddim":
        return DDIMScheduler.from_config(cfg, clip_sample=False)
    if name == "ddpm":
        return DDPMScheduler.from_config(cfg, clip_sample=False)
    raise DiffxaiError("scheduler", f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULERS)}")


def check_timesteps(timesteps, num_train_timesteps: int) -> list[int]:
    """Validate a custom schedule: non-empty, integer, strictly decreasing, within ``[0, T)``."""
    ts = [int(t) for t in np.asarray(timesteps).reshape(-1)]
    if not ts:
        raise DiffxaiError("timesteps", "empty timestep list")
    if any(b >= a for a, b in zip(ts, ts[1:])):
        raise DiffxaiError("timesteps", f"must be strictly decreasing, got {ts[:6]}{'...' if len(ts) > 6 else ''}")
    if ts[0] >= num_train_timesteps or ts[-1] < 0:
        raise DiffxaiError("timesteps", f"must lie in [0, {num_train_timesteps}), got {ts[0]}..{ts[-1]}")
    return ts


def _sample_keys(keys, n: int) -> list[tuple]:
    if keys is None:
        raise DiffxaiError("keys", "sd_sample needs one generator key (or tuple of keys) per prompt")
    keys = list(keys)
    if len(keys) != n:
        raise DiffxaiError("keys", f"{len(keys)} keys for {n} prompts; give one key (or tuple) per prompt")
    return [tuple(k) if isinstance(k, (tuple, list)) else (k,) for k in keys]


# ------------------------------------------------------------------------------------ sampling


@torch.no_grad()
def sd_sample(
    model: SDModel,
    prompts: Sequence[str],
    *,
    n_steps: int | None = None,
    guidance: float = 7.5,
    seed: int,
    stage: str,
    keys: Sequence,
    timesteps: Sequence[int] | None = None,
    scheduler: str = "dpmsolver++",
    record: bool = False,
    batch_size: int = 8,
    negative_prompt: str = "",
    height: int | None = None,
    width: int | None = None,
    latents: torch.Tensor | None = None,
    decode: bool = True,
) -> dict[str, torch.Tensor]:
    """Text-to-image sampling with classifier-free guidance, batched over prompts.

    Args:
        model: the loaded :class:`SDModel`.
        prompts: B prompts (repeat a prompt for several samples; vary ``keys``).
        n_steps: number of sampling steps S (the scheduler's default spacing); ignored except for a
            consistency check when ``timesteps`` is given.
        guidance: CFG weight w (7.5 in the DF-RISE paper, 3 for CAD's DDIM samples; 1 = no CFG).
        seed, stage, keys: sample i's initial latent is ``randn`` from
            ``make_generator(seed, stage, *keys[i])`` (``keys[i]`` a key or a tuple of keys), and
            DDPM's per-step noise from ``make_generator(seed, stage, "step-noise", *keys[i])``: each
            sample depends only on its own keys, never on its batch.
        timesteps: a custom strictly decreasing schedule (length S), e.g. exponential spacing.
            DPM-Solver++ and DDPM take it through ``set_timesteps(timesteps=...)``; DDIM runs its
            deterministic (η = 0) update on consecutive list entries, the last step going to
            ``final_alpha_cumprod`` exactly as diffusers' ``DDIMScheduler.step`` does.
        scheduler: ``"dpmsolver++"`` (default, the paper's), ``"ddim"`` or ``"ddpm"``.
        record: also return the trajectory.
        batch_size: prompts per U-Net call (each call runs 2 x batch_size rows with CFG; halved and
            retried on out-of-memory).
        negative_prompt: the unconditional prompt (``""`` = SD's null prompt).
        height, width: image size in pixels (default: the model's, 512 for SD 1.4).
        latents: optional ``(B, 4, h, w)`` latents entering step 0, overriding the seeded draw
            (e.g. a noised image at ``timesteps[0]`` for SDEdit-style starts).
        decode: decode the final latents to images (set False to skip the VAE).
    Returns:
        ``"latents"`` ``(B, 4, h, w)``, ``"images"`` ``(B, 3, H, W)`` in [-1, 1] (if ``decode``),
        ``"timesteps"`` ``(S,)`` long, and with ``record``: ``"x_t"`` (latent entering each step),
        ``"x0_pred"`` (x̂0 from the guided ε at that step) and ``"eps"`` (guided ε), each
        ``(B, S, 4, h, w)``. All float32 on the CPU; step 0 is the noisiest.
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    n = len(prompts)
    if n == 0:
        raise DiffxaiError("prompts", "no prompts to sample")
    if scheduler not in SCHEDULERS:
        raise DiffxaiError("scheduler", f"unknown scheduler {scheduler!r}; expected one of {', '.join(SCHEDULERS)}")
    if batch_size < 1:
        raise DiffxaiError("batch_size", f"must be >= 1, got {batch_size}")
    key_list = _sample_keys(keys, n)
    shape = model.latent_shape(height, width)
    T = model.num_train_timesteps
    if timesteps is not None:
        ts = check_timesteps(timesteps, T)
        if n_steps is not None and int(n_steps) != len(ts):
            raise DiffxaiError("n_steps", f"{n_steps} disagrees with {len(ts)} custom timesteps")
    elif n_steps is None or int(n_steps) < 1:
        raise DiffxaiError("n_steps", f"need n_steps >= 1 or a timesteps list, got {n_steps}")
    if latents is not None and tuple(latents.shape) != (n, *shape):
        raise DiffxaiError("latents", f"shape {tuple(latents.shape)} != {(n, *shape)}")

    device = model.device
    uncond = model.encode_prompts([negative_prompt])  # (1, L, D)
    abar = model.alphas_cumprod.to(device)
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("latents", "images", "x_t", "x0_pred", "eps")}
    sched_ts = None

    # Everything a chunk consumes (initial latents, the scheduler, DDPM's step-noise generators) is
    # made inside the chunk from the samples' keys, so a chunk retried after an out-of-memory error
    # (iter_batches halves it) repeats its first try exactly.
    def chunk(sl: slice) -> tuple[list[int], dict[str, torch.Tensor]]:
        bkeys = key_list[sl]
        if latents is None:
            x = torch.stack([torch.randn(shape, generator=make_generator(seed, stage, *k)) for k in bkeys])
        else:
            x = latents[sl].float().cpu()
        sch = make_scheduler(model, scheduler)
        if timesteps is not None and scheduler != "ddim":
            sch.set_timesteps(timesteps=ts, device=device)
        elif timesteps is None:
            sch.set_timesteps(int(n_steps), device=device)
        steps = [int(t) for t in (sch.timesteps if timesteps is None or scheduler != "ddim" else ts)]
        x = (x * float(sch.init_noise_sigma)).to(device)
        cond = model.encode_prompts(prompts[sl])
        step_kw = {}
        if "generator" in inspect.signature(sch.step).parameters:
            step_kw["generator"] = [make_generator(seed, stage, "step-noise", *k) for k in bkeys]
        rec = {"x_t": [], "x0_pred": [], "eps": []}
        for i, t in enumerate(steps):
            x_in = sch.scale_model_input(x, t) if scheduler != "ddim" else x
            e = model.eps_guided(x_in, t, cond, uncond, guidance).float()
            a_t = abar[t].float()
            x0 = (x - (1 - a_t).sqrt() * e) / a_t.sqrt()
            if record:
                rec["x_t"].append(x.cpu())
                rec["x0_pred"].append(x0.cpu())
                rec["eps"].append(e.cpu())
            if scheduler == "ddim":
                a_prev = (
                    abar[steps[i + 1]].float()
                    if i + 1 < len(steps)
                    else torch.tensor(float(sch.final_alpha_cumprod), device=device)
                )
                x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * e
            else:
                x = sch.step(e, t, x, return_dict=False, **step_kw)[0]
        res = {"latents": x.float().cpu()}
        if decode:
            res["images"] = model.decode(x).float().cpu()
        if record:
            res.update({k: torch.stack(v, 1) for k, v in rec.items()})
        return steps, res

    for _, (steps, res) in iter_batches(chunk, n, batch_size, what="samples", label=f"sd {scheduler} sampling"):
        sched_ts = steps
        for k, v in res.items():
            out[k].append(v)
    result = {"latents": torch.cat(out["latents"]), "timesteps": torch.tensor(sched_ts, dtype=torch.long)}
    if decode:
        result["images"] = torch.cat(out["images"])
    if record:
        for k in ("x_t", "x0_pred", "eps"):
            result[k] = torch.cat(out[k])
    return result
