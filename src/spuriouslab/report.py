"""Reports of run directories: rebuild a run's table, figures and summary from its stored records alone, and one
report over many runs (tables as Markdown, CSV and LaTeX, figures over a swept field, a self-contained HTML page)."""

from __future__ import annotations

import base64
import html
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from spuriouslab import tables as T

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


def sweep_report(plan, df: pd.DataFrame) -> Report:
    """A grid over swept fields: the headline table by swept field, a figure of the headline metrics against each
    swept field, and the experiment's own report for every combination (figures prefixed by it)."""
    exp = plan.exp
    headline = [m for m in exp.headline if m in df]
    ok = df[df.status == "ok"] if "status" in df else df
    keys = list(plan.grid)
    table = T.aggregate(ok, keys, headline)
    figures: dict[str, Any] = {}
    for key in keys:
        figures[f"sweep_{key}"] = cross_figure(T.aggregate(ok, [key], headline), exp.name, key)
    lines = [f"# Sweep: {exp.name} over {', '.join(keys)}", "",
             f"{len(df)} records over {len(plan.combos)} combinations; headline metrics, means over everything else "
             "(n = records):", "", T.markdown_table(table), ""]
    for combo, cfg in zip(plan.combos, plan.configs, strict=True):
        mask = pd.Series(True, index=df.index)
        for k, v in combo.items():
            mask &= df[k].map(lambda a, v=v: json.dumps(a, default=str) == json.dumps(v, default=str))
        sub = df[mask]
        if sub.empty:
            continue
        r = exp.report(cfg, sub.reset_index(drop=True))
        tag = _tag(combo)
        figures.update({f"{tag}__{name}": fig for name, fig in r.figures.items()})
        lines += [f"## {', '.join(f'{k}={v}' for k, v in combo.items())}", "",
                  r.summary.replace("figures/", f"figures/{tag}__"), ""]
    return Report("\n".join(lines) + "\n", figures)


def build_report(store: RunStore, plan=None) -> str:
    """Write ``results.parquet``, the figures and ``summary.md`` from the records; returns the summary."""
    plan = plan or load_plan(store)
    records = valid_records(store, plan)
    if not records:
        raise ConfigError(f"{store.root}: no completed records to report")
    df = pd.DataFrame(records)
    store.write_table(df)
    report = sweep_report(plan, df) if plan.grid else plan.exp.report(plan.base, df)
    store.write_report(report)
    return report.summary


# --------------------------------------------------------------------------------- many runs, one page


@dataclass
class RunInfo:
    root: Path
    experiment: str
    config: dict
    env: dict
    df: pd.DataFrame
    summary: str
    figures: list[Path]


def collect(directories: list[Path]) -> list[RunInfo]:
    """Rebuild every run's own report from its records and gather what a cross-run report needs."""
    runs = []
    for d in directories:
        if not Path(d).is_dir():
            raise ConfigError(f"report: {d} is not a directory")
        with RunStore(d) as store:
            store.lock()
            plan = load_plan(store)
            exp = plan.exp
            summary = build_report(store, plan)
            df = pd.read_parquet(store.results_path)
            env = json.loads((store.root / "env.json").read_text()) if (store.root / "env.json").exists() else {}
            runs.append(RunInfo(store.root, exp.name, plan.config_dump(), env, df, summary,
                                sorted(store.figures.glob("*.png"))))
    return runs


def _swept(field: str, run: RunInfo) -> pd.Series:
    """The value of ``field`` per record: the record's own column, else the run's config value."""
    if field in run.df:
        return run.df[field]
    if field in run.config:
        value = run.config[field]
        return pd.Series([json.dumps(value) if isinstance(value, list) else value] * len(run.df), index=run.df.index)
    raise ConfigError(f"--x: {field!r} is neither a record column nor a config field of {run.root}")


def cross_tables(runs: list[RunInfo], x: str | None) -> dict[str, pd.DataFrame]:
    """Per experiment: mean, 95% interval and count of its headline metrics by run (and by ``x``)."""
    out = {}
    for name in dict.fromkeys(r.experiment for r in runs):
        frames = []
        for r in runs:
            if r.experiment != name:
                continue
            df = r.df.copy()
            df["run"] = r.root.name
            if x is not None and x != "run":
                df[x] = _swept(x, r)
            frames.append(df)
        df = pd.concat(frames, ignore_index=True)
        if "status" in df:
            df = df[df.status == "ok"]
        metrics = [m for m in get_experiment(name).headline if m in df]
        by = ["run"] + ([x] if x is not None and x != "run" else [])
        out[name] = T.aggregate(df, by, metrics)
    return out


def cross_figure(table: pd.DataFrame, experiment: str, x: str):
    """The experiment's headline metrics against the swept field ``x``, one line per metric."""
    import numpy as np

    from spuriouslab import plotting as P

    metrics = [m for m in get_experiment(experiment).headline if m in table]
    fig, ax = P.figure(size=(5.0, 3.8))
    t = table.groupby(x, sort=True)[metrics].mean().reset_index()
    cis = table.groupby(x, sort=True)[[f"{m}_ci" for m in metrics]].mean().reset_index()
    numeric = pd.api.types.is_numeric_dtype(t[x])
    xs = t[x].to_numpy() if numeric else np.arange(len(t))
    for m in metrics:
        P.band(ax, xs, t[m], cis[f"{m}_ci"], label=m, quantity=m, marker="o", ms=4)
    if not numeric:
        ax.set_xticks(xs, [str(v) for v in t[x]], rotation=20)
    P.style_axes(ax, x, "mean over seeds (95% band)", f"{experiment}: headline metrics vs {x}")
    return fig


