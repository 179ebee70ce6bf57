"""Multi-layer perceptrons stacked over S independent seeds.

Every weight has a leading seed dimension and every product is a batched matmul, so S seeds train as one
computation; with the elementwise optimizers (SGD, Adam, AdamW) each seed's trajectory is the one it would
have alone (the loss is a sum of per-seed losses).  Initialisation is PyTorch's default for ``nn.Linear``
(weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))), drawn per seed from its own generator.

``first_layer_basis`` (S, k, d) lets inputs be given in k latent coordinates ``z`` with ``x = z T``:
the first layer then computes ``z (T W^T)`` - the same function, gradients and parameters as on ``x``.
"""

from __future__ import annotations

import math

import torch

from spuriouslab.activations import get_activation


class StackedMLP(torch.nn.Module):
    def __init__(
        self,
        generators: list[torch.Generator],
        d_in: int,
        width: int,
        depth: int = 2,
        activation: str = "relu",
        bias: bool = True,
        freeze_output: bool = False,
    ):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        self.act = get_activation(activation).fn("net")
        S = len(generators)
        dims = [d_in] + [width] * (depth - 1) + [1]
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList() if bias else None
        for fan_in, fan_out in zip(dims[:-1], dims[1:], strict=True):
            bound = 1 / math.sqrt(fan_in)
            W = torch.stack([(torch.rand(fan_out, fan_in, generator=g) * 2 - 1) * bound for g in generators])
            self.weights.append(torch.nn.Parameter(W))
            if self.biases is not None:  # bias=True
                b = torch.stack([(torch.rand(fan_out, generator=g) * 2 - 1) * bound for g in generators])
                self.biases.append(torch.nn.Parameter(b))
        self.frozen_output = freeze_output
        if freeze_output:
            half = width // 2
            a = torch.cat([torch.full((half,), 1.0 / width), torch.full((width - half,), -1.0 / width)])
            self.weights[-1] = torch.nn.Parameter(a.expand(S, 1, width).clone(), requires_grad=False)
            if self.biases is not None:
                self.biases[-1].requires_grad_(False)  # kept at its initial value, as in the paper's script

    @property
    def n_seeds(self) -> int:
        n: int = self.weights[0].shape[0]
        return n

    def head_parameters(self) -> list[torch.nn.Parameter]:
        """The output layer's weight and bias, every seed's (what linear probing trains)."""
        last = len(self.weights) - 1
        return [self.weights[last], *([] if self.biases is None else [self.biases[last]])]

    def output_weights(self) -> torch.Tensor:
        """(S, width) weights of the output layer."""
        w: torch.Tensor = self.weights[-1][:, 0, :]
        return w

    def _affine(self, i: int, h: torch.Tensor, weight_t: torch.Tensor) -> torch.Tensor:
        if self.biases is None:
            return torch.bmm(h, weight_t)
        return torch.baddbmm(self.biases[i][:, None, :], h, weight_t)  # bias fused into the product

    def first_preactivation(self, x: torch.Tensor, basis: torch.Tensor | None = None) -> torch.Tensor:
        W_t = self.weights[0].transpose(1, 2)
        if basis is not None:
            W_t = torch.bmm(basis, W_t)  # z (T W^T): the first layer in latent coordinates
        return self._affine(0, x, W_t)

    def forward(self, x: torch.Tensor, basis: torch.Tensor | None = None) -> torch.Tensor:
        """x: (S, n, d_in), or latent (S, n, k) with ``basis`` (S, k, d_in).  Returns (S, n)."""
        h = self.first_preactivation(x, basis)
        for i in range(1, len(self.weights)):
            h = self.act.differentiable(h, inplace=True)  # h is a fresh product: safe to overwrite
            h = self._affine(i, h, self.weights[i].transpose(1, 2))
        return h[..., 0]
