"""Stage ``trajectories``: x_t at S noise levels x N images x K noise draws for one class, plus
the denoiser's x̂0 view (rule ``trajectories_build``, :func:`build`); see
:mod:`diffxai.sampling.trajectories` for the two modes (forward noising, real reverse sampling)."""

from __future__ import annotations

from diffxai.config.experiment import diffusion_label, diffusion_location
from diffxai.core.device import resolve_device
from diffxai.core.errors import DiffxaiError
from diffxai.core.timesteps import level_timesteps
from diffxai.io.arrays import save_arrays
from diffxai.io.images import class_images, stroke_mask
from diffxai.models.loading import load_backend
from diffxai.sampling.trajectories import forward_trajectories, reverse_trajectories


def build(params: dict, inputs, outputs) -> None:
    """Trajectories of the class ``params["cls"]`` → ``outputs[0]`` (safetensors; layout in the README)."""
    device = resolve_device(params["device"])
    cls = params["cls"]
    tr, noise, data = params["trajectories"], params["noise"], params["data"]
    location = diffusion_location(params, inputs.get("ddpm") or None)
    model = load_backend("pixel", location, device, channels=data["channels"])
    seed = params["seed"]
    x0, ids = None, None
    if tr["mode"] == "forward" or not model.conditional:
        x0, ids = class_images(params, cls)
        c, h, w = model.sample_shape()
        if x0.shape[-1] != w or x0.shape[1] != c:
            raise DiffxaiError(
                "config.data.image_size",
                f"images are {tuple(x0.shape[1:])} but the diffusion model takes ({c}, {h}, {w})",
            )
    label = diffusion_label(cls) if model.conditional else None
    if tr["mode"] == "forward":
        ts = level_timesteps(model.num_train_timesteps, noise["n_levels"])
        out = forward_trajectories(
            model,
            x0,
            ids,
            ts,
            noise["n_draws"],
            seed=seed,
            class_name=cls["name"],
            x0_label=label if tr["x0_condition"] == "class" else None,
            views=tuple(tr["views"]),
            batch_size=tr["batch_size"],
        )
    else:
        out, ids = reverse_trajectories(
            model,
            data["n_images"],
            noise["n_draws"],
            noise["n_levels"],
            model.sample_shape(),
            seed=seed,
            class_name=cls["name"],
            label=label,
            guidance=tr["guidance"],
            x0=x0,
            image_ids=ids,
            sdedit_strength=tr["sdedit_strength"],
            batch_size=tr["batch_size"],
        )
    if "x0" in out and data["source"] == "digits":
        out["mask"] = stroke_mask(out["x0"])
    meta = {
        "class_name": cls["name"],
        "class_index": cls["index"],
        "image_ids": ids,
        "mode": tr["mode"],
        "views": [v for v in tr["views"] if v in out],
        "layout": "x_t/x0_pred: (N images, K draws, S steps, C, H, W)",
    }
    save_arrays(outputs[0], out, meta)
