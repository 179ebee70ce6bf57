"""Reports of run directories: rebuild a run's table, figures and summary from its stored records alone."""

from __future__ import annotations

from spuriouslab.errors import ConfigError
from spuriouslab.experiments import Experiment, ExperimentConfig, get_experiment
from spuriouslab.store import RunStore


def load_run(store: RunStore) -> tuple[Experiment, ExperimentConfig]:
    """The experiment and resolved config a run directory was made with."""
    values = store.read_config()
    exp = get_experiment(values.pop("experiment"))
    return exp, exp.make_config(values)


def build_report(store: RunStore, exp: Experiment | None = None, cfg: ExperimentConfig | None = None) -> str:
    """Write ``results.parquet``, the figures and ``summary.md`` from the records; returns the summary."""
    if exp is None or cfg is None:
        exp, cfg = load_run(store)
    df = store.table()
    if df.empty:
        raise ConfigError(f"{store.root}: no completed records to report")
    store.write_table(df)
    report = exp.report(cfg, df)
    store.write_report(report)
    return report.summary
