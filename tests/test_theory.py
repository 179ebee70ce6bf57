import math

import numpy as np
import pandas as pd
import pytest

from conftest import assert_figures
from spuriouslab.experiments import get_experiment, run_points
from spuriouslab.theory.alignment import predict_alignment


def _arccos0(a):
    return (math.pi - math.acos(a)) / (2 * math.pi)


def _arccos1(a):
    t = math.acos(a)
    return (math.sin(t) + (math.pi - t) * math.cos(t)) / (2 * math.pi)


@pytest.mark.parametrize("alpha", [0.1, 0.25, 0.5, 0.9])
def test_limits_in_closed_form(alpha):
    p = predict_alignment("phi2", "rf", alpha)
    assert p.gamma_many == pytest.approx(alpha**2) and p.gamma_few == pytest.approx((alpha + alpha**2) / 2)
    p = predict_alignment("phi4", "ntk", alpha)  # phi4' = h0 + h3
    assert p.gamma_many == pytest.approx(alpha * alpha**3) and p.gamma_few == pytest.approx(alpha * (1 + alpha**3) / 2)
    # ReLU via the arc-cosine kernels: sum_l mu_l^2 alpha^l = k1(alpha), of the step k0(alpha)
    rf = predict_alignment("relu", "rf", alpha)
    above = 0.5 - 1 / (2 * math.pi) - 0.25
    assert rf.gamma_many == pytest.approx((_arccos1(alpha) - 1 / (2 * math.pi) - alpha / 4) / above, abs=1e-8)
    assert rf.gamma_few == pytest.approx((_arccos1(alpha) - 1 / (2 * math.pi)) / (0.5 - 1 / (2 * math.pi)), abs=1e-8)
    ntk = predict_alignment("relu", "ntk", alpha)
    assert ntk.gamma_many == pytest.approx(alpha * (_arccos0(alpha) - 0.25) / 0.25, abs=1e-8)
    assert ntk.gamma_few == pytest.approx(alpha * _arccos0(alpha) / 0.5, abs=1e-8)


def test_finite_psi_interpolates_between_the_limits():
    few, many = predict_alignment("relu", "rf", 0.5).gamma_few, predict_alignment("relu", "rf", 0.5).gamma_many
    preds = [predict_alignment("relu", "rf", 0.5, n, 1000).gamma_pred for n in [1, 10, 100, 1000, 10_000, 10**7]]
    assert all(a >= b for a, b in zip(preds, preds[1:], strict=False))
    assert preds[-1] == pytest.approx(many, abs=1e-3)
    # 1 << N << d: the plateau gamma_few; at N = 1 the rank-one constant block is fully present (l >= 0)
    assert predict_alignment("relu", "rf", 0.5, 10**4, 10**12).gamma_pred == pytest.approx(few, abs=1e-3)
    assert preds[0] > few
    # the refinement touches only RF activations with a constant term
    for act, model in [("phi2", "rf"), ("relu", "ntk")]:
        p = predict_alignment(act, model, 0.5, 1, 1000)
        assert p.gamma_pred == pytest.approx(p.gamma_few)


def _measure(model, width, acts, d=200, ns=(50, 100, 400), alphas=(0.25, 0.5), seeds=2):
    exp = get_experiment("memorization")
    cfg = exp.make_config(
        dict(
            d=d,
            alpha=list(alphas),
            n_train=list(ns),
            n_test=1,
            model=[model],
            activation=list(acts),
            width=[width],
            seeds=seeds,
            nested=True,
        )
    )
    return (
        pd.DataFrame(run_points(exp, cfg))
        .groupby(["activation", "alpha", "n_train"])[["alignment_mean", "gamma_pred"]]
        .mean()
    )


@pytest.mark.parametrize("model,width", [("rf", 20000), ("ntk", 2000)])
def test_measured_alignment_matches_the_finite_psi_prediction(model, width):
    """d=200, N in {50,100,400}, alpha in {0.25, 0.5}: within 0.02 for phi2, phi4, relu.

    (The NTK uses k=2000: at k=200 the phi4 NTK at alpha=0.5 sits 0.018-0.023 above the prediction.)"""
    agg = _measure(model, width, ["phi2", "phi4", "relu"])
    gap = (agg.alignment_mean - agg.gamma_pred).abs()
    assert gap.max() < 0.02, gap.sort_values().tail(3)
    # and the prediction is informative: the alignment really moves with alpha and N
    assert agg.alignment_mean.max() - agg.alignment_mean.min() > 0.2


def test_spurious_correlation_metric():
    exp = get_experiment("memorization")
    cfg = exp.make_config(
        dict(
            d=100,
            alpha=[0.5],
            n_train=[100],
            n_test=2000,
            model=["rf"],
            activation=["relu"],
            width=["inf"],
            correlation=[0.0, 0.5, 0.9],
            spurious_corr=True,
            seeds=10,
        )
    )
    df = pd.DataFrame(run_points(exp, cfg))
    by_c = df.groupby("correlation").spurious_corr
    mean, se = by_c.mean(), by_c.std() / np.sqrt(by_c.count())
    assert abs(mean[0.0]) < 3 * se[0.0] + 1e-3, (mean, se)
    assert mean[0.5] > 3 * se[0.5] and mean[0.9] > mean[0.5] + 2 * se[0.9]
    assert (df.memorization_cov > 0).all()


def test_alignment_and_ridge_experiments_run_from_the_cli(cli, tmp_path):
    code, stdout, err = cli(
        "run",
        "alignment",
        "--set",
        "d=40",
        "--set",
        "n_train=10,40,160",
        "--set",
        "alpha=0.25,0.75",
        "--set",
        "activation=relu,tanh",
        "--set",
        "seeds=1",
        "--set",
        "n_test=10",
        "--out",
        tmp_path / "a",
        "--no-progress",
    )
    assert code == 0, err
    assert "measured vs predicted" in stdout and "gap" in stdout
    assert_figures(tmp_path / "a", "alignment_vs_alpha")
    code, stdout, err = cli(
        "run",
        "ridge",
        "--set",
        "d=40",
        "--set",
        "n_train=40",
        "--set",
        "n_test=100",
        "--set",
        "ridge=0,0.01,1",
        "--set",
        "correlation=0,0.8",
        "--set",
        "seeds=2",
        "--set",
        "model=rf",
        "--out",
        tmp_path / "r",
        "--no-progress",
    )
    assert code == 0, err
    assert "Test-optimal lambda" in stdout
    assert_figures(tmp_path / "r", "ridge_memorization", "ridge_correlation")
    df = pd.read_parquet(tmp_path / "r" / "results.parquet")
    assert len(df) == 3 * 2 * 2 and df.spurious_corr.notna().all()
