"""The single activation registry: the one place to add an activation.

To add one, append an :class:`Activation` to ``ACTIVATIONS`` below (``phi`` for random features and trained
networks, ``phi'`` for the NTK), giving each :class:`Fn` a torch and a numpy evaluation; Hermite coefficients
then come by quadrature unless you supply a closed form, and the kernels, the theory, the networks and the CLI
(``--set activation=NAME``) all pick it up.

Each :class:`Activation` carries the function ``phi`` used by random features and the function ``phi'``
used by the NTK (``z (x) phi'(W z)``), each as a :class:`Fn` that knows how to evaluate itself in torch
and numpy, its Hermite coefficients (closed form where one exists, else quadrature) and, where one exists,
its closed-form Gaussian kernel ``E[f(a) f(b)]``.

Convention kept from the paper's code: for the NTK, ``phi2`` and ``phi4`` *name the derivative* directly,
``phi2' = h0 + h1`` and ``phi4' = h0 + h3`` (not the exact derivatives ``h0 + sqrt2 h1`` / ``h0 + 2 h3``), so that
the RF and NTK feature-alignment constants coincide.  ``hermite:c0,c1,...`` uses the exact derivative.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
import torch
from pydantic import AfterValidator
from scipy import special

from spuriouslab.activations import hermite
from spuriouslab.errors import ConfigError

KernelFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Fn:
    """A scalar function with what the kernels and the theory need to know about it."""

    name: str
    torch_fn: Callable[[torch.Tensor], torch.Tensor]  # may overwrite its argument
    numpy_fn: Callable[[np.ndarray], np.ndarray]
    closed_coefficients: Callable[[int], np.ndarray] | None = None
    series: tuple[float, ...] | None = None  # finite Hermite series (polynomials)
    closed_kernel: KernelFn | None = None  # (s_left, s_right, cos) -> E[f(s_l g) f(s_r g')]
    autograd_fn: Callable[[torch.Tensor], torch.Tensor] | None = None  # out of place, for trained networks
    # in place and still differentiable (the op saves its output, not its input), for fresh buffers
    autograd_inplace: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.torch_fn(x)

    def differentiable(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """Evaluation that autograd can differentiate (trained networks).  ``inplace=True`` may overwrite
        ``x`` when that is safe for autograd (pass only a fresh buffer whose producer does not need it)."""
        if inplace and self.autograd_inplace is not None:
            return self.autograd_inplace(x)
        if self.autograd_fn is not None:
            return self.autograd_fn(x)
        return self.torch_fn(x.clone())

    def coefficients(self, order: int) -> np.ndarray:
        """``mu_0 .. mu_order`` of the normalised Hermite expansion."""
        if self.series is not None:
            out = np.zeros(order + 1)
            n = min(order + 1, len(self.series))
            out[:n] = self.series[:n]
            return out
        if self.closed_coefficients is not None:
            return self.closed_coefficients(order)
        return hermite.quadrature_coefficients(self.numpy_fn, order)

    def second_moment(self) -> float:
        """``E[f(G)^2]`` (the total Hermite energy ``sum_l mu_l^2``)."""
        if self.series is not None:
            return float(np.sum(np.square(self.series)))
        x, w = hermite.gaussian_quadrature(400, 14.0)
        return float(np.sum(w * self.numpy_fn(x) ** 2))

    def gaussian_kernel(self, s_left: np.ndarray, s_right: np.ndarray, cos: np.ndarray) -> np.ndarray:
        """``E[f(a) f(b)]`` for centred Gaussians with standard deviations ``s`` and correlation ``cos``."""
        if self.closed_kernel is not None:
            return self.closed_kernel(s_left, s_right, cos)
        if self.series is not None:
            a = hermite.rescaled_series(np.array(self.series), s_left)
            b = hermite.rescaled_series(np.array(self.series), s_right)
        else:
            a = hermite.quadrature_coefficients(self.numpy_fn, SMOOTH_ORDER, s_left)
            b = hermite.quadrature_coefficients(self.numpy_fn, SMOOTH_ORDER, s_right)
        return hermite.series_kernel(a, b, cos)


# Truncation order of the Hermite series for smooth activations without closed-form kernels
# (tanh, gelu, sigmoid): their coefficients decay fast enough that the omitted tail is below 1e-9.
SMOOTH_ORDER = 60


@dataclass(frozen=True)
class Activation:
    """A named activation: ``phi`` (random features, trained networks) and ``dphi`` (the NTK's ``phi'``).

    Pickles by name (``get_activation(name)`` rebuilds it), so fitted estimators and configs can be saved."""

    name: str
    description: str
    phi: Fn
    dphi: Fn  # the phi' used by the NTK
    tags: tuple[str, ...] = field(default=())

    def fn(self, model: str) -> Fn:
        """The function a model uses: ``phi`` for ``rf`` (and trained networks, ``net``), ``phi'`` for ``ntk``."""
        if model in ("rf", "net"):
            return self.phi
        if model == "ntk":
            return self.dphi
        raise ValueError(f"model must be 'rf', 'ntk' or 'net', got {model!r}")

    def __reduce__(self) -> tuple[Callable[[str], Activation], tuple[str]]:
        return (get_activation, (self.name,))


