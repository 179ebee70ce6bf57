"""Remedies for feature contamination: the registry :data:`REMEDIES`, each entry declaring its phases and its
gradient hooks, which :func:`spuriouslab.nets.phases.run_phases` composes with an experiment's training recipe.

A config's ``remedy`` axis takes the registry's names; a :class:`RemedySpec` says which phases run before the task
(:meth:`RemedySpec.phases`) and, through ``adjust``, how the task phase's gradients are changed (an
:class:`Adjustment` built from a :class:`RemedyContext`), so a new remedy is one entry:

* ``none`` - training as the papers do it;
* ``pretrain`` - a pre-training phase on data whose backgrounds vary widely (zero-mean, diverse backgrounds for
  the synthetic tasks; the randomised backgrounds the distillation teacher sees for images), then the narrow task
  from the pre-trained weights (a fresh optimizer).  Zhang et al. (ICML 2024, Section 6) ask whether this is why
  pre-trained models generalise better OOD;
* ``lp-ft`` - pre-training as above, then linear probing (only the model's head trains:
  :func:`spuriouslab.nets.phases.linear_probing`), then fine-tuning of everything from the probed head (Kumar et
  al., "Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution", ICLR 2022);
* ``project-oracle`` - every step, the first layer's weight gradient is projected onto the known core subspace
  (:class:`CoreProjection`), and so is every update: the background weight stays at its initial value.
  Synthetic tasks only, where the subspace is known (the experiment's :class:`Oracle`): an upper bound on what
  any gradient adjustment of the first layer can do;
* ``and-mask`` - the AND-mask of Parascandolo et al., "Learning explanations that are hard to vary" (ICLR 2021),
  with the classes as the environments: each class's gradient is computed separately and a parameter's update is
  the mean gradient where at least a fraction ``tau`` of the classes agree on its sign, zero elsewhere
  (:func:`and_mask_backward`).  What it estimates from the training data: per parameter and per step, the sign
  agreement of the class-wise gradients.  Why classes: a label-independent background feature pulls a neuron's
  weight one way on one class and the other way on the other (the class-asymmetric activation of Zhang et al.'s
  mechanism leaves a net pull), while a core feature pulls it the same way on both.  It needs no oracle, but it
  sees parameters in the input's coordinates, where core and background directions mix.

>>> import torch
>>> from spuriouslab.nets.remedies import and_mask_backward
>>> w = torch.nn.Parameter(torch.zeros(1, 2))
>>> x = torch.tensor([[1.0, 1.0], [1.0, -1.0]])          # class 0 and class 1: agree on coordinate 0 only
>>> losses = (x * w).sum(dim=1, keepdim=True) * -1.0      # (environments, seeds)
>>> _ = and_mask_backward([w], tau=1.0)(losses)
>>> w.grad.tolist()
[[-1.0, 0.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import AfterValidator


@dataclass(frozen=True)
class Oracle:
    """What an experiment knows of its task's core subspace (synthetic tasks): the first layer's ``weight``
    (S, m, d) and the orthonormal ``core`` basis (S, k, d) it should stay in."""

    weight: torch.Tensor
    core: torch.Tensor


@dataclass(frozen=True)
class RemedyContext:
    """What a remedy's hooks are built from: the task phase's trainable ``params``, the experiment's ``oracle``
    (None where the core subspace is not known) and the AND-mask's agreement threshold ``tau``."""

    params: list[torch.nn.Parameter]
    oracle: Oracle | None = None
    tau: float = 1.0


@dataclass(frozen=True)
class Adjustment:
    """A remedy's hooks into :func:`~spuriouslab.nets.train.fit`: ``before_step`` (between backward and the
    optimizer; it runs before the experiment's own, e.g. gradient clipping), ``after_step`` (right after the
    optimizer), ``backward`` (replaces the summed loss's backward) and ``groups`` (the step must give per-class
    losses (classes, S), the AND-mask's environments)."""

    before_step: Callable[[], object] | None = None
    after_step: Callable[[], object] | None = None
    backward: Callable[[torch.Tensor], torch.Tensor] | None = None
    groups: bool = False


def project_oracle(ctx: RemedyContext) -> Adjustment:
    """``project-oracle``'s hooks: the first layer's gradient and update confined to the core subspace
    (:class:`CoreProjection`)."""
    if ctx.oracle is None:
        raise ValueError("project-oracle needs the known core subspace of a synthetic task (an Oracle)")
    projection = CoreProjection(ctx.oracle.weight, ctx.oracle.core)
    return Adjustment(before_step=projection.before_step, after_step=projection.after_step)


def and_mask(ctx: RemedyContext) -> Adjustment:
    """``and-mask``'s hooks: per-class losses, and the AND-mask's backward over them (:func:`and_mask_backward`)."""
    return Adjustment(backward=and_mask_backward(ctx.params, ctx.tau), groups=True)


