"""Benchmark: CAD attribution with batched gradient accumulation vs one backward per item.

Both compute a = w · ∂J_e/∂w for the same selected weights on the same items (samples ×
timesteps of DDIM trajectories); the batched way runs one forward + backward per batch of
items, the naive way one per item. Asserts equal scores (tolerance) and prints the ratio.

    python bench/bench_components.py                 # a fresh demo-sized U-Net (random weights), 8 x 25 items
    python bench/bench_components.py --ddpm results/digits-demo/models/ddpm --samples 16
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ddpm", default=None, help="demo DDPM directory (default: build an untrained demo-sized one)")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--patterns", default=r"class_embedding\.weight$,time_emb_proj\.weight$")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from diffusers import DDPMScheduler

    from diffxai.core.timesteps import uniform_timesteps
    from diffxai.methods import components as cad
    from diffxai.models.demo import build_demo_unet, save_demo_diffusion
    from diffxai.models.loading import load_backend
    from diffxai.models.pixel import DiffusionModel

    with tempfile.TemporaryDirectory() as tmp:
        path = args.ddpm
        if path is None:
            torch.manual_seed(0)
            unet = build_demo_unet(16, 1, 10)
            sched = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
            path = str(Path(tmp) / "ddpm")
            save_demo_diffusion(DiffusionModel(unet, sched, 10), path, {"note": "untrained, bench only"})
        backend = load_backend("pixel", path, args.device)
        cond = backend.encode([3])  # digit_3
        ts = tuple(int(t) for t in uniform_timesteps(backend.num_train_timesteps, args.steps))
        sampling = cad.Sampling(args.steps, 2.0, 256, timesteps=ts)
        traj = cad.sample_classes(
            backend, cond, ["digit_3"], args.samples, sampling, seed=0, stage="bench", record=True
        )
        items = cad.erase_items(backend, traj["x_t"], traj["timesteps"], cond, args.batch_size)
        params = cad.select_parameters(backend.unet, args.patterns.split(","))
        n_w = sum(p.numel() for p in params.values())

        cad.attribute(backend, items.subset(slice(0, 4)), params, 4)  # warm-up
        t0 = time.perf_counter()
        a_b, j_b = cad.attribute(backend, items, params, args.batch_size)
        t_batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        a_n, j_n = cad.attribute_naive(backend, items, params)
        t_naive = time.perf_counter() - t0

    assert abs(j_b - j_n) <= 1e-5 * abs(j_n), (j_b, j_n)
    for n in a_b:
        scale = a_n[n].abs().max().item()
        torch.testing.assert_close(a_b[n], a_n[n], rtol=1e-4, atol=1e-4 * scale)
    print(
        f"items: {len(items)} ({args.samples} samples x {args.steps} DDIM steps), {len(params)} tensors, {n_w} weights"
    )
    print(f"batched (batch {args.batch_size}): {t_batched:.2f} s   one backward per item: {t_naive:.2f} s")
    print(f"same attributions (rtol 1e-4); speed-up batched / naive = {t_naive / t_batched:.1f}x")


if __name__ == "__main__":
    main()
