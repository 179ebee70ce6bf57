"""Background-features run: images (the data layer) -> padded or control training pipeline
(:func:`spuriouslab.data.borders.pad_crop_flip`) -> a CIFAR ResNet trained by the one training loop (SGD, step
schedule; optional Gaussian-noise + PGD-L2 adversarial training) -> the border numbers, Grad-CAM and feature
visualizations of :mod:`spuriouslab.nets.analysis` -> one record per (pipeline, seed)."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from spuriouslab.data.borders import frame, frame_mask, pad_crop_flip, parse_colour
from spuriouslab.data.images import to_float_chw
from spuriouslab.errors import ConfigError
from spuriouslab.experiments.base import Estimate, RunContext
from spuriouslab.experiments.background_features.config import BackgroundFeaturesConfig
from spuriouslab.nets import analysis as A
from spuriouslab.nets.models import ResNetCIFAR
from spuriouslab.nets.train import DIVERGENCE_BOUND, DivergenceError, make_optimizer, train_loop
from spuriouslab.seeding import numpy_rng, stream, torch_generator, torch_seed


def resolve_data(cfg: BackgroundFeaturesConfig) -> str:
    """``auto``: Fashion-MNIST where the data layer finds it, else scikit-learn's digits."""
    from spuriouslab.data.images import locate

    if cfg.data != "auto":
        return cfg.data
    return "fashion-mnist" if locate("fashion-mnist", cfg.data_root) else "digits"


def load_rgb(cfg: BackgroundFeaturesConfig, seed: int) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                  int]:
    """A seeded subset of the data set as uint8 RGB (N, H, W, 3): train images / labels, test images / labels."""
    from spuriouslab.data.images import load_images

    name = resolve_data(cfg)
    data = load_images(name, cfg.data_root)
    h, w, _ = data.shape
    for key, width in (("border", cfg.border), ("eval_border", cfg.eval_border)):
        if 2 * width >= min(h, w):
            raise ConfigError(f"{key}: got {width}; {name} images are {h}x{w}, so a border must be below {min(h, w) // 2}")
    rng = numpy_rng(seed, stream("background.subset"))
    tr = rng.permutation(len(data.x_train))[: cfg.n_train]
    te = np.sort(rng.permutation(len(data.x_test))[: cfg.n_test])
    rgb = lambda a: np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a  # noqa: E731
    return name, rgb(data.x_train[tr]), data.y_train[tr], rgb(data.x_test[te]), data.y_test[te], len(data.classes)


def check(cfg: BackgroundFeaturesConfig) -> None:
    load_rgb(cfg, cfg.seed)


def group_key(cfg: BackgroundFeaturesConfig, p: dict[str, Any]) -> Any:
    return (p["pipeline"], p["seed"])  # ResNets have BatchNorm: one model at a time


