"""Memorization-NN run: data (:func:`spuriouslab.data.build_split`, every class) -> a seed ensemble of a model of the
registry -> the one trainer (:func:`spuriouslab.nets.train.fit`, checkpointed through the run context) -> one
record per seed with its curves."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, cast

import torch

from spuriouslab.data.images import image_shape, load_bytes
from spuriouslab.data.memorization import build_split
from spuriouslab.errors import ConfigError
from spuriouslab.experiments.base import FRAMEWORK_BYTES, Estimate, RunContext, checkpoint_key
from spuriouslab.experiments.memorization_nn.config import MemorizationNNConfig
from spuriouslab.nets.models import MODELS, SeedEnsemble, build_model
from spuriouslab.nets.phases import Phase, Phases, linear_probing, run_phases
from spuriouslab.nets.remedies import REMEDIES, balanced_weights, group_means, jtt_weights
from spuriouslab.nets.train import (
    Minibatches,
    TrainState,
    evaluate,
    fit,
    gather,
    make_optimizer,
    sample_cross_entropy,
    seed_cross_entropy,
    seeded,
)
from spuriouslab.seeding import stream_id, torch_generator

NAME = "memorization-nn"
METRICS = ["train_loss", "train_acc", "test_acc", "spurious_acc"]


@dataclass
class SeedData:
    """Seeds' data as tensors (stacked over seeds along the first dimension when built by :func:`stacked`):
    training inputs and targets, test inputs and targets, and the training samples' spurious queries (their
    border with the core zeroed); ``shape`` (C, H, W) and ``n_out`` of the model, ``classes`` (0: one output,
    MSE on +-1 targets)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    query_x: torch.Tensor
    shape: tuple[int, int, int]
    n_out: int
    classes: int
    # the coloured task: each test set's images and colours, and the ID test images' border-only queries
    tests: dict[str, torch.Tensor] | None = None
    colours: dict[str, torch.Tensor] | None = None
    test_query_x: torch.Tensor | None = None
    # the coloured task under pretrain / lp-ft: the training images with random-colour borders
    pretrain_x: torch.Tensor | None = None
    # the coloured task: the training colours (groups are (label, colour)); the validation split (n_val); the
    # task phase's per-sample loss weights (reweight, jtt)
    train_c: torch.Tensor | None = None
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    val_c: torch.Tensor | None = None
    train_w: torch.Tensor | None = None


def seed_data(cfg: MemorizationNNConfig, seed: int, n: int, pretrain: bool = False) -> SeedData:
    """One seed's split as tensors: images (N, C, H, W) or synthetic vectors (N, d); ``pretrain`` adds the
    coloured task's pre-training images."""
    s = build_split(cfg.split_spec(pretrain_borders=pretrain), seed, n)
    if cfg.data == "synthetic":
        vec = lambda a: torch.from_numpy(a).float()  # noqa: E731
        return SeedData(vec(s.Z), vec(s.g), vec(s.Z_test), vec(s.g_test), vec(s.Z_query), (1, 1, cfg.d), 1, 0)
    h, w, c = s.sample_shape

    def images(a):
        return torch.from_numpy(a).float().view(len(a), h, w, c).permute(0, 3, 1, 2).contiguous()

    out = SeedData(
        images(s.Z),
        torch.from_numpy(s.g),
        images(s.Z_test),
        torch.from_numpy(s.g_test),
        images(s.Z_query),
        (c, h, w),
        s.n_classes,
        s.n_classes,
    )
    if s.tests is not None:
        out.tests = {name: images(z) for name, (z, _, _) in s.tests.items()}
        out.colours = {name: torch.from_numpy(col) for name, (_, _, col) in s.tests.items()}
        out.test_query_x = images(s.Z_test_query)
    if s.Z_pretrain is not None:
        out.pretrain_x = images(s.Z_pretrain)
    if s.c is not None:
        out.train_c = torch.from_numpy(s.c)
    if s.val is not None:
        out.val_x, out.val_y, out.val_c = images(s.val[0]), torch.from_numpy(s.val[1]), torch.from_numpy(s.val[2])
    return out


