"""The sweep: run a plan's pending points with an executor and record them in the run's store.

:func:`run_sweep` drops points already recorded, groups the rest (``Experiment.group_key`` within each combination
of the :class:`~spuriouslab.plan.Plan`) and hands the groups to an executor (:mod:`spuriouslab.executors`: in this
process, a local pool, Ray, SLURM through submitit).  As each group's outcome arrives, this process appends its
records to the store, together, in one write: killing the process loses at most the groups in flight, never part of
one.  A group that raises is written to ``errors.jsonl`` with its traceback and the sweep goes on; its points are
skipped by later runs unless ``retry_failed``.  A group whose job ended without a result (killed, preempted past its
requeues) is counted ``interrupted``: the next run resumes it from its checkpoints.

The plan itself (grids, ranges, each point's identity) is :mod:`spuriouslab.plan`; the names it had here
(:func:`make_plan`, :func:`expand_values`, :func:`load_spec`, :func:`pin_resolution`, :class:`Plan`) are kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from spuriouslab.bounded import read_bounded
from spuriouslab.executors import Executor, Outcome, make_executor, worker_threads
from spuriouslab.executors.ray import ray_available
from spuriouslab.experiments import RunContext
from spuriouslab.experiments.base import Point
from spuriouslab.plan import Plan, Task, expand_values, load_spec, make_plan, pin_resolution, point_id, split_grid
from spuriouslab.store import RunStore, point_key

__all__ = [
    "Plan",
    "SweepResult",
    "expand_values",
    "failed_keys",
    "load_spec",
    "make_plan",
    "pin_resolution",
    "point_id",
    "ray_available",
    "run_sweep",
    "split_grid",
    "worker_threads",
]


@dataclass
class SweepResult:
    """What a sweep did, in points: done now, done before (skipped), failed now, failed before (skipped unless
    retried), and interrupted (their jobs ended without a result; the next run resumes them)."""

    total: int
    done_before: int
    done: int = 0
    failed: int = 0  # points of groups that failed now
    skipped_failed: int = 0  # points that failed in an earlier run (not retried)
    failed_groups: int = 0
    interrupted: int = 0  # points of groups whose job ended without a result (not recorded as failed)

    def line(self) -> str:
        """The sweep in one line: done / failed / skipped (and interrupted, when any)."""
        text = (
            f"{self.done} done, {self.failed} failed, {self.done_before} skipped (done earlier) of {self.total} points"
        )
        if self.skipped_failed:
            text += f"; {self.skipped_failed} skipped (failed earlier; --retry-failed runs them again)"
        if self.interrupted:
            text += f"; {self.interrupted} interrupted (their jobs ended without a result; run again to resume them)"
        return text


ERRORS_BYTES = 256 * 2**20  # errors.jsonl: one line (a traceback) per failed group


def failed_keys(store: RunStore, fields: list[str]) -> set[str]:
    """Points of groups recorded in errors.jsonl."""
    out: set[str] = set()
    if not store.errors_path.exists():
        return out
    for line in read_bounded(store.errors_path, ERRORS_BYTES, "a run's errors.jsonl").splitlines():
        try:
            for p in json.loads(line)["points"]:
                out.add(point_key({f: p[f] for f in fields}))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def pending_tasks(plan: Plan, store: RunStore, retry_failed: bool = False) -> tuple[list[Task], SweepResult]:
    """The groups of ``plan`` still to compute in ``store`` (points recorded there are done; points of groups
    that failed there are skipped unless ``retry_failed``), and the sweep's counts so far."""
    fields = plan.point_fields()
    all_points = plan.points()
    done = store.done_keys(fields)
    failed_before = set() if retry_failed else failed_keys(store, fields)
    result = SweepResult(len(all_points), sum(1 for _, p in all_points if point_key(p) in done))
    pending: dict[int, list[Point]] = {}
    for i, p in all_points:
        key = point_key(p)
        if key in done:
            continue
        if key in failed_before:
            result.skipped_failed += 1
            continue
        pending.setdefault(i, []).append({k: v for k, v in p.items() if k not in plan.grid})
    tasks: list[Task] = [(i, g) for i, pts in pending.items() for g in plan.exp.groups(plan.configs[i], pts)]
    return tasks, result


