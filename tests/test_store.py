import os
import signal
import subprocess
import sys

import pandas as pd

from spuriouslab.store import RunStore


def test_truncated_last_line_is_dropped_and_overwritten(tmp_path):
    st = RunStore(tmp_path)
    st.append([{"a": 1, "seed": 0}, {"a": 2, "seed": 0}])
    with open(st.records_path, "a") as fh:
        fh.write('{"a": 3, "se')  # a crash mid-write
    assert [r["a"] for r in st.records()] == [1, 2]
    st.append([{"a": 4, "seed": 0}])
    assert [r["a"] for r in st.records()] == [1, 2, 4]
    assert st.records_path.read_text().count("\n") == 3


CMD = [
    sys.executable,
    "-m",
    "spuriouslab.cli",
    "run",
    "memorization",
    "--set",
    "d=300",
    "--set",
    "n_train=20,60,150",
    "--set",
    "n_test=300",
    "--set",
    "model=rf",
    "--set",
    "activation=relu,phi2,tanh",
    "--set",
    "width=20000",
    "--set",
    "seeds=2",
    "--set",
    "alpha=0.5,0.25",
    "--no-progress",
]


def test_sigkill_then_restart_gives_the_uninterrupted_table(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    full = tmp_path / "full"
    subprocess.run([*CMD, "--out", str(full)], check=True, env=env, capture_output=True)
    killed = tmp_path / "killed"
    # killed right after the group that brings it to 5 records is on disk
    proc = subprocess.run(
        [*CMD, "--out", str(killed)], env={**env, "SPURIOUSLAB_KILL_AFTER": "records:5"}, capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL
    records = killed / "records.jsonl"
    n_before = records.read_text().count("\n")
    assert 5 <= n_before < 36, "the kill should land mid-sweep"
    subprocess.run([*CMD, "--out", str(killed)], check=True, env=env, capture_output=True)
    keys = ["n_train", "activation", "alpha", "seed"]
    a = pd.read_parquet(full / "results.parquet").drop(columns="seconds").sort_values(keys).reset_index(drop=True)
    b = pd.read_parquet(killed / "results.parquet").drop(columns="seconds").sort_values(keys).reset_index(drop=True)
    assert len(b) == 36 and not b.duplicated(keys).any()
    pd.testing.assert_frame_equal(a, b)
