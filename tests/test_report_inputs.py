"""Reports over what a user hands them: runs of the same name, a run given twice, records outside the run's grid,
outputs aimed into a run, list-valued columns as the x axis, names that are not plain text, unusable figure data in
records, and a sweep over tasks.  A report comes out right or the input is refused in one line; nothing already
computed is touched."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import assert_figure, assert_figures, one_line_exit_2, records, sets


def test_same_named_runs_stay_apart_and_a_run_given_twice_is_refused(cli, tmp_path, tiny_run):
    a = tiny_run.copy("contamination", tmp_path / "a" / "fig")
    code, _, err = cli(*tiny_run.args("contamination"), "--set", "lr=1e-1", "--out", tmp_path / "b" / "fig")
    assert code == 0, err
    code, stdout, err = cli("report", a, tmp_path / "b" / "fig", "--out", tmp_path / "r")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "r" / "contamination.csv")
    assert sorted(table.run) == ["a/fig", "b/fig"] and (table.n == 2).all()
    assert table.bg_norm_growth.nunique() == 2
    one_line_exit_2(cli("report", a, tmp_path / "a" / "fig", "--out", tmp_path / "r2"), "given twice")


def test_the_report_keeps_to_the_run_grid(cli, tmp_path, tiny_run):
    run = tiny_run.copy("contamination-stacked", tmp_path / "c")  # relu and identity, three seeds
    extra = {**records(run)[0], "seed": 0.0, "bg_norm_growth": 1e9}  # a hand-appended "fourth seed"
    with open(run / "records.jsonl", "a") as fh:
        fh.write(json.dumps(extra) + "\n")
    code, _, err = cli("report", run)
    assert code == 0 and "outside this run's grid" in err, err
    df = pd.read_parquet(run / "results.parquet")
    assert len(df) == 6 and df.bg_norm_growth.max() < 1e9
    # the grid shrunk into the same directory: the table is the new grid's, the other records stay on disk
    code, _, err = cli(*tiny_run.args("contamination-stacked"), *sets("activation=relu", "seeds=1"), "--out", run)
    assert code == 0, err
    df = pd.read_parquet(run / "results.parquet")
    assert list(df.activation) == ["relu"] and list(df.seed) == [0]
    assert len(records(run)) == 7


def test_report_outputs_never_overwrite_a_run(cli, tmp_path, tiny_run):
    c1, c2 = (tiny_run.copy("contamination", tmp_path / name) for name in ("c1", "c2"))
    before = (c2 / "records.jsonl").read_bytes()
    summary = (c1 / "summary.md").read_bytes()
    one_line_exit_2(cli("report", c2, "--html", c2 / "records.jsonl"), "--html", "c2")
    one_line_exit_2(cli("report", c1, c2, "--out", c1), "--out")
    one_line_exit_2(cli("report", c1, c2, "--out", c2 / "figures"), "--out")
    assert (c2 / "records.jsonl").read_bytes() == before
    assert (c1 / "summary.md").read_bytes() == summary


def test_list_valued_columns_as_the_x_of_a_report(cli, tmp_path, tiny_run):
    run = tiny_run("contamination")
    code, _, err = cli("report", run, "--x", "curve_step", "--out", tmp_path / "r")
    assert code == 0, err
    assert_figure(tmp_path / "r" / "contamination_vs_curve_step.png")


def test_user_names_reach_figures_literally(cli, tmp_path):
    from test_distillation import _folder

    _folder(tmp_path / "data", ood=("$\\foo$", "x|y"))
    code, stdout, err = cli(
        "run", "distillation",
        *sets("task=folder", f"data_root={tmp_path / 'data'}", "canvas=12", "epochs=2", "teacher_epochs=2"),
        *sets("log_every=1", "seeds=1", "batch_size=4", "embed=4"),
        "--out", tmp_path / "r", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "$\\foo$" in stdout and "x\\|y" in stdout  # shown as named; the | escaped: the columns stay in place
    header = next(line for line in stdout.splitlines() if line.startswith("| model"))
    row = next(line for line in stdout.splitlines() if line.startswith("| teacher"))
    assert header.replace("\\|", "").count("|") == row.replace("\\|", "").count("|")
    code, _, err = cli("report", tmp_path / "r", "--html", tmp_path / "r.html", "--out", tmp_path / "rep")
    assert code == 0, err
    tex = (tmp_path / "rep" / "verdicts.tex").read_text() if (tmp_path / "rep" / "verdicts.tex").exists() else ""
    assert "_" not in tex.replace("\\_", "")


def test_tex_tables_are_escaped():
    from spuriouslab.tables import latex_table

    tex = latex_table(pd.DataFrame({"acc_plain": [0.5], "name": ["a_b & 50%"]}))
    assert "acc\\_plain" in tex and "a\\_b \\& 50\\%" in tex


def test_log_axes_keep_readable_labels_with_literal_text(tmp_path):
    """Text is shown literally (no mathtext), so log axes get plain labels with superscripts, not TeX source."""
    import matplotlib.pyplot as plt

    from spuriouslab import plotting

    fig, ax = plt.subplots()
    ax.set_xscale("log")
    ax.plot([1e-4, 10], [1, 2])
    plotting.save_figure(fig, tmp_path, "log")
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels and all("$" not in t and "mathdefault" not in t for t in labels), labels
    assert "10\u207b\u2074" in labels  # 10^-4
    plt.close(fig)


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "not an array",
        {"shape": [2, 3], "dtype": "uint8", "data": "!!"},
        {"shape": [99, 3, 4, 4], "dtype": "uint8", "data": "AAAA"},
        {"shape": [1, 3, 2, 2], "dtype": "object", "data": "AAAAAAAAAAAAAAAA"},
        {"shape": [2, 2], "dtype": "uint8", "data": "AAAAAA=="},
    ],
)
def test_bad_vis_entries_are_left_out_of_the_figure_with_a_warning(cli, tmp_path, bad, tiny_run):
    run = tiny_run.copy("background-features", tmp_path / "b")
    recs = records(run)
    for r in recs:
        if bad is None:
            r.pop("vis")
        else:
            r["vis"] = bad
        r["cam_images"] = bad if bad is not None else r["cam_images"]
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    code, _, err = cli("report", run)
    assert code == 0, err
    assert "not usable" in err and "not drawn" in err
    assert_figure(run / "figures" / "feature_grids.png", min_ink=0.001)


def test_a_sweep_over_task_reports(cli, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "experiment: distillation\nepochs: 2\nteacher_epochs: 2\nlog_every: 1\nseeds: 1\nn: 40\n"
        "n_test: 20\nwidth: 8\nembed: 4\ngrid:\n  task: [synthetic, digits-background]\n"
    )
    code, stdout, err = cli("sweep", spec, "--out", tmp_path / "s", "--no-progress")
    assert code == 0, err
    assert {(r["task"], r["activation"]) for r in records(tmp_path / "s")} == {
        ("synthetic", "relu"),
        ("synthetic", "identity"),
        ("digits-background", "relu"),
    }
    code, _, err = cli("report", tmp_path / "s")
    assert code == 0, err
    assert np.isfinite(pd.read_parquet(tmp_path / "s" / "results.parquet").acc_teacher_id).all()
    assert_figures(tmp_path / "s", "sweep_task")


# ------------------------------------------------------------------- records and files from disk, bounded
def _edit_records(run, edit):
    lines = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines() if line.strip()]
    for i, rec in enumerate(lines):
        edit(i, rec)
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


@pytest.mark.parametrize("value", ["abc", True, "\x1b[2J\x1b[31mred"])
def test_a_metric_hand_edited_to_another_kind_is_skipped_and_recomputed(cli, tmp_path, tiny_run, value):
    """A record (not the first) whose metric became a string or a boolean: the report and the rerun name its line
    in a warning (control characters escaped) and leave it out; the rerun computes its point again, and the
    table is the uninterrupted run's."""
    from conftest import assert_resumes_identically

    run = tiny_run.copy("memorization", tmp_path / "m")
    _edit_records(run, lambda i, r: r.update(spurious_acc=value) if i == 3 else None)
    code, _, err = cli("report", run)
    assert code == 0 and "records.jsonl:4: spurious_acc is" in err and "where the other records hold a number" in err
    assert "\x1b" not in err, err
    code, _, err = cli(*tiny_run.args("memorization"), "--out", run)
    assert code == 0 and "1 done" in err, err
    good = [r for r in records(run) if not isinstance(r["spurious_acc"], str | bool)]
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in good))
    assert_resumes_identically(tiny_run("memorization"), run)


