import numpy as np
import pytest
from sklearn.base import clone

from spuriouslab import NTKRegressor, RandomFeaturesRegressor
from spuriouslab.data.synthetic import synthetic_memorization


@pytest.fixture(scope="module")
def data():
    return synthetic_memorization(seed=2, d=30, alpha=0.5, n_train=25, n_test=60)


@pytest.mark.parametrize("cls,kw", [(RandomFeaturesRegressor, dict(width=500)), (NTKRegressor, dict(width=50)),
                                    (RandomFeaturesRegressor, dict(width="inf")), (NTKRegressor, dict(width="inf"))])
def test_fit_predict_loo_alignment(data, cls, kw):
    m = cls(activation="relu", random_state=0, **kw).fit(data.Z, data.g)
    assert m.residual_max_ < 1e-8
    np.testing.assert_allclose(m.predict(data.Z), data.g, atol=1e-8)
    assert m.predict(data.Z_test).shape == (60,)
    assert m.loo_residuals_.shape == (25,)
    F = m.feature_alignment(data.Z_query)
    A = m.alignment_matrix(data.Z_query)
    np.testing.assert_allclose(F, np.diag(A), atol=1e-12)
    assert 0 <= m.sign_accuracy(data.Z_test, data.g_test) <= 1
    assert np.isfinite(m.score(data.Z_test, data.g_test))


def test_sklearn_conventions(data):
    m = RandomFeaturesRegressor(activation="tanh", width=300, ridge=0.1, random_state=4)
    assert m.get_params()["width"] == 300
    m.set_params(width=400)
    assert clone(m).get_params() == m.get_params()
    p1 = m.fit(data.Z, data.g).predict(data.Z_test)
    p2 = clone(m).fit(data.Z, data.g).predict(data.Z_test)
    np.testing.assert_array_equal(p1, p2)  # same random_state, same model
    p3 = clone(m).set_params(random_state=5).fit(data.Z, data.g).predict(data.Z_test)
    assert not np.allclose(p1, p3)


def test_input_validation(data):
    m = NTKRegressor(width=20, random_state=0).fit(data.Z, data.g)
    with pytest.raises(ValueError, match="features"):
        m.predict(data.Z_test[:, :10])
    with pytest.raises(ValueError):
        RandomFeaturesRegressor(width=0).fit(data.Z, data.g)
    with pytest.raises(ValueError):
        RandomFeaturesRegressor(ridge=-1).fit(data.Z, data.g)
    with pytest.raises(ValueError):
        RandomFeaturesRegressor().fit(data.Z, data.g[:5])
