"""scikit-learn style estimators for notebooks: min-norm / ridge regression on random features or the NTK.

    >>> from spuriouslab import RandomFeaturesRegressor
    >>> model = RandomFeaturesRegressor(activation="phi2", width=20000, random_state=0).fit(Z, g)
    >>> model.predict(Z_test), model.loo_residuals_, model.feature_alignment(Z_query)

Everything goes through Gram matrices (:mod:`spuriouslab.kernels.matrices`) and one float64 factorisation
(:mod:`spuriouslab.kernels.solve`).  ``score`` is scikit-learn's R^2; ``sign_accuracy`` is the accuracy
of ``sign(f)`` for labels in {-1, +1}.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from spuriouslab.kernels.matrices import KernelSpec, gram
from spuriouslab.kernels.solve import fit_kernel


class _KernelRegressor(RegressorMixin, BaseEstimator):
    _model = ""
    _default_width: int | None = None

    def __init__(self, activation="relu", width=None, ridge=0.0, random_state=None, device="cpu",
                 dtype="float64"):
        self.activation = activation
        self.width = width
        self.ridge = ridge
        self.random_state = random_state
        self.device = device
        self.dtype = dtype

    def _spec(self) -> KernelSpec:
        width = self._default_width if self.width is None else self.width
        width = None if width in ("inf", float("inf")) else int(width)
        if width is not None and width < 1:
            raise ValueError(f"width must be a positive integer or 'inf', got {self.width!r}")
        if self.ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {self.ridge!r}")
        seed = self.random_state
        if isinstance(seed, np.random.Generator):  # check_random_state takes None / int / RandomState only
            seed = int(seed.integers(2**31))
        elif not isinstance(seed, int | np.integer):  # None or a RandomState: draw the feature seed from it
            seed = int(check_random_state(seed).randint(2**31))
        return KernelSpec.make(self._model, self.activation, width, key=(int(seed),), device=self.device,
                               dtype=self.dtype)

    def fit(self, X, y):
        X, y = check_X_y(X, y, dtype=np.float64, y_numeric=True, multi_output=True)
        self.spec_ = self._spec()
        self.X_train_ = torch.from_numpy(X)
        K = gram(self.spec_, self.X_train_)
        self.fit_ = fit_kernel(K, torch.from_numpy(np.asarray(y, dtype=np.float64)), self.ridge)
        self.n_features_in_ = X.shape[1]
        return self

    def _cross(self, X) -> torch.Tensor:
        check_is_fitted(self, "fit_")
        X = check_array(X, dtype=np.float64)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the model was fitted with {self.n_features_in_}")
        return gram(self.spec_, self.X_train_, torch.from_numpy(X), include_train_rows=False)

    def predict(self, X):
        return self.fit_.predict(self._cross(X)).cpu().numpy()

    def sign_accuracy(self, X, y) -> float:
        return float(np.mean(np.sign(self.predict(X)) == np.sign(y)))

    @property
    def loo_residuals_(self) -> np.ndarray:
        """``g_i - f_{-i}(z_i)``, the leave-one-out residuals (= stability ``S_i``), without refitting."""
        check_is_fitted(self, "fit_")
        return self.fit_.stability().cpu().numpy()

    @property
    def residual_max_(self) -> float:
        check_is_fitted(self, "fit_")
        return self.fit_.residual_max

    def feature_alignment(self, X_query) -> np.ndarray:
        """``F_i = [k(q_i, Z) K^-1]_i`` for queries paired with training samples by index."""
        return self.fit_.alignment(self._cross(X_query)).cpu().numpy()

    def alignment_matrix(self, X_query) -> np.ndarray:
        """``k(Q, Z) K^-1``: the weight of each training sample in each query's prediction."""
        return self.fit_.alignment_matrix(self._cross(X_query)).cpu().numpy()


class RandomFeaturesRegressor(_KernelRegressor):
    """Min-norm (``ridge=0``) or ridge regression on ``phi(V z)``, ``V_ij ~ N(0, 1/d)``; ``width=None``
    means 100000 features, ``width="inf"`` the infinite-width kernel."""

    _model = "rf"
    _default_width = 100_000


class NTKRegressor(_KernelRegressor):
    """Min-norm or ridge regression on the NTK features ``z (x) phi'(W z)`` of a two-layer network;
    ``width=None`` means 100 hidden neurons, ``width="inf"`` the infinite-width NTK."""

    _model = "ntk"
    _default_width = 100
