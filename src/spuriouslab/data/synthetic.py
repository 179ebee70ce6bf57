"""Synthetic data for spurious-feature memorization (Bombari & Mondelli, 2024).

``z = [x, y]`` in R^d with ``d_y = round(alpha d)`` spurious coordinates, ``x ~ N(0, I_dx)``,
``y ~ N(0, I_dy)``, label ``g = sign(u . x)`` with ``u ~ N(0, I/d_x)`` drawn per seed.  The spurious query of
training sample ``i`` is ``[x~_i, y_i]`` with a fresh independent core ``x~_i``.

Every array comes from its own seeded stream, and rows are drawn one sample at a time in order, so the
training set of size N is the first N rows of the size-N' set for any N' > N (nested), and likewise queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spuriouslab.errors import ConfigError

_STREAM_TRAIN, _STREAM_TEST, _STREAM_QUERY, _STREAM_TEACHER = 0, 1, 2, 3


@dataclass
class SyntheticSplit:
    Z: np.ndarray  # (N, d) training inputs
    g: np.ndarray  # (N,) labels in {-1, +1}
    Z_test: np.ndarray
    g_test: np.ndarray
    Z_query: np.ndarray  # (N, d): spurious queries paired with training samples
    Z_test_query: np.ndarray  # (n_test, d): [x~, y] of test samples, for the spurious-correlation metric
    d_x: int
    d_y: int
    teacher: np.ndarray  # u

    @property
    def alpha(self) -> float:
        return self.d_y / (self.d_x + self.d_y)


def split_dims(d: int, alpha: float) -> tuple[int, int]:
    d_y = int(round(alpha * d))
    if not 1 <= d_y <= d - 1:
        raise ConfigError(
            f"alpha: got {alpha} with d={d}, giving d_y={d_y}; need 1 <= round(alpha*d) <= d-1"
        )
    return d - d_y, d_y


def _sign(v: np.ndarray) -> np.ndarray:
    return np.where(v >= 0, 1.0, -1.0)


def synthetic_memorization(seed: int, d: int, alpha: float, n_train: int, n_test: int,
                           correlation: float = 0.0) -> SyntheticSplit:
    """Draw a seeded split.  ``correlation = c > 0`` makes the spurious part depend on the core:
    ``y = c P x + sqrt(1 - c^2) n`` with ``P`` a fixed random map (rows of norm ~1), ``n ~ N(0, I)``."""
    d_x, d_y = split_dims(d, alpha)

    def rng(stream: int) -> np.random.Generator:
        return np.random.default_rng([seed, stream])

    u = rng(_STREAM_TEACHER).standard_normal(d_x) / np.sqrt(d_x)
    P = rng(_STREAM_TEACHER + 10).standard_normal((d_y, d_x)) / np.sqrt(d_x) if correlation else None

    def samples(stream: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        r = rng(stream)
        raw = r.standard_normal((n, d))
        x, y = raw[:, :d_x], raw[:, d_x:]
        if P is not None:
            y = correlation * x @ P.T + np.sqrt(1 - correlation**2) * y
        return x, y

    x, y = samples(_STREAM_TRAIN, n_train)
    xt, yt = samples(_STREAM_TEST, n_test)
    xq = rng(_STREAM_QUERY).standard_normal((n_train, d_x))
    xtq = rng(_STREAM_QUERY + 10).standard_normal((n_test, d_x))
    return SyntheticSplit(
        Z=np.hstack([x, y]), g=_sign(x @ u), Z_test=np.hstack([xt, yt]), g_test=_sign(xt @ u),
        Z_query=np.hstack([xq, y]), Z_test_query=np.hstack([xtq, yt]), d_x=d_x, d_y=d_y, teacher=u,
    )
