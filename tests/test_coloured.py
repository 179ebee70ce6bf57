"""The coloured-image task: exact group proportions, the reversed test set pixel for pixel, the group averages and
C on constructed cases, the kernel and network experiments through the CLI (the network one killed and resumed),
and bad input in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import assert_figures
from spuriouslab.data.coloured import (
    DEFAULT_COLOURS,
    assign_colours,
    binary_labels,
    coloured,
    group_metrics,
    spurious_correlation,
)

KERNELS = [
    "--set",
    "data=digits",
    "--set",
    "border=1",
    "--set",
    "border_content=coloured",
    "--set",
    "scaling=unit",
    "--set",
    "n_train=60",
    "--set",
    "n_test=60",
    "--set",
    "model=rf",
    "--set",
    "activation=relu",
    "--set",
    "width=inf",
    "--set",
    "ridge=0,0.1",
    "--set",
    "correlation=0",
    "--set",
    "seeds=2",
    "--no-progress",
]
NETS = [
    "run",
    "memorization-nn",
    "--set",
    "preset=quick",
    "--set",
    "data=digits",
    "--set",
    "border=1",
    "--set",
    "border_content=coloured",
    "--set",
    "model=fc",
    "--set",
    "n_train=200",
    "--set",
    "n_test=100",
    "--set",
    "epochs=3",
    "--set",
    "step_size=3",
    "--set",
    "log_every=3",
    "--set",
    "seeds=2",
    "--set",
    "rho=0.5,1.0",
    "--no-progress",
]


def _task(rho: float, n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 5, 5), dtype=np.uint8)
    y = np.repeat([0, 1], n // 2)
    return coloured(x, y, x[: n // 2], y[::2], rho, 2, np.random.default_rng(seed + 1))


@pytest.mark.parametrize("rho,agree", [(0.5, 10), (0.75, 15), (0.9, 18), (1.0, 20)])
def test_exact_group_proportions_for_a_seeded_task(rho, agree):
    task = _task(rho)
    y, c = task.train.y, task.train.c
    for k in (0, 1):  # 20 images per class: exactly round(rho * 20) carry their class's colour
        assert int(((y == k) & (c == k)).sum()) == agree and int(((y == k) & (c != k)).sum()) == 20 - agree
    again = _task(rho)
    assert np.array_equal(again.train.c, c) and np.array_equal(again.train.x, task.train.x)  # seeded


def test_the_reversed_set_is_the_id_set_with_the_colour_reversed_pixel_for_pixel():
    task = _task(0.9)
    ident, rev, indep = task.tests["id"], task.tests["reversed"], task.tests["indep"]
    w = task.width
    assert np.array_equal(rev.c, 1 - rev.y)
    for s in (rev, indep):  # the same cores in every test set
        assert np.array_equal(s.x[:, w:-w, w:-w], ident.x[:, w:-w, w:-w])
    frame = np.ones(rev.x.shape[1:3], dtype=bool)
    frame[w:-w, w:-w] = False
    colours = np.asarray(DEFAULT_COLOURS, dtype=np.uint8)
    for i in range(len(rev.y)):
        assert (rev.x[i][frame] == colours[1 - rev.y[i]]).all()
        assert (ident.x[i][frame] == colours[ident.c[i]]).all()
    assert sorted(np.bincount(indep.y * 2 + indep.c).tolist()) == [5, 5, 5, 5]  # every group, equally


def test_group_averages_on_a_constructed_prediction_table():
    # groups (y, c): (0,0) 4 samples 4 right, (0,1) 1 sample 0 right, (1,0) 1 sample 1 right, (1,1) 4 samples 2 right
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    c = np.array([0, 0, 0, 0, 1, 0, 1, 1, 1, 1])
    correct = np.array([1, 1, 1, 1, 0, 1, 1, 1, 0, 0])
    m = group_metrics(correct, y, c)
    assert m["acc"] == pytest.approx(0.7)  # mean over samples
    assert m["group_balanced_acc"] == pytest.approx((1 + 0 + 1 + 0.5) / 4)  # mean over groups
    assert m["worst_group_acc"] == 0.0
    assert m["acc_y1_c1"] == pytest.approx(0.5)
    assert np.isnan(group_metrics(correct[:4], y[:4], c[:4])["acc_y1_c0"])  # an empty group


def test_spurious_correlation_against_an_independent_computation():
    f = np.array([0.3, -1.2, 2.0, 0.1, -0.4])
    g = np.array([1.0, -1.0, 1.0, -1.0, 1.0])
    assert spurious_correlation(f, g) == pytest.approx(np.cov(f, g, bias=True)[0, 1])


def test_labels_from_a_pair_or_the_class_halves():
    y = np.array([0, 3, 7, 9, 1, 7])
    keep, labels = binary_labels(y, 10, (1, 7))
    assert keep.tolist() == [2, 4, 5] and labels.tolist() == [1, 0, 1]
    assert binary_labels(y, 10, None)[1].tolist() == [0, 0, 1, 1, 0, 1]
    assert np.array_equal(assign_colours(np.array([0, 1]), 1.0, np.random.default_rng(0)), [0, 1])


def test_the_kernel_experiment_over_rho_and_lambda(cli, tmp_path):
    code, stdout, err = cli("run", "ridge", *KERNELS, "--set", "rho=0.5,1.0", "--out", tmp_path / "k")
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "k" / "results.parquet")
    assert set(df.rho) == {0.5, 1.0} and {
        "acc_id",
        "acc_indep",
        "acc_reversed",
        "worst_group_acc",
        "group_balanced_acc",
        "colour_flip",
        "spurious_corr",
    } <= set(df)
    at = df.groupby("rho")[["colour_flip", "acc_reversed"]].mean()
    assert at.colour_flip[1.0] > at.colour_flip[0.5] and at.acc_reversed[1.0] < at.acc_reversed[0.5]
    from spuriouslab.claims import coloured_claims
    from spuriouslab.report import judge_run, load_plan
    from spuriouslab.store import RunStore

    pooled = {r["claim"]: r for r in judge_run(RunStore(tmp_path / "k")) if r.get("rho") == "all"}
    for claim in coloured_claims("ridge"):  # every coloured claim judged across rho, on both seeds
        assert pooled[claim.text]["n_seeds"] == 2 and np.isfinite(pooled[claim.text]["effect"]), claim.text
    assert load_plan(RunStore(tmp_path / "k")).grid == {"rho": [0.5, 1.0]}
    assert "| all | coloured task: the colour alone flips more predictions as rho grows" in stdout
    assert_figures(tmp_path / "k", "coloured_spectrum", "coloured_c_vs_lambda")


@pytest.mark.parametrize(
    "experiment,args,needle",
    [
        ("ridge", ["--set", "rho=1.5"], "rho"),
        ("ridge", ["--set", "rho=-0.1"], "rho"),
        ("ridge", ["--set", "classes=1,12"], "classes"),
        ("ridge", ["--set", "colours=red,purple"], "colours"),
        ("ridge", ["--set", "colours=red,red"], "two different colours"),
        ("memorization-nn", ["--set", "rho=2"], "rho"),
        ("memorization-nn", ["--set", "colours=nope,green"], "colours"),
        # one colour written two ways is one colour: compared as RGB values
        ("ridge", ["--set", 'colours=[red, "200,40,40"]'], "both are RGB 200,40,40"),
        ("ridge", ["--set", 'colours=[black, "0,0,0"]'], "both are RGB 0,0,0"),
        ("ridge", ["--set", 'colours=["0,0,0", " 0, 0, 0"]'], "both are RGB 0,0,0"),
        # rho below 0.5 is the other label's colour: refused (swap the colours), alone or in a sweep
        ("ridge", ["--set", "rho=0.2"], "[0.5, 1]"),
        ("ridge", ["--set", "rho=0,1"], "[0.5, 1]"),
        ("memorization-nn", ["--set", "rho=0.49"], "[0.5, 1]"),
        # settings that do not apply to the data or the remedy are refused, not stored and ignored
        ("memorization", ["--set", "border_content=garbage"], "data=synthetic has neither"),
        ("memorization", ["--set", "colours=x,y"], "data=synthetic has neither"),
        ("memorization-nn", ["--set", "data=synthetic", "--set", "border_content=coloured"], "data=synthetic"),
        ("memorization-nn", ["--set", "and_mask_tau=0.5"], "remedy=and-mask"),
        ("memorization-nn", ["--set", "pretrain_epochs=3"], "remedy=pretrain or lp-ft"),
        ("contamination", ["--set", "pretrain_iterations=5"], "remedy=pretrain or lp-ft"),
        ("contamination", ["--set", "remedy=and-mask", "--set", "lp_iterations=5"], "remedy=lp-ft"),
        ("contamination", ["--set", "pretrain_background=2"], "remedy=pretrain or lp-ft"),
        ("distillation", ["--set", "remedy=pretrain", "--set", "pretrain_background=2"], "task=synthetic"),
    ],
)
def test_bad_coloured_input_is_one_line(cli, tmp_path, experiment, args, needle):
    base = {"ridge": KERNELS, "memorization-nn": NETS[2:]}.get(experiment, [])
    if experiment == "distillation":
        base = ["--set", "task=digits-background"]
    code, _, err = cli("run", experiment, *base, *args, "--out", tmp_path / "x")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "x").exists()


def test_rho_needs_the_coloured_border(cli, tmp_path):
    code, _, err = cli(
        "run", "ridge", *KERNELS, "--set", "border_content=uniform", "--set", "rho=0.9", "--out", tmp_path / "x"
    )
    assert code == 2 and "border_content=coloured" in err, err


# ------------------------------------------------------------------------ MNIST offline (a packaged subset)
def _fake_mnist_subset(path: Path, per_class: int = 10) -> None:
    import gzip

    rng = np.random.default_rng(0)
    rows = [np.concatenate([rng.integers(0, 256, 784), [k]]) for k in range(10) for _ in range(per_class)]
    with gzip.open(path, "wt") as fh:
        np.savetxt(fh, np.asarray(rows, dtype=np.int64), fmt="%d", delimiter=",")


@pytest.fixture
def mnist_subset(tmp_path, monkeypatch):
    import dataclasses

    from spuriouslab.data import formats, images
    from spuriouslab.data.datasets import DATASETS

    path = tmp_path / "mnist_5k.csv.gz"
    _fake_mnist_subset(path)
    monkeypatch.setattr(formats, "packaged_mnist_subset", lambda: path)
    monkeypatch.setitem(
        DATASETS, "mnist-5k", dataclasses.replace(DATASETS["mnist-5k"], package=None, checksum=None, count=(80, 20))
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SPURIOUSLAB_DATA", raising=False)
    images._load_cached.cache_clear()
    yield path
    images._load_cached.cache_clear()


def test_the_packaged_mnist_subset_reader(mnist_subset):
    from spuriouslab.data import formats

    d = formats.read_mnist_subset(mnist_subset)
    assert d.x_train.shape == (80, 28, 28, 1) and d.x_test.shape == (20, 28, 28, 1)
    assert np.bincount(d.y_train).tolist() == [8] * 10 and np.bincount(d.y_test).tolist() == [2] * 10  # per class
    bad = mnist_subset.with_name("bad.csv.gz")
    bad.write_bytes(b"not gzip")
    with pytest.raises(formats.DataError, match="not an MNIST subset CSV"):
        formats.read_mnist_subset(bad)


def test_an_mnist_figure_falls_back_on_the_subset_and_says_so(cli, tmp_path, mnist_subset):
    code, stdout, err = cli(
        "reproduce",
        "bm-mnist",
        "--set",
        "width=200",
        "--set",
        "n_train=8,16",
        "--set",
        "n_test=20",
        "--set",
        "seeds=1",
        "--set",
        "model=rf",
        "--set",
        "border=2",
        "--out",
        tmp_path / "m",
        "--no-progress",
    )
    assert code == 0, err
    assert "mnist not found: bm-mnist runs on mnist-5k, a subset" in err
    assert "Data: mnist-5k - MNIST, a 5000-image subset" in stdout
    from spuriouslab.figures import FIGURES
    from spuriouslab.reproduction import subset_sets

    assert subset_sets(FIGURES["bm-mnist"], lambda d: d == "mnist-5k")[0] == "data=mnist-5k"
    assert subset_sets(FIGURES["bm-mnist"], lambda d: True) == []  # MNIST itself found: no fallback


def test_a_one_remedy_coloured_summary_names_its_setting_and_metrics(tiny_run):
    summary = (tiny_run("coloured") / "summary.md").read_text()
    assert "(border coloured (red / green), rho=0.5, remedy=none)" in summary, summary
    assert "| model | n_train | n | acc_reversed | reversed_drop | worst_group_acc | colour_flip | acc_id |" in summary
