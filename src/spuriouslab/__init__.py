"""spuriouslab: how networks and their kernel proxies learn and memorize task-irrelevant features."""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any

try:  # one version source: pyproject.toml, as installed
    __version__ = metadata.version("spuriouslab")
except metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from spuriouslab.kernels.estimators import NTKRegressor, RandomFeaturesRegressor
    from spuriouslab.runner import RunFailed, RunResult, run

__all__ = ["NTKRegressor", "RandomFeaturesRegressor", "RunFailed", "RunResult", "__version__", "run"]


def __getattr__(name: str) -> Any:
    """The estimators and the runner (:func:`spuriouslab.runner.run`), imported on first use: ``import
    spuriouslab`` (and so every CLI call) does not pay for scikit-learn and torch until something needs them."""
    if name in ("NTKRegressor", "RandomFeaturesRegressor"):
        from spuriouslab.kernels import estimators

        return getattr(estimators, name)
    if name in ("run", "RunResult", "RunFailed"):
        from spuriouslab import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'spuriouslab' has no attribute {name!r}")
