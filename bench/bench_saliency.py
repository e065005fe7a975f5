"""Benchmark: batched DF-RISE / single-pass DF-CAM vs the naive way, side by side on identical inputs.

* DF-RISE: masks streamed in batches through one denoiser forward per batch (diffxai) vs one
  forward per mask (the reference code's loop). Same masks (same seeded stream), same map.
* DF-CAM: every U-Net block from ONE forward + backward (diffxai) vs one forward + backward per
  block (the reference hooked one layer per run; it even regenerated the image each time).

Both run the demo-sized class-conditional U-Net (16x16x1 digits, 32/64/64 channels) with CFG
(2 branches per forward), on the CPU by default. Prints times and ratios; asserts equal outputs.

    python bench/bench_saliency.py                       # ~1 min on one CPU thread
    python bench/bench_saliency.py --n-masks 500 --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
import time

import torch


def build_model(size: int, channels: tuple[int, ...], device, dtype, ddpm: str | None):
    from diffusers import DDPMScheduler

    from diffxai.models.demo import build_demo_unet
    from diffxai.models.pixel import DiffusionModel, load_diffusion

    if ddpm:
        model = load_diffusion(ddpm, device)
    else:
        torch.manual_seed(0)
        unet = build_demo_unet(size, 1, 10, channels).eval().requires_grad_(False)
        model = DiffusionModel(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000), null_label=10)
    model.unet.to(device)
    if dtype != torch.float32:
        model.unet.to(dtype)
    return model


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int):
    out, best = None, float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return out, best


def rise_naive(den, x, generator, n_masks, p, batch_size):
    """DF-RISE with one denoiser forward per mask (masks from the same stream as diffxai's)."""
    from diffxai.core.imageops import minmax
    from diffxai.methods.saliency import mask_stream, structure_term

    with torch.no_grad():
        ref = den(x[None])
        acc = torch.zeros(x.shape[-2:], dtype=torch.float64, device=x.device)
        for masks in mask_stream(n_masks, tuple(x.shape[-2:]), p, generator, batch_size, "pixel", 8):
            for m in masks:
                s = structure_term(ref, den(m[None] * x[None]))
                acc += m[0].double() * s[0].double()
    return minmax(acc.clamp_min(0).float()).cpu()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-masks", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--size", type=int, default=16, help="image side of the random-init demo U-Net")
    ap.add_argument("--channels", type=int, nargs="+", default=[32, 64, 64])
    ap.add_argument("--ddpm", default=None, help="a trained pipeline directory instead of the random-init U-Net")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from diffxai.methods.saliency import df_cam, df_rise, fixed_step_denoiser

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    model = build_model(args.size, tuple(args.channels), device, dtype, args.ddpm)
    size = model.unet.config.sample_size
    den = fixed_step_denoiser(model, 600, model.encode([3]), 2.0, t_next=550)
    x = torch.randn(1, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    n_params = sum(p.numel() for p in model.unet.parameters()) / 1e6
    print(
        f"device {device} ({args.dtype}), U-Net {n_params:.2f} M params, "
        f"input 1x{size}x{size}, CFG (2 branches per forward), {torch.get_num_threads()} thread(s)"
    )

    # ---- DF-RISE
    def gen():
        return torch.Generator(device=device).manual_seed(1)

    batched, t_b = timed(
        lambda: df_rise(den, x, generator=gen(), n_masks=args.n_masks, batch_size=args.batch_size).map,
        device,
        args.repeats,
    )
    naive, t_n = timed(lambda: rise_naive(den, x, gen(), args.n_masks, 0.5, args.batch_size), device, 1)
    diff = float((batched - naive).abs().max())
    assert diff < 5e-3 if dtype != torch.float32 else diff < 1e-4, f"DF-RISE maps differ by {diff}"
    print(
        f"DF-RISE  {args.n_masks} masks: batched ({args.batch_size}/forward) {t_b:.3f}s "
        f"({args.n_masks / t_b:.0f} masks/s) | one mask per forward {t_n:.3f}s ({args.n_masks / t_n:.0f} masks/s) "
        f"| speed-up x{t_n / t_b:.1f} | max map difference {diff:.1e}"
    )

    # ---- DF-CAM
    xb = x[None]
    one, t_one = timed(lambda: df_cam(den, xb), device, args.repeats)
    layers = one.layers

    def per_layer():
        return torch.cat([df_cam(den, xb, layers=[name]).layer_maps for name in layers], 1)

    each, t_each = timed(per_layer, device, 1)
    diff = float((one.layer_maps - each).abs().max())
    assert diff < 1e-4 if dtype == torch.float32 else diff < 5e-2, f"DF-CAM maps differ by {diff}"
    print(
        f"DF-CAM   {len(layers)} layers: one forward+backward {t_one:.3f}s | one run per layer {t_each:.3f}s "
        f"| speed-up x{t_each / t_one:.1f} | max map difference {diff:.1e}"
    )


if __name__ == "__main__":
    main()
