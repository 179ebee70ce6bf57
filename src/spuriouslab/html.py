"""The self-contained HTML page of a cross-run report: tables, figures embedded as data URIs, each run's summary,
config and environment; it opens from disk without a server and checks itself on load (every image shown, no
script error)."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from spuriouslab import tables
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


def markdown_to_html(text: str) -> str:
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


def write_html(runs: list[RunInfo], cross: dict[str, pd.DataFrame], extra_figures: dict[str, Path],
               path: Path) -> Path:
    """One self-contained page (figures embedded as data URIs) that opens from disk without a server."""
    def img(p: Path) -> str:
        data = base64.b64encode(p.read_bytes()).decode()
        return f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,{data}"><figcaption>' \
               f'{html.escape(p.stem)}</figcaption></figure>'

    toc = ['<li><a href="#tables">Tables across runs</a></li>']
    toc += [f'<li><a href="#run-{i}">{html.escape(r.label)}</a> ({html.escape(r.experiment)}, {len(r.df)} '
            'records)</li>' for i, r in enumerate(runs)]
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>spuriouslab report</title>"
             "<style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}table{border-collapse:"
             "collapse;font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 6px}"
             "img{max-width:100%}figure{display:inline-block;margin:0.5em}pre{background:#f5f5f5;padding:0.5em;"
             "overflow:auto;font-size:11px}</style></head><body>",
             f"<h1>spuriouslab report: {len(runs)} run(s)</h1><ul>{''.join(toc)}</ul>",
             '<h2 id="tables">Tables across runs</h2>']
    for name, table in cross.items():
        parts.append(f"<h3>{html.escape(name)}</h3>" + markdown_to_html(tables.markdown_table(table)))
    for name, p in extra_figures.items():
        parts.append(img(p))
    for i, r in enumerate(runs):
        parts.append(f'<h2 id="run-{i}">{html.escape(r.label)} <small>({html.escape(r.experiment)})</small></h2>'
                     f'<p><a href="#tables">back to the tables</a></p>')
        parts.append(markdown_to_html(r.summary))
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
