"""SLURM through submitit: one task of a job array per group, requeued on preemption (``pip install -e ".[slurm]"``).

The process that runs ``spuriouslab run ... --executor slurm`` (on a login node, say) submits the groups still to
compute as one job array (``--slurm-array-parallelism`` of them at once), then waits and appends each group's
records to the run's store as its task's result arrives.  The tasks only compute: they never write records.  The
store has one writer, the process that holds the run directory's lock, so no two writers race on
``records.jsonl`` over a network file system (where file locks are unreliable), and a group's records land in
one write, as with every other executor.

Requeue: each task is a submitit checkpointable callable (:class:`GroupTask`).  When SLURM preempts a task or
its time runs out, submitit sends it a signal, calls :meth:`GroupTask.checkpoint` and requeues the task with the
same arguments; the group then resumes from the training checkpoints it wrote into the run directory
(``DIR/checkpoints``, shared by every node), not from scratch.  A task killed outright (``scancel``, a node
failure) ends without a result: its group is counted ``interrupted``, not failed, and the next run of the same
command resumes it from its checkpoints.  Ctrl-C in the submitting process cancels the jobs still pending or
running.

``--executor submitit-local`` (or ``SlurmOptions(cluster="local")``) runs the same path through submitit's local
executor: each group a process on this machine, at most ``array_parallelism`` at a time, with the same requeue
(the test suite runs it).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from spuriouslab.errors import ConfigError, ExecutorUnavailable
from spuriouslab.executors import Outcome, checkpoint_dir, failure, run_group_in_worker
from spuriouslab.experiments import RunContext
from spuriouslab.experiments.base import Point, Record

if TYPE_CHECKING:
    from submitit.helpers import DelayedSubmission

    from spuriouslab.plan import Plan, Task

MISSING = "--executor: got '{name}' but submitit is not installed; pip install -e \".[slurm]\""
Cluster = Literal["slurm", "local", "debug"]


def submitit_available() -> bool:
    """Whether submitit can be imported here."""
    return importlib.util.find_spec("submitit") is not None


@dataclass(frozen=True)
class SlurmOptions:
    """What each SLURM task asks for, and how the array is submitted.

    Attributes
    ----------
    partition : str or None
        The partition (``--slurm-partition``); None: the cluster's default.
    time_min : int
        Wall time per task, in minutes (``--slurm-time``); a task that reaches it is requeued and resumes.
    mem_gb : float or None
        Memory per task in GB (``--slurm-mem``); None: the partition's default.  The run's memory check compares
        the largest group's estimate with it.
    cpus_per_task : int
        CPU cores per task (``--slurm-cpus``), also the torch threads of each task.
    gpus_per_node : int or None
        GPUs per task (``--slurm-gpus``); None: one when the device is cuda, else none.
    array_parallelism : int or None
        How many tasks of the array run at once (``--slurm-array-parallelism``); None: as many as SLURM allows.
        With the local cluster, how many processes at once; None: the cores divided by ``cpus_per_task``.
    folder : Path or None
        submitit's folder: submission scripts, pickles and logs (``--slurm-folder``); None: ``DIR/submitit``.
    cluster : {"slurm", "local", "debug"}
        ``slurm``; ``local`` for submitit's local executor (``--executor submitit-local``); ``debug`` runs each
        task in this process (submitit's debug executor).
    max_requeues : int
        How often a task may be requeued after a timeout (submitit's ``max_num_timeout``); preemptions do not count.
    poll_s : float or None
        Seconds between two looks at the jobs; None: 1 with the local cluster, 15 with SLURM.
    """

    partition: str | None = None
    time_min: int = 60
    mem_gb: float | None = None
    cpus_per_task: int = 1
    gpus_per_node: int | None = None
    array_parallelism: int | None = None
    folder: Path | None = None
    cluster: Cluster = "slurm"
    max_requeues: int = 3
    poll_s: float | None = None

    def __post_init__(self) -> None:
        for flag, value, low in [
            ("--slurm-time", self.time_min, 1),
            ("--slurm-cpus", self.cpus_per_task, 1),
            ("--slurm-array-parallelism", self.array_parallelism if self.array_parallelism is not None else 1, 1),
            ("--slurm-gpus", self.gpus_per_node if self.gpus_per_node is not None else 0, 0),
        ]:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{flag}: got {value!r}; expected an integer >= {low}")
        if self.mem_gb is not None and not 0 < self.mem_gb < 1e6:
            raise ConfigError(f"--slurm-mem: got {self.mem_gb!r}; expected GB per task, a number > 0")
        if self.cluster not in ("slurm", "local", "debug"):
            raise ConfigError(f"--slurm-cluster: got {self.cluster!r}; allowed: slurm, local, debug")

    def replace(self, **changes: Any) -> SlurmOptions:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def parallelism(self, tasks: int) -> int:
        """How many of ``tasks`` tasks run at once."""
        if self.array_parallelism is not None:
            return min(self.array_parallelism, max(1, tasks))
        if self.cluster == "slurm":
            return max(1, tasks)
        return max(1, (os.cpu_count() or 1) // self.cpus_per_task)

    def gpus(self, device: str) -> int:
        """GPUs per task for ``device``."""
        if self.gpus_per_node is not None:
            return self.gpus_per_node
        return 1 if device.startswith("cuda") else 0

    def parameters(self, device: str, name: str) -> dict[str, Any]:
        """The executor's parameters, as submitit's ``update_parameters`` takes them."""
        params: dict[str, Any] = {
            "name": f"spuriouslab-{name}",
            "timeout_min": self.time_min,
            "cpus_per_task": self.cpus_per_task,
            "gpus_per_node": self.gpus(device),
            "tasks_per_node": 1,
            "nodes": 1,
        }
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        if self.cluster == "slurm":
            if self.array_parallelism is not None:
                params["slurm_array_parallelism"] = self.array_parallelism
            if self.partition is not None:
                params["slurm_partition"] = self.partition
        return params


class GroupTask:
    """The callable each task runs: one group, computed by :func:`~spuriouslab.executors.run_group_in_worker`.

    It returns ``(records, None, done)`` (``done``: the checkpoints the group no longer needs, dropped by the
    submitting process once the records are appended), or ``([], traceback, [])`` when the group raised (the task
    itself succeeds, so that the failure reads as the group's, with its traceback).  It is checkpointable in
    submitit's sense: on preemption or timeout, :meth:`checkpoint` resubmits it with the same arguments, and the
    group resumes from its training checkpoints in the run directory."""

    def __call__(
        self,
        name: str,
        cfg_dict: dict[str, Any],
        points: list[Point],
        device: str,
        threads: int,
        checkpoints: str | None,
    ) -> tuple[list[Record], str | None, list[str]]:
        try:
            records, done = run_group_in_worker(name, cfg_dict, points, device, threads, checkpoints)
            return records, None, done
        except Exception as exc:  # the group's failure, returned with its traceback
            if type(exc).__module__.startswith("submitit"):  # submitit's own (a task not requeued): for submitit
                raise
            return [], failure(), []

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """Requeue with the same arguments: the state to resume from is in the run's checkpoint directory."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


class SlurmExecutor:
    """Groups as tasks of a SLURM job array, through submitit (see the module's description)."""

    name = "slurm"

    def __init__(self, options: SlurmOptions | None = None):
        self.options = options or SlurmOptions()
        if not submitit_available():
            raise ExecutorUnavailable(
                MISSING.format(name="slurm" if self.options.cluster == "slurm" else "submitit-local")
            )
        if self.options.cluster == "slurm" and shutil.which("sbatch") is None:
            raise ExecutorUnavailable(
                "--executor: got 'slurm' but sbatch is not found here (no SLURM on this machine); run it on the "
                "cluster's login node, or --executor submitit-local to run the same path on this machine"
            )
        self.threads = self.options.cpus_per_task
        # groups that run on this machine at once: the local cluster's processes; SLURM's run elsewhere
        self.concurrency = self.options.parallelism(1 << 30) if self.options.cluster == "local" else 1
        if self.options.cluster != "slurm":
            self.name = "submitit-local" if self.options.cluster == "local" else "submitit-debug"
        self.jobs: dict[str, Any] = {}  # job id -> submitit job, of the groups in flight

    @property
    def remote(self) -> bool:
        """Whether the groups run on other machines (SLURM nodes) than the one that submits them."""
        return self.options.cluster == "slurm"

    def memory_bytes(self) -> float | None:
        """The memory one task has (``mem_gb``) when the groups run elsewhere; None: this machine's."""
        return self.options.mem_gb * 1e9 if self.remote and self.options.mem_gb is not None else None

    def resolve_device(self, device: str) -> str:
        """The device of the tasks, which may have GPUs the submitting machine lacks: ``auto`` is cuda when the
        tasks ask for GPUs."""
        if device == "auto":
            return "cuda" if self.options.gpus_per_node else "cpu"
        if device not in ("cpu", "cuda"):
            raise ConfigError(f"--device: got {device!r}; allowed: auto, cpu, cuda")
        if device == "cuda" and self.options.gpus_per_node == 0:
            raise ConfigError("--device: got 'cuda' with --slurm-gpus 0; ask for a GPU per task or use cpu")
        return device

    def run(
        self, plan: Plan, tasks: Sequence[Task], ctx: RunContext, directory: Path | None = None
    ) -> Iterator[Outcome]:
        """Submit the groups (one job array on SLURM; a window of processes with the local cluster) and yield
        each group's outcome as its task ends (see :class:`~spuriouslab.executors.Executor`)."""
        import submitit

        folder = self.options.folder or (directory / "submitit" if directory is not None else None)
        if folder is None:
            raise ConfigError("--slurm-folder: needed for a run without a run directory")
        executor = submitit.AutoExecutor(
            folder=folder,
            cluster=self.options.cluster,
            slurm_max_num_timeout=self.options.max_requeues,
            local_max_num_timeout=self.options.max_requeues,
        )
        executor.update_parameters(**self.options.parameters(ctx.device, plan.exp.name))
        dumps = [c.model_dump(mode="json") for c in plan.configs]
        calls = [(plan.exp.name, dumps[i], g, ctx.device, self.threads, checkpoint_dir(ctx)) for i, g in tasks]
        fn = GroupTask()
        poll = self.options.poll_s if self.options.poll_s is not None else (15.0 if self.remote else 0.5)
        pending: dict[Any, Task] = {}
        queue = list(zip(tasks, calls, strict=True))
        window = self.options.parallelism(len(queue))
        try:
            if self.remote and queue:  # one array job; SLURM runs array_parallelism of its tasks at once
                jobs = executor.map_array(fn, *zip(*calls, strict=True))
                pending = dict(zip(jobs, tasks, strict=True))
                queue = []
            while queue or pending:
                while queue and len(pending) < window:  # the local cluster: a window
                    task, call = queue.pop(0)
                    pending[executor.submit(fn, *call)] = task
                self.jobs = {job.job_id: job for job in pending}
                finished = [job for job in pending if job.done()]
                if not finished:
                    time.sleep(poll)
                    continue
                for job in finished:
                    yield self._outcome(job, pending.pop(job))
        finally:  # Ctrl-C, or the consumer stopped: no job left running without anyone to record it
            for job in pending:
                try:
                    job.cancel(check=False)
                except Exception:  # noqa: BLE001 - scancel may fail (the job ended meanwhile); nothing to do
                    pass
            self.jobs = {}

    def _outcome(self, job: Any, task: Task) -> Outcome:
        from submitit.core.utils import UncompletedJobError

        if not self.remote:
            job._results_timeout_s = 0  # a local result file is there at once (no network file system to wait for)
        try:
            records, error, done = job.result()
        except UncompletedJobError as exc:  # killed, or preempted past its requeues: no result, resumable
            return Outcome(task, [], f"job {job.job_id} ended without a result: {_first_line(exc)}", interrupted=True)
        except Exception as exc:  # noqa: BLE001 - failed outside the group (unpickling, the node)
            if "not requeued because" in str(exc):  # preempted or timed out once too often: resumable
                return Outcome(task, [], f"job {job.job_id} was not requeued: {_first_line(exc)}", interrupted=True)
            return Outcome(task, [], failure())
        return Outcome(task, list(records), error, discard=list(done))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return " ".join(lines[:2]) if lines else type(exc).__name__