def stacked(cfg: MemorizationNNConfig, seeds: list[int], n: int, device: str, pretrain: bool = False) -> SeedData:
    parts = [seed_data(cfg, s, n, pretrain) for s in seeds]
    fields = ("train_x", "train_y", "test_x", "test_y", "query_x")
    train_x, train_y, test_x, test_y, query_x = (torch.stack([getattr(d, f) for d in parts]).to(device) for f in fields)
    out = SeedData(
        train_x, train_y, test_x, test_y, query_x, shape=parts[0].shape, n_out=parts[0].n_out, classes=parts[0].classes
    )
    if parts[0].tests is not None:
        coloured = [_coloured_parts(d) for d in parts]
        out.tests = {k: torch.stack([c[0][k] for c in coloured]).to(device) for k in coloured[0][0]}
        out.colours = {k: torch.stack([c[1][k] for c in coloured]) for k in coloured[0][1]}
        out.test_query_x = torch.stack([c[2] for c in coloured]).to(device)
    if pretrain:
        pre = [d.pretrain_x for d in parts]
        assert all(x is not None for x in pre), "every seed's split was built with its pre-training images"
        out.pretrain_x = torch.stack(cast("list[torch.Tensor]", pre)).to(device)
    for name in ("train_c", "val_x", "val_y", "val_c"):  # the coloured task's groups and validation split
        values = [getattr(d, name) for d in parts]
        if values[0] is not None:
            setattr(out, name, torch.stack(values).to(device))
    return out


def _coloured_parts(d: SeedData) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """A coloured task's test sets, colours and test queries (every one is set when ``tests`` is)."""
    assert d.tests is not None and d.colours is not None and d.test_query_x is not None
    return d.tests, d.colours, d.test_query_x


def resolve(cfg: MemorizationNNConfig) -> dict[str, str]:
    from spuriouslab.data.images import identity

    return {} if cfg.data == "synthetic" else identity(cfg.data, cfg.data_root)


def check(cfg: MemorizationNNConfig) -> None:
    data = seed_data(cfg, cfg.seed, max(cfg.n_train))  # data present, sizes possible
    check_patch(cfg, data.shape)


def check_patch(cfg: MemorizationNNConfig, shape: tuple[int, int, int]) -> None:
    """model=vit: the patch must divide the image height and width, border included (a one-line ConfigError
    naming the sizes and the patches that would do)."""
    if "vit" not in cfg.model or cfg.data == "synthetic":
        return
    _, h, w = shape
    if h % cfg.vit_patch or w % cfg.vit_patch:
        b = cfg.split_spec().border_width
        ok = [p for p in range(1, min(h, w) + 1) if h % p == 0 and w % p == 0]
        raise ConfigError(
            f"vit_patch: got {cfg.vit_patch}; the images are {h}x{w} including the border ({h - 2 * b}x{w - 2 * b} "
            f"+ 2 x {b}), so the patch must divide both ({', '.join(map(str, ok))})"
        )


def model_options(cfg: MemorizationNNConfig, model: str) -> dict[str, Any]:
    """The registry options the config sets for ``model`` (the CIFAR ResNet's depth, the ViT's patch, width,
    depth and heads)."""
    if model == "resnet":
        return {"depth": cfg.resnet_depth}
    if model == "vit":
        return {"patch": cfg.vit_patch, "dim": cfg.vit_dim, "depth": cfg.vit_depth, "heads": cfg.vit_heads}
    return {}


