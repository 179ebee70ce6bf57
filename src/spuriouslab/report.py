"""The report of one run directory: its table, figures and summary rebuilt from its stored records alone (written
into that run by its store).  Reports over many runs are :mod:`spuriouslab.collect` (which never writes into the
runs it reads) and their HTML page :mod:`spuriouslab.html`."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd

from spuriouslab import tables
from spuriouslab.errors import ConfigError, describe
from spuriouslab.experiments import Report, get_experiment
from spuriouslab.store import RunStore, point_key

if TYPE_CHECKING:
    from spuriouslab.experiments import ExperimentConfig
    from spuriouslab.sweep import Plan


def load_plan(store: RunStore) -> Plan:
    """The experiment and its grid (a :class:`~spuriouslab.sweep.Plan`) a run directory was made with."""
    from spuriouslab.sweep import make_plan

    values = store.read_config()
    exp = get_experiment(values.pop("experiment"))
    grid = values.pop("grid", None)
    return make_plan(exp, values, grid)


def valid_records(store: RunStore, plan: Plan) -> list[dict[str, Any]]:
    """The run's records whose grid point is a point of the plan (as ``config.yaml`` has it now); the others (a
    foreign file's lines, a hand-edited ``"seed": 0.0``, points of a larger grid this directory ran before) stay
    in ``records.jsonl`` and are left out, with one warning saying how many."""
    fields = plan.point_fields()
    wanted = {point_key(p) for _, p in plan.points()}
    out: list[dict[str, Any]] = []
    outside: list[dict[str, Any]] = []
    for rec in store.records(fields):
        (out if point_key({f: rec[f] for f in fields}) in wanted else outside).append(rec)
    if outside:
        example = {f: outside[0][f] for f in fields}
        warnings.warn(
            f"{store.records_path}: {len(outside)} record(s) outside this run's grid (e.g. {example}) are not reported",
            stacklevel=2,
        )
    return out


def _tag(combo: dict) -> str:
    text = "_".join(f"{k}-{v}" for k, v in combo.items())
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def combinations(plan: Plan, df: pd.DataFrame) -> Iterator[tuple[dict[str, Any], ExperimentConfig, pd.DataFrame]]:
    """Each combination of a grid that has records: (its swept values, its config, its records)."""
    for combo, cfg in zip(plan.combos, plan.configs, strict=True):
        mask = pd.Series(True, index=df.index)
        for k, v in combo.items():
            mask &= df[k].map(lambda a, v=v: json.dumps(a, default=str) == json.dumps(v, default=str))
        if mask.any():
            yield combo, cfg, df[mask].reset_index(drop=True)


def sweep_report(plan: Plan, df: pd.DataFrame) -> Report:
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
    lines = [
        f"# Sweep: {exp.name} over {', '.join(keys)}",
        "",
        f"{len(df)} records over {len(plan.combos)} combinations; headline metrics, means over everything else "
        "(n = records):",
        "",
        tables.markdown_table(table),
        "",
    ]
    for combo, cfg, sub in combinations(plan, df):
        r = exp.report(cfg, sub)
        tag = _tag(combo)
        figures.update({f"{tag}__{name}": fig for name, fig in r.figures.items()})
        verdicts += [{**combo, **row} for row in r.verdicts]
        lines += [
            f"## {', '.join(f'{k}={v}' for k, v in combo.items())}",
            "",
            r.summary.replace("figures/", f"figures/{tag}__"),
            "",
        ]
    verdicts = figure_family(verdicts + pooled_verdicts(plan, df), keys)
    if "rho" in keys and "colour_flip" in df:  # the coloured task over its correlation spectrum
        figures.update(coloured_figures(ok, exp.name))
    if verdicts:  # every setting's verdicts in one table, the settings as columns
        from spuriouslab.claims import VERDICT_COLUMNS, p_text

        shown = pd.DataFrame(verdicts)[[*keys, *VERDICT_COLUMNS]]
        shown["p"] = shown["p"].map(p_text)
        lines[5:5] = ["## Verdicts by setting", "", tables.markdown_table(shown), ""]
    return Report("\n".join(lines) + "\n", figures, verdicts)


def figure_family(rows: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """A run's verdict rows as one family: each names its ``setting`` (the swept values it was judged at) and the
    adjusted verdicts are Holm's over every row of the run (every setting together), not within each setting."""
    from spuriouslab.claims import adjust_rows, setting_text

    return adjust_rows([{**r, "setting": setting_text(r, keys)} for r in rows], "holm")