def test_metrics_near_the_float_limit_give_no_verdict(cli, tmp_path, tiny_run):
    """Values near 1e308 whose differences overflow: no claim is judged on an infinite effect or bound."""
    run = tiny_run.copy("memorization", tmp_path / "m")
    _edit_records(run, lambda i, r: r.update(spurious_acc=1.7e308 * (1 if r["n_train"] == 10 else -1)))
    code, stdout, err = cli("report", run)
    assert code == 0, err
    rows = [line for line in stdout.splitlines() if line.startswith("| RF: spurious accuracy falls")]
    assert rows and all("holds" not in row and "contradicted" not in row for row in rows), rows


def test_a_yaml_alias_bomb_is_refused_fast_in_one_line(cli, tmp_path, tiny_run):
    """A 500-byte config whose nested aliases expand to 9**9 values: in a run's config.yaml (``report``) and as
    ``--config``, one line naming the file, before anything is expanded."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb = "\n".join(lines) + "\n"
    assert len(bomb) < 600
    run = tiny_run.copy("memorization", tmp_path / "m")
    (run / "config.yaml").write_text((run / "config.yaml").read_text() + bomb)
    one_line_exit_2(cli("report", run), "config.yaml", "expands to more than")
    (tmp_path / "bomb.yaml").write_text("experiment: memorization\n" + bomb)
    one_line_exit_2(
        cli("run", "memorization", "--config", tmp_path / "bomb.yaml", "--out", tmp_path / "x"), "expands to more than"
    )


def test_files_from_disk_are_read_within_a_bound_and_echoed_clean(cli, tmp_path, monkeypatch, tiny_run):
    """A config file over the bound is refused by its size, before it is read; a value with terminal escapes and
    a bidirectional override reaches the terminal escaped; a long value is cut."""
    from spuriouslab import bounded, yamlio

    big = tmp_path / "big.yaml"
    big.write_text("experiment: memorization\n" + "# padding\n" * 200)
    with monkeypatch.context() as mp:
        mp.setattr(bounded, "TEXT_BYTES", 1000)
        mp.setattr(yamlio, "TEXT_BYTES", 1000)
        one_line_exit_2(cli("run", "memorization", "--config", big, "--out", tmp_path / "x"), "bytes is more than 1000")
    nasty = tmp_path / "nasty.yaml"
    nasty.write_text('experiment: memorization\nactivation: "\\e[2J\\u202egotcha' + "x" * 5000 + '"\n')
    line = one_line_exit_2(cli("run", "memorization", "--config", nasty, "--out", tmp_path / "x"), "activation")
    assert "\x1b" not in line and "\u202e" not in line and "\\x1b" in line and len(line) < 1000, line
