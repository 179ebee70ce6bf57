import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from spuriouslab.experiments import get_experiment
from spuriouslab.sweep import expand_values, make_plan

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
CONT = [
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
    "--no-progress",
]


def test_plans_sweep_any_field_with_stable_points():
    exp = get_experiment("contamination")
    plan = make_plan(exp, {"width": "16,32", "lr": [1e-3, 1e-2], "activation": "relu,identity", "seeds": 2})
    assert plan.grid == {"width": [16, 32], "lr": [0.001, 0.01]} and len(plan.configs) == 4
    assert plan.base.activation == ["relu", "identity"]  # an axis stays an axis
    points = [p for _, p in plan.points()]
    assert len(points) == 4 * 2 * 2 and {"width", "lr", "activation", "seed"} <= set(points[0])
    again = make_plan(exp, {"seeds": 2, "activation": "relu,identity"}, {"lr": [1e-3, 1e-2], "width": [16, 32]})
    assert sorted(json.dumps(p, sort_keys=True) for _, p in again.points()) == sorted(
        json.dumps(p, sort_keys=True) for p in points
    )
    assert expand_values({"range": [64, 256, 64]}, "width") == [64, 128, 192, 256]
    assert expand_values({"log": [1e-4, 1e-2, 3]}, "lr") == pytest.approx([1e-4, 1e-3, 1e-2])
    mem = get_experiment("memorization")
    plan = make_plan(  # commas of a string stay whole
        mem, {"d": [40, 60], "data": "digits", "classes": [1, 7], "border_content": "constant:1,2,3"}
    )
    assert plan.grid == {"d": [40, 60]}


def test_run_with_a_list_on_any_field_and_its_report(cli, tmp_path):
    out = tmp_path / "w"
    code, stdout, err = cli("run", "contamination", *CONT, "--set", "width=16,32", "--out", out)
    assert code == 0, err
    df = pd.read_parquet(out / "results.parquet")
    assert sorted(df.width.unique()) == [16, 32] and len(df) == 4  # one column per swept field
    assert "# Sweep: contamination over width" in stdout and "4 done, 0 failed" in err
    by_setting = stdout.split("## Verdicts by setting")[1].split("\n## ")[0]  # each setting's verdicts, one table
    assert (
        "| width | claim | effect | low | high | n_seeds | p | verdict | adjusted | seeds_to_decide |" in by_setting
        and by_setting.count("| 16 |") == by_setting.count("| 32 |") >= 1
    )
    assert (out / "figures" / "sweep_width.png").exists() and (out / "figures" / "width-16__losses.png").exists()
    cfg = (out / "config.yaml").read_text()
    assert "grid:" in cfg and "width:\n  - 16\n  - 32" in cfg
    code, _, err = cli("run", "contamination", *CONT, "--set", "width=16,32,48", "--out", out)  # extend the grid
    assert code == 0 and "2 done, 0 failed, 4 skipped (done earlier)" in err
    assert len(pd.read_parquet(out / "results.parquet")) == 6


def test_sweep_spec_with_ranges_and_bad_specs(cli, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "experiment: contamination\niterations: 40\nlog_every: 20\nseeds: 1\nn: 60\nn_test: 60\n"
        "grid:\n  width: {range: [16, 32, 16]}\n  lr: [0.001, 0.01]\n"
    )
    code, stdout, err = cli("sweep", spec, "--out", tmp_path / "s", "--no-progress")
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "s" / "results.parquet")
    assert len(df) == 4 and sorted(set(zip(df.width, df.lr, strict=True))) == [
        (16, 0.001),
        (16, 0.01),
        (32, 0.001),
        (32, 0.01),
    ]
    for text, needle in [
        ("experiment: contamination\ngrid:\n  nosuch: [1, 2]\n", "grid: unknown key 'nosuch'"),
        ("experiment: contamination\ngrid:\n  width: [16, 16]\n", "each grid value once"),
        ("experiment: contamination\ngrid:\n  width: {range: [1, 2]}\n", "a range is"),
        ("experiment: contamination\ngrid:\n  width: [16, 33]\n", "width: got 33"),
        ("grid: {width: [1]}\n", "needs 'experiment:'"),
    ]:
        spec.write_text(text)
        code, _, stderr = cli("sweep", spec, "--out", tmp_path / "x")
        assert code == 2 and needle in stderr and len(stderr.strip().splitlines()) == 1, (text, stderr)
    assert not (tmp_path / "x").exists()


