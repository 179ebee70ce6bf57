"""Structured synthetic data for feature contamination (Zhang et al., ICML 2024).

Latent coefficients ``z = [z_core, z_bg]`` (``d_core + d_bg`` of them) are embedded in R^d by a seeded map
``T`` with orthonormal rows: ``x = z T``.  The label depends on the core only; the background is
``U[0,1]^d_bg`` in training, independent of the label.

* core ``linear``: ``z_core = y * U[0,1]^d_core``;
* core ``norm``: ``y = +1`` uniform on the unit sphere, ``y = -1`` on the sphere of radius 2;
* OOD background: ``flip`` (``-U[0,1]``, the paper's), ``shift`` (``U[0,1] + delta``) or ``scale``
  (``factor * U[0,1]``).  The OOD set is the ID test set with only its background replaced.

Everything is stacked over seeds (leading dimension S) and kept in latent coordinates: networks use
``x = z T`` only through ``W T^T`` (exact reassociation, 4x fewer flops than materialising x).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spuriouslab.seeding import stream_id, torch_generator


@dataclass
class LatentSet:
    z: torch.Tensor  # (S, n, d_core + d_bg)
    y: torch.Tensor  # (S, n) in {-1, +1}


@dataclass
class ContaminationTask:
    T: torch.Tensor  # (S, d_core + d_bg, d), orthonormal rows
    d_core: int
    d_bg: int
    train: LatentSet
    id_test: LatentSet
    ood_test: LatentSet
    generators: list[torch.Generator]  # per seed, for online sampling and minibatches
    background: float | None = None  # training backgrounds: None U[0,1]; b U[-b, b] (pre-training, zero mean)

    def inputs(self, s: LatentSet) -> torch.Tensor:
        """The ambient inputs x = z T (S, n, d)."""
        return torch.bmm(s.z, self.T)


def balanced_labels(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    n_pos = n // 2
    return torch.cat([torch.ones(n_pos, dtype=dtype), -torch.ones(n - n_pos, dtype=dtype)])


def sample_core(y: torch.Tensor, d_core: int, mode: str, gen: torch.Generator) -> torch.Tensor:
    n = y.shape[0]
    if mode == "linear":
        return y[:, None] * torch.rand(n, d_core, generator=gen, dtype=y.dtype)
    g = torch.randn(n, d_core, generator=gen, dtype=y.dtype)
    radius = torch.where(y > 0, 1.0, 2.0).to(y.dtype)
    core: torch.Tensor = g / g.norm(dim=1, keepdim=True) * radius[:, None]
    return core


def sample_background(
    n: int, d_bg: int, gen: torch.Generator, dtype: torch.dtype = torch.float32, half_width: float | None = None
) -> torch.Tensor:
    """``U[0,1]^d_bg`` (the task's), or ``U[-b, b]^d_bg`` for ``half_width=b`` (zero-mean, wide: pre-training)."""
    u = torch.rand(n, d_bg, generator=gen, dtype=dtype)
    return u if half_width is None else (2 * u - 1) * half_width


def shift_background(bg: torch.Tensor, ood: str, shift: float, scale: float) -> torch.Tensor:
    if ood == "flip":
        return -bg
    if ood == "shift":
        return bg + shift
    if ood == "scale":
        return bg * scale
    raise ValueError(f"ood must be flip, shift or scale, got {ood!r}")


def sample_set(
    n: int, d_core: int, d_bg: int, core: str, gen: torch.Generator, background: float | None = None
) -> LatentSet:
    y = balanced_labels(n)
    z = torch.cat([sample_core(y, d_core, core, gen), sample_background(n, d_bg, gen, half_width=background)], dim=1)
    return LatentSet(z[None], y[None])


def _stack(sets: list[LatentSet]) -> LatentSet:
    return LatentSet(torch.cat([s.z for s in sets]), torch.cat([s.y for s in sets]))


def make_task(
    seeds: list[int],
    d: int,
    d_core: int,
    d_bg: int,
    n: int,
    n_test: int,
    core: str,
    ood: str,
    ood_shift: float = -1.0,
    ood_scale: float = -1.0,
) -> ContaminationTask:
    """One independent task per seed (own map T, own samples), stacked along the first dimension."""
    k = d_core + d_bg
    Ts, train, id_test, ood_test, gens = [], [], [], [], []
    for seed in seeds:
        g_map = torch_generator(seed, stream_id("contamination.map"))
        q, _ = torch.linalg.qr(torch.randn(d, k, generator=g_map, dtype=torch.float64))
        Ts.append(q.T.to(torch.float32)[None])
        g_data = torch_generator(seed, stream_id("contamination.data"))
        train.append(sample_set(n, d_core, d_bg, core, g_data))
        test = sample_set(n_test, d_core, d_bg, core, g_data)
        id_test.append(test)
        z_ood = test.z.clone()
        z_ood[..., d_core:] = shift_background(test.z[..., d_core:], ood, ood_shift, ood_scale)
        ood_test.append(LatentSet(z_ood, test.y.clone()))
        gens.append(torch_generator(seed, stream_id("contamination.sampling")))
    return ContaminationTask(torch.cat(Ts), d_core, d_bg, _stack(train), _stack(id_test), _stack(ood_test), gens)


def online_batch(task: ContaminationTask, n: int, core: str) -> LatentSet:
    """Fresh training samples for every seed (online SGD), with the task's training backgrounds."""
    return _stack([sample_set(n, task.d_core, task.d_bg, core, g, task.background) for g in task.generators])


def pretrain_task(task: ContaminationTask, seeds: list[int], n: int, core: str, half_width: float) -> ContaminationTask:
    """The pre-training counterpart of ``task``: the same maps ``T`` and test sets, a fresh training set of ``n``
    per seed (its own random stream, so the task's own draws are untouched) whose backgrounds are
    ``U[-half_width, half_width]`` - zero mean and wide, so no background direction is favoured - and its own
    sampling generators."""
    train, gens = [], []
    for seed in seeds:
        g = torch_generator(seed, stream_id("contamination.pretrain"))
        train.append(sample_set(n, task.d_core, task.d_bg, core, g, background=half_width))
        gens.append(torch_generator(seed, stream_id("contamination.pretrain.sampling")))
    return ContaminationTask(
        task.T, task.d_core, task.d_bg, _stack(train), task.id_test, task.ood_test, gens, background=half_width
    )
