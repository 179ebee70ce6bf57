"""The deterministic equivalent of linear ridge on ``z = [x, y]`` (spuriouslab.theory.ridge) against Monte Carlo:
the spurious correlation C and the test loss L agree within a tolerance that shrinks with d, least squares at
n > d gives C = 0, and the effective ridge solves its fixed-point equation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spuriouslab.theory.ridge import effective_ridge, predict, ridge_fit


def _covariance(rng, d, alpha, c):
    """Isotropic core, ``y = c P x + sqrt(1 - c^2) n``: the covariance, the core's size and ``P``."""
    dx = int(round(d * (1 - alpha)))
    dy = d - dx
    P = rng.standard_normal((dy, dx)) / np.sqrt(dx)
    S = np.eye(d)
    S[dx:, :dx], S[:dx, dx:] = c * P, c * P.T
    S[dx:, dx:] = c * c * P @ P.T + (1 - c * c) * np.eye(dy)
    return S, dx, P


def _monte_carlo(seed, d, n, c, lams, reps):
    """Per draw of the training set (g = sign(u'x)), C and L of the fitted ridge, each exact given the fit:
    ``C = theta_y' E[y g]`` (the test point's core replaced by an independent draw adds nothing to the
    covariance) and ``L = E[g^2] - 2 theta' Sigma theta* + theta' Sigma theta``; and the prediction."""
    rng = np.random.default_rng(seed)
    S, dx, P = _covariance(rng, d, 0.5, c)
    u = rng.standard_normal(dx)
    u /= np.linalg.norm(u)
    theta = np.concatenate([math.sqrt(2 / math.pi) * u, np.zeros(d - dx)])
    pred = predict(S, theta, dx, 1 - 2 / math.pi, n, lams)
    target = S @ theta  # E[z g]
    C, L = [], []
    for _ in range(reps):
        x = rng.standard_normal((n, dx))
        y = c * x @ P.T + math.sqrt(1 - c * c) * rng.standard_normal((n, d - dx))
        thetas = ridge_fit(np.hstack([x, y]), np.sign(x @ u), lams)
        C.append([t[dx:] @ target[dx:] for t in thetas])
        L.append([1 - 2 * t @ target + t @ S @ t for t in thetas])
    return pred, np.asarray(C), np.asarray(L)


def test_the_effective_ridge_solves_its_fixed_point():
    ev = np.linspace(0.1, 3, 200)
    for n, lam in [(100, 0.0), (100, 0.3), (400, 0.0), (400, 2.0)]:
        kappa = effective_ridge(ev, n, lam)
        assert kappa > 0 if n < 200 or lam > 0 else kappa == 0
        assert kappa * (1 - np.sum(ev / (ev + kappa)) / n) == pytest.approx(lam, abs=1e-10)
    assert effective_ridge(np.ones(100), 50, 0.0) == pytest.approx(1.0)  # d/(1 + kappa) = n


def test_the_deterministic_equivalent_agrees_with_monte_carlo_better_as_d_grows():
    """C and L at lambda = 0 (the min-norm interpolator, n = d/2), 0.1 and 1, at d = 100 and 400: the Monte Carlo
    mean is within 3 standard errors of the prediction, and a single draw's C deviates from it by a root mean
    square that halves as d quadruples (concentration at rate d^-1/2)."""
    lams = [0.0, 0.1, 1.0]
    spread = {}
    for d, reps in [(100, 200), (400, 50)]:
        pred, C, L = _monte_carlo(7, d, d // 2, 0.6, lams, reps)
        for j, p in enumerate(pred):
            for measured, predicted in [(C[:, j], p.C), (L[:, j], p.L)]:
                se = measured.std(ddof=1) / math.sqrt(reps)
                assert abs(measured.mean() - predicted) < 3 * se + 1e-3 * abs(predicted), (d, p, measured.mean())
        spread[d] = np.sqrt(np.mean((C - np.array([p.C for p in pred])) ** 2))
    assert 0.35 < spread[400] / spread[100] < 0.7, spread


def test_least_squares_with_more_samples_than_dimensions_learns_no_spurious_correlation():
    """n > d at lambda = 0: kappa = 0, theta_kappa = theta* (no weight on y), so C = 0; measured C is noise
    around 0, far below C of the interpolator at n = d/2."""
    pred, C, _ = _monte_carlo(3, 100, 400, 0.6, [0.0], 20)
    assert pred[0].kappa == 0 and pred[0].C == pytest.approx(0.0, abs=1e-12)
    interpolator, _, _ = _monte_carlo(3, 100, 50, 0.6, [0.0], 1)
    assert abs(C[:, 0].mean()) < 0.1 * interpolator[0].C


def test_c_vanishes_as_lambda_grows_and_rises_first():
    rng = np.random.default_rng(0)
    S, dx, _ = _covariance(rng, 200, 0.5, 0.6)
    u = rng.standard_normal(dx)
    theta = np.concatenate([u / np.linalg.norm(u), np.zeros(200 - dx)])
    pred = predict(S, theta, dx, 0.3, 300, [0.0, 0.01, 0.1, 1.0, 1e2, 1e4])
    C = [p.C for p in pred]
    assert abs(C[0]) < 1e-12 and C[1] > 0 and C[-1] < 1e-3 * max(C)  # n > d: from 0, up, then back to 0


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--set", "spurious_spectrum=-1"], "spurious_spectrum"),
        (["--set", "spurious_spectrum=11"], "spurious_spectrum"),
        (["--set", "correlation=1"], "correlation"),  # c = 1 would make y a function of x: Sigma singular
        (["--set", "correlation=-0.2"], "correlation"),
        (["--set", "model=linear,rf"], "model=linear runs alone"),
        (["--set", "model=linear", "--set", "activation=relu,phi2"], "model=linear runs alone"),
        (["--set", "data=digits", "--set", "classes=1,7", "--set", "spurious_spectrum=2"], "data=synthetic"),
    ],
)
def test_bad_covariance_and_model_settings_are_one_line(cli, tmp_path, args, needle):
    from conftest import one_line_exit_2

    one_line_exit_2(cli("run", "ridge", *args, "--out", tmp_path / "x"), needle)
    assert not (tmp_path / "x").exists()


def test_a_linear_ridge_run_records_its_prediction_beside_its_measurement(cli, tmp_path):
    """``model=linear`` from the CLI: every record holds C and L measured and predicted; at n > d and lambda = 0
    (least squares) the prediction is C = 0, and at lambda = 1000 both are ~0; the report draws the theory."""
    import pandas as pd

    from conftest import assert_figures, sets

    code, _, err = cli(
        "run", "ridge",
        *sets("model=linear", "d=60", "n_train=30,120", "n_test=400", "alpha=0.5", "correlation=0.6"),
        *sets("ridge=0,0.1,1000", "spurious_spectrum=0,2", "seeds=2"),
        "--out", tmp_path / "r", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "r" / "results.parquet")
    assert len(df) == 2 * 3 * 2 * 2 and df[["spurious_corr_pred", "test_mse_pred", "kappa"]].notna().all().all()
    ls = df[(df.n_train == 120) & (df.ridge == 0)]
    assert (ls.kappa == 0).all() and np.allclose(ls.spurious_corr_pred, 0, atol=1e-12)
    big = df[df.ridge == 1000]
    assert (big.spurious_corr.abs() < 3e-3).all() and (big.spurious_corr_pred.abs() < 1e-3).all()
    assert_figures(tmp_path / "r", "spurious_spectrum-0.0__ridge_correlation")
