"""Synthetic data for spurious-feature memorization (Bombari & Mondelli, 2024).

``z = [x, y]`` in R^d with ``d_y = round(alpha d)`` spurious coordinates, ``x ~ N(0, I_dx)``,
``y ~ N(0, I_dy)``, label ``g = sign(u . x)`` with ``u ~ N(0, I/d_x)`` drawn per seed.  The spurious query of
training sample ``i`` is ``[x~_i, y_i]`` with a fresh independent core ``x~_i``.

Every array comes from its own seeded stream, and rows are drawn one sample at a time in order, so the
training set of size N is the first N rows of the size-N' set for any N' > N (nested), and likewise queries.
"""

from __future__ import annotations

import numpy as np

from spuriouslab.data.split import MemorizationSplit
from spuriouslab.errors import ConfigError
from spuriouslab.seeding import numpy_rng, stream_id


def split_dims(d: int, alpha: float) -> tuple[int, int]:
    d_y = int(round(alpha * d))
    if not 1 <= d_y <= d - 1:
        raise ConfigError(f"alpha: got {alpha} with d={d}, giving d_y={d_y}; need 1 <= round(alpha*d) <= d-1")
    return d - d_y, d_y


def _sign(v: np.ndarray) -> np.ndarray:
    return np.where(v >= 0, 1.0, -1.0)


def spurious_spectrum(d_y: int, exponent: float) -> np.ndarray:
    """The eigenvalues of the spurious part's covariance given the core: ``j^-exponent`` for ``j = 1..d_y``,
    scaled to mean 1 (the total spurious variance stays ``d_y``).  0 is isotropic; a larger exponent puts the
    variance on fewer directions (a "simpler" spurious part)."""
    if not 0 <= exponent <= 10:
        raise ConfigError(f"spurious_spectrum: got {exponent!r}; a power-law exponent in [0, 10] (0: isotropic)")
    ev = np.arange(1, d_y + 1, dtype=np.float64) ** -float(exponent)
    return np.asarray(ev / ev.mean())


def synthetic_memorization(
    seed: int, d: int, alpha: float, n_train: int, n_test: int, correlation: float = 0.0, spectrum: float = 0.0
) -> MemorizationSplit:
    """Draw a seeded split.  ``correlation = c > 0`` makes the spurious part depend on the core:
    ``y = c P x + sqrt(1 - c^2) D^1/2 n`` with ``P`` a fixed random map (rows of norm ~1), ``n ~ N(0, I)`` and ``D``
    the power-law spectrum of exponent ``spectrum`` (:func:`spurious_spectrum`; 0: ``D = I``).  The split carries
    the covariance ``Sigma`` of ``z = [x, y]`` (for the deterministic equivalent of linear ridge)."""
    d_x, d_y = split_dims(d, alpha)
    scale = np.sqrt(spurious_spectrum(d_y, spectrum)) if spectrum else None

    def rng(name: str) -> np.random.Generator:
        return numpy_rng(seed, stream_id(name))

    u = rng("synthetic.teacher").standard_normal(d_x) / np.sqrt(d_x)
    P = rng("synthetic.correlation").standard_normal((d_y, d_x)) / np.sqrt(d_x) if correlation else None

    def samples(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        r = rng(name)
        raw = r.standard_normal((n, d))
        x, y = raw[:, :d_x], raw[:, d_x:]
        if scale is not None:
            y = y * scale
        if P is not None:
            y = correlation * x @ P.T + np.sqrt(1 - correlation**2) * y
        return x, y

    x, y = samples("synthetic.train", n_train)
    xt, yt = samples("synthetic.test", n_test)
    xq = rng("synthetic.query").standard_normal((n_train, d_x))
    xtq = rng("synthetic.test_query").standard_normal((n_test, d_x))
    return MemorizationSplit(
        Z=np.hstack([x, y]),
        g=_sign(x @ u),
        Z_test=np.hstack([xt, yt]),
        g_test=_sign(xt @ u),
        Z_query=np.hstack([xq, y]),
        Z_test_query=np.hstack([xtq, yt]),
        d_x=d_x,
        d_y=d_y,
        sample_shape=(d,),
        teacher=u,
        covariance=_covariance(d_x, d_y, correlation, P, spectrum),
    )


def _covariance(d_x: int, d_y: int, c: float, P: np.ndarray | None, spectrum: float) -> np.ndarray:
    """``Sigma`` of ``z = [x, y]``: ``S_xx = I``, ``S_yx = c P``, ``S_yy = c^2 P P' + (1 - c^2) D``."""
    sigma = np.eye(d_x + d_y)
    noise = spurious_spectrum(d_y, spectrum) if spectrum else np.ones(d_y)
    sigma[d_x:, d_x:] = np.diag(noise * (1 - c * c if P is not None else 1.0))
    if P is not None:
        sigma[d_x:, :d_x] = c * P
        sigma[:d_x, d_x:] = c * P.T
        sigma[d_x:, d_x:] += c * c * P @ P.T
    return sigma
