"""Representation similarity between two embeddings of the same inputs: linear CKA and the relative error.

Both take embeddings ``(N, D)`` of the same ``N`` inputs (row ``i`` of each is input ``i``), torch tensors or
numpy arrays, and compute in float64 on the tensors' device (detached: no gradient flows).  Both are also batched
over a leading seed dimension: ``(S, N, D)`` against ``(S, N, D')`` gives one value per seed, a list of ``S``
floats, and a 2-D argument against a 3-D one is shared by every seed (one teacher against ``S`` students).  Two
2-D arguments give one float.

* :func:`linear_cka` - linear centred kernel alignment (Kornblith et al., "Similarity of Neural Network
  Representations Revisited", ICML 2019): ``||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F)`` of the column-centred ``X`` and
  ``Y``, in [0, 1], invariant to orthogonal transforms and isotropic scaling of either embedding, defined for
  different widths ``D1``, ``D2``.
* :func:`relative_error` - ``||S - T||_F^2 / ||T - mean(T)||_F^2`` (the mean over inputs): 0 for a student equal
  to its teacher, 1 for a student that outputs the teacher's mean embedding on every input; same widths only.

Either is NaN where it is undefined: a constant embedding (CKA), or a constant teacher matched exactly
(relative error; a constant teacher not matched exactly gives infinity).
"""

from __future__ import annotations

import numpy as np
import torch

Embedding = torch.Tensor | np.ndarray


def _pair(x: Embedding, y: Embedding, what: str) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``x`` and ``y`` as float64 ``(S, N, D)`` on one device, the 2-D one expanded to the other's seeds; and
    whether either was batched."""
    a, b = torch.as_tensor(x).detach(), torch.as_tensor(y).detach()
    if a.ndim not in (2, 3) or b.ndim not in (2, 3):
        raise ValueError(f"{what}: got shapes {tuple(a.shape)} and {tuple(b.shape)}; embeddings (N, D) or (S, N, D)")
    batched = a.ndim == 3 or b.ndim == 3
    a, b = (a if a.ndim == 3 else a[None]), (b if b.ndim == 3 else b[None])
    if a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0]):
        raise ValueError(f"{what}: got {a.shape[0]} and {b.shape[0]} seeds; the same number, or one shared embedding")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{what}: got {a.shape[1]} and {b.shape[1]} inputs; embeddings of the same inputs, row by row")
    device = a.device if a.device.type != "mps" else torch.device("cpu")  # MPS has no float64
    a, b = a.to(device=device, dtype=torch.float64), b.to(device=device, dtype=torch.float64)
    s = max(a.shape[0], b.shape[0])
    return a.expand(s, -1, -1), b.expand(s, -1, -1), batched


def _out(values: torch.Tensor, batched: bool) -> float | list[float]:
    per_seed = [float(v) for v in values.cpu().tolist()]
    return per_seed if batched else per_seed[0]


def linear_cka(x: Embedding, y: Embedding) -> float | list[float]:
    """Linear CKA between two embeddings of the same inputs.

    Parameters
    ----------
    x, y
        ``(N, D1)`` and ``(N, D2)``, or ``(S, N, D1)`` and ``(S, N, D2)`` (a 2-D one is shared by all ``S``).

    Returns
    -------
    float or list of float
        ``||Yc'Xc||_F^2 / (||Xc'Xc||_F ||Yc'Yc||_F)`` with ``Xc``, ``Yc`` the column-centred embeddings, in [0, 1];
        a float for two 2-D arguments, a list of ``S`` floats otherwise; NaN when an embedding is constant.

    Notes
    -----
    Computed through the ``D x D`` feature products or, when that is cheaper (``N`` small against the widths),
    through the ``N x N`` Gram matrices: ``||Yc'Xc||_F^2 = <Xc Xc', Yc Yc'>_F`` and ``||Xc'Xc||_F = ||Xc Xc'||_F``.

    Examples
    --------
    >>> x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    >>> round(linear_cka(x, 3 * x), 12)
    1.0
    >>> len(linear_cka(torch.stack([x, x]), x))
    2
    """
    a, b, batched = _pair(x, y, "linear_cka")
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    n, d1, d2 = a.shape[1], a.shape[2], b.shape[2]
    if n * n * (d1 + d2) < n * (d1 * d2 + d1 * d1 + d2 * d2):  # the Gram form is cheaper
        k, ell = a @ a.transpose(1, 2), b @ b.transpose(1, 2)
        cross = (k * ell).sum(dim=(1, 2))
    else:
        k, ell = a.transpose(1, 2) @ a, b.transpose(1, 2) @ b
        cross = (b.transpose(1, 2) @ a).square().sum(dim=(1, 2))
    norms = torch.linalg.matrix_norm(k) * torch.linalg.matrix_norm(ell)
    return _out(cross / norms, batched)


def relative_error(student: Embedding, teacher: Embedding) -> float | list[float]:
    """Relative embedding error of a student against its teacher on the same inputs.

    Parameters
    ----------
    student, teacher
        ``(N, D)`` each, or ``(S, N, D)`` (a 2-D one is shared by all ``S``: one teacher against ``S`` students).

    Returns
    -------
    float or list of float
        ``||S - T||_F^2 / ||T - mean(T)||_F^2``, the mean taken over the ``N`` inputs: 0 for the teacher itself, 1
        for its mean embedding; a float for two 2-D arguments, a list of ``S`` floats otherwise.

    Raises
    ------
    ValueError
        Embeddings of different widths (one line; :func:`linear_cka` compares those) or of different inputs.

    Examples
    --------
    >>> t = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    >>> relative_error(t, t), round(relative_error(t.mean(0).expand(40, 3), t), 12)
    (0.0, 1.0)
    """
    s, t, batched = _pair(student, teacher, "relative_error")
    if s.shape[2] != t.shape[2]:
        raise ValueError(
            f"relative_error: got widths {s.shape[2]} (student) and {t.shape[2]} (teacher); embeddings of the same "
            "width (linear_cka compares different ones)"
        )
    err = (s - t).square().sum(dim=(1, 2))
    spread = (t - t.mean(dim=1, keepdim=True)).square().sum(dim=(1, 2))
    return _out(err / spread, batched)
