"""Closed-form predictions: Hermite machinery (:mod:`.hermite`) and feature-alignment constants
(:mod:`.alignment`).  ``hermite`` depends on nothing in the package; ``alignment`` uses the activation
registry, so it is imported lazily here to keep the import graph acyclic."""

from spuriouslab.theory.hermite import relu_coefficients, series_kernel, step_coefficients


def __getattr__(name):
    if name in ("AlignmentPrediction", "predict_alignment"):
        from spuriouslab.theory import alignment

        return getattr(alignment, name)
    raise AttributeError(name)


__all__ = ["AlignmentPrediction", "predict_alignment", "relu_coefficients", "series_kernel", "step_coefficients"]
