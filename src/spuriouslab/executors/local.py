"""The local executors: in this process (``--jobs 1``), or a pool of worker processes on this machine."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

from spuriouslab.executors import Outcome, checkpoint_dir, failure, run_group_in_worker, worker_threads
from spuriouslab.experiments import RunContext
from spuriouslab.experiments.base import Record
from spuriouslab.runtime import die_with_parent

if TYPE_CHECKING:
    from spuriouslab.plan import Plan, Task


class InProcess:
    """Each group in this process, one after the other; the torch threads are this process's."""

    name = "local"
    concurrency = 1

    @property
    def threads(self) -> int:
        import torch

        return torch.get_num_threads()

    def run(
        self, plan: Plan, tasks: Sequence[Task], ctx: RunContext, directory: Path | None = None
    ) -> Iterator[Outcome]:
        """Compute each group here, in order (see :class:`~spuriouslab.executors.Executor`)."""
        for task in tasks:
            i, group = task
            own = replace(ctx, finished=[])
            try:  # a group's records land together: its points share one computation (stacked seeds, one Gram)
                records = list(plan.exp.run_group(plan.configs[i], group, own))
            except Exception:  # noqa: BLE001 - recorded, the sweep goes on
                yield Outcome(task, [], failure())
            else:
                yield Outcome(task, records, discard=own.finished)


class ProcessPool:
    """A pool of ``jobs`` spawned worker processes (torch threads split between them); the workers end with their
    parent."""

    name = "local"

    def __init__(self, jobs: int):
        self.concurrency = jobs
        self.threads = worker_threads(jobs)

    def run(
        self, plan: Plan, tasks: Sequence[Task], ctx: RunContext, directory: Path | None = None
    ) -> Iterator[Outcome]:
        """Compute the groups in the pool, yielding each as it completes (see
        :class:`~spuriouslab.executors.Executor`)."""
        dumps = [c.model_dump(mode="json") for c in plan.configs]
        pool = ProcessPoolExecutor(
            max_workers=self.concurrency,
            mp_context=get_context("spawn"),
            initializer=pool_worker,
            initargs=(os.getpid(),),
        )
        finished = False
        try:
            futures: dict[Future[tuple[list[Record], list[str]]], Task] = {
                pool.submit(
                    run_group_in_worker, plan.exp.name, dumps[i], g, ctx.device, self.threads, checkpoint_dir(ctx)
                ): (i, g)
                for i, g in tasks
            }
            for fut in as_completed(futures):
                try:
                    records, done = fut.result()
                    yield Outcome(futures[fut], records, discard=done)
                except Exception:  # noqa: BLE001
                    yield Outcome(futures[fut], [], failure())
            finished = True
        finally:
            if not finished:  # Ctrl-C, a kill of the parent alone, an error: the groups in flight keep their
                # checkpoints; the workers end now instead of finishing the groups they hold
                for proc in list((getattr(pool, "_processes", None) or {}).values()):
                    proc.kill()
            pool.shutdown(wait=True, cancel_futures=not finished)


def pool_worker(parent: int) -> None:
    """A pool worker's initializer: it ends with its parent, and a Ctrl-C (SIGINT to the whole process group) is
    the parent's to handle; the parent ends the workers, so none prints its own traceback or finishes a group."""
    import signal

    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
