"""Spurious borders on images, spurious queries, pixel scaling, and the image memorization split.

Bombari & Mondelli's image protocol: each image gets a random border of width w (the spurious feature,
uniform integers 0..255 in the paper, drawn once per sample); the spurious query of a training image is its
border with the core zeroed (``query=zero``), or with another training sample's core (``query=swap``, the
theory's protocol).  The nominal alpha is border pixels / all pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spuriouslab.data.images import ImageData
from spuriouslab.errors import ConfigError


def parse_content(content: str) -> tuple[str, np.ndarray | None]:
    """``uniform`` | ``gaussian`` | ``constant:V`` | ``constant:R,G,B`` (0..255)."""
    if content in ("uniform", "gaussian"):
        return content, None
    if content.startswith("constant:"):
        try:
            vals = np.array([float(v) for v in content.split(":", 1)[1].split(",")])
        except ValueError:
            vals = np.array([])
        if vals.size in (1, 3) and ((vals >= 0) & (vals <= 255)).all():
            return "constant", vals
    raise ConfigError(f"border_content: got {content!r}; allowed: uniform, gaussian, constant:V or "
                      "constant:R,G,B with values in 0..255")


def add_border(images: np.ndarray, width: int, content: str, rng: np.random.Generator) -> np.ndarray:
    """Pad (N, H, W, C) uint8 images with a border of ``width``; one border drawn per sample."""
    n, h, w, c = images.shape
    H, W = h + 2 * width, w + 2 * width
    kind, value = parse_content(content)
    if kind == "uniform":
        out = rng.integers(0, 256, size=(n, H, W, c), dtype=np.uint8)
    elif kind == "gaussian":
        out = np.clip(np.round(rng.normal(127.5, 64.0, size=(n, H, W, c))), 0, 255).astype(np.uint8)
    else:
        colour = np.broadcast_to(value if value.size == c or value.size == 1 else value[:c], (c,))
        out = np.empty((n, H, W, c), dtype=np.uint8)
        out[:] = np.round(colour).astype(np.uint8)
    out[:, width: width + h, width: width + w, :] = images
    return out


def core_mask(h: int, w: int, width: int) -> np.ndarray:
    """Boolean (H + 2 width, W + 2 width) mask of the core (original image) pixels."""
    mask = np.zeros((h + 2 * width, w + 2 * width), dtype=bool)
    mask[width: width + h, width: width + w] = True
    return mask


def nominal_alpha(h: int, w: int, width: int) -> float:
    return 1.0 - (h * w) / ((h + 2 * width) * (w + 2 * width))


def spurious_queries(padded: np.ndarray, h: int, w: int, width: int, mode: str,
                     rng: np.random.Generator | None = None) -> np.ndarray:
    """Queries keeping each image's border: core zeroed (``zero``) or another sample's core (``swap``)."""
    q = padded.copy()
    core = (slice(None), slice(width, width + h), slice(width, width + w), slice(None))
    if mode == "zero":
        q[core] = 0
        return q
    if mode != "swap":
        raise ConfigError(f"query: got {mode!r}; allowed: zero, swap")
    n = len(padded)
    if n < 2:
        raise ConfigError("query=swap needs at least 2 training samples")
    perm = rng.permutation(n) if rng is not None else np.roll(np.arange(n), 1)
    fixed = np.flatnonzero(perm == np.arange(n))
    if len(fixed):  # no sample may keep its own core
        perm[fixed] = np.roll(perm[fixed], 1) if len(fixed) > 1 else perm[(fixed + 1) % n]
        if (perm == np.arange(n)).any():
            perm = np.roll(np.arange(n), 1)
    q[core] = padded[perm][core]
    return q


def scale_pixels(x: np.ndarray, mode: str, reference: np.ndarray) -> np.ndarray:
    """``raw`` (0..255, the paper's), ``unit`` (/255), ``standard`` (global mean/std of the training set)."""
    x = x.astype(np.float64)
    if mode == "raw":
        return x
    if mode == "unit":
        return x / 255.0
    if mode == "standard":
        ref = reference.astype(np.float64)
        return (x - ref.mean()) / max(ref.std(), 1e-12)
    raise ConfigError(f"scaling: got {mode!r}; allowed: raw, unit, standard")


@dataclass
class ImageSplit:
    Z: np.ndarray
    g: np.ndarray
    Z_test: np.ndarray
    g_test: np.ndarray
    Z_query: np.ndarray
    Z_test_query: np.ndarray
    d_x: int
    d_y: int

    @property
    def alpha(self) -> float:
        return self.d_y / (self.d_x + self.d_y)


def binary_image_split(data: ImageData, classes: tuple[int, int], seed: int, n_train: int, n_test: int,
                       width: int, content: str, query: str, scaling: str) -> ImageSplit:
    """Classes ``(a, b)`` -> labels -1 / +1; a seeded, nested choice of N training and n_test test images."""
    a, b = classes
    for c in classes:
        if not 0 <= c < len(data.classes):
            raise ConfigError(f"classes: got {list(classes)}; {data.name} has classes 0..{len(data.classes) - 1}")
    tr = np.flatnonzero(np.isin(data.y_train, classes))
    te = np.flatnonzero(np.isin(data.y_test, classes))
    if n_train > len(tr):
        raise ConfigError(f"n_train: got {n_train}; {data.name} classes {a} and {b} have {len(tr)} training images")
    rng = np.random.default_rng([seed, 100])
    tr = tr[rng.permutation(len(tr))[:n_train]]
    te = te[np.random.default_rng([seed, 101]).permutation(len(te))[: min(n_test, len(te))]]
    h, w, _ = data.shape
    x_tr = add_border(data.x_train[tr], width, content, np.random.default_rng([seed, 102]))
    x_te = add_border(data.x_test[te], width, content, np.random.default_rng([seed, 103]))
    q_tr = spurious_queries(x_tr, h, w, width, query, np.random.default_rng([seed, 104]))
    q_te = spurious_queries(x_te, h, w, width, query, np.random.default_rng([seed, 105]))

    def flat(x: np.ndarray) -> np.ndarray:
        return scale_pixels(x, scaling, x_tr).reshape(len(x), -1)

    d = x_tr[0].size
    d_x = h * w * data.shape[2]
    label = lambda y: np.where(y == b, 1.0, -1.0)  # noqa: E731
    return ImageSplit(flat(x_tr), label(data.y_train[tr]), flat(x_te), label(data.y_test[te]), flat(q_tr),
                      flat(q_te), d_x, d - d_x)
