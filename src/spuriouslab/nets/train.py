"""The one trainer: :class:`TrainState` (everything a run needs to continue) and :func:`fit` (the loop), with
the pieces every trained experiment shares: losses, optimizers, the minibatch sampler (:class:`Minibatches`),
chunked evaluation (:func:`evaluate`) in eval mode (:func:`evaluating`), per-seed gradient clipping and the
warm-up + cosine schedule.

A step does nothing but the step itself (zero grad, the experiment's per-seed losses, backward, clipping, the
optimizer, the scheduler) plus one elementwise maximum that tracks divergence; evaluation, checkpoints, progress
and the divergence verdict happen only at logging steps.  Experiments describe the step and the measurement;
the trainer owns the loop, the schedule, checkpoints and divergence:

>>> import torch
>>> from spuriouslab.nets.train import TrainState, fit
>>> model = torch.nn.Linear(2, 1)
>>> state = TrainState(model, torch.optim.SGD(model.parameters(), lr=0.1))
>>> x, y = torch.randn(8, 2), torch.randn(8, 1)
>>> state = fit(state, lambda t: ((model(x) - y) ** 2).mean()[None], steps=20, log_every=10,
...             measure=lambda t: {"w": model.weight.norm()[None]})
>>> state.step, state.history["step"], state.diverged_at
(20, [0, 10, 20], {})
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import torch
from tqdm.auto import tqdm

from spuriouslab.errors import describe
from spuriouslab.nets.models import batchnorm_momentum


class CheckpointStore(Protocol):
    """Where :func:`fit` keeps a run's checkpoints, by key (:class:`spuriouslab.store.Checkpoints`: a run
    directory's ``checkpoints/``).  ``load`` gives what ``save`` stored, or None (no checkpoint, or an unreadable
    one, set aside); ``set_aside`` moves one that does not match its run out of the way; ``discard`` drops one
    once its group's records are written; ``directory`` is where they are (worker processes open it again)."""

    @property
    def directory(self) -> Path: ...

    def load(self, key: str) -> object: ...

    def save(self, key: str, obj: object) -> None: ...

    def set_aside(self, key: str, reason: str) -> None: ...

    def discard(self, key: str) -> None: ...


