"""Spurious borders on images, spurious queries and pixel scaling.

Bombari & Mondelli's image protocol: each image gets a random border of width w (the spurious feature,
uniform integers 0..255 in the paper, drawn once per sample); the spurious query of a training image is its
border with the core zeroed (``query=zero``), or with another training sample's core (``query=swap``, the
theory's protocol).  The nominal alpha is border pixels / all pixels.
"""

from __future__ import annotations

import numpy as np

from spuriouslab.errors import ConfigError


def parse_content(content: str) -> tuple[str, np.ndarray | None]:
    """``uniform`` | ``gaussian`` | ``coloured`` | ``constant:V`` | ``constant:R,G,B`` (0..255)."""
    if content in ("uniform", "gaussian", "coloured"):  # coloured: spuriouslab.data.coloured (two colours, rho)
        return content, None
    if content.startswith("constant:"):
        try:
            vals = np.array([float(v) for v in content.split(":", 1)[1].split(",")])
        except ValueError:
            vals = np.array([])
        if vals.size in (1, 3) and ((vals >= 0) & (vals <= 255)).all():
            return "constant", vals
    raise ConfigError(
        f"border_content: got {content!r}; allowed: uniform, gaussian, coloured, constant:V or "
        "constant:R,G,B with values in 0..255"
    )


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
        assert value is not None, "constant content carries its values"
        colour = np.broadcast_to(value if value.size == c or value.size == 1 else value[:c], (c,))
        out = np.empty((n, H, W, c), dtype=np.uint8)
        out[:] = np.round(colour).astype(np.uint8)
    out[:, width : width + h, width : width + w, :] = images
    return out


def core_mask(h: int, w: int, width: int) -> np.ndarray:
    """Boolean (H + 2 width, W + 2 width) mask of the core (original image) pixels."""
    mask = np.zeros((h + 2 * width, w + 2 * width), dtype=bool)
    mask[width : width + h, width : width + w] = True
    return mask


def nominal_alpha(h: int, w: int, width: int) -> float:
    return 1.0 - (h * w) / ((h + 2 * width) * (w + 2 * width))


def spurious_queries(
    padded: np.ndarray, h: int, w: int, width: int, mode: str, rng: np.random.Generator | None = None
) -> np.ndarray:
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
        standard: np.ndarray = (x - ref.mean()) / max(ref.std(), 1e-12)
        return standard
    raise ConfigError(f"scaling: got {mode!r}; allowed: raw, unit, standard")


# ------------------------------------------------------------------------- solid borders (background features)
COLOURS = {
    "brick": (150, 50, 50),
    "green": (50, 150, 50),
    "blue": (50, 50, 150),
    "grey": (128, 128, 128),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "yellow": (200, 200, 50),
    "red": (200, 40, 40),
}


def parse_colour(text: str, key: str = "colour") -> tuple[int, int, int]:
    """A named colour (``brick`` = RGB 150,50,50, the paper's; green, blue, grey, black, white, yellow, red) or
    ``R,G,B`` with integers 0..255."""
    if isinstance(text, str) and text in COLOURS:
        return COLOURS[text]
    try:
        parts = [int(p) for p in str(text).split(",")]
    except ValueError:
        parts = []
    if len(parts) == 3 and all(0 <= p <= 255 for p in parts):
        return parts[0], parts[1], parts[2]
    raise ConfigError(f"{key}: got {text!r}; allowed: {', '.join(COLOURS)} or R,G,B with integers 0..255")


def pad_crop_flip(
    images: np.ndarray,
    width: int,
    colour: tuple[int, int, int] | None,
    rng: np.random.Generator,
    crop: bool = True,
    flip: bool = True,
) -> np.ndarray:
    """The paper's padded pipeline on uint8 (N, H, W, C): pad ``width`` pixels of ``colour`` (None: no padding),
    random-crop back to H x W (offsets uniform in 0..2 width, one per image), horizontal flip with probability
    1/2.  Draws, in order: the crop offsets (rows, then columns), then the flips."""
    n, h, w, c = images.shape
    if colour is not None and width > 0:
        out = np.empty((n, h + 2 * width, w + 2 * width, c), dtype=np.uint8)
        out[:] = np.asarray(colour[:c] if c == 3 else [int(round(np.mean(colour)))], dtype=np.uint8)
        out[:, width : width + h, width : width + w] = images
    else:
        out, width = images, 0
    if crop and width > 0:
        rows = rng.integers(0, 2 * width + 1, size=(n,))  # (n,), not n: the stubs read an Any n as no size
        cols = rng.integers(0, 2 * width + 1, size=(n,))
        idx_r = rows[:, None] + np.arange(h)[None, :]
        idx_c = cols[:, None] + np.arange(w)[None, :]
        out = out[np.arange(n)[:, None, None], idx_r[:, :, None], idx_c[:, None, :]]
    elif width > 0:
        out = out[:, width : width + h, width : width + w]
    if flip:
        mirror = rng.uniform(size=(n,)) < 0.5
        out = np.where(mirror[:, None, None, None], out[:, :, ::-1], out)
    return np.ascontiguousarray(out)


def frame(images: np.ndarray, colour: tuple[int, int, int], width: int) -> np.ndarray:
    """Paint the outer ``width`` pixels of uint8 (N, H, W, C) images with ``colour`` (same size)."""
    out = images.copy()
    c = images.shape[-1]
    value = np.asarray(colour[:c] if c == 3 else [int(round(np.mean(colour)))], dtype=np.uint8)
    out[:, :width] = value
    out[:, -width:] = value
    out[:, :, :width] = value
    out[:, :, -width:] = value
    return out


def frame_mask(h: int, w: int, width: int) -> np.ndarray:
    """Boolean (H, W): True on the outer ``width`` pixels."""
    return ~core_mask(h - 2 * width, w - 2 * width, width)
