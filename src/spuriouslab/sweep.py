"""Grids over any setting, executors and resume.

A :class:`Plan` is an experiment's grid: its own axes (``Config.AXES``: lists in any config) times a grid over any
other config field (``grid``: given as a list in ``run --set``, or under ``grid:`` in a sweep spec; ranges
``{range: [start, stop, step]}`` and ``{log: [start, stop, count]}`` too).  Each combination of the other fields
is a full, validated config; each point keeps a stable identity (its swept fields, its axis values and seed), so
resume skips done points and the table has one column per swept field.

``run_sweep`` drops points already recorded, groups the rest (``Experiment.group_key`` within each combination)
and runs the groups with one of three executors:

* ``local`` with ``jobs=1``: in this process, records appended as each point completes;
* ``local`` with ``jobs>1``: a pool of worker processes (spawned, torch threads split between them; they end
  with their parent);
* ``ray``: one Ray task per group, on an existing cluster (``address``, or ``RAY_ADDRESS``) or a local one,
  requesting a GPU per task when the device is cuda (``pip install 'spuriouslab[ray]'``).

A group that raises is written to ``errors.jsonl`` with its traceback and the sweep goes on; its points are skipped
by later runs unless ``retry_failed``.  A group's records are appended together, in one write: killing the process
loses at most the groups in flight, never part of one.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import traceback
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

from tqdm.auto import tqdm

from spuriouslab.errors import ConfigError
from spuriouslab.experiments import Experiment, ExperimentConfig, RunContext, get_experiment
from spuriouslab.experiments.base import MAX_POINTS, Point, Record, numeric_field
from spuriouslab.experiments.fields import split_list
from spuriouslab.runtime import die_with_parent
from spuriouslab.store import Checkpoints, RunStore, point_key


# ------------------------------------------------------------------------------------------------ plans
def _takes_list(cls: type[ExperimentConfig], key: str) -> bool:
    return "list" in str(cls.model_fields[key].annotation)


def expand_values(value: object, key: str) -> list[Any]:
    """A grid axis as given: a list, ``a,b,c``, ``{range: [start, stop, step]}`` (stop included when reached) or
    ``{log: [start, stop, count]}`` (geometric)."""
    if isinstance(value, dict) and len(value) == 1:
        ((kind, args),) = value.items()
        try:
            a, b, c = (float(v) for v in args)
        except (TypeError, ValueError):
            raise ConfigError(
                f"grid {key}: got {value!r}; a range is {{range: [start, stop, step]}} or {{log: [start, stop, count]}}"
            ) from None
        if kind == "range" and c != 0 and (b - a) / c >= 0 and math.isfinite((b - a) / c):
            n = int(math.floor((b - a) / c + 1e-9)) + 1
        elif kind == "log" and a > 0 and b > 0 and math.isfinite(b / a) and math.isfinite(c) and c >= 1 and c == int(c):
            n = int(c)
        else:
            raise ConfigError(
                f"grid {key}: got {value!r}; a range is {{range: [start, stop, step]}} or "
                "{log: [start, stop, count]} (positive ends, an integer count)"
            )
        if n > MAX_POINTS:  # refused before a list of that size is built
            raise ConfigError(f"grid {key}: got {value!r}; {n:.3g} values is more than {MAX_POINTS}")
        if kind == "range":
            vals = [a + i * c for i in range(n)]
        else:
            vals = [a * (b / a) ** (i / max(1, n - 1)) for i in range(n)]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in args[:2]):
            # integer ends: values within rounding of an integer are that integer ({log: [8, 64, 4]} -> 8, 16, 32, 64)
            vals = [round(v) if abs(v - round(v)) <= 1e-9 * max(1.0, abs(v)) else v for v in vals]
        return vals
    return split_list(value)


def split_grid(exp: Experiment[ExperimentConfig], values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pull list values of fields that are not grid axes (``width=128,256`` for a contamination run) into a grid
    (the values as given: lists, ``a,b`` strings, ranges; :func:`expand_values` reads them)."""
    cls = exp.Config
    base: dict[str, Any] = {}
    grid: dict[str, Any] = {}
    for key, value in values.items():
        info = cls.model_fields.get(key)
        if info is None or key in cls.AXES or _takes_list(cls, key):
            base[key] = value
            continue
        if (
            isinstance(value, list | tuple)
            or isinstance(value, dict)
            and len(value) == 1
            or (
                isinstance(value, str)
                and "," in value
                and (
                    numeric_field(info.annotation)
                    or "Literal" in str(info.annotation)
                    or "bool" in str(info.annotation)
                )
            )
        ):
            grid[key] = value
        else:
            base[key] = value
    return base, grid


