import math

import numpy as np
import pytest
import torch

import spuriouslab.kernels.matrices as matrices
from spuriouslab.activations import ACTIVATIONS
from spuriouslab.data.synthetic import synthetic_memorization
from spuriouslab.kernels.matrices import KernelSpec, explicit_features, gram, grams
from spuriouslab.kernels.solve import fit_kernel

ALL = sorted(ACTIVATIONS) + ["hermite:0.2,0.7,0,0.4"]


@pytest.fixture(scope="module")
def small():
    s = synthetic_memorization(seed=3, d=30, alpha=0.5, n_train=20, n_test=40)
    return torch.from_numpy(s.Z), torch.from_numpy(s.g), torch.from_numpy(s.Z_test)


@pytest.mark.parametrize("model", ["rf", "ntk"])
@pytest.mark.parametrize("act", ALL)
def test_gram_predictions_equal_explicit_pinv(small, model, act):
    Z, g, Zt = small
    spec = KernelSpec.make(model, act, 200, key=(7,), dtype="float64")
    K = gram(spec, Z, Zt)
    fit = fit_kernel(K[:20], g)
    pred = fit.predict(K[20:])
    F = explicit_features(spec, torch.cat([Z, Zt]))
    theta = torch.linalg.pinv(F[:20]) @ g
    np.testing.assert_allclose(pred.numpy(), (F[20:] @ theta).numpy(), atol=1e-8)
    assert fit.residual_max < 1e-8


@pytest.mark.parametrize("model", ["rf", "ntk"])
@pytest.mark.parametrize("act", ["relu", "phi2", "tanh"])
def test_ridge_matches_sklearn_kernel_ridge(small, model, act):
    from sklearn.kernel_ridge import KernelRidge

    Z, g, Zt = small
    K = gram(KernelSpec.make(model, act, 200, key=(1,), dtype="float64"), Z, Zt)
    for lam in [1e-3, 0.1, 2.0]:
        ours = fit_kernel(K[:20], g, lam).predict(K[20:]).numpy()
        kr = KernelRidge(alpha=lam, kernel="precomputed").fit(K[:20].numpy(), g.numpy())
        np.testing.assert_allclose(ours, kr.predict(K[20:].numpy()), atol=1e-10)


def test_result_independent_of_chunk_size_and_extra_rows(small, monkeypatch):
    Z, _, Zt = small
    spec = KernelSpec.make("rf", "relu", 3000, key=(5,), dtype="float64")
    K1 = gram(spec, Z, Zt)
    monkeypatch.setattr(matrices, "_chunk_blocks", lambda rows, k, device: 1)
    K2 = gram(spec, Z, Zt)
    K3 = gram(spec, Z)  # fewer rows, same random features
    np.testing.assert_allclose(K1.numpy(), K2.numpy(), atol=1e-12)
    np.testing.assert_allclose(K1[:20].numpy(), K3.numpy(), atol=1e-12)


def test_shared_pass_equals_separate(small):
    Z, _, Zt = small
    specs = [KernelSpec.make("ntk", a, 500, key=(2,), dtype="float64") for a in ["relu", "phi2", "tanh"]]
    together = grams(specs, Z, Zt)
    for s, K in zip(specs, together, strict=True):
        np.testing.assert_allclose(K.numpy(), gram(s, Z, Zt).numpy(), atol=1e-12)


@pytest.mark.parametrize("model", ["rf", "ntk"])
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_infinite_width_is_the_monte_carlo_limit(model, act):
    """K_inf equals the mean of 30 independent finite-width Grams within 6 standard errors
    (and the check has power: a kernel 10% off is rejected)."""
    s = synthetic_memorization(seed=0, d=25, alpha=0.4, n_train=8, n_test=1)
    Z = torch.from_numpy(s.Z)
    K_inf = gram(KernelSpec.make(model, act, math.inf), Z).numpy()
    draws = np.stack([gram(KernelSpec.make(model, act, 8192, key=(r,), dtype="float64"), Z).numpy() for r in range(30)])
    mean, se = draws.mean(0), draws.std(0, ddof=1) / np.sqrt(len(draws))
    z = np.abs(K_inf - mean) / np.maximum(se, 1e-12)
    assert z.max() < 6.0, (z.max(), act, model)
    if se.max() > 0:  # (identity NTK is exact at any width)
        assert (np.abs(1.1 * K_inf - mean) / np.maximum(se, 1e-12)).max() > 6.0
