"""Shifted renditions of ID test images: small, numpy/scipy-only analogues of the OOD benchmarks.

A distilled student is probed on out-of-distribution *renditions* of its own ID test images, so that the ID and the
OOD sets hold the same objects and differ only in how they are drawn.  Each rendition is one entry of
:data:`RENDITIONS`:

=============  ===============================  ======================================================  =======
name           analogue                         what it does                                             graded
=============  ===============================  ======================================================  =======
``sketch``     ImageNet-Sketch                  dark Sobel edges of the luminance on white, greyscale   no
``style``      ImageNet-R                       channels rotated (R, G, B) <- (B, R, G), contrast x1.5  no
                                                about 0.5, posterized to 4 levels
``noise``      ImageNet-C ``gaussian_noise``    additive Gaussian noise, sigma :data:`NOISE_SIGMAS`     yes
``blur``       ImageNet-C ``gaussian_blur``     Gaussian blur over H and W, sigma :data:`BLUR_SIGMAS`    yes
                                                pixels at 32 x 32, scaled with ``min(H, W) / 32``
``contrast``   ImageNet-C ``contrast``          pixels pulled toward the image's mean, factor            yes
                                                :data:`CONTRAST_FACTORS`
``frame``      background shift                 outer ``max(1, min(H, W) // 8)`` pixels replaced by a   no
                                                colour drawn per image (uniform in [0, 1]^C)
=============  ===============================  ======================================================  =======

Images are float ``(N, C, H, W)`` in [0, 1], channels first as torch has them (``C = 3``; ``C = 1`` works too:
the greyscale of one channel is itself and its rotation is the identity); every rendition returns the same shape
and dtype, clipped to [0, 1], computed in the input's dtype.  The random ones (``noise``, ``frame``) draw from the
``numpy.random.Generator`` passed in, and nothing else does; the graded ones read a ``severity`` in 1..5 (3 by
default, ImageNet-C's convention), which the others ignore.  The severities of ``blur`` and ``contrast`` are
CIFAR-10-C's (Hendrycks & Dietterich, ICLR 2019: the 32 x 32 version); those of ``noise`` run from CIFAR-10-C's
lightest (0.04) to ImageNet-C's severity 4 (0.26), so that the worst is plainly visible at 32 x 32.

A spec names which renditions to compute: ``sketch``, ``noise:5``, ``blur:2``, ``all`` (every entry, graded ones at
severity 3) or ``all:S``, comma separated or as a list; :func:`parse_renditions` turns it into ``(name, severity)``
pairs and :func:`rendition_names` into the names records carry (``noise:3``, ``sketch``).

>>> x = np.full((2, 3, 16, 16), 0.5, dtype=np.float32)
>>> out = render("noise", x, np.random.default_rng(0), severity=2)
>>> out.shape, out.dtype
((2, 3, 16, 16), dtype('float32'))
>>> parse_renditions("sketch, noise:5")
[('sketch', 3), ('noise', 5)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spuriouslab.errors import ConfigError

SEVERITIES = (1, 2, 3, 4, 5)
DEFAULT_SEVERITY = 3
NOISE_SIGMAS = (0.04, 0.08, 0.12, 0.18, 0.26)  # standard deviation of the added noise, pixels in [0, 1]
BLUR_SIGMAS = (0.4, 0.6, 0.7, 0.8, 1.0)  # CIFAR-10-C's, in pixels of a 32 x 32 image (scaled to min(H, W) / 32)
CONTRAST_FACTORS = (0.75, 0.5, 0.4, 0.3, 0.15)  # CIFAR-10-C's: x -> mean + factor (x - mean)
STYLE_CHANNELS = (2, 0, 1)  # output channel c is input channel STYLE_CHANNELS[c]: (R, G, B) <- (B, R, G)
STYLE_CONTRAST = 1.5  # x -> 0.5 + 1.5 (x - 0.5), before posterizing
STYLE_LEVELS = 4  # posterized to 0, 1/3, 2/3, 1
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B in the greyscale of ``sketch``

Render = Callable[[np.ndarray, "np.random.Generator | None", int], np.ndarray]


@dataclass(frozen=True)
class Rendition:
    """One shifted rendition.

    Attributes
    ----------
    render
        ``render(images, rng, severity) -> images``: float ``(N, C, H, W)`` in [0, 1] to the same shape and dtype
        (not yet clipped: :func:`render` clips); ``rng`` is only read by the random ones, ``severity`` (1..5)
        only by the graded ones.
    description
        What it does, in one line.
    analogue
        The benchmark it stands in for.
    graded
        Whether it has severities 1..5.
    """

    render: Render
    description: str
    analogue: str
    graded: bool


def _grey(x: np.ndarray) -> np.ndarray:
    """Luminance ``(N, H, W)``: BT.601 weights for 3 channels, the channel mean otherwise."""
    if x.shape[1] == 3:
        w = np.asarray(LUMA, dtype=x.dtype)
        grey: np.ndarray = np.einsum("nchw,c->nhw", x, w)
        return grey
    return np.asarray(x.mean(axis=1))


def sobel_magnitude(grey: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of each image of ``(N, H, W)``, over H and W only.

    The same as ``np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1))`` on each 2-D image ``g`` (reflected at the
    border), computed for the whole batch at once: ``ndimage.sobel`` on the 3-D batch would also smooth across
    images.
    """

    def derivative(axis: int) -> np.ndarray:
        d = ndimage.correlate1d(grey, [-1.0, 0.0, 1.0], axis=axis, mode="reflect")
        other = 2 if axis == 1 else 1
        out: np.ndarray = ndimage.correlate1d(d, [1.0, 2.0, 1.0], axis=other, mode="reflect")
        return out

    return np.asarray(np.hypot(derivative(1), derivative(2)))


