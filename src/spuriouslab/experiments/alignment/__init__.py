"""A sweep designed to test the feature-alignment theory: many alpha, four activations, N from 10 to 4d.

Same computation as ``memorization`` (its records carry the measured mean alignment and the predictions);
defaults to the infinite-width kernels, whose alignment the theory describes, and to nested N.  Adds a
measured-vs-predicted table with the gap and a figure of the alignment against alpha.
"""

from __future__ import annotations

from spuriouslab.claims import Claim, rank_agreement
from spuriouslab.experiments.alignment import report
from spuriouslab.experiments.alignment.config import AlignmentConfig
from spuriouslab.experiments.base import Experiment
from spuriouslab.experiments.memorization import run

EXPERIMENT = Experiment(
    name="alignment",
    summary="Feature alignment measured vs predicted over alpha, activations and N (theory check)",
    Config=AlignmentConfig,
    run=run,
    reporting=report,
    headline=("alignment_mean", "gamma_pred"),
    claims=(
        Claim(
            "alignment",
            "the measured feature alignment agrees with the predicted gamma (within 0.05)",
            "alignment_mean",
            "agreement",
            predicted="gamma_pred",
            tolerance=0.05,
            paper="Bombari & Mondelli, ICML 2024",
        ),
        Claim(
            "alignment",
            "the alignment grows with the spurious share alpha, as the predicted gamma does",
            "alignment_mean",
            "trend",
            over="alpha",
            paper="Bombari & Mondelli, ICML 2024",
        ),
        Claim(
            "alignment",
            "the measured alignment orders the activations as their Hermite coefficients predict "
            "(Kendall tau with the predicted gamma across activations, at each alpha, N and model)",
            "alignment_mean",
            "sign",
            statistic=rank_agreement("alignment_mean", "gamma_pred", "activation"),
            smallest_effect=0.3,  # a tau of 0.3: one pair of activations in three out of order
            by=("alpha", "n_train", "model"),
            needs=("gamma_pred",),
            varies=("activation",),
            paper="Bombari & Mondelli, ICML 2024",
        ),
    ),
)
