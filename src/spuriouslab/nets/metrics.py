"""Measurements of trained weights shared by the experiments."""

from __future__ import annotations

import torch


@torch.no_grad()
def subspace_norms(weights: torch.Tensor, basis: torch.Tensor, split: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean per-neuron norm of first-layer weights projected on two subspaces.

    ``weights`` (S, m, d): S seeds of m neurons; ``basis`` (S, k, d) orthonormal rows, the first ``split`` spanning
    the first subspace (core) and the rest the second (background).  Returns ``(core, background)``, each (S,).
    This is Zhang et al.'s contamination metric (about ``sqrt(k_sub / (3 d))`` at PyTorch's default init)."""
    C = torch.bmm(weights, basis.transpose(1, 2))  # (S, m, k): weights in latent coordinates
    return C[..., :split].norm(dim=2).mean(dim=1), C[..., split:].norm(dim=2).mean(dim=1)
