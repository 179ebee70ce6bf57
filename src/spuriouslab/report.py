"""The report of one run directory: its table, figures and summary rebuilt from its stored records alone (written
into that run by its store).  Reports over many runs are :mod:`spuriouslab.collect` (which never writes into the
runs it reads) and their HTML page :mod:`spuriouslab.html`."""

from __future__ import annotations

import json
import math
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
    modes = failure_modes(ok)
    if modes is not None:  # the two failure modes x the remedies (the contamination paper's thesis)
        text, figures["failure_modes"] = modes
        lines += [text, "", "![failure modes x remedies](figures/failure_modes.png)", ""]
    if verdicts:  # every setting's verdicts in one table, the settings as columns
        from spuriouslab.claims import VERDICT_COLUMNS, p_text

        shown = pd.DataFrame(verdicts)[[*keys, *VERDICT_COLUMNS]]
        shown["p"] = shown["p"].map(p_text)
        lines[5:5] = ["## Verdicts by setting", "", tables.markdown_table(shown), ""]
        scale = claims_across(verdicts, keys)
        if scale is not None:
            text, fig = scale
            figures[f"claims_across_{keys[0]}"] = fig
            lines[5:5] = ["", text, "", f"![claims across {keys[0]}](figures/claims_across_{keys[0]}.png)", ""]
    return Report("\n".join(lines) + "\n", figures, verdicts)


# the coloured task's two failure modes: (label, rho, drop) - contamination at rho 0.5 (ID minus novel-colour
# accuracy), spurious correlation at rho 0.9 (ID minus reversed-colour accuracy)
FAILURE_MODES = (
    ("contamination (rho 0.5): ID - novel colours", 0.5, "novel_drop"),
    ("spurious correlation (rho 0.9): ID - reversed colours", 0.9, "reversed_drop"),
)


def failure_modes(df: pd.DataFrame) -> tuple[str, Any] | None:
    """The coloured task's failure modes (columns) x the remedies, grouped by the family each was built for
    (rows): each cell the drop's mean and 95% interval over seeds, at the checkpoint chosen by worst-group
    validation accuracy where the run has a validation split (else the last), one table row and one figure row
    per model.  None unless the records hold several remedies at both rho 0.5 and 0.9."""
    import numpy as np

    from spuriouslab import plotting
    from spuriouslab.nets.remedies import REMEDIES

    if not {"novel_drop", "reversed_drop", "remedy", "rho"} <= set(df) or df.remedy.nunique() < 2:
        return None
    rhos = df.rho.to_numpy(dtype=float)
    if not all(np.isclose(rhos, rho).any() for _, rho, _ in FAILURE_MODES):
        return None
    prefix = "sel_wg_" if "sel_wg_novel_drop" in df and df["sel_wg_novel_drop"].notna().any() else ""
    order = {"none": 0, "contamination": 1, "spurious correlation": 2}
    remedies = sorted(dict.fromkeys(df.remedy), key=lambda r: (order.get(REMEDIES[r].family, 3), r))
    models = list(dict.fromkeys(df.model))
    rows = []
    for model in models:
        for remedy in remedies:
            row: dict[str, Any] = {"model": model, "family": REMEDIES[remedy].family, "remedy": remedy}
            for label, rho, metric in FAILURE_MODES:
                sel = (df.model == model) & (df.remedy == remedy) & np.isclose(rhos, rho)
                values = df.loc[sel, prefix + metric].dropna().to_numpy(dtype=float)
                mean, ci = tables.mean_ci(values) if len(values) else (math.nan, math.nan)
                row[label], row[f"{label} ci"], row[f"{label} n"] = float(mean), float(ci), len(values)
            rows.append(row)
    table = pd.DataFrame(rows)
    fig, axes = plotting.panel_grid(len(models), len(FAILURE_MODES), size=(4.6, 0.45 * len(remedies) + 1.4))
    colours = dict(zip(order, plotting.colors(len(order)), strict=True))
    for i, model in enumerate(models):
        part = table[table.model == model].reset_index(drop=True)
        for j, (label, _, _) in enumerate(FAILURE_MODES):
            ax = axes[i][j]
            for k, r in part.iterrows():
                ax.errorbar(r[label], -k, xerr=r[f"{label} ci"], fmt="o", color=colours.get(r.family, "k"), capsize=3)
            base = part.loc[part.remedy == "none", label]
            if len(base):
                ax.axvline(float(base.iloc[0]), color="k", linestyle=":", linewidth=0.8)
            ax.axvline(0.0, color="grey", linewidth=0.5)
            ax.set_yticks(-np.arange(len(part)))
            ax.set_yticklabels([f"{r.remedy} ({r.family})" for r in part.itertuples()], fontsize=8)
            plotting.style_axes(ax, "accuracy drop (mean, 95% interval)", "", f"{model}: {label}")
    fig.suptitle(
        "failure modes x remedies on the coloured task"
        + (" (checkpoints chosen by worst-group validation accuracy)" if prefix else " (last epoch)")
        + "; dotted: no remedy",
        fontsize=9,
    )
    cells = table[["model", "family", "remedy"]].copy()
    for label, _, _ in FAILURE_MODES:
        cells[label] = [
            f"{m:+.3f} [{m - c:+.3f}, {m + c:+.3f}] (n={n})"
            for m, c, n in zip(table[label], table[f"{label} ci"], table[f"{label} n"], strict=True)
        ]
    text = "\n".join(
        [
            "## Failure modes x remedies",
            "",
            "Each cell: the accuracy drop of that failure mode, mean and 95% interval over seeds"
            + (", at the checkpoint chosen by worst-group validation accuracy" if prefix else ", last epoch")
            + ". A remedy cures a failure mode where its drop is below no remedy's.",
            "",
            tables.markdown_table(cells),
        ]
    )
    return text, fig


