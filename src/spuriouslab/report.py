"""The report of one run directory: its table, figures and summary rebuilt from its stored records alone (written
into that run by its store).  Reports over many runs are :mod:`spuriouslab.collect` (which never writes into the
runs it reads) and their HTML page :mod:`spuriouslab.html`."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pandas as pd

from spuriouslab import tables
from spuriouslab.errors import ConfigError
from spuriouslab.experiments import Report, get_experiment
from spuriouslab.store import RunStore


def load_plan(store: RunStore):
    """The experiment and its grid (a :class:`~spuriouslab.sweep.Plan`) a run directory was made with."""
    from spuriouslab.sweep import make_plan

    values = store.read_config()
    exp = get_experiment(values.pop("experiment"))
    grid = values.pop("grid", None)
    return make_plan(exp, values, grid)


def _same_kind(value: Any, ref: Any) -> bool:
    if isinstance(ref, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(ref, bool)
    if isinstance(ref, int | float):
        return isinstance(value, int | float)
    return isinstance(value, type(ref))


def valid_records(store: RunStore, plan) -> list[dict]:
    """The run's records whose grid point has the plan's fields with values of the right kinds; others
    (a foreign file's lines) are skipped with a warning naming the line's point."""
    fields = plan.point_fields()
    first = plan.exp.points(plan.configs[0])  # one point shows the kinds; no need to expand the whole grid
    ref = {**plan.combos[0], **first[0]} if first else None
    out = []
    for rec in store.records(fields):
        if ref is not None and not all(_same_kind(rec[f], ref[f]) for f in fields):
            warnings.warn(f"{store.records_path}: a record with point {[rec[f] for f in fields]} is not of this "
                          "experiment; skipped", stacklevel=2)
            continue
        out.append(rec)
    return out


def _tag(combo: dict) -> str:
    text = "_".join(f"{k}-{v}" for k, v in combo.items())
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def combinations(plan, df: pd.DataFrame):
    """Each combination of a grid that has records: (its swept values, its config, its records)."""
    for combo, cfg in zip(plan.combos, plan.configs, strict=True):
        mask = pd.Series(True, index=df.index)
        for k, v in combo.items():
            mask &= df[k].map(lambda a, v=v: json.dumps(a, default=str) == json.dumps(v, default=str))
        if mask.any():
            yield combo, cfg, df[mask].reset_index(drop=True)


def sweep_report(plan, df: pd.DataFrame) -> Report:
    """A grid over swept fields: the headline table by swept field, a figure of the headline metrics against each
    swept field, and the experiment's own report for every combination (figures prefixed by it)."""
    exp = plan.exp
    headline = [m for m in exp.headline if m in df]
    ok = df[df.status == "ok"] if "status" in df else df
    keys = list(plan.grid)
    table = tables.aggregate(ok, keys, headline)
    figures: dict[str, Any] = {}
    verdicts: list[dict[str, Any]] = []
    for key in keys:
        figures[f"sweep_{key}"] = cross_figure(tables.aggregate(ok, [key], headline), exp.name, key)
    lines = [f"# Sweep: {exp.name} over {', '.join(keys)}", "",
             f"{len(df)} records over {len(plan.combos)} combinations; headline metrics, means over everything else "
             "(n = records):", "", tables.markdown_table(table), ""]
    for combo, cfg, sub in combinations(plan, df):
        r = exp.report(cfg, sub)
        tag = _tag(combo)
        figures.update({f"{tag}__{name}": fig for name, fig in r.figures.items()})
        verdicts += [{**combo, **row} for row in r.verdicts]
        lines += [f"## {', '.join(f'{k}={v}' for k, v in combo.items())}", "",
                  r.summary.replace("figures/", f"figures/{tag}__"), ""]
    if verdicts:  # every setting's verdicts in one table, the settings as columns
        from spuriouslab.claims import VERDICT_COLUMNS

        shown = pd.DataFrame(verdicts)[[*keys, *VERDICT_COLUMNS]]
        lines[5:5] = ["## Verdicts by setting", "", tables.markdown_table(shown), ""]
    return Report("\n".join(lines) + "\n", figures, verdicts)


def make_report(store: RunStore, plan=None) -> tuple[pd.DataFrame, Report]:
    """A run's records as a table and its report, in memory (nothing written)."""
    plan = plan or load_plan(store)
    records = valid_records(store, plan)
    if not records:
        raise ConfigError(f"{store.root}: no completed records to report")
    df = pd.DataFrame(records)
    return df, (sweep_report(plan, df) if plan.grid else plan.exp.report(plan.base, df))


def judge_run(store: RunStore, plan=None) -> list[dict[str, Any]]:
    """The verdict rows of a run (each grid combination's, its swept values first), judged from its records
    without drawing its report."""
    plan = plan or load_plan(store)
    df = pd.DataFrame(valid_records(store, plan))
    if df.empty:
        return []
    if not plan.grid:
        return [v.row() for v in plan.exp.verdicts(df)]
    return [{**combo, **v.row()} for combo, _, sub in combinations(plan, df) for v in plan.exp.verdicts(sub)]


def build_report(store: RunStore, plan=None) -> str:
    """Write ``results.parquet``, the figures and ``summary.md`` from the records; returns the summary."""
    df, report = make_report(store, plan)
    store.write_table(df)
    store.write_report(report)
    return report.summary


def cross_figure(table: pd.DataFrame, experiment: str, x: str):
    """The experiment's headline metrics against the swept field ``x``, one line per metric."""
    import numpy as np

    from spuriouslab import plotting

    metrics = [m for m in get_experiment(experiment).headline if m in table]
    fig, ax = plotting.figure(size=(5.0, 3.8))
    t = table.groupby(x, sort=True)[metrics].mean().reset_index()
    cis = table.groupby(x, sort=True)[[f"{m}_ci" for m in metrics]].mean().reset_index()
    numeric = pd.api.types.is_numeric_dtype(t[x])
    xs = t[x].to_numpy() if numeric else np.arange(len(t))
    for m in metrics:
        plotting.band(ax, xs, t[m], cis[f"{m}_ci"], label=m, quantity=m, marker="o", ms=4)
    if not numeric:
        ax.set_xticks(xs, [str(v) for v in t[x]], rotation=20)
    plotting.style_axes(ax, x, "mean over seeds (95% band)", f"{experiment}: headline metrics vs {x}")
    return fig
