"""The run directory (spuriouslab.store): one writer at a time, records never trusted blindly (cut, garbage, foreign,
duplicated or empty lines), a group's records all or none, files readable to colleagues, and env.json saying what
each process ran with."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from conftest import HERE, assert_resumes_identically, records, results, spawned
from spuriouslab.store import RunStore


# -------------------------------------------------------------------------------------------- one writer
def test_two_runs_into_one_directory_one_runs_the_other_exits_2(cli, tmp_path, tiny_run):
    """The first run is held right after its first group is on disk (its lock held); the second, in another
    process, is refused at once naming the first's pid; the first then completes with the uninterrupted table."""
    out, go = tmp_path / "run", tmp_path / "go"
    args = tiny_run.args("memorization")
    cmd = [sys.executable, str(HERE / "signal_at.py"), "records:1", f"wait={go}", *args, "--out", str(out)]
    with spawned(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as first:
        deadline = time.time() + 120
        while not (tmp_path / "go.held").exists():  # signal_at.py: at its point
            assert first.poll() is None, first.stderr.read().decode(errors="replace")
            assert time.time() < deadline, "the first run never reached its point"
            time.sleep(0.05)
        code, _, err = cli(*args, "--out", out)
        assert code == 2 and f"is in use by pid {first.pid}" in err and len(err.strip().splitlines()) == 1, err
        go.touch()
        assert first.wait(timeout=300) == 0, first.stderr.read().decode(errors="replace")
    assert_resumes_identically(tiny_run("memorization"), out)


def test_store_lock_names_its_holder(tmp_path):
    a, b = RunStore(tmp_path), RunStore(tmp_path)
    a.lock()
    proc = subprocess.run(
        [sys.executable, "-c", f"from spuriouslab.store import RunStore; RunStore({str(tmp_path)!r}).lock()"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and f"in use by pid {os.getpid()}" in proc.stderr
    a.unlock()
    b.lock()
    b.unlock()


# ------------------------------------------------------------------------------------ records not trusted
def test_a_truncated_last_line_is_dropped_and_overwritten(tmp_path):
    st = RunStore(tmp_path)
    st.append([{"a": 1, "seed": 0}, {"a": 2, "seed": 0}])
    with open(st.records_path, "a") as fh:
        fh.write('{"a": 3, "se')  # a crash mid-write
    assert [r["a"] for r in st.records()] == [1, 2]
    st.append([{"a": 4, "seed": 0}])
    assert [r["a"] for r in st.records()] == [1, 2, 4]
    assert st.records_path.read_text().count("\n") == 3


def test_a_garbage_or_foreign_middle_line_is_skipped_and_its_point_recomputed(cli, tmp_path, tiny_run):
    out = tiny_run.copy("memorization", tmp_path / "run")
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 16
    lines[3] = "this is not JSON {"
    lines[5] = json.dumps({"foreign": 1, "seed": 0})
    lines.insert(7, lines[8])  # a duplicate of another record
    (out / "records.jsonl").write_text("\n".join(lines) + "\n")
    code, stdout, stderr = cli("report", out)
    assert code == 0 and "records.jsonl:4: not a JSON record" in stderr and "records.jsonl:6:" in stderr
    assert "counted once" in stderr and "Traceback" not in stderr
    assert len(pd.read_parquet(out / "results.parquet")) == 14  # 16 less the two bad lines, duplicate once
    code, _, stderr = cli(*tiny_run.args("memorization"), "--out", out)
    assert code == 0, stderr
    again = results(out)
    assert len(again) == 16 and not again.point_id.duplicated().any()
    pd.testing.assert_frame_equal(again, results(tiny_run("memorization")), check_exact=True)


def test_report_on_foreign_or_garbage_records(cli, tmp_path, tiny_run):
    out = tiny_run.copy("memorization", tmp_path / "run")
    (out / "records.jsonl").write_text(
        '{"n_train": "x", "model": 3, "activation": null, "alpha": [], "width": 1, '
        '"ridge": 0, "correlation": 0, "seed": 0, "test_acc": 1}\n\x00\x01garbage\n'
    )
    code, _, stderr = cli("report", out)
    lines = stderr.strip().splitlines()
    assert code == 2 and "Traceback" not in stderr and len(lines) == 3
    assert "records.jsonl:2: not a JSON record" in lines[0] and "1 record(s) outside this run's grid" in lines[1]
    assert lines[2].endswith("no completed records to report")


def test_a_record_of_only_its_point_is_recomputed(cli, tmp_path, tiny_run):
    run = tiny_run.copy("contamination", tmp_path / "c")
    recs = records(run)
    keys = ["activation", "loss", "optimizer", "remedy", "seed"]
    stub = {k: recs[0][k] for k in keys}
    (run / "records.jsonl").write_text(json.dumps(stub) + "\n" + json.dumps(recs[1]) + "\n")
    code, _, err = cli(*tiny_run.args("contamination"), "--out", run)
    assert code == 0 and "no results" in err, err
    df = pd.read_parquet(run / "results.parquet")
    assert len(df) == 2 and df.bg_norm_growth.notna().all()
    pd.testing.assert_frame_equal(results(run), results(tiny_run("contamination")), check_exact=True)


# ------------------------------------------------------------------------------------- a group, whole or none
def test_a_failed_write_leaves_no_part_of_a_group(tmp_path, monkeypatch):
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
    assert calls["n"] == 2  # the half write happened, then the failure
    assert str(store.records_path) in str(info.value)  # the path is in the message
    assert [r["seed"] for r in store.records(["seed"])] == [0]
    assert store.records_path.read_text().count("\n") == 1


# ------------------------------------------------------------------------------------ files and environment
def test_files_are_readable_to_colleagues(cli, tmp_path):
    old = os.umask(0o022)
    try:
        args = ["run", "contamination", "--set", "iterations=4", "--set", "log_every=2", "--set", "n=20"]
        code, _, err = cli(*args, "--set", "n_test=20", "--set", "seeds=1", "--no-progress", "--out", tmp_path / "c")
        assert code == 0, err
    finally:
        os.umask(old)
    for name in ("config.yaml", "env.json", "records.jsonl", "summary.md", "results.parquet"):
        assert stat.S_IMODE((tmp_path / "c" / name).stat().st_mode) == 0o644, name
    figures = list((tmp_path / "c" / "figures").iterdir())
    assert figures and all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in figures)


def test_env_records_what_each_worker_ran_with(cli, tmp_path, tiny_run):
    # one group: the pool starts one worker of the three (workers start as groups are submitted)
    args = ["run", "memorization", "--set", "d=20", "--set", "n_train=10", "--set", "width=50", "--set", "seeds=1"]
    code, _, err = cli(*args, "--set", "n_test=20", "--set", "activation=relu", "--set", "model=rf", "--jobs", "3",
                       "--no-progress", "--out", tmp_path / "r")  # fmt: skip
    assert code == 0, err
    env = json.loads((tmp_path / "r" / "env.json").read_text())
    cores = os.cpu_count() or 1  # three workers share the cores: at least one thread each, never oversubscribed
    assert env["jobs"] == 3 and env["torch_threads"] >= 1 and 3 * env["torch_threads"] <= max(3, cores)
    assert cores < 6 or env["torch_threads"] >= 2  # and the cores are used where there are enough
    assert env["executor"] == "local"
    env = json.loads((tiny_run("memorization") / "env.json").read_text())
    assert env["jobs"] == 1 and env["torch_threads"] == torch.get_num_threads() and env["executor"] == "local"
