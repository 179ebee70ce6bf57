"""Closed-form predictions: the feature-alignment constants and their finite-N interpolation
(:mod:`.alignment`).  The Hermite machinery they rest on is in :mod:`spuriouslab.activations.hermite`."""

from spuriouslab.theory.alignment import AlignmentPrediction, coefficient_table, energies, predict_alignment

__all__ = ["AlignmentPrediction", "coefficient_table", "energies", "predict_alignment"]
