"""Shifted renditions: the sketch of a square is its outline, severities are ordered, every rendition keeps shape,
dtype and range, ``frame`` touches only the frame, ``style`` is deterministic, and bad specs are one line."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spuriouslab.data.renditions import (
    RENDITIONS,
    frame_width,
    parse_renditions,
    render,
    rendition_name,
    rendition_names,
    sobel_magnitude,
)
from spuriouslab.errors import ConfigError

GRADED = [n for n, r in RENDITIONS.items() if r.graded]


def _images(n: int = 3, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, c, h, w)).astype(np.float32)


def _square(h: int = 32, lo: int = 10, hi: int = 22) -> tuple[np.ndarray, np.ndarray]:
    """A white square (rows and columns lo..hi-1) on black, as (1, 3, h, h) and its (h, h) mask."""
    mask = np.zeros((h, h), dtype=bool)
    mask[lo:hi, lo:hi] = True
    return np.repeat(mask[None, None].astype(np.float32), 3, axis=1), mask


def test_the_sketch_of_a_filled_square_is_its_outline():
    x, sq = _square()
    out = render("sketch", x, None)
    assert (out == out[:, :1]).all()  # greyscale: the three channels equal
    g = out[0, 0]
    ring = ndimage.binary_dilation(sq) & ~ndimage.binary_erosion(sq)  # within one pixel of the square's edge
    near = ndimage.binary_dilation(ring)  # one pixel of tolerance
    assert (g[~near] == 1).all(), "interior and far background are white"
    assert (g[ndimage.binary_erosion(sq, iterations=2)] == 1).all()
    assert (g[~ndimage.binary_dilation(sq, iterations=2)] == 1).all()
    edge = sq & ~ndimage.binary_erosion(sq)  # the square's own boundary pixels
    assert (g[edge] < 0.5).all(), "the boundary is drawn in dark lines"
    assert g.min() == 0.0 and g.max() == 1.0


def test_sobel_magnitude_is_scipys_sobel_image_by_image():
    grey = _images(n=2, c=1, h=9, w=7)[:, 0].astype(np.float64)
    got = sobel_magnitude(grey)
    for g, mag in zip(grey, got, strict=True):
        np.testing.assert_allclose(mag, np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1)), atol=1e-12)


@pytest.mark.parametrize("name", GRADED)
def test_severities_are_ordered(name):
    x = _images()
    diffs = [float(np.abs(render(name, x, np.random.default_rng(1), s) - x).mean()) for s in range(1, 6)]
    assert all(a < b for a, b in zip(diffs, diffs[1:], strict=False)), diffs
    assert diffs[0] > 0


@pytest.mark.parametrize("name", list(RENDITIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_rendition_keeps_shape_dtype_and_range(name, dtype):
    for c in (3, 1):
        x = _images(n=2, c=c, h=12, w=10).astype(dtype)
        before = x.copy()
        for s in range(1, 6) if RENDITIONS[name].graded else [3]:
            out = render(name, x, np.random.default_rng(0), s)
            assert out.shape == x.shape and out.dtype == x.dtype
            assert out.min() >= 0 and out.max() <= 1
            assert not np.shares_memory(out, x)
        np.testing.assert_array_equal(x, before)  # the input is left as it was


@pytest.mark.parametrize("name", list(RENDITIONS))
def test_a_seed_gives_the_same_rendition(name):
    x = _images(n=2)
    a = render(name, x, np.random.default_rng(7))
    np.testing.assert_array_equal(a, render(name, x, np.random.default_rng(7)))


def test_frame_changes_only_the_frame_pixels():
    x = _images(n=4, h=32, w=24)
    out = render("frame", x, np.random.default_rng(0))
    k = frame_width(32, 24)
    assert k == 3
    inner = (slice(None), slice(None), slice(k, -k), slice(k, -k))
    np.testing.assert_array_equal(out[inner], x[inner])
    ring = np.ones((32, 24), dtype=bool)
    ring[k:-k, k:-k] = False
    colours = out[:, :, ring]  # (N, C, frame pixels): one colour per image over the whole frame
    assert (colours == colours[:, :, :1]).all()
    assert len({tuple(c) for c in colours[:, :, 0]}) == 4  # drawn per image
    assert (out[:, :, ring] != x[:, :, ring]).mean() > 0.99


def test_style_is_deterministic_and_draws_nothing():
    x = _images()
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    a = render("style", x, rng)
    assert rng.bit_generator.state == state
    np.testing.assert_array_equal(a, render("style", x, None))
    np.testing.assert_array_equal(a, render("style", x, np.random.default_rng(5), severity=1))
    np.testing.assert_allclose(a * 3, np.round(a * 3), atol=1e-6)  # posterized to 0, 1/3, 2/3, 1
    red = np.zeros((1, 3, 4, 4), dtype=np.float32)
    red[:, 0] = 1.0
    np.testing.assert_array_equal(render("style", red, None)[0, :, 0, 0], [0, 1, 0])  # (R, G, B) <- (B, R, G)


def test_contrast_keeps_the_mean_and_blur_stays_in_each_image_and_channel():
    x = _images(n=2)
    out = render("contrast", x, None, 5)
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)), rtol=1e-5)
    flat = np.zeros((2, 3, 16, 16), dtype=np.float32)
    flat[0, 1] = 1.0  # one channel of one image lit: blurring must not leak to the others
    np.testing.assert_array_equal(render("blur", flat, None, 5), flat)


def test_parse_renditions():
    assert parse_renditions("sketch") == [("sketch", 3)]
    assert parse_renditions("noise:5, blur:2,sketch") == [("noise", 5), ("blur", 2), ("sketch", 3)]
    assert parse_renditions(["noise", "noise:3", "frame"]) == [("noise", 3), ("frame", 3)]
    assert parse_renditions("all") == [(n, 3) for n in RENDITIONS]
    assert dict(parse_renditions("all:5")) == {n: 5 if r.graded else 3 for n, r in RENDITIONS.items()}
    assert parse_renditions("") == [] and parse_renditions([]) == []
    assert rendition_names("blur:2,sketch") == ["blur:2", "sketch"]
    assert rendition_names(parse_renditions("all")) == [rendition_name(n) for n in RENDITIONS]
    assert rendition_names([("noise", 4), ("style", 3)]) == ["noise:4", "style"]


@pytest.mark.parametrize(
    "spec", ["foo", "noise:0", "noise:6", "noise:x", "noise:2.5", "sketch:3", "frame:1", "all:9", "blur,bogus", [3]]
)
def test_bad_specs_are_one_line_naming_the_allowed(spec):
    with pytest.raises(ConfigError) as err:
        parse_renditions(spec)
    msg = str(err.value)
    assert "\n" not in msg and "allowed:" in msg
    assert all(name in msg for name in RENDITIONS)


def test_bad_input_is_one_line():
    for bad in (
        lambda: render("nope", _images(n=1), None),
        lambda: render("noise", _images(n=1), None),  # a random rendition without a generator
        lambda: render("blur", _images(n=1), None, 0),
        lambda: render("blur", (_images(n=1) * 255).astype(np.uint8), None),
        lambda: render("blur", _images(n=1)[0], None),
        lambda: render("blur", _images(n=1) * 2 - 0.5, None),  # normalised images, not [0, 1]
        lambda: rendition_names([("noise", 3), "blur"]),
    ):
        with pytest.raises(ConfigError) as err:
            bad()
        assert "\n" not in str(err.value)
