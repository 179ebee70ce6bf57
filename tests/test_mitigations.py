"""Remedies of contamination (spuriouslab.nets.remedies): each changes what it says and nothing else."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import MemoryCheckpoints, assert_figures, mismatches_across_machines
from spuriouslab.claims import judge
from spuriouslab.experiments import get_experiment, run_points
from spuriouslab.experiments.base import RunContext
from spuriouslab.experiments.contamination import run as contamination_run
from spuriouslab.experiments.memorization_nn import run as mnn_run
from spuriouslab.nets import phases
from spuriouslab.nets.remedies import CoreProjection, and_mask_backward, group_means

FIXTURE = Path(__file__).parent / "fixtures" / "records_before_remedies.json"
# the configs whose records tests/fixtures/records_before_remedies.json holds, written by the code before the
# remedy axis existed (timings left out)
CONFIGS = {
    "contamination": {
        "d": 32,
        "d_core": 4,
        "d_bg": 4,
        "n": 40,
        "n_test": 40,
        "width": 16,
        "iterations": 60,
        "log_every": 20,
        "seeds": 2,
        "activation": ["relu"],
    },
    "distillation": {
        "task": "synthetic",
        "d": 24,
        "d_core": 4,
        "d_bg": 4,
        "n_classes": 3,
        "n": 60,
        "n_test": 30,
        "width": 16,
        "embed": 4,
        "epochs": 20,
        "teacher_epochs": 30,
        "log_every": 10,
        "seeds": 2,
        "activation": ["relu"],
    },
    "memorization-nn": {  # the coloured task: the only place the memorization-nn axis applies
        "data": "digits",
        "border": 1,
        "border_content": "coloured",
        "rho": 0.9,
        "model": ["fc", "cnn"],
        "n_train": [60],
        "n_test": 50,
        "epochs": 6,
        "step_size": 3,
        "log_every": 3,
        "batch_size": 32,
        "seeds": 2,
    },
}


@pytest.mark.parametrize("name", ["contamination", "distillation", "memorization-nn"])
def test_none_reproduces_the_records_written_before_the_remedy_axis(name):
    exp = get_experiment(name)
    records = run_points(exp, exp.make_config({**CONFIGS[name], "remedy": ["none"]}))
    before = json.loads(FIXTURE.read_text())[name]
    assert len(records) == len(before)
    for old, new in zip(before, records, strict=True):
        # the fixture was written on CI's CPU: float32 values compared at its rounding (conftest, K_FLOAT32)
        changed = mismatches_across_machines(old, new)
        assert not changed, f"{name}: {changed[:5]} changed"
        assert new["remedy"] == "none"
    # the comparison sees a change: another seed's record differs in its metrics
    other = mismatches_across_machines(before[0], records[1])
    assert "seed" in other and len(other) > 5, other


def _contamination(remedy: str, checkpoints=None, **values):
    exp = get_experiment("contamination")
    cfg = exp.make_config({**CONFIGS["contamination"], **values, "remedy": [remedy]})
    ctx = RunContext(progress=False, checkpoints=checkpoints)
    return cfg, contamination_run.train_contamination(cfg, [0, 1], "relu", "hinge", "sgd", ctx, "k", remedy)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_the_oracle_projection_leaves_the_background_weight_at_its_initial_value(optimizer):
    """Gradient and update confined to the core subspace: the background projection does not move (weight decay
    and Adam's per-coordinate normalisation included), while the core weight does."""
    exp = get_experiment("contamination")
    cfg = exp.make_config({**CONFIGS["contamination"], "weight_decay": 0.05, "lr": 0.05})
    task = contamination_run.make_task([0], cfg.d, cfg.d_core, cfg.d_bg, cfg.n, cfg.n_test, cfg.core, cfg.ood)
    W = torch.nn.Parameter(torch.randn(1, 16, cfg.d))
    B = task.T[:, : cfg.d_core]
    bg = lambda: torch.bmm(W.detach(), task.T[:, cfg.d_core :].transpose(1, 2))  # noqa: E731
    core = lambda: torch.bmm(W.detach(), B.transpose(1, 2))  # noqa: E731
    bg0, core0 = bg().clone(), core().clone()
    opt = contamination_run.make_optimizer(optimizer, [W], 0.05, 0.05, 0.9)
    oracle = CoreProjection(W, B)
    x = torch.bmm(task.train.z, task.T)
    for _ in range(20):
        opt.zero_grad()
        torch.relu(torch.bmm(x, W.transpose(1, 2))).sum().backward()
        oracle.before_step()
        opt.step()
        oracle.after_step()
    assert torch.allclose(bg(), bg0, atol=1e-5)
    assert (core() - core0).abs().max() > 1e-2


def test_the_oracle_in_the_experiments_keeps_the_background_norm():
    _, trained = _contamination("project-oracle")
    for rec in trained.records:
        assert rec["bg_norm"] == pytest.approx(rec["bg_norm_init"], rel=1e-5)
        assert max(rec["curve_bg_norm"]) == pytest.approx(min(rec["curve_bg_norm"]), rel=1e-5)
        assert rec["core_norm"] != pytest.approx(rec["core_norm_init"], rel=1e-3)
    exp = get_experiment("distillation")
    rec = run_points(exp, exp.make_config({**CONFIGS["distillation"], "remedy": ["project-oracle"]}))[0]
    assert rec["student_bg_growth"] == pytest.approx(1.0, rel=1e-5)


def test_lp_ft_probing_leaves_the_encoder_unchanged_and_trains_the_head():
    memory = MemoryCheckpoints()
    _contamination("lp-ft", memory)
    pre, probe = memory.saved["k-pretrain"]["model"], memory.saved["k-lp"]["model"]
    assert torch.equal(pre["weights.0"], probe["weights.0"]) and torch.equal(pre["biases.0"], probe["biases.0"])
    assert not torch.equal(pre["weights.1"], probe["weights.1"])  # the head moved, though freeze_output=true
    task = memory.saved["k"]["model"]
    assert not torch.equal(task["weights.0"], probe["weights.0"])  # fine-tuning moves the encoder


def _count_steps(monkeypatch, module) -> dict[str, int]:
    """The steps each checkpoint key's phase takes from now on, counted through ``module.fit`` (the trainer)."""
    calls: dict[str, int] = {}
    real = module.fit

    def counting(state, step, steps, **kw):
        name = kw.get("key")

        def counted(t):
            calls[name] = calls.get(name, 0) + 1
            return step(t)

        return real(state, counted, steps, **kw)

    monkeypatch.setattr(module, "fit", counting)
    return calls


def test_pretraining_is_reused_on_resume(monkeypatch):
    memory = MemoryCheckpoints()
    _, first = _contamination("pretrain", memory)
    del memory.saved["k"]  # killed after pre-training: the task phase starts again, pre-training does not
    calls = _count_steps(monkeypatch, phases)
    _, again = _contamination("pretrain", memory)
    assert calls.get("k-pretrain", 0) == 0 and calls["k"] == CONFIGS["contamination"]["iterations"]
    for a, b in zip(first.records, again.records, strict=True):
        assert a["bg_norm"] == b["bg_norm"] and a["curve_bg_norm"] == b["curve_bg_norm"]


def _coloured(remedy: str, model: str, checkpoints, seeds=(0, 1), **values):
    exp = get_experiment("memorization-nn")
    cfg = exp.make_config({**CONFIGS["memorization-nn"], **values, "model": [model], "remedy": [remedy]})
    data = mnn_run.stacked(cfg, list(seeds), 60, "cpu", pretrain=remedy in ("pretrain", "lp-ft"))
    ctx = RunContext(progress=False, checkpoints=checkpoints)
    return data, mnn_run.train_phases(cfg, model, data, list(seeds), remedy, "k", ctx)


@pytest.mark.parametrize("model, head, seeds", [("cnn", "params.net__9__", (0, 1)), ("resnet", "model.head.", (0,))])
def test_coloured_lp_ft_probing_leaves_the_encoder_and_its_batchnorm_statistics_unchanged(model, head, seeds):
    """The CNN (seeds stacked) and the ResNet (BatchNorm, one seed): between the end of pre-training and the end
    of probing only the head moves - parameters and running statistics of the encoder stay bit-identical."""
    memory = MemoryCheckpoints()
    _coloured("lp-ft", model, memory, seeds, resnet_depth=8)
    pre, probe, task = (memory.saved[k]["model"] for k in ("k-pretrain", "k-lp", "k"))
    encoder = [k for k in pre if not k.startswith(head) and not k.endswith("num_batches_tracked")]
    assert any("running_mean" in k for k in encoder) == (model == "resnet")
    assert all(torch.equal(pre[k], probe[k]) for k in encoder)
    assert not all(torch.equal(pre[k], probe[k]) for k in pre if k.startswith(head))
    assert not all(torch.equal(probe[k], task[k]) for k in encoder)  # fine-tuning moves the encoder


def test_coloured_pretraining_images_keep_the_cores_and_paint_each_border_a_random_colour():
    exp = get_experiment("memorization-nn")
    cfg = exp.make_config({**CONFIGS["memorization-nn"], "remedy": ["pretrain"]})
    data = mnn_run.seed_data(cfg, 0, 60, pretrain=True)
    plain = mnn_run.seed_data(cfg, 0, 60)
    assert plain.pretrain_x is None and torch.equal(plain.train_x, data.train_x)  # the task's images unchanged
    x, pre = data.train_x, data.pretrain_x
    assert torch.equal(x[:, :, 1:-1, 1:-1], pre[:, :, 1:-1, 1:-1])  # same cores
    border = torch.cat([pre[:, :, 0, :], pre[:, :, -1, :], pre[:, :, :, 0], pre[:, :, :, -1]], dim=2)  # (N, 3, .)
    assert torch.equal(border, border[:, :, :1].expand_as(border))  # one colour per image
    colours = border[:, :, 0]
    assert len(torch.unique(colours, dim=0)) == 60  # every image its own colour
    for y in (0, 1):  # independent of the label: both classes span the colour cube
        c = colours[data.train_y == y]
        assert c.min() < 0.25 and c.max() > 0.75


def test_coloured_pretraining_is_reused_on_resume(monkeypatch):
    memory = MemoryCheckpoints()
    _coloured("pretrain", "cnn", memory)
    first = copy.deepcopy(memory.saved["k"]["model"])
    del memory.saved["k"]  # killed after pre-training: the task phase starts again, pre-training does not
    calls = _count_steps(monkeypatch, phases)
    _coloured("pretrain", "cnn", memory)
    assert calls.get("k-pretrain", 0) == 0 and calls["k"] == 6 * 2  # 6 epochs of 2 batches
    assert all(torch.equal(first[k], v) for k, v in memory.saved["k"]["model"].items())


def test_and_mask_keeps_agreeing_components_and_is_the_gradient_when_environments_agree():
    w = torch.nn.Parameter(torch.tensor([[1.0, 2.0, 3.0]]))
    x = torch.tensor([[1.0, 2.0, 0.5], [3.0, -1.0, 0.5]])  # class 0 and class 1
    losses = (x * w).sum(dim=1, keepdim=True)  # (2 environments, 1 seed)
    and_mask_backward([w], tau=1.0)(losses)
    assert w.grad.tolist() == [[2.0, 0.0, 0.5]]  # coordinate 1 disagrees in sign: masked
    w.grad = None
    same = torch.tensor([[1.0, 2.0, 0.5], [3.0, 1.0, 0.5]])
    loss = and_mask_backward([w], tau=1.0)((same * w).sum(dim=1, keepdim=True))
    assert torch.allclose(w.grad, same.mean(dim=0, keepdim=True)) and loss.shape == (1,)
    groups = group_means(torch.tensor([[1.0, 3.0, 5.0]]), torch.tensor([[0, 1, 1]]), 3)
    assert groups[:, 0].tolist() == [1.0, 4.0, 0.0]  # an empty class gives 0


def test_every_remedy_runs_from_the_cli_with_its_comparison_figure_and_verdicts(cli, tmp_path):
    small = CONFIGS["contamination"]
    sets = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in small.items()]
    args = [a for s in sets for a in ("--set", s)]
    code, out, err = cli(
        "run", "contamination", *args, "--set", "remedy=none,pretrain,lp-ft,project-oracle,and-mask",
        "--out", tmp_path / "c", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert_figures(tmp_path / "c", "remedies")
    summary = (tmp_path / "c" / "summary.md").read_text()
    for name in ["pretrain", "lp-ft", "project-oracle", "and-mask"]:
        assert f"{name} lowers a ReLU net's background-weight growth (vs no remedy)" in summary
    df = pd.read_parquet(tmp_path / "c" / "results.parquet")
    assert sorted(df.remedy.unique()) == ["and-mask", "lp-ft", "none", "pretrain", "project-oracle"]
    remedies = [c for c in get_experiment("contamination").claims if c.when.get("remedy", "none") != "none"]
    assert len(remedies) == 16
    for claim in remedies:  # every remedy's claims are measured on both seeds, paired with none's
        v = judge(claim, df)
        assert v.applicable and v.n == 2 and v.paired and math.isfinite(v.effect), (claim.text, v)
    lp = df[df.remedy == "lp-ft"].iloc[0]
    assert lp.pretrain_steps == 60 and lp.lp_steps == 15 and df[df.remedy == "none"].pretrain_steps.max() == 0

    small = CONFIGS["distillation"]
    sets = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in small.items()]
    args = [a for s in sets for a in ("--set", s)]
    code, out, err = cli(
        "run", "distillation", *args, "--set", "remedy=none,lp-ft,and-mask", "--out", tmp_path / "d",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert_figures(tmp_path / "d", "remedies")
    assert "lp-ft raises the ReLU student's OOD accuracy (vs no remedy)" in (tmp_path / "d" / "summary.md").read_text()
    assert not list((tmp_path / "d").rglob("*student*.pt")), "the student's phase checkpoints are discarded"

    small = CONFIGS["memorization-nn"]
    sets = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in small.items() if k != "model"]
    args = [a for s in sets for a in ("--set", s)]
    code, out, err = cli(
        "run", "memorization-nn", *args, "--set", "model=cnn", "--set", "remedy=none,pretrain,lp-ft,and-mask",
        "--out", tmp_path / "m", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert_figures(tmp_path / "m", "remedies")
    assert (
        "and-mask raises worst-group accuracy on the coloured task (vs no remedy)"
        in (tmp_path / "m" / "summary.md").read_text()
    )
    df = pd.read_parquet(tmp_path / "m" / "results.parquet")
    trained = {"pretrain", "lp-ft", "and-mask"}  # the group remedies' claims: tests/test_thesis.py
    remedies = [
        c
        for c in get_experiment("memorization-nn").claims
        if c.when.get("remedy", "none") in trained and "rho" not in c.when
    ]
    assert len(remedies) == 18
    for claim in remedies:
        v = judge(claim, df)
        assert v.applicable and v.n == 2 and v.paired and math.isfinite(v.effect), (claim.text, v)
    lp = df[df.remedy == "lp-ft"].iloc[0]
    assert lp.pretrain_epochs == 6 and lp.lp_epochs == 1 and df[df.remedy == "none"].pretrain_epochs.max() == 0
    masked, plain = df[df.remedy == "and-mask"], df[df.remedy == "none"]
    assert not (masked.train_loss.to_numpy() == plain.train_loss.to_numpy()).all()  # the mask changed training
    assert not list((tmp_path / "m").rglob("*.pt")), "every phase's checkpoint is discarded"


@pytest.mark.parametrize(
    "experiment, sets, message",
    [
        ("contamination", ["remedy=retrain"], "remedy"),
        ("distillation", ["task=digits-background", "remedy=project-oracle"], "core subspace"),
        ("contamination", ["and_mask_tau=0"], "and_mask_tau"),
        ("memorization-nn", ["remedy=pretrain"], "coloured task"),
        ("memorization-nn", ["border_content=coloured", "remedy=project-oracle"], "core subspace"),
    ],
)
def test_bad_remedies_are_one_line_errors(cli, tmp_path, experiment, sets, message):
    args = [a for s in sets for a in ("--set", s)]
    code, out, err = cli("run", experiment, *args, "--out", tmp_path / "x", "--no-progress")
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_explicit_phase_lengths_and_pretraining_width_are_what_the_records_and_data_say(cli, tmp_path):
    """The phase settings the defaults hide: explicit pre-training / probing lengths reach the records, and
    ``pretrain_background=b`` draws the pre-training backgrounds from U[-b, b] (zero mean, reaching both ends)."""
    exp = get_experiment("contamination")
    cfg = exp.make_config(
        {**CONFIGS["contamination"], "remedy": ["lp-ft", "and-mask"], "pretrain_iterations": 7, "lp_iterations": 3}
    )
    assert cfg.phase_steps("lp-ft") == {"pretrain": 7, "lp": 3, "task": 60}
    assert cfg.phase_steps("and-mask") == {"task": 60}
    distillation = {**CONFIGS["distillation"], "remedy": ["lp-ft"], "lp_epochs": 2}
    assert get_experiment("distillation").make_config(distillation).phase_epochs("lp-ft") == {
        "pretrain": 20,
        "lp": 2,
        "task": 20,
    }
    task = contamination_run.make_task([0, 1], cfg.d, cfg.d_core, cfg.d_bg, cfg.n, cfg.n_test, cfg.core, cfg.ood)
    from spuriouslab.data.contamination import pretrain_task

    bg = pretrain_task(task, [0, 1], 4000, cfg.core, 3.0).train.z[..., cfg.d_core :]
    assert bg.min() >= -3.0 and bg.max() <= 3.0 and bg.min() < -2.9 and bg.max() > 2.9
    assert abs(float(bg.mean())) < 0.05
    assert torch.equal(task.train.z, contamination_run.make_task([0, 1], cfg.d, cfg.d_core, cfg.d_bg, cfg.n,
                                                                  cfg.n_test, cfg.core, cfg.ood).train.z)  # fmt: skip

    small = CONFIGS["memorization-nn"]
    sets = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in small.items() if k != "model"]
    args = [a for s in sets for a in ("--set", s)]
    code, out, err = cli(
        "run", "memorization-nn", *args, "--set", "model=fc", "--set", "remedy=lp-ft", "--set", "pretrain_epochs=2",
        "--set", "lp_epochs=4", "--out", tmp_path / "m", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "m" / "results.parquet")
    assert df.pretrain_epochs.tolist() == [2, 2] and df.lp_epochs.tolist() == [4, 4] and df.epochs.tolist() == [6, 6]
