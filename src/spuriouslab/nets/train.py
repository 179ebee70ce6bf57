"""The single training loop, losses and optimizers.

``train_loop`` does nothing per step but the step itself (zero grad, loss, backward, optimizer step);
evaluation, divergence checks and progress happen only at logging steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from tqdm.auto import tqdm


def hinge(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.clamp(1 - y * f, min=0).mean(dim=-1)


def logistic(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.softplus(-y * f).mean(dim=-1)  # log(1 + exp(-y f)), overflow-free


def mse(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((f - y) ** 2).mean(dim=-1)


def seed_cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-seed cross-entropy (S,) of logits (S, B, C) against class targets (S, B), computed in float32 (so
    bfloat16 autocast outputs are scored at full precision)."""
    ce = torch.nn.functional.cross_entropy(out.flatten(0, 1).float(), y.flatten(), reduction="none")
    return ce.view(y.shape).mean(dim=1)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "hinge": hinge, "logistic": logistic, "mse": mse,
}


class DivergenceError(RuntimeError):
    """Every seed's training loss became NaN, infinite or larger than :data:`DIVERGENCE_BOUND`."""


# A training loss above this counts as diverged.  Every loss here is O(1) at initialisation (hinge, logistic and
# MSE of +-1 labels, cross-entropy log C), so a loss a million times larger means the run has blown up.
DIVERGENCE_BOUND = 1e6


def diverged(loss: torch.Tensor) -> torch.Tensor:
    """Per-seed mask: the loss is not finite or exceeds :data:`DIVERGENCE_BOUND`."""
    loss = torch.as_tensor(loss)
    return ~torch.isfinite(loss) | (loss.abs() > DIVERGENCE_BOUND)


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0,
                   momentum: float = 0.0) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    kw: dict = {"lr": lr, "weight_decay": weight_decay}
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


def train_loop(step_loss: Callable[[int], torch.Tensor], optimizer: torch.optim.Optimizer, iterations: int,
               log_every: int, on_log: Callable[[int], dict | None], desc: str | None = None,
               progress: bool = False, start: int = 0, before_step: Callable[[], None] | None = None,
               scheduler=None) -> None:
    """Run steps ``start + 1 .. iterations``; ``step_loss(t)`` returns the scalar loss of step t (1-based).

    ``on_log(t)`` is called at t = 0 (before training, unless resuming from ``start > 0``), every
    ``log_every`` steps and at the end; if the ``"loss"`` it returns (the seeds still alive) has diverged
    everywhere (:func:`diverged`), the run stops with :class:`DivergenceError`.  Checkpointing belongs in ``on_log``: resuming from a logged step continues the
    same trajectory.  ``before_step`` runs between backward and the optimizer step (gradient clipping);
    ``scheduler`` (a learning-rate scheduler) steps after every optimizer step."""
    if start == 0:
        on_log(0)
    bar = tqdm(total=iterations, initial=start, desc=desc, leave=False, disable=not progress, unit="step")
    last = start
    for t in range(start + 1, iterations + 1):
        optimizer.zero_grad(set_to_none=True)
        step_loss(t).backward()
        if before_step is not None:
            before_step()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if t % log_every == 0 or t == iterations:
            logged = on_log(t)
            bar.update(t - last)
            last = t
            if logged is not None and diverged(logged.get("loss", 0.0)).all():
                bar.close()
                raise DivergenceError(f"training loss is not finite (or above {DIVERGENCE_BOUND:g}) at step {t}")
    bar.close()


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
    sq = sum(g.pow(2).flatten(1).sum(dim=1) for g in grads)  # (S,)
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
