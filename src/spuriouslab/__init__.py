"""spuriouslab: how networks and their kernel proxies learn and memorize task-irrelevant features."""

from importlib import metadata

try:  # one version source: pyproject.toml, as installed
    __version__ = metadata.version("spuriouslab")
except metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

from spuriouslab.kernels.estimators import NTKRegressor, RandomFeaturesRegressor

__all__ = ["NTKRegressor", "RandomFeaturesRegressor", "__version__"]
