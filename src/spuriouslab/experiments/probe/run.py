"""Probe run: the user's classifier (an import string, an optional checkpoint) on a data set of the data layer ->
the border numbers of :mod:`spuriouslab.nets.analysis` and the spurious-border memorization query (Bombari &
Mondelli: a training image's border with its core zeroed recalls its label) -> one record."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from spuriouslab.data.borders import frame, frame_mask, parse_colour, scale_pixels
from spuriouslab.errors import ConfigError, describe
from spuriouslab.experiments.base import RunContext
from spuriouslab.experiments.probe.config import ProbeConfig
from spuriouslab.nets import analysis
from spuriouslab.nets.loading import import_object, load_state
from spuriouslab.seeding import numpy_rng, stream_id


def load_model(cfg: ProbeConfig, device: str = "cpu") -> torch.nn.Module:
    spec = cfg.model
    obj = import_object(spec, "model")
    try:
        model = obj() if callable(obj) and not isinstance(obj, torch.nn.Module) else obj
    except Exception as exc:  # noqa: BLE001 - anything the user's factory raises
        raise ConfigError(f"model: {spec!r} failed ({describe(exc)})") from None
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model: {spec!r} gave {type(model).__name__}, not a torch.nn.Module")
    if cfg.checkpoint:
        load_state(model, cfg.checkpoint, "checkpoint", spec)
    return model.to(device).eval()


def layer_of(cfg: ProbeConfig, model: torch.nn.Module) -> torch.nn.Module:
    if cfg.layer:
        try:
            return model.get_submodule(cfg.layer)
        except AttributeError:
            raise ConfigError(f"layer: {cfg.layer!r} is not a module of {cfg.model}") from None
    try:
        return analysis.last_conv(model)
    except ValueError as exc:
        raise ConfigError(f"model: {exc}; give layer=NAME") from None


def data(cfg: ProbeConfig) -> dict[str, Any]:
    from spuriouslab.data.images import load_images

    d = load_images(cfg.data, cfg.data_root)
    h, w, _ = d.shape
    if 2 * cfg.eval_border >= min(h, w):
        raise ConfigError(f"eval_border: got {cfg.eval_border}; {cfg.data} images are {h}x{w}")
    rng = numpy_rng(0, stream_id("background.subset"))
    te = np.sort(rng.permutation(len(d.x_test))[: cfg.n])
    tr = np.sort(rng.permutation(len(d.x_train))[: cfg.n])
    rgb = (lambda a: np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a) if cfg.rgb else (lambda a: a)
    return {
        "x_test": rgb(d.x_test[te]),
        "y_test": d.y_test[te],
        "x_train": rgb(d.x_train[tr]),
        "y_train": d.y_train[tr],
        "reference": rgb(d.x_train[tr]),
    }


def tensor(cfg: ProbeConfig, images: np.ndarray, reference: np.ndarray, device: str) -> torch.Tensor:
    x = scale_pixels(images, cfg.scaling, reference)
    return torch.from_numpy(x).permute(0, 3, 1, 2).float().to(device)


def resolve(cfg: ProbeConfig) -> dict[str, str]:
    from spuriouslab.data.images import identity

    return identity(cfg.data, cfg.data_root)


def check(cfg: ProbeConfig) -> None:
    model = load_model(cfg)
    layer_of(cfg, model)
    d = data(cfg)
    x = tensor(cfg, d["x_test"][:64], d["reference"], "cpu")
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(
            f"model: {cfg.model} fails on {cfg.data} images of shape {tuple(x.shape)} ({describe(exc)})"
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ConfigError(f"model: {cfg.model} must return (batch, classes) logits")
    finite_logits(cfg, out)
    try:
        analysis.last_linear(model)
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from None


def finite_logits(cfg: ProbeConfig, out: torch.Tensor) -> None:
    """Numbers measured from NaN or infinite logits would be garbage (an argmax of NaN is class 0): refused."""
    bad = int((~torch.isfinite(out)).any(dim=1).sum())
    if bad:
        raise ConfigError(
            f"model: {cfg.model} gives non-finite logits (NaN or inf) on {bad} of {len(out)} "
            f"{cfg.data} test images; nothing measured from them would mean anything"
        )


def run_group(cfg: ProbeConfig, points: list[dict], ctx: RunContext) -> Iterator[dict]:
    t0 = time.perf_counter()
    dev = ctx.device
    model = load_model(cfg, dev)
    layer = layer_of(cfg, model)
    d = data(cfg)
    ref = d["reference"]
    x = tensor(cfg, d["x_test"], ref, dev)
    y = torch.from_numpy(d["y_test"])
    h, w = x.shape[-2:]
    region = torch.from_numpy(frame_mask(h, w, cfg.eval_border)).to(dev)
    colours = {"train_colour": parse_colour(cfg.colour), **{c: parse_colour(c) for c in cfg.other_colours}}
    framed = {k: tensor(cfg, frame(d["x_test"], c, cfg.eval_border), ref, dev) for k, c in colours.items()}
    with torch.no_grad():
        finite_logits(cfg, torch.cat([model(x[i : i + 256]) for i in range(0, len(x), 256)]))
    rec: dict[str, Any] = dict(points[0])
    rec.update(analysis.border_reliance(model, x, y, framed, region, layer, cfg.cam_images))
    # spurious-border memorization: each training image's frame with its core zeroed, against its label
    queries = d["x_train"].copy()
    queries[:, cfg.eval_border : h - cfg.eval_border, cfg.eval_border : w - cfg.eval_border] = 0
    rec["spurious_acc"] = analysis.accuracy(model, tensor(cfg, queries, ref, dev), torch.from_numpy(d["y_train"]))
    rec["train_acc"] = analysis.accuracy(model, tensor(cfg, d["x_train"], ref, dev), torch.from_numpy(d["y_train"]))
    rec["chance"] = 1.0 / max(2, int(max(d["y_test"].max(), d["y_train"].max())) + 1)
    rec.update(model=cfg.model, data=cfg.data, n=len(y), status="ok", error="", seconds=time.perf_counter() - t0)
    yield rec
