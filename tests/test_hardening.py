"""Hostile input, crashes and concurrency: nothing runs foreign code, nothing is counted twice, nothing is lost,
every bad input is one line and exit status 2."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import torch

import fuzzing
import spuriouslab.data.images as images
from conftest import TINY
from spuriouslab.data.images import DataError, read_cifar_batch
from spuriouslab.store import Checkpoints, RunStore

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(autouse=True)
def _fresh_cache():
    images._load_cached.cache_clear()
    yield
    images._load_cached.cache_clear()


def _one_line_exit_2(result, needle):
    code, _, stderr = result
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in stderr, stderr


# ------------------------------------------------------------------------------- 1. foreign code
class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cifar_dir(root: Path, poison: bool, marker: Path) -> Path:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [*images.CIFAR_TRAIN, "test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, 20)],
        }
        if poison and name == "data_batch_1":
            batch[b"batch_label"] = _Payload(marker)  # hidden inside a valid batch dict
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    return d


def test_a_malicious_cifar_batch_is_refused_and_never_runs(cli, tmp_path):
    marker = tmp_path / "pwned"
    _cifar_dir(tmp_path / "data", True, marker)
    with pytest.raises(DataError, match="refusing to load posix.system"):
        read_cifar_batch(tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1")
    _one_line_exit_2(
        cli(
            "run",
            "memorization",
            "--set",
            "data=cifar10",
            "--set",
            "n_train=10",
            "--set",
            "width=50",
            "--data-root",
            tmp_path / "data",
            "--out",
            tmp_path / "r",
        ),
        "refusing to load",
    )
    code, stdout, _ = cli("data", "info", "--data-root", tmp_path / "data")
    assert code == 0 and "cifar10" in stdout and "refusing to load" in stdout
    assert not marker.exists() and not (tmp_path / "r").exists()


def test_string_labels_in_a_cifar_batch(cli, tmp_path):
    d = _cifar_dir(tmp_path / "data", False, tmp_path / "m")
    (d / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["cat", "dog"]}))
    _one_line_exit_2(
        cli(
            "run",
            "memorization",
            "--set",
            "data=cifar10",
            "--set",
            "n_train=10",
            "--data-root",
            tmp_path / "data",
            "--out",
            tmp_path / "r",
        ),
        "labels must be a list of N integers",
    )


def test_a_malicious_checkpoint_is_refused_set_aside_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    ck = Checkpoints(tmp_path / "checkpoints")
    ck.directory.mkdir()
    with open(ck.path("g"), "wb") as fh:
        pickle.dump({"net": _Payload(marker)}, fh)
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        assert ck.load("g") is None
    assert not marker.exists() and not ck.path("g").exists()
    assert (ck.directory / "g.pt.corrupt").exists()
    ck.save("g", {"step": 3, "w": torch.ones(2)})  # what a real checkpoint holds loads with weights_only
    assert ck.load("g")["step"] == 3


# --------------------------------------------------------------------------------------- fuzzing
@pytest.mark.parametrize("fmt", list(fuzzing.FORMATS))
def test_fuzzed_files_load_or_fail_in_one_line(tmp_path, fmt):
    n = fuzzing.SUITE_CASES.get(fmt, 300)
    counts = fuzzing.FORMATS[fmt](tmp_path, n)
    assert sum(counts.values()) == n
    if fmt not in fuzzing.LENIENT:
        assert counts["error"] > n // 6  # the corruption is noticed, not silently accepted


def test_fuzzed_cifar_batches_through_data_info(cli, tmp_path):
    d = _cifar_dir(tmp_path / "data", False, tmp_path / "m")
    raw = (d / "data_batch_2").read_bytes()
    for case in fuzzing.mutations(raw, 25, 11):
        (d / "data_batch_2").write_bytes(case)
        images._load_cached.cache_clear()
        code, stdout, stderr = cli("data", "info", "--data-root", tmp_path / "data")
        assert code == 0 and "Traceback" not in stdout + stderr
        line = next(x for x in stdout.splitlines() if x.startswith("cifar10"))
        assert " ok " in line or "data_batch_2" in line


# ----------------------------------------------------------------------------- 2. one writer
CMD = [
    sys.executable,
    "-m",
    "spuriouslab.cli",
    "run",
    "memorization",
    "--set",
    "d=200",
    "--set",
    "n_train=20,60,150",
    "--set",
    "n_test=200",
    "--set",
    "model=rf",
    "--set",
    "activation=relu,phi2",
    "--set",
    "width=20000",
    "--set",
    "seeds=2",
    "--set",
    "alpha=0.5,0.25",
    "--no-progress",
]


def test_two_runs_into_one_directory_one_runs_the_other_exits_2(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([*CMD, "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and not (out / ".lock.pid").exists():
        time.sleep(0.02)
    second = subprocess.run([*CMD, "--out", str(out)], env=ENV, capture_output=True, text=True)
    assert second.returncode == 2 and f"is in use by pid {first.pid}" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert first.wait(timeout=300) == 0
    subprocess.run([*CMD, "--out", str(tmp_path / "alone")], env=ENV, check=True, capture_output=True)
    keys = ["n_train", "activation", "alpha", "seed"]
    a = pd.read_parquet(out / "results.parquet").drop(columns="seconds").sort_values(keys).reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "alone" / "results.parquet").drop(columns="seconds").sort_values(keys)
    pd.testing.assert_frame_equal(a, b.reset_index(drop=True))
    assert len((out / "records.jsonl").read_text().splitlines()) == 24


# --------------------------------------------------------------------------------- 3. sizes
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
    sets = [x for a in args for x in ("--set", a)]
    _one_line_exit_2(cli("run", experiment, *sets, "--out", tmp_path / "x", "--no-progress"), needle)
    assert not (tmp_path / "x").exists()


def test_the_estimate_is_printed_before_a_run(cli, tmp_path):
    code, _, stderr = cli("run", "memorization", *TINY, "--out", tmp_path / "r")
    assert code == 0 and "largest group" in stderr and "GB available" in stderr


# ------------------------------------------------------------------------ 4. records not trusted
def test_a_garbage_or_foreign_middle_line_is_skipped_and_its_point_recomputed(cli, tmp_path):
    out = tmp_path / "run"
    assert cli("run", "memorization", *TINY, "--out", out)[0] == 0
    full = pd.read_parquet(out / "results.parquet").drop(columns="seconds")
    lines = (out / "records.jsonl").read_text().splitlines()
    lines[3] = "this is not JSON {"
    lines[5] = json.dumps({"foreign": 1, "seed": 0})
    lines.insert(7, lines[8])  # a duplicate of another record
    (out / "records.jsonl").write_text("\n".join(lines) + "\n")
    code, stdout, stderr = cli("report", out)
    assert code == 0 and "records.jsonl:4: not a JSON record" in stderr and "records.jsonl:6:" in stderr
    assert "counted once" in stderr and "Traceback" not in stderr
    assert len(pd.read_parquet(out / "results.parquet")) == 14  # 16 less the two bad lines, duplicate once
    code, _, stderr = cli("run", "memorization", *TINY, "--out", out)
    assert code == 0
    keys = ["n_train", "model", "activation", "seed"]
    again = pd.read_parquet(out / "results.parquet").drop(columns="seconds")
    assert len(again) == 16 and not again.duplicated(keys).any()
    pd.testing.assert_frame_equal(
        again.sort_values(keys).reset_index(drop=True), full.sort_values(keys).reset_index(drop=True)
    )


def test_report_on_foreign_or_garbage_records(cli, tmp_path):
    out = tmp_path / "run"
    assert cli("run", "memorization", *TINY, "--out", out)[0] == 0
    (out / "records.jsonl").write_text(
        '{"n_train": "x", "model": 3, "activation": null, "alpha": [], "width": 1, '
        '"ridge": 0, "correlation": 0, "seed": 0, "test_acc": 1}\n\x00\x01garbage\n'
    )
    code, _, stderr = cli("report", out)
    lines = stderr.strip().splitlines()
    assert code == 2 and "Traceback" not in stderr and len(lines) == 3
    assert "records.jsonl:2: not a JSON record" in lines[0] and "1 record(s) outside this run's grid" in lines[1]
    assert lines[2].endswith("no completed records to report")


# --------------------------------------------------------------------- 5. one line, not a traceback
def test_bad_config_files_and_output_paths(cli, tmp_path):
    (tmp_path / "bin.yaml").write_bytes(b"\x00\x01\x02\xff")
    _one_line_exit_2(cli("run", "memorization", "--config", tmp_path / "bin.yaml"), "is a binary file")
    (tmp_path / "latin.yaml").write_bytes("d: 40\nnote: caf\xe9\n".encode("latin-1"))
    _one_line_exit_2(cli("run", "memorization", "--config", tmp_path / "latin.yaml"), "is not UTF-8 text")
    (tmp_path / "dup.yaml").write_text("d: 40\nd: 50\n")
    _one_line_exit_2(cli("run", "memorization", "--config", tmp_path / "dup.yaml"), "duplicate key 'd'")
    (tmp_path / "afile").write_text("x")
    _one_line_exit_2(cli("run", "memorization", *TINY, "--out", tmp_path / "afile"), "exists and is not a directory")
    _one_line_exit_2(cli("run", "memorization", *TINY, "--out", tmp_path / "afile" / "sub"), "lies under a file")


def test_a_read_only_run_directory(cli, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **k: False if Path(p) == ro and mode & os.W_OK else real(p, mode, **k)
    )
    _one_line_exit_2(cli("run", "memorization", *TINY, "--out", ro), "not writable")
    if os.geteuid() != 0:  # root writes anywhere; elsewhere, a real read-only parent
        parent = tmp_path / "locked"
        parent.mkdir(mode=0o500)
        _one_line_exit_2(cli("run", "memorization", *TINY, "--out", parent / "run"), "permission denied")


def test_an_output_path_that_is_not_utf8(tmp_path):
    bad = os.fsencode(str(tmp_path)) + b"/run-\xff"
    res = subprocess.run(
        [
            os.fsencode(sys.executable),
            b"-m",
            b"spuriouslab.cli",
            b"run",
            b"memorization",
            *[a.encode() for a in TINY],
            b"--out",
            bad,
        ],
        env=ENV,
        capture_output=True,
    )
    err = res.stderr.decode("utf-8", "replace")
    assert res.returncode == 2 and "not valid UTF-8" in err and len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(bad)


# ------------------------------------------------------------------------- 6. workers end with parent
def test_sigkill_of_the_parent_ends_its_workers(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "spuriouslab.cli",
        "run",
        "memorization",
        "--set",
        "d=300",
        "--set",
        "n_train=100,200,300,400",
        "--set",
        "n_test=300",
        "--set",
        "model=rf",
        "--set",
        "width=200000",
        "--set",
        "seeds=3",
        "--set",
        "alpha=0.5",
        "--jobs",
        "2",
        "--no-progress",
        "--out",
        str(tmp_path / "r"),
    ]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    deadline = time.time() + 60
    workers: list[psutil.Process] = []
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.1)
        workers = [c for c in parent.children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]
    assert len(workers) >= 2, "the pool should be running"
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, [p.pid for p in alive]


# -------------------------------------------------------------------- 7. corrupt checkpoint
def test_a_truncated_checkpoint_is_set_aside_and_its_group_restarts(cli, tmp_path):
    args = [
        "run",
        "memorization-nn",
        "--set",
        "data=synthetic",
        "--set",
        "d=40",
        "--set",
        "model=fc",
        "--set",
        "n_train=40",
        "--set",
        "epochs=6",
        "--set",
        "log_every=2",
        "--set",
        "seeds=2",
        "--set",
        "n_test=50",
        "--no-progress",
    ]
    assert cli(*args, "--out", tmp_path / "full")[0] == 0
    out = tmp_path / "broken"
    assert cli(*args, "--set", "epochs=6", "--out", out)[0] == 0
    (out / "records.jsonl").unlink()  # as if killed before the group finished ...
    from spuriouslab.experiments import get_experiment
    from spuriouslab.experiments.base import checkpoint_key

    exp = get_experiment("memorization-nn")
    cfg = exp.make_config(
        dict(data="synthetic", d=40, model=["fc"], n_train=[40], epochs=6, log_every=2, seeds=2, n_test=50)
    )
    path = out / "checkpoints" / f"{checkpoint_key('memorization-nn', cfg, exp.points(cfg))}.pt"
    path.write_bytes(b"PK\x03\x04 truncated")  # ... with a truncated checkpoint left behind
    code, _, stderr = cli(*args, "--out", out)
    assert code == 0 and "unreadable checkpoint" in stderr and "restarts from scratch" in stderr
    assert (out / "checkpoints" / f"{path.name}.corrupt").exists()
    a = pd.read_parquet(tmp_path / "full" / "results.parquet").drop(columns="seconds")
    b = pd.read_parquet(out / "results.parquet").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)


# ---------------------------------------------------------------------------- 8. grid lists
@pytest.mark.parametrize(
    "args,needle",
    [
        (["n_train=[]"], "n_train: got an empty list"),
        (["n_train=20,20"], "20 appears twice"),
        (["activation=relu,relu"], "'relu' appears twice"),
    ],
)
def test_empty_and_duplicate_grid_values(cli, tmp_path, args, needle):
    sets = [x for a in args for x in ("--set", a)]
    _one_line_exit_2(cli("run", "memorization", *sets, "--out", tmp_path / "x"), needle)
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------- 9. divergence
def test_contamination_divergence_is_recorded_per_seed_and_not_retried(cli, tmp_path):
    args = [
        "run",
        "contamination",
        "--set",
        "lr=1e6",
        "--set",
        "iterations=100",
        "--set",
        "log_every=50",
        "--set",
        "seeds=2",
        "--set",
        "n=50",
        "--set",
        "n_test=50",
        "--set",
        "width=16",
        "--out",
        tmp_path / "d",
        "--no-progress",
    ]
    code, stdout, _ = cli(*args)
    assert code == 0 and "diverged" in stdout
    df = pd.read_parquet(tmp_path / "d" / "results.parquet")
    assert len(df) == 2 and (df.status == "diverged").all() and df.error.str.contains("by step 50").all()
    assert (df.diverged_at == 50).all()
    before = (tmp_path / "d" / "records.jsonl").read_text()
    assert cli(*args)[0] == 0
    assert (tmp_path / "d" / "records.jsonl").read_text() == before and not (tmp_path / "d" / "errors.jsonl").exists()
    _one_line_exit_2(cli("run", "contamination", "--set", "lr=inf", "--out", tmp_path / "x"), "lr: got 'inf'")
    _one_line_exit_2(cli("run", "memorization-nn", "--set", "lr=nan", "--out", tmp_path / "x"), "lr: got 'nan'")


def test_a_huge_but_finite_nn_loss_is_diverged_not_ok(cli, tmp_path):
    code, _, err = cli(
        "run",
        "memorization-nn",
        "--set",
        "lr=1e6",
        "--set",
        "n_train=50",
        "--set",
        "epochs=4",
        "--set",
        "log_every=2",
        "--set",
        "seeds=2",
        "--set",
        "n_test=50",
        "--set",
        "model=fc",
        "--out",
        tmp_path / "n",
        "--no-progress",
    )
    assert code == 0, err
    df = pd.read_parquet(tmp_path / "n" / "results.parquet")
    assert (df.status == "diverged").all(), df[["status", "train_loss"]]


# ------------------------------------------------------------------------------------ 10. parsing
def test_numbers_parse_as_researchers_write_them(cli, tmp_path):
    from spuriouslab.experiments import get_experiment

    exp = get_experiment("memorization")
    code, _, err = cli(
        "run", "memorization", *TINY, "--set", "width=1e3", "--set", "n_test=5e1", "--out", tmp_path / "r"
    )
    assert code == 0, err
    cfg = json.loads(json.dumps(__import__("yaml").safe_load((tmp_path / "r" / "config.yaml").read_text())))
    assert cfg["width"] == [1000] and cfg["n_test"] == 50
    assert exp.make_config({"width": "1.0e+5"}).width == [100000]
    _one_line_exit_2(
        cli("run", "memorization", "--set", "seeds=1_0", "--out", tmp_path / "x"), "write numbers without underscores"
    )
    _one_line_exit_2(
        cli("run", "memorization", "--set", "d=true", "--out", tmp_path / "x"), "a boolean is not a number"
    )
    _one_line_exit_2(cli("run", "memorization", "--set", "n_test=2.5", "--out", tmp_path / "x"), "n_test: got 2.5")


# ----------------------------------------------------------------------------------- 11. env.json
def test_env_records_what_each_worker_ran_with(cli, tmp_path):
    assert cli("run", "memorization", *TINY, "--jobs", "3", "--out", tmp_path / "r")[0] == 0
    env = json.loads((tmp_path / "r" / "env.json").read_text())
    cores = os.cpu_count() or 1  # three workers share the cores: at least one thread each, never oversubscribed
    assert env["jobs"] == 3 and env["torch_threads"] >= 1 and 3 * env["torch_threads"] <= max(3, cores)
    assert cores < 6 or env["torch_threads"] >= 2  # and the cores are used where there are enough
    assert env["executor"] == "local"
    assert cli("run", "memorization", *TINY, "--out", tmp_path / "s")[0] == 0
    env = json.loads((tmp_path / "s" / "env.json").read_text())
    assert env["jobs"] == 1 and env["torch_threads"] == torch.get_num_threads()


def test_store_lock_names_its_holder(tmp_path):
    a, b = RunStore(tmp_path), RunStore(tmp_path)
    a.lock()
    proc = subprocess.run(
        [sys.executable, "-c", f"from spuriouslab.store import RunStore; RunStore({str(tmp_path)!r}).lock()"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and f"in use by pid {os.getpid()}" in proc.stderr
    a.unlock()
    b.lock()
    b.unlock()
