"""Benchmark: CIFAR ResNet-32 and the small ViT on CPU (and on the GPU when present) - seconds per training epoch,
and the cost of the measurement passes (border sensitivity, Grad-CAM, feature visualization), in one run so the
ratios compare like with like.

    python benchmarks/background_features.py [--images 2000] [--size 32] [--batch 128] [--models resnet32,vit]

Per epoch: optimizer steps over ``--images`` random 3 x size x size images (scaled to the 50000 images of a CIFAR-10
epoch in the next column); each model with the optimizer background-features trains it with (ResNet-32: SGD with
momentum; ViT: AdamW).  The ViT is the registry's default (patch 4, dim 64, depth 4, 4 heads; the patch must
divide ``--size``).  Grad-CAM: the ResNet's last block, the ViT's patch embedding.  Visualization: 64 channels (the
ViT's: its last block's MLP units), one round of 25 Adam steps (the paper's recipe is 10 rounds of ~200 steps:
multiply by 80).  The last column is the epoch time over the ResNet-32's on the same device.
"""

from __future__ import annotations

import argparse
import time

import torch

MODELS = {"resnet32": ("resnet", {"depth": 32}, "sgd"), "vit": ("vit", {}, "adamw")}


def bench(device: str, model_key: str, images: int, size: int, batch: int) -> dict:
    from spuriouslab.nets import analysis
    from spuriouslab.nets.models import build_model
    from spuriouslab.nets.train import make_optimizer

    name, options, optimizer = MODELS[model_key]
    torch.manual_seed(0)
    model = build_model(name, (3, size, size), 10, **options).to(device)
    lr, wd = (0.1, 1e-4) if optimizer == "sgd" else (1e-3, 0.05)
    opt = make_optimizer(optimizer, model.parameters(), lr, wd, 0.9)
    x = torch.rand(images, 3, size, size, device=device)
    y = torch.randint(0, 10, (images,), device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def epoch() -> None:
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
    out = {"parameters": sum(p.numel() for p in model.parameters()), "epoch": time.perf_counter() - t}
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
    analysis.gradcam_border_fraction(model, x[:200], region, analysis.cam_layer(model)[0])
    sync()
    out["gradcam_200"] = time.perf_counter() - t
    vit = name == "vit"
    layer = model.feature_layer if vit else model.last_block
    t = time.perf_counter()
    analysis.visualize_channels(model, layer, (3, size, size), list(range(64)), rounds=1, steps=25, tokens=vit)
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
    ap.add_argument("--models", default="resnet32,vit", help="comma-separated: resnet32, vit")
    args = ap.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        ap.error(f"--models: got {unknown[0]!r}; allowed: {', '.join(MODELS)}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"{args.size}x{args.size} images, batch {args.batch}, {torch.get_num_threads()} CPU threads")
    print(
        "| model | parameters | device | s / epoch of " + str(args.images) + " images | s / CIFAR-10 epoch (50000) | "
        "sensitivity, 1000 images | Grad-CAM, 200 images | visualization, 64 ch x 25 steps | epoch vs ResNet-32 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for dev in devices:
        base = None
        for key in models:
            r = bench(dev, key, args.images, args.size, args.batch)
            base = r["epoch"] if key == "resnet32" else base
            ratio = f"{r['epoch'] / base:.2f}x" if base else "-"
            print(
                f"| {key} | {r['parameters']} | {dev} | {r['epoch']:.2f} | {r['cifar_epoch']:.0f} | "
                f"{r['sensitivity_1000']:.2f} | {r['gradcam_200']:.2f} | {r['visualize_64x25']:.2f} | {ratio} |"
            )
    if len(devices) == 1:
        print("(no GPU here: the cuda rows are measured only where one is present)")


if __name__ == "__main__":
    main()
