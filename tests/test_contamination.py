import numpy as np
import pandas as pd
import pytest
import torch

from conftest import assert_figures
from spuriouslab.data.contamination import LatentSet, make_task, online_batch
from spuriouslab.experiments import RunContext, get_experiment
from spuriouslab.experiments.contamination import train_contamination
from spuriouslab.nets.mlp import StackedMLP
from spuriouslab.nets.train import Minibatches, gather
from spuriouslab.seeding import stream_id, torch_generator

EXP = get_experiment("contamination")
CTX = RunContext(progress=False)


def minibatch(task, batch):
    """A minibatch of each seed's fixed training set, drawn as the contamination run draws it."""
    idx = Minibatches(task.train.z.shape[1], batch, task.generators, replace=True)(1)
    return LatentSet(gather(task.train.z, idx), torch.gather(task.train.y, 1, idx))


def test_task_subspaces_labels_and_ood():
    task = make_task([0, 1], d=256, d_core=32, d_bg=32, n=2000, n_test=500, core="linear", ood="flip")
    T = task.T.double()
    np.testing.assert_allclose(
        torch.bmm(T, T.transpose(1, 2)).numpy(), np.broadcast_to(np.eye(64), (2, 64, 64)), atol=1e-6
    )
    z, y = task.train.z, task.train.y
    assert (y.sum(1) == 0).all()  # balanced
    assert ((z[..., :32] * y[..., None]) >= 0).all()  # linear core: sign follows the label
    bg = z[..., 32:]
    assert bg.min() >= 0 and bg.max() <= 1
    # background independent of the label: class means agree within sampling error
    diff = bg[y > 0].mean(0) - bg[y < 0].mean(0)
    assert diff.abs().max() < 4 * np.sqrt(2 * (1 / 12) / 1000)
    # OOD = the ID test set with only the background replaced (flipped)
    torch.testing.assert_close(task.ood_test.z[..., :32], task.id_test.z[..., :32])
    torch.testing.assert_close(task.ood_test.z[..., 32:], -task.id_test.z[..., 32:])
    torch.testing.assert_close(task.ood_test.y, task.id_test.y)
    # norm core: radius 1 for y = +1, 2 for y = -1
    t2 = make_task([3], d=128, d_core=8, d_bg=8, n=100, n_test=10, core="norm", ood="shift", ood_shift=0.5)
    r = t2.train.z[..., :8].norm(dim=-1)
    torch.testing.assert_close(r, torch.where(t2.train.y > 0, 1.0, 2.0))
    torch.testing.assert_close(t2.ood_test.z[..., 8:], t2.id_test.z[..., 8:] + 0.5)
    mb = minibatch(t2, 7)
    assert mb.z.shape == (1, 7, 16) and mb.y.shape == (1, 7)


def _cfg(**kw):
    base = dict(iterations=60, log_every=20, n=100, n_test=100, width=32, d=128, d_core=16, d_bg=16)
    return EXP.make_config({**base, **kw})


def test_frozen_output_stays_frozen_and_init_projection_matches_pytorch_default():
    cfg = _cfg(preset="theory", iterations=200)
    trained = train_contamination(cfg, [0], "relu", "hinge", "sgd", CTX)
    model, rec = trained.model, trained.records[0]
    # the initial model, drawn from the same stream as the run's
    init = StackedMLP([torch_generator(0, stream_id("contamination.init"))], 128, 32, 2, "relu", True, True)
    a = model.output_weights().detach()
    np.testing.assert_allclose(a[0, :16].numpy(), 1 / 32)
    np.testing.assert_allclose(a[0, 16:].numpy(), -1 / 32)
    torch.testing.assert_close(model.biases[-1].detach(), init.biases[-1].detach())  # frozen output bias
    assert not model.weights[-1].requires_grad and not model.biases[-1].requires_grad
    # the trainable layer did train, away from the init the run started from
    torch.testing.assert_close(
        init.weights[0].detach(),
        StackedMLP([torch_generator(0, stream_id("contamination.init"))], 128, 32).weights[0].detach(),
    )
    assert (model.weights[0].detach() - init.weights[0].detach()).abs().max() > 1e-3
    # at PyTorch's default init, projections on a 16-dim subspace of R^128 are ~ sqrt(16 / (3 * 128))
    assert rec["bg_norm_init"] == pytest.approx(np.sqrt(16 / (3 * 128)), rel=0.15)