def hinge(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.clamp(1 - y * f, min=0).mean(dim=-1)


def logistic(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.softplus(-y * f).mean(dim=-1)  # log(1 + exp(-y f)), overflow-free


def mse(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((f - y) ** 2).mean(dim=-1)


def sample_cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy (S, B) of logits (S, B, C) against class targets (S, B), computed in float32 (so
    bfloat16 autocast outputs are scored at full precision)."""
    ce = torch.nn.functional.cross_entropy(out.flatten(0, 1).float(), y.flatten(), reduction="none")
    return ce.view(y.shape)


def seed_cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-seed cross-entropy (S,): the mean over the batch of :func:`sample_cross_entropy`."""
    return sample_cross_entropy(out, y).mean(dim=1)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "hinge": hinge,
    "logistic": logistic,
    "mse": mse,
}


# A training loss above this counts as diverged.  Every loss here is O(1) at initialisation (hinge, logistic and
# MSE of +-1 labels, cross-entropy log C, an embedding MSE), so a loss a million times larger means the run has
# blown up.
DIVERGENCE_BOUND = 1e6


def diverged(loss: torch.Tensor) -> torch.Tensor:
    """Per-seed mask: the loss is not finite or exceeds :data:`DIVERGENCE_BOUND`."""
    loss = torch.as_tensor(loss)
    return ~torch.isfinite(loss) | (loss.abs() > DIVERGENCE_BOUND)


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0, momentum: float = 0.0
) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    kw: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
    cls: Callable[..., torch.optim.Optimizer]
    if name == "sgd":
        cls, kw["momentum"] = torch.optim.SGD, momentum
    elif name == "adam":
        cls = torch.optim.Adam
    elif name == "adamw":
        cls = torch.optim.AdamW
    else:
        raise ValueError(f"optimizer must be sgd, adam or adamw, got {name!r}")
    try:
        return cls(params, fused=True, **kw)  # one fused kernel for the whole update
    except (RuntimeError, TypeError, ValueError):
        return cls(params, foreach=True, **kw)


# ------------------------------------------------------------------------------------------ the state
@dataclass
class TrainState:
    """Everything a training run needs to continue where it stopped.

    ``model``, ``optimizer`` and ``scheduler`` (or None) are the torch objects; ``generators`` every random
    generator the steps draw from (minibatch order, online samples, augmentation noise), in a fixed order;
    ``history`` the measurements at each logged step (``history["step"]`` the steps, every other key one list of
    per-seed values per logged step); ``step`` the number of optimizer steps taken; ``diverged_at`` the seeds
    (by position) whose step loss diverged, with the logged step at which that was seen.  :meth:`state_dict` /
    :meth:`load_state_dict` save and restore all of it in one object (a checkpoint).  What a run returns besides
    (phases, their keys) is :class:`spuriouslab.nets.phases.Phases`'s, not the state's."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any = None
    generators: list[torch.Generator] = field(default_factory=list)
    history: dict[str, list[Any]] = field(default_factory=dict)
    step: int = 0
    diverged_at: dict[int, int] = field(default_factory=dict)
    stopped: bool = False  # every seed diverged: training stopped early
    last_loss: torch.Tensor | None = None  # per-seed loss of the latest step (not saved)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "generators": [g.get_state() for g in self.generators],
            "history": self.history,
            "step": self.step,
            "diverged_at": dict(self.diverged_at),
            "stopped": self.stopped,
        }

    def load_state_dict(self, saved: object) -> None:
        """Restore a :meth:`state_dict`; a checkpoint that does not match this state (other keys, shapes or
        generators) raises ValueError and leaves the state as it was.  A checkpoint written when the state had an
        ``extra`` field loads (that field is ignored)."""
        if not isinstance(saved, dict) or set(saved) - {"extra"} != set(self.state_dict()):
            got = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
            raise ValueError(f"not a training checkpoint of this kind (keys {got})")
        if len(saved["generators"]) != len(self.generators) or (saved["scheduler"] is None) != (self.scheduler is None):
            raise ValueError("the checkpoint's generators or scheduler do not match this run")
        before = copy.deepcopy(self.state_dict())
        try:
            self._load_torch_state(saved)
            step = int(saved["step"])
            history, diverged_at = dict(saved["history"]), {int(k): int(v) for k, v in saved["diverged_at"].items()}
            if step < 0 or not isinstance(history.get("step", []), list):
                raise ValueError(f"step {step} and history do not describe a run")
        except Exception as exc:  # noqa: BLE001 - any mismatch: restore what we had, say what was wrong
            self._load_torch_state(before)
            raise ValueError(describe(exc, 200)) from None
        self.step, self.history, self.diverged_at = step, history, diverged_at
        self.stopped = bool(saved["stopped"])

    def _load_torch_state(self, saved: dict[str, Any]) -> None:
        """Model, optimizer, scheduler and generators from a :meth:`state_dict`."""
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        for g, st in zip(self.generators, saved["generators"], strict=True):
            g.set_state(st)

    def curve(self, key: str, seed: int) -> list[Any]:
        """The logged values of ``key`` for the seed at position ``seed``."""
        return [values[seed] for values in self.history[key]]

    def divergence(self, seed: int, what: str = "training loss") -> dict[str, Any]:
        """The record fields every trained experiment writes: ``status`` (ok / diverged), ``diverged_at`` (the
        logged step at which the step loss was seen to diverge, or None) and ``error``."""
        at = self.diverged_at.get(seed)
        if at is None:
            return {"status": "ok", "diverged_at": None, "error": ""}
        return {
            "status": "diverged",
            "diverged_at": at,
            "error": f"{what} not finite or above {DIVERGENCE_BOUND:g} by step {at}",
        }


def resume(state: TrainState, checkpoints: CheckpointStore | None, key: str | None) -> bool:
    """Load ``state`` from checkpoint ``key`` if there is one; a checkpoint that loads but does not match is set
    aside (``*.corrupt``) with a warning and the state starts fresh.  Returns whether it resumed."""
    if checkpoints is None or key is None:
        return False
    saved = checkpoints.load(key)
    if saved is None:
        return False
    try:
        state.load_state_dict(saved)
    except ValueError as exc:
        checkpoints.set_aside(key, f"does not match this run ({exc})")
        return False
    return True


# ------------------------------------------------------------------------------------------ the loop
def fit(
    state: TrainState,
    step: Callable[[int], torch.Tensor],
    steps: int,
    *,
    log_every: int,
    measure: Callable[[int], dict[str, Any] | None] | None = None,
    checkpoints: CheckpointStore | None = None,
    key: str | None = None,
    steps_per_epoch: int = 1,
    schedule: Literal["step", "epoch"] = "step",
    before_step: Callable[[], object] | None = None,
    backward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    after_step: Callable[[], object] | None = None,
    desc: str | None = None,
    progress: bool = False,
) -> TrainState:
    """Train ``state`` to ``steps`` optimizer steps and return it.

    ``step(t)`` (t = 1, 2, ...) returns the per-seed losses (a tensor of shape (S,), one entry per seed trained
    together) of step t's batch; their sum is minimised, so seeds stacked in one model keep their own
    trajectories.  ``backward(losses)`` replaces ``losses.sum().backward()`` (a gradient adjustment that needs
    more than the summed loss, e.g. :func:`spuriouslab.nets.remedies.and_mask_backward`): it fills the
    gradients and returns the per-seed losses (S,) the divergence check reads.  ``before_step`` runs between
    backward and the optimizer (gradient clipping, gradient projection), ``after_step`` right after the optimizer
    (a constraint on the update).  The scheduler steps after every optimizer step (``schedule="step"``) or after
    the last step of every epoch of ``steps_per_epoch`` steps (``"epoch"``).

    At step 0 (a fresh run), every ``log_every`` steps and at the end: the seeds whose step loss was not finite
    or above :data:`DIVERGENCE_BOUND` at any step since the last log are marked in ``state.diverged_at`` (once
    every seed has diverged, training stops there: ``state.stopped``); ``measure(t)`` is called and what it
    returns (tensors or lists of per-seed values) appended to ``state.history``; and with ``checkpoints`` (the
    run directory's :class:`~spuriouslab.store.Checkpoints`) the whole state is saved under ``key``.  A run that
    finds its checkpoint continues from it (a finished one takes no step); the caller discards the checkpoint
    once its records are written."""
    resume(state, checkpoints, key)
    if state.step == 0 and not state.history:
        _log(state, 0, measure)
    worst = None  # per-seed maximum of the step losses since the last log (NaN propagates)
    bar = tqdm(total=steps, initial=state.step, desc=desc, leave=False, disable=not progress, unit="step")
    last = state.step
    optimizer, scheduler = state.optimizer, state.scheduler
    state.model.train()
    for t in range(state.step + 1, steps + 1):
        if state.stopped:
            break
        optimizer.zero_grad(set_to_none=True)
        loss = step(t)
        if backward is None:
            loss.sum().backward()
        else:
            loss = backward(loss)
        if before_step is not None:
            before_step()
        optimizer.step()
        if after_step is not None:
            after_step()
        if scheduler is not None and (schedule == "step" or t % steps_per_epoch == 0):
            scheduler.step()
        state.last_loss = loss = loss.detach()
        worst = loss.clone() if worst is None else torch.maximum(worst, loss)
        state.step = t
        if t % log_every == 0 or t == steps:
            for i in torch.nonzero(diverged(worst.cpu())).flatten().tolist():
                state.diverged_at.setdefault(i, t)
            state.stopped = len(state.diverged_at) == worst.numel()
            worst = None
            _log(state, t, measure)
            if checkpoints is not None and key is not None:
                checkpoints.save(key, state.state_dict())
            bar.update(t - last)
            last = t
    bar.close()
    return state


def _log(state: TrainState, t: int, measure: Callable[[int], dict[str, Any] | None] | None) -> None:
    logged = measure(t) if measure is not None else None
    state.history.setdefault("step", []).append(t)
    for k, v in (logged or {}).items():
        state.history.setdefault(k, []).append(v.detach().cpu().tolist() if isinstance(v, torch.Tensor) else list(v))


# ------------------------------------------------------------------------------- batches and evaluation
class Minibatches:
    """Per-step index tensors ``(S, B)`` into each seed's own training set of ``n`` samples.

    ``batch_size=0``: the full batch, in order, every step.  Otherwise ``replace=False`` (epochs): at the first
    step of every epoch each seed draws its own permutation of ``range(n)`` from its generator and the epoch walks
    through it in ``ceil(n / batch_size)`` steps; ``replace=True``: each step draws ``batch_size`` indices with
    replacement.  The generators belong to the :class:`TrainState`, so a resumed run draws what it would have."""

    def __init__(
        self, n: int, batch_size: int, generators: list[torch.Generator], device: str = "cpu", replace: bool = False
    ):
        self.n, self.batch_size, self.generators, self.device, self.replace = n, batch_size, generators, device, replace
        self.steps_per_epoch = 1 if batch_size == 0 or replace else math.ceil(n / batch_size)
        self._perm: torch.Tensor | None = None
        self._full: torch.Tensor | None = None

    def __call__(self, t: int) -> torch.Tensor:
        if self.batch_size == 0:
            if self._full is None:
                self._full = torch.arange(self.n, device=self.device).expand(len(self.generators), -1)
            return self._full
        if self.replace:
            return torch.stack([torch.randint(self.n, (self.batch_size,), generator=g) for g in self.generators]).to(
                self.device
            )
        i = (t - 1) % self.steps_per_epoch
        if i == 0 or self._perm is None:
            self._perm = torch.stack([torch.randperm(self.n, generator=g) for g in self.generators]).to(self.device)
        return self._perm[:, i * self.batch_size : (i + 1) * self.batch_size]


def gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``idx`` (S, B) of each seed's data ``x`` (S, n, ...) -> (S, B, ...)."""
    return torch.gather(x, 1, idx.view(*idx.shape, *[1] * (x.dim() - 2)).expand(-1, -1, *x.shape[2:]))


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Eval mode (BatchNorm running statistics, no dropout) inside, the previous mode restored after."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


@torch.no_grad()
def evaluate(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    model: torch.nn.Module | None = None,
    chunk: int = 2048,
    dim: int = 1,
) -> torch.Tensor:
    """``fn`` on ``x`` in chunks of ``chunk`` along ``dim`` (the sample dimension: 1 for seed-stacked inputs),
    without gradients and with ``model`` (default: ``fn`` itself) in eval mode; outputs concatenated."""
    module = model if model is not None else fn
    with evaluating(module) if isinstance(module, torch.nn.Module) else contextlib.nullcontext():
        return torch.cat([fn(part) for part in torch.split(x, chunk, dim=dim)], dim=dim)


def recalibrate_batchnorm(model: torch.nn.Module, x: torch.Tensor, chunk: int = 250, dim: int = 1) -> None:
    """Set every BatchNorm's running statistics to their average over ``x`` under the current weights ("precise
    BN"): reset, then one pass in training mode without gradients, the statistics averaged over chunks of
    ``chunk`` samples (along ``dim``), each BatchNorm's momentum restored after.  Eval-mode outputs then use
    statistics of the final weights instead of a running average that lags them - with a slow momentum (0.01,
    TensorFlow's EfficientNets) and a few hundred steps the lag dominates an embedding's error.  Training is
    unaffected (it uses batch statistics).  A model without BatchNorm is left as it is."""
    was_training = model.training
    with batchnorm_momentum(model, None) as norms:  # None: a cumulative average over the chunks
        if not norms:
            return
        for m in norms:
            m.reset_running_stats()
        model.train()
        try:
            with torch.no_grad():
                for part in torch.split(x, chunk, dim=dim):
                    model(part)
        finally:
            model.train(was_training)


# -------------------------------------------------------------------------------------- initialisation
def seeded(build: Callable[[], torch.nn.Module], generator: torch.Generator, reinit: bool = True) -> torch.nn.Module:
    """A module built by ``build()`` and initialised from ``generator`` alone: the global random stream is
    neither read nor changed.

    ``reinit=True`` (the registry's models): every parameter gets PyTorch's default initialisation drawn from
    ``generator``, module by module in registration order - the numbers ``torch.manual_seed(s); build()``
    gives, for a generator seeded with ``s``.  ``reinit=False`` (a user's factory, which may initialise in its
    own way): ``build()`` runs with the global stream forked and seeded from ``generator``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator.initial_seed())
        model = build()
    if reinit:
        reset_parameters(model, generator)
    return model


_NO_RANDOM_INIT = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm, torch.nn.GroupNorm)


def reset_parameters(model: torch.nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialisation of every ``nn.Linear`` / ``nn.Conv*`` (Kaiming-uniform weights with
    a = sqrt(5), uniform biases in +-1/sqrt(fan_in)), drawn from ``generator`` in module order; normalisation
    layers get ones and zeros.  A module with parameters of another kind is refused (it would keep an init
    drawn from elsewhere)."""
    for m in model.modules():
        own = list(m.parameters(recurse=False))
        if not own:
            continue
        if isinstance(m, torch.nn.Linear | torch.nn.modules.conv._ConvNd):
            torch.nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(m.weight)
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                torch.nn.init.uniform_(m.bias, -bound, bound, generator=generator)
        elif isinstance(m, _NO_RANDOM_INIT):
            m.reset_parameters()
        else:
            raise ValueError(
                f"cannot initialise {type(m).__name__} from a generator; give it a reset rule in "
                "spuriouslab.nets.train.reset_parameters"
            )


@torch.no_grad()
def clip_grad_norm_per_seed(params: Iterable[torch.nn.Parameter], max_norm: float, stacked: bool = True) -> None:
    """Clip the gradient norm of each seed separately (parameters stacked over a leading seed dimension), so
    that seeds trained together keep the trajectory each would have alone; ``stacked=False``: one global norm."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    if not stacked:
        torch.nn.utils.clip_grad_norm_(grads, max_norm)
        return
    sq = cast(torch.Tensor, sum(g.pow(2).flatten(1).sum(dim=1) for g in grads))  # (S,); grads is not empty
    scale = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total`` (the papers' recipe)."""
    import math

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
