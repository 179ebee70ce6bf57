"""Contamination run: tasks (:mod:`spuriouslab.data.contamination`) -> stacked MLPs trained by the one training loop
(:mod:`spuriouslab.nets.train`) -> one record per seed with curves of every logged metric."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from spuriouslab.data.contamination import ContaminationTask, LatentSet, make_task, online_batch, pretrain_task
from spuriouslab.experiments.base import FRAMEWORK_BYTES, Estimate, RunContext, checkpoint_key
from spuriouslab.experiments.contamination.config import ContaminationConfig
from spuriouslab.nets.metrics import subspace_norms
from spuriouslab.nets.mlp import StackedMLP
from spuriouslab.nets.phases import Phase, Phases, run_phases
from spuriouslab.nets.remedies import REMEDIES, Oracle, group_means
from spuriouslab.nets.train import LOSSES, Minibatches, TrainState, gather, make_optimizer
from spuriouslab.seeding import stream_id, torch_generator


def estimate(cfg: ContaminationConfig) -> Estimate:
    """One group trains every seed (stacked): data, parameters with gradients and optimizer state, activations."""
    S = cfg.seeds if cfg.batch_seeds else 1
    b = 8 if cfg.dtype == "float64" else 4
    k = cfg.d_core + cfg.d_bg
    rows = cfg.n + 2 * cfg.n_test
    params = cfg.width * cfg.d + (cfg.depth - 2) * cfg.width**2 + 3 * cfg.width
    batch = {"full": cfg.n, "minibatch": cfg.batch_size, "online": cfg.n}[cfg.sampling]
    inputs = rows * (k if cfg.subspace else cfg.d + k)
    # activations of the largest forward: a training batch (kept for backward) or one evaluated set at a time
    peak = S * b * (inputs + k * cfg.d + 5 * params + 2 * max(cfg.n, cfg.n_test, batch) * cfg.width * cfg.depth)
    first = k if cfg.subspace else cfg.d
    per_step = 6.0 * batch * (first * cfg.width + (cfg.depth - 2) * cfg.width**2 + cfg.width)
    # the longest remedy: its phases' steps (the AND-mask: a backward per class, about twice the work)
    work = max(sum(cfg.phase_steps(m).values()) * REMEDIES[m].cost for m in cfg.remedy)
    logs = sum(cfg.phase_steps(max(cfg.remedy, key=lambda m: len(cfg.phase_steps(m)))).values()) / cfg.log_every
    flops = S * (work * per_step + (logs + 1) * 2.0 * rows * params)
    return Estimate(peak + FRAMEWORK_BYTES, flops, f"{S} seed(s) x {cfg.iterations} steps, width {cfg.width}")


def group_key(cfg: ContaminationConfig, p: dict[str, Any]) -> Any:
    key = (p["activation"], p["loss"], p["optimizer"], p["remedy"])
    return key if cfg.batch_seeds else (*key, p["seed"])


def run_group(cfg: ContaminationConfig, points: list[dict], ctx: RunContext) -> Iterator[dict]:
    t0 = time.perf_counter()
    seeds = [p["seed"] for p in points]
    p0 = points[0]
    key = checkpoint_key("contamination", cfg, points)
    act, loss, opt, remedy = p0["activation"], p0["loss"], p0["optimizer"], p0["remedy"]
    trained = train_contamination(cfg, seeds, act, loss, opt, ctx, key, remedy)
    seconds = (time.perf_counter() - t0) / len(points)
    for p, rec in zip(points, trained.records, strict=True):
        yield {**p, **rec, "seconds": seconds}
    ctx.discard(*trained.phases.keys)


def _device_task(task: ContaminationTask, device: str, dtype: torch.dtype) -> ContaminationTask:
    move = lambda s: LatentSet(s.z.to(device, dtype), s.y.to(device, dtype))  # noqa: E731
    return ContaminationTask(
        task.T.to(device, dtype),
        task.d_core,
        task.d_bg,
        move(task.train),
        move(task.id_test),
        move(task.ood_test),
        task.generators,
        task.background,
    )


@torch.no_grad()
def measure(
    model: StackedMLP,
    task: ContaminationTask,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    subspace: bool,
) -> dict[str, torch.Tensor]:
    """Every logged metric, per seed (tensors of shape (S,) unless noted)."""
    out: dict[str, torch.Tensor] = {}
    for name, s in [("train", task.train), ("id", task.id_test), ("ood", task.ood_test)]:
        f = model(s.z, task.T) if subspace else model(task.inputs(s))
        out[f"{name}_loss"] = loss_fn(f, s.y)
        out[f"{name}_acc"] = (f * s.y > 0).float().mean(dim=1)
    C = torch.bmm(model.weights[0], task.T.transpose(1, 2))  # (S, m, k): first-layer weights in latent coords
    dc = task.d_core
    out["core_norm"], out["bg_norm"] = subspace_norms(model.weights[0], task.T, dc)
    signed = C[..., dc:].sum(dim=2) / task.d_bg**0.5  # projection on the unit background-mean direction
    out["bg_signed"] = signed.mean(dim=1)
    a = model.output_weights()
    if len(model.weights) == 2:
        pos, neg = (a > 0).float(), (a < 0).float()
        out["bg_signed_pos"] = (signed * pos).sum(1) / pos.sum(1).clamp(min=1)
        out["bg_signed_neg"] = (signed * neg).sum(1) / neg.sum(1).clamp(min=1)
    pre = (
        model.first_preactivation(task.train.z, task.T)
        if subspace
        else model.first_preactivation(task.inputs(task.train))
    )
    active = (pre > 0).float()
    ypos = (task.train.y > 0).float()[..., None]
    asym = (active * ypos).sum(1) / ypos.sum(1) - (active * (1 - ypos)).sum(1) / (1 - ypos).sum(1)  # (S, m)
    out["asymmetry"] = asym
    if len(model.weights) == 2:
        sa = torch.sign(a)
        ac, sc = asym - asym.mean(1, keepdim=True), sa - sa.mean(1, keepdim=True)
        out["asym_corr"] = (ac * sc).sum(1) / (ac.norm(dim=1) * sc.norm(dim=1)).clamp(min=1e-12)
        out["out_sign"] = sa
    return out


CURVES = [
    "train_loss",
    "train_acc",
    "id_loss",
    "id_acc",
    "ood_loss",
    "ood_acc",
    "core_norm",
    "bg_norm",
    "bg_signed",
    "bg_signed_pos",
    "bg_signed_neg",
    "asym_corr",
]


@dataclass
class Trained:
    """What :func:`train_contamination` returns: one record per seed, the trained (stacked) model, its task, and
    the phases it was trained through (their states and checkpoint keys)."""

    records: list[dict]
    model: StackedMLP
    task: ContaminationTask
    phases: Phases


def train_contamination(
    cfg: ContaminationConfig,
    seeds: list[int],
    activation: str,
    loss: str,
    optimizer: str,
    ctx: RunContext,
    key: str | None = None,
    remedy: str = "none",
) -> Trained:
    """Train one model per seed (stacked) and return one record per seed with the model; ``key`` names the
    checkpoints in ``ctx.checkpoints`` (None: none).

    ``remedy`` (:data:`~spuriouslab.nets.remedies.REMEDIES`) adds phases before the task - pre-training
    on wide zero-mean backgrounds (:func:`~spuriouslab.data.contamination.pretrain_task`), linear probing of the
    output layer - each a fresh optimizer and its own checkpoint (``key-pretrain``, ``key-lp``), or adjusts
    the task's gradients (the first layer projected onto the core subspace; the AND-mask over the two classes).
    ``lp-ft`` trains the output layer also when ``freeze_output`` is set: probing is training the head."""
    dtype = getattr(torch, cfg.dtype)
    cpu_task = make_task(
        seeds, cfg.d, cfg.d_core, cfg.d_bg, cfg.n, cfg.n_test, cfg.core, cfg.ood, cfg.ood_shift, cfg.ood_scale
    )
    task = _device_task(cpu_task, ctx.device, dtype)
    model = StackedMLP(
        [torch_generator(s, stream_id("contamination.init")) for s in seeds],
        cfg.d,
        cfg.width,
        cfg.depth,
        activation,
        cfg.bias,
        cfg.freeze_output,
    ).to(ctx.device, dtype)
    loss_fn = LOSSES[loss]
    steps = cfg.phase_steps(remedy)
    wide = None
    if "pretrain" in steps:
        wide = _device_task(pretrain_task(cpu_task, seeds, cfg.n, cfg.core, cfg.pretrain_background), ctx.device, dtype)

    def recipe(phase: str, params: list[torch.nn.Parameter], length: int, groups: str | None) -> Phase:
        """A phase: the optimizer of the config over ``params``, steps on the wide task (pre-training) or the task,
        every metric of :func:`measure` on the task logged."""
        on = wide if phase == "pretrain" and wide is not None else task
        state = TrainState(
            model, make_optimizer(optimizer, params, cfg.lr, cfg.weight_decay, cfg.momentum), generators=on.generators
        )
        return Phase(
            state,
            _step(cfg, on, model, loss_fn, ctx.device, dtype, groups=groups),
            length,
            cfg.log_every,
            measure=lambda t: {k: v for k, v in measure(model, task, loss_fn, cfg.subspace).items() if k in CURVES},
        )

    phases = run_phases(
        model,
        remedy,
        steps,
        recipe,
        checkpoints=ctx.checkpoints,
        key=key,
        desc=f"{activation}/{loss}/{optimizer}{'' if remedy == 'none' else '/' + remedy} x{len(seeds)}",
        progress=ctx.progress,
        oracle=Oracle(model.weights[0], task.T[:, : cfg.d_core]),
        and_mask_tau=cfg.and_mask_tau,
    )
    final = measure(model, task, loss_fn, cfg.subspace)
    records = [_record(phases, final, i) for i in range(len(seeds))]
    for rec in records:  # the steps of the phases before the task (0: no such phase)
        rec.update(pretrain_steps=steps.get("pretrain", 0), lp_steps=steps.get("lp", 0))
    return Trained(records, model, task, phases)


def _step(
    cfg: ContaminationConfig,
    task: ContaminationTask,
    model: StackedMLP,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: str,
    dtype: torch.dtype,
    groups: str | None = None,
) -> Callable[[int], torch.Tensor]:
    """Step t's per-seed losses (S,): the full training set, a minibatch of it (drawn with replacement), or fresh
    samples (online).  ``groups``: per class and seed (2, S), the AND-mask's environments (y = +1, y = -1)."""
    T = task.T if cfg.subspace else None
    x_train = None if cfg.subspace else task.inputs(task.train)
    batches = Minibatches(task.train.z.shape[1], cfg.batch_size, task.generators, device, replace=True)

    def batch(t: int) -> LatentSet:
        if cfg.sampling == "full":
            return task.train
        if cfg.sampling == "minibatch":
            idx = batches(t)
            return LatentSet(gather(task.train.z, idx), torch.gather(task.train.y, 1, idx))
        return _device_set(online_batch(task, cfg.n, cfg.core), device, dtype)

    def step(t: int) -> torch.Tensor:
        b = batch(t)
        if cfg.subspace:
            f = model(b.z, T)
        else:
            f = model(x_train if cfg.sampling == "full" else task.inputs(b))
        if groups:
            return group_means(loss_fn(f[..., None], b.y[..., None]), (b.y < 0).long(), 2)
        return loss_fn(f, b.y)

    return step