def estimate(cfg: MemorizationNNConfig) -> Estimate:
    """The largest group: every seed of the largest N (BatchNorm models: one seed), its data as float32 tensors
    (plus the float64 split being built), parameters with Adam state, and one batch of activations (forward and
    backward).  Parameter and activation counts come from the model registry."""
    n = max(cfg.n_train)
    if cfg.data == "synthetic":
        shape, n_out = (1, 1, cfg.d), 1
    else:
        h0, w0, c = image_shape(cfg.data, cfg.data_root)
        b = cfg.split_spec().border_width
        shape, n_out = (c, h0 + 2 * b, w0 + 2 * b), 10
        check_patch(cfg, shape)
    size = math.prod(shape)
    best = Estimate(0.0, 0.0)
    pretrain = any(REMEDIES[m].pretrain for m in cfg.remedy)
    rows = (3 if pretrain else 2) * n + cfg.n_test
    epochs = max(sum(cfg.phase_epochs(m).values()) for m in cfg.remedy)
    for model in cfg.model:
        spec = MODELS[model]
        S = 1 if spec.batchnorm else cfg.seeds
        params, per_sample = spec.size(shape, n_out, **model_options(cfg, model))
        batch = min(cfg.batch_size, n)
        peak = (
            S * rows * size * 4
            + rows * size * 8
            + S * params * 4 * 4
            + S * batch * per_sample * 4 * 2
            + (0.0 if cfg.data == "synthetic" else load_bytes(cfg.data))
            + FRAMEWORK_BYTES
        )
        steps = epochs * math.ceil(n / cfg.batch_size)
        flops = S * (
            6.0 * steps * batch * max(params, per_sample)
            + 2.0 * (epochs / cfg.log_every + 1) * rows * max(params, per_sample)
        )
        if peak > best.peak_bytes:
            best = Estimate(peak, max(flops, best.flops), f"{model}, N={n}, {S} seed(s)")
        else:
            best.flops = max(best.flops, flops)
    return best


def group_key(cfg: MemorizationNNConfig, p: dict[str, Any]) -> Any:
    key = (p["model"], p["n_train"], p.get("remedy", "none"))
    return (*key, p["seed"]) if MODELS[p["model"]].batchnorm else key  # BatchNorm: one seed at a time


def _loss(out: torch.Tensor, y: torch.Tensor, classes: int) -> torch.Tensor:
    """Per-seed loss (S,) of outputs (S, B, C) against targets (S, B)."""
    if classes:
        return seed_cross_entropy(out, y)
    return ((out[..., 0] - y) ** 2).mean(dim=1)


def _correct(out: torch.Tensor, y: torch.Tensor, classes: int) -> torch.Tensor:
    if classes:
        return (out.argmax(-1) == y).float()
    return (out[..., 0] * y > 0).float()


def run_group(cfg: MemorizationNNConfig, points: list[dict], ctx: RunContext) -> Iterator[dict]:
    t0 = time.perf_counter()
    seeds = [p["seed"] for p in points]
    model_name, n, remedy = points[0]["model"], points[0]["n_train"], points[0].get("remedy", "none")
    spec = REMEDIES[remedy]
    data = stacked(cfg, seeds, n, ctx.device, pretrain=spec.pretrain)
    key = checkpoint_key(NAME, cfg, points)
    keys: list[str] = []
    if spec.weights == "balanced":  # reweight: every (label, colour) group weighs the same
        data.train_w = balanced_weights(_groups(data.train_y, data.train_c)).to(ctx.device)
    elif spec.weights == "errors":  # jtt: the identification model's training errors, upweighted
        data.train_w, found = jtt_identify(cfg, model_name, data, seeds, f"{key}-jtt-id", ctx)
        keys += found
    phases = train_phases(cfg, model_name, data, seeds, remedy, key, ctx)
    net = phases.model
    assert isinstance(net, SeedEnsemble)
    if spec.stage == "dfr":  # the last layer re-fitted on the group-balanced first half of the validation split
        keys.append(refit_last_layer(cfg, net, data, f"{key}-dfr", ctx))
    seconds = (time.perf_counter() - t0) / len(seeds)
    colour = coloured_numbers(net, data, cfg.rho) if data.tests is not None else None
    chosen = selected(phases.task.history) if data.val_x is not None else None
    if chosen is not None and colour is not None and spec.stage == "dfr":  # the re-fitted model is the one model
        for prefix in RULES:
            chosen.update({f"sel_{prefix}_{k}": colour[k] for k in SELECTED})
    epochs = cfg.phase_epochs(remedy)
    for i, p in enumerate(points):
        rec = _record(cfg, p, phases, i, data.classes, seconds)
        rec.update(pretrain_epochs=epochs.get("pretrain", 0), lp_epochs=epochs.get("lp", 0))
        for numbers in (colour, chosen):
            if numbers is not None:
                rec.update(
                    {
                        k: (v[i] if rec["status"] == "ok" else math.nan) if isinstance(v, list) else v
                        for k, v in numbers.items()
                    }
                )
        if data.train_c is not None:
            rec.update(group_counts(data, i))
        yield rec
    ctx.discard(*phases.keys, *keys)


