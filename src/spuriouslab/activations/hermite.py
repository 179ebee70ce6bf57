"""Normalised probabilists' Hermite machinery.

``h_l = He_l / sqrt(l!)`` is orthonormal under the standard Gaussian, so any activation with
``E[phi(G)^2] < inf`` expands as ``phi = sum_l mu_l h_l`` with ``mu_l = E[phi(G) h_l(G)]``, and for
jointly Gaussian unit-variance ``(a, b)`` with correlation ``rho`` (Mehler's formula)
``E[phi(a) phi(b)] = sum_l mu_l^2 rho^l``.  :func:`series_kernel` is the single implementation of that
series, used both by the theory and by the infinite-width kernels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def hermite_table(x: np.ndarray, order: int) -> np.ndarray:
    """Values ``h_0(x) .. h_order(x)`` (shape ``(order + 1, *x.shape)``) by the stable recurrence
    ``h_{l+1} = (x h_l - sqrt(l) h_{l-1}) / sqrt(l + 1)``."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty((order + 1, *x.shape))
    out[0] = 1.0
    if order >= 1:
        out[1] = x
    for l in range(1, order):
        out[l + 1] = (x * out[l] - math.sqrt(l) * out[l - 1]) / math.sqrt(l + 1)
    return out


def _he_at_zero_over_sqrt_fact(m: int, l: int) -> float:
    """``He_m(0) / sqrt(l!)`` computed in log space (``He_m(0) = (-1)^(m/2) (m-1)!!`` for even m)."""
    if m % 2:
        return 0.0
    half = m // 2
    # (m-1)!! = m! / (2^(m/2) (m/2)!)
    log_dfact = math.lgamma(m + 1) - half * math.log(2) - math.lgamma(half + 1)
    sign: int = (-1) ** half
    return sign * math.exp(log_dfact - 0.5 * math.lgamma(l + 1))


def relu_coefficients(order: int) -> np.ndarray:
    """Closed form for ReLU: mu_0 = 1/sqrt(2 pi), mu_1 = 1/2, mu_l = He_{l-2}(0) / (sqrt(2 pi) sqrt(l!))."""
    mu = np.zeros(order + 1)
    mu[0] = math.exp(-_LOG_SQRT_2PI)
    if order >= 1:
        mu[1] = 0.5
    for l in range(2, order + 1):
        mu[l] = _he_at_zero_over_sqrt_fact(l - 2, l) * math.exp(-_LOG_SQRT_2PI)
    return mu


def step_coefficients(order: int) -> np.ndarray:
    """Closed form for the Heaviside step 1{x > 0}: mu_0 = 1/2, mu_l = He_{l-1}(0) / (sqrt(2 pi) sqrt(l!))."""
    mu = np.zeros(order + 1)
    mu[0] = 0.5
    for l in range(1, order + 1):
        mu[l] = _he_at_zero_over_sqrt_fact(l - 1, l) * math.exp(-_LOG_SQRT_2PI)
    return mu


def series_derivative(coeffs: np.ndarray) -> np.ndarray:
    """Coefficients of ``phi'`` from those of ``phi``: ``h_l' = sqrt(l) h_{l-1}``."""
    c = np.asarray(coeffs, dtype=np.float64)
    if len(c) <= 1:
        return np.zeros(1)
    return c[1:] * np.sqrt(np.arange(1, len(c)))


def series_to_monomials(coeffs: np.ndarray) -> np.ndarray:
    """Monomial coefficients (lowest degree first) of ``sum_l c_l h_l``."""
    from numpy.polynomial import hermite_e

    c = np.asarray(coeffs, dtype=np.float64)
    scaled = c / np.sqrt([math.factorial(l) for l in range(len(c))])
    return hermite_e.herme2poly(scaled)


_QUAD_CACHE: dict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = {}


def gaussian_quadrature(nodes_per_side: int = 400, half_width: float = 14.0) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for ``E[f(G)]``, G ~ N(0, 1): Gauss-Legendre on [-L, 0] and [0, L].

    Splitting at 0 makes the rule converge geometrically for activations with a kink or jump at 0
    (ReLU, step, leaky ReLU), where a plain Gauss-Hermite rule converges only algebraically.
    """
    key = (nodes_per_side, half_width)
    if key not in _QUAD_CACHE:
        t, w = np.polynomial.legendre.leggauss(nodes_per_side)
        half = half_width / 2
        x = np.concatenate([half * (t - 1), half * (t + 1)])
        ww = np.concatenate([w, w]) * half
        ww = ww * np.exp(-0.5 * x * x - _LOG_SQRT_2PI)
        _QUAD_CACHE[key] = (x, ww)
    return _QUAD_CACHE[key]


def quadrature_coefficients(
    fn: Callable[[np.ndarray], np.ndarray], order: int, scale: np.ndarray | float = 1.0
) -> np.ndarray:
    """``mu_l(s) = E[fn(s G) h_l(G)]`` for l = 0..order, by quadrature.

    ``scale`` may be an array of standard deviations ``s`` (one per sample); the result then has shape
    ``(*scale.shape, order + 1)``: the Hermite coefficients of ``x -> fn(s x)``.  Half-width grows with
    the order so that ``h_l`` times the Gaussian density is negligible outside the range.
    """
    half_width = max(14.0, 2.0 * math.sqrt(order + 1) + 10.0)
    x, w = gaussian_quadrature(400, half_width)
    table = hermite_table(x, order) * w  # (order+1, Q)
    s = np.asarray(scale, dtype=np.float64)
    values = np.asarray(fn(s[..., None] * x), dtype=np.float64)  # (*s, Q)
    coefficients: np.ndarray = values @ table.T
    return coefficients


def rescaled_series(coeffs: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Hermite coefficients of ``x -> phi(s x)`` for a finite series ``phi = sum c_l h_l`` (exact).

    Returns shape ``(*scale.shape, len(coeffs))``; a polynomial of degree L stays degree L.
    """
    c = np.asarray(coeffs, dtype=np.float64)
    poly = series_to_monomials(c)

    def f(x: np.ndarray) -> np.ndarray:
        y: np.ndarray = np.polynomial.polynomial.polyval(x, poly)
        return y

    order = len(c) - 1
    # Quadrature with 800 nodes is exact (to rounding) for polynomials of degree < 1600.
    return quadrature_coefficients(f, order, scale)


def series_kernel(a: np.ndarray, b: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """``K_ij = sum_l a_il b_jl rho_ij^l`` (Mehler).  With ``a = b = mu`` broadcast over samples this is
    ``sum_l mu_l^2 rho^l``.  ``a``: (n, L+1) or (L+1,), ``b``: (m, L+1) or (L+1,), ``rho``: (n, m)."""
    rho = np.asarray(rho, dtype=np.float64)
    a = np.broadcast_to(np.asarray(a, dtype=np.float64), (rho.shape[0], np.shape(a)[-1]))
    b = np.broadcast_to(np.asarray(b, dtype=np.float64), (rho.shape[1], np.shape(b)[-1]))
    out = np.zeros_like(rho)
    power = np.ones_like(rho)
    for l in range(a.shape[1]):
        out += np.outer(a[:, l], b[:, l]) * power
        power *= rho
    return out