@pytest.mark.parametrize("preset", ["theory", "toy"])
def test_batched_training_equals_single_seed_training(preset):
    """Exactly (float64); in float32, SGD stays within rounding while Adam-type optimizers amplify the
    reordering of the batched products chaotically - hence the float64 check."""
    cfg = _cfg(preset=preset, dtype="float64", iterations=60, log_every=20)
    together = train_contamination(cfg, [0, 1, 2], "relu", cfg.loss[0], cfg.optimizer[0], CTX).records
    for i, seed in enumerate([0, 1, 2]):
        alone = train_contamination(cfg, [seed], "relu", cfg.loss[0], cfg.optimizer[0], CTX).records[0]
        for key, value in alone.items():
            if value is None or isinstance(value, str):  # status, error, diverged_at
                assert together[i][key] == value, key
            else:
                np.testing.assert_allclose(np.asarray(together[i][key]), np.asarray(value), atol=1e-12, err_msg=key)
    if preset == "theory":
        cfg32 = _cfg(preset=preset, iterations=60, log_every=20)
        t32 = train_contamination(cfg32, [0, 1], "relu", "hinge", "sgd", CTX).records
        a32 = train_contamination(cfg32, [1], "relu", "hinge", "sgd", CTX).records[0]
        np.testing.assert_allclose(t32[1]["curve_ood_loss"], a32["curve_ood_loss"], atol=1e-5)


def test_subspace_computation_is_the_ambient_one():
    cfg = _cfg(preset="toy", dtype="float64", iterations=100)
    a = train_contamination(cfg, [4], "gelu", "logistic", "adamw", CTX).records[0]
    b = train_contamination(cfg.model_copy(update={"subspace": False}), [4], "gelu", "logistic", "adamw", CTX).records[
        0
    ]
    for key in ["curve_ood_loss", "curve_bg_norm", "curve_bg_signed", "asymmetry"]:
        np.testing.assert_allclose(a[key], b[key], atol=1e-9)


def test_sampling_modes_draw_what_they_say():
    task = make_task([0, 1], d=64, d_core=8, d_bg=8, n=50, n_test=10, core="linear", ood="flip")
    train_rows = [{tuple(r.tolist()) for r in task.train.z[s]} for s in range(2)]
    mb = minibatch(task, 30)  # rows of each seed's own fixed training set, with their labels
    for s in range(2):
        rows = [tuple(r.tolist()) for r in mb.z[s]]
        assert all(r in train_rows[s] for r in rows)
        assert not all(r in train_rows[1 - s] for r in rows)
        idx = [[tuple(r.tolist()) for r in task.train.z[s]].index(r) for r in rows]
        torch.testing.assert_close(mb.y[s], task.train.y[s, idx])
    fresh = online_batch(task, 40, "linear")  # new samples of the same distribution
    for s in range(2):
        assert not any(tuple(r.tolist()) in train_rows[s] for r in fresh.z[s])
        assert ((fresh.z[s, :, :8] * fresh.y[s, :, None]) >= 0).all() and (fresh.y[s].sum() == 0)
        assert fresh.z[s, :, 8:].min() >= 0 and fresh.z[s, :, 8:].max() <= 1
    # through training: full batch is deterministic; the stochastic modes follow their own stream
    recs = {
        m: train_contamination(_cfg(sampling=m, batch_size=20), [0], "relu", "hinge", "sgd", CTX).records[0]
        for m in ["full", "minibatch", "online"]
    }
    again = train_contamination(_cfg(sampling="minibatch", batch_size=20), [0], "relu", "hinge", "sgd", CTX)
    assert again.records[0]["curve_train_loss"] == recs["minibatch"]["curve_train_loss"]
    for a, b in [("full", "minibatch"), ("full", "online"), ("minibatch", "online")]:
        assert recs[a]["curve_bg_norm"][1:] != recs[b]["curve_bg_norm"][1:], (a, b)
    assert recs["full"]["curve_bg_norm"][0] == recs["online"]["curve_bg_norm"][0]  # the same init


