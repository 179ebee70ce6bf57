"""Closed-form predictions: the feature-alignment constants and their finite-N interpolation
(:mod:`.alignment`); linear ridge's spurious correlation and test loss from its deterministic equivalent
(:mod:`.ridge`).  The Hermite machinery they rest on is in :mod:`spuriouslab.activations.hermite`."""

from spuriouslab.theory.alignment import AlignmentPrediction, coefficient_table, energies, predict_alignment
from spuriouslab.theory.ridge import RidgePrediction, effective_ridge, ridge_fit
from spuriouslab.theory.ridge import predict as predict_ridge

__all__ = [
    "AlignmentPrediction",
    "RidgePrediction",
    "coefficient_table",
    "effective_ridge",
    "energies",
    "predict_alignment",
    "predict_ridge",
    "ridge_fit",
]
