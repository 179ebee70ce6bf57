import json
import re
import shutil
import subprocess

import pandas as pd
import pytest

from conftest import TINY

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome")
                if shutil.which(b)), None)


def _runs(cli, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert cli("run", "memorization", *TINY, "--out", a)[0] == 0
    assert cli("run", "memorization", *TINY, "--set", "d=60", "--out", b)[0] == 0
    assert cli("run", "contamination", "--set", "iterations=40", "--set", "log_every=20", "--set", "seeds=2",
               "--set", "n=60", "--set", "n_test=60", "--out", c, "--no-progress")[0] == 0
    return a, b, c


def test_one_report_over_many_runs(cli, tmp_path):
    a, b, c = _runs(cli, tmp_path)
    out = tmp_path / "rep"
    code, stdout, err = cli("report", a, b, c, "--x", "nosuch", "--out", out)
    assert code == 2 and "--x: 'nosuch' is neither a record column nor a config field" in err
    code, stdout, err = cli("report", a, b, "--x", "d", "--out", out, "--html", out / "index.html")
    assert code == 0, err
    table = pd.read_csv(out / "memorization.csv")
    assert sorted(table.d.unique()) == [40, 60] and {"spurious_acc", "spurious_acc_ci", "n"} <= set(table)
    assert (out / "memorization.tex").read_text().startswith("\\begin{tabular}")
    assert (out / "memorization_vs_d.png").stat().st_size > 1000
    code, stdout, err = cli("report", a, b, c, "--out", out, "--html", out / "all.html")
    assert code == 0, err
    page = (out / "all.html").read_text()
    assert page.count("<img ") >= 3 + 3 + 3 and "data:image/png;base64," in page
    for run in ("a", "b", "c"):
        assert f">{run}</a>" in page
    assert "config.yaml" in page and "env.json" in page and 'href="#tables"' in page
    assert "src=\"http" not in page and "<link" not in page  # self-contained


@pytest.mark.skipif(BROWSER is None, reason="no Chromium (Debian's chromium; .ci/run installs it)")
def test_the_html_report_opens_in_a_real_browser(cli, tmp_path):
    a, b, c = _runs(cli, tmp_path)
    page = tmp_path / "rep" / "index.html"
    assert cli("report", a, c, "--out", tmp_path / "rep", "--html", page)[0] == 0
    res = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                          "--virtual-time-budget=5000", "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120)
    found = re.search(r'<pre id="spuriouslab-check"[^>]*>(.*?)</pre>', res.stdout, re.S)
    assert found, res.stdout[-2000:] + res.stderr[-2000:]
    check = json.loads(found.group(1))
    assert check["images"] >= 6 and check["not_shown"] == 0 and check["errors"] == [], check
