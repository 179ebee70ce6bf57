"""scikit-learn estimators: min-norm / ridge regression on random features or on the NTK.

Everything goes through Gram matrices (:mod:`spuriouslab.kernels.matrices`) and one float64 factorisation
(:mod:`spuriouslab.kernels.solve`); the leave-one-out residuals and the feature alignment of spurious queries
come from that same factorisation, without refitting.  ``score`` is scikit-learn's R^2; ``sign_accuracy`` is the
accuracy of ``sign(f)`` for labels in {-1, +1}.  Parameters are stored as given (scikit-learn's convention),
their constraints are declared as data in ``_parameter_constraints`` and checked in ``fit``; learned state ends in
an underscore.  Fitted estimators pickle (activations pickle by name).
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Self

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from spuriouslab.activations import get_activation
from spuriouslab.errors import ConfigError
from spuriouslab.kernels.matrices import MAX_FEATURES, KernelSpec, gram
from spuriouslab.kernels.solve import fit_kernel


class _KernelRegressor(RegressorMixin, BaseEstimator):  # type: ignore[misc]  # scikit-learn's bases: no types
    """Shared implementation; use :class:`RandomFeaturesRegressor` or :class:`NTKRegressor`."""

    _model = ""
    _parameter_constraints: dict[str, list[object]] = {
        "activation": [str],
        "width": [
            Interval(Integral, 1, MAX_FEATURES, closed="both"),
            Options(Real, {math.inf}),
            StrOptions({"inf"}),
            None,
        ],
        "ridge": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "device": [str],
        "dtype": [StrOptions({"float32", "float64"})],
    }

    def __init__(
        self,
        activation: str = "relu",
        width: int | float | str | None = None,
        ridge: float = 0.0,
        random_state: int | np.random.RandomState | np.random.Generator | None = None,
        device: str = "cpu",
        dtype: str = "float64",
    ) -> None:
        self.activation = activation
        self.width = width
        self.ridge = ridge
        self.random_state = random_state
        self.device = device
        self.dtype = dtype

    def _spec(self) -> KernelSpec:
        try:
            get_activation(self.activation)
        except ConfigError as exc:
            raise ValueError(f"The 'activation' parameter of {type(self).__name__}: {exc}") from None
        seed = self.random_state
        if isinstance(seed, np.random.Generator):  # check_random_state takes None / int / RandomState only
            seed = int(seed.integers(2**31))
        elif not isinstance(seed, int | np.integer):  # None or a RandomState: draw the feature seed from it
            seed = int(check_random_state(seed).randint(2**31))
        return KernelSpec.make(
            self._model, self.activation, self.width, key=(int(seed),), device=self.device, dtype=self.dtype
        )

    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        """Fit the min-norm interpolator (``ridge=0``) or ridge regression.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,)
            Targets (labels in {-1, +1} for the memorization metrics).

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        self.spec_ = self._spec()
        self.X_fit_ = X
        K = gram(self.spec_, torch.tensor(X))
        self.kernel_fit_ = fit_kernel(
            K, torch.tensor(np.asarray(y, dtype=np.float64)), self.ridge, eps=self.spec_.precision
        )
        self.dual_coef_ = self.kernel_fit_.dual_coef.cpu().numpy()
        self.loo_residuals_ = self.kernel_fit_.stability().cpu().numpy()
        self.residual_max_ = self.kernel_fit_.residual_max
        self.solver_ = self.kernel_fit_.solver
        return self

    def _cross(self, X: ArrayLike) -> torch.Tensor:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return gram(self.spec_, torch.tensor(self.X_fit_), torch.tensor(X), include_train_rows=False)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predictions ``f(x) = k(x, X_fit) A^-1 y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        K = self._cross(X)  # checks fitted first
        return self.kernel_fit_.predict(K).cpu().numpy()

    def sign_accuracy(self, X: ArrayLike, y: ArrayLike) -> float:
        """Accuracy of ``sign(f(X))`` against labels ``y`` in {-1, +1}."""
        return float(np.mean(np.sign(self.predict(X)) == np.sign(np.asarray(y))))

    def feature_alignment(self, X_query: ArrayLike) -> np.ndarray:
        """``F_i = [k(q_i, X_fit) A^-1]_i`` for queries paired with the training samples by index.

        Parameters
        ----------
        X_query : array-like of shape (n_train, n_features)
            Query ``i`` belongs to training sample ``i`` (e.g. its spurious part with a fresh core).

        Returns
        -------
        F : ndarray of shape (n_train,)
        """
        K = self._cross(X_query)
        return self.kernel_fit_.alignment(K).cpu().numpy()

    def alignment_matrix(self, X_query: ArrayLike) -> np.ndarray:
        """``k(Q, X_fit) A^-1``: the weight of each training sample (columns) in each query's prediction."""
        K = self._cross(X_query)
        return self.kernel_fit_.alignment_matrix(K).cpu().numpy()


