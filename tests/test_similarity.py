"""Linear CKA and the relative embedding error: the invariances CKA is defined by, near 0 for independent features,
the two computations (feature and Gram) against a reference, per-seed batching, and the relative error's two
anchors (0 for the teacher, 1 for its mean)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spuriouslab.nets.similarity import linear_cka, relative_error


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _orthogonal(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(_randn(d, d, seed=seed))
    return q


def _reference_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA through HSIC with the centring matrix H (Kornblith et al.'s eq. 3 with linear kernels)."""
    n = len(x)
    h = np.eye(n) - 1 / n
    k, ell = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.sum(k * ell) / (np.linalg.norm(k) * np.linalg.norm(ell)))


@pytest.mark.parametrize("n, d", [(200, 4), (10, 30)])  # the feature and the Gram computation
def test_identical_embeddings_give_one(n, d):
    x = _randn(n, d)
    assert linear_cka(x, x) == pytest.approx(1, abs=1e-12)


@pytest.mark.parametrize("n, d1, d2", [(300, 6, 4), (12, 40, 25)])
def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling(n, d1, d2):
    x, y = _randn(n, d1, seed=1), _randn(n, d2, seed=2) + 0.5 * _randn(n, d1, seed=1)[:, :d2]
    base = linear_cka(x, y)
    assert isinstance(base, float) and 0 < base < 1
    assert linear_cka(x @ _orthogonal(d1, 3), y) == pytest.approx(base, abs=1e-12)
    assert linear_cka(x, 7.5 * y @ _orthogonal(d2, 4)) == pytest.approx(base, abs=1e-12)
    assert linear_cka(0.01 * x + 3.0, y) == pytest.approx(base, abs=1e-12)  # a shift is centred away
    assert linear_cka(y, x) == pytest.approx(base, abs=1e-12)
    assert linear_cka(x.numpy(), y.float()) == pytest.approx(base, abs=1e-6)  # numpy and float32 read as float64
    assert base == pytest.approx(_reference_cka(x.numpy(), y.numpy()), abs=1e-12)


def test_independent_features_give_cka_near_zero():
    value = linear_cka(_randn(2000, 5, seed=10), _randn(2000, 5, seed=11))
    assert isinstance(value, float) and 0 <= value < 0.1


def test_batched_over_seeds_is_one_value_per_seed():
    students, teacher = _randn(3, 50, 4, seed=5), _randn(50, 6, seed=6)
    got = linear_cka(students, teacher)
    assert isinstance(got, list) and len(got) == 3
    assert got == pytest.approx([linear_cka(s, teacher) for s in students], abs=1e-12)
    assert linear_cka(students, teacher.expand(3, 50, 6)) == pytest.approx(got, abs=1e-12)
    same = _randn(3, 50, 4, seed=7)
    errors = relative_error(students, same)
    assert errors == pytest.approx([relative_error(s, t) for s, t in zip(students, same, strict=True)], abs=1e-12)
    assert relative_error(same, same) == [0.0, 0.0, 0.0]


def test_relative_error_is_zero_for_the_teacher_and_one_for_its_mean():
    t = _randn(80, 5, seed=8)
    assert relative_error(t, t) == 0.0
    assert relative_error(t.clone().requires_grad_(), t) == 0.0  # detached inside
    mean = t.mean(dim=0, keepdim=True).expand(80, 5)
    assert relative_error(mean, t) == pytest.approx(1, abs=1e-12)
    s = t + 0.1 * _randn(80, 5, seed=9)
    expected = float(((s - t) ** 2).sum() / ((t - t.mean(0)) ** 2).sum())
    assert relative_error(s, t) == pytest.approx(expected, rel=1e-12)


def test_undefined_is_nan_and_bad_shapes_are_one_line():
    x = _randn(20, 3)
    assert math.isnan(linear_cka(torch.ones(20, 3), x))
    for bad in (
        lambda: relative_error(_randn(20, 3), _randn(20, 4)),
        lambda: relative_error(_randn(20, 3), _randn(21, 3)),
        lambda: linear_cka(_randn(20, 3), _randn(19, 3)),
        lambda: linear_cka(_randn(2, 20, 3), _randn(3, 20, 3)),
        lambda: linear_cka(_randn(20), _randn(20, 3)),
    ):
        with pytest.raises(ValueError) as err:
            bad()
        assert "\n" not in str(err.value)
