"""Random-features / NTK Gram matrices (:mod:`.matrices`), float64 solves with leave-one-out quantities
(:mod:`.solve`) and scikit-learn estimators (:mod:`.estimators`).  Activations come from
:mod:`spuriouslab.activations`."""

from spuriouslab.kernels.matrices import DEFAULT_WIDTH, INF, KernelSpec, gram, grams, parse_width
from spuriouslab.kernels.solve import KernelFit, fit_kernel

__all__ = ["DEFAULT_WIDTH", "INF", "KernelFit", "KernelSpec", "fit_kernel", "gram", "grams", "parse_width"]
