"""Probe any torch image classifier for background reliance (beyond the paper): border sensitivity, accuracy
under other border colours, Grad-CAM mass on the border, and spurious-border memorization, with the same numbers
as ``background-features``.  ``spuriouslab probe package.module:factory [--checkpoint F] [--set key=value]``."""

from __future__ import annotations

from spuriouslab.experiments.base import Experiment
from spuriouslab.experiments.probe import report, run
from spuriouslab.experiments.probe.config import ProbeConfig

EXPERIMENT = Experiment(
    name="probe",
    summary="Border reliance of any torch image classifier (import string + checkpoint), any data set",
    Config=ProbeConfig,
    run=run,
    reporting=report,
    headline=("spurious_acc", "repr_change_train_colour"),
)
