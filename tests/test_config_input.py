"""Bad input, as a careful user meets it through the CLI: values, grid lists, sizes, config files, output paths and
user code.  Each is refused before anything is computed, in one line naming the input, with exit status 2; or it
gives the correct result.  (Data files: test_data_files.py; run directories and records: test_store_integrity.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ENV, TINY, one_line_exit_2, sets

CONT = [*sets("iterations=20", "log_every=10", "seeds=2", "n=40", "n_test=40"), "--no-progress"]
BG = [
    *sets("data=digits", "n_train=100", "n_test=40", "epochs=1", "seeds=1", "vis_channels=2", "vis_steps=2"),
    *sets("vis_rounds=1", "cam_images=10", "batch_size=50", "depth=8", "pipeline=padded"),
    "--no-progress",
]
DIST = [
    *sets("epochs=6", "teacher_epochs=6", "log_every=3", "seeds=1", "n=60", "n_test=40", "width=16", "embed=4"),
    "--no-progress",
]


# ------------------------------------------------------------------------------------------------ values
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
def test_bad_values_are_one_line(cli, tmp_path, args, needle):
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
def test_bad_values_of_the_newer_experiments(cli, tmp_path, experiment, args, needle):
    base = BG if experiment == "background-features" else DIST
    one_line_exit_2(cli("run", experiment, *base, *args, "--out", tmp_path / "x"), needle)
    assert not (tmp_path / "x").exists()


def test_numbers_parse_as_researchers_write_them(cli, tmp_path):
    from spuriouslab.experiments import get_experiment

    exp = get_experiment("memorization")
    code, _, err = cli(
        "run", "memorization", *TINY, *sets("n_train=10", "activation=relu", "width=1e3", "n_test=5e1"),
        "--out", tmp_path / "r",
    )  # fmt: skip
    assert code == 0, err
    cfg = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert cfg["width"] == [1000] and cfg["n_test"] == 50
    assert all(type(v) is int for v in (*cfg["width"], cfg["n_test"]))
    assert exp.make_config({"width": "1.0e+5"}).width == [100000]
    one_line_exit_2(
        cli("run", "memorization", "--set", "seeds=1_0", "--out", tmp_path / "x"), "write numbers without underscores"
    )
    one_line_exit_2(cli("run", "memorization", "--set", "d=true", "--out", tmp_path / "x"), "a boolean is not a number")
    one_line_exit_2(cli("run", "memorization", "--set", "n_test=2.5", "--out", tmp_path / "x"), "n_test: got 2.5")


# --------------------------------------------------------------------------------------------- grid lists
@pytest.mark.parametrize(
    "args,needle",
    [
        (["n_train=[]"], "n_train: got an empty list"),
        (["n_train=20,20"], "20 appears twice"),
        (["activation=relu,relu"], "'relu' appears twice"),
    ],
)
def test_empty_and_duplicate_grid_values(cli, tmp_path, args, needle):
    one_line_exit_2(cli("run", "memorization", *sets(*args), "--out", tmp_path / "x"), needle)
    assert not (tmp_path / "x").exists()


def test_duplicates_in_a_sweep_spec_and_integer_log_ranges(cli, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "experiment: contamination\niterations: 20\nlog_every: 10\nseeds: 1\nn: 40\nn_test: 40\n"
        "grid:\n  width: [8, 8.0]\n"
    )
    one_line_exit_2(cli("sweep", spec, "--out", tmp_path / "x"), "each grid value once")
    from spuriouslab.sweep import expand_values

    assert expand_values({"log": [8, 64, 4]}, "width") == [8, 16, 32, 64]
    assert all(isinstance(v, int) for v in expand_values({"log": [8, 64, 4]}, "width"))


def test_a_set_on_a_swept_field_replaces_the_spec_grid(cli, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "experiment: contamination\niterations: 10\nlog_every: 5\nseeds: 1\nn: 20\nn_test: 20\n"
        "grid:\n  width: [8, 16]\n"
    )
    code, _, err = cli("sweep", spec, "--set", "width=12", "--out", tmp_path / "s", "--no-progress")
    assert code == 0 and "replaces the spec's grid over width" in err, err
    assert "width: 12" in (tmp_path / "s" / "config.yaml").read_text()
    assert len((tmp_path / "s" / "records.jsonl").read_text().splitlines()) == 1  # one point: no grid left


# -------------------------------------------------------------------------------------------------- sizes
@pytest.mark.parametrize(
    "experiment,args,needle",
    [
        ("memorization", ["n_train=10000000"], "memory: the largest group needs"),
        ("memorization", ["d=10000000"], "memory: the largest group needs"),
        ("memorization", ["seeds=1000000000"], "seeds: got 1000000000"),
        ("memorization", ["width=1e12"], "use the infinite-width kernel"),
        ("memorization", ["n_test=1e9"], "n_test: got 1000000000"),
        ("memorization", ["n_test=1e8"], "memory: the largest group needs"),
        ("contamination", ["n=1e9"], "n: got 1000000000"),
        ("contamination", ["d=1e7"], "memory: the largest group needs"),
        ("contamination", ["width=1e9"], "width: got 1000000000"),
        ("memorization-nn", ["seeds=1e8"], "seeds: got 100000000"),
        ("memorization-nn", ["border=100000"], "border: got 100000"),
        ("memorization-nn", ["border=4000"], "memory: the largest group needs"),
    ],
)
def test_impossible_sizes_are_refused_up_front(cli, tmp_path, experiment, args, needle):
    one_line_exit_2(cli("run", experiment, *sets(*args), "--out", tmp_path / "x", "--no-progress"), needle)
    assert not (tmp_path / "x").exists()


def test_the_estimate_is_printed_before_a_run(tiny_run):
    code, _, stderr = tiny_run.output("memorization")
    assert code == 0 and "largest group" in stderr and "GB available" in stderr


def test_estimators_cap_the_width_as_the_cli_does():
    from sklearn.utils._param_validation import InvalidParameterError

    from spuriouslab.kernels.estimators import RandomFeaturesRegressor

    with pytest.raises(InvalidParameterError, match="width"):
        RandomFeaturesRegressor(width=10**10).fit(np.ones((3, 2)), np.ones(3))


# ------------------------------------------------------------------------------- config files and output paths
def test_bad_config_files_and_output_paths(cli, tmp_path):
    (tmp_path / "bin.yaml").write_bytes(b"\x00\x01\x02\xff")
    one_line_exit_2(cli("run", "memorization", "--config", tmp_path / "bin.yaml"), "is a binary file")
    (tmp_path / "latin.yaml").write_bytes("d: 40\nnote: caf\xe9\n".encode("latin-1"))
    one_line_exit_2(cli("run", "memorization", "--config", tmp_path / "latin.yaml"), "is not UTF-8 text")
    (tmp_path / "dup.yaml").write_text("d: 40\nd: 50\n")
    one_line_exit_2(cli("run", "memorization", "--config", tmp_path / "dup.yaml"), "duplicate key 'd'")
    (tmp_path / "afile").write_text("x")
    one_line_exit_2(cli("run", "memorization", *TINY, "--out", tmp_path / "afile"), "exists and is not a directory")
    one_line_exit_2(cli("run", "memorization", *TINY, "--out", tmp_path / "afile" / "sub"), "lies under a file")


def test_a_read_only_run_directory(cli, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **k: False if Path(p) == ro and mode & os.W_OK else real(p, mode, **k)
    )
    one_line_exit_2(cli("run", "memorization", *TINY, "--out", ro), "not writable")
    assert list(ro.iterdir()) == []
    if os.geteuid() != 0:  # root writes anywhere; elsewhere, a real read-only parent
        parent = tmp_path / "locked"
        parent.mkdir(mode=0o500)
        one_line_exit_2(cli("run", "memorization", *TINY, "--out", parent / "run"), "permission denied")


def test_an_output_path_that_is_not_utf8(tmp_path):
    bad = os.fsencode(str(tmp_path)) + b"/run-\xff"
    res = subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"spuriouslab.cli", b"run", b"memorization",
         *[a.encode() for a in TINY], b"--out", bad],
        env=ENV, capture_output=True, timeout=120,
    )  # fmt: skip
    err = res.stderr.decode("utf-8", "replace")
    one_line_exit_2((res.returncode, "", err), "not valid UTF-8")
    assert not os.path.exists(bad)


# --------------------------------------------------------------------------------------- user code and models
def test_a_users_teacher_has_no_activation_axis(cli, tmp_path):
    from spuriouslab.experiments import get_experiment

    exp = get_experiment("distillation")
    assert exp.make_config({"teacher": "distill_models:linear_teacher"}).activation == ["relu"]
    assert exp.make_config({}).activation == ["relu", "identity"]  # the built-in MLP student's axis stays
    one_line_exit_2(
        cli(
            "run", "distillation", *DIST, *sets("teacher=distill_models:linear_teacher", "activation=relu,identity"),
            "--out", tmp_path / "x",
        ),
        "activation",
        "one value only",
    )  # fmt: skip


def test_a_model_with_nan_logits_is_refused_not_measured(cli, tmp_path):
    one_line_exit_2(
        cli("probe", "probe_models:nan_logits", *sets("data=digits", "eval_border=1"), "--out", tmp_path / "p"),
        "non-finite logits",
    )
    assert not (tmp_path / "p" / "records.jsonl").exists()


def test_empty_checkpoints_and_silent_exceptions_are_one_line(cli, tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    one_line_exit_2(
        cli(
            "probe", "probe_models:centre_only", "--checkpoint", empty, "--set", "data=digits", "--out", tmp_path / "p"
        ),
        "empty.pt",
    )
    user_teacher = sets("teacher=distill_models:linear_teacher", "task=digits-background")
    one_line_exit_2(
        cli(
            "run", "distillation", *DIST, *user_teacher, "--set", f"teacher_checkpoint={empty}", "--out", tmp_path / "d"
        ),
        "teacher_checkpoint",
    )
    one_line_exit_2(
        cli("run", "distillation", *DIST, *user_teacher, "--set", "teacher_checkpoint=", "--out", tmp_path / "d2"),
        "teacher_checkpoint",
    )
    line = one_line_exit_2(
        cli("probe", "probe_models:silent", *sets("data=digits", "eval_border=1"), "--out", tmp_path / "s"),
        "RuntimeError",
    )
    assert "IndexError" not in line
