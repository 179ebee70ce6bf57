"""Benchmark: an EfficientNet-Lite training step on this machine's CPU (the distillation student's: AdamW, MSE of the
pooled 1280-d embedding to a target), as seconds per 1000 images and as a fraction of what its FLOP count would
take at the machine's measured matmul rate - channels-first (NCHW), channels-last (NHWC, what the package uses:
``EfficientNetLite.use_memory_format``), and ``torch.compile`` of the channels-last network where it builds, in one
run so the ratios compare like with like.

    python benchmarks/efficientnet.py [--variant efficientnet-lite0] [--sizes 32,64] [--batch 64] [--steps 6]

Columns: the variant and image size; the mode; seconds per training step and per 1000 images; the step's FLOPs
(three times the forward pass's, counted by torch.utils.flop_counter); the FLOP rate achieved; and that rate over the
machine's matmul rate (a float32 1024 x 1024 matrix product, measured here).  Depthwise convolutions do little
arithmetic per byte, so the last column is far below 1 on a CPU: it says how far the network is from compute bound.
Random initialisation (the pretrained weights change nothing in the cost).
"""

from __future__ import annotations

import argparse
import time

import torch


def matmul_rate(n: int = 1024, repeats: int = 10) -> float:
    """FLOP/s of a float32 n x n matrix product on this CPU (the best of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2.0 * n**3 / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def step_flops(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> float:
    """FLOPs of one training step: three times the forward pass's count (torch.utils.flop_counter), the usual
    rule (the backward pass computes the input and the weight gradients, each about one forward).  The counter's
    own backward count is not used: for grouped (depthwise) convolutions it counts as if the groups were dense,
    about 40 times the forward at 32 px (measured here on 2026-12-07)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return 3.0 * float(counter.get_total_flops())


def bench(variant: str, size: int, batch: int, steps: int, mode: str) -> dict:
    from spuriouslab.nets.efficientnet import lite_encoder

    torch.manual_seed(0)
    model = lite_encoder(variant).train()
    x = torch.rand(batch, 3, size, size)
    target = torch.randn(batch, 1280)
    flops = step_flops(model, x, target)
    model.net.use_memory_format(torch.contiguous_format if mode == "channels-first" else torch.channels_last)
    run = model
    if mode == "compile":
        try:
            run = torch.compile(model)
        except Exception as exc:  # noqa: BLE001 - a backend that does not build here is reported, not fatal
            return {"mode": mode, "error": str(exc).splitlines()[0]}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def one() -> None:
        opt.zero_grad(set_to_none=True)
        ((run(x) - target) ** 2).mean().backward()
        opt.step()

    try:
        one()  # warm-up (compilation)
        one()
    except Exception as exc:  # noqa: BLE001
        return {"mode": mode, "error": str(exc).splitlines()[0]}
    seconds = sorted(_timed(one) for _ in range(steps))[steps // 2]
    return {"mode": mode, "seconds": seconds, "per_1000": seconds * 1000 / batch, "flops": flops}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="efficientnet-lite0")
    ap.add_argument("--sizes", default="32,64")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--modes", default="channels-first,channels-last,compile")
    args = ap.parse_args()
    rate = matmul_rate()
    print(f"threads {torch.get_num_threads()}; float32 matmul (1024^2): {rate / 1e9:.1f} GFLOP/s")
    print("| variant | size | mode | s / step | s / 1000 images | GFLOP / step | GFLOP/s | of matmul rate |")
    print("|---|---|---|---|---|---|---|---|")
    for size in map(int, args.sizes.split(",")):
        for mode in args.modes.split(","):
            r = bench(args.variant, size, args.batch, args.steps, mode)
            if "error" in r:
                print(f"| {args.variant} | {size} | {mode} | failed: {r['error']} | | | | |")
                continue
            achieved = r["flops"] / r["seconds"]
            print(
                f"| {args.variant} | {size} | {mode} | {r['seconds']:.3f} | {r['per_1000']:.2f} | "
                f"{r['flops'] / 1e9:.2f} | {achieved / 1e9:.2f} | {achieved / rate:.3f} |"
            )


if __name__ == "__main__":
    main()
