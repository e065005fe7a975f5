"""TODO docstring."""

from __future__ import annotations

from diffxai.config.experiment import diffusion_label
from diffxai.core.device import resolve_device
from diffxai.core.errors import DiffxaiError
from diffxai.core.timesteps import level_timesteps
from diffxai.io.arrays import load_arrays, save_arrays
from diffxai.io.images import stroke_mask
from diffxai.sampling.trajectories import forward_trajectories, reverse_trajectories
from diffxai.io.images import class_images
from diffxai.config.experiment import class_spec
from diffxai.models.pixel import config_diffusion


def build_trajectories(config: dict, cls_name: str, ddpm_dir: str | None, out_path: str) -> None:
    """Trajectories of one class (see :mod:`diffxai.trajectories`), saved as safetensors."""
    device = resolve_device(config["device"])
    cls = class_spec(config, cls_name)
    tr, noise = config["trajectories"], config["noise"]
    model = config_diffusion(config, ddpm_dir, device)
    seed = config["seed"]
    if tr["mode"] == "forward" or not model.conditional:
        x0, ids = class_images(config, cls)
        size = model.unet.config.sample_size
        size = size if isinstance(size, int) else size[0]
        if x0.shape[-1] != size or x0.shape[1] != model.unet.config.in_channels:
            raise DiffxaiError("config.data.image_size", f"images are {tuple(x0.shape[1:])} but the diffusion model takes "
                               f"({model.unet.config.in_channels}, {size}, {size})")  # fmt: skip
    else:
        x0, ids = None, None
    label = diffusion_label(cls) if model.conditional else None
    if tr["mode"] == "forward":
        ts = level_timesteps(model.num_train_timesteps, noise["n_levels"])
        out = forward_trajectories(
            model, x0, ids, ts, noise["n_draws"], seed=seed, class_name=cls_name,
            x0_label=label if tr["x0_condition"] == "class" else None, views=tuple(tr["views"]),
            batch_size=tr["batch_size"],
        )  # fmt: skip
    else:
        c, s = model.unet.config.in_channels, model.unet.config.sample_size
        out, ids = reverse_trajectories(
            model, config["data"]["n_images"], noise["n_draws"], noise["n_levels"], (c, s, s), seed=seed,
            class_name=cls_name, label=label, guidance=tr["guidance"], x0=x0, image_ids=ids,
            sdedit_strength=tr["sdedit_strength"], batch_size=tr["batch_size"],
        )  # fmt: skip
    if "x0" in out and config["data"]["source"] == "digits":
        out["mask"] = stroke_mask(out["x0"])
    meta = {"class_name": cls_name, "class_index": cls["index"], "image_ids": ids, "mode": tr["mode"],
            "views": [v for v in tr["views"] if v in out], "layout": "x_t/x0_pred: (N images, K draws, S steps, C, H, W)"}  # fmt: skip
    save_arrays(out_path, out, meta)


def plot_trajectories(config: dict, traj_paths: list[str], out_path: str) -> None:
    from diffxai.plots import common as plots

    rows = []
    for p in traj_paths:
        arrays, meta = load_arrays(p)
        rows.append((meta["class_name"], {v: arrays[v][0, 0] for v in meta["views"]}, arrays["timesteps"].numpy()))
    plots.trajectory_strips(rows, out_path, n_cols=config["plots"]["strip_steps"], dpi=config["plots"]["dpi"])