def run_sweep(
    plan: Plan,
    store: RunStore,
    ctx: RunContext,
    executor: str | Executor = "local",
    jobs: int = 1,
    retry_failed: bool = False,
    address: str | None = None,
) -> SweepResult:
    """Run every pending point of the plan and append each group's records to ``store`` as it completes; records
    carry the swept fields and their ``point_id``.

    Parameters
    ----------
    plan : Plan
        The grid.
    store : RunStore
        The run directory, opened (its lock held by this process: the one writer of its records).
    ctx : RunContext
        Device and progress; its checkpoint area defaults to the store's.
    executor : str or Executor
        An executor, or its name (:func:`~spuriouslab.executors.make_executor` builds it with ``jobs`` and
        ``address``).
    jobs : int
        Worker processes of the ``local`` executor, by name.
    retry_failed : bool
        Run again the points of groups that failed in an earlier run.
    address : str, optional
        The Ray cluster of the ``ray`` executor, by name.

    Returns
    -------
    SweepResult
        The counts of points done, failed, skipped and interrupted.
    """
    ex = make_executor(executor, jobs=jobs, address=address) if isinstance(executor, str) else executor
    fields = plan.point_fields()
    tasks, result = pending_tasks(plan, store, retry_failed)
    if ctx.checkpoints is None:
        ctx.checkpoints = store.checkpoints
    bar = tqdm(
        total=result.total,
        initial=result.done_before + result.skipped_failed,
        desc=plan.exp.name,
        unit="point",
        disable=not ctx.progress,
    )
    cfg_dumps: dict[int, str] = {}
    # closed on any exit (Ctrl-C included): an executor cancels what it still has in flight
    outcomes = ex.run(plan, tasks, ctx, Path(store.root))
    try:
        for outcome in outcomes:
            i, group = outcome.task
            if i not in cfg_dumps:
                cfg_dumps[i] = plan.identity(i)
            if outcome.error is not None:
                _count_failure(plan, store, outcome, result, bar)
                continue
            # the swept values win over a record's own column of the same name (a capped n_test, say): they are
            # the point's identity, so that resume finds it
            combo = plan.combos[i]
            store.append(
                [
                    {**r, **combo, "point_id": point_id(cfg_dumps[i], {f: {**r, **combo}[f] for f in fields})}
                    for r in outcome.records
                ],
                durable=partial(ctx.drop_finished, outcome.discard),  # only once its records are on disk
            )
            result.done += len(outcome.records)
            bar.update(len(outcome.records))
    finally:
        close = getattr(outcomes, "close", None)  # a generator: its cleanup runs now (cancels jobs in flight)
        if close is not None:
            close()
    bar.close()
    return result


def _count_failure(plan: Plan, store: RunStore, outcome: Outcome, result: SweepResult, bar: Any) -> None:
    """A group that failed (recorded in errors.jsonl) or whose job was interrupted (left for the next run)."""
    i, group = outcome.task
    error = outcome.error or ""
    last = error.strip().splitlines()[-1][:160] if error.strip() else "no message"
    if outcome.interrupted:
        result.interrupted += len(group)
        bar.set_postfix(failed=result.failed, interrupted=result.interrupted)
        tqdm.write(f"{plan.exp.name}: a group of {len(group)} point(s) was interrupted ({last}); a rerun resumes it")
        return
    result.failed += len(group)
    result.failed_groups += 1
    store.append_error([{**plan.combos[i], **p} for p in group], error)
    bar.update(len(group))
    bar.set_postfix(failed=result.failed)
    tqdm.write(f"{plan.exp.name}: a group of {len(group)} point(s) failed ({last}); see {store.errors_path}")
