import doctest
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import r2_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from spuriouslab import NTKRegressor, RandomFeaturesRegressor
from spuriouslab.data.synthetic import synthetic_memorization


@pytest.fixture(scope="module")
def data():
    return synthetic_memorization(seed=2, d=30, alpha=0.5, n_train=25, n_test=60)


@pytest.mark.parametrize(
    "cls,kw",
    [
        (RandomFeaturesRegressor, dict(width=500)),
        (NTKRegressor, dict(width=50)),
        (RandomFeaturesRegressor, dict(width="inf")),
        (NTKRegressor, dict(width="inf")),
    ],
)
def test_fit_predict_loo_alignment(data, cls, kw):
    m = cls(activation="relu", random_state=0, **kw).fit(data.Z, data.g)
    assert m.residual_max_ < 1e-8
    np.testing.assert_allclose(m.predict(data.Z), data.g, atol=1e-8)
    pred = m.predict(data.Z_test)
    assert pred.shape == (60,)
    # the metrics are what they say, computed here independently
    assert m.sign_accuracy(data.Z_test, data.g_test) == pytest.approx(np.mean(np.sign(pred) == data.g_test))
    assert m.score(data.Z_test, data.g_test) == pytest.approx(r2_score(data.g_test, pred))
    # leave-one-out residuals equal refitting without each sample (same random features: same random_state)
    for i in [0, 7, 24]:
        keep = np.arange(25) != i
        sub = clone(m).fit(data.Z[keep], data.g[keep])
        assert m.loo_residuals_[i] == pytest.approx(data.g[i] - sub.predict(data.Z[i : i + 1])[0], abs=1e-7)
    F = m.feature_alignment(data.Z_query)
    A = m.alignment_matrix(data.Z_query)
    np.testing.assert_allclose(F, np.diag(A), atol=1e-12)
    # f(q_i) - f_-i(q_i) = F_i S_i
    sub = clone(m).fit(data.Z[1:], data.g[1:])
    gap = m.predict(data.Z_query[:1])[0] - sub.predict(data.Z_query[:1])[0]
    assert gap == pytest.approx(F[0] * m.loo_residuals_[0], abs=1e-7)


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


@parametrize_with_checks(
    [
        RandomFeaturesRegressor(width=2000, random_state=0),
        NTKRegressor(random_state=0),
        RandomFeaturesRegressor(width="inf", activation="phi2"),
    ]
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_not_fitted_pickle_and_column_y(data, tmp_path):
    m = RandomFeaturesRegressor(activation="hermite:0,1,0.5", width=300, random_state=1)
    with pytest.raises(NotFittedError):
        m.predict(data.Z_test)
    with pytest.raises(NotFittedError):
        m.feature_alignment(data.Z_query)
    with pytest.warns(Warning, match="column-vector y"):
        m.fit(data.Z, data.g[:, None])
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(m))
    again = pickle.loads(path.read_bytes())
    np.testing.assert_array_equal(again.predict(data.Z_test), m.predict(data.Z_test))
    assert again.spec_.activation.name == "hermite:0,1,0.5"


def test_docstring_examples_run():
    import spuriouslab.kernels.estimators as estimators

    torch.set_num_threads(2)
    result = doctest.testmod(estimators)
    assert result.attempted >= 10 and result.failed == 0
    for cls in (RandomFeaturesRegressor, NTKRegressor):
        for section in ("Parameters", "Attributes", "Examples"):
            assert section in cls.__doc__


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
