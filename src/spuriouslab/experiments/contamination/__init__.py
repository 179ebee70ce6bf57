"""Feature contamination: two-layer networks grow weight along label-independent background features.

Zhang et al. (ICML 2024).  Trains stacked-over-seeds MLPs on :mod:`spuriouslab.data.contamination` tasks and
logs, at every logging step: train / ID / OOD loss and accuracy; per-neuron norms of the first-layer
weights projected on the core and background subspaces (the paper's metric, ~sqrt(d_sub/(3d)) at init);
the signed projection on the background-mean direction, split by the sign of the neuron's output weight;
and the activation asymmetry P(active | y=+1) - P(active | y=-1) of each neuron, with its correlation with
the sign of the output weight (the theory's mechanism).  The ``remedy`` axis trains the same task with a
remedy (:mod:`spuriouslab.nets.remedies`) and judges each against no remedy.  ``config`` / ``run`` / ``report``
hold the three jobs.
"""

from __future__ import annotations

from spuriouslab.claims import Claim, Effect, curve_change, minimum, remedy_claims
from spuriouslab.experiments.base import Experiment
from spuriouslab.experiments.contamination import report, run
from spuriouslab.experiments.contamination.config import ContaminationConfig
from spuriouslab.experiments.contamination.run import measure, train_contamination
from spuriouslab.nets.remedies import REMEDIES

EXPERIMENT = Experiment(
    name="contamination",
    summary="Feature contamination: MLPs learn label-independent background features (Zhang et al.)",
    Config=ContaminationConfig,
    run=run,
    reporting=report,
    headline=("bg_norm_growth", "ood_id_gap", "ood_acc"),
    claims=(
        Claim(
            "contamination",
            "a ReLU net's first-layer weight in the background subspace grows in training",
            "bg_norm_growth",
            "sign",
            when={"activation": "relu", "remedy": "none"},
            reference=1.0,
            paper="Zhang et al., ICML 2024",
        ),
        Claim(
            "contamination",
            "the background weight grows more for ReLU than for the linear net",
            "bg_norm_growth",
            "difference",
            when={"activation": "relu", "remedy": "none"},
            versus={"activation": "identity", "remedy": "none"},
            paper="Zhang et al., ICML 2024",
        ),
        Claim(
            "contamination",
            "the OOD - ID loss gap is larger for ReLU than for the linear net",
            "ood_id_gap",
            "difference",
            when={"activation": "relu", "remedy": "none"},
            versus={"activation": "identity", "remedy": "none"},
            paper="Zhang et al., ICML 2024",
        ),
        Claim(
            "contamination",
            "ReLU neurons activate class-asymmetrically, in line with their output sign",
            "asym_corr",
            "sign",
            when={"activation": "relu", "remedy": "none"},
            paper="Zhang et al., ICML 2024",
        ),
        Claim(
            "contamination",
            "activation asymmetry rises during training (ReLU: the class-asymmetry / output-sign "
            "correlation, last minus first logged step)",
            "curve_asym_corr",
            "sign",
            when={"activation": "relu", "remedy": "none"},
            statistic=curve_change("curve_asym_corr"),
            paper="Zhang et al., ICML 2024",
        ),
        *(
            Claim(
                "contamination",
                f"{act} also contaminates: its background weight grows more than the linear net's",
                "bg_norm_growth",
                "difference",
                when={"activation": act, "remedy": "none"},
                versus={"activation": "identity", "remedy": "none"},
                paper="Zhang et al., ICML 2024",
            )
            for act in ("gelu", "leaky_relu", "sigmoid", "tanh")
        ),
        Claim(
            "contamination",
            "the background weight grows under every loss and optimizer (the smallest growth "
            "over losses x optimizers exceeds 1)",
            "bg_norm_growth",
            "sign",
            reference=1.0,
            statistic=minimum("bg_norm_growth"),
            varies=("loss", "optimizer"),
            when={"activation": "relu", "remedy": "none"},
            paper="Zhang et al., ICML 2024",
        ),
        *remedy_claims(
            "contamination",
            [m for m, spec in REMEDIES.items() if not spec.needs_groups],  # group remedies: the coloured task
            [
                Effect("bg_norm_growth", "less", "lowers a ReLU net's background-weight growth"),
                Effect("ood_id_gap", "less", "narrows a ReLU net's OOD - ID loss gap"),
                Effect("id_acc", "greater", "keeps a ReLU net's ID accuracy (at most 0.02 lower)", margin=-0.02),
                Effect("seconds", "greater", "costs more training time (seconds per seed)"),
            ],
            when={"activation": "relu"},
        ),
    ),
)

__all__ = ["EXPERIMENT", "ContaminationConfig", "measure", "train_contamination"]
