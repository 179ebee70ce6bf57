"""Real signals to real processes, one SIGKILL and one SIGINT per mechanism that keeps a run's work: the store's
append (records), the worker pool (--jobs), the trainer's checkpoints.  Each signal lands at a known point (right
after the N-th record or checkpoint is on disk: SPURIOUSLAB_KILL_AFTER for SIGKILL; for SIGINT the run is held
there by tests/signal_at.py and the test sends the signal),
and the run, resumed, gives the session's uninterrupted table exactly.  Every subprocess is killed on every way out
of its test.  The many other interruption points are tested in this process: test_resume.py."""

from __future__ import annotations

import os
import signal
import time

import psutil
import torch

from conftest import assert_resumes_identically, held, records, run_killed, wait_held


def _resume(cli, args, out):
    code, _, err = cli(*args, "--out", out)
    assert code == 0, err


def _sigint_at(args, out, point, tmp_path, ctrl_c=False):
    """``spuriouslab ARGS`` interrupted by SIGINT from outside while held right after ``point``: to its process
    group as a terminal's Ctrl-C does (worker processes get it too), or to the process alone.  Returns (exit
    status, stderr, the worker processes it had, seconds from the signal to the exit)."""
    with held(args, out, point, tmp_path) as proc:
        wait_held(proc, tmp_path)
        workers = _workers(psutil.Process(proc.pid))
        sent = time.monotonic()
        if ctrl_c:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    return proc.returncode, err, workers, time.monotonic() - sent


def _says_what_was_saved(code, err):
    assert code == 130, err
    assert "interrupted" in err and "run the same command again to resume" in err and "Traceback" not in err, err


def _workers(parent: psutil.Process) -> list[psutil.Process]:
    return [c for c in parent.children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]


# ------------------------------------------------------------------------------------------- the store's append
def test_store_sigkill_after_a_record_then_restart_gives_the_uninterrupted_table(cli, tmp_path, tiny_run):
    args, out = tiny_run.args("memorization"), tmp_path / "killed"
    run_killed(args, out, "records:5")  # right after the group that brings it to 5 records is on disk
    n_before = len(records(out))
    assert 5 <= n_before < 16, "the kill should land mid-run"
    _resume(cli, args, out)
    assert_resumes_identically(tiny_run("memorization"), out)


def test_store_sigint_after_a_record_says_what_was_saved_and_resumes(cli, tmp_path, tiny_run):
    """Started from a process that ignores SIGINT (as a suite started by a script's ``cmd &`` does): the run still
    stops on it (conftest.spawned gives every child the default)."""
    args, out = tiny_run.args("memorization"), tmp_path / "interrupted"
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code, err, _, _ = _sigint_at(args, out, "records:5", tmp_path)
    finally:
        signal.signal(signal.SIGINT, before)
    _says_what_was_saved(code, err)
    n_before = len(records(out))
    assert 5 <= n_before < 16 and f"{n_before} of 16 points are saved" in err, err
    assert "checkpoints" not in err, err  # a kernel run trains nothing: no checkpoint to speak of
    _resume(cli, args, out)
    assert_resumes_identically(tiny_run("memorization"), out)


# ------------------------------------------------------------------------------------------- the worker pool
def test_pool_sigkill_of_the_parent_ends_its_workers_and_the_run_resumes(cli, tmp_path, tiny_run):
    """The parent is held after its second record with its pool up, then SIGKILLed: the workers end with it."""
    args, out = [*tiny_run.args("memorization"), "--jobs", "2"], tmp_path / "r"
    with held(args, out, "records:2", tmp_path) as proc:
        wait_held(proc, tmp_path)
        workers = _workers(psutil.Process(proc.pid))
        assert len(workers) == 2, "the pool should be up"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
        _, alive = psutil.wait_procs(workers, timeout=20)
        assert not alive, [p.pid for p in alive]
    assert 2 <= len(records(out)) < 16
    _resume(cli, tiny_run.args("memorization"), out)
    assert_resumes_identically(tiny_run("memorization"), out, exact=False)  # workers: other thread counts


def test_pool_ctrl_c_ends_parent_and_workers_and_the_run_resumes(cli, tmp_path, tiny_run):
    """SIGINT to the process group (a terminal's Ctrl-C) while the pool is up: exit 130 with what was saved, no
    worker left behind, and the run resumes to the uninterrupted table."""
    args, out = [*tiny_run.args("memorization"), "--jobs", "2"], tmp_path / "r"
    code, err, workers, _ = _sigint_at(args, out, "records:2", tmp_path, ctrl_c=True)
    _says_what_was_saved(code, err)
    assert len(workers) == 2, "the pool should have been up"
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, [p.pid for p in alive]
    assert 2 <= len(records(out)) < 16
    _resume(cli, tiny_run.args("memorization"), out)
    assert_resumes_identically(tiny_run("memorization"), out, exact=False)  # workers: other thread counts


def test_pool_sigint_to_the_parent_alone_ends_the_run_promptly(cli, tmp_path, tiny_run):
    """SIGINT to the parent only (``kill -INT PID``, as a scheduler or a supervisor sends it) while the pool is up:
    the run ends within seconds, not after the workers finish their groups, with exit 130, what was saved, no
    worker left behind, and it resumes to the uninterrupted table."""
    args, out = [*tiny_run.args("memorization"), "--jobs", "2"], tmp_path / "r"
    code, err, workers, seconds = _sigint_at(args, out, "records:2", tmp_path)
    _says_what_was_saved(code, err)
    assert len(workers) == 2, "the pool should have been up"
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, [p.pid for p in alive]
    assert seconds < 20, f"{seconds:.1f} s from SIGINT to exit"
    _resume(cli, tiny_run.args("memorization"), out)
    assert_resumes_identically(tiny_run("memorization"), out, exact=False)


# ---------------------------------------------------------------------------------- the trainer's checkpoints
def test_trainer_sigkill_after_a_checkpoint_resumes_from_it(cli, tmp_path, tiny_run):
    args, out = tiny_run.args("memorization-nn"), tmp_path / "killed"
    run_killed(args, out, "checkpoints:3")  # epoch 6 of 8, a checkpoint every 2 epochs
    (ckpt,) = (out / "checkpoints").glob("*.pt")
    saved = torch.load(ckpt, weights_only=True)
    assert saved["step"] == 6 and saved["history"]["step"] == [0, 2, 4, 6]
    assert not (out / "records.jsonl").exists() or (out / "records.jsonl").read_text() == ""
    _resume(cli, args, out)
    assert_resumes_identically(tiny_run("memorization-nn"), out)


def test_trainer_sigint_keeps_the_checkpoint_says_how_to_resume_and_resumes(cli, tmp_path, tiny_run):
    args, out = tiny_run.args("contamination-stacked"), tmp_path / "interrupted"
    code, err, _, _ = _sigint_at(args, out, "checkpoints:2", tmp_path)  # iteration 20 of 40 of the first group
    _says_what_was_saved(code, err)
    assert "0 of 6 points are saved" in err and "with checkpoints of groups in flight: 1 in" in err, err
    (ckpt,) = (out / "checkpoints").glob("*.pt")
    assert torch.load(ckpt, weights_only=True)["step"] == 20
    _resume(cli, args, out)
    assert_resumes_identically(tiny_run("contamination-stacked"), out)