@dataclass(frozen=True)
class RemedySpec:
    """One remedy: ``pretrain`` (a phase on wide backgrounds first), ``lp`` (a linear-probing phase: only the
    head trains, before the fine-tuning: LP-FT), ``adjust`` (its gradient hooks in the task phase, built from a
    :class:`RemedyContext`; None: none), ``oracle`` (it needs the core subspace: synthetic tasks only), ``cost``
    (a task step's work relative to a plain one, for memory and time estimates), ``reference`` (where it comes
    from)."""

    description: str
    pretrain: bool = False
    lp: bool = False
    adjust: Callable[[RemedyContext], Adjustment] | None = None
    oracle: bool = False
    cost: float = 1.0
    reference: str = ""

    def phases(self, task: int, pretrain: int | None = None, lp: int | None = None) -> dict[str, int]:
        """The training phases in order, with their lengths (steps or epochs, in the unit given): pre-training
        (``pretrain``; default the task's length), linear probing (``lp``; default a quarter of it, at least
        1), then the task.

        >>> REMEDIES["lp-ft"].phases(100)
        {'pretrain': 100, 'lp': 25, 'task': 100}
        """
        out = {"pretrain": pretrain or task} if self.pretrain else {}
        if self.lp:
            out["lp"] = lp or max(1, task // 4)
        out["task"] = task
        return out


REMEDIES: dict[str, RemedySpec] = {
    "none": RemedySpec("no remedy: training as in the papers"),
    "pretrain": RemedySpec(
        "pre-training on wide, zero-mean backgrounds, then the narrow task",
        pretrain=True,
        reference="Zhang et al., ICML 2024 (Section 6, open question)",
    ),
    "lp-ft": RemedySpec(
        "pre-training, then linear probing, then fine-tuning from the probed head",
        pretrain=True,
        lp=True,
        reference="Kumar et al., ICLR 2022",
    ),
    "project-oracle": RemedySpec(
        "first-layer gradient projected onto the known core subspace (synthetic only; an upper bound)",
        adjust=project_oracle,
        oracle=True,
    ),
    "and-mask": RemedySpec(
        "AND-mask over the classes as environments: updates only where the class-wise gradients agree in sign",
        adjust=and_mask,
        cost=2.0,  # a backward per class
        reference="Parascandolo et al., ICLR 2021",
    ),
}


def _remedy(name: str) -> str:
    if name not in REMEDIES:
        raise ValueError(f"allowed: {', '.join(REMEDIES)}")
    return name


RemedyName = Annotated[str, AfterValidator(_remedy)]
"""A config field type: a remedy of :data:`REMEDIES`."""


# --------------------------------------------------------------------------------------- gradient surgery
class CoreProjection:
    """The oracle's gradient adjustment of a first-layer ``weight`` (S, m, d): every update confined to the span of
    ``basis`` (S, k, d, orthonormal rows per seed), the known core subspace.

    :meth:`before_step` projects the gradient (``grad B^T B``), so momentum and Adam's moments see only its core
    part; :meth:`after_step` projects the update itself (``W_before + (W - W_before) B^T B``), because an
    elementwise optimizer (Adam's normalisation, per coordinate of the input) and weight decay would otherwise move
    the weight out of the span.  So the weight's component outside the core subspace - the background projection -
    stays at its initial value."""

    def __init__(self, weight: torch.Tensor, basis: torch.Tensor):
        self.weight, self.basis = weight, basis
        self._before: torch.Tensor | None = None

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bmm(torch.bmm(x, self.basis.transpose(1, 2)), self.basis)

    @torch.no_grad()
    def before_step(self) -> None:
        self._before = self.weight.detach().clone()
        if self.weight.grad is not None:
            self.weight.grad.copy_(self._project(self.weight.grad))

    @torch.no_grad()
    def after_step(self) -> None:
        if self._before is not None:
            self.weight.copy_(self._before + self._project(self.weight - self._before))


def and_mask_backward(params: Sequence[torch.nn.Parameter], tau: float = 1.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """A ``backward`` for :func:`~spuriouslab.nets.train.fit`: the step's losses (E, S) - environment by seed -
    give one gradient per environment; each parameter's gradient is their mean where ``|mean(sign)| >= tau``
    (elementwise, so per seed of stacked parameters) and zero elsewhere.  Returns the per-seed loss (S,) (the
    mean over environments) for the trainer's divergence check.  An environment with no sample in a batch
    contributes a zero gradient (sign 0), which counts against agreement."""
    params = [p for p in params if p.requires_grad]

    def backward(losses: torch.Tensor) -> torch.Tensor:
        E = losses.shape[0]
        per_env = [
            torch.autograd.grad(losses[e].sum(), params, retain_graph=e < E - 1, allow_unused=True) for e in range(E)
        ]
        for i, p in enumerate(params):
            grads = torch.stack([g[i] if g[i] is not None else torch.zeros_like(p) for g in per_env])
            agree = torch.sign(grads).mean(dim=0).abs() >= tau - 1e-6
            p.grad = grads.mean(dim=0) * agree
        return losses.detach().mean(dim=0)

    return backward


def group_means(per_sample: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Mean of ``per_sample`` losses (S, B) within each group of ``groups`` (S, B; integers in [0, n_groups)):
    (n_groups, S).  A group absent from a seed's batch gets 0 (no gradient)."""
    onehot = torch.nn.functional.one_hot(groups.long(), n_groups).to(per_sample.dtype)  # (S, B, G)
    totals = torch.einsum("sb,sbg->gs", per_sample, onehot)
    counts = onehot.sum(dim=1).T.clamp(min=1)  # (G, S)
    return totals / counts
