"""Likelihood stage: images per second, batched vs one image per classifier call.

Runs both on the same inputs in one process, checks the logits agree, and prints the ratio.

    python bench/bench_likelihood.py                 # demo CNN on 16x16 digits-sized inputs
    python bench/bench_likelihood.py --arch resnet18 --size 64 --n 256   # ResNet-18 (224 crop)
"""

from __future__ import annotations

import argparse
import time

import torch

from diffxai.models.classifiers import Classifier, DemoCNN, classify


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--arch", default="demo", help="demo or a torchvision model name (random weights)")
    ap.add_argument("--n", type=int, default=2400, help="images (e.g. 10 classes x 4 images x 3 draws x 20 steps)")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.arch == "demo":
        clf, c = Classifier(DemoCNN(10, 1, 32), "none", 10), 1
    else:
        import torchvision

        clf, c = Classifier(torchvision.models.get_model(args.arch, weights=None), "imagenet", 1000), 3
    clf = clf.eval().to(args.device)
    x = torch.rand(args.n, c, args.size, args.size, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def timed(fn):
        fn(x[:8])  # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn(x)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return out, time.perf_counter() - t0

    batched, t_batched = timed(lambda xs: classify(clf, xs, args.batch_size, args.device))
    naive, t_naive = timed(lambda xs: classify(clf, xs, 1, args.device))
    torch.testing.assert_close(batched, naive, rtol=1e-4, atol=1e-4)
    print(
        f"likelihood ({args.arch}, {args.n} images {c}x{args.size}x{args.size}, {args.device}, "
        f"{torch.get_num_threads()} threads)"
    )
    print(f"  one image per call : {args.n / t_naive:10.1f} images/s")
    print(f"  batched ({args.batch_size:4d})     : {args.n / t_batched:10.1f} images/s")
    print(f"  ratio batched/naive: {t_naive / t_batched:10.1f}x  (same logits within 1e-4)")


if __name__ == "__main__":
    main()