def estimate(cfg: BackgroundFeaturesConfig) -> Estimate:
    hw = 32 * 32 if cfg.data in ("cifar10", "folder") else 28 * 28
    act = hw * 16 * 6 * ((cfg.depth - 2) // 6) * 4  # activations kept for backward, per image (float32)
    peak = (cfg.n_train + cfg.n_test * (2 + len(cfg.other_colours))) * hw * 3 * 5 + cfg.batch_size * act * 2 + 50e6
    flops_img = 2 * 0.07e9 * hw / 1024 * (cfg.depth / 32)
    steps_imgs = cfg.epochs * cfg.n_train * (1 + (cfg.pgd_steps if cfg.adversarial else 0))
    flops = 3 * flops_img * steps_imgs + 3 * flops_img * cfg.vis_channels * cfg.vis_rounds * cfg.vis_steps
    return Estimate(peak, flops, f"ResNet-{cfg.depth}, {cfg.n_train} images x {cfg.epochs} epochs")


def _pgd_l2(model, x, y, eps: float, steps: int) -> torch.Tensor:
    """PGD in an L2 ball of radius ``eps`` around ``x`` (step 2 eps / steps), kept in [0, 1]."""
    if eps <= 0:
        return x
    delta = torch.zeros_like(x, requires_grad=True)
    step = 2.0 * eps / steps
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            g = grad.flatten(1)
            delta += step * (g / g.norm(dim=1, keepdim=True).clamp(min=1e-12)).view_as(x)
            norm = delta.flatten(1).norm(dim=1).clamp(min=1e-12)
            delta *= (eps / norm).clamp(max=1.0).view(-1, 1, 1, 1)
            delta.copy_((x + delta).clamp(0, 1) - x)
    return (x + delta).detach()


def _encode(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    return {"shape": list(a.shape), "dtype": str(a.dtype), "data": base64.b64encode(a.tobytes()).decode()}


def decode(d: dict) -> np.ndarray:
    """An array stored in a record (visualizations, Grad-CAM examples)."""
    return np.frombuffer(base64.b64decode(d["data"]), dtype=d["dtype"]).reshape(d["shape"])


def run_group(cfg: BackgroundFeaturesConfig, points: list[dict], ctx: RunContext) -> Iterator[dict]:
    t0 = time.perf_counter()
    (p,) = points
    seed, pipeline = p["seed"], p["pipeline"]
    dev = ctx.device
    name, x_tr, y_tr, x_te, y_te, n_classes = load_rgb(cfg, seed)
    colour = parse_colour(cfg.colour)
    torch.manual_seed(torch_seed(seed, stream("background.init")))
    model = ResNetCIFAR(3, n_classes, cfg.depth).to(dev)
    opt = make_optimizer("sgd", model.parameters(), cfg.lr, cfg.weight_decay, cfg.momentum)
    sched = torch.optim.lr_scheduler.StepLR(opt, cfg.lr_step, cfg.gamma)
    order = torch_generator(seed, stream("background.order"))
    noise_gen = torch_generator(seed, stream("background.adversarial"))
    n = len(x_tr)
    spe = math.ceil(n / cfg.batch_size)
    y_train = torch.from_numpy(y_tr).to(dev)
    x_test, y_test = to_float_chw(x_te, dev), torch.from_numpy(y_te)
    state: dict[str, Any] = {}
    history: dict[str, list] = {"epoch": [], "train_loss": [], "test_acc": []}
    key = "background-" + hashlib.sha1(json.dumps({"p": p, "cfg": cfg.model_dump(mode="json")}, sort_keys=True)
                                       .encode()).hexdigest()[:16]
    start = 0
    saved = ctx.checkpoints.load(key) if ctx.checkpoints is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        order.set_state(saved["order"])
        noise_gen.set_state(saved["noise"])
        history, start = saved["history"], saved["step"]

    def epoch_data(epoch: int) -> torch.Tensor:
        rng = numpy_rng(torch_seed(seed, stream("background.augment"), epoch) % 2**63, 0)
        imgs = pad_crop_flip(x_tr, cfg.border, colour if pipeline == "padded" else None, rng, cfg.crop, cfg.flip)
        return to_float_chw(imgs, dev)

    def step_loss(t: int) -> torch.Tensor:
        i = (t - 1) % spe
        epoch = (t - 1) // spe
        if i == 0 or "x" not in state:
            if t > 1 and i == 0:
                sched.step()
            state["x"] = epoch_data(epoch)
            state["perm"] = torch.randperm(n, generator=order).to(dev)
        idx = state["perm"][i * cfg.batch_size:(i + 1) * cfg.batch_size]
        xb, yb = state["x"][idx], y_train[idx]
        if cfg.adversarial:
            xb = (xb + cfg.noise * torch.randn(xb.shape, generator=noise_gen).to(dev)).clamp(0, 1)
            eps = cfg.eps * min(1.0, (epoch + 1) / cfg.eps_ramp) if cfg.eps_ramp else cfg.eps
            model.eval()
            xb = _pgd_l2(model, xb, yb, eps, cfg.pgd_steps)
            model.train()
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        state["last_loss"] = float(loss.detach())
        return loss

    def on_log(t: int) -> dict:
        loss = state.get("last_loss", math.nan) if t > 0 else math.nan
        history["epoch"].append(t // spe)
        history["train_loss"].append(loss)
        history["test_acc"].append(A.accuracy(model, x_test, y_test))
        model.train()
        if ctx.checkpoints is not None and 0 < t < cfg.epochs * spe:
            ctx.checkpoints.save(key, {"model": model.state_dict(), "opt": opt.state_dict(),
                                       "sched": sched.state_dict(), "order": order.get_state(),
                                       "noise": noise_gen.get_state(), "history": history, "step": t})
        return {"loss": torch.tensor([0.0 if t == 0 else loss])}

    model.train()
    status, error = "ok", ""
    try:
        train_loop(step_loss, opt, cfg.epochs * spe, cfg.log_every * spe, on_log,
                   desc=f"ResNet-{cfg.depth} {pipeline} seed {seed}", progress=ctx.progress, start=start)
    except DivergenceError:
        status, error = "diverged", f"training loss not finite or above {DIVERGENCE_BOUND:g}"
    train_seconds = time.perf_counter() - t0

    rec: dict[str, Any] = dict(p)
    rec.update(data=name, n_train=n, n_test=len(y_te), epochs=cfg.epochs, status=status, error=error,
               parameters=sum(q.numel() for q in model.parameters()),
               **{f"curve_{k}": v for k, v in history.items()})
    rec["train_loss"], rec["test_acc"] = history["train_loss"][-1], history["test_acc"][-1]
    if status == "ok":
        t1 = time.perf_counter()
        h, w = x_te.shape[1:3]
        region = torch.from_numpy(frame_mask(h, w, cfg.eval_border))
        colours = {"train_colour": colour, **{c: parse_colour(c) for c in cfg.other_colours}}
        framed = {k: to_float_chw(frame(x_te, c, cfg.eval_border), dev) for k, c in colours.items()}
        model.eval()
        rec.update(A.border_reliance(model, x_test, y_test, framed, region.to(dev), model.last_block,
                                     cfg.cam_images))
        _, cams = A.gradcam_border_fraction(model, framed["train_colour"][:8], region.to(dev), model.last_block)
        rec["cam_examples"] = _encode((cams.numpy() / max(float(cams.max()), 1e-12) * 255).astype(np.uint8))
        rec["cam_images"] = _encode(frame(x_te[:8], colour, cfg.eval_border))  # what the maps were computed on
        rec["seconds_measure"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        channels = list(range(min(cfg.vis_channels, model.last_block.conv2.out_channels)))
        vis = A.visualize_channels(model, model.last_block, (3, h, w), channels, cfg.vis_rounds, cfg.vis_steps,
                                   cfg.vis_lr, cfg.vis_reg, torch_seed(seed, stream("background.visualize")) % 2**63)
        before = A.channel_activation(model, model.last_block, torch.full((len(channels), 3, h, w), 0.5), channels)
        after = A.channel_activation(model, model.last_block, vis, channels)
        rec["vis_gain"] = float((after - before).mean())
        stats = [A.colour_stats(vis[i:i + 1], colour) for i in range(len(channels))]
        for k in ("hue", "redness", "near_border_colour"):
            rec[f"vis_{k}"] = float(np.mean([s[k] for s in stats]))
            rec[f"vis_{k}_per_channel"] = [s[k] for s in stats]
        rec["vis"] = _encode((vis.numpy() * 255).round().astype(np.uint8))
        rec["seconds_visualize"] = time.perf_counter() - t1
    rec["seconds_train"] = train_seconds
    rec["seconds"] = time.perf_counter() - t0
    if ctx.checkpoints is not None:
        ctx.checkpoints.discard(key)
    yield rec
