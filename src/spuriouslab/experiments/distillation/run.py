"""Distillation run: a task (:mod:`spuriouslab.data.distillation`) -> a frozen teacher (built-in, trained once per
seed and kept in the run directory, or the user's) -> a student fitting the teacher's embeddings (MSE, no labels)
and a baseline trained with labels, seeds stacked (:class:`~spuriouslab.nets.models.SeedEnsemble`), all by the one
training loop -> linear probes on each model's frozen features -> one record per (activation, seed)."""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spuriouslab.data.distillation import DistillTask, image_task, synthetic_task
from spuriouslab.data.images import to_float_chw
from spuriouslab.errors import ConfigError
from spuriouslab.experiments.base import Estimate, RunContext
from spuriouslab.experiments.distillation.config import DistillationConfig
from spuriouslab.experiments.distillation.config import checkpoint_key as _key
from spuriouslab.nets.loading import import_object, load_state
from spuriouslab.nets.metrics import subspace_norms
from spuriouslab.nets.models import Classifier, CNNEncoder, MLPEncoder, Projected, SeedEnsemble
from spuriouslab.nets.probes import probe_accuracies
from spuriouslab.nets.train import (clip_grad_norm_per_seed, make_optimizer, seed_cross_entropy, train_loop,
                                     warmup_cosine)
from spuriouslab.seeding import stream, torch_generator, torch_seed

MODELS = ["teacher", "student", "baseline"]


# ------------------------------------------------------------------------------------------------ data
def load_task(cfg: DistillationConfig, seed: int) -> DistillTask:
    if cfg.task == "synthetic":
        return synthetic_task(seed, cfg.d, cfg.d_core, cfg.d_bg, cfg.n_classes, cfg.n, cfg.n_test, cfg.noise)
    from spuriouslab.data.images import load_images

    if cfg.task == "folder":
        return _folder_task(cfg, seed)
    data = load_images("digits" if cfg.task == "digits-background" else "fashion-mnist", cfg.data_root)
    if data.shape[0] > cfg.canvas:
        raise ConfigError(f"canvas: got {cfg.canvas}; the images are {data.shape[0]} pixels wide")
    grey = lambda a: a[..., 0]  # noqa: E731
    return image_task(grey(data.x_train), data.y_train, grey(data.x_test), data.y_test, len(data.classes), seed,
                      min(cfg.n, len(data.x_train)), min(cfg.n_test, len(data.x_test)), cfg.canvas)


def _folder_task(cfg: DistillationConfig, seed: int) -> DistillTask:
    from spuriouslab.data.images import DataError, folder_classes, read_image_split
    from spuriouslab.seeding import numpy_rng

    root = Path(cfg.data_root)
    classes = folder_classes(root)
    x_tr, y_tr = read_image_split(root / "train", classes)
    x_te, y_te = read_image_split(root / "test", classes)
    rng = numpy_rng(seed, stream("distillation.data"))
    tr = rng.permutation(len(x_tr))[: cfg.n]
    te = np.sort(rng.permutation(len(x_te))[: cfg.n_test])
    oods = {}
    ood_root = root / "ood"
    for d in sorted(p for p in ood_root.iterdir() if p.is_dir()) if ood_root.is_dir() else []:
        x_o, y_o = read_image_split(d, classes)
        if x_o.shape[1:] != x_te.shape[1:]:
            raise DataError(f"{d}: images are {x_o.shape[1:]}, the test images {x_te.shape[1:]}")
        oods[d.name] = (to_float_chw(x_o), torch.from_numpy(y_o))
    if not oods:
        raise DataError(f"{ood_root}: no OOD sets; put each as {ood_root}/<name>/<class>/*.png")
    train, labels = to_float_chw(x_tr[tr]), torch.from_numpy(y_tr[tr])
    task = DistillTask(train, labels, to_float_chw(x_te[te]), torch.from_numpy(y_te[te]),
                       {k: v[0] for k, v in oods.items()}, train, labels, len(classes))  # the teacher sees the same
    task.notes["ood_labels"] = {k: v[1] for k, v in oods.items()}
    return task


