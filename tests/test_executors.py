"""The executors behind one interface: the SLURM path through submitit's local executor (a sweep, a job killed
mid-run and resumed, a preempted job requeued), the job array submitted to SLURM (submitit's executor replaced by a
recording fake: no cluster here), the one-line errors of a missing package or a bad option."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from spuriouslab import runner
from spuriouslab.runner import RunFailed

pytest.importorskip("submitit")

KEYS = ["width", "activation", "seed"]
# two groups (width 16 and 32, two stacked seeds each), a checkpoint every 50 steps
CONT: dict[str, Any] = {"iterations": 100, "log_every": 50, "seeds": 2, "n": 60, "n_test": 60, "width": [16, 32]}


def table(directory: Path) -> pd.DataFrame:
    df = pd.read_parquet(directory / "results.parquet")
    keys = [k for k in KEYS if k in df]
    return df.drop(columns=[c for c in df if c.startswith("seconds")]).sort_values(keys).reset_index(drop=True)


def quiet(**options: Any) -> dict[str, Any]:
    return {"progress": False, "log": None, "device": "cpu", **options}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The contamination sweep, in this process."""
    out = tmp_path_factory.mktemp("executors") / "local"
    runner.run("contamination", CONT, out=out, **quiet())
    return table(out)


def test_a_sweep_through_submitit_local_gives_the_same_records(tmp_path, uninterrupted):
    out = tmp_path / "sl"
    result = runner.run("contamination", CONT, out=out, executor="submitit-local", **quiet())
    assert result.sweep.done == 4 and result.sweep.failed == result.sweep.interrupted == 0
    pd.testing.assert_frame_equal(table(out), uninterrupted)
    assert len(list((out / "submitit").glob("*_result.pkl"))) == 2  # one job per group, in the run directory
    assert '"executor": "submitit-local"' in (out / "env.json").read_text()


def test_a_killed_job_is_resumed_by_a_rerun_with_the_same_records(tmp_path, monkeypatch, uninterrupted):
    out = tmp_path / "killed"
    # a crash injected in the tasks: each job's process SIGKILLs itself right after its first checkpoint is written
    # (the parent, which writes records and no checkpoint, is not affected)
    monkeypatch.setenv("SPURIOUSLAB_KILL_AFTER", "checkpoints:1")
    with pytest.raises(RunFailed) as failed:
        runner.run("contamination", CONT, out=out, executor="submitit-local", **quiet())
    assert failed.value.sweep.interrupted == 4 and failed.value.sweep.failed == 0 and failed.value.result is None
    assert "4 interrupted" in str(failed.value)
    assert not (out / "errors.jsonl").exists()  # not a failure of the groups: the next run resumes them
    assert len(list((out / "checkpoints").glob("*.pt"))) == 2  # each group's first checkpoint
    monkeypatch.delenv("SPURIOUSLAB_KILL_AFTER")
    result = runner.run("contamination", CONT, out=out, executor="submitit-local", **quiet())
    assert result.sweep.done == 4 and result.sweep.interrupted == 0
    pd.testing.assert_frame_equal(table(out), uninterrupted)
    assert not list((out / "checkpoints").glob("*.pt"))  # discarded once the records are written


def test_a_preempted_job_is_requeued_and_resumes(tmp_path):
    import psutil

    from spuriouslab.executors.slurm import SlurmExecutor, SlurmOptions

    long = {"iterations": 800, "log_every": 40, "seeds": 1, "n": 60, "n_test": 60, "width": 16}
    runner.run("contamination", long, out=tmp_path / "ref", **quiet())
    ex = SlurmExecutor(SlurmOptions(cluster="local"))
    out = tmp_path / "pre"
    done: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: done.update(result=runner.run("contamination", long, out=out, executor=ex, **quiet()))
    )
    thread.start()
    deadline = time.time() + 300
    while time.time() < deadline and not (ex.jobs and list((out / "checkpoints").glob("*.pt"))):
        time.sleep(0.05)
    (job_id,) = ex.jobs  # one group, one job; its task is the controller's child
    tasks = psutil.Process(int(job_id)).children(recursive=True)
    assert tasks, "the job's task is not running"
    for task in tasks:  # what SLURM sends before it preempts a job (submitit's signal)
        os.kill(task.pid, signal.SIGUSR2)
    thread.join(timeout=600)
    assert "result" in done
    log = "".join(p.read_text() for p in (out / "submitit").glob(f"{job_id}_0_log.*"))
    assert "this job is preempted" in log and "Requeued job" in log
    pd.testing.assert_frame_equal(table(out), table(tmp_path / "ref"))


class FakeJob:
    def __init__(self, fn: Any, args: tuple[Any, ...], number: int):
        self.job_id = f"77_{number}"
        self.value = fn(*args)
        self.cancelled = False

    def done(self) -> bool:
        return True

    def result(self) -> Any:
        return self.value

    def cancel(self, check: bool = True) -> None:
        self.cancelled = True


