import numpy as np
import pandas as pd
import pytest
import torch

from conftest import assert_figures
from spuriouslab.nets.models import SeedEnsemble, build_model


@pytest.mark.parametrize(
    "name, options, grad_rtol",
    [("fc", {}, 1e-5), ("cnn", {}, 1e-5), ("vit", {"dim": 16, "depth": 2, "heads": 2}, 1e-4)],
)
def test_seed_ensemble_equals_separate_models(name, options, grad_rtol):
    def make(seed):
        torch.manual_seed(seed)
        return build_model(name, (1, 16, 16), 10, **options)

    ens = SeedEnsemble(make, [0, 1, 2])
    assert ens.stacked  # no BatchNorm: one vmap'd computation
    x = torch.randn(3, 5, 1, 16, 16)
    out = ens(x)
    for i, seed in enumerate([0, 1, 2]):
        torch.testing.assert_close(out[i], make(seed)(x[i]), atol=1e-5, rtol=1e-5)
    # gradients of the summed per-seed losses are each seed's own
    out.pow(2).mean(dim=(1, 2)).sum().backward()
    single = make(1)
    single(x[1]).pow(2).mean().backward()
    for pname, p in single.named_parameters():
        torch.testing.assert_close(ens.params[pname.replace(".", "__")].grad[1], p.grad, atol=1e-5, rtol=grad_rtol)


def test_resnet18_shapes_and_one_seed_at_a_time():
    ens = SeedEnsemble(lambda s: build_model("resnet18", (3, 48, 48), 10), [0])
    assert ens(torch.randn(1, 2, 3, 48, 48)).shape == (1, 2, 10)
    with pytest.raises(ValueError, match="one seed at a time"):
        SeedEnsemble(lambda s: build_model("resnet18", (3, 48, 48), 10), [0, 1])


NN = [
    "--set",
    "n_train=100,300",
    "--set",
    "epochs=12",
    "--set",
    "log_every=4",
    "--set",
    "seeds=2",
    "--set",
    "n_test=200",
    "--no-progress",
]


def test_nn_memorization_through_the_cli(cli, tmp_path):
    code, stdout, err = cli("run", "memorization-nn", *NN, "--out", tmp_path / "n")
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "n" / "results.parquet")
    assert len(df) == 2 * 2 * 2 and (df.status == "ok").all()
    assert list(df.curve_epoch.iloc[0]) == [0, 4, 8, 12] and len(df.curve_test_acc.iloc[0]) == 4
    fc = df[df.model == "fc"]  # 12 epochs: well above chance (0.1), not converged
    assert fc.train_acc.min() > 0.6 and fc.test_acc.mean() > 0.4
    assert fc[fc.n_train == 100].spurious_acc.mean() > 0.3
    assert_figures(tmp_path / "n", "nn_accuracy_vs_n", "nn_curves")
    assert not list((tmp_path / "n" / "checkpoints").glob("*.pt"))  # removed once a group completes


def test_synthetic_mse_and_resnet_paths(cli, tmp_path):
    code, _, err = cli(
        "run",
        "memorization-nn",
        "--set",
        "data=synthetic",
        "--set",
        "d=60",
        "--set",
        "model=fc",
        "--set",
        "n_train=40",
        "--set",
        "epochs=30",
        "--set",
        "log_every=10",
        "--set",
        "seeds=1",
        "--set",
        "n_test=200",
        "--out",
        tmp_path / "s",
        "--no-progress",
    )
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "s" / "results.parquet")
    assert df.train_acc.iloc[0] == 1.0 and df.chance.iloc[0] == 0.5
    code, _, err = cli(
        "run",
        "memorization-nn",
        "--set",
        "model=resnet18",
        "--set",
        "n_train=32",
        "--set",
        "epochs=1",
        "--set",
        "log_every=1",
        "--set",
        "seeds=2",
        "--set",
        "n_test=50",
        "--set",
        "weight_decay=5e-4",
        "--out",
        tmp_path / "r",
        "--no-progress",
    )
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "r" / "results.parquet").drop(columns=["seconds", "point_id"])
    assert list(df.seed) == [0, 1] and (df.status == "ok").all() and np.isfinite(df.train_loss).all()
    assert df.curve_train_loss.iloc[0].tolist() != df.curve_train_loss.iloc[1].tolist()  # two different models
    # BatchNorm: one seed a group, so seed 0's record is what a run of seed 0 alone gives
    code, _, err = cli(
        "run",
        "memorization-nn",
        "--set",
        "model=resnet18",
        "--set",
        "n_train=32",
        "--set",
        "epochs=1",
        "--set",
        "log_every=1",
        "--set",
        "seeds=1",
        "--set",
        "n_test=50",
        "--set",
        "weight_decay=5e-4",
        "--out",
        tmp_path / "r1",
        "--no-progress",
    )
    assert code == 0, err
    alone = pd.read_parquet(tmp_path / "r1" / "results.parquet").drop(columns=["seconds", "point_id"])
    pd.testing.assert_frame_equal(df.iloc[:1].reset_index(drop=True), alone)


def test_divergence_is_recorded_not_retried(cli, tmp_path):
    args = [
        "run",
        "memorization-nn",
        "--set",
        "data=synthetic",
        "--set",
        "d=50",
        "--set",
        "model=fc",
        "--set",
        "n_train=50",
        "--set",
        "lr=1e9",
        "--set",
        "epochs=20",
        "--set",
        "log_every=5",
        "--set",
        "seeds=2",
        "--set",
        "n_test=100",
        "--out",
        tmp_path / "d",
        "--no-progress",
    ]
    code, stdout, _ = cli(*args)
    assert code == 0 and "diverged" in stdout
    df = pd.read_parquet(tmp_path / "d" / "results.parquet")
    assert (df.status == "diverged").all() and df.error.str.contains(
        "not finite or above 1e+06 by step 5", regex=False
    ).all()
    assert (df.diverged_at == 5).all()
    before = (tmp_path / "d" / "records.jsonl").read_text()
    assert cli(*args)[0] == 0 and (tmp_path / "d" / "records.jsonl").read_text() == before


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--set", "data=synthetic", "--set", "model=cnn"], "synthetic data takes the fc model only"),
        (["--set", "n_train=5000"], "n_train: got 5000; digits has 1198"),
        (["--set", "preset=slow"], "preset: got 'slow'"),
        (["--set", "model=swin"], "model: got 'swin'"),
    ],
)
def test_bad_nn_input(cli, tmp_path, args, needle):
    code, _, stderr = cli("run", "memorization-nn", *args, "--out", tmp_path / "x")
    assert code == 2 and needle in stderr and len(stderr.strip().splitlines()) == 1, stderr
