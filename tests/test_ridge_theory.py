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


def test_the_relu_effective_ridge_is_its_hermite_energy_beyond_the_linear_term():
    """lambda~ = (mu_star^2 + lambda) / mu_1^2 with mu_star^2 = E[relu(G)^2] - mu_0^2 - mu_1^2 = 1/4 - 1/(2 pi),
    against the Hermite sum sum_{l >= 2} mu_l^2 of ReLU's closed-form coefficients (its tail beyond order L
    decays as L^-3/2); tanh is odd (mu_0 = 0) and phi2 has no linear part (lambda~ infinite)."""
    from spuriouslab.activations.hermite import relu_coefficients
    from spuriouslab.theory.ridge import linear_equivalent

    eq = linear_equivalent("relu")
    mu = relu_coefficients(4000)
    assert eq.mu0 == pytest.approx(1 / math.sqrt(2 * math.pi)) and eq.mu1 == pytest.approx(0.5)
    assert eq.mu_star2 == pytest.approx(0.25 - 1 / (2 * math.pi), abs=1e-9)
    assert eq.mu_star2 == pytest.approx(float(np.sum(mu[2:] ** 2)), abs=5e-5)
    assert eq.ridge(0.3) == pytest.approx((eq.mu_star2 + 0.3) * 4)
    assert linear_equivalent("tanh").mu0 == pytest.approx(0.0, abs=1e-12)
    assert linear_equivalent("hermite:0,0,1").ridge(0.0) == math.inf


def test_an_activation_without_a_linear_part_is_predicted_to_learn_nothing_linear():
    """mu_1 = 0 (a pure second Hermite polynomial): lambda~ is infinite, so the linear theory's limit: C = 0 and
    L = E[g^2] = 1, with no effective regularisation to report."""
    from spuriouslab.data.synthetic import synthetic_memorization
    from spuriouslab.experiments.memorization.run import linear_ridge_predictions

    data = synthetic_memorization(0, 40, 0.5, 20, 10, 0.6)
    out = linear_ridge_predictions(data, 20, [0.0, 1.0], "hermite:0,0,1")
    for r in (0.0, 1.0):
        assert out[r]["spurious_corr_pred"] == 0 and out[r]["test_mse_pred"] == 1 and math.isnan(out[r]["kappa"])
        assert out[r]["ridge_equiv"] == math.inf


def test_random_features_fit_like_linear_ridge_at_the_effective_lambda(cli, tmp_path):
    """RF at infinite width (ReLU, tanh) and linear ridge from the CLI on the same data draws (same seeds): each
    RF record carries lambda~ and the linear theory at it, equal to the linear run's prediction at ridge =
    lambda~; the measured C and L of RF at ridge r are those of linear ridge at lambda~ up to the vanishing
    nonlinear terms."""
    import pandas as pd

    from conftest import sets
    from spuriouslab.theory.ridge import linear_equivalent

    common = sets("d=300", "n_train=150", "n_test=1000", "alpha=0.5", "correlation=0.6", "seeds=2")
    code, _, err = cli(
        "run", "ridge", *common, *sets("model=rf", "activation=relu,tanh", "width=inf", "ridge=0,0.3"),
        "--out", tmp_path / "rf", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    rf = pd.read_parquet(tmp_path / "rf" / "results.parquet")
    lams = sorted({linear_equivalent(a).ridge(r) for a in ("relu", "tanh") for r in (0.0, 0.3)})
    code, _, err = cli(
        "run", "ridge", *common, *sets("model=linear", "ridge=" + ",".join(map(repr, lams))),
        "--out", tmp_path / "lin", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    lin = pd.read_parquet(tmp_path / "lin" / "results.parquet")
    for a in ("relu", "tanh"):
        for r in (0.0, 0.3):
            eq = linear_equivalent(a).ridge(r)
            one = rf[(rf.activation == a) & (rf.ridge == r)].sort_values("seed")
            other = lin[np.isclose(lin.ridge, eq)].sort_values("seed")
            assert np.allclose(one.ridge_equiv, eq)
            assert np.allclose(one.spurious_corr_pred.to_numpy(), other.spurious_corr_pred.to_numpy(), rtol=1e-9)
            assert np.allclose(one.test_mse_pred.to_numpy(), other.test_mse_pred.to_numpy(), rtol=1e-9)
            assert np.abs(one.spurious_corr.to_numpy() - other.spurious_corr.to_numpy()).max() < 0.004
            assert np.abs(one.test_mse.to_numpy() - other.test_mse.to_numpy()).max() < 0.03