def train_phases(
    cfg: MemorizationNNConfig,
    model_name: str,
    data: SeedData,
    seeds: list[int],
    remedy: str,
    key: str,
    ctx: RunContext,
    lengths: dict[str, int] | None = None,
) -> Phases:
    """A fresh seed ensemble (:func:`new_model`) trained through the phases of ``remedy``
    (:func:`~spuriouslab.nets.phases.run_phases`): pre-training on the training images with random-colour
    borders (``pretrain``, ``lp-ft``), then the head alone with the rest and BatchNorm statistics frozen
    (``lp-ft``), then the task - with the AND-mask over the classes (``and-mask``).  Each phase has its own Adam
    and StepLR (:func:`phase_state`), and its own checkpoint (``key-pretrain``, ``key-lp``, ``key``), so a resumed
    run does not repeat a finished phase.  ``lengths``: the phases' epochs when not the remedy's own (JTT's
    identification model)."""
    net = new_model(cfg, model_name, data, seeds, ctx.device)
    n = len(data.train_y[0])

    def recipe(phase: str, params: list[torch.nn.Parameter], epochs: int, groups: str | None) -> Phase:
        """``epochs`` of minibatches (the task's order stream, or the pre-training phases' own) of the pre-training
        or the training images, with the training labels; logged every ``log_every`` epochs; ``groups``: per-class
        or per-(label, colour) losses; in the task phase, the per-sample weights where the remedy sets them."""
        state = phase_state(
            cfg, net, params, seeds, "nets.order" if phase == "task" else "nets.pretrain_order", ctx.device
        )
        batches = Minibatches(n, cfg.batch_size, state.generators, ctx.device)
        if phase == "pretrain":
            assert data.pretrain_x is not None, "the pre-training images are built for pretrain / lp-ft"
        train_x = data.pretrain_x if phase == "pretrain" and data.pretrain_x is not None else data.train_x
        spe = batches.steps_per_epoch
        return Phase(
            state,
            _step(net, train_x, data, batches, groups=groups, weighted=phase == "task"),
            epochs * spe,
            cfg.log_every * spe,
            steps_per_epoch=spe,
            schedule="epoch",
            measure=_measure(net, data, select=phase == "task" and data.val_x is not None, rho=cfg.rho),
        )

    return run_phases(
        net,
        remedy,
        lengths or cfg.phase_epochs(remedy),
        recipe,
        checkpoints=ctx.checkpoints,
        key=key,
        desc=f"{model_name}{'' if remedy == 'none' else '/' + remedy} N={n} x{len(seeds)}",
        progress=ctx.progress,
        and_mask_tau=cfg.and_mask_tau,
        groupdro_eta=cfg.groupdro_eta,
    )