def _md_to_html(text: str) -> str:
    """The summaries' Markdown (headings, tables, paragraphs) as HTML."""
    out, table = [], []

    def flush():
        if table:
            rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table
                    if not set(line.replace("|", "").strip()) <= set("-: ")]
            head, body = rows[0], rows[1:]
            out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr></thead>"
                       "<tbody>" + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                                           for r in body) + "</tbody></table>")
            table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = min(6, 2 + len(line) - len(line.lstrip("#")))
            out.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "\n".join(out)


CHECK_SCRIPT = """
<pre id="spuriouslab-check" style="display:none"></pre>
<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message || e)); });
  var original = console.error;
  console.error = function () { errors.push(Array.prototype.join.call(arguments, " ")); original.apply(console, arguments); };
  window.addEventListener("load", function () {
    var imgs = Array.prototype.slice.call(document.images);
    var bad = imgs.filter(function (i) { var r = i.getBoundingClientRect(); return !(i.naturalWidth > 0 && r.width > 0 && r.height > 0); });
    document.getElementById("spuriouslab-check").textContent = JSON.stringify({images: imgs.length, not_shown: bad.length, errors: errors});
  });
})();
</script>
"""


def write_html(runs: list[RunInfo], tables: dict[str, pd.DataFrame], extra_figures: dict[str, Path],
               path: Path) -> Path:
    """One self-contained page (figures embedded as data URIs) that opens from disk without a server."""
    def img(p: Path) -> str:
        data = base64.b64encode(p.read_bytes()).decode()
        return f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,{data}"><figcaption>' \
               f'{html.escape(p.stem)}</figcaption></figure>'

    toc = ['<li><a href="#tables">Tables across runs</a></li>']
    toc += [f'<li><a href="#run-{i}">{html.escape(r.root.name)}</a> ({html.escape(r.experiment)}, {len(r.df)} '
            'records)</li>' for i, r in enumerate(runs)]
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>spuriouslab report</title>"
             "<style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}table{border-collapse:"
             "collapse;font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 6px}"
             "img{max-width:100%}figure{display:inline-block;margin:0.5em}pre{background:#f5f5f5;padding:0.5em;"
             "overflow:auto;font-size:11px}</style></head><body>",
             f"<h1>spuriouslab report: {len(runs)} run(s)</h1><ul>{''.join(toc)}</ul>",
             '<h2 id="tables">Tables across runs</h2>']
    for name, table in tables.items():
        parts.append(f"<h3>{html.escape(name)}</h3>" + _md_to_html(T.markdown_table(table)))
    for name, p in extra_figures.items():
        parts.append(img(p))
    for i, r in enumerate(runs):
        parts.append(f'<h2 id="run-{i}">{html.escape(r.root.name)} <small>({html.escape(r.experiment)})</small></h2>'
                     f'<p><a href="#tables">back to the tables</a></p>')
        parts.append(_md_to_html(r.summary))
        parts.extend(img(p) for p in r.figures)
        parts.append("<details><summary>config.yaml</summary><pre>" + html.escape(
            yaml.safe_dump(r.config, sort_keys=False)) + "</pre></details>")
        parts.append("<details><summary>env.json</summary><pre>" + html.escape(json.dumps(r.env, indent=2))
                     + "</pre></details>")
    parts.append(CHECK_SCRIPT + "</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    from spuriouslab.store import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text("\n".join(parts), encoding="utf-8"))
    return path


def report_many(directories: list[Path], out: Path, html_path: Path | None = None, x: str | None = None) -> str:
    """Tables (Markdown, CSV, LaTeX), figures and an optional HTML page over many run directories."""
    from spuriouslab.plotting import save_figure
    from spuriouslab.store import atomic_write

    runs = collect(directories)
    tables = cross_tables(runs, x)
    out.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Path] = {}
    lines = [f"# Report over {len(runs)} run(s)", ""]
    for name, table in tables.items():
        stem = name.replace("-", "_")
        atomic_write(out / f"{stem}.csv", lambda tmp, t=table: t.to_csv(tmp, index=False))
        atomic_write(out / f"{stem}.tex", lambda tmp, t=table: tmp.write_text(t.to_latex(index=False,
                                                                                          float_format="%.4g")))
        atomic_write(out / f"{stem}.md", lambda tmp, t=table: tmp.write_text(T.markdown_table(t) + "\n"))
        lines += [f"## {name}", "", T.markdown_table(table), ""]
        if x is not None:
            fig = cross_figure(table, name, x)
            save_figure(fig, out, f"{stem}_vs_{x}", writer=atomic_write)
            extra[f"{stem}_vs_{x}"] = out / f"{stem}_vs_{x}.png"
    summary = "\n".join(lines)
    atomic_write(out / "summary.md", lambda tmp: tmp.write_text(summary))
    if html_path is not None:
        write_html(runs, tables, extra, html_path)
    return summary