# ----------------------------------------------------------------------------------------- helpers
def _polynomial_torch(series: tuple[float, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    poly = [float(c) for c in hermite.series_to_monomials(np.array(series))]
    while len(poly) > 1 and poly[-1] == 0.0:
        poly.pop()

    def f(x: torch.Tensor) -> torch.Tensor:
        if len(poly) == 1:
            return torch.full_like(x, poly[0])
        # Horner, in place on one buffer: y = ((c_n x + c_{n-1}) x + ...) x + c_0
        y = x * poly[-1]
        for c in reversed(poly[1:-1]):
            if c:
                y.add_(c)
            y.mul_(x)
        if poly[0]:
            y.add_(poly[0])
        return y

    return f


def _polynomial_numpy(series: tuple[float, ...]) -> Callable[[np.ndarray], np.ndarray]:
    poly = hermite.series_to_monomials(np.array(series))
    return lambda x: np.polynomial.polynomial.polyval(x, poly)


def _polynomial_autograd(series: tuple[float, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    poly = [float(c) for c in hermite.series_to_monomials(np.array(series))]

    def f(x: torch.Tensor) -> torch.Tensor:
        y = torch.full_like(x, poly[-1])
        for c in reversed(poly[:-1]):
            y = y * x + c
        return y

    return f


def series_fn(name: str, series: tuple[float, ...]) -> Fn:
    return Fn(
        name,
        _polynomial_torch(series),
        _polynomial_numpy(series),
        series=tuple(float(c) for c in series),
        autograd_fn=_polynomial_autograd(series),
    )


def _angle(cos: np.ndarray) -> np.ndarray:
    angle: np.ndarray = np.arccos(np.clip(cos, -1.0, 1.0))
    return angle


def _relu_kernel(sl: np.ndarray, sr: np.ndarray, cos: np.ndarray) -> np.ndarray:
    """Arc-cosine kernel of degree 1: s s' (sin t + (pi - t) cos t) / (2 pi)."""
    t = _angle(cos)
    k: np.ndarray = np.outer(sl, sr) * (np.sin(t) + (math.pi - t) * np.cos(t)) / (2 * math.pi)
    return k


def _step_kernel(sl: np.ndarray, sr: np.ndarray, cos: np.ndarray) -> np.ndarray:
    """Arc-cosine kernel of degree 0: (pi - t) / (2 pi)."""
    del sl, sr
    return (math.pi - _angle(cos)) / (2 * math.pi)


def _linear_kernel(sl: np.ndarray, sr: np.ndarray, cos: np.ndarray) -> np.ndarray:
    k: np.ndarray = np.outer(sl, sr) * cos
    return k


def _relu_torch(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_(min=0)


def _step_torch(x: torch.Tensor) -> torch.Tensor:
    return (x > 0).to(x.dtype)


def _tanh_deriv_torch(x: torch.Tensor) -> torch.Tensor:
    t = torch.tanh_(x)
    return t.mul_(t).neg_().add_(1.0)


def _gelu_torch(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.gelu(x)


def _gelu_deriv_torch(x: torch.Tensor) -> torch.Tensor:
    cdf = torch.special.ndtr(x)
    pdf = torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    out: torch.Tensor = cdf.add_(x * pdf)
    return out


def _sigmoid_deriv_torch(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid_(x)
    return s * (1.0 - s)


def _gelu_np(x: np.ndarray) -> np.ndarray:
    y: np.ndarray = x * special.ndtr(x)
    return y


def _gelu_deriv_np(x: np.ndarray) -> np.ndarray:
    y: np.ndarray = special.ndtr(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return y


def _sigmoid_deriv_np(x: np.ndarray) -> np.ndarray:
    s = special.expit(x)
    y: np.ndarray = s * (1 - s)
    return y


LEAKY_SLOPE = 0.1

STEP = Fn(
    "step", _step_torch, lambda x: (x > 0).astype(np.float64), hermite.step_coefficients, closed_kernel=_step_kernel
)
RELU = Fn(
    "relu",
    _relu_torch,
    lambda x: np.maximum(x, 0.0),
    hermite.relu_coefficients,
    closed_kernel=_relu_kernel,
    autograd_fn=torch.relu,
    autograd_inplace=torch.relu_,
)
IDENTITY = Fn(
    "identity",
    lambda x: x,
    lambda x: x,
    series=(0.0, 1.0),
    closed_kernel=_linear_kernel,
    autograd_fn=lambda x: x,
    autograd_inplace=lambda x: x,
)
CONSTANT = Fn("one", lambda x: torch.ones_like(x), lambda x: np.ones_like(x), series=(1.0,))
# leaky(x) = a x + (1 - a) relu(x): coefficients and kernels follow from ReLU's (E[a relu(b)] = cov/2, Stein)
_A, _B = LEAKY_SLOPE, 1 - LEAKY_SLOPE


def _leaky_coefficients(order: int) -> np.ndarray:
    mu = _B * hermite.relu_coefficients(order)
    if order >= 1:
        mu[1] += _A
    return mu


def _leaky_step_coefficients(order: int) -> np.ndarray:
    mu = _B * hermite.step_coefficients(order)
    mu[0] += _A
    return mu


def _leaky_kernel(sl: np.ndarray, sr: np.ndarray, cos: np.ndarray) -> np.ndarray:
    return (_A * _A + _A * _B) * _linear_kernel(sl, sr, cos) + _B * _B * _relu_kernel(sl, sr, cos)


def _leaky_step_kernel(sl: np.ndarray, sr: np.ndarray, cos: np.ndarray) -> np.ndarray:
    return _A * _A + _A * _B + _B * _B * _step_kernel(sl, sr, cos)


LEAKY = Fn(
    "leaky_relu",
    lambda x: torch.nn.functional.leaky_relu_(x, LEAKY_SLOPE),
    lambda x: np.where(x > 0, x, LEAKY_SLOPE * x),
    _leaky_coefficients,
    closed_kernel=_leaky_kernel,
    autograd_fn=lambda x: torch.nn.functional.leaky_relu(x, LEAKY_SLOPE),
    autograd_inplace=lambda x: torch.nn.functional.leaky_relu_(x, LEAKY_SLOPE),
)
LEAKY_STEP = Fn(
    "leaky_relu'",
    lambda x: torch.where(x > 0, 1.0, LEAKY_SLOPE).to(x.dtype),
    lambda x: np.where(x > 0, 1.0, LEAKY_SLOPE),
    _leaky_step_coefficients,
    closed_kernel=_leaky_step_kernel,
)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation(
            "phi2",
            "h1 + h2 (NTK: phi' = h0 + h1, the paper's convention)",
            series_fn("phi2", (0, 1, 1)),
            series_fn("phi2'", (1, 1)),
        ),
        Activation(
            "phi4",
            "h1 + h4 (NTK: phi' = h0 + h3, the paper's convention)",
            series_fn("phi4", (0, 1, 0, 0, 1)),
            series_fn("phi4'", (1, 0, 0, 1)),
        ),
        Activation("relu", "max(x, 0) (NTK: step)", RELU, STEP),
        Activation("leaky_relu", f"max(x, {LEAKY_SLOPE} x) (NTK: its step derivative)", LEAKY, LEAKY_STEP),
        Activation(
            "tanh",
            "tanh(x)",
            Fn("tanh", torch.tanh_, np.tanh, autograd_fn=torch.tanh, autograd_inplace=torch.tanh_),
            Fn("tanh'", _tanh_deriv_torch, lambda x: 1 - np.tanh(x) ** 2),
        ),
        Activation(
            "gelu",
            "x Phi(x) (exact, erf-based)",
            Fn("gelu", _gelu_torch, _gelu_np, autograd_fn=_gelu_torch),
            Fn("gelu'", _gelu_deriv_torch, _gelu_deriv_np),
        ),
        Activation(
            "sigmoid",
            "1 / (1 + exp(-x))",
            Fn("sigmoid", torch.sigmoid_, special.expit, autograd_fn=torch.sigmoid, autograd_inplace=torch.sigmoid_),
            Fn("sigmoid'", _sigmoid_deriv_torch, _sigmoid_deriv_np),
        ),
        Activation("identity", "x (linear model; NTK: constant 1)", IDENTITY, CONSTANT),
    ]
}

HERMITE_PREFIX = "hermite:"


def parse_hermite(name: str) -> tuple[float, ...]:
    body = name[len(HERMITE_PREFIX) :]
    try:
        coeffs = tuple(float(c) for c in body.replace(";", ",").split(",") if c.strip() != "")
    except ValueError:
        raise ConfigError(
            f"activation: got {name!r}; a Hermite series is written hermite:c0,c1,c2,... with numbers"
        ) from None
    if not coeffs or not any(coeffs):
        raise ConfigError(f"activation: got {name!r}; a Hermite series needs at least one non-zero coefficient")
    if not all(math.isfinite(c) for c in coeffs):
        raise ConfigError(f"activation: got {name!r}; Hermite coefficients must be finite")
    return coeffs


def get_activation(name: str) -> Activation:
    """Look an activation up by name; ``hermite:c0,c1,...`` builds a Hermite-series activation."""
    if name in ACTIVATIONS:
        return ACTIVATIONS[name]
    if isinstance(name, str) and name.startswith(HERMITE_PREFIX):
        coeffs = parse_hermite(name)
        deriv = tuple(hermite.series_derivative(np.array(coeffs)))
        if not any(deriv):
            deriv = (0.0,)
        return Activation(
            name,
            "user-given Hermite series (NTK: its exact derivative)",
            series_fn(name, coeffs),
            series_fn(name + "'", deriv),
        )
    raise ConfigError(f"activation: got {name!r}; allowed: {', '.join(ACTIVATIONS)} or hermite:c0,c1,...")


def activation_names() -> list[str]:
    return [*ACTIVATIONS, "hermite:c0,c1,..."]


def _registered(name: str) -> str:
    try:
        get_activation(name)
    except ConfigError as exc:  # keep its "allowed: ..." part; pydantic adds the key and the value
        raise ValueError(str(exc).split("; ", 1)[-1]) from None
    return name


ActivationName = Annotated[str, AfterValidator(_registered)]
"""A config field type: a name in the registry, or ``hermite:c0,c1,...``."""