def coloured_numbers(net: SeedEnsemble, data: SeedData, rho: float) -> dict[str, Any]:
    """The coloured task's numbers per seed (lists over seeds): accuracy and cross-entropy on ``id``, ``indep``,
    ``reversed`` and ``novel``, and the OOD drops ``reversed_drop`` = ID minus reversed-colour accuracy (spurious
    correlation) and ``novel_drop`` = ID minus held-out-colour accuracy (contamination at rho = 0.5); group
    accuracies on ``indep`` (``acc_indep`` is the mean over samples, ``group_balanced_acc`` over the four groups,
    ``worst_group_acc`` the lowest, ``train_weighted_acc`` the groups weighted by their training proportions: the
    "mean accuracy" of the DFR and JTT code); the colour reliance ``colour_flip`` (predictions that
    change when only the colour is reversed, same cores) and ``logit_change`` (mean |change of the logit margin|
    over the mean |margin|); and the follow-up's ``spurious_corr`` C = Cov(margin on the border alone, +-1 label)."""
    from spuriouslab.data.coloured import GROUPS, group_metrics, spurious_correlation

    tests, colours, test_query_x = _coloured_parts(data)
    outs = {name: evaluate(net, x) for name, x in tests.items()}
    margin = {name: (o[..., 1] - o[..., 0]).cpu() for name, o in outs.items()}
    y = data.test_y.cpu()
    out: dict[str, Any] = {"rho": rho}
    for name, o in outs.items():
        out[f"acc_{name}"] = (o.argmax(-1).cpu() == y).float().mean(dim=1).tolist()
        out[f"loss_{name}"] = seed_cross_entropy(o, data.test_y).cpu().tolist()
    out["reversed_drop"] = [a - b for a, b in zip(out["acc_id"], out["acc_reversed"], strict=True)]
    out["novel_drop"] = [a - b for a, b in zip(out["acc_id"], out["acc_novel"], strict=True)]
    seeds = len(y)
    groups = [
        group_metrics((outs["indep"][i].argmax(-1).cpu() == y[i]).numpy(), y[i].numpy(), colours["indep"][i].numpy())
        for i in range(seeds)
    ]
    for k in groups[0]:
        if k != "acc":
            out[k] = [g[k] for g in groups]
    if data.train_c is not None:  # the "mean accuracy" of the DFR and JTT code: groups weighted as in training
        w = [group_counts(data, i) for i in range(seeds)]
        out["train_weighted_acc"] = [
            sum(w[i][f"count_train_y{gy}_c{gc}"] * groups[i][f"acc_y{gy}_c{gc}"] for gy, gc in GROUPS)
            / sum(w[i][f"count_train_y{gy}_c{gc}"] for gy, gc in GROUPS)
            for i in range(seeds)
        ]
    out["colour_flip"] = ((margin["id"] > 0) != (margin["reversed"] > 0)).float().mean(dim=1).tolist()
    out["logit_change"] = (
        (margin["reversed"] - margin["id"]).abs().mean(dim=1) / margin["id"].abs().mean(dim=1).clamp(min=1e-12)
    ).tolist()
    q = evaluate(net, test_query_x)
    qm = (q[..., 1] - q[..., 0]).cpu().numpy()
    out["spurious_corr"] = [spurious_correlation(qm[i], 2.0 * y[i].numpy() - 1.0) for i in range(seeds)]
    return out


def new_model(
    cfg: MemorizationNNConfig, model_name: str, data: SeedData, seeds: list[int], device: str
) -> SeedEnsemble:
    """The paper's model: each seed's initialised from its own stream."""
    options = model_options(cfg, model_name)
    return SeedEnsemble(
        lambda s: seeded(
            lambda: build_model(model_name, data.shape, data.n_out, **options),
            torch_generator(s, stream_id("nets.init")),
        ),
        seeds,
    ).to(device)


