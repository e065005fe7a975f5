"""Schedules stage: generation under uniform / early / latter schedules, batched vs one at a time.

The batched way (what the stage runs: :func:`diffxai.sampling.loop.sample`) generates all
classes x seeds of a schedule in one batched DDIM loop (one U-Net call of 2B rows per step with
CFG); the naive way generates one sample at a time. Both run in one process on identical noise,
labels and timesteps; the samples and every recorded x̂0 must agree (within 5e-3 on [-1, 1]);
the ratio of wall times is printed.

    python bench/bench_schedules.py                       # demo-sized U-Net, 16 px, CPU
    python bench/bench_schedules.py --classes 10 --seeds 8 --steps 30   # the demo's full size
    python bench/bench_schedules.py --device cuda --size 64 --classes 10 --seeds 32
"""

from __future__ import annotations

import argparse
import time

import torch

from diffxai.core.seeding import make_generator
from diffxai.core.timesteps import make_schedule
from diffxai.models.demo import build_demo_unet
from diffxai.models.pixel import DiffusionModel
from diffxai.sampling.loop import sample
from diffxai.sampling.noising import seeded_noise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20, help="l sampling steps per schedule")
    ap.add_argument("--gamma", type=float, default=60.0)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--sampler", default="ddim", choices=["ddim", "ddpm", "dpmsolver++"])
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers import DDPMScheduler

    torch.manual_seed(0)
    unet = build_demo_unet(args.size, 1, 10).eval().requires_grad_(False).to(args.device)
    model = DiffusionModel(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000), null_label=10)
    schedules = [
        make_schedule("uniform", 1000, args.steps),
        make_schedule("early", 1000, args.steps, args.gamma),
        make_schedule("latter", 1000, args.steps, args.gamma),
    ]
    n = args.classes * args.seeds
    gens = [make_generator(0, "bench", c, s) for c in range(args.classes) for s in range(args.seeds)]
    x = seeded_noise((1, args.size, args.size), gens)
    cond = model.encode(torch.arange(args.classes).repeat_interleave(args.seeds).tolist())

    def ddpm_gens():
        return [make_generator(0, "bench-ddpm", i) for i in range(n)] if args.sampler == "ddpm" else None

    def generate(s, batch_size):
        return sample(
            model,
            x,
            timesteps=s.timesteps,
            cond=cond,
            guidance=args.guidance,
            scheduler=args.sampler,
            step_generators=ddpm_gens(),
            record=True,
            batch_size=batch_size,
        )

    def run(batch_size):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = [generate(s, batch_size) for s in schedules]
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return out, time.perf_counter() - t0

    # warm-up
    sample(model, x[:2], timesteps=schedules[0].timesteps[:2], cond=cond[:2], guidance=args.guidance)
    batched, t_batched = run(args.batch_size)
    naive, t_naive = run(1)
    # x̂0 = (x_t − sqrt(1−ᾱ)ε̂)/sqrt(ᾱ) divides by sqrt(ᾱ_999) ≈ 0.006, so float32 differences
    # between batched and single-sample convolutions (~1e-6) grow to ~1e-3 on [-1, 1] images
    diff = max(max((b[k] - a[k]).abs().max().item() for k in ("sample", "x0_pred")) for b, a in zip(batched, naive))
    for b, a in zip(batched, naive):
        torch.testing.assert_close(b["sample"], a["sample"], rtol=0, atol=5e-3)
        torch.testing.assert_close(b["x0_pred"], a["x0_pred"], rtol=0, atol=5e-3)
    total = n * len(schedules)
    print(
        f"schedules ({len(schedules)} schedules x {args.classes} classes x {args.seeds} seeds = {total} samples, "
        f"{args.steps} steps, {args.sampler}, CFG {args.guidance}, {args.size}px, {args.device}, "
        f"{torch.get_num_threads()} threads)"
    )
    print(f"  one sample at a time : {t_naive:8.2f} s  ({total / t_naive:8.1f} samples/s)")
    print(f"  batched ({args.batch_size:4d})       : {t_batched:8.2f} s  ({total / t_batched:8.1f} samples/s)")
    print(f"  ratio naive/batched  : {t_naive / t_batched:8.1f}x  (same samples and x̂0: max |diff| {diff:.1e})")


if __name__ == "__main__":
    main()
