"""The report of one run directory: its table, figures and summary rebuilt from its stored records alone (written
into that run by its store).  Reports over many runs are :mod:`spuriouslab.collect` (which never writes into the
runs it reads) and their HTML page :mod:`spuriouslab.html`."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pandas as pd

from spuriouslab import tables
from spuriouslab.errors import ConfigError, describe
from spuriouslab.experiments import Report, get_experiment
from spuriouslab.store import RunStore, point_key


def load_plan(store: RunStore):
    """The experiment and its grid (a :class:`~spuriouslab.sweep.Plan`) a run directory was made with."""
    from spuriouslab.sweep import make_plan

    values = store.read_config()
    exp = get_experiment(values.pop("experiment"))
    grid = values.pop("grid", None)
    return make_plan(exp, values, grid)


def valid_records(store: RunStore, plan) -> list[dict]:
    """The run's records whose grid point is a point of the plan (as ``config.yaml`` has it now); the others (a
    foreign file's lines, a hand-edited ``"seed": 0.0``, points of a larger grid this directory ran before) stay
    in ``records.jsonl`` and are left out, with one warning saying how many."""
    fields = plan.point_fields()
    wanted = {point_key(p) for _, p in plan.points()}
    out, outside = [], []
    for rec in store.records(fields):
        (out if point_key({f: rec[f] for f in fields}) in wanted else outside).append(rec)
    if outside:
        example = {f: outside[0][f] for f in fields}
        warnings.warn(f"{store.records_path}: {len(outside)} record(s) outside this run's grid (e.g. {example}) "
                      "are not reported", stacklevel=2)
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
    try:
        return df, (sweep_report(plan, df) if plan.grid else plan.exp.report(plan.base, df))
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # records that hold their points but not what the report reads (hand-edited, a foreign file): one line
        raise ConfigError(f"{store.records_path}: its records cannot be reported ({describe(exc)}); were they "
                          "edited by hand?") from None


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