def ood_labels(task: DistillTask, name: str) -> torch.Tensor:
    return task.notes.get("ood_labels", {}).get(name, task.y_test)


# ---------------------------------------------------------------------------------------------- models
def import_factory(spec: str, key: str) -> Callable[..., torch.nn.Module]:
    """``package.module:factory`` -> the callable; a one-line ConfigError naming ``key`` when it does not import."""
    obj = import_object(spec, key)
    if not callable(obj):
        raise ConfigError(f"{key}: {spec!r} is not callable")
    return obj


def call_factory(factory: Callable, spec: str, key: str, input_shape: tuple[int, ...], n_classes: int):
    """Call a user factory (with ``input_shape`` / ``n_classes`` when it takes them); it must return a Module."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = {k: v for k, v in (("input_shape", input_shape), ("n_classes", n_classes)) if k in params}
    try:
        model = factory(**kwargs)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"{key}: {spec!r} failed ({type(exc).__name__}: {exc})") from None
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"{key}: {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def make_encoder(cfg: DistillationConfig, task: DistillTask, role: str, activation: str, seed: int,
                 stream_name: str) -> torch.nn.Module:
    """A fresh encoder of ``role`` (teacher / student / baseline), initialised from its own seeded stream."""
    torch.manual_seed(torch_seed(seed, stream(stream_name)))
    spec = cfg.teacher if role == "teacher" else (cfg.student or cfg.teacher)
    if spec is not None:
        return call_factory(import_factory(spec, "teacher" if role == "teacher" or cfg.student is None else "student"),
                            spec, role, task.input_shape, task.n_classes)
    if cfg.mlp():
        act = cfg.teacher_activation if role == "teacher" else activation
        enc = MLPEncoder(int(np.prod(task.input_shape)), cfg.width, cfg.embed, act)
        return Projected(enc, task.core_projection()) if role == "teacher" else enc
    c, h, w = task.input_shape
    return CNNEncoder(c, (h, w), cfg.embed)


def check(cfg: DistillationConfig) -> None:
    """Teacher and student build, are modules, and agree on the embedding size (a forward on two inputs)."""
    if cfg.stream:
        from spuriouslab.experiments.distillation import stream as S

        sets = S.datasets(cfg)
        x = torch.stack([sets["train"][i][0] for i in range(min(2, len(sets["train"])))])

        class task:  # what make_encoder reads
            input_shape, n_classes = tuple(x.shape[1:]), len(sets["classes"])
    else:
        task = load_task(cfg, cfg.seed)
        x = task.x_train[:2]
    with torch.no_grad():
        teacher = make_encoder(cfg, task, "teacher", "relu", cfg.seed, "distillation.teacher")
        if cfg.teacher_checkpoint:
            load_teacher_checkpoint(teacher, cfg.teacher_checkpoint)
        t_out = _forward(teacher, x, "teacher", cfg.teacher)
        for act in cfg.activation:
            student = make_encoder(cfg, task, "student", act, cfg.seed, "distillation.student")
            s_out = _forward(student, x, "student", cfg.student or cfg.teacher)
            if s_out.shape[1:] != t_out.shape[1:]:
                raise ConfigError(f"student: {cfg.student or 'the built-in student'} gives embeddings of shape "
                                  f"{tuple(s_out.shape[1:])}, the teacher's are {tuple(t_out.shape[1:])}")


def _forward(model: torch.nn.Module, x: torch.Tensor, key: str, spec: str | None) -> torch.Tensor:
    try:
        out = model.eval()(x)
    except Exception as exc:  # noqa: BLE001 - the user's module on our inputs
        raise ConfigError(f"{key}: {spec or 'built-in'} fails on inputs of shape {tuple(x.shape)} "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ConfigError(f"{key}: {spec or 'built-in'} must return a (batch, embedding) tensor, got "
                          f"{getattr(out, 'shape', type(out).__name__)}")
    return out


def load_teacher_checkpoint(model: torch.nn.Module, path: str) -> None:
    load_state(model, path, "teacher_checkpoint", "the teacher")


# ---------------------------------------------------------------------------------------------- training
def _batches(n: int, batch_size: int, gens: list[torch.Generator], device: str):
    """Per-step index tensors (S, B): full batch when ``batch_size`` is 0 or >= n, else seeded permutations."""
    if batch_size == 0 or batch_size >= n:
        full = torch.arange(n, device=device).expand(len(gens), -1)
        return (lambda t: full), 1
    spe = math.ceil(n / batch_size)
    state: dict[str, Any] = {}

    def idx(t: int) -> torch.Tensor:
        i = (t - 1) % spe
        if i == 0 or "perm" not in state:
            state["perm"] = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)
        return state["perm"][:, i * batch_size:(i + 1) * batch_size]

    return idx, spe


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return torch.gather(x, 1, idx.view(*idx.shape, *[1] * (x.dim() - 2)).expand(-1, -1, *x.shape[2:]))


def fit_ensemble(cfg: DistillationConfig, ens: SeedEnsemble, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 n: int, epochs: int, seeds: list[int], ctx: RunContext, key: str,
                 on_log: Callable[[int], None] | None = None, desc: str = "") -> None:
    """Train ``ens`` with AdamW (warm-up + cosine when ``warmup`` or ``clip`` is set), per-seed clipping, the one
    training loop; ``loss(out_idx, t)`` gives the per-seed loss (S,) of step ``t``'s batch.  Checkpointed at every
    log step under ``key`` (resumed from there), discarded when done."""
    dev = ctx.device
    opt = make_optimizer("adamw", ens.parameters(), cfg.lr, cfg.weight_decay)
    gens = [torch_generator(s, stream("distillation.order")) for s in seeds]
    idx, spe = _batches(n, cfg.batch_size, gens, dev)
    steps = epochs * spe
    sched = warmup_cosine(opt, cfg.warmup, steps) if (cfg.warmup or cfg.clip) else None
    clip = (lambda: clip_grad_norm_per_seed(list(ens.parameters()), cfg.clip, ens.stacked)) if cfg.clip else None
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cfg.amp and dev.startswith("cuda")
                else contextlib.nullcontext())
    start = 0
    saved = ctx.checkpoints.load(key) if ctx.checkpoints is not None else None
    if saved is not None:
        ens.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        if sched is not None:
            sched.load_state_dict(saved["sched"])
        for g, st in zip(gens, saved["gens"], strict=True):
            g.set_state(st)
        start = saved["step"]
        if on_log is not None and "log" in saved:
            on_log.restore(saved["log"])  # type: ignore[attr-defined]

    def step_loss(t: int) -> torch.Tensor:
        with autocast:
            return loss(idx(t), t).sum()

    def logged(t: int) -> dict:
        if on_log is not None:
            on_log(t)
        if ctx.checkpoints is not None and 0 < t < steps:
            state = {"model": ens.state_dict(), "opt": opt.state_dict(), "gens": [g.get_state() for g in gens],
                     "step": t}
            if sched is not None:
                state["sched"] = sched.state_dict()
            if on_log is not None:
                state["log"] = on_log.state()  # type: ignore[attr-defined]
            ctx.checkpoints.save(key, state)
        return {}

    ens.train()
    train_loop(step_loss, opt, steps, cfg.log_every * spe, logged, desc=desc, progress=ctx.progress, start=start,
               before_step=clip, scheduler=sched)
    if ctx.checkpoints is not None:
        ctx.checkpoints.discard(key)


class Curves:
    """Measurements at log steps (a callable for :func:`fit_ensemble`), restorable from a checkpoint."""

    def __init__(self, measure: Callable[[int], dict[str, torch.Tensor]]):
        self.measure = measure
        self.history: dict[str, list] = {"step": []}

    def __call__(self, t: int) -> None:
        self.history["step"].append(t)
        for k, v in self.measure(t).items():
            self.history.setdefault(k, []).append([float(a) for a in v.detach().float().cpu()])

    def state(self) -> dict:
        return self.history

    def restore(self, state: dict) -> None:
        self.history = state


@torch.no_grad()
def embed(ens: SeedEnsemble, x: torch.Tensor, module: str | None = None, chunk: int = 2048) -> torch.Tensor:
    """Embeddings (S, n, e) of inputs (S, n, ...), evaluated in chunks, in eval mode."""
    was = ens.training
    ens.eval()
    out = torch.cat([ens(x[:, j:j + chunk]) if module is None else ens.forward_module(x[:, j:j + chunk], module)
                     for j in range(0, x.shape[1], chunk)], dim=1)
    ens.train(was)
    return out.float()


# --------------------------------------------------------------------------------------------------- run
def group_key(cfg: DistillationConfig, p: dict[str, Any]) -> Any:
    """Built-in models: every seed of an activation stacked in one group.  User models (which may hold BatchNorm,
    which cannot be stacked) train one seed at a time."""
    user = cfg.teacher is not None or cfg.student is not None
    return (p["activation"], p["seed"]) if user else (p["activation"],)


def run_group(cfg: DistillationConfig, points: list[dict], ctx: RunContext) -> Iterator[dict]:
    if cfg.stream:
        from spuriouslab.experiments.distillation import stream as S

        yield from S.run_group(cfg, points, ctx, make_encoder, load_teacher_checkpoint)
        return
    t0 = time.perf_counter()
    dev = ctx.device
    act = points[0]["activation"]
    seeds = [p["seed"] for p in points]
    tasks = [load_task(cfg, s) for s in seeds]
    stack = lambda get: torch.stack([get(t) for t in tasks]).to(dev)  # noqa: E731
    x_tr, y_tr, x_te, y_te = stack(lambda t: t.x_train), stack(lambda t: t.y_train), stack(lambda t: t.x_test), \
        stack(lambda t: t.y_test)
    ood_names = list(tasks[0].ood)
    x_ood = {k: stack(lambda t, k=k: t.ood[k]) for k in ood_names}
    n = x_tr.shape[1]
    seconds: dict[str, float] = {}

    # 1. the teacher: the user's (frozen), or the built-in one trained with labels, once per seed, kept
    t1 = time.perf_counter()
    if cfg.teacher is not None:
        def make_teacher(s):
            m = make_encoder(cfg, tasks[seeds.index(s)], "teacher", act, s, "distillation.teacher")
            if cfg.teacher_checkpoint:
                load_teacher_checkpoint(m, cfg.teacher_checkpoint)
            return m

        teacher = SeedEnsemble(make_teacher, seeds).to(dev)
        teach = lambda x: embed(teacher, x)  # noqa: E731
        teacher_first = None
    else:
        teacher = SeedEnsemble(lambda s: Classifier(make_encoder(cfg, tasks[seeds.index(s)], "teacher", act, s,
                                                                 "distillation.teacher"), cfg.embed,
                                                    tasks[0].n_classes), seeds).to(dev)
        key = _key(cfg, "teacher", seeds)
        kept = ctx.checkpoints.load(key + "-final") if ctx.checkpoints is not None else None
        if kept is not None:
            teacher.load_state_dict(kept)
        else:
            x_t, y_t = stack(lambda t: t.x_teacher), stack(lambda t: t.y_teacher)
            fit_ensemble(cfg, teacher,
                         lambda i, t: seed_cross_entropy(teacher(_gather(x_t, i)), torch.gather(y_t, 1, i)),
                         x_t.shape[1], cfg.teacher_epochs, seeds, ctx, key, desc=f"teacher x{len(seeds)}")
            if ctx.checkpoints is not None:
                ctx.checkpoints.save(key + "-final", teacher.state_dict())
        teach = lambda x: embed(teacher, x, "encoder")  # noqa: E731
        teacher_first = "encoder.encoder.first.weight" if cfg.mlp() else None
    seconds["teacher"] = time.perf_counter() - t1
    targets = teach(x_tr)
    t_te = teach(x_te)
    t_ood = {k: teach(v) for k, v in x_ood.items()}

    basis = stack(lambda t: t.basis) if cfg.mlp() and cfg.student is None and cfg.teacher is None else None
    d_core = tasks[0].d_core

    # 2. the student: fits the teacher's embeddings on the training inputs, no labels
    t1 = time.perf_counter()
    student = SeedEnsemble(lambda s: make_encoder(cfg, tasks[seeds.index(s)], "student", act, s,
                                                  "distillation.student"), seeds).to(dev)

    def fit_stats(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mse = ((a - b) ** 2).mean(dim=(1, 2))
        cos = torch.nn.functional.cosine_similarity(a, b, dim=2).mean(dim=1)
        return mse, cos

    def measure_student(t: int) -> dict[str, torch.Tensor]:
        out = {}
        out["distill_loss"], _ = fit_stats(embed(student, x_tr), targets)
        for name, x, tgt in [("id", x_te, t_te), *[(k, x_ood[k], t_ood[k]) for k in ood_names]]:
            out[f"fit_mse_{name}"], out[f"fit_cos_{name}"] = fit_stats(embed(student, x), tgt)
        if basis is not None:
            out["student_core_norm"], out["student_bg_norm"] = subspace_norms(
                student.seed_parameter("first.weight").detach().float(), basis, d_core)
        return out

    curves = Curves(measure_student)
    fit_ensemble(cfg, student, lambda i, t: ((student(_gather(x_tr, i)).float() - _gather(targets, i)) ** 2)
                 .mean(dim=(1, 2)), n, cfg.epochs, seeds, ctx, _key(cfg, "student", seeds, act), curves,
                 desc=f"student {act} x{len(seeds)}")
    seconds["student"] = time.perf_counter() - t1

    # 3. the baseline: the same architecture trained end to end with labels on the same inputs
    t1 = time.perf_counter()
    baseline = SeedEnsemble(lambda s: Classifier(make_encoder(cfg, tasks[seeds.index(s)], "student", act, s,
                                                              "distillation.baseline"), int(targets.shape[-1]),
                                                 tasks[0].n_classes), seeds).to(dev)

    def measure_baseline(t: int) -> dict[str, torch.Tensor]:
        if basis is None:
            return {}
        core, bg = subspace_norms(baseline.seed_parameter("encoder.first.weight").detach().float(), basis, d_core)
        return {"baseline_core_norm": core, "baseline_bg_norm": bg}

    base_curves = Curves(measure_baseline)
    fit_ensemble(cfg, baseline,
                 lambda i, t: seed_cross_entropy(baseline(_gather(x_tr, i)), torch.gather(y_tr, 1, i)), n, cfg.epochs,
                 seeds, ctx, _key(cfg, "baseline", seeds, act), base_curves, desc=f"baseline {act} x{len(seeds)}")
    seconds["baseline"] = time.perf_counter() - t1

    # 4. linear probes on frozen features, fitted on the ID training set; 5. ID and OOD accuracy
    t1 = time.perf_counter()
    feats = {"teacher": (targets, t_te, t_ood),
             "student": (embed(student, x_tr), embed(student, x_te), {k: embed(student, v) for k, v in x_ood.items()}),
             "baseline": (embed(baseline, x_tr, "encoder"), embed(baseline, x_te, "encoder"),
                          {k: embed(baseline, v, "encoder") for k, v in x_ood.items()})}
    accs: dict[str, list[float]] = {}
    for model, (f_tr, f_te, f_ood) in feats.items():
        for i, s in enumerate(seeds):
            tests = {"id": (f_te[i], y_te[i]), **{k: (f_ood[k][i], ood_labels(tasks[i], k)) for k in ood_names}}
            for name, acc in probe_accuracies((f_tr[i], y_tr[i]), tests, **cfg.probe_kwargs(model, s)).items():
                accs.setdefault(f"acc_{model}_{name}", []).append(acc)
    seconds["probes"] = time.perf_counter() - t1

    if teacher_first is not None and basis is not None:  # the teacher's first layer seen in the input space
        P = stack(lambda t: t.core_projection())
        W_eff = torch.bmm(teacher.seed_parameter(teacher_first).detach().float(), P)
        teacher_core, teacher_bg = subspace_norms(W_eff, basis, d_core)
    else:
        teacher_core = teacher_bg = None
    hist, bhist = curves.history, base_curves.history
    total = (time.perf_counter() - t0) / len(seeds)
    for i, p in enumerate(points):
        rec: dict[str, Any] = dict(p)
        rec.update({k: v[i] for k, v in accs.items()})
        for model in MODELS:
            ood_accs = [rec[f"acc_{model}_{k}"] for k in ood_names]
            rec[f"acc_{model}_ood_mean"] = float(np.mean(ood_accs))
        for k, v in hist.items():
            if k == "step":
                continue
            rec[k] = v[-1][i]
            rec[f"curve_{k}"] = [h[i] for h in v]
        for k, v in bhist.items():
            if k != "step":
                rec[k] = v[-1][i]
                rec[f"curve_{k}"] = [h[i] for h in v]
        rec["curve_step"] = list(hist["step"])
        rec["fit_mse_ood_mean"] = float(np.mean([rec[f"fit_mse_{k}"] for k in ood_names]))
        rec["fit_cos_ood_mean"] = float(np.mean([rec[f"fit_cos_{k}"] for k in ood_names]))
        if teacher_bg is not None:
            rec["teacher_bg_norm"], rec["teacher_core_norm"] = float(teacher_bg[i]), float(teacher_core[i])
        rec.update(task=cfg.task, ood_sets=ood_names, n_train=n, status="ok", error="", seconds=total,
                   **{f"seconds_{k}": v / len(seeds) for k, v in seconds.items()})
        yield rec


def estimate(cfg: DistillationConfig) -> Estimate:
    """Every seed stacked: the task's tensors, three models with AdamW state, one batch of activations."""
    S = cfg.seeds
    if cfg.task == "synthetic":
        size, per_sample = cfg.d, cfg.width * 3
        params = cfg.d * cfg.width + cfg.width * cfg.embed
    else:
        size = 3 * cfg.canvas**2
        per_sample = 16 * cfg.canvas**2 * 3 + 32 * cfg.canvas**2
        params = 32 * (cfg.canvas // 4) ** 2 * cfg.embed + 5000
    n, n_test, n_ood = cfg.n, cfg.n_test, 5 if cfg.task == "synthetic" else 4
    if cfg.stream:  # only features are held: models, one batch, and (N, embed) features per set
        batch = cfg.batch_size or 256
        return Estimate(3 * 4 * 4 * 50e6 + batch * 3 * 224 * 224 * 4 * 20, 0.0, "streamed folder, one seed")
    if cfg.task == "folder":  # sizes from the files there (images are read only by the run)
        root = Path(cfg.data_root)
        count = lambda d: sum(1 for f in d.glob("*/*") if f.is_file()) if d.is_dir() else 0  # noqa: E731
        n, n_test = min(n, count(root / "train")), min(n_test, count(root / "test"))
        oods = [d for d in (root / "ood").glob("*") if d.is_dir()] if (root / "ood").is_dir() else []
        n_ood = max(1, len(oods))
        size = 3 * max(cfg.canvas, 64) ** 2
    rows = 2 * n + n_test * (1 + n_ood)
    batch = n if cfg.batch_size == 0 else min(n, cfg.batch_size)
    peak = S * (rows * size * 4 + rows * cfg.embed * 4 * 3 + 3 * params * 4 * 4 + batch * per_sample * 4 * 3)
    steps = cfg.epochs * (1 if cfg.batch_size == 0 else math.ceil(n / cfg.batch_size))
    flops = S * 6.0 * (steps * 2 + cfg.teacher_epochs) * batch * max(params, per_sample)
    return Estimate(peak, flops, f"{S} seed(s) stacked, {cfg.task}")
