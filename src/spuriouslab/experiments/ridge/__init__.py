"""Beyond the paper (follow-up, arXiv 2502.01347): ridge regularisation and spurious correlations.

Synthetic data whose spurious part is correlated with the core, ``y = c P x + sqrt(1 - c^2) n``, and the
spurious-correlation metric ``C = Cov(f([x~, y]), g)`` on fresh test samples (a model that uses y as a
proxy for the label has C > 0), next to the memorization covariance on training samples, as the ridge
lambda grows.  Same computation as ``memorization``; one Gram matrix serves every lambda.
"""

from __future__ import annotations

from spuriouslab.experiments.base import Experiment
from spuriouslab.experiments.ridge import report
from spuriouslab.experiments.ridge.config import RidgeConfig
from spuriouslab.experiments.memorization import run

EXPERIMENT = Experiment(
    name="ridge",
    summary="Ridge lambda and correlated spurious features: memorization, spurious correlation C, test loss",
    Config=RidgeConfig,
    run=run,
    reporting=report,
    headline=("spurious_corr", "test_mse"),
)
