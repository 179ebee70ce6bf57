"""Divergence, the same in every trained experiment (one trainer): a seed whose loss became non-finite or exceeded
the bound is recorded with status=diverged, the step it was seen at and why; the run goes on, and a rerun does not
retry it.  (The trainer itself: test_trainer.py.)"""

from __future__ import annotations

import pandas as pd

from conftest import one_line_exit_2, sets


def test_contamination_divergence_is_recorded_per_seed_and_not_retried(cli, tmp_path):
    args = [
        "run", "contamination", *sets("lr=1e6", "iterations=100", "log_every=50", "seeds=2", "n=50", "n_test=50"),
        *sets("width=16"), "--out", tmp_path / "d", "--no-progress",
    ]  # fmt: skip
    code, stdout, _ = cli(*args)
    assert code == 0 and "diverged" in stdout
    df = pd.read_parquet(tmp_path / "d" / "results.parquet")
    assert len(df) == 2 and (df.status == "diverged").all() and df.error.str.contains("by step 50").all()
    assert (df.diverged_at == 50).all()
    before = (tmp_path / "d" / "records.jsonl").read_text()
    assert cli(*args)[0] == 0
    assert (tmp_path / "d" / "records.jsonl").read_text() == before and not (tmp_path / "d" / "errors.jsonl").exists()
    one_line_exit_2(cli("run", "contamination", "--set", "lr=inf", "--out", tmp_path / "x"), "lr: got 'inf'")
    one_line_exit_2(cli("run", "memorization-nn", "--set", "lr=nan", "--out", tmp_path / "x"), "lr: got 'nan'")


def test_a_huge_but_finite_nn_loss_is_diverged_not_ok(cli, tmp_path):
    code, _, err = cli(
        "run", "memorization-nn", *sets("lr=1e6", "n_train=50", "epochs=4", "log_every=2", "seeds=2", "n_test=50"),
        *sets("model=fc"), "--out", tmp_path / "n", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "n" / "results.parquet")
    assert (df.status == "diverged").all(), df[["status", "train_loss"]]
    assert df.diverged_at.notna().all() and df.error.str.contains("by step", regex=False).all()
