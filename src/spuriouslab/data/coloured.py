"""The coloured-image task: both failure modes on one axis, from a label-independent colour to a fully spurious one.

Any image set of the data layer gives a binary label (a pair of classes, or the classes split in two halves) and a
coloured **border** around each image: colour ``c`` in {0, 1} (two colours, red and green by default) agrees with
the label (``c = y``) for exactly ``round(rho * n_k)`` images of each class ``k`` (seeded), and is the other colour
for the rest.  ``rho = 0.5`` is a colour independent of the label (Zhang et al.'s background, the contamination
setting), ``rho = 1`` a perfectly spurious colour (the follow-up of Bombari & Mondelli, arXiv 2502.01347).

Why a border and not a foreground tint: the colour then lives in pixels of its own, disjoint from the core (the
image), exactly the papers' split ``z = [x, y]`` of core and spurious coordinates; a tint would mix the two in the
same pixels, so "the colour part" of an input would not be a set of coordinates one can zero or swap.

Test sets share one draw of test images (the same cores) and differ only in the border: ``id`` (the training
``rho``), ``indep`` (``rho = 0.5``: all four (label, colour) groups, equally), ``reversed`` (``rho = 0``:
``c = 1 - y`` everywhere), so a prediction that changes between ``id`` and ``reversed`` changed because of the
colour alone, and ``novel``: every border one of the held-out colours that no training image has (colour index
``2 + j``), assigned in turn and independent of the label.  The two failure modes are then two shifts of one
test set: at ``rho = 0.5`` the colour is independent of the label, so a drop from ``indep`` to ``novel`` is
contamination (reliance on a label-independent feature that takes an unseen value); at ``rho = 0.9`` a drop from
``id`` to ``reversed`` is spurious correlation.

A validation split (``val``), when asked for, is more training images (disjoint from the training set) coloured as
in training (``rho``): what model selection and last-layer retraining read.

Two averages of accuracy are easily confused (a recurring mistake on Waterbirds-style benchmarks):
``acc`` is the mean over test *samples*; ``group_balanced_acc`` the mean over the four *groups*; and
``worst_group_acc`` the smallest group's.  :func:`group_metrics` gives all three, on any set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from spuriouslab.errors import ConfigError

Colour = tuple[int, int, int]  # R, G, B in 0..255
DEFAULT_COLOURS: tuple[Colour, Colour] = ((200, 40, 40), (40, 200, 40))  # colour 0 red, colour 1 green
TEST_SETS = ("id", "indep", "reversed", "novel")
DEFAULT_NOVEL: tuple[Colour, ...] = ((40, 40, 200),)  # the held-out colour of the ``novel`` test set: blue
GROUPS = ((0, 0), (0, 1), (1, 0), (1, 1))  # (label, colour)


@dataclass
class ColouredSet:
    """Images ``x`` (N, H + 2w, W + 2w, 3) uint8 with their border, labels ``y`` in {0, 1} and colours ``c``."""

    x: np.ndarray
    y: np.ndarray
    c: np.ndarray


@dataclass
class ColouredTask:
    train: ColouredSet
    tests: dict[str, ColouredSet] = field(default_factory=dict)
    rho: float = 0.5
    width: int = 2
    colours: tuple[Colour, ...] = DEFAULT_COLOURS  # colour 0 and colour 1, then the held-out ones (2, 3, ...)
    val: ColouredSet | None = None  # the validation split (training's rho), when asked for


def check_rho(rho: float) -> float:
    """``rho``, the probability that the colour agrees with the label in training, in [0.5, 1].  Below 0.5 the
    colour would agree with the *other* label more often: the same task with the colours' names swapped, whose
    ``reversed`` set (always rho = 0 here) would no longer be the one opposite to training; so it is refused."""
    if not isinstance(rho, int | float) or isinstance(rho, bool) or not 0.5 <= rho <= 1:
        raise ConfigError(
            f"rho: got {rho!r}; the probability that the colour agrees with the label lies in [0.5, 1] (0.5 "
            "independent, 1 fully spurious); for a colour that agrees with the other label, swap the colours"
        )
    return float(rho)


def assign_colours(y: np.ndarray, rho: float, rng: np.random.Generator) -> np.ndarray:
    """Colour of each sample: within each class ``k``, exactly ``round(rho * n_k)`` samples (a seeded choice)
    get colour ``k``, the others colour ``1 - k``."""
    if not 0 <= rho <= 1:
        raise ConfigError(f"rho: got {rho!r}; a probability in [0, 1]")
    y = np.asarray(y)
    c = 1 - y
    for k in (0, 1):
        idx = np.flatnonzero(y == k)
        idx = idx[rng.permutation(len(idx))]
        c[idx[: int(round(rho * len(idx)))]] = k
    return c.astype(np.int64)


def paint(
    images: np.ndarray, c: np.ndarray, width: int, colours: Sequence[Colour] | np.ndarray = DEFAULT_COLOURS
) -> np.ndarray:
    """Pad RGB (or greyscale, repeated) uint8 images (N, H, W, C) with a border of ``width`` pixels of
    ``colours[c_i]``."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    n, h, w, _ = x.shape
    out = np.empty((n, h + 2 * width, w + 2 * width, 3), dtype=np.uint8)
    out[:] = np.asarray(colours, dtype=np.uint8)[np.asarray(c)][:, None, None, :]
    out[:, width : width + h, width : width + w] = x
    return out


