"""Activations with their Hermite data, random-features / NTK Gram matrices, and kernel solvers."""

from spuriouslab.kernels.activations import ACTIVATIONS, Activation, get_activation
from spuriouslab.kernels.matrices import KernelSpec, gram
from spuriouslab.kernels.solve import KernelFit, fit_kernel

__all__ = ["ACTIVATIONS", "Activation", "KernelFit", "KernelSpec", "fit_kernel", "get_activation", "gram"]
