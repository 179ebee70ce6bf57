"""Training phases as one capability: pre-training -> linear probing (``lp``) -> the task, for any model.

A remedy (:data:`~spuriouslab.nets.remedies.REMEDIES`) says which phases run (:meth:`RemedySpec.phases
<spuriouslab.nets.remedies.RemedySpec.phases>` gives their lengths) and how the task phase's gradients are adjusted;
an experiment says, through its recipe (:data:`PhaseRecipe`), how one phase trains: its :class:`Phase` (a fresh
:class:`~spuriouslab.nets.train.TrainState` - optimizer, scheduler, generators - over the parameters it is given,
the step function, the fit options).  :func:`run_phases` owns the rest, the same for every experiment:

* the order (``pretrain``, ``lp``, ``task``), each phase a fresh optimizer from the model's weights as the phase
  before left them;
* the ``lp`` phase trains only the model's head (:func:`~spuriouslab.nets.models.head_parameters`), with
  BatchNorm statistics frozen (:func:`linear_probing`); under a remedy with an ``lp`` phase the head is trainable in
  every phase (also where the model was built with a frozen output layer: probing is training the head);
* the remedy's hooks in the task phase (:class:`~spuriouslab.nets.remedies.Adjustment`): its ``before_step`` runs
  before the recipe's own (a projection before gradient clipping), its ``backward`` replaces the summed loss's,
  and when it wants per-group losses the recipe's step is built with ``groups=True``;
* the checkpoint keys - ``<key>-pretrain``, ``<key>-lp`` and ``<key>`` - so a resumed run skips a finished phase,
  and the list of keys to discard once the records are written (:attr:`Phases.keys`);
* divergence, checked by the trainer in every phase, read by one :meth:`Phases.divergence`: a seed that diverged
  in any phase counts as diverged.

>>> import torch
>>> from spuriouslab.nets.phases import Phase, run_phases
>>> from spuriouslab.nets.train import TrainState
>>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
>>> x, y = torch.randn(8, 2), torch.randn(8, 1)
>>> def recipe(phase, params, length, groups):
...     state = TrainState(model, torch.optim.SGD(params, lr=0.1))
...     return Phase(state, lambda t: ((model(x) - y) ** 2).mean()[None], steps=length, log_every=5)
>>> done = run_phases(model, "lp-ft", {"pretrain": 10, "lp": 5, "task": 10}, recipe, key="k")
>>> list(done.states), done.keys, done.divergence(0)["status"]
(['pretrain', 'lp', 'task'], ['k', 'k-pretrain', 'k-lp'], 'ok')
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from spuriouslab.nets.models import batchnorm_momentum, head_parameters
from spuriouslab.nets.remedies import REMEDIES, Adjustment, Oracle, RemedyContext
from spuriouslab.nets.train import CheckpointStore, TrainState, fit

PHASES = ("pretrain", "lp", "task")
"""Every phase, in the order they run."""


@dataclass
class Phase:
    """One phase as the experiment trains it: its fresh ``state`` (optimizer and scheduler over the parameters the
    phase trains, the generators its steps draw from), ``step(t)`` (the per-seed losses (S,) of step t, or per group
    (G, S) when built with ``groups``; autocast belongs here), and the options of
    :func:`~spuriouslab.nets.train.fit`: ``steps``, ``log_every``, ``steps_per_epoch``, ``schedule``, ``measure``
    and the experiment's own ``before_step`` (e.g. gradient clipping, run after the remedy's)."""

    state: TrainState
    step: Callable[[int], torch.Tensor]
    steps: int
    log_every: int
    steps_per_epoch: int = 1
    schedule: Literal["step", "epoch"] = "step"
    measure: Callable[[int], dict[str, Any] | None] | None = None
    before_step: Callable[[], object] | None = None


PhaseRecipe = Callable[[str, list[torch.nn.Parameter], int, str | None], Phase]
"""How an experiment trains one phase: ``recipe(phase, params, length, groups)`` -> a :class:`Phase`.

``phase`` is ``pretrain``, ``lp`` or ``task`` (the recipe picks the data and the generators' streams by it),
``params`` the parameters it trains (its optimizer's), ``length`` the phase's length in the recipe's own unit (steps
or epochs, as given to :func:`run_phases`), ``groups`` the grouping whose per-group mean losses (G, S) the step must
give (``"class"``: the AND-mask's environments; ``"group"``: the coloured task's (label, colour) groups, GroupDRO's),
or None."""


@dataclass
class Phases:
    """What :func:`run_phases` trained: every phase's ``states`` in order (the task's last), the ``steps_per_epoch``
    each phase ran with, and ``keys``, every phase's checkpoint key (to discard once the records are written)."""

    states: dict[str, TrainState]
    steps_per_epoch: dict[str, int] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)

    @property
    def task(self) -> TrainState:
        """The task phase's state (its history is the run's curves)."""
        return self.states["task"]

    @property
    def first(self) -> TrainState:
        """The first phase's state (its first logged values are the random initialisation's)."""
        return next(iter(self.states.values()))

    @property
    def model(self) -> torch.nn.Module:
        return self.task.model

    def diverged(self, seed: int) -> bool:
        """Whether the seed at position ``seed`` diverged in any phase."""
        return any(seed in state.diverged_at for state in self.states.values())

    def divergence(self, seed: int, what: str = "training loss") -> dict[str, Any]:
        """The record's divergence fields (:meth:`TrainState.divergence
        <spuriouslab.nets.train.TrainState.divergence>`) of the first phase in which the seed diverged (the logged
        step counted within that phase), or the task phase's ``ok``."""
        for state in self.states.values():
            if seed in state.diverged_at:
                return state.divergence(seed, what)
        return self.task.divergence(seed, what)


