"""Random-features and NTK Gram matrices, never materialising an N x k feature matrix.

For a kernel ``spec`` and points ``A = [train; extra]`` (train first), :func:`gram` returns the float64
matrix ``K[a, j] = <feat(A_a), feat(train_j)>`` for every row ``a`` and training column ``j``:

* ``rf``  (width k):  ``feat(z) = phi(V z) / sqrt(k)``, ``V_ij ~ N(0, 1/d)``, so ``K -> E_v[phi(v.z) phi(v.z')]``;
* ``ntk`` (width k):  ``feat(z) = z (x) phi'(W z) / sqrt(k d)``, so
  ``K = (Z Z'^T / d) * (phi'(ZW^T) phi'(Z'W^T)^T / k)``;
* ``width=INF`` (k = inf): the closed-form limits of both, with exact per-sample norms
  (see :meth:`Fn.gaussian_kernel`); for ``|z|^2 = d`` the Hermite-series case is ``sum_l mu_l^2 rho^l``;
* ``linear``: ``feat(z) = z / sqrt(d)``, ``K = Z Z'^T / d`` (ridge on the raw input; no activation, no width),
  so that kernel ridge with ``K + lambda I`` is linear ridge ``(Z'Z/n + lambda d/n)^-1 Z'G/n``.

Features are generated and used in chunks of whole ``BLOCK``-sized random blocks (float32 by default, on the
spec's device); each chunk's product is accumulated into float64.  Each block of ``V`` has its own seed, so
results do not depend on the chunk size or on the number of points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from spuriouslab.activations import Activation, Fn, get_activation
from spuriouslab.seeding import torch_seed

BLOCK = 1024  # features per independently seeded block of random weights
INF = math.inf  # the one representation of infinite width, in every layer
DEFAULT_WIDTH = {"rf": 100_000, "ntk": 100, "linear": INF}  # the paper's k; a linear model has no width
MODELS = ("rf", "ntk", "linear")
MAX_FEATURES = 10**9  # random features / NTK neurons of a finite-width kernel (beyond that, width=inf)


def block_seed(key: tuple[int, ...], block: int) -> int:
    """The torch seed of random-weight block ``block`` of the stream named by ``key``."""
    return torch_seed(*key, block)


def parse_width(value: int | float | str | None, model: str | None = None) -> float | int:
    """A width as given by a user: a positive integer (``1e5`` and ``100000.0`` included), ``inf``/``"inf"``,
    or ``None`` for the model's default.  Returns an ``int`` or :data:`INF`."""
    if value is None:
        if model is None:
            raise ValueError("width: None needs a model to take the default from")
        return DEFAULT_WIDTH[model]
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("inf", "infinity"):
            return INF
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"width: got {value!r}; expected a positive integer or 'inf'") from None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"width: got {value!r}; expected a positive integer or 'inf'")
    if math.isinf(value) and value > 0:
        return INF
    if not math.isfinite(value) or value != int(value) or value < 1:
        raise ValueError(f"width: got {value!r}; expected a positive integer or 'inf'")
    if value > MAX_FEATURES:
        raise ValueError(
            f"width: got {value!r}; at most {MAX_FEATURES:.0e} features; for wider models use the "
            "infinite-width kernel (width=inf)"
        )
    return int(value)


@dataclass(frozen=True)
class KernelSpec:
    """Which kernel: model ``rf`` or ``ntk``, activation, width (an int, or :data:`INF`), random key."""

    model: str
    activation: Activation
    width: int | float
    key: tuple[int, ...] = (0,)
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    progress: bool = False

    @classmethod
    def make(
        cls,
        model: str,
        activation: str | Activation,
        width: int | float | str | None,
        key: Iterable[int] = (0,),
        device: str = "cpu",
        dtype: str | torch.dtype = "float32",
        progress: bool = False,
    ) -> KernelSpec:
        act = get_activation(activation) if isinstance(activation, str) else activation
        if isinstance(dtype, str):
            dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
        size = INF if model == "linear" else parse_width(width, model)
        return cls(model, act, size, tuple(int(k) for k in key), device, dtype, progress)

    @property
    def infinite(self) -> bool:
        return math.isinf(self.width)

    @property
    def fn(self) -> Fn:
        return self.activation.fn(self.model)

    @property
    def precision(self) -> float:
        """Relative precision of this kernel's Gram entries: float64 for the closed form, else the features'
        dtype (float32 products summed in float64 hold about float32's)."""
        return float(torch.finfo(torch.float64 if self.infinite else self.dtype).eps)


def random_weights(spec: KernelSpec, d: int, start_block: int, n_blocks: int) -> torch.Tensor:
    """Standard normal weights of blocks ``start_block ..`` as a ``(d, n)`` matrix (features in columns).

    The layout (d rows) makes ``A @ W`` a plain GEMM; the ``1/sqrt(d)`` scale is applied to the inputs."""
    assert not spec.infinite
    k = int(spec.width)
    cols = []
    for b in range(start_block, start_block + n_blocks):
        n = min(BLOCK, k - b * BLOCK)
        gen = torch.Generator(device=spec.device).manual_seed(block_seed(spec.key, b))
        cols.append(torch.randn(d, n, generator=gen, device=spec.device, dtype=spec.dtype))
    return cols[0] if len(cols) == 1 else torch.cat(cols, dim=1)


