"""Benchmark: batched attribution maps vs the poster's one-image-per-call Captum loop.

Same model, same inputs, same per-map seeds; asserts the maps agree (relative to the map
scale) and prints maps/s of both and their ratio per method.

    python bench/bench_attribution.py                       # demo CNN, 16-px digits, CPU (~1 min)
    python bench/bench_attribution.py --model resnet18 --size 224 --channels 3 --n 64 --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch

from diffxai.core.device import resolve_device
from diffxai.methods.attribution import POSTER_METHODS, ClassLogit, MapAttributor, attribute_reference, build_method
from diffxai.models.classifiers import Classifier, DemoCNN


def build_model(name: str, channels: int, width: int, device) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "democnn":
        net, pre, n_cls = DemoCNN(10, channels, width), "none", 10
    else:
        import torchvision

        net, pre, n_cls = torchvision.models.get_model(name, weights=None), "imagenet", 1000
    return Classifier(net, pre, n_cls).eval().requires_grad_(False).to(device)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="democnn", help="democnn or a torchvision classifier name (random weights)")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--width", type=int, default=32, help="DemoCNN width")
    ap.add_argument("--n", type=int, default=48, help="maps per method")
    ap.add_argument("--methods", default="ig,gradshap,occlusion")
    ap.add_argument("--batch-size", type=int, default=None, help="maps per Captum call (default: per method below)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.backends.cudnn.allow_tf32 = False  # full float32 so both paths can be compared at 1e-5
    torch.backends.cuda.matmul.allow_tf32 = False
    model = build_model(args.model, args.channels, args.width, device)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(args.n, args.channels, args.size, args.size, generator=g) * 2 - 1).to(device)
    target = [ClassLogit(int(i)) for i in torch.randint(0, model.n_classes, (args.n,), generator=g)]
    seeds = [1_000_003 * i + 17 for i in range(args.n)]
    big = device.type == "cuda"
    default_bs = {"ig": 64 if big else 32, "gradshap": 64 if big else 16, "occlusion": 16 if big else 8}
    chip = torch.cuda.get_device_name(device) if big else "cpu"
    print(
        f"device {device} ({chip}), model {args.model}, {args.n} maps of {args.channels}x{args.size}x{args.size} "
        f"per method, threads {torch.get_num_threads()}"
    )
    print(f"{'method':<10} {'batched maps/s':>15} {'loop maps/s':>12} {'ratio':>7} {'max rel err':>12}")
    for name in args.methods.split(","):
        entry = dict(POSTER_METHODS[name])
        entry["batch_size"] = args.batch_size or default_bs.get(name, 32)
        if name == "occlusion":
            entry["attribute"] = {**entry["attribute"], "perturbations_per_eval": 256 if big else 64}
        spec = build_method(name, entry)
        att = MapAttributor(model, spec)
        att.attribute(x[:2], target[:2], seeds[:2], out_device=None)  # warm-up (cuDNN, allocator)
        _sync(device)
        t0 = time.perf_counter()
        batched = att.attribute(x, target, seeds, out_device=None)
        _sync(device)
        t_batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        loop = attribute_reference(model, spec, x, target, seeds)
        _sync(device)
        t_loop = time.perf_counter() - t0
        err = float((batched - loop).abs().max() / loop.abs().max().clamp_min(1e-30))
        tol = 1e-4 if spec.captum == "Occlusion" else 1e-5  # occlusion subtracts float32 logits
        assert err <= tol, f"{name}: batched and per-image maps differ ({err:.2e})"
        ratio = t_loop / t_batched
        print(f"{name:<10} {args.n / t_batched:>15.1f} {args.n / t_loop:>12.1f} {ratio:>7.1f} {err:>12.1e}")


if __name__ == "__main__":
    main()
