"""Background-features run: images (the data layer) -> padded or control training pipeline
(:func:`spuriouslab.data.borders.pad_crop_flip`) -> a CIFAR ResNet or a ViT of the model registry trained by the one
trainer (:func:`spuriouslab.nets.train.fit`: SGD or AdamW, step schedule; optional Gaussian-noise + PGD-L2
adversarial training) -> the border numbers, Grad-CAM and feature visualizations of :mod:`spuriouslab.nets.analysis`
-> one record per (pipeline, seed).

The ViT's counterparts: Grad-CAM on its patch embedding (:func:`spuriouslab.nets.analysis.cam_layer` says why), the
same ``gradcam_border_*`` fractions; the feature visualization maximizes the token mean of the last block's MLP
units (after the GELU): the transformer's neurons, a privileged basis as the ResNet's post-ReLU channels are, where
the residual stream's coordinates are not (nothing elementwise acts on them but LayerNorm's gain)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from spuriouslab.data.borders import frame, frame_mask, pad_crop_flip, parse_colour
from spuriouslab.data.datasets import DATASETS
from spuriouslab.data.images import image_shape, load_bytes, to_float_chw
from spuriouslab.errors import ConfigError
from spuriouslab.experiments.background_features.config import BackgroundFeaturesConfig, model_name
from spuriouslab.experiments.base import FRAMEWORK_BYTES, Estimate, RunContext, checkpoint_key
from spuriouslab.nets import analysis
from spuriouslab.nets.models import MODELS, ResNetCIFAR, build_model
from spuriouslab.nets.train import Minibatches, TrainState, evaluating, fit, make_optimizer, seeded
from spuriouslab.nets.vit import ViT
from spuriouslab.records import encode_array
from spuriouslab.seeding import numpy_rng, stream_id, torch_generator, torch_seed


def resolve_data(cfg: BackgroundFeaturesConfig) -> str:
    """``auto``: Fashion-MNIST where the data layer finds it, else scikit-learn's digits."""
    from spuriouslab.data.images import locate

    if cfg.data != "auto":
        return cfg.data
    return "fashion-mnist" if locate("fashion-mnist", cfg.data_root) else "digits"


@dataclass
class BorderData:
    """A seeded subset of a data set as uint8 RGB images (N, H, W, 3) with labels, and the padding width and test
    frame width for it (the config's, or the data set's where the config leaves them unset)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    border: int
    eval_border: int


def borders(cfg: BackgroundFeaturesConfig, name: str) -> tuple[int, int]:
    """(padding, test frame) for data set ``name``: the config's values, else the registry's for that set."""
    pad, frame_width = DATASETS[name].padding
    return (
        cfg.border if cfg.border is not None else pad,
        cfg.eval_border if cfg.eval_border is not None else frame_width,
    )


def load_rgb(cfg: BackgroundFeaturesConfig, seed: int) -> BorderData:
    """The seed's training and test subsets (grey images repeated to 3 channels)."""
    from spuriouslab.data.images import load_images

    name = resolve_data(cfg)
    data = load_images(name, cfg.data_root)
    h, w, _ = data.shape
    border, eval_border = borders(cfg, name)
    for key, width in (("border", border), ("eval_border", eval_border)):
        if 2 * width >= min(h, w):
            raise ConfigError(
                f"{key}: got {width}; {name} images are {h}x{w}, so a border must be below {min(h, w) // 2}"
            )
    rng = numpy_rng(seed, stream_id("background.subset"))
    tr = rng.permutation(len(data.x_train))[: cfg.n_train]
    te = np.sort(rng.permutation(len(data.x_test))[: cfg.n_test])
    rgb = lambda a: np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a  # noqa: E731
    return BorderData(
        name,
        rgb(data.x_train[tr]),
        data.y_train[tr],
        rgb(data.x_test[te]),
        data.y_test[te],
        len(data.classes),
        border,
        eval_border,
    )


def resolve(cfg: BackgroundFeaturesConfig) -> dict[str, str]:
    """The data this run reads (``auto`` resolved) and its checksum: fixed at the run's first point."""
    from spuriouslab.data.images import identity

    return identity(resolve_data(cfg), cfg.data_root)


def check(cfg: BackgroundFeaturesConfig) -> None:
    data = load_rgb(cfg, cfg.seed)
    if cfg.model == "vit":
        h, w = data.x_train.shape[1:3]
        check_patch(cfg, h, w, data.name)


