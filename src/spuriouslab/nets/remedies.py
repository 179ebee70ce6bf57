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

The spurious-correlation literature's remedies (the coloured task, whose groups are (label, colour); SpuCo,
SubpopBench and DomainBed implement them alike).  ``group labels`` says which read the training groups:

* ``reweight`` - group-balanced reweighting: each training sample's loss weighted by ``N / (G N_g)`` (its group's
  share inverted; ``G`` the groups present), so every group weighs the same (:func:`balanced_weights`).  Group
  labels: yes;
* ``groupdro`` - GroupDRO (Sagawa et al., "Distributionally Robust Neural Networks for Group Shifts", ICLR
  2020): the loss is ``sum_g q_g L_g`` over the batch's group mean losses, with ``q`` moved towards the worst
  group by exponentiated gradient, ``q_g <- q_g exp(eta L_g)``, renormalised every step
  (:class:`GroupDROBackward`).  Group labels: yes;
* ``jtt`` - Just Train Twice (Liu et al., ICML 2021): an identification model trained by ERM for a few epochs
  (``jtt_epochs``), then a fresh model trained on the same data with the first model's misclassified training
  samples upweighted by ``jtt_up`` (:func:`jtt_weights`).  Group labels: no (only for model selection);
* ``dfr`` - Deep Feature Reweighting (Kirichenko et al., "Last Layer Re-Training is Sufficient for Robustness to
  Spurious Correlations", ICLR 2023): ERM, then the last layer alone re-fitted (from zero, the encoder and its
  BatchNorm statistics frozen) on a group-balanced held-out split (the first half of the validation split,
  weighted by :func:`balanced_weights`; the paper subsamples instead).  Group labels: yes, on held-out data only.

