"""The self-contained HTML page of a cross-run report: tables, figures embedded as data URIs, each run's summary,
config and environment; it opens from disk without a server and checks itself on load (every image shown, no
script error)."""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from spuriouslab import tables
from spuriouslab.claims import effect_text, figure_cell, p_text, plan_text, seeds_text
from spuriouslab.experiments import Report


@dataclass
class RunInfo:
    """One run as a cross-run report sees it: where it is, its distinct label, its experiment, resolved config,
    environment, records (a table) and its report (in memory); ``figures`` the PNGs of that report once saved
    under the cross-run report's directory."""

    root: Path
    label: str
    experiment: str
    config: dict
    env: dict
    df: pd.DataFrame
    report: Report
    figures: list[Path] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return self.report.summary


FOLD_ROWS = 20  # a Markdown table longer than this is folded (<details>) in a page


def _inline(text: str) -> str:
    """One Markdown cell or line as HTML: escaped, with ``**bold**`` and ```code``` rendered (never shown as
    their markers)."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def markdown_to_html(text: str) -> str:
    """The summaries' Markdown (headings, tables, paragraphs; bold and code inline) as HTML; tables scroll
    sideways when wide, and are folded when longer than :data:`FOLD_ROWS` rows."""
    out: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if table:
            rows = [
                [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
                for line in table
                if not set(line.replace("|", "").strip()) <= set("-: ")
            ]
            head, body = rows[0], rows[1:]
            rendered = (
                '<div class="wide"><table><thead><tr>'
                + "".join(f"<th>{_inline(c)}</th>" for c in head)
                + "</tr></thead><tbody>"
                + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
                + "</tbody></table></div>"
            )
            if len(body) > FOLD_ROWS:  # a long table is folded: the reader opens it when wanted
                rendered = f"<details><summary>table of {len(body)} rows</summary>{rendered}</details>"
            out.append(rendered)
            table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = min(6, 2 + len(line) - len(line.lstrip("#")))
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(out)


CHECK_SCRIPT = """
<pre id="spuriouslab-check" style="display:none"></pre>
<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message || e)); });
  var original = console.error;
  console.error = function () {
    errors.push(Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    var imgs = Array.prototype.slice.call(document.images);
    var bad = imgs.filter(function (i) {
      var r = i.getBoundingClientRect();
      return !(i.naturalWidth > 0 && r.width > 0 && r.height > 0);
    });
    document.getElementById("spuriouslab-check").textContent =
      JSON.stringify({images: imgs.length, not_shown: bad.length, errors: errors});
  });
})();
</script>
"""


STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}table{border-collapse:collapse;"
    "font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}"
    "figure{display:inline-block;margin:0.5em}pre{background:#f5f5f5;padding:0.5em;overflow:auto;"
    "font-size:11px}.wide{overflow-x:auto;max-width:100%}.holds{background:#d7f0d2}.contradicted{background:#f6d0d0}.inconclusive{background:#eee}"
)


def _img(p: Path) -> str:
    data = base64.b64encode(p.read_bytes()).decode()
    return (
        f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,{data}"><figcaption>'
        f"{html.escape(p.stem)}</figcaption></figure>"
    )


def _page(title: str, parts: list[str], path: Path) -> Path:
    """Write one self-contained page (head, ``parts``, the self-check) atomically."""
    from spuriouslab.store import atomic_write

    text = "\n".join(
        [
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
            f"</title><style>{STYLE}</style></head><body>",
            *parts,
            CHECK_SCRIPT + "</body></html>",
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def _details(name: str, text: str) -> str:
    return f"<details><summary>{html.escape(name)}</summary><pre>{html.escape(text)}</pre></details>"


def write_html(
    runs: list[RunInfo],
    cross: dict[str, pd.DataFrame],
    extra_figures: dict[str, Path],
    path: Path,
    verdicts: pd.DataFrame | None = None,
) -> Path:
    """One self-contained page (figures embedded as data URIs) that opens from disk without a server: the verdicts
    on the papers' claims (when any run judged some), the tables across runs, then each run."""
    toc = (
        ['<li><a href="#verdicts">Verdicts on the papers\' claims</a></li>']
        if verdicts is not None and len(verdicts)
        else []
    )
    toc += ['<li><a href="#tables">Tables across runs</a></li>']
    toc += [
        f'<li><a href="#run-{i}">{html.escape(r.label)}</a> ({html.escape(r.experiment)}, {len(r.df)} records)</li>'
        for i, r in enumerate(runs)
    ]
    parts = [f"<h1>spuriouslab report: {len(runs)} run(s)</h1><ul>{''.join(toc)}</ul>"]
    if verdicts is not None and len(verdicts):
        parts.append(
            '<h2 id="verdicts">Verdicts on the papers\' claims</h2>'
            + verdict_table_html(
                verdicts.to_dict("records"), ["run", "claim", "effect", "n_seeds", "verdict", "reason"]
            )
        )
    parts.append('<h2 id="tables">Tables across runs</h2>')
    for name, table in cross.items():
        parts.append(f"<h3>{html.escape(name)}</h3>" + markdown_to_html(tables.markdown_table(table)))
    parts.extend(_img(p) for p in extra_figures.values())
    for i, r in enumerate(runs):
        parts.append(
            f'<h2 id="run-{i}">{html.escape(r.label)} <small>({html.escape(r.experiment)})</small></h2>'
            f'<p><a href="#tables">back to the tables</a></p>'
        )
        parts.append(markdown_to_html(r.summary))
        parts.extend(_img(p) for p in r.figures)
        parts.append(_details("config.yaml", yaml.safe_dump(r.config, sort_keys=False)))
        parts.append(_details("env.json", json.dumps(r.env, indent=2)))
    return _page("spuriouslab report", parts, path)


