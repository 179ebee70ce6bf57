"""The Ray executor: one Ray task per group, on an existing cluster (``address``, or ``$RAY_ADDRESS``) or a local
one, a GPU per task when the device is cuda (``pip install -c constraints.txt -e ".[ray]"``)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spuriouslab.errors import ExecutorUnavailable
from spuriouslab.executors import Outcome, checkpoint_dir, failure, run_group_in_worker
from spuriouslab.experiments import RunContext

if TYPE_CHECKING:
    from spuriouslab.plan import Plan, Task

MISSING = "--executor: got 'ray' but Ray is not installed; pip install -c constraints.txt -e '.[ray]'"


def ray_available() -> bool:
    """Whether Ray can be imported here."""
    return importlib.util.find_spec("ray") is not None


class RayExecutor:
    """One Ray task per group; each task runs one torch thread (Ray places the tasks on the cluster's cores)."""

    name = "ray"
    concurrency = 1  # the groups' memory is the cluster's, not this machine's
    threads = 1

    def __init__(self, address: str | None = None):
        if not ray_available():
            raise ExecutorUnavailable(MISSING)
        self.address = address

    def run(
        self, plan: Plan, tasks: Sequence[Task], ctx: RunContext, directory: Path | None = None
    ) -> Iterator[Outcome]:
        """Submit every group as a Ray task and yield each as it completes (see
        :class:`~spuriouslab.executors.Executor`)."""
        import ray

        if not ray.is_initialized():
            ray.init(
                address=self.address or os.environ.get("RAY_ADDRESS"),
                ignore_reinit_error=True,
                log_to_driver=False,
                include_dashboard=False,
            )
        remote = ray.remote(num_gpus=1 if ctx.device.startswith("cuda") else 0)(run_group_in_worker)
        dumps = [c.model_dump(mode="json") for c in plan.configs]
        refs: dict[Any, Task] = {
            remote.remote(plan.exp.name, dumps[i], g, ctx.device, self.threads, checkpoint_dir(ctx)): (i, g)
            for i, g in tasks
        }
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                records, done = ray.get(ready[0])
                yield Outcome(refs[ready[0]], records, discard=done)
            except Exception:  # noqa: BLE001
                yield Outcome(refs[ready[0]], [], failure())