def phase_key(key: str | None, phase: str) -> str | None:
    """A phase's checkpoint key: ``key`` for the task, ``key-<phase>`` before it (None: no checkpoints)."""
    if key is None:
        return None
    return key if phase == "task" else f"{key}-{phase}"


@contextlib.contextmanager
def frozen_statistics(module: torch.nn.Module) -> Iterator[None]:
    """Inside, every BatchNorm layer of ``module`` keeps its running statistics (momentum 0: training-mode
    batches still normalise by their own statistics, but the buffers the model is evaluated with do not move);
    the momenta are restored after."""
    with batchnorm_momentum(module, 0.0):
        yield


@contextlib.contextmanager
def linear_probing(model: torch.nn.Module) -> Iterator[list[torch.nn.Parameter]]:
    """LP-FT's probing phase: inside, only the model's head (:func:`~spuriouslab.nets.models.head_parameters`)
    requires gradients - its parameters are yielded for the phase's optimizer - and BatchNorm statistics stay
    where they are (:func:`frozen_statistics`), so everything but the head leaves the phase as it entered; every
    ``requires_grad`` flag is restored after."""
    head = head_parameters(model)
    ids = {id(p) for p in head}
    params = list(model.parameters())
    before = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(id(p) in ids)
        with frozen_statistics(model):
            yield [p for p in params if id(p) in ids]
    finally:
        for p, flag in zip(params, before, strict=True):
            p.requires_grad_(flag)


@contextlib.contextmanager
def _trainable(model: torch.nn.Module) -> Iterator[list[torch.nn.Parameter]]:
    yield [p for p in model.parameters() if p.requires_grad]


def _chain(*hooks: Callable[[], object] | None) -> Callable[[], object] | None:
    """The hooks given, run in order (None when there are none)."""
    present = [h for h in hooks if h is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]

    def chained() -> None:
        for hook in present:
            hook()

    return chained


def run_phases(
    model: torch.nn.Module,
    remedy: str,
    lengths: dict[str, int],
    recipe: PhaseRecipe,
    *,
    checkpoints: CheckpointStore | None = None,
    key: str | None = None,
    desc: str | None = None,
    progress: bool = False,
    oracle: Oracle | None = None,
    and_mask_tau: float = 1.0,
    groupdro_eta: float = 0.01,
) -> Phases:
    """Train ``model`` through the phases of ``remedy`` (:data:`~spuriouslab.nets.remedies.REMEDIES`):
    ``lengths`` maps each of its phases to its length (:meth:`RemedySpec.phases
    <spuriouslab.nets.remedies.RemedySpec.phases>`, in the recipe's unit), ``recipe`` builds each
    :class:`Phase`.  Each phase is checkpointed under its own key (:func:`phase_key`), so a resumed run continues
    where it stopped and takes no step of a finished phase; ``desc`` and ``progress`` are the progress bar's.
    ``oracle`` (the first layer and the core basis, where the experiment knows them), ``and_mask_tau`` and
    ``groupdro_eta`` reach the remedy's hooks (:class:`~spuriouslab.nets.remedies.RemedyContext`)."""
    spec = REMEDIES[remedy]
    wanted = list(spec.phases(1))
    if sorted(lengths) != sorted(wanted):
        raise ValueError(f"remedy {remedy!r} runs the phases {wanted}, got lengths for {list(lengths)}")
    if "lp" in lengths:  # probing trains the head: it is trainable from the start, whatever the model froze
        for p in head_parameters(model):
            p.requires_grad_(True)
    states: dict[str, TrainState] = {}
    spe: dict[str, int] = {}
    for name in (p for p in PHASES if p in lengths):
        with linear_probing(model) if name == "lp" else _trainable(model) as params:
            adjust = Adjustment()
            if name == "task" and spec.adjust is not None:
                adjust = spec.adjust(RemedyContext(params, oracle, and_mask_tau, groupdro_eta))
            phase = recipe(name, params, lengths[name], adjust.groups)
            fit(
                phase.state,
                phase.step,
                phase.steps,
                log_every=phase.log_every,
                measure=phase.measure,
                checkpoints=checkpoints,
                key=phase_key(key, name),
                steps_per_epoch=phase.steps_per_epoch,
                schedule=phase.schedule,
                before_step=_chain(adjust.before_step, phase.before_step),
                backward=adjust.backward,
                after_step=adjust.after_step,
                desc=desc if name == "task" or desc is None else f"{desc} ({name})",
                progress=progress,
            )
        states[name], spe[name] = phase.state, phase.steps_per_epoch
    keys = [k for k in (phase_key(key, name) for name in ["task", *(p for p in states if p != "task")]) if k]
    return Phases(states, spe, keys)