@dataclass
class Plan:
    """An experiment's full grid: one validated config per combination of the swept (non-axis) fields."""

    exp: Experiment[ExperimentConfig]
    values: dict[str, Any]  # the base values as given
    grid: dict[str, list[Any]]  # swept non-axis field -> its values
    combos: list[dict[str, Any]] = field(default_factory=list)
    configs: list[ExperimentConfig] = field(default_factory=list)

    @property
    def base(self) -> ExperimentConfig:
        return self.configs[0]

    def point_fields(self) -> list[str]:
        return [*self.grid, *self.exp.point_fields()]

    def points(self) -> list[tuple[int, dict[str, Any]]]:
        """(combination index, point with the swept fields) for every point of the grid."""
        return [
            (i, {**combo, **p})
            for i, (combo, cfg) in enumerate(zip(self.combos, self.configs, strict=True))
            for p in self.exp.points(cfg)
        ]

    def config_dump(self) -> dict[str, Any]:
        """The resolved config, with the grid (what config.yaml holds): every field all combinations resolve
        alike; a field whose default follows a swept field (``activation`` by ``task``) is left to resolve again
        per combination."""
        dumps = [c.model_dump(mode="json") for c in self.configs]
        out = {k: v for k, v in dumps[0].items() if all(d[k] == v for d in dumps[1:])}
        for key in self.grid:
            out.pop(key, None)
        if self.grid:
            out["grid"] = {k: list(v) for k, v in self.grid.items()}
        return out

    def fixed_fields(self) -> list[str]:
        return [f for f in self.base.fixed_fields() if f not in self.grid]


def make_plan(
    exp: Experiment[ExperimentConfig], values: Mapping[str, Any], grid: Mapping[str, Any] | None = None
) -> Plan:
    """Validate the base values and every combination of the grid (one line naming the key on a bad value)."""
    values, auto = split_grid(exp, dict(values))
    grid = {**auto, **(grid or {})}
    axes: dict[str, list[Any]] = {}
    swept: dict[str, list[Any]] = {}
    for key, value in grid.items():
        if key not in exp.Config.model_fields:
            raise ConfigError(
                f"grid: unknown key {key!r} for experiment '{exp.name}'; allowed keys: "
                f"{', '.join(exp.Config.model_fields)}"
            )
        vals = expand_values(value, key)
        if not vals:
            raise ConfigError(f"{key}: got an empty list; give at least one value")
        if key in ("seed", "seeds") and len(vals) > 1:  # points are (axes, seed): the combinations would overlap
            raise ConfigError(
                f"{key}: got {vals}; seeds are not a grid: seeds=N runs seeds seed, seed+1, ..., "
                "seed+N-1 (e.g. seed=0 seeds=3 for 0, 1, 2)"
            )
        seen = [json.dumps(v, default=str) for v in vals]
        if len(set(seen)) != len(seen):
            raise ConfigError(f"{key}: got {vals}; each grid value once")
        (axes if key in exp.Config.AXES else swept)[key] = vals
    values = {**values, **axes}
    size = math.prod(len(v) for v in swept.values())
    if size > MAX_POINTS:
        raise ConfigError(f"grid: {size} combinations is more than {MAX_POINTS}; split the sweep")
    plan = Plan(exp, values, swept)
    keys = list(swept)
    for combo in itertools.product(*swept.values()) if keys else [()]:
        cfg = exp.make_config({**values, **dict(zip(keys, combo, strict=True))})
        # the swept fields as the config holds them (validated, e.g. "1e-3" -> 0.001): the point's identity
        dump = cfg.model_dump(mode="json")
        plan.combos.append({k: dump[k] for k in keys})
        plan.configs.append(cfg)
    plan.grid = {k: list({json.dumps(c[k], sort_keys=True): c[k] for c in plan.combos}.values()) for k in keys}
    for k in keys:  # values that differ as written but not as the config holds them (1e-3 and 0.001, 16 and 16.0)
        if len(plan.grid[k]) != len(swept[k]):
            raise ConfigError(f"{k}: got {swept[k]}; as values these are {plan.grid[k]}: each grid value once")
    total = sum(len(exp.points(c)) for c in plan.configs) if len(plan.configs) < 10_000 else MAX_POINTS + 1
    if total > MAX_POINTS:
        raise ConfigError(f"grid: {total} points is more than {MAX_POINTS}; split the sweep")
    return plan


