"""The phased trainer (spuriouslab.nets.phases): order and lengths per remedy, linear probing trains only the head,
the remedies' hooks, divergence in any phase, resume per phase, and one way to find a model's head."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from conftest import MemoryCheckpoints
from spuriouslab.experiments import get_experiment, run_points
from spuriouslab.nets import phases as phases_module
from spuriouslab.nets.mlp import StackedMLP
from spuriouslab.nets.models import MODELS, Classifier, Projected, SeedEnsemble, build_model, head_parameters
from spuriouslab.nets.phases import Phase, run_phases
from spuriouslab.nets.remedies import REMEDIES, Adjustment, Oracle, RemedySpec, group_means
from spuriouslab.nets.train import TrainState, seeded
from spuriouslab.seeding import torch_generator


def _toy(seeds: int = 2, generator_seed: int = 0):
    """Two seeds of a two-layer MLP (stacked) on a fixed regression problem, and a recipe (SGD, full batch) that
    logs every call it gets."""
    gens = [torch.Generator().manual_seed(generator_seed + s) for s in range(seeds)]
    model = StackedMLP(gens, 6, 8, activation="relu", freeze_output=False)
    x = torch.randn(seeds, 16, 6, generator=torch.Generator().manual_seed(99))
    y = torch.sign(x[..., 0])
    calls: list[tuple[str, int, bool, int]] = []

    def recipe(phase, params, length, groups):
        calls.append((phase, length, groups, len(params)))
        state = TrainState(model, torch.optim.SGD(params, lr=0.05))

        def step(t):
            f = model(x)
            if groups:
                return group_means((f - y) ** 2, (y > 0).long(), 2)
            return ((f - y) ** 2).mean(dim=1)

        return Phase(state, step, length, log_every=2)

    return model, recipe, calls


@pytest.mark.parametrize("remedy", list(REMEDIES))
def test_phases_run_in_order_with_their_lengths_and_keys(remedy):
    model, recipe, calls = _toy()
    lengths = REMEDIES[remedy].phases(8, 6, 3)
    oracle = Oracle(model.weights[0], torch.eye(6)[None, :2].expand(2, -1, -1).contiguous())
    done = run_phases(model, remedy, lengths, recipe, key="k", oracle=oracle)
    assert list(done.states) == [p for p in ("pretrain", "lp", "task") if p in lengths] == list(lengths)
    assert [c[:2] for c in calls] == list(lengths.items())
    assert all(done.states[p].step == n for p, n in lengths.items())
    assert sorted(done.keys) == sorted("k" if p == "task" else f"k-{p}" for p in lengths)
    assert done.task is done.states["task"] and done.first is next(iter(done.states.values()))
    with pytest.raises(ValueError, match="runs the phases"):
        run_phases(model, remedy, {"task": 3, "lp": 2, "pretrain": 1, "extra": 1}, recipe)


def _bn_model() -> SeedEnsemble:
    def make(s):
        torch.manual_seed(s)
        return torch.nn.Sequential(
            torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5), torch.nn.ReLU(), torch.nn.Linear(5, 3)
        )

    return SeedEnsemble(make, [0])


def test_linear_probing_trains_only_the_head_and_keeps_batchnorm_statistics():
    net = _bn_model()
    x, y = torch.randn(1, 32, 4), torch.randint(3, (1, 32))
    snapshots: dict[str, dict[str, torch.Tensor]] = {}

    def recipe(phase, params, length, groups):
        snapshots[phase] = copy.deepcopy(net.state_dict())  # the weights as the phase before left them
        if phase == "lp":
            assert {id(p) for p in params} == {id(p) for p in head_parameters(net)}
        state = TrainState(net, torch.optim.SGD(params, lr=0.1))
        step = lambda t: torch.nn.functional.cross_entropy(net(x)[0], y[0])[None]  # noqa: E731
        return Phase(state, step, length, log_every=length)

    run_phases(net, "lp-ft", {"pretrain": 3, "lp": 3, "task": 3}, recipe)
    before, after = snapshots["lp"], snapshots["task"]
    head = {"model.3.weight", "model.3.bias"}
    body = [k for k in before if k not in head and not k.endswith("num_batches_tracked")]
    assert any("running_mean" in k for k in body)
    assert all(torch.equal(before[k], after[k]) for k in body)  # bit-identical, statistics included
    assert not all(torch.equal(before[k], after[k]) for k in head)
    assert not torch.equal(snapshots["pretrain"]["model.1.running_mean"], before["model.1.running_mean"])
    assert all(p.requires_grad for p in net.parameters())  # the flags are restored after probing
    assert net.model[1].momentum == 0.1


def test_lp_makes_a_frozen_head_trainable():
    gens = [torch.Generator().manual_seed(s) for s in range(2)]
    model = StackedMLP(gens, 6, 8, freeze_output=True)
    assert not any(p.requires_grad for p in head_parameters(model))
    head0 = [p.detach().clone() for p in head_parameters(model)]
    x = torch.randn(2, 10, 6)

    def on_model(phase, params, length, groups):
        state = TrainState(model, torch.optim.SGD(params, lr=0.1))
        return Phase(state, lambda t: (model(x) ** 2).mean(dim=1), length, log_every=length)

    run_phases(model, "lp-ft", {"pretrain": 2, "lp": 2, "task": 2}, on_model)
    assert all(not torch.equal(a, b) for a, b in zip(head0, head_parameters(model), strict=True))


def test_project_oracle_leaves_the_background_weight_unchanged():
    model, recipe, _ = _toy()
    core = torch.eye(6)[None, :2].expand(2, -1, -1).contiguous()
    bg = lambda: model.weights[0].detach()[..., 2:].clone()  # noqa: E731 - the weight off the core coordinates
    core_w = lambda: model.weights[0].detach()[..., :2].clone()  # noqa: E731
    bg0, core0 = bg(), core_w()
    run_phases(model, "project-oracle", {"task": 10}, recipe, oracle=Oracle(model.weights[0], core))
    assert torch.equal(bg(), bg0) and not torch.equal(core_w(), core0)
    with pytest.raises(ValueError, match="core subspace"):
        run_phases(model, "project-oracle", {"task": 2}, recipe)  # no oracle: refused


def test_and_mask_steps_give_per_group_losses_in_the_task_phase_only(monkeypatch):
    model, recipe, calls = _toy()
    seen = []
    real = REMEDIES["and-mask"].adjust
    assert real is not None

    def spy(ctx):
        adjust = real(ctx)
        assert adjust.backward is not None

        def backward(losses):
            seen.append(tuple(losses.shape))
            return adjust.backward(losses)

        return Adjustment(backward=backward, groups=adjust.groups)

    monkeypatch.setitem(REMEDIES, "and-mask", RemedySpec("spied", adjust=spy))
    run_phases(model, "and-mask", {"task": 4}, recipe)
    assert calls == [("task", 4, "class", 4)] and seen == [(2, 2)] * 4  # (classes, seeds), every step


def test_a_new_remedy_is_one_entry_and_its_hook_runs_before_the_recipes(monkeypatch):
    model, recipe, _ = _toy()
    order: list[str] = []

    def adjust(ctx):
        assert ctx.tau == 0.5 and all(p.requires_grad for p in ctx.params)
        return Adjustment(before_step=lambda: order.append("remedy"), after_step=lambda: order.append("after"))

    def clipped(phase, params, length, groups):
        out = recipe(phase, params, length, groups)
        out.before_step = lambda: order.append("recipe")
        return out

    monkeypatch.setitem(REMEDIES, "mine", RemedySpec("a test remedy", pretrain=True, adjust=adjust))
    done = run_phases(model, "mine", REMEDIES["mine"].phases(2), clipped, and_mask_tau=0.5)
    assert list(done.states) == ["pretrain", "task"]
    assert order == ["recipe", "recipe"] + ["remedy", "recipe", "after"] * 2  # pre-training has no remedy hooks


def test_a_resumed_run_skips_finished_phases():
    memory = MemoryCheckpoints()
    model, recipe, _ = _toy()
    lengths = {"pretrain": 6, "lp": 4, "task": 6}
    first = run_phases(model, "lp-ft", lengths, recipe, checkpoints=memory, key="k")
    del memory.saved["k"]  # killed after probing
    counts: dict[str, int] = {}
    model2, recipe2, _ = _toy()

    def counting(phase, params, length, groups):
        out = recipe2(phase, params, length, groups)
        step = out.step

        def counted(t):
            counts[phase] = counts.get(phase, 0) + 1
            return step(t)

        out.step = counted
        return out

    again = run_phases(model2, "lp-ft", lengths, counting, checkpoints=memory, key="k")
    assert counts == {"task": 6}
    assert torch.equal(model.weights[0], model2.weights[0])
    assert again.task.history == first.task.history and again.first.history == first.first.history


def test_divergence_in_any_phase_counts_and_names_the_phase_step():
    model, recipe, _ = _toy()

    def blow_up(phase, params, length, groups):
        out = recipe(phase, params, length, groups)
        if phase == "lp":
            step = out.step
            out.step = lambda t: step(t) + torch.tensor([math.inf if t == 3 else 0.0, 0.0])
        return out

    done = run_phases(model, "lp-ft", {"pretrain": 4, "lp": 4, "task": 4}, blow_up)
    assert done.diverged(0) and not done.diverged(1)
    assert done.divergence(0)["status"] == "diverged" and done.divergence(0)["diverged_at"] == 4  # logged at 4
    assert done.divergence(1) == {"status": "ok", "diverged_at": None, "error": ""}


# every trained experiment: a seed that diverges in pre-training only is a diverged seed in its record
TINY = {
    "contamination": {
        "d": 32, "d_core": 4, "d_bg": 4, "n": 30, "n_test": 30, "width": 8, "iterations": 10, "log_every": 5,
        "seeds": 2, "activation": ["relu"], "remedy": ["pretrain"],
    },
    "distillation": {
        "task": "synthetic", "d": 16, "d_core": 4, "d_bg": 4, "n_classes": 3, "n": 30, "n_test": 20, "width": 8,
        "embed": 4, "epochs": 4, "teacher_epochs": 4, "log_every": 2, "seeds": 2, "activation": ["relu"],
        "remedy": ["pretrain"],
    },
    "memorization-nn": {
        "data": "digits", "border": 1, "border_content": "coloured", "rho": 0.9, "model": ["fc"], "n_train": [40],
        "n_test": 20, "epochs": 2, "log_every": 1, "batch_size": 20, "seeds": 2, "remedy": ["pretrain"],
    },
}  # fmt: skip
RUN_MODULES = {
    "contamination": "spuriouslab.experiments.contamination.run",
    "distillation": "spuriouslab.experiments.distillation.run",
    "memorization-nn": "spuriouslab.experiments.memorization_nn.run",
}


@pytest.mark.parametrize("name", list(TINY))
def test_divergence_in_pretraining_marks_the_seed_diverged_in_the_record(name, monkeypatch):
    import importlib

    module = importlib.import_module(RUN_MODULES[name])
    real = module.run_phases

    def diverging(model, remedy, lengths, recipe, **kw):
        def bad(phase, params, length, groups):
            out = recipe(phase, params, length, groups)
            if phase == "pretrain":  # seed 0's pre-training loss is infinite (its gradients are not touched)
                step = out.step
                out.step = lambda t: step(t) + torch.tensor([math.inf, 0.0], device=model_device(model))
            return out

        return real(model, remedy, lengths, bad, **kw)

    monkeypatch.setattr(module, "run_phases", diverging)
    exp = get_experiment(name)
    records = run_points(exp, exp.make_config(TINY[name]))
    by_seed = {r["seed"]: r for r in records}
    assert by_seed[0]["status"] == "diverged" and by_seed[0]["diverged_at"] is not None
    assert by_seed[1]["status"] == "ok"


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


# ------------------------------------------------------------------------------------------- heads
def test_head_parameters_of_the_stacked_mlp():
    gens = [torch.Generator().manual_seed(s) for s in range(3)]
    mlp = StackedMLP(gens, 5, 4, depth=3)
    assert [id(p) for p in head_parameters(mlp)] == [id(mlp.weights[2]), id(mlp.biases[2])]
    plain = StackedMLP(gens, 5, 4, bias=False)
    assert [id(p) for p in head_parameters(plain)] == [id(plain.weights[1])]


@pytest.mark.parametrize(
    "name, shape, head",
    [
        ("fc", (1, 8, 8), "net.5."),
        ("cnn", (1, 8, 8), "net.9."),
        ("vit", (1, 8, 8), "head."),
        ("resnet", (3, 8, 8), "head."),
        ("mlp-encoder", (1, 1, 12), "second."),
        ("cnn-encoder", (1, 8, 8), "net.7."),
        ("vit-encoder", (1, 8, 8), "head."),
    ],
)
def test_head_parameters_of_every_registry_model_alone_and_in_a_seed_ensemble(name, shape, head):
    assert name in MODELS
    options = {"depth": 8} if name == "resnet" else {}
    model = build_model(name, shape, 3, **options)
    names = {id(p): k for k, p in model.named_parameters()}
    got = [names[id(p)] for p in head_parameters(model)]
    assert got == [head + "weight", head + "bias"]
    make = lambda s: seeded(lambda: build_model(name, shape, 3, **options), torch_generator(s, 1))  # noqa: E731
    ens = SeedEnsemble(make, [0] if MODELS[name].batchnorm else [0, 1])
    assert ens.stacked == (not MODELS[name].batchnorm)
    ens_names = {id(p): k for k, p in ens.named_parameters()}
    prefix = "model." if not ens.stacked else "params."
    expect = [prefix + (head + k).replace(".", "__" if ens.stacked else ".") for k in ("weight", "bias")]
    assert [ens_names[id(p)] for p in head_parameters(ens)] == expect


def test_head_parameters_of_wrapped_and_user_encoders():
    enc = build_model("mlp-encoder", (1, 1, 6), 4)
    clf = Classifier(enc, 4, 3)
    assert head_parameters(clf) == list(clf.head.parameters())
    proj = Projected(build_model("mlp-encoder", (1, 1, 6), 4), torch.eye(6))
    assert head_parameters(proj) == list(proj.encoder.second.parameters())
    user = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2), torch.nn.Tanh())
    assert head_parameters(user) == list(user[2].parameters())  # any module: its last linear layer
    with pytest.raises(ValueError, match="no linear layer"):
        head_parameters(torch.nn.Conv2d(1, 1, 3))


def test_the_cnn_and_its_encoder_are_one_conv_stack():
    cnn, enc = build_model("cnn", (3, 12, 12), 10), build_model("cnn-encoder", (3, 12, 12), 7)
    assert type(cnn) is type(enc)
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(cnn) == {
        "net.0.weight": (16, 3, 3, 3), "net.0.bias": (16,), "net.3.weight": (32, 16, 3, 3), "net.3.bias": (32,),
        "net.7.weight": (256, 288), "net.7.bias": (256,), "net.9.weight": (10, 256), "net.9.bias": (10,),
    }  # fmt: skip
    assert shapes(enc) == {
        "net.0.weight": (16, 3, 3, 3), "net.0.bias": (16,), "net.3.weight": (32, 16, 3, 3), "net.3.bias": (32,),
        "net.7.weight": (7, 288), "net.7.bias": (7,),
    }  # fmt: skip


def test_the_phases_module_is_what_the_experiments_call():
    import importlib

    for path in RUN_MODULES.values():
        assert importlib.import_module(path).run_phases is phases_module.run_phases
