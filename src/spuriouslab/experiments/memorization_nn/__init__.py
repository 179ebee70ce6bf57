"""Spurious-feature memorization by trained networks (Bombari & Mondelli, ICML 2024, Section 5).

Images with a random border (all classes, cross-entropy; spurious accuracy = argmax of the query - the training
image's border with its core zeroed - equals the training label) or synthetic ``z = [x, y]`` data (one output,
MSE, sign accuracy).  Models FC / small CNN / CIFAR ResNet-18; the paper's recipe by default (Adam lr 1e-3,
batch 1024, StepLR every 100 epochs x 0.8).  Seeds of one (model, N) train as one stacked computation
(:class:`~spuriouslab.nets.models.SeedEnsemble`; ResNet one seed at a time), with train / test / spurious accuracy
logged every ``log_every`` epochs and a checkpoint there, so a killed run resumes mid-training.  A seed whose
loss becomes NaN stops with a recorded error (status ``diverged``) and the others go on.  On the coloured task
(``border_content=coloured``) the ``remedy`` axis trains with a remedy (:mod:`spuriouslab.nets.remedies`)
and judges each against no remedy.
"""

from __future__ import annotations

from spuriouslab.claims import Claim, Effect, coloured_claims, remedy_claims, thesis_claims
from spuriouslab.experiments.base import Experiment
from spuriouslab.experiments.memorization_nn import report, run
from spuriouslab.experiments.memorization_nn.config import MemorizationNNConfig
from spuriouslab.nets.remedies import REMEDIES

EXPERIMENT = Experiment(
    name="memorization-nn",
    summary="Trained FC / CNN / ResNet-18: spurious-feature memorization on images with a random border",
    Config=MemorizationNNConfig,
    run=run,
    reporting=report,
    headline=("spurious_acc", "test_acc", "acc_reversed", "worst_group_acc", "colour_flip"),
    claims=(
        Claim(
            "memorization-nn",
            "trained networks: spurious accuracy falls as N grows",
            "spurious_acc",
            "trend",
            over="n_train",
            side="less",
            varies=("n_train",),
            paper="Bombari & Mondelli, ICML 2024",
        ),
        *coloured_claims("memorization-nn"),
        *remedy_claims(
            "memorization-nn",
            [m for m, spec in REMEDIES.items() if not spec.oracle],
            [
                Effect("acc_reversed", "greater", "raises accuracy on the coloured task with the colours reversed"),
                Effect("reversed_drop", "less", "narrows the ID - reversed-colour accuracy drop"),
                Effect("worst_group_acc", "greater", "raises worst-group accuracy on the coloured task"),
                Effect("colour_flip", "less", "lowers the colour reliance (predictions the colour alone flips)"),
                Effect("acc_id", "greater", "keeps ID accuracy on the coloured task (at most 0.02 lower)", -0.02),
                Effect("seconds", "greater", "costs more training time on the coloured task (seconds per seed)"),
            ],
        ),
        *thesis_claims("memorization-nn"),
    ),
)
