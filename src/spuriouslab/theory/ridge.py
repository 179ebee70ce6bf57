"""Linear ridge regression on ``z = [x, y]`` with a covariance: the deterministic equivalent of the spurious
correlation ``C(lambda)`` and of the test loss ``L(lambda)`` (Bombari & Mondelli's follow-up, arXiv 2502.01347,
for linear ridge; the derivation is in ``docs/ridge-theory.rst``).

Setting.  ``z ~ N(0, Sigma)`` in ``R^d``, ``Sigma = [[S_xx, S_xy], [S_yx, S_yy]]`` over the core ``x`` (``d_x``
coordinates) and the spurious part ``y`` (``d_y``); a label ``g`` that depends on ``x`` alone, with best linear
predictor ``theta* = [beta, 0]`` (``E[z g] = Sigma theta*``) and residual variance ``sigma2 = E[g^2] -
theta*' Sigma theta*`` (for ``g = sign(u'x)`` and ``S_xx = I``: ``beta = sqrt(2/pi) u/|u|``, ``sigma2 = 1 -
2/pi``).  Ridge on ``n`` samples::

    theta_hat = argmin (1/n) |G - Z theta|^2 + lam |theta|^2 = (Z'Z/n + lam I)^+ Z'G/n     (lam = 0: min-norm)

Deterministic equivalent (Gaussian design, ``n, d -> inf`` at a fixed ratio): the effective regularisation
``kappa > 0`` solves ``lam = kappa (1 - df1(kappa)/n)``, ``df1 = tr Sigma (Sigma + kappa)^-1``, and

* ``theta_hat`` concentrates, in its inner products with fixed vectors, on ``theta_kappa = Sigma (Sigma +
  kappa)^-1 theta*``;
* ``C = Cov(f([x~, y]), g)`` (the output on a test point whose core is replaced by an independent draw ``x~``,
  against its label) is linear in ``theta_hat``: ``C = theta_hat_y' E[y g] = theta_hat_y' S_yx beta``, so
  ``C -> C^Sigma(lam) = (theta_kappa)_y' S_yx beta``;
* ``L = E[(g - theta_hat' z)^2] -> (sigma2 + kappa^2 theta*' Sigma (Sigma + kappa)^-2 theta*) / (1 -
  df2(kappa)/n)``, ``df2 = tr Sigma^2 (Sigma + kappa)^-2``.

At ``lam = 0`` with ``n >= d`` (least squares) ``kappa = 0``: ``theta_kappa = theta*`` and ``C = 0``; with ``n <
d`` (the min-norm interpolator) ``kappa > 0`` solves ``df1(kappa) = n``.  As ``lam -> inf``, ``kappa -> inf`` and
``C -> 0``.  Through ``theta_kappa``, ``(theta_kappa)_y = -kappa [(Sigma + kappa)^-1]_yx beta`` (``theta*_y =
0``); with isotropic ``S_xx`` the block inverse involves the Schur complement ``S_yy - S_yx S_xy`` (the
covariance of ``y`` given ``x``), whence the paper's statement that ``C^Sigma`` is expressed through it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from spuriouslab.activations import get_activation
from spuriouslab.errors import ConfigError


@dataclass(frozen=True)
class RidgePrediction:
    """The deterministic equivalent at one ``lam``: the effective regularisation ``kappa``, the spurious
    correlation ``C`` and the test loss ``L`` (noise included)."""

    lam: float
    kappa: float
    C: float
    L: float


def effective_ridge(eigenvalues: np.ndarray, n: int, lam: float) -> float:
    """``kappa`` solving ``lam = kappa (1 - tr Sigma (Sigma + kappa)^-1 / n)`` for ``Sigma`` of the given
    eigenvalues (``lam >= 0``); 0 for ``lam = 0`` when ``n`` exceeds the rank.

    >>> round(effective_ridge(np.ones(100), 50, 0.0), 6)  # isotropic, d = 2n: df1 = d/(1 + kappa) = n
    1.0
    """
    ev = np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None)
    if lam < 0 or not math.isfinite(lam):
        raise ConfigError(f"ridge: got {lam!r}; a lambda >= 0")

    def excess(kappa: float) -> float:
        return kappa * (1.0 - float(np.sum(ev / (ev + kappa))) / n) - lam

    rank = int(np.sum(ev > 1e-12 * max(1.0, float(ev.max(initial=0.0)))))
    if lam == 0.0 and n >= rank:
        return 0.0
    lo = 1e-300 if lam == 0.0 else 0.0
    # the solution lies above max(lam, the interpolation kappa); excess is increasing there
    hi = max(1.0, lam) * 2.0
    while excess(hi) < 0:
        hi *= 2.0
    if lam == 0.0:  # the root of df1(kappa) = n, the one positive zero of excess
        lo = hi
        while excess(lo) >= 0 and lo > 1e-300:
            lo /= 2.0
    return float(optimize.brentq(excess, lo, hi, xtol=1e-15, rtol=1e-13, maxiter=500))


@dataclass(frozen=True)
class LinearEquivalent:
    """Random features as linear ridge (the follow-up's equivalence): an activation's Hermite coefficients
    ``mu_0``, ``mu_1`` and the energy beyond them ``mu_star2 = E[phi(G)^2] - mu_0^2 - mu_1^2``."""

    activation: str
    mu0: float
    mu1: float
    mu_star2: float

    def ridge(self, ridge: float) -> float:
        """The linear kernel ridge ``lambda~`` (``K = Z Z'/d`` units) equivalent to the RF kernel's ``ridge``:
        ``(mu_star2 + ridge) / mu_1^2``; ``inf`` when ``mu_1 = 0`` (no linear part is learned)."""
        if self.mu1 == 0.0:
            return math.inf
        return (self.mu_star2 + float(ridge)) / self.mu1**2


def linear_equivalent(activation: str) -> LinearEquivalent:
    """The linear ridge that random features of ``activation`` at infinite width amount to, for inputs with
    ``|z|^2 ~ d`` in the proportional regime (``n ~ d``).

    With ``V_ij ~ N(0, 1/d)`` the RF kernel is ``K(z, z') = E_v[phi(v.z) phi(v.z')] = sum_l mu_l^2 rho^l`` with
    ``rho = z.z'/d``.  Off the diagonal ``rho ~ d^-1/2``, so every term of order ``l >= 2`` is negligible there,
    and on it ``rho = 1``: the Gram matrix is ``mu_0^2 11' + mu_1^2 Z Z'/d + mu_star2 I`` up to vanishing terms
    (El Karoui, 2010), and a test row is ``mu_0^2 1' + mu_1^2 z'Z'/d``.  Kernel ridge with ``K + ridge I`` then
    predicts ``z'Z'/d (Z Z'/d + lambda~ I)^-1 G`` with ``lambda~ = (mu_star2 + ridge) / mu_1^2``: linear ridge,
    the nonlinear part of ``phi`` acting as extra regularisation (the constant ``mu_0^2 11'`` fits the labels'
    mean, near 0 for balanced labels, and is left out).

    >>> eq = linear_equivalent("relu")  # mu_0^2 = 1/(2 pi), mu_1^2 = 1/4, E[relu(G)^2] = 1/2
    >>> round(eq.mu_star2, 6), round(eq.ridge(0.0), 6)
    (0.090845, 0.36338)
    """
    fn = get_activation(activation).phi
    mu = fn.coefficients(1)
    mu_star2 = max(fn.second_moment() - float(mu[0] ** 2 + mu[1] ** 2), 0.0)
    return LinearEquivalent(activation, float(mu[0]), float(mu[1]), mu_star2)


def predict(
    sigma: np.ndarray,
    theta_star: np.ndarray,
    d_x: int,
    sigma2: float,
    n: int,
    lams: np.ndarray | list[float],
) -> list[RidgePrediction]:
    """The deterministic equivalent of ``C`` and ``L`` at each ``lam`` (see the module docstring).

    Parameters
    ----------
    sigma : (d, d) array
        The covariance of ``z = [x, y]``, positive semi-definite.
    theta_star : (d,) array
        The best linear predictor of the label (``[beta, 0]``).
    d_x : int
        The core's coordinates (the first ``d_x``).
    sigma2 : float
        The label's variance beyond ``theta*' z``.
    n : int
        Training samples.
    lams : sequence of float
        Ridge values (``>= 0``).
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    theta = np.asarray(theta_star, dtype=np.float64)
    ev, vec = np.linalg.eigh(sigma)
    ev = np.clip(ev, 0.0, None)
    t = vec.T @ theta  # theta* in the eigenbasis
    eyg = (sigma @ theta)[d_x:]  # E[y g] = (Sigma theta*)_y
    out = []
    for lam in lams:
        kappa = effective_ridge(ev, n, float(lam))
        shrink = ev / (ev + kappa) if kappa > 0 else (ev > 0).astype(np.float64)
        theta_k = vec @ (shrink * t)  # Sigma (Sigma + kappa)^-1 theta*
        c = float(theta_k[d_x:] @ eyg)
        if kappa > 0:
            bias = float(np.sum(kappa**2 * ev * t**2 / (ev + kappa) ** 2))
            df2 = float(np.sum(ev**2 / (ev + kappa) ** 2))
        else:
            bias, df2 = 0.0, float(np.sum(ev > 0))
        loss = (sigma2 + bias) / (1.0 - df2 / n) if df2 < n else math.inf
        out.append(RidgePrediction(float(lam), kappa, c, loss))
    return out


def ridge_fit(Z: np.ndarray, G: np.ndarray, lams: np.ndarray | list[float]) -> np.ndarray:
    """``theta_hat`` for each ``lam`` (rows), from one SVD of ``Z`` in float64: ``(Z'Z/n + lam I)^+ Z'G/n``;
    ``lam = 0`` is the min-norm least-squares solution (``Z^+ G``)."""
    Z = np.asarray(Z, dtype=np.float64)
    n = Z.shape[0]
    u, s, vt = np.linalg.svd(Z, full_matrices=False)
    uty = u.T @ np.asarray(G, dtype=np.float64)
    keep = s > s.max(initial=0.0) * max(Z.shape) * np.finfo(np.float64).eps
    rows = []
    for lam in lams:
        factor = np.zeros_like(s)
        factor[keep] = s[keep] / (s[keep] ** 2 + n * float(lam))
        rows.append(vt.T @ (factor * uty))
    return np.asarray(rows)
