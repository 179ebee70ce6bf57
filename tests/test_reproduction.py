"""``spuriouslab reproduce --all``: skip reasons, resume after a kill, the verdict table and the HTML report."""

import json
import os
import re
import signal
import subprocess
import sys

import pandas as pd
import pytest

from spuriouslab.errors import ConfigError
from spuriouslab.figures import FIGURES
from spuriouslab.reproduction import INDEX, reproduce_all, skip_reason
from test_report import BROWSER


def test_skip_reasons_name_the_budget_the_data_and_the_gpu():
    gpu_fig, data_fig = FIGURES["zh-padded-cifar"], FIGURES["bm-mnist"]
    assert skip_reason(gpu_fig, "cpu", True, lambda d: True) == "paper scale: needs a GPU (--budget gpu)"
    assert skip_reason(gpu_fig, "gpu", False, lambda d: True) == "needs a GPU"
    assert (
        skip_reason(gpu_fig, "gpu", False, lambda d: False)
        == "needs cifar10 (spuriouslab data fetch cifar10); needs a GPU"
    )
    assert skip_reason(data_fig, "cpu", False, lambda d: d != "mnist") == (
        "needs mnist (spuriouslab data fetch mnist, or its offline subset mnist-5k: pip install "
        "'spuriouslab[mnist-subset]')"
    )
    assert skip_reason(gpu_fig, "gpu", True, lambda d: True) == ""
    assert skip_reason(FIGURES["bm-digits"], "cpu", False, lambda d: False) == ""  # built-in data


def test_a_failing_figure_is_recorded_and_the_rest_go_on(tmp_path):
    ran = []

    def run_one(name, path, sets, run_dir):
        ran.append((name, sets))
        raise RuntimeError(f"{name} broke\nsecond line")

    lines = []
    out = reproduce_all(
        tmp_path,
        "cpu",
        run_one,
        has_gpu=False,
        found=lambda d: False,
        only=["zh-theory", "bm-mnist", "zh-activations"],
        progress=False,
        echo=lines.append,
    )
    assert [n for n, _ in ran] == ["zh-theory", "zh-activations"]  # the registry's order; the skipped one not run
    assert out["zh-theory"].status == "failed" and out["zh-theory"].reason == "zh-theory broke"
    assert out["bm-mnist"].status == "skipped" and "needs mnist" in out["bm-mnist"].reason
    assert dict(ran)["zh-activations"] == list(FIGURES["zh-activations"].cpu_sets)  # the cpu budget's overrides
    saved = json.loads((tmp_path / INDEX).read_text())
    assert saved["budget"] == "cpu" and saved["figures"]["zh-theory"]["status"] == "failed"
    assert any(line.startswith("bm-mnist: skipped") for line in lines)
    with pytest.raises(ConfigError, match="holds a --budget cpu reproduction"):
        reproduce_all(tmp_path, "gpu", run_one, has_gpu=True, found=lambda d: True, progress=False)
    with pytest.raises(ConfigError, match="--only: got 'nosuch'"):
        reproduce_all(
            tmp_path / "b", "cpu", run_one, has_gpu=False, found=lambda d: True, only=["nosuch"], progress=False
        )


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines() if line.strip()]