def load_spec(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A sweep spec: ``experiment:``, base values, and ``grid: {field: values}``."""
    from spuriouslab import yamlio

    data = yamlio.load_file(path, f"sweep spec {path}")
    if not isinstance(data, dict) or "experiment" not in data:
        raise ConfigError(f"sweep spec {path}: needs 'experiment:' and a 'grid:' mapping of field: values")
    data = dict(data)
    name = data.pop("experiment")
    grid = data.pop("grid", {}) or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"sweep spec {path}: 'grid' must map fields to lists of values")
    return name, data, grid


def pin_resolution(plan: Plan, store: RunStore) -> list[str]:
    """Fix what each combination resolved on this machine (``Experiment.resolve``: the data set ``data=auto``
    found, the checksum of the decoded arrays) at the run's first point, and hold a resumed run to it: a
    combination whose ``auto`` now finds another data set keeps the one it started with (returned notes say so);
    data whose checksum changed since is refused (one line).  The plan's configs are updated in place."""
    found = {point_key(c): plan.exp.resolve(cfg) for c, cfg in zip(plan.combos, plan.configs, strict=True)}
    found = {k: v for k, v in found.items() if v}
    if not found:
        return []
    pinned = store.pin(found)
    notes = []
    for i, (combo, cfg) in enumerate(zip(plan.combos, plan.configs, strict=True)):
        key = point_key(combo)
        first, now = pinned.get(key), found.get(key)
        if not first or not now or first == now:
            continue
        if first.get("data") != now.get("data") and "data" in type(cfg).model_fields:
            cfg = plan.configs[i] = cfg.model_copy(update={"data": first["data"]})
            notes.append(
                f"data={first['data']}: this run started on {first['data']} and keeps it ({now['data']} is "
                "found now; use another --out to run on it)"
            )
            now = plan.exp.resolve(cfg)
        if now.get("data_checksum") != first.get("data_checksum"):
            raise ConfigError(
                f"data: {now.get('data')} is not the data this run started with (checksum "
                f"{str(now.get('data_checksum'))[:16]}... now, {str(first.get('data_checksum'))[:16]}"
                f"... then: see {store.root / 'resolved.json'}); restore it or use another --out"
            )
    return notes


# ------------------------------------------------------------------------------------------- executors
def worker_threads(jobs: int) -> int:
    """Torch threads per worker process, so that ``jobs`` workers do not oversubscribe the cores."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def _run_group_in_worker(
    name: str,
    cfg_dict: dict[str, Any],
    points: list[Point],
    device: str,
    threads: int,
    checkpoint_dir: str | None = None,
) -> list[Record]:
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


Task = tuple[int, list[Point]]  # (combination index, the group's points as the experiment sees them)
Outcome = tuple[Task, list[Record], str | None]  # a task, its records, and the traceback of its failure (or None)


def _records_local(plan: Plan, tasks: list[Task], ctx: RunContext) -> Iterator[Outcome]:
    for task in tasks:
        i, group = task
        try:  # a group's records land together: its points share one computation (stacked seeds, one Gram)
            records = list(plan.exp.run_group(plan.configs[i], group, ctx))
        except Exception:  # noqa: BLE001 - recorded, the sweep goes on
            yield task, [], traceback.format_exc(limit=12)
        else:
            yield task, records, None


def _records_pool(plan: Plan, tasks: list[Task], ctx: RunContext, jobs: int) -> Iterator[Outcome]:
    threads = worker_threads(jobs)
    dumps = [c.model_dump(mode="json") for c in plan.configs]
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=get_context("spawn"), initializer=die_with_parent, initargs=(os.getpid(),)
    ) as pool:
        futures = {
            pool.submit(_run_group_in_worker, plan.exp.name, dumps[i], g, ctx.device, threads, _checkpoint_dir(ctx)): (
                i,
                g,
            )
            for i, g in tasks
        }
        for fut in as_completed(futures):
            try:
                yield futures[fut], fut.result(), None
            except Exception:  # noqa: BLE001
                yield futures[fut], [], traceback.format_exc(limit=12)


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def _records_ray(plan: Plan, tasks: list[Task], ctx: RunContext, address: str | None = None) -> Iterator[Outcome]:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor: got 'ray' but Ray is not installed; pip install 'spuriouslab[ray]'") from None
    if not ray.is_initialized():
        ray.init(
            address=address or os.environ.get("RAY_ADDRESS"),
            ignore_reinit_error=True,
            log_to_driver=False,
            include_dashboard=False,
        )
    remote = ray.remote(num_gpus=1 if ctx.device.startswith("cuda") else 0)(_run_group_in_worker)
    dumps = [c.model_dump(mode="json") for c in plan.configs]
    refs = {remote.remote(plan.exp.name, dumps[i], g, ctx.device, 1, _checkpoint_dir(ctx)): (i, g) for i, g in tasks}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        try:
            yield refs[ready[0]], ray.get(ready[0]), None
        except Exception:  # noqa: BLE001
            yield refs[ready[0]], [], traceback.format_exc(limit=12)


# ------------------------------------------------------------------------------------------------- sweep
@dataclass
class SweepResult:
    total: int
    done_before: int
    done: int = 0
    failed: int = 0  # points of groups that failed now
    skipped_failed: int = 0  # points that failed in an earlier run (not retried)
    failed_groups: int = 0

    def line(self) -> str:
        text = (
            f"{self.done} done, {self.failed} failed, {self.done_before} skipped (done earlier) of {self.total} points"
        )
        if self.skipped_failed:
            text += f"; {self.skipped_failed} skipped (failed earlier; --retry-failed runs them again)"
        return text


def point_id(config_json: str, point: dict[str, Any]) -> str:
    """A grid point's stable id: a hash of its combination's resolved config and its axis values and seed."""
    import hashlib

    return hashlib.sha1((config_json + point_key(point)).encode()).hexdigest()[:16]


def failed_keys(store: RunStore, fields: list[str]) -> set[str]:
    """Points of groups recorded in errors.jsonl."""
    out: set[str] = set()
    if not store.errors_path.exists():
        return out
    for line in store.errors_path.read_text(errors="replace").splitlines():
        try:
            for p in json.loads(line)["points"]:
                out.add(point_key({f: p[f] for f in fields}))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def run_sweep(
    plan: Plan,
    store: RunStore,
    ctx: RunContext,
    executor: str = "local",
    jobs: int = 1,
    retry_failed: bool = False,
    address: str | None = None,
) -> SweepResult:
    """Run every pending point of the plan; records carry the swept fields."""
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
    if ctx.checkpoints is None:
        ctx.checkpoints = store.checkpoints
    bar = tqdm(
        total=result.total,
        initial=result.done_before + result.skipped_failed,
        desc=plan.exp.name,
        unit="point",
        disable=not ctx.progress,
    )
    if executor == "ray":
        results = _records_ray(plan, tasks, ctx, address)
    elif jobs > 1:
        results = _records_pool(plan, tasks, ctx, jobs)
    else:
        results = _records_local(plan, tasks, ctx)
    cfg_dumps: dict[int, str] = {}
    for (i, group), records, error in results:
        combo = plan.combos[i]
        if i not in cfg_dumps:
            dump = plan.configs[i].model_dump(mode="json")  # less what a point sets itself (axes, seeds)
            cfg_dumps[i] = json.dumps(
                {k: v for k, v in dump.items() if k not in (*plan.exp.Config.AXES, "seeds")}, sort_keys=True
            )
        if error is not None:
            result.failed += len(group)
            result.failed_groups += 1
            store.append_error([{**combo, **p} for p in group], error)
            bar.update(len(group))
            bar.set_postfix(failed=result.failed)
            tqdm.write(
                f"{plan.exp.name}: a group of {len(group)} point(s) failed "
                f"({error.strip().splitlines()[-1][:160]}); see {store.errors_path}"
            )
            continue
        # the swept values win over a record's own column of the same name (a capped n_test, say): they are the
        # point's identity, so that resume finds it
        store.append(
            [
                {**r, **combo, "point_id": point_id(cfg_dumps[i], {f: {**r, **combo}[f] for f in fields})}
                for r in records
            ]
        )
        result.done += len(records)
        bar.update(len(records))
    bar.close()
    return result
