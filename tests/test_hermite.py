import math

import numpy as np
import pytest

from spuriouslab.activations import ACTIVATIONS, get_activation, hermite


def test_relu_known_coefficients():
    mu = get_activation("relu").phi.coefficients(6)
    assert mu[0] == pytest.approx(1 / math.sqrt(2 * math.pi), abs=1e-12)
    assert mu[1] == pytest.approx(0.5, abs=1e-12)
    assert mu[2] == pytest.approx(1 / math.sqrt(4 * math.pi), abs=1e-12)
    assert mu[3] == 0.0 and mu[5] == 0.0
    # sum of squares of all coefficients = E[relu(G)^2] = 1/2
    assert np.sum(hermite.relu_coefficients(4000) ** 2) == pytest.approx(0.5, abs=1e-5)


def test_step_known_coefficients():
    mu = get_activation("relu").dphi.coefficients(4)
    assert mu[0] == pytest.approx(0.5) and mu[1] == pytest.approx(1 / math.sqrt(2 * math.pi))
    assert mu[2] == 0.0


@pytest.mark.parametrize("name,closed", [("relu", hermite.relu_coefficients), ("step", hermite.step_coefficients)])
def test_quadrature_matches_closed_forms(name, closed):
    fn = (lambda x: np.maximum(x, 0.0)) if name == "relu" else (lambda x: (x > 0).astype(float))
    q = hermite.quadrature_coefficients(fn, 30)
    np.testing.assert_allclose(q, closed(30), atol=1e-8, rtol=0)


@pytest.mark.parametrize("name,expected", [("phi2", [0, 1, 1]), ("phi4", [0, 1, 0, 0, 1])])
def test_series_activations_quadrature(name, expected):
    fn = get_activation(name).phi
    q = hermite.quadrature_coefficients(fn.numpy_fn, 8)
    np.testing.assert_allclose(q[: len(expected)], expected, atol=1e-8)
    np.testing.assert_allclose(q[len(expected) :], 0, atol=1e-8)
    np.testing.assert_allclose(fn.coefficients(8), q, atol=1e-8)


def test_ntk_convention_and_exact_derivative():
    np.testing.assert_allclose(get_activation("phi2").dphi.coefficients(3), [1, 1, 0, 0])
    np.testing.assert_allclose(get_activation("phi4").dphi.coefficients(4), [1, 0, 0, 1, 0])
    # user series use the exact derivative: h_l' = sqrt(l) h_{l-1}
    np.testing.assert_allclose(get_activation("hermite:0,1,1").dphi.coefficients(2), [1, math.sqrt(2), 0])


def test_hermite_polynomials_orthonormal():
    x, w = hermite.gaussian_quadrature()
    T = hermite.hermite_table(x, 12)
    np.testing.assert_allclose((T * w) @ T.T, np.eye(13), atol=1e-10)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_torch_and_numpy_agree(name):
    import torch

    act = get_activation(name)
    x = np.linspace(-3, 3, 41)
    for fn in (act.phi, act.dphi):
        t = fn(torch.from_numpy(x.copy())).numpy()
        np.testing.assert_allclose(t, fn.numpy_fn(x) * np.ones_like(x), atol=1e-10, err_msg=fn.name)


def test_series_kernel_is_mehler():
    # E[phi(a) phi(b)] for correlated unit Gaussians vs sum mu_l^2 rho^l, by 2-D quadrature
    rho = 0.37
    mu = get_activation("tanh").phi.coefficients(40)
    x, w = hermite.gaussian_quadrature(200, 12.0)
    a = x[:, None]
    b = rho * x[:, None] + math.sqrt(1 - rho**2) * x[None, :]
    exact = float(np.sum(w[:, None] * w[None, :] * np.tanh(a) * np.tanh(b)))
    series = float(hermite.series_kernel(mu, mu, np.array([[rho]]))[0, 0])
    assert series == pytest.approx(exact, abs=1e-9)


def test_bad_hermite_names():
    from spuriouslab.errors import ConfigError

    for bad in ["hermite:", "hermite:a,b", "hermite:0,0", "nope"]:
        with pytest.raises(ConfigError):
            get_activation(bad)
