import math

import numpy as np
import pytest
import torch

from spuriouslab.data.synthetic import synthetic_memorization
from spuriouslab.kernels.matrices import KernelSpec, gram
from spuriouslab.kernels.solve import fit_kernel


@pytest.mark.parametrize("model,act", [("rf", "relu"), ("rf", "phi4"), ("ntk", "phi2"), ("ntk", "tanh")])
@pytest.mark.parametrize("ridge", [0.0, 0.05])
def test_leave_one_out_identities_by_refitting(model, act, ridge):
    s = synthetic_memorization(seed=1, d=30, alpha=0.5, n_train=20, n_test=1)
    Z, g, Zq = (torch.from_numpy(a) for a in (s.Z, s.g, s.Z_query))
    K = gram(KernelSpec.make(model, act, 200, key=(4,), dtype="float64"), Z, Zq)
    n = 20
    Kt, Kq = K[:n], K[n:]
    fit = fit_kernel(Kt, g, ridge)
    S, F = fit.stability(), fit.alignment(Kq)
    f_train, f_query = fit.predict(Kt), fit.predict(Kq)
    inv_diag = fit.inverse_diag
    for i in range(n):
        keep = [j for j in range(n) if j != i]
        sub = fit_kernel(Kt[keep][:, keep], g[keep], ridge)
        f_minus_train = float(sub.predict(Kt[i : i + 1, keep])[0])
        f_minus_query = float(sub.predict(Kq[i : i + 1, keep])[0])
        # f(z_i) - f_-i(z_i) = (1 - ridge (A^-1)_ii) S_i  (= S_i for the interpolator)
        assert f_train[i] - f_minus_train == pytest.approx(float((1 - ridge * inv_diag[i]) * S[i]), abs=1e-8)
        assert float(g[i]) - f_minus_train == pytest.approx(float(S[i]), abs=1e-8)
        assert f_query[i] - f_minus_query == pytest.approx(float(F[i] * S[i]), abs=1e-8)


def test_singular_gram_falls_back_to_pseudo_inverse():
    # 40 samples, 16 random features: K has rank 16, Cholesky fails; min-norm least squares via eigh
    s = synthetic_memorization(seed=0, d=30, alpha=0.5, n_train=40, n_test=10)
    from spuriouslab.kernels.matrices import explicit_features

    Z, g = torch.from_numpy(s.Z), torch.from_numpy(s.g)
    spec = KernelSpec.make("rf", "relu", 16, key=(0,), dtype="float64")
    fit = fit_kernel(gram(spec, Z), g)
    assert fit.solver == "eigh" and fit.rank == 16
    assert fit.residual_max > 1e-3  # cannot interpolate
    F = explicit_features(spec, Z)
    theta = torch.linalg.pinv(F) @ g
    np.testing.assert_allclose(fit.predict(gram(spec, Z)).numpy(), (F @ theta).numpy(), atol=1e-8)


def test_cholesky_path_is_recorded():
    s = synthetic_memorization(seed=0, d=30, alpha=0.5, n_train=10, n_test=1)
    K = gram(KernelSpec.make("rf", "relu", math.inf), torch.from_numpy(s.Z))
    fit = fit_kernel(K, torch.from_numpy(s.g))
    assert fit.solver == "cholesky" and fit.residual_max < 1e-10 and np.isfinite(fit.cond)


def test_cholesky_that_succeeds_but_is_ill_conditioned_goes_to_eigh():
    # positive definite (Cholesky succeeds) with condition number 1e13 > COND_LIMIT
    from spuriouslab.kernels.solve import COND_LIMIT

    rng = np.random.default_rng(0)
    evals = np.logspace(0, -13, 12)
    K = torch.from_numpy(np.diag(evals))
    L, info = torch.linalg.cholesky_ex(K)
    assert int(info) == 0  # the factorisation itself succeeds
    g = torch.from_numpy(rng.choice([-1.0, 1.0], 12))
    fit = fit_kernel(K, g)
    assert fit.solver == "eigh" and fit.cond == pytest.approx(1e13, rel=1e-6) and fit.cond > COND_LIMIT
    assert fit.rank == 12  # every eigenvalue is above the pseudo-inverse's cut
    np.testing.assert_allclose(fit.dual_coef.numpy(), g.numpy() / evals, rtol=1e-9)
    well = fit_kernel(torch.from_numpy(np.diag(np.logspace(0, -3, 12))), g)
    assert well.solver == "cholesky" and well.cond == pytest.approx(1e3, rel=1e-9)


@pytest.mark.parametrize("width,dtype", [(200, "float64"), (10, "float64"), (1, "float32")])
def test_loo_residuals_of_a_singular_gram_are_the_refitted_ones(width, dtype):
    from spuriouslab.kernels.estimators import RandomFeaturesRegressor

    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 12))
    X[1] = X[5] = X[0]  # duplicated samples: a singular Gram matrix
    y = np.sign(rng.standard_normal(16))
    y[1] = y[5] = y[0]
    model = RandomFeaturesRegressor(width=width, random_state=0, dtype=dtype).fit(X, y)
    assert model.solver_ == "eigh"
    refit = []
    for i in range(len(X)):
        keep = np.arange(len(X)) != i
        other = RandomFeaturesRegressor(width=width, random_state=0, dtype=dtype).fit(X[keep], y[keep])
        refit.append(y[i] - other.predict(X[i : i + 1])[0])
    np.testing.assert_allclose(model.loo_residuals_, refit, atol=1e-6)
