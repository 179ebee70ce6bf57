"""Tasks for representation distillation (Zhang et al., ICML 2024, Section 3), at laptop size.

Each task gives, per seed, labelled ID train / test inputs and OOD test sets (the ID test images or samples with
only their background replaced, same labels), plus what the teacher trains on:

* ``synthetic``: the contamination generator in multi-class form.  Latent ``z = [z_core, z_bg]`` embedded in R^d by
  a seeded map ``T`` with orthonormal rows; class ``c`` has a unit prototype ``p_c`` in the core subspace and
  ``z_core = p_y + noise * N(0, I / d_core)``; the background is ``U[0,1]^d_bg`` (label-independent).  OOD sets
  replace the background: ``flip`` (-U), ``shift+D`` (U + D) and ``scale`` (factor * U).  The teacher sees
  ``P_core x`` only (its embedding is exactly invariant to any background), so it trains on the ID train set.
* ``digits-background`` / ``fashion-background``: the image (grey, 0..1) laid on an RGB canvas as
  ``canvas * (1 - a) + a`` (``a`` = pixel intensity, so the object stays visible on any background).  Training
  backgrounds come from one narrow family (dark grey-blue, weak noise); the teacher trains on the same images with
  widely randomised backgrounds (any colour, any noise level, stripes), so its features ignore the background; OOD
  test sets use other backgrounds (red, green, bright noise, stripes).

Images are float32 ``(N, 3, H, W)`` in [0, 1]; synthetic inputs are float32 ``(N, d)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from spuriouslab.data.contamination import shift_background
from spuriouslab.seeding import numpy_rng, stream_id, torch_generator

SYNTHETIC_OOD = ["flip", "shift+1", "shift+2", "shift+4", "scale3"]
IMAGE_OOD = ["red", "green", "noise", "stripes"]


@dataclass
class DistillTask:
    """One seed's data: inputs ``x_*`` and labels ``y_*`` (int64 classes); ``ood`` maps a name to inputs whose
    labels are ``y_test``.  ``x_teacher`` / ``y_teacher`` are what the teacher trains on."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    ood: dict[str, torch.Tensor]
    x_teacher: torch.Tensor
    y_teacher: torch.Tensor
    n_classes: int
    basis: torch.Tensor | None = None  # synthetic: T (d_core + d_bg, d), orthonormal rows
    d_core: int = 0
    notes: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def core_projection(self) -> torch.Tensor:
        """``P_core = T_core^T T_core`` (d, d): x -> its component in the core subspace (synthetic only)."""
        assert self.basis is not None, "the core projection is known for synthetic tasks only"
        core = self.basis[: self.d_core]
        return core.T @ core


def _ood_background(bg: torch.Tensor, name: str) -> torch.Tensor:
    """An OOD set's name (``flip``, ``shift+D``, ``scaleF``) as the contamination task's background shift."""
    if name.startswith("shift+"):
        return shift_background(bg, "shift", float(name.split("+", 1)[1]), 1.0)
    if name.startswith("scale"):
        return shift_background(bg, "scale", 0.0, float(name[len("scale") :]))
    return shift_background(bg, name, 0.0, 1.0)


