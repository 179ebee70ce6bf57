"""Memorization-NN run: data (:func:`spuriouslab.data.build_split`, every class) -> a seed ensemble trained by the
one training loop, checkpointed through the run context -> one record per seed with its curves."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import torch

from spuriouslab.data.memorization import build_split
from spuriouslab.data.borders import DEFAULT_BORDER
from spuriouslab.data.images import image_shape
from spuriouslab.experiments.base import Estimate, RunContext
from spuriouslab.experiments.memorization_nn.config import MemorizationNNConfig
from spuriouslab.nets.models import SeedEnsemble, build_model
from spuriouslab.nets.train import (DIVERGENCE_BOUND, DivergenceError, diverged, make_optimizer, seed_cross_entropy,
                                     train_loop)
from spuriouslab.seeding import stream, torch_generator, torch_seed

NAME = "memorization-nn"


class Tensors:
    """One seed's data as tensors: inputs (N, C, H, W) or (N, d), targets, and the model's shape and outputs."""

    def __init__(self, cfg: MemorizationNNConfig, seed: int, n: int):
        s = build_split(cfg.split_spec(), seed, n)
        if cfg.data == "synthetic":
            f = lambda a: torch.from_numpy(a).float()  # noqa: E731
            self.x, self.xt, self.xq = f(s.Z), f(s.Z_test), f(s.Z_query)
            self.y, self.yt = f(s.g), f(s.g_test)
            self.shape, self.n_out, self.classes = (1, 1, cfg.d), 1, 0
            return
        h, w, c = s.sample_shape

        def images(a):
            return torch.from_numpy(a).float().view(len(a), h, w, c).permute(0, 3, 1, 2).contiguous()

        self.x, self.xt, self.xq = images(s.Z), images(s.Z_test), images(s.Z_query)
        self.y, self.yt = torch.from_numpy(s.g), torch.from_numpy(s.g_test)
        self.shape, self.n_out, self.classes = (c, h, w), s.n_classes, s.n_classes


def check(cfg: MemorizationNNConfig) -> None:
    Tensors(cfg, cfg.seed, max(cfg.n_train))  # data present, sizes possible


def estimate(cfg: MemorizationNNConfig) -> Estimate:
    """The largest group: every seed of the largest N (ResNet: one seed), its data as float32 tensors (plus
    the float64 split being built), parameters with Adam state, and one batch of activations."""
    n = max(cfg.n_train)
    if cfg.data == "synthetic":
        c, h, w = 1, 1, cfg.d
    else:
        h0, w0, c = image_shape(cfg.data, cfg.data_root)
        b = cfg.border or DEFAULT_BORDER[cfg.data]
        h, w = h0 + 2 * b, w0 + 2 * b
    size = c * h * w
    best = Estimate(0.0, 0.0)
    for model in cfg.model:
        S = 1 if model == "resnet18" else cfg.seeds
        params = {"fc": size * 500 + 500 * 200 + 200 * 10, "cnn": 16 * 9 * c + 32 * 16 * 9 + 32 * (h // 4) * (w // 4)
                  * 256 + 2560, "resnet18": 11_200_000}[model]
        per_sample = {"fc": 700, "cnn": 16 * h * w * 3 + 32 * h * w, "resnet18": 64 * h * w * 16}[model]
        batch = min(cfg.batch_size, n)
        peak = (S * (2 * n + cfg.n_test) * size * 4 + (2 * n + cfg.n_test) * size * 8
                + S * params * 4 * 4 + S * batch * per_sample * 4 * 2)
        steps = cfg.epochs * math.ceil(n / cfg.batch_size)
        flops = S * (6.0 * steps * batch * max(params, per_sample)
                     + 2.0 * (cfg.epochs / cfg.log_every + 1) * (2 * n + cfg.n_test) * max(params, per_sample))
        if peak > best.peak_bytes:
            best = Estimate(peak, max(flops, best.flops), f"{model}, N={n}, {S} seed(s)")
        else:
            best.flops = max(best.flops, flops)
    return best


def group_key(cfg: MemorizationNNConfig, p: dict[str, Any]) -> Any:
    key = (p["model"], p["n_train"])
    return (*key, p["seed"]) if p["model"] == "resnet18" else key  # BatchNorm: one seed at a time


def _loss(out: torch.Tensor, y: torch.Tensor, classes: int) -> torch.Tensor:
    """Per-seed loss (S,) of outputs (S, B, C) against targets (S, B)."""
    if classes:
        return seed_cross_entropy(out, y)
    return ((out[..., 0] - y) ** 2).mean(dim=1)


def _correct(out: torch.Tensor, y: torch.Tensor, classes: int) -> torch.Tensor:
    if classes:
        return (out.argmax(-1) == y).float()
    return (out[..., 0] * y > 0).float()


def checkpoint_key(cfg: MemorizationNNConfig, points: list[dict]) -> str:
    key = json.dumps({"points": points, "cfg": cfg.model_dump(mode="json")}, sort_keys=True)
    return f"{NAME}-{hashlib.sha1(key.encode()).hexdigest()[:16]}"


def run_group(cfg: MemorizationNNConfig, points: list[dict], ctx: RunContext) -> Iterator[dict]:
    t0 = time.perf_counter()
    seeds = [p["seed"] for p in points]
    model_name, n = points[0]["model"], points[0]["n_train"]
    dev = ctx.device
    datas = [Tensors(cfg, s, n) for s in seeds]
    stack = lambda attr: torch.stack([getattr(d, attr) for d in datas]).to(dev)  # noqa: E731
    x, y, xt, yt, xq = (stack(a) for a in ("x", "y", "xt", "yt", "xq"))
    classes, shape, n_out = datas[0].classes, datas[0].shape, datas[0].n_out

    def make(seed: int) -> torch.nn.Module:
        torch.manual_seed(torch_seed(seed, stream("nets.init")))
        return build_model(model_name, shape, n_out)

    net = SeedEnsemble(make, seeds).to(dev)
    opt = make_optimizer("adam", net.parameters(), cfg.lr, cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    gens = [torch_generator(s, stream("nets.order")) for s in seeds]
    spe = math.ceil(n / cfg.batch_size)  # steps per epoch
    iterations = cfg.epochs * spe
    S = len(seeds)
    state = {"perm": None}
    history: dict[str, list] = {"epoch": []}
    gone: dict[int, int] = {}  # seed -> first logged epoch whose loss diverged

    ckpt = checkpoint_key(cfg, points) if ctx.checkpoints is not None else None
    saved = ctx.checkpoints.load(ckpt) if ckpt is not None else None
    start = 0
    if saved is not None:
        net.load_state_dict(saved["net"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        for g, st in zip(gens, saved["gens"], strict=True):
            g.set_state(st)
        history, start = saved["history"], saved["step"]
        gone = {int(k): v for k, v in saved["diverged"].items()}

    def step_loss(t: int) -> torch.Tensor:
        i = (t - 1) % spe
        if i == 0:
            if t > 1:
                sched.step()  # once per epoch
            state["perm"] = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(dev)
        idx = state["perm"][:, i * cfg.batch_size:(i + 1) * cfg.batch_size]
        xb = torch.gather(x, 1, idx.view(S, -1, *[1] * (x.dim() - 2)).expand(-1, -1, *x.shape[2:]))
        yb = torch.gather(y, 1, idx)
        return _loss(net(xb), yb, classes).sum()

    @torch.no_grad()
    def evaluate(inputs, targets) -> tuple[torch.Tensor, torch.Tensor]:
        net.eval()
        outs = torch.cat([net(inputs[:, j:j + 2048]) for j in range(0, inputs.shape[1], 2048)], dim=1)
        net.train()
        return _loss(outs, targets, classes), _correct(outs, targets, classes).mean(dim=1)

    def on_log(t: int) -> dict:
        train_loss, train_acc = evaluate(x, y)
        _, test_acc = evaluate(xt, yt)
        _, spur_acc = evaluate(xq, y)
        epoch = t // spe
        for i, s in enumerate(seeds):
            if bool(diverged(train_loss[i].cpu())) and s not in gone:
                gone[s] = epoch
        history["epoch"].append(epoch)
        for k, v in [("train_loss", train_loss), ("train_acc", train_acc), ("test_acc", test_acc),
                     ("spurious_acc", spur_acc)]:
            history.setdefault(k, []).append([float(a) for a in v.cpu()])
        if ckpt is not None and t > 0:
            ctx.checkpoints.save(ckpt, {"net": net.state_dict(), "opt": opt.state_dict(),
                                        "sched": sched.state_dict(), "gens": [g.get_state() for g in gens],
                                        "history": history, "diverged": gone, "step": t})
        alive = [float(train_loss[i]) for i, s in enumerate(seeds) if s not in gone]
        return {"loss": torch.tensor(alive if alive else [math.nan])}

    net.train()
    try:
        train_loop(step_loss, opt, iterations, cfg.log_every * spe, on_log,
                   desc=f"{model_name} N={n} x{S}", progress=ctx.progress, start=start)
    except DivergenceError:
        pass  # every seed diverged: their records say so (below); nothing to retry

    seconds = (time.perf_counter() - t0) / S
    for i, p in enumerate(points):
        rec = dict(p)
        for k in ["train_loss", "train_acc", "test_acc", "spurious_acc"]:
            rec[k] = history[k][-1][i]
            rec[f"curve_{k}"] = [h[i] for h in history[k]]
        rec["curve_epoch"] = list(history["epoch"])
        rec.update(data=cfg.data, epochs=cfg.epochs, status="ok", error="", seconds=seconds,
                   n_classes=classes or 2, chance=1 / (classes or 2))
        if p["seed"] in gone:
            rec.update(status="diverged",
                       error=f"training loss not finite or above {DIVERGENCE_BOUND:g} at epoch {gone[p['seed']]}")
            for k in ["train_loss", "train_acc", "test_acc", "spurious_acc"]:
                rec[k] = math.nan
        yield rec
    if ckpt is not None:
        ctx.checkpoints.discard(ckpt)
