"""Representation distillation (Zhang et al., ICML 2024, Section 3): a student that fits an OOD-robust teacher's
representation, probed ID and OOD.

A frozen teacher; a student of the same architecture (fresh init) trained with MSE on the teacher's embeddings of
the training inputs, no labels; a baseline of the same architecture trained end to end with labels; linear probes
on each one's frozen features, fitted on the ID training set; accuracy on the ID test set and every OOD set.  The
mechanism is measured for MLP students on the synthetic task: their first-layer weight in the background subspace
(the contamination metric), against the teacher's (zero by construction) and an identity-activation student.
``config`` / ``run`` / ``report`` hold the three jobs.
"""

from __future__ import annotations

from spuriouslab.claims import Claim, Effect, remedy_claims
from spuriouslab.experiments.base import Experiment
from spuriouslab.experiments.distillation import report, run
from spuriouslab.experiments.distillation.config import DistillationConfig
from spuriouslab.nets.remedies import REMEDIES

# the paper's students are ReLU networks (identity is the linear control), trained without a remedy
RELU = {"activation": "relu", "remedy": "none"}

EXPERIMENT = Experiment(
    name="distillation",
    summary="Representation distillation: a student of an OOD-robust teacher, probed ID and OOD (Zhang et al.)",
    Config=DistillationConfig,
    run=run,
    reporting=report,
    headline=("acc_student_ood_mean", "acc_teacher_ood_mean", "acc_baseline_ood_mean"),
    claims=(
        Claim(
            "distillation",
            "the student is behind the teacher OOD",
            "acc_teacher_ood_mean",
            "sign",
            minus="acc_student_ood_mean",
            when=RELU,
            paper="Zhang et al., ICML 2024",
        ),
        Claim(
            "distillation",
            "the student is ahead of the baseline OOD",
            "acc_student_ood_mean",
            "sign",
            minus="acc_baseline_ood_mean",
            when=RELU,
            paper="Zhang et al., ICML 2024",
        ),
        Claim(
            "distillation",
            "the student's ID accuracy is close to the teacher's (within 0.05)",
            "acc_student_id",
            "agreement",
            predicted="acc_teacher_id",
            tolerance=0.05,
            when=RELU,
            paper="Zhang et al., ICML 2024",
        ),
        Claim(
            "distillation",
            "the student fits its teacher ID and departs from it OOD: relative embedding error on the OOD sets "
            "(mean) minus on ID > 0",
            "relerr_ood_gap",
            "sign",
            when=RELU,
            paper="Zhang et al., ICML 2024",
        ),
        Claim(
            "distillation",
            "the same in linear CKA: the student's CKA with its teacher on ID minus on the OOD sets (mean) > 0",
            "cka_ood_gap",
            "sign",
            when=RELU,
            paper="Zhang et al., ICML 2024",
        ),
        *remedy_claims(
            "distillation",
            [m for m, spec in REMEDIES.items() if not spec.needs_groups],  # group remedies: the coloured task
            [
                Effect("acc_student_ood_mean", "greater", "raises the ReLU student's OOD accuracy"),
                Effect("student_ood_drop", "less", "narrows the ReLU student's ID - OOD accuracy drop"),
                Effect("acc_student_id", "greater", "keeps the ReLU student's ID accuracy (at most 0.02 lower)", -0.02),
                Effect("seconds_student", "greater", "costs more student training time (seconds per seed)"),
            ],
            when={"activation": "relu"},
        ),
        *remedy_claims(
            "distillation",
            [m for m, spec in REMEDIES.items() if not spec.needs_groups],  # group remedies: the coloured task
            [Effect("student_bg_growth", "less", "lowers the ReLU student's background-weight growth")],
            when={"activation": "relu", "task": "synthetic"},
        ),
    ),
)