def phase_state(
    cfg: MemorizationNNConfig,
    net: SeedEnsemble,
    params: list[torch.nn.Parameter],
    seeds: list[int],
    order: str,
    device: str,
) -> TrainState:
    """A training phase of ``net`` (the paper's recipe): Adam over ``params``, StepLR every ``step_size`` epochs,
    and each seed's minibatch order from its stream ``order``."""
    opt = make_optimizer("adam", params, cfg.lr, cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    return TrainState(net, opt, sched, [torch_generator(s, stream_id(order)) for s in seeds])


def _step(
    net: SeedEnsemble,
    train_x: torch.Tensor,
    data: SeedData,
    batches: Minibatches,
    groups: str | None = None,
    weighted: bool = False,
) -> Callable[[int], torch.Tensor]:
    """The step's per-seed losses (S,) on a batch of ``train_x`` with the training labels; ``groups``: the mean
    losses per class (``"class"``: (classes, S), the AND-mask's environments) or per (label, colour) group
    (``"group"``: (4, S), GroupDRO's); ``weighted`` with ``data.train_w``: each sample's loss weighted (reweight,
    jtt)."""
    weights = data.train_w if weighted else None

    def step(t: int) -> torch.Tensor:
        idx = batches(t)
        out, y = net(gather(train_x, idx)), torch.gather(data.train_y, 1, idx)
        if groups == "class":
            return group_means(sample_cross_entropy(out, y), y, data.classes)
        if groups == "group":
            assert data.train_c is not None, "the config allows group remedies on the coloured task only"
            return group_means(sample_cross_entropy(out, y), _groups(y, torch.gather(data.train_c, 1, idx)), 4)
        if weights is not None:
            return (sample_cross_entropy(out, y) * torch.gather(weights, 1, idx)).mean(dim=1)
        return _loss(out, y, data.classes)

    return step


def _groups(y: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """The coloured task's group index ``2 label + colour`` (0..3)."""
    assert c is not None, "groups exist on the coloured task only"
    return 2 * y.long() + c.long()


def _measure(
    net: SeedEnsemble, data: SeedData, select: bool = False, rho: float = 0.5
) -> Callable[[int], dict[str, Any]]:
    """The logged measurements; ``select`` (the coloured task with a validation split, task phase): also the
    validation split's worst-group and worst-class accuracy and the coloured numbers of every test set
    (:data:`SELECTED`), so a checkpoint can be chosen by validation afterwards (:func:`selected`)."""

    def measure(t: int) -> dict[str, Any]:
        outs = {
            name: evaluate(net, x)
            for name, x in [("train", data.train_x), ("test", data.test_x), ("query", data.query_x)]
        }
        acc = lambda out, y: _correct(out, y, data.classes).mean(dim=1)  # noqa: E731
        logged: dict[str, Any] = {
            "train_loss": _loss(outs["train"], data.train_y, data.classes),
            "train_acc": acc(outs["train"], data.train_y),
            "test_acc": acc(outs["test"], data.test_y),
            "spurious_acc": acc(outs["query"], data.train_y),
        }
        if select:
            logged.update(validation_numbers(net, data))
            numbers = coloured_numbers(net, data, rho)
            logged.update({k: numbers[k] for k in SELECTED})
        return logged

    return measure


# the coloured numbers recorded again at the checkpoint model selection picks (sel_wg_*, sel_wc_*)
SELECTED = (
    "acc_id",
    "acc_indep",
    "acc_reversed",
    "acc_novel",
    "worst_group_acc",
    "group_balanced_acc",
    "train_weighted_acc",
    "reversed_drop",
    "novel_drop",
    "colour_flip",
    "spurious_corr",
)
RULES = {"wg": "val_worst_group_acc", "wc": "val_worst_class_acc"}  # model selection: prefix -> its criterion


def validation_numbers(net: SeedEnsemble, data: SeedData) -> dict[str, list[float]]:
    """The validation split's accuracy per seed: the worst (label, colour) group's (model selection with group
    labels) and the worst class's (without)."""
    from spuriouslab.data.coloured import group_metrics

    assert data.val_x is not None and data.val_y is not None and data.val_c is not None
    correct = (evaluate(net, data.val_x).argmax(-1) == data.val_y).cpu().numpy()
    y, c = data.val_y.cpu().numpy(), data.val_c.cpu().numpy()
    out: dict[str, list[float]] = {"val_worst_group_acc": [], "val_worst_class_acc": [], "val_acc": []}
    for i in range(len(y)):
        out["val_worst_group_acc"].append(group_metrics(correct[i], y[i], c[i])["worst_group_acc"])
        classes = [float(correct[i][y[i] == k].mean()) for k in (0, 1) if (y[i] == k).any()]
        out["val_worst_class_acc"].append(min(classes))
        out["val_acc"].append(float(correct[i].mean()))
    return out


def selected(history: dict[str, list[Any]]) -> dict[str, list[float]]:
    """Model selection as the spurious-correlation literature does it, per seed: the logged checkpoint with the
    highest worst-group validation accuracy (``sel_wg_*``, group labels) and the one with the highest worst-class
    validation accuracy (``sel_wc_*``, none), the earliest on ties, with its step (``sel_wg_step``) and its
    coloured numbers (:data:`SELECTED`); and the last checkpoint's validation numbers.  (``dfr``'s re-fitted
    model is the one model there is: the caller puts its numbers in the selection columns.)"""
    out: dict[str, list[float]] = {k: list(history[k][-1]) for k in ("val_worst_group_acc", "val_worst_class_acc")}
    seeds = len(history["val_acc"][0])
    for prefix, criterion in RULES.items():
        scores = history[criterion]
        best = [_best(scores, i) for i in range(seeds)]
        out[f"sel_{prefix}_step"] = [float(history["step"][t]) for t in best]
        for k in SELECTED:
            out[f"sel_{prefix}_{k}"] = [history[k][t][i] for i, t in enumerate(best)]
    return out


def _best(scores: list[list[float]], i: int) -> int:
    """The logged step (its index) where seed ``i``'s score is highest, the earliest on ties (NaN never wins)."""
    values = [-math.inf if math.isnan(v[i]) else v[i] for v in scores]
    return values.index(max(values))


def group_counts(data: SeedData, i: int) -> dict[str, int]:
    """Seed ``i``'s (label, colour) group counts of the training, validation and independent test splits
    (``count_train_y0_c1`` ...), printed by every report beside the averages."""
    out = {}
    indep = None if data.colours is None else data.colours["indep"].to(data.test_y.device)
    splits = (("train", data.train_y, data.train_c), ("val", data.val_y, data.val_c), ("indep", data.test_y, indep))
    for split, y, c in splits:
        if y is None or c is None:
            continue
        for gy in (0, 1):
            for gc in (0, 1):
                out[f"count_{split}_y{gy}_c{gc}"] = int(((y[i] == gy) & (c[i] == gc)).sum())
    return out


def jtt_identify(
    cfg: MemorizationNNConfig, model_name: str, data: SeedData, seeds: list[int], key: str, ctx: RunContext
) -> tuple[torch.Tensor, list[str]]:
    """JTT's first stage: a model trained by ERM for ``jtt_epochs`` (its own checkpoints under ``key``), its
    misclassified training samples upweighted by ``jtt_up`` (:func:`~spuriouslab.nets.remedies.jtt_weights`).
    Returns the weights (S, N) and the checkpoint keys to discard."""
    plain = replace(data, train_w=None)
    first = train_phases(
        cfg, model_name, plain, seeds, "none", key, ctx, lengths={"task": cfg.jtt_identification_epochs()}
    )
    errors = evaluate(first.model, data.train_x).argmax(-1) != data.train_y
    return jtt_weights(errors, cfg.jtt_up).to(data.train_x.device), first.keys


def refit_last_layer(cfg: MemorizationNNConfig, net: SeedEnsemble, data: SeedData, key: str, ctx: RunContext) -> str:
    """DFR's second stage: the last layer set to zero and re-fitted alone (:func:`~spuriouslab.nets.phases.
    linear_probing`: every other parameter and the BatchNorm statistics frozen, the network in eval mode) on the
    first half of the validation split, each sample weighted so that every (label, colour) group weighs the same;
    ``dfr_steps`` full-batch Adam steps (lr 0.01), checkpointed under ``key`` (returned, to discard)."""
    assert data.val_x is not None and data.val_y is not None and data.val_c is not None
    half = data.val_y.shape[1] // 2
    x, y = data.val_x[:, :half], data.val_y[:, :half]
    w = balanced_weights(_groups(y, data.val_c[:, :half])).to(x.device)
    with linear_probing(net) as params:
        with torch.no_grad():
            for p in params:
                p.zero_()
        state = TrainState(net, make_optimizer("adam", params, 0.01, 0.0))

        def step(t: int) -> torch.Tensor:
            net.eval()  # the encoder as trained: BatchNorm's running statistics, not the held-out batch's
            return (sample_cross_entropy(net(x), y) * w).mean(dim=1)

        fit(state, step, cfg.dfr_steps, log_every=cfg.dfr_steps, checkpoints=ctx.checkpoints, key=key)
    net.eval()
    return key


def _record(cfg: MemorizationNNConfig, p: dict, phases: Phases, i: int, classes: int, seconds: float) -> dict[str, Any]:
    """Seed ``i``'s record: the task phase's curves and last values, and the divergence fields (a seed that
    diverged in any phase counts as diverged)."""
    state, steps_per_epoch = phases.task, phases.steps_per_epoch["task"]
    rec = dict(p)
    for k in METRICS:
        rec[k] = state.history[k][-1][i]
        rec[f"curve_{k}"] = state.curve(k, i)
    rec["curve_epoch"] = [t // steps_per_epoch for t in state.history["step"]]
    rec.update(
        data=cfg.data,
        epochs=cfg.epochs,
        seconds=seconds,
        n_classes=classes or 2,
        chance=1 / (classes or 2),
        **phases.divergence(i),
    )
    if rec["status"] != "ok":
        rec.update({k: math.nan for k in METRICS})
    return rec
