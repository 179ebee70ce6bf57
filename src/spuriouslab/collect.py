"""Reports over many run directories: each run's records read and its report made in memory (the runs are never
written to), tables across runs by run and a swept field (Markdown, CSV, LaTeX), figures of the headline metrics
against that field, and one HTML page (:mod:`spuriouslab.html`)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from spuriouslab import tables as tables_
from spuriouslab.bounded import read_json
from spuriouslab.errors import ConfigError
from spuriouslab.experiments import get_experiment
from spuriouslab.html import RunInfo, write_html
from spuriouslab.report import cross_figure, load_plan, make_report
from spuriouslab.store import RunStore


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in label)


def labels(directories: list[Path]) -> list[str]:
    """A distinct label for each run: its directory name, with as many parent names as it takes to tell runs of
    the same name apart."""
    paths = [Path(d).resolve() for d in directories]
    for depth in range(1, max(len(p.parts) for p in paths) + 1):
        names = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def collect(directories: list[Path]) -> list[RunInfo]:
    """Read every run's records and make its report in memory: what a cross-run report needs.  Nothing is written
    into the runs (no lock, no rebuilt table or figures); a directory given twice is refused."""
    seen: dict[Path, Path] = {}
    for d in directories:
        if not Path(d).is_dir():
            raise ConfigError(f"report: {d} is not a directory")
        real = Path(d).resolve()
        if real in seen:
            raise ConfigError(f"report: {d} is given twice (as {seen[real]}); each run counts once")
        seen[real] = Path(d)
    runs = []
    for d, label in zip(directories, labels(directories), strict=True):
        store = RunStore(d)
        plan = load_plan(store)
        df, report = make_report(store, plan)
        env = read_json(store.root / "env.json") if (store.root / "env.json").exists() else {}
        runs.append(RunInfo(store.root, label, plan.exp.name, plan.config_dump(), env, df, report))
    return runs


def _swept(column: str, run: RunInfo) -> pd.Series:
    """The value of ``column`` per record: the record's own column, else the run's config value."""
    if column in run.df:  # a list-valued column (ood_sets, a curve) as its JSON text: one value to group by
        return run.df[column].map(lambda v: json.dumps(v, default=str) if isinstance(v, list | dict | tuple) else v)
    if column in run.config:
        value = run.config[column]
        return pd.Series([json.dumps(value) if isinstance(value, list) else value] * len(run.df), index=run.df.index)
    raise ConfigError(f"--x: {column!r} is neither a record column nor a config field of {run.root}")


def cross_tables(runs: list[RunInfo], x: str | None) -> dict[str, pd.DataFrame]:
    """Per experiment: mean, 95% interval and count of its headline metrics by run (and by ``x``)."""
    out = {}
    for name in dict.fromkeys(r.experiment for r in runs):
        frames = []
        for r in runs:
            if r.experiment != name:
                continue
            df = r.df.copy()
            df["run"] = r.label
            if x is not None and x != "run":
                df[x] = _swept(x, r)
            frames.append(df)
        df = pd.concat(frames, ignore_index=True)
        if "status" in df:
            df = df[df.status == "ok"]
        metrics = [m for m in get_experiment(name).headline if m in df]
        by = ["run"] + ([x] if x is not None and x != "run" else [])
        out[name] = tables_.aggregate(df, by, metrics)
    return out


def verdicts_across(runs: list[RunInfo]) -> pd.DataFrame:
    """Every run's verdicts on its experiment's claims, one row each, the run's label first."""
    rows = [{"run": r.label, "experiment": r.experiment, **v} for r in runs for v in r.report.verdicts]
    return pd.DataFrame(rows)


def report_many(directories: list[Path], out: Path, html_path: Path | None = None, x: str | None = None) -> str:
    """Tables (Markdown, CSV, LaTeX), figures and an optional HTML page over many run directories."""
    from spuriouslab.plotting import save_figure
    from spuriouslab.store import atomic_write

    runs = collect(directories)
    tables = cross_tables(runs, x)
    out.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Path] = {}
    for i, r in enumerate(runs):  # each run's figures, under this report (the runs themselves stay untouched)
        where = out / "runs" / f"{i:02d}-{_safe(r.label)}"
        for name, fig in r.report.figures.items():
            save_figure(fig, where, name, writer=atomic_write)
        r.figures = [where / f"{name}.png" for name in r.report.figures]
    lines = [f"# Report over {len(runs)} run(s)", ""]
    verdicts = verdicts_across(runs)
    if len(verdicts):
        shown = verdicts[["run", "claim", "effect", "low", "high", "n_seeds", "verdict", "reason"]]
        atomic_write(out / "verdicts.csv", lambda tmp: verdicts.to_csv(tmp, index=False))
        atomic_write(out / "verdicts.tex", lambda tmp: tmp.write_text(tables_.latex_table(shown)))
        atomic_write(out / "verdicts.md", lambda tmp: tmp.write_text(tables_.markdown_table(shown) + "\n"))
        lines += ["## Verdicts on the papers' claims", "", tables_.markdown_table(shown), ""]

    def write_table(stem: str, table: pd.DataFrame) -> None:  # its CSV, LaTeX and Markdown
        atomic_write(out / f"{stem}.csv", lambda tmp: table.to_csv(tmp, index=False))
        atomic_write(out / f"{stem}.tex", lambda tmp: tmp.write_text(tables_.latex_table(table)))
        atomic_write(out / f"{stem}.md", lambda tmp: tmp.write_text(tables_.markdown_table(table) + "\n"))

    for name, table in tables.items():
        stem = name.replace("-", "_")
        write_table(stem, table)
        lines += [f"## {name}", "", tables_.markdown_table(table), ""]
        if x is not None:
            fig = cross_figure(table, name, x)
            save_figure(fig, out, f"{stem}_vs_{x}", writer=atomic_write)
            extra[f"{stem}_vs_{x}"] = out / f"{stem}_vs_{x}.png"
    summary = "\n".join(lines)
    atomic_write(out / "summary.md", lambda tmp: tmp.write_text(summary))
    if html_path is not None:
        write_html(runs, tables, extra, html_path, verdicts)
    return summary
