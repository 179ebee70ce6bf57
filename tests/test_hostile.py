"""Hostile input on the newer surfaces (distillation, background-features, probe, sweep, report): each case as a
careful user meets it, through the CLI where that is where they meet it.  A case either gives the correct result
or one line naming the input with exit status 2, and nothing already computed is lost."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from spuriouslab.data import images
from spuriouslab.data.datasets import DATASETS

HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(HERE)}
CONT = [
    "--set",
    "iterations=20",
    "--set",
    "log_every=10",
    "--set",
    "seeds=2",
    "--set",
    "n=40",
    "--set",
    "n_test=40",
    "--no-progress",
]
BG = [
    "--set",
    "data=digits",
    "--set",
    "n_train=100",
    "--set",
    "n_test=40",
    "--set",
    "epochs=1",
    "--set",
    "seeds=1",
    "--set",
    "vis_channels=2",
    "--set",
    "vis_steps=2",
    "--set",
    "vis_rounds=1",
    "--set",
    "cam_images=10",
    "--set",
    "batch_size=50",
    "--set",
    "depth=8",
    "--set",
    "pipeline=padded",
    "--no-progress",
]
DIST = [
    "--set",
    "epochs=6",
    "--set",
    "teacher_epochs=6",
    "--set",
    "log_every=3",
    "--set",
    "seeds=1",
    "--set",
    "n=60",
    "--set",
    "n_test=40",
    "--set",
    "width=16",
    "--set",
    "embed=4",
    "--no-progress",
]


@pytest.fixture(autouse=True)
def _fresh_cache():
    images._load_cached.cache_clear()
    yield
    images._load_cached.cache_clear()


def one_line_exit_2(result, *needles):
    code, _, stderr = result
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spuriouslab: error: "), stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------- 1, 7, 8, 17: the report
def test_1_same_named_runs_stay_apart_and_a_run_given_twice_is_refused(cli, tmp_path):
    for sub, lr in (("a", "1e-3"), ("b", "1e-1")):
        assert cli("run", "contamination", *CONT, "--set", f"lr={lr}", "--out", tmp_path / sub / "fig")[0] == 0
    code, stdout, err = cli("report", tmp_path / "a" / "fig", tmp_path / "b" / "fig", "--out", tmp_path / "r")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "r" / "contamination.csv")
    assert sorted(table.run) == ["a/fig", "b/fig"] and (table.n == 2).all()
    assert table.bg_norm_growth.nunique() == 2
    one_line_exit_2(
        cli("report", tmp_path / "a" / "fig", tmp_path / "a" / "fig", "--out", tmp_path / "r2"), "given twice"
    )


def test_7_the_report_keeps_to_the_run_grid(cli, tmp_path):
    run = tmp_path / "c"
    assert cli("run", "contamination", *CONT, "--set", "activation=relu,identity", "--out", run)[0] == 0
    extra = {**records(run)[0], "seed": 0.0, "bg_norm_growth": 1e9}  # a hand-appended "third seed"
    with open(run / "records.jsonl", "a") as fh:
        fh.write(json.dumps(extra) + "\n")
    code, _, err = cli("report", run)
    assert code == 0 and "outside this run's grid" in err, err
    df = pd.read_parquet(run / "results.parquet")
    assert len(df) == 4 and df.bg_norm_growth.max() < 1e9
    # the grid shrunk into the same directory: the table is the new grid's, the other records stay on disk
    assert cli("run", "contamination", *CONT, "--set", "activation=relu", "--set", "seeds=1", "--out", run)[0] == 0
    df = pd.read_parquet(run / "results.parquet")
    assert list(df.activation) == ["relu"] and list(df.seed) == [0]
    assert len(records(run)) == 5


def test_8_report_outputs_never_overwrite_a_run(cli, tmp_path):
    for name in ("c1", "c2"):
        assert cli("run", "contamination", *CONT, "--out", tmp_path / name)[0] == 0
    before = (tmp_path / "c2" / "records.jsonl").read_bytes()
    summary = (tmp_path / "c1" / "summary.md").read_bytes()
    one_line_exit_2(cli("report", tmp_path / "c2", "--html", tmp_path / "c2" / "records.jsonl"), "--html", "c2")
    one_line_exit_2(cli("report", tmp_path / "c1", tmp_path / "c2", "--out", tmp_path / "c1"), "--out")
    one_line_exit_2(cli("report", tmp_path / "c1", tmp_path / "c2", "--out", tmp_path / "c2" / "figures"), "--out")
    assert (tmp_path / "c2" / "records.jsonl").read_bytes() == before
    assert (tmp_path / "c1" / "summary.md").read_bytes() == summary


def test_17_list_valued_columns_as_the_x_of_a_report(cli, tmp_path):
    assert cli("run", "contamination", *CONT, "--out", tmp_path / "c")[0] == 0
    for column in ("curve_step",):
        code, _, err = cli("report", tmp_path / "c", "--x", column, "--out", tmp_path / f"r-{column}")
        assert code == 0, err
        assert (tmp_path / f"r-{column}" / f"contamination_vs_{column}.png").stat().st_size > 0


# ------------------------------------------------------------------------------- 2: data=auto
def _fake_fashion(root: Path, value: int = 0) -> None:
    from spuriouslab.data.images import MNIST_FILES, write_idx

    rng = np.random.default_rng(value)
    (root / "fashion-mnist").mkdir(parents=True, exist_ok=True)
    for stem in MNIST_FILES:
        n = 120 if stem.startswith("train") else 60
        arr = (
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
            if "images" in stem
            else (np.arange(n) % 10).astype(np.uint8)
        )
        write_idx(root / "fashion-mnist" / stem, arr)


def test_2_data_auto_is_fixed_at_the_first_point_and_checked_on_resume(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(
        DATASETS,
        "fashion-mnist",
        dataclasses.replace(DATASETS["fashion-mnist"], system=tmp_path / "none", checksum=None),
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SPURIOUSLAB_DATA", raising=False)
    run = tmp_path / "b"
    args = [*BG, "--set", "data=auto", "--set", f"data_root={tmp_path / 'd'}"]  # the later --set wins
    assert cli("run", "background-features", *args, "--out", run)[0] == 0  # Fashion-MNIST absent: digits
    assert json.loads((run / "resolved.json").read_text())["{}"]["data"] == "digits"
    _fake_fashion(tmp_path / "d")  # now present: the resumed run still reads digits, and says so
    images._load_cached.cache_clear()
    code, stdout, err = cli("run", "background-features", *args, "--set", "pipeline=padded,control", "--out", run)
    assert code == 0, err
    assert "keeps it (fashion-mnist is found now" in err
    assert {r["data"] for r in records(run)} == {"digits"} and len(records(run)) == 2
    assert "data=digits" in stdout
    # the data a run started on changed under it: refused in one line, nothing written
    first = json.loads((run / "resolved.json").read_text())
    first["{}"]["data_checksum"] = "0" * 64
    (run / "resolved.json").write_text(json.dumps(first))
    one_line_exit_2(
        cli("run", "background-features", *args, "--set", "pipeline=padded,control", "--out", run),
        "not the data this run started with",
    )
    assert len(records(run)) == 2


# ----------------------------------------------------------------- 3, 11, 12, 15: distillation
def test_3_a_users_teacher_has_no_activation_axis(cli, tmp_path):
    from spuriouslab.experiments import get_experiment

    exp = get_experiment("distillation")
    assert exp.make_config({"teacher": "distill_models:linear_teacher"}).activation == ["relu"]
    assert exp.make_config({}).activation == ["relu", "identity"]  # the built-in MLP student's axis stays
    one_line_exit_2(
        cli(
            "run",
            "distillation",
            *DIST,
            "--set",
            "teacher=distill_models:linear_teacher",
            "--set",
            "activation=relu,identity",
            "--out",
            tmp_path / "x",
        ),
        "activation",
        "one value only",
    )


@pytest.mark.parametrize(
    "experiment,args,payload",
    [("distillation", DIST + ["--set", "activation=relu"], "shapes"), ("background-features", BG, "junk")],
)
def test_12_a_checkpoint_that_loads_but_does_not_match_is_set_aside(cli, tmp_path, experiment, args, payload):
    """A checkpoint torch reads but that is not this group's (another dict, wrong shapes) is set aside with a
    warning and its group restarts; the run completes."""
    run = tmp_path / "r"
    env = {**ENV, "SPURIOUSLAB_KILL_AFTER": "checkpoints:1"}
    proc = subprocess.run(
        [sys.executable, "-m", "spuriouslab.cli", "run", experiment, *args, "--out", str(run)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (ckpt,) = (run / "checkpoints").glob("*.pt")
    if payload == "junk":
        torch.save({"junk": 1}, ckpt)
    else:
        saved = torch.load(ckpt, weights_only=True)
        first = next(iter(saved["model"]))
        saved["model"][first] = torch.zeros(3, 3)
        torch.save(saved, ckpt)
    code, _, err = cli("run", experiment, *args, "--out", run)
    assert code == 0, err
    assert "moved to" in err and (ckpt.parent / (ckpt.name + ".corrupt")).exists()
    assert all(r.get("status", "ok") == "ok" for r in records(run))


def test_15_empty_checkpoints_and_silent_exceptions_are_one_line(cli, tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    one_line_exit_2(
        cli(
            "probe", "probe_models:centre_only", "--checkpoint", empty, "--set", "data=digits", "--out", tmp_path / "p"
        ),
        "empty.pt",
    )
    one_line_exit_2(
        cli(
            "run",
            "distillation",
            *DIST,
            "--set",
            "teacher=distill_models:linear_teacher",
            "--set",
            f"teacher_checkpoint={empty}",
            "--set",
            "task=digits-background",
            "--out",
            tmp_path / "d",
        ),
        "teacher_checkpoint",
    )
    one_line_exit_2(
        cli(
            "run",
            "distillation",
            *DIST,
            "--set",
            "teacher=distill_models:linear_teacher",
            "--set",
            "teacher_checkpoint=",
            "--set",
            "task=digits-background",
            "--out",
            tmp_path / "d2",
        ),
        "teacher_checkpoint",
    )
    line = one_line_exit_2(
        cli("probe", "probe_models:silent", "--set", "data=digits", "--set", "eval_border=1", "--out", tmp_path / "s"),
        "RuntimeError",
    )
    assert "IndexError" not in line


# ----------------------------------------------------------------- 4, 9, 10, 14, 16: values
@pytest.mark.parametrize(
    "args,needle",
    [
        (["--set", "lr=1e-3,0.001"], "each grid value once"),
        (["--set", "width=16,16.0"], "each grid value once"),
        (["--set", "seed=0,1"], "seeds are not a grid"),
        (["--set", "seeds=2,3"], "seeds are not a grid"),
        (["--set", "width={range: [1, 1e12, 1]}"], "more than"),
        (["--set", "lr={log: [1e-5, 1e-1, 1e12]}"], "more than"),
        (["--set", "bias=yes"], "a boolean is true or false"),
        (["--set", "bias=1"], "a boolean is true or false"),
        (["--set", "lr=.inf"], "finite"),
        (["--set", "ood_shift=.nan"], "finite"),
    ],
)
def test_4_9_10_14_16_bad_values_are_one_line(cli, tmp_path, args, needle):
    t0 = time.perf_counter()
    one_line_exit_2(cli("run", "contamination", *CONT, *args, "--out", tmp_path / "x"), needle)
    assert time.perf_counter() - t0 < 30  # a huge range is refused before its list is built
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "experiment,args,needle",
    [
        ("background-features", ["--set", "crop=no"], "crop"),
        ("background-features", ["--set", "flip=off"], "flip"),
        ("background-features", ["--set", "vis_lr=.inf"], "vis_lr"),
        ("background-features", ["--set", "vis_reg=.inf"], "vis_reg"),
        ("background-features", ["--set", "seed=0,1"], "seeds are not a grid"),
        ("distillation", ["--set", "probe_wd_teacher=.inf"], "probe_wd_teacher"),
        ("distillation", ["--set", "seed=0,1"], "seeds are not a grid"),
        ("distillation", ["--set", "amp=t"], "amp"),
    ],
)
def test_9_10_14_on_the_newer_experiments(cli, tmp_path, experiment, args, needle):
    base = BG if experiment == "background-features" else DIST
    one_line_exit_2(cli("run", experiment, *base, *args, "--out", tmp_path / "x"), needle)


def test_4_duplicates_in_a_sweep_spec_and_integer_log_ranges(cli, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "experiment: contamination\niterations: 20\nlog_every: 10\nseeds: 1\nn: 40\nn_test: 40\n"
        "grid:\n  width: [8, 8.0]\n"
    )
    one_line_exit_2(cli("sweep", spec, "--out", tmp_path / "x"), "each grid value once")
    from spuriouslab.sweep import expand_values

    assert expand_values({"log": [8, 64, 4]}, "width") == [8, 16, 32, 64]
    assert all(isinstance(v, int) for v in expand_values({"log": [8, 64, 4]}, "width"))


def test_10_a_model_with_nan_logits_is_refused_not_measured(cli, tmp_path):
    one_line_exit_2(
        cli(
            "probe",
            "probe_models:nan_logits",
            "--set",
            "data=digits",
            "--set",
            "eval_border=1",
            "--out",
            tmp_path / "p",
        ),
        "non-finite logits",
    )


# ------------------------------------------------------------------------ 5: leave-one-out
@pytest.mark.parametrize("width,dtype", [(200, "float64"), (10, "float64"), (1, "float32")])
def test_5_loo_residuals_of_a_singular_gram_are_the_refitted_ones(width, dtype):
    from spuriouslab.kernels.estimators import RandomFeaturesRegressor

    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 12))
    X[1] = X[5] = X[0]  # duplicated samples: a singular Gram matrix
    y = np.sign(rng.standard_normal(16))
    y[1] = y[5] = y[0]
    model = RandomFeaturesRegressor(width=width, random_state=0, dtype=dtype).fit(X, y)
    assert model.solver_ == "eigh"
    refit = []
    for i in range(len(X)):
        keep = np.arange(len(X)) != i
        other = RandomFeaturesRegressor(width=width, random_state=0, dtype=dtype).fit(X[keep], y[keep])
        refit.append(y[i] - other.predict(X[i : i + 1])[0])
    np.testing.assert_allclose(model.loo_residuals_, refit, atol=1e-6)


# ------------------------------------------------------------------------------ 6: a stacked group
def test_6_a_stacked_groups_records_land_together(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "spuriouslab.cli",
        "run",
        "contamination",
        "--set",
        "iterations=40",
        "--set",
        "log_every=20",
        "--set",
        "seeds=3",
        "--set",
        "n=40",
        "--set",
        "n_test=40",
        "--set",
        "activation=relu,identity",
        "--no-progress",
    ]
    subprocess.run([*cmd, "--out", str(tmp_path / "full")], check=True, env=ENV, capture_output=True)
    run = tmp_path / "killed"
    proc = subprocess.run(
        [*cmd, "--out", str(run)], env={**ENV, "SPURIOUSLAB_KILL_AFTER": "records:1"}, capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL
    assert len(records(run)) == 3  # the whole first group (three stacked seeds), not one seed of it
    subprocess.run([*cmd, "--out", str(run)], check=True, env=ENV, capture_output=True)
    keys = ["activation", "seed"]
    drop = lambda t: t.drop(columns="seconds").sort_values(keys).reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(
        drop(pd.read_parquet(tmp_path / "full" / "results.parquet")), drop(pd.read_parquet(run / "results.parquet"))
    )


def test_6_a_failed_write_leaves_no_part_of_a_group(tmp_path, monkeypatch):
    import errno

    from spuriouslab.store import RunStore

    store = RunStore(tmp_path / "r")
    store.root.mkdir()
    store.append([{"seed": 0, "x": 1}])
    real = os.write
    calls = {"n": 0}

    def full_disk(fd, data):
        calls["n"] += 1
        if calls["n"] == 1:
            return real(fd, data[: len(data) // 2])  # part of the group, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError) as info:
        store.append([{"seed": 1, "x": 2}, {"seed": 2, "x": 3}])
    monkeypatch.setattr(os, "write", real)
    assert str(store.records_path) in str(info.value)  # the path is in the message
    assert [r["seed"] for r in store.records(["seed"])] == [0]


# --------------------------------------------------------------------------------- 13: sweeps
def test_13_a_sweep_over_task_reports(cli, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "experiment: distillation\nepochs: 4\nteacher_epochs: 4\nlog_every: 2\nseeds: 1\nn: 60\n"
        "n_test: 40\nwidth: 16\nembed: 4\ngrid:\n  task: [synthetic, digits-background]\n"
    )
    code, stdout, err = cli("sweep", spec, "--out", tmp_path / "s", "--no-progress")
    assert code == 0, err
    assert {(r["task"], r["activation"]) for r in records(tmp_path / "s")} == {
        ("synthetic", "relu"),
        ("synthetic", "identity"),
        ("digits-background", "relu"),
    }
    code, _, err = cli("report", tmp_path / "s")
    assert code == 0, err


def test_a_set_on_a_swept_field_replaces_the_spec_grid(cli, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "experiment: contamination\niterations: 20\nlog_every: 10\nseeds: 1\nn: 40\nn_test: 40\n"
        "grid:\n  width: [8, 16]\n"
    )
    code, _, err = cli("sweep", spec, "--set", "width=12", "--out", tmp_path / "s", "--no-progress")
    assert code == 0 and "replaces the spec's grid over width" in err, err
    assert "width: 12" in (tmp_path / "s" / "config.yaml").read_text() and len(records(tmp_path / "s")) == 1


# ------------------------------------------------------------------------------ 18: literal names
def test_18_user_names_reach_figures_literally(cli, tmp_path):
    from test_distillation import _folder

    _folder(tmp_path / "data", ood=("$\\foo$", "x|y"))
    code, stdout, err = cli(
        "run",
        "distillation",
        "--set",
        "task=folder",
        "--set",
        f"data_root={tmp_path / 'data'}",
        "--set",
        "canvas=12",
        "--set",
        "epochs=2",
        "--set",
        "teacher_epochs=2",
        "--set",
        "log_every=1",
        "--set",
        "seeds=1",
        "--set",
        "batch_size=4",
        "--set",
        "embed=4",
        "--out",
        tmp_path / "r",
        "--no-progress",
    )
    assert code == 0, err
    assert "$\\foo$" in stdout and "x\\|y" in stdout  # shown as named; the | escaped: the columns stay in place
    header = next(line for line in stdout.splitlines() if line.startswith("| model"))
    row = next(line for line in stdout.splitlines() if line.startswith("| teacher"))
    assert header.replace("\\|", "").count("|") == row.replace("\\|", "").count("|")
    code, _, err = cli("report", tmp_path / "r", "--html", tmp_path / "r.html", "--out", tmp_path / "rep")
    assert code == 0, err
    tex = (tmp_path / "rep" / "verdicts.tex").read_text() if (tmp_path / "rep" / "verdicts.tex").exists() else ""
    assert "_" not in tex.replace("\\_", "")


def test_tex_tables_are_escaped():
    from spuriouslab.tables import latex_table

    tex = latex_table(pd.DataFrame({"acc_plain": [0.5], "name": ["a_b & 50%"]}))
    assert "acc\\_plain" in tex and "a\\_b \\& 50\\%" in tex


# ---------------------------------------------------------------------------- 19: edited records
def test_19_a_record_of_only_its_point_is_recomputed(cli, tmp_path):
    run = tmp_path / "c"
    assert cli("run", "contamination", *CONT, "--out", run)[0] == 0
    recs = records(run)
    keys = ["activation", "loss", "optimizer", "remedy", "seed"]
    stub = {k: recs[0][k] for k in keys}
    (run / "records.jsonl").write_text(json.dumps(stub) + "\n" + json.dumps(recs[1]) + "\n")
    code, _, err = cli("run", "contamination", *CONT, "--out", run)
    assert code == 0 and "no results" in err, err
    df = pd.read_parquet(run / "results.parquet")
    assert len(df) == 2 and df.bg_norm_growth.notna().all()


@pytest.fixture(scope="module")
def background_run(tmp_path_factory):
    from typer.testing import CliRunner

    from spuriouslab.cli import app

    run = tmp_path_factory.mktemp("bg") / "b"
    result = CliRunner().invoke(app, ["run", "background-features", *BG, "--out", str(run)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return run


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "not an array",
        {"shape": [2, 3], "dtype": "uint8", "data": "!!"},
        {"shape": [99, 3, 4, 4], "dtype": "uint8", "data": "AAAA"},
        {"shape": [1, 3, 2, 2], "dtype": "object", "data": "AAAAAAAAAAAAAAAA"},
        {"shape": [2, 2], "dtype": "uint8", "data": "AAAAAA=="},
    ],
)
def test_19_bad_vis_entries_are_left_out_of_the_figure_with_a_warning(cli, tmp_path, bad, background_run):
    import shutil

    run = tmp_path / "b"
    shutil.copytree(background_run, run)
    (run / ".lock").unlink(missing_ok=True)
    recs = records(run)
    for r in recs:
        if bad is None:
            r.pop("vis")
        else:
            r["vis"] = bad
        r["cam_images"] = bad if bad is not None else r["cam_images"]
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    code, _, err = cli("report", run)
    assert code == 0, err
    assert "not usable" in err and "not drawn" in err
    assert (run / "figures" / "feature_grids.png").stat().st_size > 0


# ------------------------------------------------------------------------------- 20: data fetch
def test_20_data_fetch_into_an_impossible_root(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    one_line_exit_2(cli("data", "fetch", "mnist", "--data-root", blocker / "sub"), str(blocker))
    one_line_exit_2(cli("data", "fetch", "mnist", "--data-root", "/proc/no/such"), "/proc/no")


# ------------------------------------------------------------------------------------- smaller
def test_sigint_says_what_was_saved_and_how_to_resume(tmp_path):
    run = tmp_path / "c"
    cmd = [
        sys.executable,
        "-m",
        "spuriouslab.cli",
        "run",
        "contamination",
        "--set",
        "iterations=200000",
        "--set",
        "log_every=1000",
        "--set",
        "seeds=1",
        "--set",
        "n=40",
        "--set",
        "n_test=40",
        "--set",
        "activation=relu,identity",
        "--set",
        "batch_seeds=false",
        "--no-progress",
        "--out",
        str(run),
    ]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "checkpoints").exists():
        time.sleep(0.2)
    time.sleep(3.0)  # into the training loop
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "run the same command again to resume" in err and "Traceback" not in err


def test_files_are_readable_to_colleagues(cli, tmp_path):
    old = os.umask(0o022)
    try:
        assert cli("run", "contamination", *CONT, "--out", tmp_path / "c")[0] == 0
    finally:
        os.umask(old)
    for name in ("config.yaml", "env.json", "records.jsonl", "summary.md", "results.parquet"):
        assert stat.S_IMODE((tmp_path / "c" / name).stat().st_mode) == 0o644, name


def test_a_streamed_folder_mixing_grey_and_colour_is_refused_as_in_memory(cli, tmp_path):
    from PIL import Image

    from test_distillation import _folder

    _folder(tmp_path / "data")
    Image.fromarray(np.zeros((12, 12), dtype=np.uint8)).save(tmp_path / "data" / "train" / "a" / "0.png")
    common = [
        "--set",
        "task=folder",
        "--set",
        f"data_root={tmp_path / 'data'}",
        "--set",
        "canvas=12",
        "--set",
        "epochs=1",
        "--set",
        "seeds=1",
        "--set",
        "batch_size=4",
        "--set",
        "embed=4",
        "--no-progress",
    ]
    one_line_exit_2(
        cli("run", "distillation", *common, "--set", "teacher_epochs=1", "--out", tmp_path / "m"), "differ in size"
    )
    one_line_exit_2(
        cli(
            "run",
            "distillation",
            *common,
            "--set",
            "teacher=distill_models:linear_teacher",
            "--set",
            "streaming=true",
            "--set",
            "workers=0",
            "--out",
            tmp_path / "s",
        ),
        "mixes greyscale",
    )


def test_estimators_cap_the_width_as_the_cli_does():
    from sklearn.utils._param_validation import InvalidParameterError

    from spuriouslab.kernels.estimators import RandomFeaturesRegressor

    with pytest.raises(InvalidParameterError, match="width"):
        RandomFeaturesRegressor(width=10**10).fit(np.ones((3, 2)), np.ones(3))


def test_log_axes_keep_readable_labels_with_literal_text(tmp_path):
    """Text is shown literally (no mathtext), so log axes get plain labels with superscripts, not TeX source."""
    import matplotlib.pyplot as plt

    from spuriouslab import plotting

    fig, ax = plt.subplots()
    ax.set_xscale("log")
    ax.plot([1e-4, 10], [1, 2])
    plotting.save_figure(fig, tmp_path, "log")
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels and all("$" not in t and "mathdefault" not in t for t in labels), labels
    assert "10\u207b\u2074" in labels  # 10^-4