def _record(phases: Phases, final: dict[str, torch.Tensor], i: int) -> dict[str, Any]:
    """Seed ``i``'s record: the last value and the curve (of the task phase) of every logged metric, the changes
    from the random initialisation (before any pre-training), the background weight where the task began
    (``bg_norm_start``), the final per-neuron asymmetry, and the divergence fields (a diverged seed's metrics
    are NaN; a seed that diverged in any phase counts as diverged)."""
    state, first = phases.task, phases.first
    rec: dict[str, Any] = {}
    for key in CURVES:
        if key in state.history:
            rec[key] = state.history[key][-1][i]
            rec[f"curve_{key}"] = state.curve(key, i)
    rec["curve_step"] = list(state.history["step"])
    rec["ood_id_gap"] = rec["ood_loss"] - rec["id_loss"]
    rec["bg_norm_init"] = first.history["bg_norm"][0][i]
    rec["core_norm_init"] = first.history["core_norm"][0][i]
    rec["bg_norm_growth"] = rec["bg_norm"] / rec["bg_norm_init"]
    rec["bg_signed_change"] = rec["bg_signed"] - first.history["bg_signed"][0][i]
    rec["asymmetry"] = final["asymmetry"][i].cpu().tolist()
    if "out_sign" in final:
        rec["out_sign"] = final["out_sign"][i].cpu().tolist()
    rec["bg_norm_start"] = state.history["bg_norm"][0][i]
    rec.update(phases.divergence(i))
    if rec["status"] != "ok":
        for key in [*CURVES, "ood_id_gap", "bg_norm_growth", "bg_signed_change"]:
            if key in rec:
                rec[key] = math.nan
    return rec


def _device_set(s: LatentSet, device: str, dtype: torch.dtype) -> LatentSet:
    return LatentSet(s.z.to(device, dtype), s.y.to(device, dtype))
