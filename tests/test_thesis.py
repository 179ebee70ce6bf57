"""The contamination paper's thesis on the coloured task: the ``novel`` test set, the spurious-correlation remedies
(reweighting, GroupDRO, JTT, DFR) each against a hand-computed case, model selection by validation, bad
combinations in one line, and a tiny CLI sweep that ends with the failure-mode x remedy figure and the verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spuriouslab.nets.remedies import REMEDIES, GroupDROBackward, balanced_weights, jtt_weights

TINY = {
    "preset": "quick",
    "data": "digits",
    "border": 1,
    "border_content": "coloured",
    "rho": 0.9,
    "model": ["cnn"],
    "n_train": [120],
    "n_val": 40,
    "n_test": 60,
    "epochs": 4,
    "step_size": 2,
    "log_every": 1,
    "batch_size": 64,
    "seeds": 2,
}


def test_reweighting_gives_every_group_the_same_total_weight():
    """A constructed group table: groups 0, 0, 0, 1, 2, 2 (N = 6, G = 3) -> N / (G N_g) = 2/3, 2, 1; each group's
    weights sum to N / G = 2 and their mean is 1.  A row with an absent group counts only the groups present."""
    w = balanced_weights(torch.tensor([[0, 0, 0, 1, 2, 2]]))[0]
    assert w.tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2.0, 1.0, 1.0])
    assert float(w.mean()) == pytest.approx(1.0)
    w = balanced_weights(torch.tensor([[0, 0, 3, 3], [0, 1, 2, 3]]))
    assert w[0].tolist() == pytest.approx([1.0] * 4) and w[1].tolist() == pytest.approx([1.0] * 4)


def test_groupdro_moves_its_weights_towards_the_worst_group():
    """Two groups, losses 1 and 3 (constant): q_1 grows every step as e^(3 eta t) / (e^(eta t) + e^(3 eta t)),
    and the gradient reaching the parameter is the q-weighted one."""
    backward = GroupDROBackward(0.5)
    w = torch.nn.Parameter(torch.ones(2, 1))
    seen = []
    for t in range(1, 5):
        w.grad = None
        backward(w * torch.tensor([[1.0], [3.0]]))
        q = backward.q
        assert q is not None
        seen.append(float(q[1, 0]))
        expected = math.exp(1.5 * t) / (math.exp(0.5 * t) + math.exp(1.5 * t))
        assert seen[-1] == pytest.approx(expected)
        assert w.grad[:, 0].tolist() == pytest.approx([float(q[0, 0]) * 1.0, float(q[1, 0]) * 3.0])
    assert seen == sorted(seen) and seen[-1] > 0.95


def test_jtt_upweights_exactly_the_first_stage_errors():
    """The weights are up for an error and 1 otherwise, rescaled to mean 1; and in a run, the samples upweighted
    are exactly those the identification model (trained again the same way: the same seeds) gets wrong."""
    w = jtt_weights(torch.tensor([[True, False, True, False, False]]), 6.0)[0]
    assert w.tolist() == pytest.approx([2.0, 1 / 3, 2.0, 1 / 3, 1 / 3])  # (6, 1, 6, 1, 1) / mean 3

    from spuriouslab.experiments import get_experiment
    from spuriouslab.experiments.base import RunContext
    from spuriouslab.experiments.memorization_nn.run import jtt_identify, stacked, train_phases
    from spuriouslab.nets.train import evaluate

    cfg = get_experiment("memorization-nn").make_config({**TINY, "remedy": ["jtt"], "jtt_epochs": 2, "jtt_up": 5})
    data = stacked(cfg, [0, 1], 120, "cpu")
    ctx = RunContext(progress=False)
    weights, _ = jtt_identify(cfg, "cnn", data, [0, 1], "k", ctx)
    again = train_phases(cfg, "cnn", data, [0, 1], "none", "k2", ctx, lengths={"task": 2})
    errors = evaluate(again.model, data.train_x).argmax(-1) != data.train_y
    assert errors.any()
    for i in range(2):
        high = weights[i] > weights[i].min() + 1e-6
        assert torch.equal(high, errors[i])
        assert float(weights[i][high][0] / weights[i][~high][0]) == pytest.approx(5.0)


def test_dfr_refits_only_the_last_layer_on_the_balanced_held_out_half():
    """The encoder is bit-identical after DFR, the head changed; the head depends on the first half of the
    validation split only (changing the second half, or the training images, leaves it bit-identical)."""
    import copy

    from spuriouslab.experiments import get_experiment
    from spuriouslab.experiments.base import RunContext
    from spuriouslab.experiments.memorization_nn.run import refit_last_layer, stacked, train_phases
    from spuriouslab.nets.models import head_parameters

    cfg = get_experiment("memorization-nn").make_config({**TINY, "remedy": ["dfr"], "dfr_steps": 30})
    data = stacked(cfg, [0, 1], 120, "cpu")
    ctx = RunContext(progress=False)
    net = train_phases(cfg, "cnn", data, [0, 1], "dfr", "k", ctx).model
    head = {id(p) for p in head_parameters(net)}
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    nets = [net, copy.deepcopy(net)]
    other = copy.copy(data)
    assert other.val_x is not None
    other.val_x = other.val_x.clone()
    other.val_x[:, 20:] = 0.0  # the second half of the validation split
    other.train_x = torch.zeros_like(data.train_x)
    refit_last_layer(cfg, nets[0], data, "a", ctx)
    refit_last_layer(cfg, nets[1], other, "b", ctx)
    names = {name for name, p in net.named_parameters() if id(p) in head}
    after = [n.state_dict() for n in nets]
    for k, v in before.items():
        if k in names:
            assert not torch.equal(after[0][k], v)
            assert torch.equal(after[0][k], after[1][k])
        else:
            assert torch.equal(after[0][k], v) and torch.equal(after[1][k], v)


def test_the_novel_set_has_no_training_colour_and_the_same_cores():
    from spuriouslab.data.coloured import DEFAULT_COLOURS
    from spuriouslab.data.memorization import SplitSpec, build_split

    spec = SplitSpec(source="digits", border=1, border_content="coloured", rho=0.5, streams="images.nets", n_val=30)
    s = build_split(spec, 0, 200)
    assert s.tests is not None and s.c is not None and s.val is not None
    h, w, _ = s.sample_shape
    novel = s.tests["novel"][0].reshape(-1, h, w, 3)
    train = s.Z.reshape(-1, h, w, 3)
    border = lambda x: np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1).reshape(-1, 3)  # noqa: E731
    train_colours = {tuple(np.round(c, 6)) for c in border(train)}
    novel_colours = {tuple(np.round(c, 6)) for c in border(novel)}
    assert len(train_colours) == 2 and len(novel_colours) == 1 and not (train_colours & novel_colours)
    assert set(s.tests["novel"][2].tolist()) == {2} and set(s.c.tolist()) == {0, 1}
    assert np.array_equal(novel[:, 1:-1, 1:-1], s.tests["id"][0].reshape(-1, h, w, 3)[:, 1:-1, 1:-1])
    assert len(DEFAULT_COLOURS) == 2 and len(s.val[0]) == 30
    # the validation images are more training images: the training set itself is the one without n_val
    plain = build_split(SplitSpec(source="digits", border=1, border_content="coloured", streams="images.nets"), 0, 200)
    assert np.array_equal(plain.Z, s.Z) and np.array_equal(plain.c, s.c)


def test_model_selection_picks_the_checkpoint_a_hand_computation_picks():
    from spuriouslab.experiments.memorization_nn.run import SELECTED, selected

    history: dict[str, list] = {
        "step": [0, 10, 20, 30],
        # seed 0: worst-group best at step 20; worst-class best at 10 and 30 (a tie: the earlier); seed 1: 30 / 0
        "val_worst_group_acc": [[0.1, 0.2], [0.5, 0.3], [0.7, 0.3], [0.6, 0.9]],
        "val_worst_class_acc": [[0.2, 0.9], [0.8, 0.5], [0.7, 0.5], [0.8, 0.6]],
        "val_acc": [[0.5, 0.5]] * 4,
    }
    for k in SELECTED:
        history[k] = [[t + 0.1 * i for i in range(2)] for t in range(4)]
    out = selected(history)
    assert out["sel_wg_step"] == [20.0, 30.0] and out["sel_wc_step"] == [10.0, 0.0]
    assert out["sel_wg_acc_novel"] == pytest.approx([2.0, 3.1]) and out["sel_wc_acc_novel"] == pytest.approx([1.0, 0.1])
    assert out["val_worst_group_acc"] == [0.6, 0.9]


@pytest.mark.parametrize(
    "experiment, args, needle",
    [
        ("memorization-nn", ["remedy=groupdro"], "coloured task"),  # a group remedy without groups
        ("memorization-nn", ["border_content=coloured", "remedy=dfr", "n_val=4"], "n_val"),
        ("memorization-nn", ["border_content=coloured", "n_train=1100", "n_val=200"], "n_val 200"),  # too large
        ("memorization-nn", ["border_content=coloured", "novel_colours=green"], "novel_colours"),
        ("memorization-nn", ["n_val=10"], "border_content=coloured"),
        ("memorization-nn", ["border_content=coloured", "remedy=none,reweight", "jtt_up=3"], "jtt_up"),
        ("contamination", ["remedy=groupdro"], "no spurious group"),
        ("distillation", ["remedy=jtt"], "no spurious group"),
    ],
)
def test_bad_combinations_are_one_line(cli, tmp_path, experiment, args, needle):
    from conftest import one_line_exit_2, sets

    one_line_exit_2(cli("run", experiment, *sets("data=digits", *args) if experiment == "memorization-nn" else
                        sets(*args), "--out", tmp_path / "x"), needle)  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_every_group_remedy_is_registered_with_its_family_and_group_use():
    for name in ("reweight", "groupdro", "jtt", "dfr"):
        spec = REMEDIES[name]
        assert spec.family == "spurious correlation" and spec.needs_groups and spec.reference
    assert REMEDIES["jtt"].group_labels is False  # validation only
    assert REMEDIES["pretrain"].family == "contamination" and not REMEDIES["pretrain"].needs_groups


def test_a_tiny_thesis_sweep_ends_with_the_failure_mode_figure_and_its_verdicts(cli, tmp_path):
    """rho 0.5 and 0.9, no remedy, pre-training and the four spurious-correlation remedies, 2 seeds: every thesis
    claim is judged where its rho is, the report has the failure-mode x remedy table and figure, the selection
    rows and the group counts."""
    import json

    from conftest import assert_figures, sets

    code, out, err = cli(
        "run", "memorization-nn",
        *sets(*(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in TINY.items() if k != "rho")),
        *sets("rho=0.5,0.9", "remedy=none,pretrain,reweight,groupdro,jtt,dfr", "dfr_steps=20"),
        "--out", tmp_path / "t", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    summary = (tmp_path / "t" / "summary.md").read_text()
    assert "## Failure modes x remedies" in summary and "worst-group validation" in summary
    assert "count_train_y0_c1" in summary and "train_weighted_acc" in summary
    assert_figures(tmp_path / "t", "failure_modes")
    rows = [json.loads(line) for line in (tmp_path / "t" / "records.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 6 * 2 and all(math.isfinite(r["sel_wg_novel_drop"]) for r in rows)
    assert "pre-training on varied border colours narrows the novel-colour drop" in summary
    assert "spurious correlation (rho 0.9): dfr raises worst-group accuracy" in summary
