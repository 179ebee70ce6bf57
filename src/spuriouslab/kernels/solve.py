"""Minimum-norm / ridge kernel solves in float64 from one factorisation, with leave-one-out quantities.

With ``A = K + ridge I`` and ``dual_coef = A^-1 G`` (``A^+`` when ``A`` is singular or ill-conditioned):

* predictions ``f(q) = k(q, Z) dual_coef``;
* leave-one-out stability ``S_i = dual_coef_i / (A^-1)_ii``: for any query ``q``,
  ``f(q) - f_{-i}(q) = [k(q, Z) A^-1]_i * S_i`` (rank-one downdate, exact), so
  ``f(z_i) - f_{-i}(z_i) = (1 - ridge (A^-1)_ii) S_i`` (``= S_i`` for the interpolator) and
  ``g_i - f_{-i}(z_i) = S_i`` for every ridge;
* feature alignment of the query ``q_i`` paired with training sample ``i``: ``F_i = [k(q_i, Z) A^-1]_i``,
  hence ``f(q_i) - f_{-i}(q_i) = F_i S_i``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Above this estimated condition number the Cholesky route is abandoned for an eigen (pseudo-inverse) solve.
COND_LIMIT = 1e12
NULL_TOL = 1e-8  # a sample the null space weighs less than this is outside it (the rank-one formula holds)


@dataclass
class KernelFit:
    dual_coef: torch.Tensor  # (N,) or (N, T)
    inverse: torch.Tensor  # A^-1 or A^+ (N, N)
    ridge: float
    solver: str  # "cholesky" or "eigh"
    cond: float  # condition-number estimate of A
    residual_max: float  # max_i |f(z_i) - g_i| on the training set
    rank: int
    # rank < N (eigh): the null space's weight on each sample, ||P0 e_i||^2, and P0 G (see ``stability``)
    null_weight: torch.Tensor | None = None
    null_target: torch.Tensor | None = None

    @property
    def inverse_diag(self) -> torch.Tensor:
        return torch.diagonal(self.inverse)

    def predict(self, K_cross: torch.Tensor) -> torch.Tensor:
        """``f(q) = k(q, Z) dual_coef`` for rows of ``K_cross`` (queries x train)."""
        return K_cross.to(self.dual_coef.dtype) @ self.dual_coef

    def stability(self) -> torch.Tensor:
        """``S_i = dual_coef_i / (A^-1)_ii`` (the leave-one-out residual ``g_i - f_{-i}(z_i)``).

        When ``A`` is singular (rank < N: duplicated samples, fewer features than samples) the rank-one formula
        does not hold for a sample the null space touches; its residual is the ridgeless limit
        ``lim_{l->0} S_i(A + l I) = (P0 G)_i / ||P0 e_i||^2`` (``P0`` the projection on the null space), which is
        0 for a sample whose duplicate has its label, as refitting without it gives."""
        diag = self.inverse_diag
        out = self.dual_coef / (diag if self.dual_coef.ndim == 1 else diag[:, None])
        if self.null_weight is not None:
            assert self.null_target is not None, "the null space's weight and target are set together"
            touched = self.null_weight > NULL_TOL
            w = self.null_weight if out.ndim == 1 else self.null_weight[:, None]
            t = touched if out.ndim == 1 else touched[:, None]
            out = torch.where(t, self.null_target / torch.where(t, w, torch.ones_like(w)), out)
        return out

    def alignment(self, K_query: torch.Tensor) -> torch.Tensor:
        """``F_i = [k(q_i, Z) A^-1]_i`` for paired queries (row i of ``K_query`` is query i vs train)."""
        K_query = K_query.to(self.inverse.dtype)
        if K_query.shape[0] != self.inverse.shape[0]:
            raise ValueError("alignment needs one query per training sample (paired by index)")
        return (K_query * self.inverse).sum(dim=1)  # A^-1 is symmetric

    def alignment_matrix(self, K_cross: torch.Tensor) -> torch.Tensor:
        """``k(Q, Z) A^-1`` for any queries: row q, column i is the weight of training sample i in f(q)."""
        return K_cross.to(self.inverse.dtype) @ self.inverse


def fit_kernel(K: torch.Tensor, G: torch.Tensor, ridge: float = 0.0, eps: float | None = None) -> KernelFit:
    """Factor ``A = K + ridge I`` once (Cholesky; eigen pseudo-inverse when that fails or ``A`` is
    ill-conditioned) and solve for ``dual_coef``.

    ``eps`` is the relative precision of ``K``'s entries (float64's by default; a Gram summed from float32
    features holds about float32's): eigenvalues below ``N eps`` times the largest are rounding, treated as 0."""
    eps = torch.finfo(torch.float64).eps if eps is None else float(eps)
    K = K.to(torch.float64)
    K = (K + K.T) / 2  # float32 feature products leave ~1e-8 asymmetry; Cholesky reads one triangle only
    G = G.to(K.device, torch.float64)
    n = K.shape[0]
    A = K + ridge * torch.eye(n, dtype=K.dtype, device=K.device) if ridge else K
    L, info = torch.linalg.cholesky_ex(A)
    solver, rank = "cholesky", n
    null_weight = null_target = None
    cond = float("inf")
    if int(info) == 0:
        dg = torch.diagonal(L)
        cond = float((dg.max() / dg.min()) ** 2)
    if int(info) == 0 and cond < COND_LIMIT:
        inverse = torch.cholesky_inverse(L)
        dual_coef = torch.cholesky_solve(G.reshape(n, -1), L).reshape(G.shape)
    else:
        solver = "eigh"
        evals, evecs = torch.linalg.eigh(A)
        top = float(evals.abs().max())
        keep = evals > top * n * eps * 10
        rank = int(keep.sum())
        cond = top / float(evals[keep].min()) if rank else float("inf")
        inv_vals = torch.where(keep, 1.0 / torch.where(keep, evals, torch.ones_like(evals)), torch.zeros_like(evals))
        inverse = (evecs * inv_vals) @ evecs.T
        dual_coef = inverse @ G
        if rank < n:
            null = evecs[:, ~keep]
            null_weight = (null**2).sum(dim=1)
            null_target = (null @ (null.T @ G.reshape(n, -1))).reshape(G.shape)
    residual = float((K @ dual_coef - G).abs().max()) if n else 0.0
    return KernelFit(dual_coef, inverse, float(ridge), solver, cond, residual, rank, null_weight, null_target)