def test_central_claim_relu_contaminates_identity_does_not(cli, tmp_path):
    """Theory preset at CI size (600 steps): ReLU's signed background-mean projection grows several times the
    linear network's change, the linear network's stays at its init, and ReLU's OOD - ID loss gap is larger.  The
    thresholds hold with a margin of 2x (ReLU's smallest change 0.066, the gap difference 0.23, the smallest
    asymmetry correlation 0.89)."""
    code, stdout, err = cli(
        "run",
        "contamination",
        "--set",
        "activation=relu,identity",
        "--set",
        "iterations=600",
        "--set",
        "log_every=200",
        "--set",
        "seeds=3",
        "--set",
        "n=300",
        "--set",
        "n_test=300",
        "--set",
        "width=64",
        "--out",
        tmp_path / "c",
        "--no-progress",
    )
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "c" / "results.parquet")
    relu, lin = df[df.activation == "relu"], df[df.activation == "identity"]
    assert (relu.bg_signed_change > 0.03).all()
    assert relu.bg_signed_change.mean() > 5 * lin.bg_signed_change.abs().mean()
    assert lin.bg_signed_change.abs().max() < 1e-3
    assert relu.ood_id_gap.mean() > lin.ood_id_gap.mean() + 0.1
    assert (relu.asym_corr > 0.5).all()  # the mechanism: asymmetry follows the output sign
    assert_figures(tmp_path / "c", "losses", "projections", "asymmetry", "background_by_activation")
    assert len(df.curve_step.iloc[0]) == 4 and "ood_id_gap" in stdout


def test_sweep_shortcuts_and_presets():
    cfg = EXP.make_config({"sweep": "activations"})
    assert cfg.activation == ["relu", "gelu", "leaky_relu", "sigmoid", "tanh", "identity"]
    assert cfg.loss == ["hinge"] and cfg.optimizer == ["sgd"] and cfg.freeze_output and cfg.core == "linear"
    cfg = EXP.make_config({"sweep": "losses", "preset": "toy"})
    assert len(EXP.points(cfg)) == 9 * cfg.seeds and cfg.core == "norm" and not cfg.freeze_output
    cfg = EXP.make_config({"preset": "toy", "loss": "mse"})
    assert cfg.loss == ["mse"] and cfg.optimizer == ["adamw"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--set", "preset=paper"], "preset: got 'paper'"),
        (["--set", "sweep=widths"], "sweep: got 'widths'"),
        (["--set", "d_core=200", "--set", "d_bg=100"], "d_core + d_bg: got 200 + 100 > d=256"),
        (["--set", "width=33"], "width: got 33 with freeze_output=true"),
        (["--set", "loss=l1"], "loss: got 'l1'"),
        (["--set", "activation=swish"], "activation: got 'swish'"),
        (["--set", "depth=1"], "depth: got 1"),
    ],
)
def test_bad_contamination_input(cli, tmp_path, args, needle):
    code, _, stderr = cli("run", "contamination", *args, "--out", tmp_path / "x")
    assert code == 2 and needle in stderr and len(stderr.strip().splitlines()) == 1


def test_deeper_network_without_biases_runs_and_reports(cli, tmp_path):
    code, stdout, err = cli(
        "run",
        "contamination",
        "--set",
        "depth=3",
        "--set",
        "bias=false",
        "--set",
        "iterations=40",
        "--set",
        "log_every=20",
        "--set",
        "seeds=2",
        "--set",
        "n=100",
        "--set",
        "n_test=100",
        "--set",
        "width=32",
        "--set",
        "preset=toy",
        "--set",
        "ood=scale",
        "--set",
        "ood_scale=2.0",
        "--out",
        tmp_path / "d",
        "--no-progress",
    )
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "d" / "results.parquet")
    assert len(df) == 2 and "bg_signed_pos" not in df  # the output-sign split is defined for depth 2 only
    assert_figures(tmp_path / "d", "asymmetry")


def test_unbatched_seeds_give_the_batched_records(cli, tmp_path):
    args = [
        "run",
        "contamination",
        "--set",
        "iterations=60",
        "--set",
        "log_every=20",
        "--set",
        "seeds=2",
        "--set",
        "n=60",
        "--set",
        "n_test=60",
        "--set",
        "width=16",
        "--set",
        "dtype=float64",
        "--no-progress",
    ]
    assert cli(*args, "--out", tmp_path / "b")[0] == 0
    assert cli(*args, "--set", "batch_seeds=false", "--out", tmp_path / "u")[0] == 0
    b = pd.read_parquet(tmp_path / "b" / "results.parquet").drop(columns="seconds").sort_values("seed")
    u = pd.read_parquet(tmp_path / "u" / "results.parquet").drop(columns="seconds").sort_values("seed")
    for col in ["id_loss", "ood_loss", "bg_norm", "bg_signed_change", "asym_corr"]:
        np.testing.assert_allclose(u[col].to_numpy(), b[col].to_numpy(), atol=1e-12, err_msg=col)
    cfg = EXP.make_config({"batch_seeds": False, "seeds": 3})
    assert len(EXP.groups(cfg, EXP.points(cfg))) == 3  # one group per seed
