"""Beyond the paper (follow-up, arXiv 2502.01347): ridge regularisation and spurious correlations.

Synthetic data whose spurious part is correlated with the core, ``y = c P x + sqrt(1 - c^2) n``, and the
spurious-correlation metric ``C = Cov(f([x~, y]), g)`` on fresh test samples (a model that uses y as a
proxy for the label has C > 0), next to the memorization covariance on training samples, as the ridge
lambda grows.  Same computation as ``memorization``; one Gram matrix serves every lambda.
"""

from __future__ import annotations

import math

from spuriouslab.claims import Claim, coloured_claims, fraction_at_largest, slope_at_optimum
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
        # the follow-up's claims as it states them (docs/ridge-theory.rst); the earlier "C falls as lambda grows"
        # is not among them: C rises from its lambda = 0 value before it vanishes
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
        Claim(
            "ridge",
            "C vanishes as lambda grows: at the largest lambda of the grid it is below half its peak over lambda "
            "(C there over the largest C, per model and correlation)",
            "spurious_corr",
            "sign",
            statistic=fraction_at_largest("spurious_corr", "ridge"),
            reference=0.5,
            side="less",
            smallest_effect=0.1,  # a tenth of the peak
            by=("model", "correlation"),
            needs=("ridge",),
            paper=FOLLOW_UP,
        ),
        Claim(
            "ridge",
            "a simpler spurious part (its covariance given the core on fewer directions: spectrum exponent 2 "
            "against 0) gives a larger C at the same lambda",
            "spurious_corr",
            "difference",
            when={"spurious_spectrum": 2.0},
            versus={"spurious_spectrum": 0.0},
            side="greater",
            varies=("spurious_spectrum",),
            paper=FOLLOW_UP,
        ),
        Claim(
            "ridge",
            "linear ridge: the measured C agrees with its deterministic equivalent C^Sigma(lambda) within 0.01",
            "spurious_corr",
            "agreement",
            predicted="spurious_corr_pred",
            tolerance=0.01,
            when={"model": "linear"},
            paper=FOLLOW_UP,
        ),
        Claim(
            "ridge",
            "linear ridge: the measured test loss agrees with its deterministic equivalent L(lambda) within 0.02",
            "test_mse",
            "agreement",
            predicted="test_mse_pred",
            tolerance=0.02,
            when={"model": "linear"},
            paper=FOLLOW_UP,
        ),
        # random features as linear ridge at lambda~ = (mu_star^2 + lambda) / mu_1^2 (theory/ridge.py)
        Claim(
            "ridge",
            "random features at infinite width: the measured C agrees with linear ridge's C^Sigma at the effective "
            "lambda~ from the activation's Hermite coefficients within 0.01",
            "spurious_corr",
            "agreement",
            predicted="spurious_corr_pred",
            tolerance=0.01,
            when={"model": "rf", "width": math.inf},  # the limit the equivalence is stated in
            paper=FOLLOW_UP,
        ),
        Claim(
            "ridge",
            "random features at infinite width: the measured test loss agrees with linear ridge's L at the effective "
            "lambda~ within 0.02",
            "test_mse",
            "agreement",
            predicted="test_mse_pred",
            tolerance=0.02,
            when={"model": "rf", "width": math.inf},  # the limit the equivalence is stated in
            paper=FOLLOW_UP,
        ),
        *coloured_claims("ridge"),
    ),
)
