"""Executors: what computes a run's groups.  One interface, thin adapters.

An executor takes the groups of a plan that are still to compute (:data:`~spuriouslab.plan.Task`: a combination
of the grid and its points) and yields each group's :class:`Outcome` as it completes: its records, or the
traceback of its failure, or that its job ended without a result (``interrupted``).  It never writes records: the
sweep (:func:`spuriouslab.sweep.run_sweep`) appends each outcome to the run's store as it arrives, in the one
process that holds the run directory's lock.  Groups that train write their checkpoints into the run directory
(``ctx.checkpoints``), wherever they run, so a group started again resumes from its last checkpoint.

===================  ==================================================================================
``local``            in this process, one group after the other (``jobs=1``; :class:`InProcess`)
``local``, jobs>1    a pool of spawned worker processes on this machine (:class:`ProcessPool`)
``ray``              one Ray task per group, on a Ray cluster or a local one (:class:`RayExecutor`)
``slurm``            one task of a SLURM job array per group, through submitit (:class:`SlurmExecutor`)
``submitit-local``   the same through submitit's local executor: one process per group on this machine
===================  ==================================================================================

:func:`make_executor` builds one by name; Ray and submitit are optional (``pip install -e ".[ray]"``,
``pip install -e ".[slurm]"``), and asking for an executor whose package is missing is one line
(:class:`~spuriouslab.errors.ExecutorUnavailable`).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from spuriouslab.errors import ConfigError
from spuriouslab.experiments import RunContext, get_experiment
from spuriouslab.experiments.base import Point, Record
from spuriouslab.store import Checkpoints

if TYPE_CHECKING:
    from spuriouslab.executors.slurm import SlurmOptions
    from spuriouslab.plan import Plan, Task

EXECUTORS: dict[str, str] = {
    "local": "in this process (--jobs 1) or a pool of worker processes (--jobs N)",
    "ray": "one Ray task per group on a Ray cluster (--address, $RAY_ADDRESS) or a local one",
    "slurm": "one task of a SLURM job array per group, through submitit (requeued on preemption)",
    "submitit-local": "submitit's local executor: the SLURM path, one process per group on this machine",
}
"""The executors by name, each in words (``--executor NAME``)."""


@dataclass
class Outcome:
    """What became of one group: its records, or ``error`` (the traceback of the exception it raised), or
    ``interrupted`` (its job ended without a result: killed, or preempted more often than it may be requeued),
    which is no failure of the group: a rerun resumes it from its checkpoints.  ``discard``: the checkpoints the
    group is done with, which the sweep drops once its records are appended."""

    task: Task
    records: list[Record]
    error: str | None = None
    interrupted: bool = False
    discard: list[str] = field(default_factory=list)


class Executor(Protocol):
    """Submit groups of points, collect their records as they complete.

    Attributes
    ----------
    name : str
        The executor's name as ``env.json`` records it (``local``, ``ray``, ``slurm``, ...).
    concurrency : int
        How many groups run at once on the machine that runs the CLI (the memory check multiplies the largest
        group's estimate by it; 1 for executors whose groups run elsewhere).
    threads : int
        Torch threads of each process that computes.
    """

    @property
    def name(self) -> str: ...

    @property
    def concurrency(self) -> int: ...

    @property
    def threads(self) -> int: ...

    def run(
        self, plan: Plan, tasks: Sequence[Task], ctx: RunContext, directory: Path | None = None
    ) -> Iterator[Outcome]:
        """Compute ``tasks`` (groups of ``plan``) and yield each one's outcome as it completes.

        Parameters
        ----------
        plan : Plan
            The run's grid; ``plan.configs[i]`` is the config of a task ``(i, points)``.
        tasks : sequence of Task
            The groups to compute.
        ctx : RunContext
            The device, progress bars and the run's checkpoint area (shared by every group, wherever it runs).
        directory : Path, optional
            The run directory (executors that keep files of their own, such as submitit's, keep them there).

        Yields
        ------
        Outcome
            One per task, in the order they complete.
        """
        ...


def worker_threads(jobs: int) -> int:
    """Torch threads per worker process, so that ``jobs`` workers do not oversubscribe the cores."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def run_group_in_worker(
    name: str,
    cfg_dict: dict[str, Any],
    points: list[Point],
    device: str,
    threads: int,
    checkpoint_dir: str | None = None,
) -> tuple[list[Record], list[str]]:
    """Compute one group in a fresh process (a pool worker, a Ray task, a SLURM task): the experiment by name, its
    config from its JSON dump, checkpoints in ``checkpoint_dir``; returns the group's records and the checkpoints
    it is done with (dropped by the sweep once the records are appended)."""
    import torch

    from spuriouslab.runtime import tune_allocator

    tune_allocator()
    torch.set_num_threads(threads)
    exp = get_experiment(name)
    cfg = exp.make_config(cfg_dict)
    ckpts = Checkpoints(checkpoint_dir) if checkpoint_dir is not None else None
    ctx = RunContext(device=device, progress=False, checkpoints=ckpts)
    return list(exp.run_group(cfg, points, ctx)), ctx.finished


def checkpoint_dir(ctx: RunContext) -> str | None:
    """The directory of the run's checkpoint area, as a worker process opens it (None: in memory)."""
    directory = getattr(ctx.checkpoints, "directory", None)
    return None if directory is None else str(directory)


def failure() -> str:
    """The traceback of the exception being handled, as a failed group records it."""
    return traceback.format_exc(limit=12)


def make_executor(
    name: str,
    *,
    jobs: int = 1,
    address: str | None = None,
    slurm: SlurmOptions | None = None,
) -> Executor:
    """The executor called ``name`` (see :data:`EXECUTORS`).

    Parameters
    ----------
    name : str
        ``local``, ``ray``, ``slurm`` or ``submitit-local``.
    jobs : int
        Worker processes of the local executor (1: in this process).
    address : str, optional
        The Ray cluster's address (else ``$RAY_ADDRESS``, else a local Ray).
    slurm : SlurmOptions, optional
        Partition, time, memory, CPUs, GPUs, array parallelism and the submitit folder of the SLURM executors.

    Returns
    -------
    Executor
        Ready to run groups.

    Raises
    ------
    ConfigError
        An unknown name, or options that do not go with it.
    ExecutorUnavailable
        Its package (Ray, submitit) is not installed.
    """
    if name not in EXECUTORS:
        raise ConfigError(f"--executor: got {name!r}; allowed: {', '.join(EXECUTORS)}")
    if slurm is not None and name not in ("slurm", "submitit-local"):
        raise ConfigError(f"--slurm-*: options of --executor slurm (or submitit-local), not of {name!r}")
    if name == "ray":
        from spuriouslab.executors.ray import RayExecutor

        return RayExecutor(address)
    if name in ("slurm", "submitit-local"):
        from spuriouslab.executors.slurm import SlurmExecutor, SlurmOptions

        options = slurm or SlurmOptions()
        if name == "submitit-local":
            options = options.replace(cluster="local")
        return SlurmExecutor(options)
    from spuriouslab.executors.local import InProcess, ProcessPool

    return ProcessPool(jobs) if jobs > 1 else InProcess()


__all__ = [
    "EXECUTORS",
    "Executor",
    "Outcome",
    "make_executor",
    "run_group_in_worker",
    "worker_threads",
]
