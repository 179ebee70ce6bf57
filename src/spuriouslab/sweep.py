"""Grid expansion, executors and resume.

``run_sweep`` expands the grid, drops points already recorded in the store, groups the rest
(``Experiment.group_key``) and runs the groups with one of three executors:

* ``local`` with ``jobs=1``: in this process, records appended as each point completes;
* ``local`` with ``jobs>1``: a pool of worker processes (spawned, torch threads split between them);
* ``ray``: one Ray task per group on a running cluster (``pip install 'spuriouslab[ray]'``; set
  ``RAY_ADDRESS`` to join a cluster, otherwise Ray starts a local one).

A group that raises is written to ``errors.jsonl``; its points stay pending, the sweep goes on, and the
run ends with a non-zero status.  Killing the process loses at most the point in flight.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

from tqdm.auto import tqdm

from spuriouslab.errors import ConfigError
from spuriouslab.experiments import Experiment, ExperimentConfig, RunContext, get_experiment
from spuriouslab.store import Checkpoints, RunStore, point_key


def pending_groups(exp: Experiment, cfg: ExperimentConfig, store: RunStore) -> tuple[int, list[list[dict]]]:
    points = exp.points(cfg)
    done = store.done_keys(exp.point_fields())
    return len(points), exp.groups(cfg, [p for p in points if point_key(p) not in done])


def worker_threads(jobs: int) -> int:
    """Torch threads per worker process, so that ``jobs`` workers do not oversubscribe the cores."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def _die_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when the parent process dies (even by SIGKILL).  On Linux the kernel
    sends SIGKILL (prctl PR_SET_PDEATHSIG); everywhere a watchdog thread notices the parent is gone."""
    import signal
    import threading
    import time

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="spuriouslab-parent-watch").start()


def _run_group_in_worker(name: str, cfg_dict: dict, points: list[dict], device: str, threads: int,
                         checkpoint_dir: str | None = None) -> list[dict]:
    import torch

    from spuriouslab.runtime import tune_allocator

    tune_allocator()
    torch.set_num_threads(threads)
    exp = get_experiment(name)
    cfg = exp.make_config(cfg_dict)
    ckpts = Checkpoints(checkpoint_dir) if checkpoint_dir is not None else None
    return list(exp.run_group(cfg, points, RunContext(device=device, progress=False, checkpoints=ckpts)))


def _checkpoint_dir(ctx: RunContext) -> str | None:
    return None if ctx.checkpoints is None else str(ctx.checkpoints.directory)


def _records_local(exp, cfg, groups, ctx) -> Iterable[tuple[list[dict], list[dict], str | None]]:
    for group in groups:
        try:
            for rec in exp.run_group(cfg, group, ctx):
                yield group, [rec], None
        except Exception:  # noqa: BLE001 - recorded, the sweep goes on
            yield group, [], traceback.format_exc(limit=8)


def _records_pool(exp, cfg, groups, ctx, jobs):
    threads = worker_threads(jobs)
    cfg_dict = cfg.model_dump(mode="json")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), initializer=_die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(_run_group_in_worker, exp.name, cfg_dict, g, ctx.device, threads, _checkpoint_dir(ctx)):
                   g for g in groups}
        for fut in as_completed(futures):
            try:
                yield futures[fut], fut.result(), None
            except Exception:  # noqa: BLE001
                yield futures[fut], [], traceback.format_exc(limit=8)


def _records_ray(exp, cfg, groups, ctx):
    try:
        import ray
    except ImportError:
        raise ConfigError("executor: got 'ray' but Ray is not installed; pip install 'spuriouslab[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True, log_to_driver=False)
    remote = ray.remote(num_gpus=1 if ctx.device.startswith("cuda") else 0)(_run_group_in_worker)
    cfg_dict = cfg.model_dump(mode="json")
    refs = {remote.remote(exp.name, cfg_dict, g, ctx.device, 1, _checkpoint_dir(ctx)): g for g in groups}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        try:
            yield refs[ready[0]], ray.get(ready[0]), None
        except Exception:  # noqa: BLE001
            yield refs[ready[0]], [], traceback.format_exc(limit=8)


def run_sweep(exp: Experiment, cfg: ExperimentConfig, store: RunStore, ctx: RunContext,
              executor: str = "local", jobs: int = 1) -> int:
    """Run every pending point; returns the number of failed groups."""
    total, groups = pending_groups(exp, cfg, store)
    if ctx.checkpoints is None:
        ctx.checkpoints = store.checkpoints
    n_pending = sum(len(g) for g in groups)
    bar = tqdm(total=total, initial=total - n_pending, desc=exp.name, unit="point", disable=not ctx.progress)
    if executor == "ray":
        stream = _records_ray(exp, cfg, groups, ctx)
    elif jobs > 1:
        stream = _records_pool(exp, cfg, groups, ctx, jobs)
    else:
        stream = _records_local(exp, cfg, groups, ctx)
    failures = 0
    for group, records, error in stream:
        if error is not None:
            failures += 1
            store.append_error(group, error)
            tqdm.write(f"{exp.name}: a group of {len(group)} point(s) failed; see {store.errors_path}")
            continue
        store.append(records)
        bar.update(len(records))
    bar.close()
    return failures