def test_reproduce_all_resumes_after_a_kill_and_writes_one_verdict_report(cli, tmp_path):
    out = tmp_path / "rep"
    cmd = [
        sys.executable,
        "-m",
        "spuriouslab.cli",
        "reproduce",
        "--all",
        "--only",
        "bm-digits,zh-padded-cifar,bm-nn-mnist",
        "--no-progress",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env={**env, "SPURIOUSLAB_KILL_AFTER": "records:5"}, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert len(_records(out / "bm-digits")) == 5
    assert json.loads((out / INDEX).read_text())["figures"]["bm-digits"]["status"] == "running"
    # Ctrl-C (SIGINT to the process, held at its 5th record): the whole reproduction ends, exit 130, the index says
    # the figure was interrupted and the next one never started
    from conftest import held, wait_held

    with held(cmd[3:-2], out, "records:5", tmp_path) as sigint:
        wait_held(sigint, tmp_path)
        sigint.send_signal(signal.SIGINT)
        _, err = sigint.communicate(timeout=120)
    assert sigint.returncode == 130 and "Traceback" not in err, err
    assert "interrupted in bm-digits" in err and "run the same command again to resume" in err, err
    index = json.loads((out / INDEX).read_text())["figures"]
    assert index["bm-digits"]["status"] == "interrupted" and index["bm-nn-mnist"]["status"] == "pending"
    assert len(_records(out / "bm-digits")) == 10
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = _records(out / "bm-digits")
    assert len(records) == 30 and len({r["point_id"] for r in records}) == 30  # resumed, nothing computed twice
    index = json.loads((out / INDEX).read_text())["figures"]
    assert index["bm-digits"]["status"] == "done" and index["bm-digits"]["verdicts"]
    assert index["zh-padded-cifar"] == {
        **index["zh-padded-cifar"],
        "status": "skipped",
        "reason": "paper scale: needs a GPU (--budget gpu)",
    }
    assert "bm-nn-mnist: skipped" in proc.stdout and "| bm-digits | RF: spurious accuracy falls" in proc.stdout
    table = pd.read_csv(out / "verdicts.csv")
    assert set(table.figure) == {"bm-digits"} and set(table.verdict) <= {"holds", "contradicted", "inconclusive"}
    rf = table[table.claim == "RF: spurious accuracy falls as N grows"].iloc[0]
    assert rf.verdict == "holds" and rf.high < 0 and rf.n_seeds == 3  # measured on the figure's 3 seeds
    # every row of the table is the judge's verdict recomputed from the figure's records, and the adjusted column is
    # Benjamini-Hochberg over the table (statsmodels)
    from statsmodels.stats.multitest import multipletests

    from spuriouslab.report import judge_run
    from spuriouslab.store import RunStore

    again = pd.DataFrame(judge_run(RunStore(out / "bm-digits")))
    assert list(table.claim) == list(again.claim) and list(table.verdict) == list(again.verdict)
    for col in ("effect", "low", "high", "p_value", "p_against"):
        assert table[col].to_numpy() == pytest.approx(again[col].to_numpy(), rel=1e-12, nan_ok=True), col
    bh = {side: multipletests(table[side], method="fdr_bh")[1] for side in ("p_value", "p_against")}
    expected = [bh["p_against" if v == "contradicted" else "p_value"][i] for i, v in enumerate(table.verdict)]
    assert table.p_adjusted.to_numpy() == pytest.approx(expected, rel=1e-12)

    again = subprocess.run(cmd, env=env, capture_output=True, text=True)  # all done: nothing runs again
    assert again.returncode == 0 and "bm-digits: done earlier" in again.stderr
    assert len(_records(out / "bm-digits")) == 30

    _folders_must_be_the_figures_runs(cli, out)

    page = (out / "reproduction.html").read_text()
    assert page.index('class="verdicts"') < page.index('id="fig-bm-digits"')  # the verdicts come first
    assert "paper scale: needs a GPU" in page and "cores, device cpu" in page  # the machine it ran on
    if BROWSER is None:
        pytest.skip("no Chromium (Debian's chromium; .ci/run installs it)")
    res = subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--virtual-time-budget=5000",
            "--dump-dom",
            (out / "reproduction.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'<pre id="spuriouslab-check"[^>]*>(.*?)</pre>', res.stdout, re.S)
    assert found, res.stdout[-2000:] + res.stderr[-2000:]
    check = json.loads(found.group(1))
    assert check["images"] >= 2 and check["not_shown"] == 0 and check["errors"] == [], check
    main = res.stdout[res.stdout.index('class="verdicts"') : res.stdout.index('id="fig-')]  # the table over figures
    rows = re.findall(r'<tr class="(holds|contradicted|inconclusive)">', main)
    assert len(rows) == len(table)  # every verdict rendered, shaded by its (adjusted) verdict
    assert "**holds**" not in res.stdout and "<strong>" in res.stdout  # Markdown bold rendered, not shown literally


def _folders_must_be_the_figures_runs(cli, out):
    """A figure's folder made to differ from its recipe (``--set seeds=1`` into it: the difference is shown beside
    its verdicts) and to hold another experiment's run (no verdicts from it: the figure fails, named); ``--out``
    mixing the two kinds of folder is refused.  Leaves ``out`` as it found it."""
    import shutil

    from conftest import one_line_exit_2

    keep = out.parent / "bm-digits-kept"
    shutil.copytree(out / "bm-digits", keep)
    code, _, err = cli("reproduce", "bm-digits", "--set", "seeds=1", "--no-progress", "--out", out / "bm-digits")
    assert code == 0 and "0 done" in err, err  # nothing computed: seed 0 is there
    code, stdout, err = cli("reproduce", "--all", "--only", "bm-digits", "--no-progress", "--out", out)
    assert code == 0, err
    assert "| bm-digits (not its recipe: seeds=1, recipe 3) |" in stdout, stdout
    table = pd.read_csv(out / "verdicts.csv")
    assert set(table.note) == {"not its recipe: seeds=1, recipe 3"} and set(table.n_seeds) == {1}

    shutil.rmtree(out / "bm-digits")
    shutil.copytree(keep, out / "bm-digits")
    (out / "bm-digits" / "config.yaml").write_text("experiment: contamination\n")  # another experiment's run
    code, stdout, err = cli("reproduce", "--all", "--only", "bm-digits", "--no-progress", "--out", out)
    assert code == 1 and "holds a 'contamination' run, not this figure's (memorization)" in err + stdout, err
    assert "| bm-digits |" not in stdout
    assert json.loads((out / INDEX).read_text())["figures"]["bm-digits"]["status"] == "failed"
    one_line_exit_2(cli("reproduce", "--all", "--out", out / "bm-digits"), "is a run directory")
    one_line_exit_2(cli("reproduce", "bm-digits", "--out", out), "holds a reproduction")

    shutil.rmtree(out / "bm-digits")
    shutil.copytree(keep, out / "bm-digits")
    only = "bm-digits,zh-padded-cifar,bm-nn-mnist"
    code, _, err = cli("reproduce", "--all", "--only", only, "--no-progress", "--out", out)
    assert code == 0 and "bm-digits: done in" in err and len(_records(out / "bm-digits")) == 30, err
    # a run made before a field existed (its config.yaml lacks it) matches a recipe that leaves it at its default
    config = out / "bm-digits" / "config.yaml"
    config.write_text("".join(line for line in config.read_text().splitlines(True) if "spurious_spectrum" not in line))
    code, _, err = cli("reproduce", "--all", "--only", only, "--no-progress", "--out", out)
    assert code == 0 and "bm-digits: done earlier" in err and "not its recipe" not in err, err


def test_reproduce_all_refuses_bad_input_in_one_line(cli, tmp_path):
    for args, message in [
        (["--budget", "tpu"], "--budget: got 'tpu'"),
        (["--only", "nosuch"], "--only: got 'nosuch'"),
        (["--set", "seeds=1"], "--set: not with --all"),
    ]:
        code, _, err = cli("reproduce", "--all", *args, "--out", tmp_path / "x", "--no-progress")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    code, _, err = cli("reproduce", "bm-digits", "--only", "bm-digits")
    assert code == 2 and "--only: goes with --all" in err


def test_one_figure_registry_lists_every_figure_reproduce_shows():
    """spuriouslab.figures alone (what the docs read) holds every figure of ``reproduce --list``; importing the
    reproduction adds none."""
    code = (
        "import spuriouslab.figures as f; a = list(f.FIGURES); import spuriouslab.reproduction; "
        "print(a == list(f.FIGURES)); print(*a)"
    )
    alone = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    listing = subprocess.run(
        [sys.executable, "-m", "spuriouslab", "reproduce", "--list"], capture_output=True, text=True, check=True
    ).stdout
    listed = [line.split()[0] for line in listing.splitlines() if line.strip() and not line.startswith(" ")]
    assert alone[0] == "True" and alone[1].split() == listed and len(listed) == 32
    assert {"zh-padded-vit-cpu", "zh-distill-digits-vit"} <= set(listed)


# ------------------------------------------------------------------------------ hostile input (issue: hostile)
@pytest.mark.parametrize("only", [",", "", " , ", "nosuch"])
def test_only_that_names_no_figure_is_one_line_and_writes_nothing(cli, tmp_path, only):
    from conftest import one_line_exit_2

    one_line_exit_2(cli("reproduce", "--all", "--only", only, "--out", tmp_path / "rep"), "--only")
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize(
    "damage",
    [
        '{"budget": "cpu", "figures": []}',
        '{"budget": "cpu", "figures": {"zh-theory": {"figure": "zh-theory", "status": "done", "seconds": "abc"}}}',
        '{"budget": "cpu", "figures": {"zh-theory": {"figure": "zh-theory", "status": "done", "seconds": null}}}',
        '{"budget": "cpu", "figures": {"zh-theory": {"figure": "zh-theory", "status": "done", "seconds": -1}}}',
        '{"budget": "cpu", "figures": {"zh-theory": {"figure": "zh-theory", "status": "weird"}}}',
        '{"budget": "tpu", "figures": {}}',
        "[1, 2",
        "\x00\x01",
    ],
)
def test_a_damaged_reproduction_index_is_one_line(cli, tmp_path, damage):
    from conftest import one_line_exit_2

    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / INDEX).write_text(damage)
    # zh-padded-cifar is paper scale: skipped on the cpu budget, nothing computed either way
    one_line_exit_2(
        cli("reproduce", "--all", "--only", "zh-padded-cifar", "--out", tmp_path / "rep", "--no-progress"),
        "reproduction.json",
    )
