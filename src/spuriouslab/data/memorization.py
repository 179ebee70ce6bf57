"""One function builds memorization data, synthetic or image, for the kernel path and trained networks alike.

:class:`SplitSpec` holds values only (what a config says); :func:`build_split` draws the seeded split.  For images,
``classes=(a, b)`` gives labels -1 / +1 from a pair of classes (the kernel experiments), ``classes=None`` keeps every
class with its index (trained networks, cross-entropy).  Each image is padded with its own random border (the
spurious feature); the query of a training image keeps its border and zeroes its core (``query=zero``) or takes
another training image's core (``query=swap``).  Streams: ``images.kernels`` and ``images.nets`` in
:data:`spuriouslab.seeding.STREAMS` (+0 train pick, +1 test pick, +2/+3 borders, +4/+5 swap queries).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from spuriouslab.data.borders import add_border, nominal_alpha, parse_colour, scale_pixels, spurious_queries
from spuriouslab.data.coloured import binary_labels, coloured, paint, random_colours
from spuriouslab.data.datasets import DATASETS
from spuriouslab.data.formats import ImageData
from spuriouslab.data.images import image_shape, load_images
from spuriouslab.data.split import MemorizationSplit
from spuriouslab.data.synthetic import synthetic_memorization
from spuriouslab.errors import ConfigError
from spuriouslab.seeding import IMAGE_OFFSETS, numpy_rng, stream_id


@dataclass(frozen=True)
class SplitSpec:
    """Which memorization data: ``source`` is ``synthetic`` or an image data set name."""

    source: str = "synthetic"
    n_test: int = 1000
    # synthetic
    d: int = 1000
    alpha: float = 0.5
    correlation: float = 0.0
    spectrum: float = 0.0  # the power-law exponent of the spurious part's covariance given the core
    # images
    data_root: str | None = None
    # a pair (-> -1, +1), or None for every class; typed as the configs hold it (they check the pair for images)
    classes: tuple[int, ...] | None = None
    border: int | None = None  # None: the data set's default
    border_content: str = "uniform"
    rho: float = 0.5  # border_content=coloured: P(colour agrees with the label) in training
    colours: tuple[str, ...] = ("red", "green")  # border_content=coloured: colour 0 and colour 1 (a pair)
    novel_colours: tuple[str, ...] = ("blue",)  # border_content=coloured: the held-out colours of the novel set
    n_val: int = 0  # border_content=coloured: validation images (more training images, disjoint, training's rho)
    query: str = "zero"
    scaling: str = "raw"
    streams: str = "images.kernels"
    test_queries: bool = True  # also build the queries of the test images
    # border_content=coloured: also the training images with each border a uniformly random colour (Z_pretrain)
    pretrain_borders: bool = False

    @property
    def border_width(self) -> int:
        return self.border if self.border is not None else DATASETS[self.source].border

    def nominal_alpha(self) -> float:
        """Border pixels / all pixels for images (reads the image shape), ``alpha`` for synthetic data."""
        if self.source == "synthetic":
            return self.alpha
        h, w, _ = image_shape(self.source, self.data_root)
        return nominal_alpha(h, w, self.border_width)


def build_split(spec: SplitSpec, seed: int, n_train: int) -> MemorizationSplit:
    """The seeded split of ``n_train`` training samples (nested: a larger N extends a smaller one)."""
    if spec.source == "synthetic":
        return synthetic_memorization(seed, spec.d, spec.alpha, n_train, spec.n_test, spec.correlation, spec.spectrum)
    return _image_split(spec, seed, n_train)


def _image_split(spec: SplitSpec, seed: int, n_train: int) -> MemorizationSplit:
    data = load_images(spec.source, spec.data_root)
    base = stream_id(spec.streams)

    def rng(part: str) -> np.random.Generator:
        return numpy_rng(seed, base + IMAGE_OFFSETS[part])

    if spec.border_content == "coloured":
        return _coloured_split(spec, data, rng, n_train)

    if spec.classes is not None:
        a, b = spec.classes
        for c in spec.classes:
            if not 0 <= c < len(data.classes):
                raise ConfigError(
                    f"classes: got {list(spec.classes)}; {data.name} has classes 0..{len(data.classes) - 1}"
                )
        tr = np.flatnonzero(np.isin(data.y_train, spec.classes))
        te = np.flatnonzero(np.isin(data.y_test, spec.classes))
        if n_train > len(tr):
            raise ConfigError(f"n_train: got {n_train}; {data.name} classes {a} and {b} have {len(tr)} training images")
    else:
        tr, te = np.arange(len(data.x_train)), np.arange(len(data.x_test))
        if n_train > len(tr):
            raise ConfigError(f"n_train: got {n_train}; {data.name} has {len(tr)} training images")
    tr = tr[rng("train_pick").permutation(len(tr))[:n_train]]
    te = te[rng("test_pick").permutation(len(te))[: min(spec.n_test, len(te))]]
    h, w, c = data.shape
    width = spec.border_width
    x_tr = add_border(data.x_train[tr], width, spec.border_content, rng("train_border"))
    x_te = add_border(data.x_test[te], width, spec.border_content, rng("test_border"))
    q_tr = spurious_queries(x_tr, h, w, width, spec.query, rng("train_query"))
    q_te = spurious_queries(x_te, h, w, width, spec.query, rng("test_query")) if spec.test_queries else None

    def flat(x: np.ndarray) -> np.ndarray:
        return scale_pixels(x, spec.scaling, x_tr).reshape(len(x), -1)

    labels: Callable[[np.ndarray], np.ndarray]
    if spec.classes is not None:
        positive = spec.classes[1]
        labels = lambda y: np.where(y == positive, 1.0, -1.0)  # noqa: E731
        n_classes = 0
    else:
        labels = lambda y: y.copy()  # noqa: E731
        n_classes = len(data.classes)
    d_x = h * w * c
    return MemorizationSplit(
        flat(x_tr),
        labels(data.y_train[tr]),
        flat(x_te),
        labels(data.y_test[te]),
        flat(q_tr),
        None if q_te is None else flat(q_te),
        d_x,
        x_tr[0].size - d_x,
        tuple(x_tr.shape[1:]),
        n_classes,
    )


def _coloured_split(
    spec: SplitSpec, data: ImageData, rng: Callable[[str], np.random.Generator], n_train: int
) -> MemorizationSplit:
    """The coloured task (:mod:`spuriouslab.data.coloured`) as a memorization split: labels -1 / +1 for a class
    pair (kernels), 0 / 1 for the classes split in halves (trained networks, two outputs); the queries keep the
    coloured border and zero (or swap) the core."""
    keep_tr, y_tr = binary_labels(data.y_train, len(data.classes), spec.classes)
    keep_te, y_te = binary_labels(data.y_test, len(data.classes), spec.classes)
    if n_train + spec.n_val > len(keep_tr):
        raise ConfigError(
            f"n_train: got {n_train}" + (f" and n_val {spec.n_val}" if spec.n_val else "")
            + f"; {data.name} has {len(keep_tr)} training images of these classes"
        )  # fmt: skip
    order = rng("train_pick").permutation(len(keep_tr))
    pick_tr = order[:n_train]
    pick_val = order[n_train : n_train + spec.n_val]  # the training set's own draw is unchanged by n_val
    pick_te = rng("test_pick").permutation(len(keep_te))[: min(spec.n_test, len(keep_te))]
    h, w, _ = data.shape
    width = spec.border_width
    # every colour (training images and the three test sets) is drawn from the training-border stream
    task = coloured(
        data.x_train[keep_tr[pick_tr]],
        y_tr[pick_tr],
        data.x_test[keep_te[pick_te]],
        y_te[pick_te],
        spec.rho,
        width,
        rng("train_border"),
        tuple(parse_colour(c, "colours") for c in spec.colours),
        tuple(parse_colour(c, "novel_colours") for c in spec.novel_colours),
        (data.x_train[keep_tr[pick_val]], y_tr[pick_val], rng("val_border")) if spec.n_val else None,
    )
    x_tr, ident = task.train.x, task.tests["id"]
    x_pre = None
    if spec.pretrain_borders:  # the same cores, every border its own random colour (a stream of its own)
        x_pre = paint(
            data.x_train[keep_tr[pick_tr]], np.arange(n_train), width, random_colours(n_train, rng("pretrain_border"))
        )
    q_tr = spurious_queries(x_tr, h, w, width, spec.query, rng("train_query"))
    q_te = spurious_queries(ident.x, h, w, width, "zero") if spec.test_queries else None

    def flat(x: np.ndarray) -> np.ndarray:
        return scale_pixels(x, spec.scaling, x_tr).reshape(len(x), -1)

    pm = spec.classes is not None  # kernels: -1 / +1
    labels: Callable[[np.ndarray], np.ndarray] = (lambda y: 2.0 * y - 1.0) if pm else (lambda y: y.copy())
    tests = {name: (flat(t.x), labels(t.y), t.c) for name, t in task.tests.items()}
    d_x = h * w * 3
    return MemorizationSplit(
        flat(x_tr),
        labels(task.train.y),
        tests["id"][0],
        tests["id"][1],
        flat(q_tr),
        None if q_te is None else flat(q_te),
        d_x,
        x_tr[0].size - d_x,
        tuple(x_tr.shape[1:]),
        0 if pm else 2,
        tests=tests,
        Z_pretrain=None if x_pre is None else flat(x_pre),
        c=task.train.c,
        val=None if task.val is None else (flat(task.val.x), labels(task.val.y), task.val.c),
    )
