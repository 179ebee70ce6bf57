import json
import re
import shutil
import subprocess

import pandas as pd
import pytest

from conftest import assert_figure

BROWSER = next(
    (
        shutil.which(b)
        for b in ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome")
        if shutil.which(b)
    ),
    None,
)


def _runs(tiny_run, tmp_path):
    """Three runs named a, b, c: memorization at d=40 and d=60, and contamination (copies of the session's)."""
    return (
        tiny_run.copy("memorization", tmp_path / "a"),
        tiny_run.copy("memorization-d60", tmp_path / "b"),
        tiny_run.copy("contamination", tmp_path / "c"),
    )


def test_one_report_over_many_runs(cli, tmp_path, tiny_run):
    a, b, c = _runs(tiny_run, tmp_path)
    out = tmp_path / "rep"
    code, stdout, err = cli("report", a, b, c, "--x", "nosuch", "--out", out)
    assert code == 2 and "--x: 'nosuch' is neither a record column nor a config field" in err
    code, stdout, err = cli("report", a, b, "--x", "d", "--out", out, "--html", out / "index.html")
    assert code == 0, err
    table = pd.read_csv(out / "memorization.csv")
    assert sorted(table.d.unique()) == [40, 60] and {"spurious_acc", "spurious_acc_ci", "n"} <= set(table)
    assert (out / "memorization.tex").read_text().startswith("\\begin{tabular}")
    assert_figure(out / "memorization_vs_d.png")
    code, stdout, err = cli("report", a, b, c, "--out", out, "--html", out / "all.html")
    assert code == 0, err
    page = (out / "all.html").read_text()
    assert page.count("<img ") >= 3 + 3 + 3 and "data:image/png;base64," in page
    verdicts = pd.read_csv(out / "verdicts.csv")  # every run's verdicts, judged from its records
    assert set(verdicts.run) == {"a", "b", "c"} and set(verdicts.verdict) <= {"holds", "contradicted", "inconclusive"}
    assert "RF: spurious accuracy falls as N grows" in set(verdicts[verdicts.run == "a"].claim)
    assert (out / "verdicts.tex").read_text().startswith("\\begin{tabular}")
    assert "## Verdicts on the papers' claims" in (out / "summary.md").read_text()
    assert page.index('id="verdicts"') < page.index('id="tables"')
    assert len(re.findall(r'<tr class="(?:holds|contradicted|inconclusive)">', page)) >= len(verdicts)
    for run in ("a", "b", "c"):
        assert f">{run}</a>" in page
    assert "config.yaml" in page and "env.json" in page and 'href="#tables"' in page
    assert 'src="http' not in page and "<link" not in page  # self-contained


@pytest.mark.skipif(BROWSER is None, reason="no Chromium (Debian's chromium; .ci/run installs it)")
def test_the_html_report_opens_in_a_real_browser(cli, tmp_path, tiny_run):
    a, b, c = _runs(tiny_run, tmp_path)
    page = tmp_path / "rep" / "index.html"
    assert cli("report", a, c, "--out", tmp_path / "rep", "--html", page)[0] == 0
    res = subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'<pre id="spuriouslab-check"[^>]*>(.*?)</pre>', res.stdout, re.S)
    assert found, res.stdout[-2000:] + res.stderr[-2000:]
    check = json.loads(found.group(1))
    assert check["images"] >= 6 and check["not_shown"] == 0 and check["errors"] == [], check


def _snapshot(root):
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.rglob("*"))}


def test_a_cross_run_report_reads_runs_and_never_writes_into_them(cli, tmp_path, tiny_run):
    a = tiny_run.copy("memorization", tmp_path / "x" / "fig")  # two runs of the same name
    c = tiny_run.copy("memorization-d60", tmp_path / "y" / "fig")
    (a / "figures" / "accuracy_vs_n.png").unlink()  # a run's own outputs are not what the report reads
    before = {d: _snapshot(d) for d in (a, c)}
    code, stdout, err = cli("report", a, c, "--out", tmp_path / "rep", "--html", tmp_path / "rep" / "p.html")
    assert code == 0, err
    assert {d: _snapshot(d) for d in (a, c)} == before  # nothing written, not even a lock
    table = pd.read_csv(tmp_path / "rep" / "memorization.csv")
    assert sorted(table.run) == ["x/fig", "y/fig"]  # one row each, not merged under their common name
    assert_figure(tmp_path / "rep" / "runs" / "00-x-fig" / "accuracy_vs_n.png")
    code, _, err = cli("report", a, tmp_path / "x" / ".." / "x" / "fig", "--out", tmp_path / "rep2")
    assert code == 2 and "is given twice" in err and len(err.strip().splitlines()) == 1
