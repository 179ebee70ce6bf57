"""Spurious-feature memorization by min-norm / ridge random-features and NTK regression.

Bombari & Mondelli (ICML 2024): train on ``z = [x, y]`` (core x, spurious y, alpha = d_y/d), then query the
model with only a training sample's spurious part ``[x~_i, y_i]`` and check whether it recalls ``g_i``.
Memorization ``Cov(f(z^s), g)`` ~ mean_i F_i S_i g_i (feature alignment x leave-one-out stability), all
read off one factorisation of the Gram matrix.  ``config`` / ``run`` / ``report`` hold the three jobs.
"""

from __future__ import annotations

from spuriouslab.claims import Claim, coloured_claims, rank_agreement
from spuriouslab.experiments.base import Experiment
from spuriouslab.experiments.memorization import report, run
from spuriouslab.experiments.memorization.config import MemorizationConfig

EXPERIMENT = Experiment(
    name="memorization",
    summary="RF / NTK regression: do spurious features alone recall training labels? (Bombari & Mondelli)",
    Config=MemorizationConfig,
    run=run,
    reporting=report,
    headline=("spurious_acc", "test_acc", "memorization_cov", "acc_reversed", "worst_group_acc", "colour_flip"),
    claims=(
        Claim(
            "memorization",
            "RF: spurious accuracy falls as N grows",
            "spurious_acc",
            "trend",
            over="n_train",
            side="less",
            when={"model": "rf"},
            paper="Bombari & Mondelli, ICML 2024",
        ),
        Claim(
            "memorization",
            "NTK: spurious accuracy falls as N grows",
            "spurious_acc",
            "trend",
            over="n_train",
            side="less",
            when={"model": "ntk"},
            paper="Bombari & Mondelli, ICML 2024",
        ),
        Claim(
            "memorization",
            "the measured memorization equals alignment x stability, mean(F S g), within 0.02 "
            "(the leave-one-out term it drops vanishes only as d grows)",
            "memorization_cov",
            "agreement",
            predicted="alignment_stability_mean",
            tolerance=0.02,
            paper="Bombari & Mondelli, ICML 2024",
        ),
        Claim(
            "memorization",
            "a larger spurious share memorizes more: spurious accuracy at alpha = 1/2 exceeds that at alpha = 1/4",
            "spurious_acc",
            "difference",
            when={"alpha": 0.5},
            versus={"alpha": 0.25},
            paper="Bombari & Mondelli, ICML 2024",
        ),
        Claim(
            "memorization",
            "the activations memorize in the order of their predicted alignment (Kendall tau of "
            "spurious accuracy with the predicted gamma across activations, at each alpha, N and model)",
            "spurious_acc",
            "sign",
            statistic=rank_agreement("spurious_acc", "gamma_pred", "activation"),
            smallest_effect=0.3,  # a tau of 0.3: one pair of activations in three out of order
            by=("alpha", "n_train", "model"),
            needs=("gamma_pred",),
            varies=("activation",),
            paper="Bombari & Mondelli, ICML 2024",
        ),
        *coloured_claims("memorization"),
    ),
)

__all__ = ["EXPERIMENT", "MemorizationConfig"]