def random_colours(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` border colours (n, 3) uint8, each drawn uniformly from the RGB cube: label-independent and as varied
    as colours get (the pre-training borders of the remedies ``pretrain`` / ``lp-ft``).  ``paint(x,
    np.arange(n), width, random_colours(n, rng))`` gives image ``i`` colour ``i``."""
    return rng.integers(0, 256, size=(n, 3)).astype(np.uint8)


def binary_labels(y: np.ndarray, n_classes: int, classes: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray]:
    """(indices kept, labels in {0, 1}): a pair ``(a, b)`` (a -> 0, b -> 1), or ``None``: every class, the first
    half of the class indices -> 0 and the second half -> 1."""
    y = np.asarray(y)
    if classes is None:
        return np.arange(len(y)), (y >= (n_classes + 1) // 2).astype(np.int64)
    a, b = classes
    for k in classes:
        if not 0 <= k < n_classes:
            raise ConfigError(f"classes: got {list(classes)}; the data has classes 0..{n_classes - 1}")
    if a == b:
        raise ConfigError(f"classes: got {list(classes)}; two different classes")
    keep = np.flatnonzero(np.isin(y, classes))
    return keep, (y[keep] == b).astype(np.int64)


def coloured(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    rho: float,
    width: int,
    rng: np.random.Generator,
    colours: Sequence[Colour] = DEFAULT_COLOURS,
    novel: Sequence[Colour] = DEFAULT_NOVEL,
    val: tuple[np.ndarray, np.ndarray, np.random.Generator] | None = None,
) -> ColouredTask:
    """The coloured task from images and binary labels (see the module docstring); ``rng`` draws the colours of
    the training images and of the ``id``, ``indep`` and ``reversed`` sets, ``novel`` are the held-out colours
    (none of them a training colour), and ``val`` (images, labels, the generator of their colours) adds the
    validation split."""
    rho = check_rho(rho)
    if width < 1:
        raise ConfigError(f"border: got {width}; the coloured border needs at least 1 pixel")
    palette = check_novel(colours, novel)
    c_train = assign_colours(y_train, rho, rng)
    train = ColouredSet(paint(x_train, c_train, width, palette), np.asarray(y_train), c_train)
    tests = {}
    for name, r in zip(TEST_SETS[:3], (rho, 0.5, 0.0), strict=True):
        c = assign_colours(y_test, r, rng)
        tests[name] = ColouredSet(paint(x_test, c, width, palette), np.asarray(y_test), c)
    c_novel = 2 + np.arange(len(y_test)) % len(novel)  # each held-out colour in turn: independent of the label
    tests["novel"] = ColouredSet(paint(x_test, c_novel, width, palette), np.asarray(y_test), c_novel.astype(np.int64))
    held = None
    if val is not None:
        x_val, y_val, val_rng = val
        c_val = assign_colours(y_val, rho, val_rng)
        held = ColouredSet(paint(x_val, c_val, width, palette), np.asarray(y_val), c_val)
    return ColouredTask(train, tests, rho, width, palette, held)


def check_novel(colours: Sequence[Colour], novel: Sequence[Colour]) -> tuple[Colour, ...]:
    """The palette: the two training colours, then the held-out ones; a held-out colour that is a training colour
    (or none at all) is refused in one line."""
    if not len(novel):
        raise ConfigError("novel_colours: got none; at least one held-out colour for the novel test set")
    for c in novel:
        if tuple(c) in {tuple(t) for t in colours}:
            raise ConfigError(
                f"novel_colours: got RGB {','.join(map(str, c))}; a held-out colour must differ from the training "
                "colours (colours)"
            )
    return tuple(tuple(int(v) for v in c) for c in (*colours, *novel))  # type: ignore[misc]


def group_metrics(correct: np.ndarray, y: np.ndarray, c: np.ndarray) -> dict[str, float]:
    """Accuracy three ways from per-sample correctness: ``acc`` (mean over samples), ``group_balanced_acc`` (mean
    over the (label, colour) groups present) and ``worst_group_acc`` (the lowest group), with each group's
    ``acc_y{label}_c{colour}`` (NaN for a group with no sample)."""
    correct = np.asarray(correct, dtype=float)
    out: dict[str, float] = {"acc": float(correct.mean()) if len(correct) else float("nan")}
    accs = []
    for gy, gc in GROUPS:
        mask = (np.asarray(y) == gy) & (np.asarray(c) == gc)
        acc = float(correct[mask].mean()) if mask.any() else float("nan")
        out[f"acc_y{gy}_c{gc}"] = acc
        if mask.any():
            accs.append(acc)
    out["group_balanced_acc"] = float(np.mean(accs)) if accs else float("nan")
    out["worst_group_acc"] = float(np.min(accs)) if accs else float("nan")
    return out


def spurious_correlation(f_query: np.ndarray, g: np.ndarray) -> float:
    """``C = Cov(f(query), g)`` over test samples: the model's output on each test image's border alone (core
    zeroed) against its label ``g`` in {-1, +1} (the follow-up paper's spurious correlation)."""
    f, g = np.asarray(f_query, dtype=float), np.asarray(g, dtype=float)
    return float(np.mean((f - f.mean()) * (g - g.mean())))