def _sketch(x: np.ndarray, rng: np.random.Generator | None, severity: int) -> np.ndarray:
    edges = sobel_magnitude(_grey(x))
    peak = edges.max(axis=(1, 2), keepdims=True)
    edges = np.divide(edges, peak, out=np.zeros_like(edges), where=peak > 0)  # a flat image: no edge, all white
    return np.repeat((1.0 - edges)[:, None], x.shape[1], axis=1)


def _style(x: np.ndarray, rng: np.random.Generator | None, severity: int) -> np.ndarray:
    c = x.shape[1]
    out = x[:, list(STYLE_CHANNELS)] if c == 3 else x
    out = np.clip(0.5 + STYLE_CONTRAST * (out - 0.5), 0.0, 1.0)
    return np.asarray(np.round(out * (STYLE_LEVELS - 1)) / (STYLE_LEVELS - 1))


def _noise(x: np.ndarray, rng: np.random.Generator | None, severity: int) -> np.ndarray:
    rng = _need_rng("noise", rng)
    sigma = NOISE_SIGMAS[severity - 1]
    return x + sigma * rng.standard_normal(size=x.shape, dtype=x.dtype)


def blur_sigma(severity: int, h: int, w: int) -> float:
    """Blur's standard deviation in pixels: :data:`BLUR_SIGMAS` at ``severity``, scaled to ``min(h, w) / 32``.

    >>> blur_sigma(5, 64, 64)
    2.0
    """
    return BLUR_SIGMAS[severity - 1] * min(h, w) / 32


def _blur(x: np.ndarray, rng: np.random.Generator | None, severity: int) -> np.ndarray:
    s = blur_sigma(severity, x.shape[2], x.shape[3])
    out: np.ndarray = ndimage.gaussian_filter(x, sigma=(0.0, 0.0, s, s), mode="reflect")
    return out


def _contrast(x: np.ndarray, rng: np.random.Generator | None, severity: int) -> np.ndarray:
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return np.asarray(mean + CONTRAST_FACTORS[severity - 1] * (x - mean))


