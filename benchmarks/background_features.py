"""Benchmark: CIFAR ResNet-32 on CPU (and on the GPU when present) - seconds per training epoch, and the cost of
the measurement passes (border sensitivity, Grad-CAM, feature visualization).

    python benchmarks/background_features.py [--images 2000] [--size 32] [--batch 128]

Per epoch: SGD steps over ``--images`` random 3 x size x size images (scaled to the 50000 images of a CIFAR-10
epoch in the last column).  Visualization: 64 channels, one round of 25 Adam steps (the paper's recipe is 10 rounds
of ~200 steps: multiply by 80).
"""

from __future__ import annotations

import argparse
import time

import torch


def bench(device: str, images: int, size: int, batch: int) -> dict:
    from spuriouslab.nets import analysis
    from spuriouslab.nets.models import ResNetCIFAR

    torch.manual_seed(0)
    model = ResNetCIFAR(3, 10, 32).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.rand(images, 3, size, size, device=device)
    y = torch.randint(0, 10, (images,), device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def epoch():
        model.train()
        for i in range(0, images, batch):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i : i + batch]), y[i : i + batch]).backward()
            opt.step()

    epoch()  # warm-up
    sync()
    t = time.perf_counter()
    epoch()
    sync()
    out = {"epoch": time.perf_counter() - t}
    out["cifar_epoch"] = out["epoch"] * 50000 / images
    model.eval()
    region = torch.zeros(size, size, dtype=torch.bool, device=device)
    region[:4] = region[-4:] = True
    region[:, :4] = region[:, -4:] = True
    t = time.perf_counter()
    analysis.sensitivity(model, x[:1000], x[:1000].flip(-1))
    sync()
    out["sensitivity_1000"] = time.perf_counter() - t
    t = time.perf_counter()
    analysis.gradcam_border_fraction(model, x[:200], region, model.last_block)
    sync()
    out["gradcam_200"] = time.perf_counter() - t
    t = time.perf_counter()
    analysis.visualize_channels(model, model.last_block, (3, size, size), list(range(64)), rounds=1, steps=25)
    sync()
    out["visualize_64x25"] = time.perf_counter() - t
    return out


def main() -> None:
    from spuriouslab.runtime import tune_allocator

    tune_allocator()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"ResNet-32 ({args.size}x{args.size}, batch {args.batch}, {torch.get_num_threads()} CPU threads)")
    print(
        "| device | s / epoch of " + str(args.images) + " images | s / CIFAR-10 epoch (50000) | sensitivity, 1000 "
        "images | Grad-CAM, 200 images | visualization, 64 ch x 25 steps |"
    )
    print("|---|---|---|---|---|---|")
    for dev in devices:
        r = bench(dev, args.images, args.size, args.batch)
        print(
            f"| {dev} | {r['epoch']:.2f} | {r['cifar_epoch']:.0f} | {r['sensitivity_1000']:.2f} | "
            f"{r['gradcam_200']:.2f} | {r['visualize_64x25']:.2f} |"
        )
    if len(devices) == 1:
        print("(no GPU here: the cuda row is measured only where one is present)")


if __name__ == "__main__":
    main()