class FakeAutoExecutor:
    """submitit.AutoExecutor as a SLURM cluster would take it: what was asked for is recorded, each task computed
    here when submitted."""

    made: list[FakeAutoExecutor] = []

    def __init__(self, folder: Any, cluster: str, **kwargs: Any):
        self.folder, self.cluster, self.kwargs = Path(folder), cluster, kwargs
        self.parameters: dict[str, Any] = {}
        self.arrays: list[int] = []
        FakeAutoExecutor.made.append(self)

    def update_parameters(self, **params: Any) -> None:
        self.parameters.update(params)

    def map_array(self, fn: Any, *iterables: Any) -> list[FakeJob]:
        calls = list(zip(*iterables, strict=True))
        self.arrays.append(len(calls))
        return [FakeJob(fn, call, k) for k, call in enumerate(calls)]

    def submit(self, fn: Any, *args: Any) -> FakeJob:
        raise AssertionError("SLURM gets one job array, not one job per group")


def test_slurm_submits_one_job_array_with_the_options_given(tmp_path, monkeypatch):
    import shutil

    import submitit
    import torch

    from spuriouslab.executors import slurm

    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(submitit, "AutoExecutor", FakeAutoExecutor)
    FakeAutoExecutor.made = []
    threads = torch.get_num_threads()  # the fake computes each task here, with the task's threads
    options = slurm.SlurmOptions(partition="gpu", time_min=90, mem_gb=8, cpus_per_task=2, array_parallelism=3)
    values = {"d": 40, "n_train": [10, 30], "n_test": 20, "width": 200, "seeds": 2, "activation": "relu"}
    try:
        result = runner.run("memorization", values, out=tmp_path / "s", executor="slurm", slurm=options, **quiet())
    finally:
        torch.set_num_threads(threads)
    (ex,) = FakeAutoExecutor.made
    assert ex.cluster == "slurm" and ex.folder == tmp_path / "s" / "submitit"
    assert len(ex.arrays) == 1 and ex.arrays[0] > 1  # every group a task of one array
    assert ex.parameters == {
        "name": "spuriouslab-memorization",
        "timeout_min": 90,
        "cpus_per_task": 2,
        "gpus_per_node": 0,
        "tasks_per_node": 1,
        "nodes": 1,
        "mem_gb": 8,
        "slurm_array_parallelism": 3,
        "slurm_partition": "gpu",
    }
    assert ex.kwargs["slurm_max_num_timeout"] == 3
    assert result.sweep.done == len(result.records) == result.sweep.total > 1
    env = (tmp_path / "s" / "env.json").read_text()
    assert '"executor": "slurm"' in env and '"torch_threads": 2' in env
    # the tasks' device: auto is cuda when they ask for GPUs, whatever this machine has
    ex2 = slurm.SlurmExecutor(options.replace(gpus_per_node=1))
    assert ex2.resolve_device("auto") == "cuda" and slurm.SlurmExecutor(options).resolve_device("auto") == "cpu"
    assert options.replace(gpus_per_node=None).gpus("cuda") == 1


def test_a_group_that_raises_in_its_task_is_recorded_as_failed(tmp_path, monkeypatch):
    monkeypatch.setattr(
        "spuriouslab.executors.slurm.run_group_in_worker",
        lambda *a: (_ for _ in ()).throw(FloatingPointError("simulated")),
    )
    from spuriouslab.executors.slurm import SlurmExecutor, SlurmOptions

    values = {"d": 40, "n_train": [10], "n_test": 20, "width": 200, "seeds": 1, "activation": "relu"}
    with pytest.raises(RunFailed) as failed:
        runner.run(
            "memorization", values, out=tmp_path / "f", executor=SlurmExecutor(SlurmOptions(cluster="debug")), **quiet()
        )
    assert failed.value.sweep.failed == failed.value.sweep.total > 0
    assert "simulated" in (tmp_path / "f" / "errors.jsonl").read_text()


def one_line_exit_2(res: tuple[int, str, str], needle: str) -> None:
    code, _, err = res
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_slurm_without_submitit_or_sbatch_and_bad_options_are_one_line(cli, tmp_path, monkeypatch):
    import shutil

    run = ["run", "memorization", "--no-progress", "--out", tmp_path / "x"]
    one_line_exit_2(cli(*run, "--slurm-time", "0", "--executor", "slurm"), "--slurm-time: got 0")
    one_line_exit_2(cli(*run, "--slurm-partition", "gpu"), "--slurm-*: options of --executor slurm")
    one_line_exit_2(cli(*run, "--slurm-mem", "-1", "--executor", "submitit-local"), "--slurm-mem: got -1")
    if shutil.which("sbatch") is None:
        one_line_exit_2(cli(*run, "--executor", "slurm"), "sbatch is not found here")
    monkeypatch.setattr("spuriouslab.executors.slurm.submitit_available", lambda: False)
    for name in ("slurm", "submitit-local"):
        one_line_exit_2(cli(*run, "--executor", name), 'submitit is not installed; pip install -e ".[slurm]"')
    spec = tmp_path / "s.yaml"
    spec.write_text("experiment: memorization\ngrid:\n  d: [40, 60]\n")
    one_line_exit_2(cli("sweep", spec, "--executor", "slurm", "--out", tmp_path / "x"), "submitit is not installed")
    assert not (tmp_path / "x").exists()