None of them applies to the synthetic contamination task: its background is Gaussian and independent of the label,
so there is no (label, background) group to balance - reweighting and GroupDRO would see one group per class
(class balancing, which the task already has), JTT's error set carries no background information, and DFR's
"balanced" held-out data is the training distribution itself.  The configs there refuse them in one line.

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
    (None where the core subspace is not known), the AND-mask's agreement threshold ``tau`` and GroupDRO's ``eta``."""

    params: list[torch.nn.Parameter]
    oracle: Oracle | None = None
    tau: float = 1.0
    eta: float = 0.01  # GroupDRO's step size for the group weights


@dataclass(frozen=True)
class Adjustment:
    """A remedy's hooks into :func:`~spuriouslab.nets.train.fit`: ``before_step`` (between backward and the
    optimizer; it runs before the experiment's own, e.g. gradient clipping), ``after_step`` (right after the
    optimizer), ``backward`` (replaces the summed loss's backward) and ``groups`` (the step must give per-group
    mean losses (G, S): ``"class"`` per class, the AND-mask's environments; ``"group"`` per (label, colour) group of
    the coloured task, GroupDRO's; None: the per-seed loss (S,))."""

    before_step: Callable[[], object] | None = None
    after_step: Callable[[], object] | None = None
    backward: Callable[[torch.Tensor], torch.Tensor] | None = None
    groups: str | None = None


def project_oracle(ctx: RemedyContext) -> Adjustment:
    """``project-oracle``'s hooks: the first layer's gradient and update confined to the core subspace
    (:class:`CoreProjection`)."""
    if ctx.oracle is None:
        raise ValueError("project-oracle needs the known core subspace of a synthetic task (an Oracle)")
    projection = CoreProjection(ctx.oracle.weight, ctx.oracle.core)
    return Adjustment(before_step=projection.before_step, after_step=projection.after_step)


def and_mask(ctx: RemedyContext) -> Adjustment:
    """``and-mask``'s hooks: per-class losses, and the AND-mask's backward over them (:func:`and_mask_backward`)."""
    return Adjustment(backward=and_mask_backward(ctx.params, ctx.tau), groups="class")


def groupdro(ctx: RemedyContext) -> Adjustment:
    """``groupdro``'s hooks: per-group losses (label, colour), and GroupDRO's backward over them."""
    return Adjustment(backward=GroupDROBackward(ctx.eta), groups="group")


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
    group_labels: bool = False  # it reads the (label, colour) groups of the coloured task (training or held-out)
    family: str = "contamination"  # the failure mode it was built for: none, contamination, spurious correlation
    stage: str = ""  # a stage the experiment runs around the phases: "jtt" (train twice) or "dfr" (last layer)
    weights: str = ""  # per-sample loss weights of the task phase: "balanced" (reweight) or "errors" (jtt)

    @property
    def needs_groups(self) -> bool:
        """It needs the coloured task's groups or its held-out split (reweight, groupdro, jtt, dfr)."""
        return self.group_labels or bool(self.stage)

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
    "none": RemedySpec("no remedy: training as in the papers", family="none"),
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
    "reweight": RemedySpec(
        "group-balanced reweighting: each sample's loss weighted by N / (G N_g)",
        reference="e.g. Sagawa et al., ICLR 2020; Idrissi et al., CLeaR 2022",
        group_labels=True,
        weights="balanced",
        family="spurious correlation",
    ),
    "groupdro": RemedySpec(
        "GroupDRO: the worst groups' losses upweighted online by exponentiated gradient",
        adjust=groupdro,
        reference="Sagawa et al., ICLR 2020",
        group_labels=True,
        family="spurious correlation",
    ),
    "jtt": RemedySpec(
        "Just Train Twice: ERM for jtt_epochs, then a fresh model with its training errors upweighted by jtt_up",
        cost=1.25,  # the identification model's epochs (a quarter by default)
        reference="Liu et al., ICML 2021",
        stage="jtt",
        weights="errors",
        family="spurious correlation",
    ),
    "dfr": RemedySpec(
        "DFR: ERM, then the last layer re-fitted on a group-balanced held-out split",
        reference="Kirichenko et al., ICLR 2023",
        group_labels=True,
        stage="dfr",
        family="spurious correlation",
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


# --------------------------------------------------------------------------- spurious-correlation remedies
def balanced_weights(groups: torch.Tensor) -> torch.Tensor:
    """Group-balanced sample weights ``N / (G N_g)`` for integer ``groups`` (..., N) (per row: ``G`` the groups
    present in the row, ``N_g`` each one's count): every group's weights sum to ``N / G`` and the weights' mean is 1.

    >>> [round(w, 4) for w in balanced_weights(torch.tensor([0, 0, 0, 1])).tolist()]  # 4 / (2 * 3), 4 / (2 * 1)
    [0.6667, 0.6667, 0.6667, 2.0]
    """
    g = groups.long()
    onehot = torch.nn.functional.one_hot(g, int(g.max()) + 1).to(torch.float32)  # (..., N, G)
    counts = onehot.sum(dim=-2, keepdim=True)  # (..., 1, G)
    present = (counts > 0).sum(dim=-1, keepdim=True).to(torch.float32)  # (..., 1, 1)
    n = torch.tensor(g.shape[-1], dtype=torch.float32)
    per_group = n / (present * counts.clamp(min=1))
    return (onehot * per_group).sum(dim=-1)


def jtt_weights(errors: torch.Tensor, up: float) -> torch.Tensor:
    """JTT's sample weights from the identification model's training errors (bool, (..., N)): ``up`` for an error
    and 1 otherwise - the upsampled data set's loss, as weights - rescaled to mean 1 per row.

    >>> jtt_weights(torch.tensor([True, False, False, False]), 5.0).tolist()   # (5, 1, 1, 1) / 2
    [2.5, 0.5, 0.5, 0.5]
    """
    w = 1.0 + (float(up) - 1.0) * errors.to(torch.float32)
    return w / w.mean(dim=-1, keepdim=True)


class GroupDROBackward:
    """GroupDRO's ``backward`` for :func:`~spuriouslab.nets.train.fit`: the step's group mean losses (G, S) - a
    group absent from the batch gives 0 - move the group weights ``q`` (G, S), uniform at the start, by
    ``q_g <- q_g exp(eta L_g)`` then ``q <- q / sum q`` (Sagawa et al.'s algorithm 1), and the robust loss
    ``sum_g q_g L_g`` is back-propagated.  Returns the per-seed robust loss (S,).  ``q`` lives in this object: a
    run resumed from a checkpoint starts it uniform again.

    >>> backward = GroupDROBackward(1.0)
    >>> w = torch.nn.Parameter(torch.ones(2, 1))
    >>> _ = backward(w * torch.tensor([[1.0], [3.0]]))       # group 1's loss is larger
    >>> round(float(backward.q[1, 0]), 4)                      # e^3 / (e^1 + e^3)
    0.8808
    """

    def __init__(self, eta: float):
        self.eta = float(eta)
        self.q: torch.Tensor | None = None

    def __call__(self, losses: torch.Tensor) -> torch.Tensor:
        q = self.q
        if q is None or q.shape != losses.shape:
            q = torch.full(losses.shape, 1.0 / losses.shape[0], device=losses.device)
        q = q * torch.exp(self.eta * losses.detach())
        q = q / q.sum(dim=0, keepdim=True)
        self.q = q
        robust: torch.Tensor = (q * losses).sum(dim=0)
        torch.autograd.backward(robust.sum())
        return robust.detach()
