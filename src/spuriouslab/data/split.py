"""The one split type for memorization data, synthetic or image: what the kernel path and trained networks read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MemorizationSplit:
    """Training, test and spurious-query inputs as flat float64 rows ``(n, d)``, with their labels.

    ``g`` holds labels in {-1, +1} when ``n_classes == 0`` (synthetic data, a pair of image classes) and class
    indices otherwise (all classes of an image data set).  ``sample_shape`` is ``(d,)`` for synthetic data and
    ``(H, W, C)`` (border included) for images, so ``Z.reshape(n, *sample_shape)`` gives the images back.
    """

    Z: np.ndarray  # (N, d) training inputs
    g: np.ndarray  # (N,) labels
    Z_test: np.ndarray
    g_test: np.ndarray
    Z_query: np.ndarray  # (N, d): spurious queries paired with training samples
    Z_test_query: np.ndarray | None  # (n_test, d): queries of test samples (spurious-correlation metric)
    d_x: int  # core coordinates
    d_y: int  # spurious coordinates
    sample_shape: tuple[int, ...]
    n_classes: int = 0
    teacher: np.ndarray | None = None  # synthetic: the label direction u
    covariance: np.ndarray | None = None  # synthetic: the covariance Sigma of z = [x, y] (d x d)
    # the coloured task (border_content=coloured): each test set ("id", "indep", "reversed", "novel") as
    # (Z, g, colours);
    # "id" is Z_test / g_test itself
    tests: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
    # the coloured task with SplitSpec.pretrain_borders: the training images, each border a random colour
    Z_pretrain: np.ndarray | None = None
    # the coloured task: the training images' colours (groups are (label, colour)), and with SplitSpec.n_val the
    # validation split as (Z, g, colours)
    c: np.ndarray | None = None
    val: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def alpha(self) -> float:
        return self.d_y / (self.d_x + self.d_y)
