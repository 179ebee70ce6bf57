"""The runner API (spuriouslab.run): its result, its typed errors, resume; and the same records from the runner,
the CLI and ``python -m spuriouslab``."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pandas as pd
import pytest

import spuriouslab
from conftest import TINY
from spuriouslab.errors import ConfigError, ExecutorUnavailable, MemoryRefused
from spuriouslab.runner import RunFailed, RunResult, parse_sets

# conftest's TINY memorization grid, as values: 2 N x 2 models x 2 activations x 2 seeds
VALUES: dict[str, Any] = parse_sets([TINY[i + 1] for i in range(0, len(TINY) - 1, 2) if TINY[i] == "--set"])
KEYS = ["n_train", "model", "activation", "seed"]


def table(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[c for c in df if c.startswith("seconds")]).sort_values(KEYS).reset_index(drop=True)


def quiet(**options: Any) -> dict[str, Any]:
    return {"progress": False, "log": None, **options}


def test_run_returns_the_directory_records_verdicts_and_summary(tmp_path):
    lines: list[str] = []
    result = spuriouslab.run("memorization", VALUES, out=tmp_path / "r", progress=False, log=lines.append)
    assert isinstance(result, RunResult) and result.directory == tmp_path / "r" and result.device in ("cpu", "cuda")
    assert len(result.records) == 16 and set(KEYS) <= set(result.records)
    pd.testing.assert_frame_equal(result.records, pd.read_parquet(tmp_path / "r" / "results.parquet"))
    assert result.summary == (tmp_path / "r" / "summary.md").read_text() and "| model |" in result.summary
    assert result.verdicts and {"claim", "verdict"} <= set(result.verdicts[0])
    assert result.sweep.line() == "16 done, 0 failed, 0 skipped (done earlier) of 16 points"
    assert any(line.startswith("spuriouslab: memorization -> ") for line in lines)  # notes to the log, not stdout
    again = spuriouslab.run("memorization", VALUES, out=tmp_path / "r", **quiet())  # resumes: nothing to do
    assert again.sweep.done == 0 and again.sweep.done_before == 16
    pd.testing.assert_frame_equal(again.records, result.records)


def test_typed_errors_before_the_directory_is_touched(tmp_path):
    out = tmp_path / "x"
    with pytest.raises(ConfigError, match="unknown key 'nosuch'"):
        spuriouslab.run("memorization", {"nosuch": 1}, out=out, **quiet())
    with pytest.raises(ConfigError, match="experiment: got 'nosuch'"):
        spuriouslab.run("nosuch", out=out, **quiet())
    with pytest.raises(MemoryRefused, match="memory: the largest group needs"):
        spuriouslab.run("memorization", {"n_train": 10_000_000}, out=out, **quiet())
    with pytest.raises(ConfigError, match="--executor: got 'pbs'"):
        spuriouslab.run("memorization", VALUES, out=out, executor="pbs", **quiet())
    with pytest.raises(ConfigError, match="--device: got 'tpu'"):
        spuriouslab.run("memorization", VALUES, out=out, device="tpu", **quiet())
    assert issubclass(ExecutorUnavailable, ConfigError) and issubclass(MemoryRefused, ConfigError)
    assert not out.exists()


def test_failed_groups_raise_with_the_report_of_the_rest(tmp_path, monkeypatch):
    from spuriouslab.experiments.memorization import EXPERIMENT

    original = type(EXPERIMENT).run_group

    def flaky(self, cfg, points, ctx):
        if points[0]["n_train"] == 30:
            raise FloatingPointError("simulated divergence")
        yield from original(self, cfg, points, ctx)

    monkeypatch.setattr(type(EXPERIMENT), "run_group", flaky)
    with pytest.raises(RunFailed, match="group\\(s\\) failed; see .*errors.jsonl; rerun with --retry-failed") as exc:
        spuriouslab.run("memorization", VALUES, out=tmp_path / "f", **quiet())
    assert exc.value.result is not None and len(exc.value.result.records) == 8  # the N=10 half, reported
    assert exc.value.sweep.failed == 8 and "simulated divergence" in (exc.value.last_error or "")
    partial = spuriouslab.run("memorization", VALUES, out=tmp_path / "g", allow_failures=True, **quiet())
    assert partial.sweep.failed == 8 and len(partial.records) == 8

    def broken(self, cfg, points, ctx):
        raise ValueError("every group fails")

    monkeypatch.setattr(type(EXPERIMENT), "run_group", broken)
    with pytest.raises(RunFailed, match="0 done") as none:
        spuriouslab.run("memorization", VALUES, out=tmp_path / "h", **quiet())
    assert none.value.result is None


def test_sweep_spec_and_report_through_the_runner(tmp_path):
    from spuriouslab import runner

    spec = tmp_path / "s.yaml"
    spec.write_text(
        "experiment: memorization\nd: 40\nn_test: 20\nwidth: 200\nseeds: 1\nn_train: 10\ngrid:\n  d: [40, 60]\n"
    )
    lines: list[str] = []
    result = runner.sweep(spec, {"d": 50}, out=tmp_path / "s", progress=False, log=lines.append)
    assert "--set d replaces the spec's grid over d ([40, 60])" in result.notes[0] and lines[0].endswith(
        result.notes[0]
    )
    assert set(result.records.d) == {50}
    (tmp_path / "s" / "summary.md").unlink()
    assert runner.report([tmp_path / "s"]) == result.summary and (tmp_path / "s" / "summary.md").exists()
    with pytest.raises(ConfigError, match="lies in the run directory"):
        runner.report([tmp_path / "s"], out=tmp_path / "s" / "rep")


def test_the_runner_the_cli_and_python_m_give_the_same_records(cli, tmp_path):
    code, _, err = cli("run", "memorization", *TINY, "--out", tmp_path / "cli")
    assert code == 0, err
    proc = subprocess.run(
        [sys.executable, "-m", "spuriouslab", "run", "memorization", *TINY, "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| model |" in proc.stdout  # the same command: the summary on stdout
    result = spuriouslab.run("memorization", VALUES, out=tmp_path / "api", **quiet())
    via_cli = table(pd.read_parquet(tmp_path / "cli" / "results.parquet"))
    pd.testing.assert_frame_equal(via_cli, table(pd.read_parquet(tmp_path / "m" / "results.parquet")))
    pd.testing.assert_frame_equal(via_cli, table(result.records))