def explicit_features(spec: KernelSpec, Z: torch.Tensor) -> torch.Tensor:
    """The explicit feature matrix (small problems and tests only): rows ``feat(z)`` as in the module doc."""
    Z = torch.as_tensor(Z).to(spec.device, spec.dtype)
    d = Z.shape[1]
    assert not spec.infinite, "explicit features need a finite width"
    k = int(spec.width)
    W = random_weights(spec, d, 0, math.ceil(k / BLOCK))
    pre = (Z / math.sqrt(d)) @ W
    feats = spec.fn(pre) / math.sqrt(k)
    if spec.model == "rf":
        return feats
    return (Z[:, :, None] * feats[:, None, :]).reshape(Z.shape[0], -1) / math.sqrt(d)


def _chunk_blocks(rows: int, k: int, device: str) -> int:
    """Blocks per chunk: ~2k features, fewer when the (rows x chunk) float32 buffer would exceed 256 MB."""
    budget = 256 * 2**20 if device == "cpu" else 2 * 2**30
    per_block = rows * BLOCK * 4
    return max(1, min(2 if device == "cpu" else 16, budget // per_block, math.ceil(k / BLOCK)))


def _feature_grams(specs: list[KernelSpec], A: torch.Tensor, n_train: int) -> list[torch.Tensor]:
    """``sum_j f(A v_j) f(A_train v_j) / k`` over k random features, float64, in chunks, for every spec.

    The specs share model, width, key, device and dtype (so the same ``V``) and differ in activation:
    the pre-activations ``A V^T`` (the dominant product) are computed once per chunk for all of them."""
    spec = specs[0]
    k = int(spec.width)
    M, d = A.shape
    A_scaled = (A / math.sqrt(d)).to(spec.device, spec.dtype).contiguous()
    accs = [torch.zeros(M, n_train, dtype=torch.float64, device=spec.device) for _ in specs]
    n_blocks = math.ceil(k / BLOCK)
    per = _chunk_blocks(M, k, spec.device)
    starts = range(0, n_blocks, per)
    bar = tqdm(
        starts, desc=f"{spec.model} features", unit="chunk", leave=False, disable=not spec.progress or len(starts) < 8
    )
    pre_buf = torch.empty(M, per * BLOCK, device=spec.device, dtype=spec.dtype)
    prod_buf = torch.empty(M, n_train, device=spec.device, dtype=spec.dtype)
    for b0 in bar:
        nb = min(per, n_blocks - b0)
        W = random_weights(spec, d, b0, nb)
        pre = pre_buf[:, : W.shape[1]]
        torch.mm(A_scaled, W, out=pre)
        for i, (s, acc) in enumerate(zip(specs, accs, strict=True)):
            feats = s.fn(pre if i == len(specs) - 1 else pre.clone())  # activations may work in place
            torch.mm(feats, feats[:n_train].T, out=prod_buf)
            acc += prod_buf
    return [acc.div_(k) for acc in accs]


def _closed_form_gram(spec: KernelSpec, A: torch.Tensor, n_train: int) -> torch.Tensor:
    A64 = A.detach().to("cpu", torch.float64).numpy()
    d = A64.shape[1]
    if spec.model == "linear":
        return torch.from_numpy(np.ascontiguousarray(A64 @ A64[:n_train].T / d)).to(spec.device)
    norms = np.linalg.norm(A64, axis=1)
    dots = A64 @ A64[:n_train].T
    cos = dots / np.maximum(np.outer(norms, norms[:n_train]), 1e-300)
    s = norms / math.sqrt(d)
    K = spec.fn.gaussian_kernel(s, s[:n_train], cos)
    if spec.model == "ntk":
        K = K * (dots / d)
    return torch.from_numpy(np.ascontiguousarray(K)).to(spec.device)


def grams(
    specs: list[KernelSpec], train: torch.Tensor, extra: torch.Tensor | None = None, include_train_rows: bool = True
) -> list[torch.Tensor]:
    """Float64 Gram matrices of ``[train; extra]`` (or of ``extra`` alone) against ``train``, one per spec.

    Finite-width specs that share model, width, random key, device and dtype share one pass over the
    features (see :func:`_feature_grams`)."""
    train = torch.as_tensor(train)
    A = torch.cat([train, torch.as_tensor(extra).to(train.dtype)]) if extra is not None else train
    n = train.shape[0]
    out: list[torch.Tensor | None] = [None] * len(specs)
    shared: dict[tuple[object, ...], list[int]] = {}
    for i, spec in enumerate(specs):
        if spec.infinite:
            out[i] = _closed_form_gram(spec, A, n)
        else:
            shared.setdefault((spec.model, spec.width, spec.key, spec.device, spec.dtype), []).append(i)
    linear = None
    for idx in shared.values():
        for i, K in zip(idx, _feature_grams([specs[i] for i in idx], A, n), strict=True):
            if specs[i].model == "ntk":
                if linear is None:
                    A64 = A.to(specs[i].device, torch.float64)
                    linear = A64 @ A64[:n].T / A.shape[1]
                K.mul_(linear)
            out[i] = K
    grams = [K for K in out if K is not None]
    assert len(grams) == len(specs), "every spec has its Gram matrix (closed form or features)"
    return [K if include_train_rows else K[n:] for K in grams]


def gram(
    spec: KernelSpec, train: torch.Tensor, extra: torch.Tensor | None = None, include_train_rows: bool = True
) -> torch.Tensor:
    """Float64 Gram matrix of ``[train; extra]`` (or of ``extra`` alone) against ``train``."""
    return grams([spec], train, extra, include_train_rows)[0]