def frame_width(h: int, w: int) -> int:
    """Width of the ``frame`` rendition's frame: ``max(1, min(h, w) // 8)`` (4 pixels at 32 x 32).

    >>> frame_width(32, 32), frame_width(5, 5)
    (4, 1)
    """
    return max(1, min(h, w) // 8)


def _frame(x: np.ndarray, rng: np.random.Generator | None, severity: int) -> np.ndarray:
    rng = _need_rng("frame", rng)
    n, c, h, w = x.shape
    k = frame_width(h, w)
    colour = rng.uniform(0.0, 1.0, size=(n, c)).astype(x.dtype)[:, :, None, None]
    out = x.copy()
    out[:, :, :k] = colour
    out[:, :, -k:] = colour
    out[:, :, :, :k] = colour
    out[:, :, :, -k:] = colour
    return out


def _need_rng(name: str, rng: np.random.Generator | None) -> np.random.Generator:
    if rng is None:
        raise ConfigError(f"rendition {name} draws random numbers: pass a numpy.random.Generator")
    return rng


RENDITIONS: dict[str, Rendition] = {
    "sketch": Rendition(
        _sketch,
        "greyscale Sobel edge magnitude, normalised per image to its maximum, dark lines on white (1 - edges)",
        "ImageNet-Sketch",
        False,
    ),
    "style": Rendition(
        _style,
        "colour channels rotated (R, G, B) <- (B, R, G), contrast x1.5 about 0.5, posterized to 4 levels",
        "ImageNet-R",
        False,
    ),
    "noise": Rendition(
        _noise, f"additive Gaussian noise, sigma {', '.join(map(str, NOISE_SIGMAS))}", "ImageNet-C gaussian_noise", True
    ),
    "blur": Rendition(
        _blur,
        f"Gaussian blur over H and W, sigma {', '.join(map(str, BLUR_SIGMAS))} pixels at 32 x 32 (x min(H, W) / 32)",
        "ImageNet-C gaussian_blur",
        True,
    ),
    "contrast": Rendition(
        _contrast,
        f"contrast toward the image's mean, factor {', '.join(map(str, CONTRAST_FACTORS))}",
        "ImageNet-C contrast",
        True,
    ),
    "frame": Rendition(
        _frame,
        "outer max(1, min(H, W) // 8) pixels replaced by a colour drawn per image, uniform in [0, 1]^C",
        "background shift",
        False,
    ),
}


def _allowed() -> str:
    names = [f"{n}[:1..5]" if r.graded else n for n, r in RENDITIONS.items()]
    graded = ", ".join(n for n, r in RENDITIONS.items() if r.graded)
    return (
        f"allowed: {', '.join(names)}, all[:1..5] (a severity 1..5 only for the graded ones, {graded}; "
        f"{DEFAULT_SEVERITY} by default)"
    )


def _check_images(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim != 4 or not np.issubdtype(x.dtype, np.floating):
        raise ConfigError(
            f"renditions: got images of shape {x.shape} and dtype {x.dtype}; float images (N, C, H, W) in [0, 1]"
        )
    if x.size and (x.min() < -1e-6 or x.max() > 1 + 1e-6):
        raise ConfigError(
            f"renditions: got pixel values in [{x.min():.3g}, {x.max():.3g}]; images in [0, 1] (before any "
            "normalisation)"
        )
    return x


def _check_severity(severity: object, name: str) -> int:
    if isinstance(severity, bool) or not isinstance(severity, int | np.integer) or int(severity) not in SEVERITIES:
        raise ConfigError(f"rendition {name}: got severity {severity!r}; an integer 1..5")
    return int(severity)


def render(
    name: str, images: np.ndarray, rng: np.random.Generator | None, severity: int = DEFAULT_SEVERITY
) -> np.ndarray:
    """The rendition ``name`` of ``images``.

    Parameters
    ----------
    name
        A key of :data:`RENDITIONS`.
    images
        Float ``(N, C, H, W)`` in [0, 1].
    rng
        Generator of the random renditions (``noise``, ``frame``); the others draw nothing and accept ``None``.
    severity
        1..5, read by the graded renditions and ignored by the others.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as ``images``, clipped to [0, 1]; a new array (``images`` is not modified).

    Examples
    --------
    >>> x = np.zeros((1, 3, 8, 8), dtype=np.float32)
    >>> float(render("sketch", x, None).min())  # a flat image has no edge: all white
    1.0
    """
    if name not in RENDITIONS:
        raise ConfigError(f"renditions: got {name!r}; {_allowed()}")
    x = _check_images(images)
    out = RENDITIONS[name].render(x, rng, _check_severity(severity, name))
    return np.clip(out, 0.0, 1.0).astype(x.dtype, copy=False)


def _parse_one(item: str) -> list[tuple[str, int]]:
    name, sep, level = item.partition(":")
    name = name.strip()
    severity = DEFAULT_SEVERITY
    if sep:
        try:
            severity = int(level.strip())
        except ValueError:
            severity = 0
        if severity not in SEVERITIES or (name in RENDITIONS and not RENDITIONS[name].graded):
            raise ConfigError(f"renditions: got {item!r}; {_allowed()}")
    if name == "all":
        return [(n, severity if r.graded else DEFAULT_SEVERITY) for n, r in RENDITIONS.items()]
    if name not in RENDITIONS:
        raise ConfigError(f"renditions: got {item!r}; {_allowed()}")
    return [(name, severity)]


def parse_renditions(spec: str | Sequence[str]) -> list[tuple[str, int]]:
    """``(name, severity)`` pairs of a spec, in order, each once.

    Parameters
    ----------
    spec
        Comma-separated names, or a list of them: ``sketch``, ``noise:5`` (a graded rendition at severity 5),
        ``blur`` (severity 3), ``all`` (every entry, graded ones at severity 3), ``all:5`` (graded ones at 5).
        An empty spec is no rendition.

    Returns
    -------
    list of (str, int)
        The renditions to compute; an ungraded one carries severity 3 (which :func:`render` ignores).

    Raises
    ------
    ConfigError
        An unknown name, a severity outside 1..5 or given to an ungraded rendition: one line with the allowed names.

    Examples
    --------
    >>> parse_renditions(["blur:2", "frame", "blur:2"])
    [('blur', 2), ('frame', 3)]
    """
    if isinstance(spec, str):
        items = spec.split(",")
    elif isinstance(spec, Sequence) and all(isinstance(s, str) for s in spec):
        items = [part for s in spec for part in s.split(",")]
    else:
        raise ConfigError(f"renditions: got {spec!r}; a comma-separated string or a list of names; {_allowed()}")
    out: list[tuple[str, int]] = []
    for item in items:
        if item.strip():
            out += [p for p in _parse_one(item.strip()) if p not in out]
    return out


def rendition_name(name: str, severity: int = DEFAULT_SEVERITY) -> str:
    """The name a record carries: ``noise:3`` for a graded rendition, ``sketch`` for the others.

    >>> rendition_name("noise"), rendition_name("sketch", 5)
    ('noise:3', 'sketch')
    """
    if name not in RENDITIONS:
        raise ConfigError(f"renditions: got {name!r}; {_allowed()}")
    return f"{name}:{_check_severity(severity, name)}" if RENDITIONS[name].graded else name


def rendition_names(spec: str | Sequence[str] | Sequence[tuple[str, int]]) -> list[str]:
    """Record names (:func:`rendition_name`) of a spec or of the pairs :func:`parse_renditions` returns.

    >>> rendition_names("all")
    ['sketch', 'style', 'noise:3', 'blur:3', 'contrast:3', 'frame']
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    pairs = [p for p in items if isinstance(p, tuple)]
    names = [p for p in items if isinstance(p, str)]
    if pairs and len(pairs) != len(items):
        raise ConfigError(f"renditions: got {spec!r}; either names or (name, severity) pairs, not both")
    if not pairs and len(names) != len(items):
        raise ConfigError(f"renditions: got {spec!r}; a comma-separated string or a list of names; {_allowed()}")
    return [rendition_name(n, s) for n, s in (pairs or parse_renditions(names))]
