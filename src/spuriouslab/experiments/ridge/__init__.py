"""Beyond the paper (follow-up, arXiv 2502.01347): ridge regularisation and spurious correlations.

Synthetic data whose spurious part is correlated with the core, ``y = c P x + sqrt(1 - c^2) n``, and the
spurious-correlation metric ``C = Cov(f([x~, y]), g)`` on fresh test samples (a model that uses y as a
proxy for the label has C > 0), next to the memorization covariance on training samples, as the ridge
lambda grows.  Same computation as ``memorization``; one Gram matrix serves every lambda.
"""

from __future__ import annotations

from spuriouslab.claims import Claim, coloured_claims, slope_at_optimum
from spuriouslab.experiments.base import Experiment
from spuriouslab.experiments.memorization import run
from spuriouslab.experiments.ridge import report
from spuriouslab.experiments.ridge.config import RidgeConfig

FOLLOW_UP = "Bombari & Mondelli, follow-up (arXiv 2502.01347)"

EXPERIMENT = Experiment(
    name="ridge",
    summary="Ridge lambda and correlated spurious features: memorization, spurious correlation C, test loss",
    Config=RidgeConfig,
    run=run,
    reporting=report,
    headline=("spurious_corr", "test_mse", "acc_reversed", "worst_group_acc", "colour_flip"),
    claims=(
        Claim(
            "ridge",
            "the spurious correlation C depends on the ridge lambda: it falls as lambda grows",
            "spurious_corr",
            "trend",
            over="ridge",
            side="less",
            paper=FOLLOW_UP,
        ),
        Claim(
            "ridge",
            "the lambda that minimizes the ID test loss lies where C is still increasing in lambda (C at "
            "the next grid lambda minus at the previous one, per model and correlation)",
            "spurious_corr",
            "sign",
            statistic=slope_at_optimum("spurious_corr", "ridge", "test_mse"),
            smallest_effect=0.005,  # a change of C of 0.005 across the optimum's neighbours
            by=("model", "correlation"),
            needs=("ridge", "test_mse"),
            paper=FOLLOW_UP,
        ),
        *coloured_claims("ridge"),
    ),
)