_PARAMETERS = """
    Parameters
    ----------
    activation : str, default="relu"
        A name in the activation registry (``spuriouslab.activations``) or ``"hermite:c0,c1,..."``.
    width : int, "inf" or None, default=None
        Number of {unit}; ``None`` takes the paper's {default}, ``"inf"`` (or ``math.inf``) the
        infinite-width kernel in closed form.
    ridge : float, default=0.0
        Ridge ``lambda >= 0``; 0 is the minimum-norm interpolator.
    random_state : int, RandomState instance or None, default=None
        Seeds the random weights (blocks of 1024 features, each seeded from it).
    device : str, default="cpu"
        Where the features are computed ("cpu", "cuda").
    dtype : {{"float32", "float64"}}, default="float64"
        Precision of the feature chunks; every Gram matrix is accumulated and solved in float64.

    Attributes
    ----------
    spec_ : KernelSpec
        The resolved kernel (model, activation, width, random key).
    X_fit_ : ndarray of shape (n_samples, n_features)
        The training inputs (kernel methods predict from them).
    kernel_fit_ : KernelFit
        The factorisation: dual coefficients, inverse, solver, condition number.
    dual_coef_ : ndarray of shape (n_samples,)
        ``A^-1 y`` with ``A = K + ridge I``.
    loo_residuals_ : ndarray of shape (n_samples,)
        Leave-one-out residuals ``y_i - f_{{-i}}(x_i)`` (the stability ``S_i``), without refitting.
    residual_max_ : float
        ``max_i |f(x_i) - y_i|`` on the training set (about 0 for the interpolator).
    solver_ : str
        "cholesky", or "eigh" (pseudo-inverse) for a singular or ill-conditioned Gram matrix.
    n_features_in_ : int
        Number of features seen in ``fit``.
"""


class RandomFeaturesRegressor(_KernelRegressor):
    __doc__ = (
        """Min-norm or ridge regression on random features ``phi(V x)``, ``V_ij ~ N(0, 1/d)``.
"""
        + _PARAMETERS.format(unit="random features k", default="k = 100000")
        + """
    Examples
    --------
    >>> from spuriouslab import RandomFeaturesRegressor
    >>> from spuriouslab.data import synthetic_memorization
    >>> data = synthetic_memorization(seed=0, d=100, alpha=0.5, n_train=40, n_test=400)
    >>> model = RandomFeaturesRegressor(activation="phi2", width=4000, random_state=0).fit(data.Z, data.g)
    >>> bool(abs(model.predict(data.Z) - data.g).max() < 1e-6)  # the min-norm interpolator
    True
    >>> model.loo_residuals_.shape
    (40,)
    >>> round(model.sign_accuracy(data.Z_test, data.g_test), 3)  # fresh samples
    0.608
    >>> round(model.sign_accuracy(data.Z_query, data.g), 3)  # spurious parts alone recall the labels
    0.75
    >>> round(float(model.feature_alignment(data.Z_query).mean()), 3)
    0.393
    """
    )

    _model = "rf"


class NTKRegressor(_KernelRegressor):
    __doc__ = (
        """Min-norm or ridge regression on the NTK features ``x (x) phi'(W x)`` of a two-layer network.
"""
        + _PARAMETERS.format(unit="hidden neurons k", default="k = 100")
        + """
    Examples
    --------
    >>> from spuriouslab import NTKRegressor
    >>> from spuriouslab.data import synthetic_memorization
    >>> data = synthetic_memorization(seed=0, d=100, alpha=0.5, n_train=40, n_test=400)
    >>> model = NTKRegressor(activation="relu", width="inf").fit(data.Z, data.g)
    >>> model.solver_
    'cholesky'
    >>> round(model.sign_accuracy(data.Z_test, data.g_test), 3), round(model.sign_accuracy(data.Z_query, data.g), 3)
    (0.603, 0.75)
    """
    )

    _model = "ntk"
