"""Reports of run directories: rebuild a run's table, figures and summary from its stored records alone."""

from __future__ import annotations

import warnings
from typing import Any

import pandas as pd

from spuriouslab.errors import ConfigError
from spuriouslab.experiments import Experiment, ExperimentConfig, get_experiment
from spuriouslab.store import RunStore


def load_run(store: RunStore) -> tuple[Experiment, ExperimentConfig]:
    """The experiment and resolved config a run directory was made with."""
    values = store.read_config()
    exp = get_experiment(values.pop("experiment"))
    return exp, exp.make_config(values)


def _same_kind(value: Any, ref: Any) -> bool:
    if isinstance(ref, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(ref, bool)
    if isinstance(ref, int | float):
        return isinstance(value, int | float)
    return isinstance(value, type(ref))


def valid_records(store: RunStore, exp: Experiment, cfg: ExperimentConfig) -> list[dict]:
    """The run's records whose grid point has the experiment's fields with values of the right kinds; others
    (a foreign file's lines) are skipped with a warning naming the line's point."""
    fields = exp.point_fields()
    points = exp.points(cfg)
    ref = points[0] if points else None
    out = []
    for rec in store.records(fields):
        if ref is not None and not all(_same_kind(rec[f], ref[f]) for f in fields):
            warnings.warn(f"{store.records_path}: a record with point {[rec[f] for f in fields]} is not of this "
                          "experiment; skipped", stacklevel=2)
            continue
        out.append(rec)
    return out


def build_report(store: RunStore, exp: Experiment | None = None, cfg: ExperimentConfig | None = None) -> str:
    """Write ``results.parquet``, the figures and ``summary.md`` from the records; returns the summary."""
    if exp is None or cfg is None:
        exp, cfg = load_run(store)
    records = valid_records(store, exp, cfg)
    if not records:
        raise ConfigError(f"{store.root}: no completed records to report")
    df = pd.DataFrame(records)
    store.write_table(df)
    report = exp.report(cfg, df)
    store.write_report(report)
    return report.summary