def synthetic_task(
    seed: int,
    d: int,
    d_core: int,
    d_bg: int,
    n_classes: int,
    n: int,
    n_test: int,
    noise: float = 0.5,
    ood: list[str] | None = None,
) -> DistillTask:
    k = d_core + d_bg
    q, _ = torch.linalg.qr(
        torch.randn(d, k, generator=torch_generator(seed, stream_id("distillation.map")), dtype=torch.float64)
    )
    T = q.T.to(torch.float32)
    protos = torch.randn(n_classes, d_core, generator=torch_generator(seed, stream_id("distillation.prototypes")))
    protos = protos / protos.norm(dim=1, keepdim=True)
    gen = torch_generator(seed, stream_id("distillation.data"))

    def sample(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(m) % n_classes
        core = protos[y] + noise * torch.randn(m, d_core, generator=gen) / math.sqrt(d_core)
        bg = torch.rand(m, d_bg, generator=gen)
        return torch.cat([core, bg], dim=1), y

    z_tr, y_tr = sample(n)
    z_te, y_te = sample(n_test)
    oods = {}
    for name in ood or SYNTHETIC_OOD:
        z = z_te.clone()
        z[:, d_core:] = _ood_background(z_te[:, d_core:], name)
        oods[name] = z @ T
    x_tr = z_tr @ T
    return DistillTask(x_tr, y_tr, z_te @ T, y_te, oods, x_tr, y_tr, n_classes, T, d_core)


# -------------------------------------------------------------------------------------------- images
def _canvas(kind: str, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Backgrounds (n, 3, size, size) in [0, 1] of one family."""
    if kind == "train":  # one narrow family: dark grey-blue with weak noise
        lo, hi = np.array([0.15, 0.15, 0.25])[:, None, None], np.array([0.25, 0.25, 0.35])[:, None, None]
        colour = rng.uniform(lo, hi, size=(n, 3, 1, 1))
        return colour + rng.normal(0, 0.03, size=(n, 3, size, size))
    if kind == "wide":  # the teacher's: any colour, any noise level, stripes half of the time
        colour = rng.uniform(0, 1, size=(n, 3, 1, 1))
        out = colour + rng.uniform(0, 0.3, size=(n, 1, 1, 1)) * rng.normal(0, 1, size=(n, 3, size, size))
        stripes = _stripes(n, size, rng)[:, None] * rng.uniform(0, 1, size=(n, 3, 1, 1))
        use = rng.uniform(size=(n, 1, 1, 1)) < 0.5
        return np.where(use, 0.5 * out + 0.5 * stripes, out)
    if kind == "red":
        return np.broadcast_to(np.array([0.8, 0.1, 0.1])[None, :, None, None], (n, 3, size, size)).copy()
    if kind == "green":
        return np.broadcast_to(np.array([0.1, 0.7, 0.2])[None, :, None, None], (n, 3, size, size)).copy()
    if kind == "noise":
        return rng.uniform(0, 1, size=(n, 3, size, size))
    if kind == "stripes":
        striped: np.ndarray = _stripes(n, size, rng)[:, None] * np.array([0.9, 0.9, 0.2])[None, :, None, None]
        return striped
    raise ValueError(f"unknown background {kind!r}")


def _stripes(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    period = rng.integers(2, 5, size=(n, 1, 1))
    phase = rng.integers(0, 4, size=(n, 1, 1))
    horizontal = rng.uniform(size=(n, 1, 1)) < 0.5
    i = np.arange(size)
    rows = ((i[None, :, None] + phase) // period) % 2
    cols = ((i[None, None, :] + phase) // period) % 2
    return np.where(horizontal, rows, cols).astype(np.float64).reshape(n, size, size)


def compose(images: np.ndarray, canvas: np.ndarray) -> torch.Tensor:
    """Lay grey images (n, h, w) in [0, 1] at the centre of RGB canvases (n, 3, H, W): ``c (1 - a) + a``."""
    n, h, w = images.shape
    H = canvas.shape[-1]
    top = (H - h) // 2
    out = np.clip(canvas, 0, 1).copy()
    a = images[:, None]
    region = out[:, :, top : top + h, top : top + w]
    out[:, :, top : top + h, top : top + w] = region * (1 - a) + a
    return torch.from_numpy(out.astype(np.float32))


def image_task(
    images_train: np.ndarray,
    labels_train: np.ndarray,
    images_test: np.ndarray,
    labels_test: np.ndarray,
    n_classes: int,
    seed: int,
    n: int,
    n_test: int,
    canvas: int,
    ood: list[str] | None = None,
) -> DistillTask:
    """Background-canvas task from grey uint8 images (N, h, w): a seeded choice of n train / n_test test images."""
    rng = numpy_rng(seed, stream_id("distillation.data"))
    tr = rng.permutation(len(images_train))[:n]
    te = rng.permutation(len(images_test))[:n_test]
    x_tr, x_te = images_train[tr] / 255.0, images_test[te] / 255.0
    train = compose(x_tr, _canvas("train", len(tr), canvas, rng))
    test = compose(x_te, _canvas("train", len(te), canvas, rng))
    oods = {name: compose(x_te, _canvas(name, len(te), canvas, rng)) for name in (ood or IMAGE_OOD)}
    t_rng = numpy_rng(seed, stream_id("distillation.teacher"))
    teacher = compose(x_tr, _canvas("wide", len(tr), canvas, t_rng))
    y_tr = torch.from_numpy(labels_train[tr].astype(np.int64))
    return DistillTask(
        train, y_tr, test, torch.from_numpy(labels_test[te].astype(np.int64)), oods, teacher, y_tr, n_classes
    )
