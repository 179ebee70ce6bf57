import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import TINY


def _run(cli, out, *extra):
    return cli("run", "memorization", *TINY, *extra, "--out", out)


def test_run_writes_every_artefact(cli, tmp_path, monkeypatch):
    """Every file of a run, each figure in the formats asked for (the suite's default is PNG alone: conftest)."""
    monkeypatch.setenv("SPURIOUSLAB_FIGURE_FORMATS", "pdf, SVG")
    out = tmp_path / "run"
    code, stdout, _ = _run(cli, out)
    assert code == 0, stdout
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["experiment"] == "memorization" and cfg["d"] == 40 and cfg["n_train"] == [10, 30]
    assert cfg["activation"] == ["phi2", "relu"] and cfg["width"] == [300]
    env = json.loads((out / "env.json").read_text())
    assert env["device"] == "cpu" and env["versions"]["torch"] and env["base_seed"] == 0
    lines = (out / "records.jsonl").read_text().splitlines()
    df = pd.read_parquet(out / "results.parquet")
    assert len(lines) == len(df) == 2 * 2 * 2 * 2  # N x model x activation x seeds
    for col in [
        "n_train",
        "model",
        "activation",
        "alpha",
        "width",
        "ridge",
        "seed",
        "train_acc",
        "test_acc",
        "spurious_acc",
        "memorization_cov",
        "alignment_mean",
        "stability_mean",
        "residual_max",
        "seconds",
        "gamma_pred",
        "gamma_many",
        "gamma_few",
    ]:
        assert col in df, col
    assert (df.train_acc == 1).all() and (df.residual_max < 1e-6).all()
    for name in ["accuracy_vs_n", "alignment_vs_n", "memorization_vs_bound"]:
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
        assert (out / "figures" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
        assert b"<svg" in (out / "figures" / f"{name}.svg").read_bytes()[:1000]
    assert "| model |" in (out / "summary.md").read_text()
    assert "spurious_acc" in stdout


@pytest.mark.parametrize("formats", ["gif", "png,,jpeg", ","])
def test_bad_figure_formats_end_in_one_line_before_the_run(cli, tmp_path, monkeypatch, formats):
    from conftest import one_line_exit_2

    monkeypatch.setenv("SPURIOUSLAB_FIGURE_FORMATS", formats)
    one_line_exit_2(_run(cli, tmp_path / "r"), "SPURIOUSLAB_FIGURE_FORMATS", "png, pdf, svg")
    assert not (tmp_path / "r").exists()


def test_rerun_skips_completed_points_and_report_rebuilds(cli, tmp_path):
    out = tmp_path / "run"
    assert _run(cli, out)[0] == 0
    before = (out / "records.jsonl").read_text()
    assert _run(cli, out)[0] == 0
    assert (out / "records.jsonl").read_text() == before  # nothing recomputed, nothing duplicated
    # a bigger grid into the same directory computes only the new points
    assert cli("run", "memorization", *TINY, "--set", "seeds=3", "--out", out)[0] == 0
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == 24 and not df.duplicated(["n_train", "model", "activation", "seed"]).any()
    (out / "results.parquet").unlink()
    (out / "summary.md").unlink()
    code, stdout, _ = cli("report", out)
    assert code == 0 and len(pd.read_parquet(out / "results.parquet")) == 24
    assert (out / "summary.md").exists() and "| model |" in stdout


def test_same_config_and_seed_give_identical_records(cli, tmp_path):
    assert _run(cli, tmp_path / "a")[0] == 0
    assert _run(cli, tmp_path / "b")[0] == 0
    a = pd.read_parquet(tmp_path / "a" / "results.parquet").drop(columns="seconds")
    b = pd.read_parquet(tmp_path / "b" / "results.parquet").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)
    c_code = cli("run", "memorization", *TINY, "--set", "seed=1", "--out", tmp_path / "c")[0]
    assert c_code == 0
    c = pd.read_parquet(tmp_path / "c" / "results.parquet").drop(columns="seconds")
    assert not c.test_acc.equals(a.test_acc) and not c.memorization_cov.equals(a.memorization_cov)