def scale_rows(verdicts: list[dict[str, Any]], keys: list[str]) -> pd.DataFrame | None:
    """Claims across scale: for a run swept over one numeric field (a scale knob - epochs, training size,
    iterations), each claim's effect, interval and verdicts at each of its values, sorted by the knob; None for
    any other run.  Claims about the knob itself (pooled over it: ``all``) are left out."""
    if len(keys) != 1 or not verdicts:
        return None
    key = keys[0]
    rows = [r for r in verdicts if key in r and not isinstance(r[key], str | bool)]
    if not rows or len({r[key] for r in rows}) < 2:
        return None
    cols = [key, "claim", "effect", "low", "high", "n_seeds", "p", "verdict", "adjusted", "seeds_to_decide"]
    return pd.DataFrame(rows)[cols].sort_values([key], kind="stable").reset_index(drop=True)


def flips(table: pd.DataFrame, key: str, column: str = "verdict") -> dict[str, str]:
    """For each claim of a :func:`scale_rows` table, where its verdict changes along the knob, in words
    (``holds up to 300, inconclusive from 1000``); claims whose verdict does not change are left out."""
    out = {}
    for claim, part in table.groupby("claim", sort=False):
        values, verdicts = list(part[key]), list(part[column])
        changes = [i for i in range(1, len(verdicts)) if verdicts[i] != verdicts[i - 1]]
        if changes:
            pieces = [f"{verdicts[0]} at {key}={values[0]}"]
            pieces += [f"{verdicts[i]} from {key}={values[i]}" for i in changes]
            out[str(claim)] = "; ".join(pieces)
    return out


def claims_across(verdicts: list[dict[str, Any]], keys: list[str], draw: bool = True) -> tuple[str, Any] | None:
    """The claims-across-scale section of a run swept over one numeric knob (:func:`scale_rows`): a Markdown
    table, one row per claim and one column per knob value (the adjusted verdict and the effect), the values where
    each verdict flips; and (``draw``) one figure, a panel per claim, its effect and 95% interval against the knob,
    each point coloured by its verdict.  None for any other run."""
    from spuriouslab.claims import effect_text

    table = scale_rows(verdicts, keys)
    if table is None:
        return None
    key = keys[0]
    values = sorted(table[key].unique())
    claims = list(dict.fromkeys(table["claim"]))
    wide = []
    for claim in claims:
        part = table[table.claim == claim].set_index(key)
        row: dict[str, Any] = {"claim": claim}
        for v in values:
            r = part.loc[v] if v in part.index else None
            if isinstance(r, pd.DataFrame):  # a claim judged several times at one value (per condition)
                r = None
            row[f"{key}={v}"] = "-" if r is None else f"**{r['adjusted']}** {effect_text(r.to_dict(), 3)}"
        wide.append(row)
    turned = flips(table, key, "adjusted")
    lines = [
        f"## Claims across {key}",
        "",
        f"Each claim judged at each {key} (the adjusted verdict, Holm over the run, and the effect with its 95% "
        "interval). A verdict that changes with scale is a finding about the claim: it holds at some scales only.",
        "",
        tables.markdown_table(pd.DataFrame(wide)),
        "",
        *(
            [f"Verdicts that change with {key}:", "", *[f"- {c}: {t}" for c, t in turned.items()]]
            if turned
            else [f"No verdict changes across {key} = {', '.join(map(str, values))}."]
        ),
    ]
    return "\n".join(lines), scale_figure(table, key) if draw else None


VERDICT_COLOURS = {"holds": "#1a9850", "contradicted": "#d73027", "inconclusive": "#878787"}


def scale_figure(table: pd.DataFrame, key: str):
    """One panel per claim of a :func:`scale_rows` table: the effect and its 95% interval against the knob (a log
    axis when the values span a factor of 10 or more), each point coloured by its adjusted verdict, the zero line
    dotted."""
    import math
    import textwrap

    import numpy as np

    from spuriouslab import plotting

    claims = list(dict.fromkeys(table["claim"]))
    cols = min(3, len(claims))
    rows = math.ceil(len(claims) / cols)
    fig, grid = plotting.panel_grid(rows, cols)
    axes = grid.ravel()
    xs_all = table[key].to_numpy(dtype=float)
    log = xs_all.min() > 0 and xs_all.max() / xs_all.min() >= 10
    for ax, claim in zip(axes, claims, strict=False):
        part = table[table.claim == claim]
        x = part[key].to_numpy(dtype=float)
        y = part["effect"].to_numpy(dtype=float)
        lo = np.nan_to_num(y - part["low"].to_numpy(dtype=float), nan=0.0)
        hi = np.nan_to_num(part["high"].to_numpy(dtype=float) - y, nan=0.0)
        ax.plot(x, y, color="#444444", lw=1, zorder=1)
        for verdict, colour in VERDICT_COLOURS.items():
            m = (part["adjusted"] == verdict).to_numpy()
            if m.any():
                ax.errorbar(x[m], y[m], yerr=[lo[m], hi[m]], fmt="o", color=colour, capsize=3, label=verdict, zorder=2)
        ax.axhline(0.0, color="black", lw=0.8, ls=":")
        if log:
            ax.set_xscale("log")
        ax.set_xticks(sorted(set(x)), [f"{v:g}" for v in sorted(set(x))])
        ax.minorticks_off()
        title = "\n".join(textwrap.wrap(str(claim), 48)[:3])
        plotting.style_axes(ax, key, "effect (95% interval)", title, fontsize=8)
    plotting.hide_unused(grid, len(claims))
    return fig


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
