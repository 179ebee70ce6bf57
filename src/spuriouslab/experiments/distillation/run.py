"""Distillation run: a task (:mod:`spuriouslab.data.distillation`) -> a frozen teacher (built-in, trained once per
seed and kept in the run directory, or the user's) -> a student fitting the teacher's embeddings (MSE, no labels)
and a baseline trained with labels, seeds stacked (:class:`~spuriouslab.nets.models.SeedEnsemble`), all by the one
trainer (:func:`spuriouslab.nets.train.fit`) -> linear probes on each model's frozen features -> one record per
(activation, seed)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from spuriouslab.data import distillation as distill_data
from spuriouslab.data.contamination import sample_background
from spuriouslab.data.distillation import DistillTask, TaskValues, ood_labels
from spuriouslab.errors import ConfigError
from spuriouslab.experiments.base import FRAMEWORK_BYTES, Estimate, RunContext, checkpoint_key
from spuriouslab.experiments.distillation.config import ROLES, DistillationConfig
from spuriouslab.experiments.distillation.models import divergence, forward_check, load_teacher_checkpoint, make_encoder
from spuriouslab.nets.efficientnet import VARIANTS as PRETRAINED
from spuriouslab.nets.efficientnet import cost as lite_cost
from spuriouslab.nets.metrics import subspace_norms
from spuriouslab.nets.models import SeedEnsemble
from spuriouslab.nets.phases import Phase, Phases, run_phases
from spuriouslab.nets.probes import probe_accuracies
from spuriouslab.nets.remedies import Oracle, group_means
from spuriouslab.nets.train import (
    Minibatches,
    TrainState,
    clip_grad_norm_per_seed,
    evaluate,
    gather,
    make_optimizer,
    recalibrate_batchnorm,
    seed_cross_entropy,
    warmup_cosine,
)
from spuriouslab.seeding import stream_id, torch_generator


# ------------------------------------------------------------------------------------------------ data
def load_task(cfg: DistillationConfig, seed: int) -> DistillTask:
    """One seed's data of the config's task (:data:`spuriouslab.data.distillation.DISTILL_TASKS`)."""
    return distill_data.load_task(cfg.task, TaskValues.of(cfg), seed)


def resolve(cfg: DistillationConfig) -> dict[str, str]:
    return distill_data.task_identity(cfg.task, cfg.data_root)


def check(cfg: DistillationConfig) -> None:
    """Teacher and student build, are modules, and agree on the embedding size (a forward on two inputs)."""
    if cfg.streaming:
        from spuriouslab.experiments.distillation import folders

        sets, classes = folders.datasets(cfg)
        x = torch.stack([sets["train"][i][0] for i in range(min(2, len(sets["train"])))])
        shape, n_classes, projection = tuple(x.shape[1:]), len(classes), None
    else:
        task = load_task(cfg, cfg.seed)
        x = task.x_train[:2]
        shape, n_classes, projection = task.input_shape, task.n_classes, task.core_projection
    with torch.no_grad():
        teacher = make_encoder(
            cfg, shape, n_classes, "teacher", "relu", cfg.seed, "distillation.teacher", core_projection=projection
        )
        if cfg.teacher_checkpoint:
            load_teacher_checkpoint(teacher, cfg.teacher_checkpoint)
        t_out = forward_check(teacher, x, "teacher", cfg.teacher)
        for act in cfg.activation:
            student = make_encoder(cfg, shape, n_classes, "student", act, cfg.seed, "distillation.student")
            s_out = forward_check(student, x, "student", cfg.student or cfg.teacher)
            if s_out.shape[1:] != t_out.shape[1:]:
                raise ConfigError(
                    f"student: {cfg.student or 'the built-in student'} gives embeddings of shape "
                    f"{tuple(s_out.shape[1:])}, the teacher's are {tuple(t_out.shape[1:])}"
                )


# ---------------------------------------------------------------------------------------------- training
Losses = Callable[[str, str | None], tuple[Callable[[torch.Tensor], torch.Tensor], int]]
"""A model's losses by phase: ``losses(phase, groups)`` -> (``loss(idx)``, the per-seed losses (S,) - per class
(C, S) with ``groups`` - of the batch ``idx`` (S, B); ``n``, the number of training samples it indexes)."""


def train(
    cfg: DistillationConfig,
    model: SeedEnsemble,
    losses: Losses,
    lengths: dict[str, int],
    seeds: list[int],
    ctx: RunContext,
    key: str,
    measure: Callable[[int], dict[str, torch.Tensor]] | None = None,
    desc: str = "",
    remedy: str = "none",
    oracle: Oracle | None = None,
) -> Phases:
    """Train a seed ensemble through the phases of ``remedy`` (:func:`~spuriouslab.nets.phases.run_phases`; the
    teacher and the baseline: the task alone), ``lengths`` in epochs; each phase AdamW (warm-up + cosine when
    ``warmup`` or ``clip`` is set), per-seed gradient clipping (after the remedy's projection), bfloat16 autocast
    on CUDA with ``amp``, each seed's minibatch order from its own stream, and a checkpoint at every log step
    (``key`` for the task, ``key-<phase>`` before it)."""
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if cfg.amp and ctx.device.startswith("cuda")
        else contextlib.nullcontext()
    )
    clip: Callable[[], object] | None = (
        (lambda: clip_grad_norm_per_seed(list(model.parameters()), cfg.clip, model.stacked)) if cfg.clip else None
    )

    def recipe(phase: str, params: list[torch.nn.Parameter], epochs: int, groups: str | None) -> Phase:
        loss, n = losses(phase, groups)
        opt = make_optimizer("adamw", params, cfg.lr, cfg.weight_decay)
        gens = [torch_generator(s, stream_id("distillation.order")) for s in seeds]
        batches = Minibatches(n, 0 if cfg.batch_size >= n else cfg.batch_size, gens, ctx.device)
        steps = epochs * batches.steps_per_epoch
        sched = warmup_cosine(opt, cfg.warmup, steps) if (cfg.warmup or cfg.clip) else None

        def step(t: int) -> torch.Tensor:
            with autocast:
                return loss(batches(t))

        state = TrainState(model, opt, sched, gens)
        return Phase(state, step, steps, cfg.log_every * batches.steps_per_epoch, measure=measure, before_step=clip)

    return run_phases(
        model,
        remedy,
        lengths,
        recipe,
        checkpoints=ctx.checkpoints,
        key=key,
        desc=desc,
        progress=ctx.progress,
        oracle=oracle,
        and_mask_tau=cfg.and_mask_tau,
    )


def precise_batchnorm(cfg: DistillationConfig) -> bool:
    """Whether the student and baseline are measured with BatchNorm statistics recomputed on the training inputs
    (:func:`~spuriouslab.nets.train.recalibrate_batchnorm`) before every measurement and the probes: for a
    pretrained teacher, whose same-architecture student and baseline keep EfficientNet's slow BatchNorm
    momentum (0.01) and train a few hundred steps on a CPU - their running statistics would still be mostly
    those of the random initialisation.  Other settings keep the running statistics (their records unchanged)."""
    return cfg.teacher in PRETRAINED


def embed(ens: SeedEnsemble, x: torch.Tensor, module: str | None = None) -> torch.Tensor:
    """Embeddings (S, n, e) of inputs (S, n, ...), evaluated in chunks, in eval mode."""
    fn = ens if module is None else (lambda part: ens.forward_module(part, module))
    return evaluate(fn, x, model=ens).float()


@dataclass
class Stacked:
    """Every seed's task stacked along the first dimension: training, test, OOD and teacher inputs and labels;
    ``basis`` the synthetic latent bases (None for images or user models)."""

    tasks: list[DistillTask]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    ood_x: dict[str, torch.Tensor]
    basis: torch.Tensor | None

    @property
    def ood_names(self) -> list[str]:
        return list(self.ood_x)

    def stack(self, get: Callable[[DistillTask], torch.Tensor], device: str) -> torch.Tensor:
        return _stack(self.tasks, get, device)


def _stack(tasks: list[DistillTask], get: Callable[[DistillTask], torch.Tensor], device: str) -> torch.Tensor:
    return torch.stack([get(t) for t in tasks]).to(device)


def stacked_tasks(cfg: DistillationConfig, seeds: list[int], device: str) -> Stacked:
    tasks = [load_task(cfg, s) for s in seeds]
    stack = lambda get: _stack(tasks, get, device)  # noqa: E731
    basis = stack(lambda t: t.basis) if cfg.mlp() and cfg.student is None and cfg.teacher is None else None
    return Stacked(
        tasks,
        stack(lambda t: t.x_train),
        stack(lambda t: t.y_train),
        stack(lambda t: t.x_test),
        stack(lambda t: t.y_test),
        {k: stack(lambda t, k=k: t.ood[k]) for k in tasks[0].ood},
        basis,
    )


# --------------------------------------------------------------------------------------------------- run
def one_seed_groups(cfg: DistillationConfig) -> bool:
    """User and pretrained models (which may hold BatchNorm, which cannot be stacked) train one seed at a time;
    built-in models stack every seed of an activation in one group."""
    return cfg.teacher is not None or cfg.student is not None


def group_key(cfg: DistillationConfig, p: dict[str, Any]) -> Any:
    """The group of a point: (activation, remedy), and the seed too where groups hold one seed
    (:func:`one_seed_groups`)."""
    key = (p["activation"], p["remedy"])
    return (*key, p["seed"]) if one_seed_groups(cfg) else key


def run_group(cfg: DistillationConfig, points: list[dict], ctx: RunContext) -> Iterator[dict]:
    """data -> teacher (frozen or trained once per seed) -> student (fits the teacher's embeddings) and baseline
    (labels) -> probes on frozen features -> one record per point."""
    if cfg.streaming:
        from spuriouslab.experiments.distillation import folders

        yield from folders.run_group(cfg, points, ctx)
        return
    t0 = time.perf_counter()
    act, remedy = points[0]["activation"], points[0]["remedy"]
    seeds = [p["seed"] for p in points]
    data = stacked_tasks(cfg, seeds, ctx.device)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    teacher = fit_teacher(cfg, data, seeds, act, ctx)
    seconds["teacher"], clock = time.perf_counter() - clock, time.perf_counter()
    student = fit_student(cfg, data, teacher, seeds, act, ctx, remedy)
    seconds["student"], clock = time.perf_counter() - clock, time.perf_counter()
    baseline = fit_baseline(cfg, data, int(teacher.train.shape[-1]), seeds, act, ctx)
    seconds["baseline"], clock = time.perf_counter() - clock, time.perf_counter()
    if precise_batchnorm(cfg):  # the final weights' statistics, however training ended (or resumed)
        recalibrate_batchnorm(cast(SeedEnsemble, student.model), data.train_x)
        recalibrate_batchnorm(cast(SeedEnsemble, baseline.model), data.train_x)
    fits = {"teacher": teacher.state, "student": student, "baseline": baseline}
    alive = [i for i in range(len(seeds)) if not any(fit is not None and fit.diverged(i) for fit in fits.values())]
    # each fit trained a SeedEnsemble (its TrainState holds it as a Module)
    accs = probe_all(
        cfg, data, teacher, cast(SeedEnsemble, student.model), cast(SeedEnsemble, baseline.model), seeds, alive
    )
    seconds["probes"] = time.perf_counter() - clock
    match = representation_match(data, teacher, cast(SeedEnsemble, student.model))
    total = (time.perf_counter() - t0) / len(seeds)
    for i, p in enumerate(points):
        rec = _record(cfg, p, i, data, teacher, student, baseline, accs)
        rec.update({k: v[i] for k, v in match.items()})
        rec.update(seconds=total, **{f"seconds_{k}": v / len(seeds) for k, v in seconds.items()})
        yield rec
    # the baseline does not depend on the remedy: with several, its checkpoint is kept for the other groups
    ctx.discard(*student.keys, *(baseline.keys if len(cfg.remedy) == 1 else []))


def representation_match(data: Stacked, teacher: Teacher, student: SeedEnsemble) -> dict[str, list[float]]:
    """How closely the trained student matches the teacher's representation on the ID test set and on each OOD
    set, per seed: linear CKA (``cka_<set>``, 1 = the same up to rotation and scale) and the relative embedding
    error ``|S - T|^2 / |T - mean T|^2`` (``relerr_<set>``, 0 = equal) of :mod:`spuriouslab.nets.similarity`;
    their means over the OOD sets, and the gaps ``relerr_ood_gap`` (OOD minus ID) and ``cka_ood_gap`` (ID minus
    OOD), positive where the student departs from its teacher more OOD than ID."""
    from spuriouslab.nets.similarity import linear_cka, relative_error

    out: dict[str, list[float]] = {}
    for name, x, target in [
        ("id", data.test_x, teacher.test),
        *[(k, data.ood_x[k], teacher.ood[k]) for k in data.ood_names],
    ]:
        s = embed(student, x)
        out[f"cka_{name}"] = _per_seed(linear_cka(s, target))
        out[f"relerr_{name}"] = _per_seed(relative_error(s, target))
    for metric in ("cka", "relerr"):
        out[f"{metric}_ood_mean"] = [
            float(np.mean(v)) for v in zip(*(out[f"{metric}_{k}"] for k in data.ood_names), strict=True)
        ]
    out["relerr_ood_gap"] = [o - i for o, i in zip(out["relerr_ood_mean"], out["relerr_id"], strict=True)]
    out["cka_ood_gap"] = [i - o for o, i in zip(out["cka_ood_mean"], out["cka_id"], strict=True)]
    return out


def _per_seed(values: float | list[float]) -> list[float]:
    return values if isinstance(values, list) else [values]


@dataclass
class Teacher:
    """The teacher's embeddings of every set, its training (None for a user's frozen teacher), and the per-seed
    (core, background) norms of its first layer seen in the input space (built-in synthetic teacher; else None)."""

    train: torch.Tensor
    test: torch.Tensor
    ood: dict[str, torch.Tensor]
    state: Phases | None
    first_norms: tuple[torch.Tensor, torch.Tensor] | None
    embed: Callable[[torch.Tensor], torch.Tensor]  # the teacher's embedding of any inputs


def fit_teacher(cfg: DistillationConfig, data: Stacked, seeds: list[int], act: str, ctx: RunContext) -> Teacher:
    """The user's teacher (frozen, from its checkpoint), or the built-in one trained with labels on wide
    backgrounds, once per seed: its checkpoint is kept in the run directory and shared by every activation."""
    task0 = data.tasks[0]
    if cfg.teacher is not None:

        def make_teacher(s: int) -> torch.nn.Module:
            m = make_encoder(cfg, task0.input_shape, task0.n_classes, "teacher", act, s, "distillation.teacher")
            if cfg.teacher_checkpoint:
                load_teacher_checkpoint(m, cfg.teacher_checkpoint)
            return m

        model = SeedEnsemble(make_teacher, seeds).to(ctx.device)
        teach = lambda x: embed(model, x)  # noqa: E731
        state = None
    else:
        model = SeedEnsemble(
            lambda s: make_encoder(
                cfg,
                task0.input_shape,
                task0.n_classes,
                "teacher",
                act,
                s,
                "distillation.teacher",
                head=cfg.embed,
                core_projection=data.tasks[seeds.index(s)].core_projection,
            ),
            seeds,
        ).to(ctx.device)
        x_t, y_t = data.stack(lambda t: t.x_teacher, ctx.device), data.stack(lambda t: t.y_teacher, ctx.device)
        key = checkpoint_key("distillation", cfg, [{"seed": s} for s in seeds], "teacher")
        loss = lambda i: seed_cross_entropy(model(gather(x_t, i)), torch.gather(y_t, 1, i))  # noqa: E731
        state = train(
            cfg,
            model,
            lambda phase, groups: (loss, x_t.shape[1]),
            {"task": cfg.teacher_epochs},
            seeds,
            ctx,
            key,
            desc=f"teacher x{len(seeds)}",
        )
        teach = lambda x: embed(model, x, "encoder")  # noqa: E731
    norms = None
    if cfg.teacher is None and data.basis is not None:  # the teacher's first layer seen in the input space
        projection = data.stack(lambda t: t.core_projection(), ctx.device)
        first = torch.bmm(model.seed_parameter("encoder.encoder.first.weight").detach().float(), projection)
        norms = subspace_norms(first, data.basis, task0.d_core)
    return Teacher(
        teach(data.train_x), teach(data.test_x), {k: teach(v) for k, v in data.ood_x.items()}, state, norms, teach
    )


def fit_student(
    cfg: DistillationConfig,
    data: Stacked,
    teacher: Teacher,
    seeds: list[int],
    act: str,
    ctx: RunContext,
    remedy: str = "none",
) -> Phases:
    """A fresh encoder fitted to the teacher's embeddings of the training inputs (MSE, no labels); logged: the
    distillation loss, the fit to the teacher on ID and every OOD set, the first layer's core / background
    weight (synthetic).

    ``remedy`` (:data:`~spuriouslab.nets.remedies.REMEDIES`) adds phases before it - distilling the
    teacher on wide backgrounds (:func:`pretrain_inputs`), then the head alone (LP-FT) - each its own optimizer
    and checkpoint, or adjusts its gradients (the first layer projected onto the core subspace; the AND-mask over
    the classes).  Returns its :class:`~spuriouslab.nets.phases.Phases` (the first phase's history holds the
    random initialisation's values)."""
    task0 = data.tasks[0]
    student = SeedEnsemble(
        lambda s: make_encoder(cfg, task0.input_shape, task0.n_classes, "student", act, s, "distillation.student"),
        seeds,
    ).to(ctx.device)

    def measure(t: int) -> dict[str, torch.Tensor]:
        if precise_batchnorm(cfg):
            recalibrate_batchnorm(student, data.train_x)
        out = {}
        out["distill_loss"], _ = _fit_stats(embed(student, data.train_x), teacher.train)
        for name, x, target in [
            ("id", data.test_x, teacher.test),
            *[(k, data.ood_x[k], teacher.ood[k]) for k in data.ood_names],
        ]:
            out[f"fit_mse_{name}"], out[f"fit_cos_{name}"] = _fit_stats(embed(student, x), target)
        if data.basis is not None:
            out["student_core_norm"], out["student_bg_norm"] = subspace_norms(
                student.seed_parameter("first.weight").detach().float(), data.basis, task0.d_core
            )
        return out

    def distill(
        x: torch.Tensor, target: torch.Tensor, groups: str | None = None
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        if groups:  # per class and seed (C, S): the AND-mask's environments
            return lambda i: group_means(
                ((student(gather(x, i)).float() - gather(target, i)) ** 2).mean(dim=2),
                torch.gather(data.train_y, 1, i),
                task0.n_classes,
            )
        return lambda i: ((student(gather(x, i)).float() - gather(target, i)) ** 2).mean(dim=(1, 2))

    def losses(phase: str, groups: str | None) -> tuple[Callable[[torch.Tensor], torch.Tensor], int]:
        if phase == "pretrain":  # the teacher distilled on wide backgrounds
            x_pre = pretrain_inputs(cfg, data, seeds, ctx.device)
            return distill(x_pre, teacher.embed(x_pre), groups), x_pre.shape[1]
        return distill(data.train_x, teacher.train, groups), data.train_x.shape[1]

    point = {"activation": act} if remedy == "none" else {"activation": act, "remedy": remedy}
    oracle = None
    if data.basis is not None:  # the built-in synthetic student: its first layer and the known core subspace
        oracle = Oracle(student.seed_parameter("first.weight"), data.basis[:, : task0.d_core])
    return train(
        cfg,
        student,
        losses,
        cfg.phase_epochs(remedy),
        seeds,
        ctx,
        checkpoint_key("distillation", cfg, [{"seed": s, **point} for s in seeds], "student"),
        measure,
        desc=f"student {act}{'' if remedy == 'none' else '/' + remedy} x{len(seeds)}",
        remedy=remedy,
        oracle=oracle,
    )


def pretrain_inputs(cfg: DistillationConfig, data: Stacked, seeds: list[int], device: str) -> torch.Tensor:
    """What the student pre-trains on (every seed stacked): for images the teacher's own training images, on
    widely randomised backgrounds; for the synthetic task the training inputs with their background replaced by
    ``U[-b, b]`` (zero mean, wide; ``b = pretrain_background``), drawn from a stream of their own."""
    if cfg.task != "synthetic":
        return data.stack(lambda t: t.x_teacher, device)
    out = []
    for seed, t in zip(seeds, data.tasks, strict=True):
        assert t.basis is not None, "a synthetic task has its basis"
        bg = t.basis[t.d_core :]  # (d_bg, d), orthonormal rows
        g = torch_generator(seed, stream_id("distillation.pretrain"))
        u = sample_background(t.x_train.shape[0], bg.shape[0], g, t.x_train.dtype, cfg.pretrain_background)
        out.append(t.x_train - (t.x_train @ bg.T) @ bg + u @ bg)
    return torch.stack(out).to(device)


def fit_baseline(
    cfg: DistillationConfig, data: Stacked, embed_size: int, seeds: list[int], act: str, ctx: RunContext
) -> Phases:
    """The student's architecture trained end to end with labels on the same inputs; logged (synthetic): its
    first layer's core / background weight."""
    task0 = data.tasks[0]
    baseline = SeedEnsemble(
        lambda s: make_encoder(
            cfg, task0.input_shape, task0.n_classes, "student", act, s, "distillation.baseline", head=embed_size
        ),
        seeds,
    ).to(ctx.device)

    def measure(t: int) -> dict[str, torch.Tensor]:
        if data.basis is None:
            return {}
        core, bg = subspace_norms(
            baseline.seed_parameter("encoder.first.weight").detach().float(), data.basis, task0.d_core
        )
        return {"baseline_core_norm": core, "baseline_bg_norm": bg}

    loss = lambda i: seed_cross_entropy(baseline(gather(data.train_x, i)), torch.gather(data.train_y, 1, i))  # noqa: E731
    return train(
        cfg,
        baseline,
        lambda phase, groups: (loss, data.train_x.shape[1]),
        {"task": cfg.epochs},
        seeds,
        ctx,
        checkpoint_key("distillation", cfg, [{"seed": s, "activation": act} for s in seeds], "baseline"),
        measure,
        desc=f"baseline {act} x{len(seeds)}",
    )


def _fit_stats(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-seed MSE and mean cosine similarity between embeddings (S, n, e)."""
    return ((a - b) ** 2).mean(dim=(1, 2)), torch.nn.functional.cosine_similarity(a, b, dim=2).mean(dim=1)


def probe_all(
    cfg: DistillationConfig,
    data: Stacked,
    teacher: Teacher,
    student: SeedEnsemble,
    baseline: SeedEnsemble,
    seeds: list[int],
    alive: list[int],
) -> dict[str, list[float]]:
    """Linear probes on each model's frozen features, fitted on the ID training set, scored on ID and every OOD
    set (``acc_<model>_<set>``, one value per seed; NaN for a seed whose training diverged)."""
    feats = {
        "teacher": (teacher.train, teacher.test, teacher.ood),
        "student": (
            embed(student, data.train_x),
            embed(student, data.test_x),
            {k: embed(student, v) for k, v in data.ood_x.items()},
        ),
        "baseline": (
            embed(baseline, data.train_x, "encoder"),
            embed(baseline, data.test_x, "encoder"),
            {k: embed(baseline, v, "encoder") for k, v in data.ood_x.items()},
        ),
    }
    accs: dict[str, list[float]] = {}
    for model, (f_tr, f_te, f_ood) in feats.items():
        for i, s in enumerate(seeds):
            tests = {
                "id": (f_te[i], data.test_y[i]),
                **{k: (f_ood[k][i], ood_labels(data.tasks[i], k)) for k in data.ood_names},
            }
            if i in alive:
                got = probe_accuracies((f_tr[i], data.train_y[i]), tests, **cfg.probe_kwargs(model, s))
            else:
                got = {name: math.nan for name in tests}
            for name, acc in got.items():
                accs.setdefault(f"acc_{model}_{name}", []).append(acc)
    return accs


def _record(
    cfg: DistillationConfig,
    p: dict,
    i: int,
    data: Stacked,
    teacher: Teacher,
    student: Phases,
    baseline: Phases,
    accs: dict[str, list[float]],
) -> dict[str, Any]:
    rec: dict[str, Any] = dict(p)
    ood_names = data.ood_names
    rec.update({k: v[i] for k, v in accs.items()})
    for model in ROLES:
        rec[f"acc_{model}_ood_mean"] = float(np.mean([rec[f"acc_{model}_{k}"] for k in ood_names]))
    for state in (student.task, baseline.task):
        for k in state.history:
            if k != "step":
                rec[f"curve_{k}"] = state.curve(k, i)
                rec[k] = rec[f"curve_{k}"][-1]
    rec["curve_step"] = list(student.task.history["step"])
    rec["fit_mse_ood_mean"] = float(np.mean([rec[f"fit_mse_{k}"] for k in ood_names]))
    rec["student_ood_drop"] = rec["acc_student_id"] - rec["acc_student_ood_mean"]
    if "student_bg_norm" in student.first.history:
        rec["student_bg_norm_init"] = student.first.history["student_bg_norm"][0][i]
        rec["student_bg_growth"] = rec["student_bg_norm"] / rec["student_bg_norm_init"]
    rec["fit_cos_ood_mean"] = float(np.mean([rec[f"fit_cos_{k}"] for k in ood_names]))
    if teacher.first_norms is not None:
        core, bg = teacher.first_norms
        rec["teacher_bg_norm"], rec["teacher_core_norm"] = float(bg[i]), float(core[i])
    rec.update(task=cfg.task, ood_sets=ood_names, n_train=int(data.train_x.shape[1]))
    rec.update(divergence(cfg, {"teacher": teacher.state, "student": student, "baseline": baseline}, i))
    return rec


def estimate(cfg: DistillationConfig) -> Estimate:
    """One group: the task's tensors, three models with AdamW state, one batch of activations, for every seed
    stacked (built-in models) or for one seed (user and pretrained models: :func:`one_seed_groups`)."""
    one_seed = one_seed_groups(cfg)
    S = 1 if one_seed else cfg.seeds
    # a pretrained teacher: student and baseline have its architecture
    lite = lite_cost(cfg.teacher, cfg.canvas) if cfg.teacher in PRETRAINED else None
    if cfg.mlp():
        size, per_sample = cfg.d, cfg.width * 3
        params = cfg.d * cfg.width + cfg.width * cfg.embed
    elif lite is not None:
        size, per_sample, params = 3 * cfg.canvas**2, lite.activations, lite.params
    else:
        size = 3 * cfg.canvas**2
        per_sample = 16 * cfg.canvas**2 * 3 + 32 * cfg.canvas**2
        params = 32 * (cfg.canvas // 4) ** 2 * cfg.embed + 5000
    n, n_test, n_ood = cfg.n, cfg.n_test, len(distill_data.get_task(cfg.task).ood)
    if cfg.streaming:  # only features are held: models, one batch, and (N, embed) features per set
        batch = cfg.batch_size or 256
        return Estimate(3 * 4 * 4 * 50e6 + batch * 3 * 224 * 224 * 4 * 20, 0.0, "streamed folder, one seed")
    if cfg.task == "folder":  # sizes from the files there (images are read only by the run)
        assert cfg.data_root is not None, "task=folder has its data_root (the config requires it)"
        root = Path(cfg.data_root)
        count = lambda d: sum(1 for f in d.glob("*/*") if f.is_file()) if d.is_dir() else 0  # noqa: E731
        n, n_test = min(n, count(root / "train")), min(n_test, count(root / "test"))
        oods = [d for d in (root / "ood").glob("*") if d.is_dir()] if (root / "ood").is_dir() else []
        n_ood = max(1, len(oods))
        size = 3 * max(cfg.canvas, 64) ** 2
    rows = 2 * n + n_test * (1 + n_ood)
    batch = n if cfg.batch_size == 0 else min(n, cfg.batch_size)
    peak: float = S * (rows * size * 4 + rows * cfg.embed * 4 * 3 + 3 * params * 4 * 4 + batch * per_sample * 4 * 3)
    peak += FRAMEWORK_BYTES + distill_data.task_load_bytes(cfg.task)
    steps = cfg.epochs * (1 if cfg.batch_size == 0 else math.ceil(n / cfg.batch_size))
    if lite is not None:  # training steps of student and baseline; a forward pass per set per measurement
        flops = lite.flops * (6.0 * steps * batch + rows * (2 + cfg.epochs // cfg.log_every))
    else:
        flops = S * 6.0 * (steps * 2 + cfg.teacher_epochs) * batch * max(params, per_sample)
    return Estimate(peak, flops, f"one seed, {cfg.task}" if one_seed else f"{S} seed(s) stacked, {cfg.task}")