def test_nested_mode_and_lists_in_yaml_flow_syntax(cli, tmp_path):
    out = tmp_path / "n"
    code, _, err = cli(
        "run",
        "memorization",
        "--set",
        "d=40",
        "--set",
        "n_train=[10,20,30]",
        "--set",
        "n_test=30",
        "--set",
        "model=ntk",
        "--set",
        "activation=[relu, 'hermite:0,1,0.5']",
        "--set",
        "width=inf",
        "--set",
        "nested=true",
        "--set",
        "seeds=1",
        "--set",
        "ridge=0,0.1",
        "--set",
        "alpha=0.5",
        "--no-progress",
        "--out",
        out,
    )
    assert code == 0, err
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == 3 * 2 * 2 and set(df.activation) == {"relu", "hermite:0,1,0.5"}
    assert set(df.width) == {float("inf")} and set(df.ridge) == {0.0, 0.1}
    assert (df[df.ridge == 0.1].residual_max > 1e-4).all()  # ridge does not interpolate


def test_config_file_and_set_override(cli, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "experiment: memorization\nd: 40\nn_train: [10]\nn_test: 20\nmodel: rf\nactivation: relu\n"
        "width: 200\nseeds: 1\nalpha: 0.5\n"
    )
    out = tmp_path / "r"
    code, _, err = cli("run", "memorization", "--config", cfg, "--set", "n_train=12", "--out", out, "--no-progress")
    assert code == 0, err
    assert list(pd.read_parquet(out / "results.parquet").n_train) == [12]


BAD = [
    (["--set", "foo=1"], "unknown key 'foo'"),
    (["--set", "n_train=abc"], "n_train: got 'abc'"),
    (["--set", "n_train=10,x"], "n_train: got 'x'"),
    (["--set", "n_train=0"], "n_train: got 0; input should be greater than or equal to 1"),
    (["--set", "alpha=1.5"], "alpha: got 1.5; input should be less than 1"),
    (["--set", "model=cnn"], "model: got 'cnn'"),
    (["--set", "activation=swish"], "activation: got 'swish'"),
    (["--set", "activation=hermite:a"], "activation: got 'hermite:a'; a Hermite series is written hermite:c0,"),
    (["--set", "width=-3"], "width: got -3"),
    (["--set", "width=lots"], "width: got 'lots'; expected a positive integer or 'inf'"),
    (["--set", "ridge=-1"], "ridge: got -1; input should be greater than or equal to 0"),
    (["--set", "seeds=0"], "seeds: got 0"),
    (["--set", "d=10", "--set", "alpha=0.01"], "alpha: got 0.01 with d=10"),
    (["--set", "nsamples"], "--set: got 'nsamples'; expected key=value"),
    (["--device", "tpu"], "--device: got 'tpu'"),
    (["--executor", "pbs"], "--executor: got 'pbs'; allowed: local, ray, slurm, submitit-local"),
]


@pytest.mark.parametrize("args,needle", BAD)
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, args, needle):
    code, stdout, stderr = cli("run", "memorization", *args, "--out", tmp_path / "x", "--no-progress")
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert needle in lines[0] and "Traceback" not in stderr
    assert not (tmp_path / "x" / "records.jsonl").exists()