def pooled_verdicts(plan: Plan, df: pd.DataFrame) -> list[dict[str, Any]]:
    """Verdicts on the claims about a swept field itself (``varies`` names only swept fields: worst-group
    accuracy against ``rho``, say), judged across its combinations, separately for each value of the other swept
    fields; the pooled fields read ``all``."""
    keys = list(plan.grid)
    out = []
    for claim in plan.exp.claims:
        if not claim.varies or not set(claim.varies) <= set(keys):
            continue
        others = [k for k in keys if k not in claim.varies]
        parts = df.groupby(others, dropna=False) if others else [((), df)]
        for values, sub in parts:
            values = values if isinstance(values, tuple) else (values,)
            for v in plan.exp.verdicts_of([claim], sub):
                out.append({**dict(zip(others, values, strict=True)), **{k: "all" for k in claim.varies}, **v.row()})
    return out


def coloured_figures(df: pd.DataFrame, experiment: str) -> dict[str, Any]:
    """The coloured task against ``rho`` (one line per model; kernels at their smallest ridge): accuracy on the
    ID / independent / reversed test sets, worst-group and group-balanced accuracy, colour reliance and the
    spurious correlation C; and for kernels over a ridge grid, C against lambda, one line per rho (the follow-up's
    Color-MNIST figure)."""
    import numpy as np

    from spuriouslab import plotting

    figures: dict[str, Any] = {}
    at = df[df.ridge == df.ridge.min()] if "ridge" in df else df
    panels = [
        ("accuracy (mean over samples)", ["acc_id", "acc_indep", "acc_reversed"], "acc"),
        ("groups of the independent set", ["worst_group_acc", "group_balanced_acc"], "acc"),
        ("colour reliance: predictions flipped by the colour alone", ["colour_flip"], "fraction"),
        ("spurious correlation C", ["spurious_corr"], None),
    ]
    fig, axes = plotting.panel_grid(1, len(panels), size=(4.0, 3.4))
    models = list(dict.fromkeys(at.model)) if "model" in at else [experiment]
    styles = {m: c for m, c in zip(models, plotting.colors(len(models)), strict=True)}
    for ax, (title, metrics, quantity) in zip(axes[0], panels, strict=True):
        for model in models:
            sub = at[at.model == model] if "model" in at else at
            for j, m in enumerate(metrics):
                t = tables.aggregate(sub, ["rho"], [m])
                plotting.band(
                    ax,
                    t.rho.to_numpy(dtype=float),
                    t[m],
                    t[f"{m}_ci"],
                    quantity=quantity or m,
                    label=f"{model}: {m}" if len(metrics) > 1 or len(models) > 1 else m,
                    color=styles[model],
                    linestyle=["-", "--", ":"][j],
                    marker="o",
                    ms=3,
                )
        plotting.style_axes(ax, "rho = P(colour agrees with the label)", "", title)
    fig.suptitle(
        f"{experiment}: the coloured task from label-independent (0.5) to fully spurious (1); mean and "
        "95% band over seeds",
        fontsize=9,
    )
    figures["coloured_spectrum"] = fig
    if "ridge" in df and df.ridge.nunique() > 1:
        fig, axes = plotting.panel_grid(1, len(models), size=(4.4, 3.4))
        rhos = sorted(df.rho.unique())
        for ax, model in zip(axes[0], models, strict=True):
            for rho, color in zip(rhos, plotting.colors(len(rhos)), strict=True):
                sub = df[(df.model == model) & (df.rho == rho)]
                t = tables.aggregate(sub, ["ridge"], ["spurious_corr"])
                x = t.ridge.to_numpy(dtype=float)
                plotting.band(
                    ax,
                    np.where(x > 0, x, np.nan),
                    t.spurious_corr,
                    t.spurious_corr_ci,
                    label=f"rho={rho:g}",
                    color=color,
                    marker="o",
                    ms=3,
                )
            ax.set_xscale("log")
            plotting.style_axes(
                ax,
                "ridge lambda (log axis: lambda = 0 not shown)",
                "spurious correlation C",
                f"{model}: C against lambda",
            )
        figures["coloured_c_vs_lambda"] = fig
    return figures


def make_report(store: RunStore, plan: Plan | None = None) -> tuple[pd.DataFrame, Report]:
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
        raise ConfigError(
            f"{store.records_path}: its records cannot be reported ({describe(exc)}); were they edited by hand?"
        ) from None


def judge_run(store: RunStore, plan: Plan | None = None) -> list[dict[str, Any]]:
    """The verdict rows of a run (each grid combination's, its swept values first), judged from its records
    without drawing its report."""
    plan = plan or load_plan(store)
    df = pd.DataFrame(valid_records(store, plan))
    if df.empty:
        return []
    if not plan.grid:
        return figure_family([v.row() for v in plan.exp.verdicts(df)], [])
    rows = [{**combo, **v.row()} for combo, _, sub in combinations(plan, df) for v in plan.exp.verdicts(sub)]
    return figure_family(rows + pooled_verdicts(plan, df), list(plan.grid))


def build_report(store: RunStore, plan: Plan | None = None) -> str:
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
