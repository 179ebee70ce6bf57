"""spuriouslab: how networks and their kernel proxies learn and memorize task-irrelevant features."""

__version__ = "0.1.0"

from spuriouslab.kernels.estimators import NTKRegressor, RandomFeaturesRegressor  # noqa: E402

__all__ = ["NTKRegressor", "RandomFeaturesRegressor", "__version__"]