def check_patch(cfg: BackgroundFeaturesConfig, h: int, w: int, name: str) -> None:
    """A ViT's patch must divide the images (padding is cropped back: the model sees the data set's size)."""
    if h % cfg.vit_patch or w % cfg.vit_patch:
        ok = [p for p in range(1, min(h, w) + 1) if h % p == 0 and w % p == 0]
        raise ConfigError(
            f"vit_patch: got {cfg.vit_patch}; {name} images are {h}x{w}, so the patch must divide both "
            f"({', '.join(map(str, ok))})"
        )


def model_options(cfg: BackgroundFeaturesConfig) -> dict[str, Any]:
    """The registry options of the config's model."""
    if cfg.model == "vit":
        return {"patch": cfg.vit_patch, "dim": cfg.vit_dim, "depth": cfg.vit_depth, "heads": cfg.vit_heads}
    return {"depth": cfg.depth}


def group_key(cfg: BackgroundFeaturesConfig, p: dict[str, Any]) -> Any:
    return (p["pipeline"], p["seed"])  # ResNets have BatchNorm: one model at a time


def estimate(cfg: BackgroundFeaturesConfig) -> Estimate:
    name = resolve_data(cfg)
    h, w, _ = image_shape(name, cfg.data_root)
    if cfg.model == "vit":
        return _estimate_vit(cfg, name, h, w)
    hw = h * w
    act = hw * 16 * 6 * ((cfg.depth - 2) // 6) * 4  # activations kept for backward, per image (float32)
    peak = (
        (cfg.n_train + cfg.n_test * (2 + len(cfg.other_colours))) * hw * 3 * 5
        + cfg.batch_size * act * 2
        + FRAMEWORK_BYTES
    )
    peak += load_bytes(name)
    flops_img = 2 * 0.07e9 * hw / 1024 * (cfg.depth / 32)
    steps_imgs = cfg.epochs * cfg.n_train * (1 + (cfg.pgd_steps if cfg.adversarial else 0))
    flops = 3 * flops_img * steps_imgs + 3 * flops_img * cfg.vis_channels * cfg.vis_rounds * cfg.vis_steps
    return Estimate(peak, flops, f"ResNet-{cfg.depth}, {cfg.n_train} images x {cfg.epochs} epochs")


def _estimate_vit(cfg: BackgroundFeaturesConfig, name: str, h: int, w: int) -> Estimate:
    """The ViT's estimate: the data as above; parameters (with AdamW's two moments and the gradient) and the
    activations of one batch counted by the model registry on the meta device (forward and backward, the
    attention maps included); work ~ 2 x parameters x tokens a forward plus the attention products."""
    check_patch(cfg, h, w, name)
    n_classes = 10  # every data set of the registry but a folder; a folder's class count is not read here
    params, per_sample = MODELS["vit"].size((3, h, w), n_classes, **model_options(cfg))
    peak = (
        (cfg.n_train + cfg.n_test * (2 + len(cfg.other_colours))) * h * w * 3 * 5
        + cfg.batch_size * per_sample * 4 * 2
        + params * 4 * 4
        + FRAMEWORK_BYTES
        + load_bytes(name)
    )
    tokens = (h // cfg.vit_patch) * (w // cfg.vit_patch)
    flops_img = 2.0 * params * tokens + 4.0 * cfg.vit_depth * tokens**2 * cfg.vit_dim
    steps_imgs = cfg.epochs * cfg.n_train * (1 + (cfg.pgd_steps if cfg.adversarial else 0))
    flops = 3 * flops_img * steps_imgs + 3 * flops_img * cfg.vis_channels * cfg.vis_rounds * cfg.vis_steps
    return Estimate(peak, flops, f"{model_name(cfg)}, {cfg.n_train} images x {cfg.epochs} epochs")


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


def run_group(cfg: BackgroundFeaturesConfig, points: list[dict], ctx: RunContext) -> Iterator[dict]:
    t0 = time.perf_counter()
    (p,) = points
    seed, pipeline, dev = p["seed"], p["pipeline"], ctx.device
    data = load_rgb(cfg, seed)
    state = new_state(cfg, data, seed, dev)
    key = checkpoint_key("background-features", cfg, points)
    x_test = to_float_chw(data.x_test, dev)
    spe = math.ceil(len(data.x_train) / cfg.batch_size)
    fit(
        state,
        _step(cfg, state, data, seed, pipeline, dev),
        cfg.epochs * spe,
        log_every=cfg.log_every * spe,
        measure=lambda t: {
            "train_loss": [math.nan] if state.last_loss is None else state.last_loss.tolist(),
            "test_acc": [analysis.accuracy(state.model, x_test, torch.from_numpy(data.y_test))],
        },
        checkpoints=ctx.checkpoints,
        key=key,
        steps_per_epoch=spe,
        schedule="epoch",
        desc=f"{'ViT' if cfg.model == 'vit' else model_name(cfg)} {pipeline} seed {seed}",
        progress=ctx.progress,
    )
    train_seconds = time.perf_counter() - t0
    model = state.model
    rec: dict[str, Any] = dict(p)
    rec.update(
        data=data.name,
        n_train=len(data.x_train),
        n_test=len(data.y_test),
        epochs=cfg.epochs,
        border=data.border,
        eval_border=data.eval_border,
        parameters=sum(q.numel() for q in model.parameters()),
        **state.divergence(0),
    )
    rec["curve_epoch"] = [t // spe for t in state.history["step"]]
    for k in ("train_loss", "test_acc"):
        rec[f"curve_{k}"] = state.curve(k, 0)
        rec[k] = rec[f"curve_{k}"][-1]
    if rec["status"] == "ok":
        t1 = time.perf_counter()
        rec.update(border_numbers(cfg, model, data, x_test, dev))
        others = [rec[f"acc_{c}"] for c in cfg.other_colours]
        rec["acc_colour_gap"] = rec["acc_train_colour"] - float(np.mean(others)) if others else math.nan
        rec["seconds_measure"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        rec.update(visualization(cfg, model, data.x_test.shape[1:3], seed))
        rec["seconds_visualize"] = time.perf_counter() - t1
    rec["seconds_train"] = train_seconds
    rec["seconds"] = time.perf_counter() - t0
    yield rec
    ctx.discard(key)


def new_state(cfg: BackgroundFeaturesConfig, data: BorderData, seed: int, device: str) -> TrainState:
    """The config's model of the registry (CIFAR ResNet or ViT) initialised from the seed's stream, SGD with
    momentum or AdamW, the step schedule; generators: the minibatch order and the adversarial noise."""
    h, w = data.x_train.shape[1:3]
    model = seeded(
        lambda: build_model(cfg.model, (3, h, w), data.n_classes, **model_options(cfg)),
        torch_generator(seed, stream_id("background.init")),
    ).to(device)
    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay, cfg.momentum)
    sched = torch.optim.lr_scheduler.StepLR(opt, cfg.lr_step, cfg.gamma)
    return TrainState(
        model,
        opt,
        sched,
        [
            torch_generator(seed, stream_id("background.order")),
            torch_generator(seed, stream_id("background.adversarial")),
        ],
    )


def _step(
    cfg: BackgroundFeaturesConfig, state: TrainState, data: BorderData, seed: int, pipeline: str, device: str
) -> Callable[[int], torch.Tensor]:
    """Step t: the epoch's augmented images (padded with the training colour, or the control pipeline; drawn
    once an epoch from the (seed, epoch) stream), a minibatch in the epoch's order, optionally Gaussian noise and
    PGD-L2 (the official code's adversarial training), cross-entropy."""
    model, (order, noise) = state.model, state.generators
    n = len(data.x_train)
    batches = Minibatches(n, cfg.batch_size, [order], device)
    colour = parse_colour(cfg.colour) if pipeline == "padded" else None
    y_train = torch.from_numpy(data.y_train).to(device)
    epoch_images: dict[int, torch.Tensor] = {}

    def step(t: int) -> torch.Tensor:
        epoch = (t - 1) // batches.steps_per_epoch
        if epoch not in epoch_images:
            epoch_images.clear()
            rng = numpy_rng(torch_seed(seed, stream_id("background.augment"), epoch) % 2**63, 0)
            epoch_images[epoch] = to_float_chw(
                pad_crop_flip(data.x_train, data.border, colour, rng, cfg.crop, cfg.flip), device
            )
        idx = batches(t)[0]
        xb, yb = epoch_images[epoch][idx], y_train[idx]
        if cfg.adversarial:
            xb = (xb + cfg.noise * torch.randn(xb.shape, generator=noise).to(device)).clamp(0, 1)
            eps = cfg.eps * min(1.0, (epoch + 1) / cfg.eps_ramp) if cfg.eps_ramp else cfg.eps
            with evaluating(model):
                xb = _pgd_l2(model, xb, yb, eps, cfg.pgd_steps)
        return torch.nn.functional.cross_entropy(model(xb), yb)[None]

    return step


def border_numbers(
    cfg: BackgroundFeaturesConfig, model: torch.nn.Module, data: BorderData, x_test: torch.Tensor, device: str
) -> dict[str, Any]:
    """Accuracy and representation change under frames of each colour, Grad-CAM mass on the frame, and eight
    Grad-CAM examples (the maps and the framed images they were computed on).  Grad-CAM reads a ResNet's last
    block and a ViT's patch embedding (:func:`spuriouslab.nets.analysis.cam_layer`)."""
    h, w = data.x_test.shape[1:3]
    colour = parse_colour(cfg.colour)
    region = torch.from_numpy(frame_mask(h, w, data.eval_border)).to(device)
    colours = {"train_colour": colour, **{c: parse_colour(c) for c in cfg.other_colours}}
    framed = {k: to_float_chw(frame(data.x_test, c, data.eval_border), device) for k, c in colours.items()}
    layer = analysis.cam_layer(model)[0]
    with evaluating(model):
        out: dict[str, Any] = dict(
            analysis.border_reliance(
                model, x_test, torch.from_numpy(data.y_test), framed, region, layer, cfg.cam_images
            )
        )
        _, cams = analysis.gradcam_border_fraction(model, framed["train_colour"][:8], region, layer)
    out["cam_examples"] = encode_array((cams.numpy() / max(float(cams.max()), 1e-12) * 255).astype(np.uint8))
    out["cam_images"] = encode_array(frame(data.x_test[:8], colour, data.eval_border))
    return out


def visualization(
    cfg: BackgroundFeaturesConfig, model: torch.nn.Module, size: tuple[int, int], seed: int
) -> dict[str, Any]:
    """Activation maximization of the last block's channels (a ResNet's last convolution; a ViT's last-block MLP
    units, their mean over tokens), the activation it gains over a grey image, and the colours of what it finds
    (per channel and averaged)."""
    h, w = size
    colour = parse_colour(cfg.colour)
    vit = isinstance(model, ViT)
    layer: torch.nn.Module
    if isinstance(model, ViT):
        layer, width = model.feature_layer, model.feature_width
    else:
        assert isinstance(model, ResNetCIFAR)
        layer = model.last_block
        conv = model.last_block.get_submodule("conv2")
        assert isinstance(conv, torch.nn.Conv2d)
        width = conv.out_channels
    with evaluating(model):
        channels = list(range(min(cfg.vis_channels, width)))
        vis = analysis.visualize_channels(
            model,
            layer,
            (3, h, w),
            channels,
            cfg.vis_rounds,
            cfg.vis_steps,
            cfg.vis_lr,
            cfg.vis_reg,
            torch_seed(seed, stream_id("background.visualize")) % 2**63,
            tokens=vit,
        )
        before = analysis.channel_activation(
            model, layer, torch.full((len(channels), 3, h, w), 0.5), channels, tokens=vit
        )
        after = analysis.channel_activation(model, layer, vis, channels, tokens=vit)
    out: dict[str, Any] = {"vis_gain": float((after - before).mean())}
    stats = [analysis.colour_stats(vis[i : i + 1], colour) for i in range(len(channels))]
    for k in ("hue", "redness", "near_border_colour", "border_axis"):
        out[f"vis_{k}"] = float(np.mean([s[k] for s in stats]))
        out[f"vis_{k}_per_channel"] = [s[k] for s in stats]
    # a channel is read by the next layer with either sign, so a channel maximized by the border colour's
    # complement carries the border colour as much as one maximized by the colour itself: the unsigned measure
    out["vis_border_axis_abs"] = float(np.mean([abs(s["border_axis"]) for s in stats]))
    out["vis"] = encode_array((vis.numpy() * 255).round().astype(np.uint8))
    return out