HEADINGS = {
    "n_seeds": "seeds",
    "effect": "effect [95% interval]",
    "p": "p (one-sided)",
    "adjusted": "adjusted",
    "seeds_to_decide": "seeds to decide",
}


def verdict_table_html(rows: list[dict], columns: list[str], correction: str = "") -> str:
    """Verdict rows as an HTML table, each row shaded by its (adjusted, where given) verdict; ``effect`` shows
    the effect and interval, ``n_seeds`` the seeds (pairs) it rests on, ``p`` the one-sided p-value of the
    verdict's side, ``seeds_to_decide`` the planner's seeds for an inconclusive claim; ``correction`` names the
    adjustment in the ``adjusted`` column's heading."""
    head = "".join(
        f"<th>{html.escape(HEADINGS.get(c, c) + (f' ({correction})' if c == 'adjusted' and correction else ''))}</th>"
        for c in columns
    )
    body = []
    for r in rows:
        cells = []
        for c in columns:
            if c == "effect":
                text = effect_text(r, 3)
            elif c == "n_seeds":
                text = seeds_text(r)
            elif c == "p":
                text = p_text(r.get("p"))
            elif c == "seeds_to_decide":
                text = plan_text(r)
            elif c == "figure":
                text = figure_cell(r)
            else:
                text = str(r.get(c, "") or ("-" if c == "setting" else ""))
            cells.append(f"<td>{html.escape(text)}</td>")
        shade = r.get("adjusted") or r.get("verdict", "")
        body.append(f'<tr class="{html.escape(str(shade))}">' + "".join(cells) + "</tr>")
    return (
        f'<div class="wide"><table class="verdicts"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


VERDICT_HTML_COLUMNS = [
    "figure",
    "claim",
    "effect",
    "n_seeds",
    "test",
    "p",
    "verdict",
    "adjusted",
    "seeds_to_decide",
    "reason",
]


def write_reproduction_html(
    path: Path,
    budget: str,
    rows: list[dict],
    sections: list,
    environment: dict,
    scale_text: str = "",
    scale: list | None = None,
) -> Path:
    """The reproduction page: the verdict table over every figure (figure, claim, effect and interval, seeds,
    verdict, runtime), the figures not run and why, the claims across scale (``scale_text``, Markdown, and the
    figures of ``scale``: (figure, knob, rows, PNG) each) when runs across scale are there, then each figure's own
    report (summary and figures)."""
    parts = [
        f"<h1>spuriouslab reproduction (--budget {html.escape(budget)})</h1>",
        f"<p>{html.escape(environment.get('host', ''))}; {html.escape(environment.get('time', '')[:10])}</p>",
        '<h2 id="verdicts">Verdicts on the papers\' claims</h2>',
        "<p>Each claim's one-sided test at 0.025 gives the raw verdict (its 95% interval's side); the adjusted "
        "verdict controls the false discovery rate at 5% across the whole table (Benjamini-Hochberg), and the "
        "headline counts use it.</p>",
        verdict_table_html(
            rows,
            [*VERDICT_HTML_COLUMNS[:2], "setting", *VERDICT_HTML_COLUMNS[2:], "runtime"],
            "Benjamini-Hochberg",
        ),
    ]
    skipped = [(name, o) for name, _, o, _, _ in sections if o.status != "done"]
    if skipped:
        parts.append(
            "<h3>Not run</h3><ul>"
            + "".join(
                f"<li>{html.escape(name)}: {html.escape(o.status)} {html.escape(o.reason)}</li>" for name, o in skipped
            )
            + "</ul>"
        )
    if scale_text:
        parts.append('<div id="across">' + markdown_to_html(scale_text) + "</div>")
        parts.extend(_img(png) for _, _, _, png in scale or [] if png is not None)
    parts.append(
        "<h2>Figures</h2><ul>"
        + "".join(
            f'<li><a href="#fig-{html.escape(name)}">{html.escape(name)}</a>: {html.escape(f.shows)}</li>'
            for name, f, o, _, _ in sections
            if o.status == "done"
        )
        + "</ul>"
    )
    for name, f, o, summary, figures in sections:
        if o.status != "done":
            continue
        sets = f" with {' '.join(o.sets)}" if o.sets else ""
        parts.append(
            f'<h2 id="fig-{html.escape(name)}">{html.escape(name)} <small>({html.escape(f.paper)}; '
            f"configs/{html.escape(f.config)}{html.escape(sets)})</small></h2>"
            '<p><a href="#verdicts">back to the verdicts</a></p>'
        )
        if o.verdicts:  # the figure's own verdicts (Holm over its claims), then its plots, then its full report
            parts.append(
                verdict_table_html(
                    [{**v, "figure": name} for v in o.verdicts],
                    ["claim", "setting", *VERDICT_HTML_COLUMNS[2:]],
                    "Holm",
                )
            )
        parts.extend(_img(p) for p in figures)
        parts.append(f"<details><summary>the figure's full report</summary>{markdown_to_html(summary)}</details>")
    parts.append(_details("environment", json.dumps(environment, indent=2)))
    return _page("spuriouslab reproduction", parts, path)
