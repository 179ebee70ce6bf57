"""The bottom layer: the activation registry and its Hermite machinery.

Kernels, networks and the theory import activations from here (downward only).  To add an activation, add an
entry to ``ACTIVATIONS`` in :mod:`spuriouslab.activations.registry`.
"""

from spuriouslab.activations.registry import (
    ACTIVATIONS,
    HERMITE_PREFIX,
    SMOOTH_ORDER,
    Activation,
    ActivationName,
    Fn,
    activation_names,
    get_activation,
)

__all__ = [
    "ACTIVATIONS",
    "HERMITE_PREFIX",
    "SMOOTH_ORDER",
    "Activation",
    "ActivationName",
    "Fn",
    "activation_names",
    "get_activation",
]