def test_bad_config_files(cli, tmp_path):
    cases = {"a.yaml": "d: [1, 2\n", "b.yaml": "- 1\n- 2\n", "c.yaml": "experiment: other\n"}
    needles = {"a.yaml": "not valid YAML", "b.yaml": "must hold a mapping", "c.yaml": "is for experiment 'other'"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        code, _, stderr = cli("run", "memorization", "--config", tmp_path / name)
        assert code == 2 and needles[name] in stderr and len(stderr.strip().splitlines()) == 1
    code, _, stderr = cli("run", "memorization", "--config", tmp_path / "missing.yaml")
    assert code == 2 and "does not exist" in stderr


def test_unknown_experiment_and_bad_report_dir(cli, tmp_path):
    code, _, stderr = cli("run", "nosuch")
    assert code == 2 and "experiment: got 'nosuch'" in stderr
    code, _, stderr = cli("report", tmp_path)
    assert code == 2 and "no config.yaml" in stderr


def test_cuda_requested_without_gpu(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, _, stderr = cli("run", "memorization", "--device", "cuda", "--out", tmp_path / "x")
    assert code == 2 and "no CUDA device" in stderr


def test_resume_refuses_a_different_fixed_setting(cli, tmp_path):
    out = tmp_path / "run"
    assert _run(cli, out)[0] == 0
    code, _, stderr = cli("run", "memorization", *TINY, "--set", "n_test=60", "--out", out)
    assert code == 2 and "n_test=50" in stderr and "n_test=60" in stderr


def test_list_shows_fields_defaults_and_commands(cli):
    code, stdout, _ = cli("list")
    assert code == 0
    assert "memorization:" in stdout and "n_train" in stdout and "[10, 20, 50, 100, 200, 500, 1000]" in stdout
    assert "spuriouslab theory gamma" in stdout and "hermite:c0,c1" in stdout


def test_theory_gamma_command(cli):
    code, stdout, _ = cli("theory", "gamma", "--activation", "phi2", "--alpha", "0.5", "--model", "rf")
    assert code == 0 and "gamma(N<<d)=0.375000" in stdout and "gamma(N>>d)=0.250000" in stdout
    code, stdout, _ = cli("theory", "gamma", "--activation", "relu", "--n", "100", "--d", "1000")
    assert code == 0 and stdout.count("gamma(N=100") == 2
    code, _, stderr = cli("theory", "gamma", "--alpha", "2")
    assert code == 2 and "--alpha: got 2.0" in stderr
    code, _, stderr = cli("theory", "gamma", "--n", "5")
    assert code == 2 and "--n and --d go together" in stderr


def test_process_pool_executor_gives_the_same_records(cli, tmp_path):
    assert _run(cli, tmp_path / "one")[0] == 0
    assert _run(cli, tmp_path / "two", "--jobs", "2")[0] == 0
    keys = ["n_train", "model", "activation", "seed"]
    a = pd.read_parquet(tmp_path / "one" / "results.parquet").drop(columns="seconds").sort_values(keys)
    b = pd.read_parquet(tmp_path / "two" / "results.parquet").drop(columns="seconds").sort_values(keys)
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_a_failing_group_is_recorded_and_retried(cli, tmp_path, monkeypatch):
    from spuriouslab.experiments.memorization import EXPERIMENT

    original = type(EXPERIMENT).run_group

    def flaky(self, cfg, points, ctx):
        if points[0]["n_train"] == 30:
            raise FloatingPointError("simulated divergence")
        yield from original(self, cfg, points, ctx)

    monkeypatch.setattr(type(EXPERIMENT), "run_group", flaky)
    out = tmp_path / "f"
    code, _, stderr = _run(cli, out)
    assert code == 1 and "group(s) failed" in stderr
    assert "simulated divergence" in (out / "errors.jsonl").read_text()
    assert len(pd.read_parquet(out / "results.parquet")) == 8  # the N=10 half
    monkeypatch.setattr(type(EXPERIMENT), "run_group", original)
    code, _, stderr = _run(cli, out)  # failed points are skipped by a rerun ...
    assert code == 0 and "8 skipped (failed earlier" in stderr
    assert len(pd.read_parquet(out / "results.parquet")) == 8
    assert _run(cli, out, "--retry-failed")[0] == 0  # ... and run again on request
    assert len(pd.read_parquet(out / "results.parquet")) == 16


def test_ray_executor_without_ray_is_a_one_line_error(cli, tmp_path):
    import importlib.util

    if importlib.util.find_spec("ray") is not None:
        pytest.skip("ray is installed here")
    code, _, stderr = _run(cli, tmp_path / "r", "--executor", "ray")
    assert code == 2 and "Ray is not installed" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_float64_features_through_the_cli(cli, tmp_path):
    code, _, err = _run(cli, tmp_path / "f", "--set", "feature_dtype=float64")
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "f" / "results.parquet")
    assert (df.residual_max < 1e-9).all()
    code, _, stderr = _run(cli, tmp_path / "g", "--set", "feature_dtype=float16")
    assert code == 2 and "feature_dtype: got 'float16'" in stderr


def test_hermite_items_in_comma_lists(cli, tmp_path):
    out = tmp_path / "h"
    code, _, err = cli(
        "run",
        "memorization",
        "--set",
        "d=30",
        "--set",
        "n_train=10",
        "--set",
        "n_test=20",
        "--set",
        "model=rf",
        "--set",
        "width=inf",
        "--set",
        "seeds=1",
        "--set",
        "alpha=0.5",
        "--set",
        "activation=relu,hermite:0,1,0.5,phi2,hermite:0.1,1",
        "--no-progress",
        "--out",
        out,
    )
    assert code == 0, err
    acts = list(dict.fromkeys(pd.read_parquet(out / "results.parquet").activation))
    assert acts == ["relu", "hermite:0,1,0.5", "phi2", "hermite:0.1,1"]


def test_a_run_directory_of_another_experiment_is_refused(cli, tmp_path):
    out = tmp_path / "run"
    assert _run(cli, out)[0] == 0
    before = (out / "config.yaml").read_text()
    code, _, stderr = cli("run", "ridge", "--set", "d=40", "--set", "n_train=10", "--out", out, "--no-progress")
    assert code == 2 and "holds a 'memorization' run, not 'ridge'" in stderr
    assert (out / "config.yaml").read_text() == before


def test_report_rebuilds_contamination_and_nn_runs(cli, tmp_path):
    cont = tmp_path / "c"
    assert (
        cli(
            "run",
            "contamination",
            "--set",
            "activation=relu,identity",
            "--set",
            "iterations=40",
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
            "--out",
            cont,
            "--no-progress",
        )[0]
        == 0
    )
    nn = tmp_path / "n"
    assert (
        cli(
            "run",
            "memorization-nn",
            "--set",
            "n_train=50",
            "--set",
            "epochs=2",
            "--set",
            "log_every=1",
            "--set",
            "seeds=2",
            "--set",
            "n_test=50",
            "--set",
            "model=fc",
            "--out",
            nn,
            "--no-progress",
        )[0]
        == 0
    )
    for out, figures, needle in [
        (cont, ["losses", "projections", "asymmetry", "background_by_activation"], "# Feature contamination"),
        (nn, ["nn_accuracy_vs_n", "nn_curves"], "# Trained networks"),
    ]:
        summary = (out / "summary.md").read_text()
        table = pd.read_parquet(out / "results.parquet")
        for f in figures:
            (out / "figures" / f"{f}.png").unlink()
        (out / "summary.md").unlink()
        (out / "results.parquet").unlink()
        code, stdout, err = cli("report", out)
        assert code == 0, err
        assert needle in stdout and (out / "summary.md").read_text() == summary
        pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), table)
        for f in figures:
            assert (out / "figures" / f"{f}.png").stat().st_size > 1000, f


def test_swap_queries_through_the_cli(cli, tmp_path):
    args = [
        "run",
        "memorization",
        "--set",
        "data=digits",
        "--set",
        "n_train=20",
        "--set",
        "n_test=60",
        "--set",
        "model=rf",
        "--set",
        "width=inf",
        "--set",
        "seeds=2",
        "--no-progress",
    ]
    assert cli(*args, "--set", "query=swap", "--out", tmp_path / "s")[0] == 0
    assert cli(*args, "--out", tmp_path / "z")[0] == 0
    swap = pd.read_parquet(tmp_path / "s" / "results.parquet")
    zero = pd.read_parquet(tmp_path / "z" / "results.parquet")
    # same training data, same model: only the queries differ
    pd.testing.assert_series_equal(swap.test_acc, zero.test_acc)
    assert not np.allclose(swap.alignment_mean, zero.alignment_mean)
    code, _, stderr = cli(*args, "--set", "query=swap", "--set", "n_train=1", "--out", tmp_path / "x")
    assert code == 2 and "query=swap needs at least 2 training samples" in stderr
