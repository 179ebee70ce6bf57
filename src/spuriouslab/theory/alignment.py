"""Predictions of the mean feature alignment (Bombari & Mondelli, 2024).

With ``alpha = d_y / d`` and Hermite energies ``e_l = mu_l^2`` of ``phi`` (RF) or of ``phi'`` (NTK):

* many samples (N >> d):  gamma_RF  = sum_{l>=2} e_l alpha^l / sum_{l>=2} e_l,
                          gamma_NTK = alpha * sum_{l>=1} e_l alpha^l / sum_{l>=1} e_l;
* few samples (N << d):   the same sums from one order lower (l >= 1 for RF, l >= 0 for NTK);
* in between, with psi = (N - 1)/d: the "linear block" (e_1 for RF, e_0 for NTK; the part of the kernel
  of rank ~d) survives the projection on the span of the other training samples with a fraction
  ``r(psi) = (1/2)[1 - psi - lam + sqrt((1 - psi - lam)^2 + 4 lam)]``, ``lam`` = (energy above the linear
  block) / (energy of the linear block), and
  F_RF(psi) = [alpha e_1 r + sum_{l>=2} e_l alpha^l] / [e_1 r + sum_{l>=2} e_l]
  (NTK: e_0 as the linear block, alpha^0 for it, and the overall factor alpha).
  r = 1 at psi = 0 (the few-sample limit) and r -> 0 as psi -> inf (the many-sample limit).

Refinement (ours, not in the paper): the RF constant term (l = 0, e.g. mu_0^2 = 1/(2 pi) for ReLU) is a
rank-one block that the other N - 1 samples explain almost entirely; the part that survives,
``r_0 = lam_0 / (lam_0 + N - 1)`` with ``lam_0 = (total energy - e_0) / e_0``, enters the finite-N prediction
as a block with ``alpha^0 = 1``.  It matters only for N of a few tens (at d = 500, alpha = 0.1, N = 10 it moves
the ReLU prediction by 0.07, onto the measurement) and vanishes as N grows, so the limits are unchanged.

Regimes: ``gamma_few`` is the plateau for 1 << N << d, ``gamma_many`` the limit N >> d, ``gamma_pred`` any N
(with the refinement above).  All hold for the min-norm interpolator (ridge 0) on isotropic Gaussian data with
independent core and spurious parts and wide models (k >> N for RF, k d >> N for the NTK); the finite-psi curve
is a heuristic interpolation checked against measurements (``spuriouslab run alignment``, and the tests:
within 0.02 at d = 200 for phi2, phi4, relu, RF and NTK, alpha 0.25 and 0.5, N in {50, 100, 400}).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from spuriouslab.activations import Fn, get_activation

ORDER_CLOSED = 400  # closed forms / finite series: cheap to take far
ORDER_QUADRATURE = 60  # smooth activations by quadrature: the rest is read off the total energy


def energies(fn: Fn) -> tuple[np.ndarray, float]:
    """``(e_0..e_L, total)``: squared Hermite coefficients and the total energy ``E[f(G)^2]``."""
    order = ORDER_QUADRATURE if (fn.series is None and fn.closed_coefficients is None) else ORDER_CLOSED
    if fn.series is not None:
        order = len(fn.series) - 1
    mu = fn.coefficients(order)
    return mu**2, max(fn.second_moment(), float(np.sum(mu**2)))


def _weighted(e: np.ndarray, alpha: float, start: int) -> float:
    ls = np.arange(len(e))
    return float(np.sum((e * alpha**ls)[start:]))


@dataclass(frozen=True)
class AlignmentPrediction:
    model: str
    activation: str
    alpha: float
    gamma_many: float  # N >> d
    gamma_few: float  # N << d
    gamma_pred: float | None = None  # at psi = (N - 1)/d, when N and d are given
    psi: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _ratio(num: float, den: float) -> float:
    return num / den if den > 1e-300 else math.nan


def predict_alignment(
    activation: str, model: str, alpha: float, n: int | None = None, d: int | None = None
) -> AlignmentPrediction:
    """Both limits of the mean feature alignment and, given ``n`` and ``d``, the finite-psi prediction."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    fn = get_activation(activation).fn(model)
    e, total = energies(fn)
    lin = 1 if model == "rf" else 0  # order of the linear block
    factor = 1.0 if model == "rf" else alpha
    e_lin = e[lin] if len(e) > lin else 0.0
    above = total - float(np.sum(e[: lin + 1]))  # exact energy above the linear block
    tail = total - float(np.sum(e))  # energy beyond the computed orders (weighted by alpha^l ~ 0)
    w_above = _weighted(e, alpha, lin + 1) + tail * alpha ** len(e)
    many = factor * _ratio(w_above, above)
    few = factor * _ratio(e_lin * alpha**lin + w_above, e_lin + above)
    pred = psi = None
    if n is not None and d is not None:
        psi = (n - 1) / d
        if e_lin <= 0:
            r = 0.0
        else:
            lam = above / e_lin
            b = 1 - psi - lam
            r = 0.5 * (b + math.sqrt(b * b + 4 * lam))
        e_const = e[0] if model == "rf" else 0.0
        r0 = 0.0
        if e_const > 0:
            lam0 = (total - e_const) / e_const
            r0 = lam0 / (lam0 + n - 1)
        pred = factor * _ratio(e_const * r0 + alpha**lin * e_lin * r + w_above, e_const * r0 + e_lin * r + above)
    return AlignmentPrediction(
        model, activation, float(alpha), float(many), float(few), None if pred is None else float(pred), psi
    )


def coefficient_table(activation: str, order: int = 8, derivative: bool = False) -> np.ndarray:
    return get_activation(activation).fn("ntk" if derivative else "rf").coefficients(order)


__all__ = ["AlignmentPrediction", "coefficient_table", "energies", "predict_alignment"]