def test_a_failing_point_does_not_stop_the_others_and_is_retried_on_request(cli, tmp_path, monkeypatch):
    from spuriouslab.experiments.contamination import EXPERIMENT

    original = type(EXPERIMENT).run_group

    def flaky(self, cfg, points, ctx):
        if cfg.width == 32:
            raise FloatingPointError("simulated failure")
        yield from original(self, cfg, points, ctx)

    monkeypatch.setattr(type(EXPERIMENT), "run_group", flaky)
    out = tmp_path / "f"
    code, _, err = cli("run", "contamination", *CONT, "--set", "width=16,32,48", "--out", out)
    assert code == 1 and "4 done, 2 failed" in err and "--retry-failed" in err
    assert "simulated failure" in (out / "errors.jsonl").read_text()
    monkeypatch.setattr(type(EXPERIMENT), "run_group", original)
    code, _, err = cli("run", "contamination", *CONT, "--set", "width=16,32,48", "--out", out)
    assert code == 0 and "2 skipped (failed earlier" in err and len(pd.read_parquet(out / "results.parquet")) == 4
    code, _, err = cli("run", "contamination", *CONT, "--set", "width=16,32,48", "--out", out, "--retry-failed")
    assert code == 0 and "2 done, 0 failed, 4 skipped (done earlier)" in err
    assert len(pd.read_parquet(out / "results.parquet")) == 6


def test_an_interrupted_sweep_resumes_with_every_point_done_once(cli, tmp_path):
    """A sweep over two fields stopped right after its fourth record (two groups of two seeds) resumes to the
    uninterrupted table, every point once (a real SIGKILL of a real process: test_signals.py)."""
    from conftest import interrupt_and_resume

    args = ["run", "contamination", *CONT, "--set", "width=16,32", "--set", "lr=0.001,0.002"]
    assert cli(*args, "--out", tmp_path / "full")[0] == 0
    out = tmp_path / "interrupted"
    interrupt_and_resume(cli, args, out, "records", 4)
    assert (out / "records.jsonl").read_text().count("\n") == 4
    assert cli(*args, "--out", out)[0] == 0
    keys = ["width", "lr", "activation", "loss", "optimizer", "seed"]
    drop = lambda t: t.drop(columns="seconds").sort_values(keys).reset_index(drop=True)  # noqa: E731
    a, b = drop(pd.read_parquet(tmp_path / "full" / "results.parquet")), drop(pd.read_parquet(out / "results.parquet"))
    assert len(b) == 8 and not b.duplicated(keys).any()
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.skipif(__import__("importlib").util.find_spec("ray") is None, reason="Ray not installed")
def test_the_same_sweep_on_ray_gives_the_same_table(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "spuriouslab.cli",
        "run",
        "contamination",
        "--set",
        "width=16,32",
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
        "--no-progress",
    ]
    from spuriouslab import runner

    env = {k: v for k, v in ENV.items() if k != "RAY_ADDRESS"}
    # the reference: the same sweep run locally, in this process
    local = {"width": [16, 32], "iterations": 40, "log_every": 20, "seeds": 2, "n": 60, "n_test": 60}
    runner.run("contamination", local, out=tmp_path / "local", progress=False, log=None, device="cpu")
    res = subprocess.run(
        [*cmd, "--out", str(tmp_path / "ray"), "--executor", "ray"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    keys = ["width", "activation", "seed"]
    drop = lambda t: t.drop(columns="seconds").sort_values(keys).reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(
        drop(pd.read_parquet(tmp_path / "local" / "results.parquet")),
        drop(pd.read_parquet(tmp_path / "ray" / "results.parquet")),
    )
    env_json = json.loads((tmp_path / "ray" / "env.json").read_text())
    assert env_json["executor"] == "ray"


def test_reproduce_lists_and_runs_a_named_figure(cli, tmp_path):
    code, stdout, _ = cli("reproduce", "--list")
    assert code == 0 and "zh-distillation" in stdout and "bm-synthetic" in stdout and "2 CPU cores" in stdout
    from spuriouslab.figures import FIGURES, config_path

    for name in FIGURES:
        assert config_path(name).is_file(), name
    code, _, err = cli(
        "reproduce",
        "zh-theory",
        "--set",
        "iterations=40",
        "--set",
        "log_every=20",
        "--set",
        "seeds=1",
        "--set",
        "n=50",
        "--set",
        "n_test=50",
        "--out",
        tmp_path / "z",
        "--no-progress",
    )
    assert code == 0, err
    assert (tmp_path / "z" / "summary.md").exists()
    code, _, err = cli("reproduce", "nosuch")
    assert code == 2 and "reproduce: got 'nosuch'" in err


def test_paper_configs_follow_the_official_code():
    import yaml

    from spuriouslab.figures import config_path

    for name in ["bm-nn-mnist", "bm-nn-resnet"]:  # the official main_NN.py trains on raw 0..255 pixels
        assert yaml.safe_load(config_path(name).read_text())["scaling"] == "raw"
    assert yaml.safe_load(config_path("zh-toy").read_text())["seed"] == 2024
    padded = yaml.safe_load(config_path("zh-padded-cifar").read_text())
    assert padded["colour"] == "brick" and padded["border"] == 8 and padded["preset"] == "paper"
