"""The plan of a run: an experiment's grid, each point's identity.

A :class:`Plan` is an experiment's grid: its own axes (``Config.AXES``: lists in any config) times a grid over any
other config field (``grid``: given as a list in ``run --set``, or under ``grid:`` in a sweep spec; ranges
``{range: [start, stop, step]}`` and ``{log: [start, stop, count]}`` too).  Each combination of the other fields
is a full, validated config; each point keeps a stable identity (its swept fields, its axis values and seed,
:func:`point_id`), so resume skips done points and the table has one column per swept field.

What runs the points is :mod:`spuriouslab.executors`; the loop that records them, :mod:`spuriouslab.sweep`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spuriouslab.errors import ConfigError
from spuriouslab.experiments import Experiment, ExperimentConfig
from spuriouslab.experiments.base import MAX_POINTS, Point, numeric_field
from spuriouslab.experiments.fields import split_list
from spuriouslab.store import RunStore, point_key

Task = tuple[int, list[Point]]
"""One group to compute: (the index of its combination in :attr:`Plan.configs`, its points as the experiment
sees them: axis values and seed, without the swept fields)."""


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
        """The fields a resumed run must hold alike (every non-axis field that is not swept)."""
        return [f for f in self.base.fixed_fields() if f not in self.grid]

    def identity(self, i: int) -> str:
        """Combination ``i``'s resolved config less what a point sets itself (axes, seeds), as JSON: with a
        point's fields, what :func:`point_id` hashes."""
        cfg = self.configs[i]
        dump = cfg.model_dump(mode="json")
        at_default = {k for k in cfg.LATER if getattr(cfg, k) == type(cfg).model_fields[k].default}
        skip = {*self.exp.Config.AXES, "seeds", *at_default}
        return json.dumps({k: v for k, v in dump.items() if k not in skip}, sort_keys=True)


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


def point_id(config_json: str, point: dict[str, Any]) -> str:
    """A grid point's stable id: a hash of its combination's resolved config and its axis values and seed."""
    return hashlib.sha1((config_json + point_key(point)).encode()).hexdigest()[:16]
