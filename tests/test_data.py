import numpy as np
import pytest

from spuriouslab.data.synthetic import synthetic_memorization
from spuriouslab.errors import ConfigError


def test_shapes_labels_and_queries():
    s = synthetic_memorization(seed=0, d=100, alpha=0.25, n_train=50, n_test=30)
    assert (s.d_x, s.d_y) == (75, 25) and s.alpha == 0.25
    assert s.Z.shape == (50, 100) and s.Z_test.shape == (30, 100) and s.Z_query.shape == (50, 100)
    np.testing.assert_array_equal(s.g, np.where(s.Z[:, :75] @ s.teacher >= 0, 1.0, -1.0))
    # a query keeps the sample's spurious part and has a fresh, independent core
    np.testing.assert_array_equal(s.Z_query[:, 75:], s.Z[:, 75:])
    assert not np.allclose(s.Z_query[:, :75], s.Z[:, :75])
    assert abs(np.corrcoef(s.Z_query[:, :75].ravel(), s.Z[:, :75].ravel())[0, 1]) < 0.05
    assert set(np.unique(s.g)) == {-1.0, 1.0}


def test_nested_prefixes_and_seeding():
    small = synthetic_memorization(seed=4, d=40, alpha=0.5, n_train=10, n_test=5)
    big = synthetic_memorization(seed=4, d=40, alpha=0.5, n_train=30, n_test=5)
    np.testing.assert_array_equal(small.Z, big.Z[:10])
    np.testing.assert_array_equal(small.Z_query, big.Z_query[:10])
    np.testing.assert_array_equal(small.Z_test, big.Z_test)
    other = synthetic_memorization(seed=5, d=40, alpha=0.5, n_train=10, n_test=5)
    assert not np.allclose(small.Z, other.Z)


def test_bad_alpha_is_a_config_error():
    with pytest.raises(ConfigError, match="alpha"):
        synthetic_memorization(seed=0, d=10, alpha=0.01, n_train=5, n_test=5)
