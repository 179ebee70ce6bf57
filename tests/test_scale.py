"""Claims across scale (issue 29): a figure run over its scale knob, every claim judged at every value, the flips
named, the figure drawn; in a reproduction, the section beside the verdicts."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from conftest import assert_figures, one_line_exit_2, records, sets

TINY_DISTILLATION = [
    *sets("teacher_epochs=30", "log_every=10", "seeds=2", "n=120", "n_test=80", "width=32"),
    *sets("embed=8", "d=64", "d_core=8", "d_bg=8"),
]


def _row(claim: str, knob: float, verdict: str, effect: float) -> dict:
    return {
        "epochs": knob,
        "claim": claim,
        "effect": effect,
        "low": effect - 0.1,
        "high": effect + 0.1,
        "n_seeds": 3,
        "p": 0.01,
        "verdict": verdict,
        "adjusted": verdict,
        "seeds_to_decide": None,
    }


def test_flips_name_where_each_verdict_changes_along_the_knob():
    from spuriouslab.report import claims_across, flips, scale_rows

    rows = [
        _row("a", 1000, "inconclusive", 0.05),
        _row("a", 100, "holds", 0.3),
        _row("a", 300, "holds", 0.2),
        _row("b", 100, "holds", 0.3),
        _row("b", 300, "holds", 0.3),
        _row("b", 1000, "holds", 0.3),
        {**_row("pooled over the knob", 0, "holds", 0.1), "epochs": "all"},  # a claim about the knob itself
    ]
    table = scale_rows(rows, ["epochs"])
    assert list(table.epochs) == [100, 100, 300, 300, 1000, 1000] and "pooled over the knob" not in set(table.claim)
    assert flips(table, "epochs") == {"a": "holds at epochs=100; inconclusive from epochs=1000"}
    text, fig = claims_across(rows, ["epochs"], draw=False)
    assert fig is None and "| a | **holds** +0.3 [+0.2, +0.4] | **holds** +0.2" in text
    assert "- a: holds at epochs=100; inconclusive from epochs=1000" in text and "- b:" not in text
    # not a scale: two swept fields, a text-valued field, one value
    assert scale_rows(rows, ["epochs", "lr"]) is None
    assert scale_rows([{**r, "epochs": "x"} for r in rows], ["epochs"]) is None
    assert scale_rows([r for r in rows if r["epochs"] == 100], ["epochs"]) is None


def test_reproduce_across_judges_every_claim_at_every_value_of_the_knob(cli, tmp_path, tiny_run):
    """``reproduce NAME --across epochs=40,80``: the recipe swept over the knob; the run at epochs=40 is the
    session's run of the same config (records equal), its verdicts are those of that run judged alone, and the
    report shows the claims across epochs as a table and a figure."""
    from spuriouslab.report import judge_run
    from spuriouslab.store import RunStore

    out = tmp_path / "across"
    code, _, err = cli(
        "reproduce", "zh-distillation", "--across", "epochs=40,80", *TINY_DISTILLATION, "--no-progress", "--out", out
    )
    assert code == 0, err
    session = tiny_run("distillation")
    untimed = lambda rs: [  # noqa: E731
        {k: v for k, v in r.items() if not k.startswith("seconds") and k not in ("point_id", "epochs")} for r in rs
    ]
    order = lambda rs: sorted(rs, key=lambda r: (r["activation"], r["seed"]))  # noqa: E731
    at_40 = [r for r in records(out) if r["epochs"] == 40]
    assert untimed(order(at_40)) == untimed(order(records(session)))  # the same config and seeds give the same records

    alone = {r["claim"]: r for r in judge_run(RunStore(session))}
    across = [r for r in judge_run(RunStore(out)) if r.get("epochs") == 40]
    assert across and {r["claim"] for r in across} == set(alone)
    for r in across:  # raw verdicts and effects as judged alone; the adjustment is over the whole run (both values)
        a = alone[r["claim"]]
        assert r["verdict"] == a["verdict"] and (r["effect"] == a["effect"] or math.isnan(a["effect"]))
        assert r["p_adjusted"] >= a["p_adjusted"] or math.isnan(a["p_adjusted"])

    summary = (out / "summary.md").read_text()
    assert "## Claims across epochs" in summary and "| claim | epochs=40 | epochs=80 |" in summary
    assert "(figures/claims_across_epochs.png)" in summary
    assert_figures(out, "claims_across_epochs")
    assert json.loads(json.dumps(pd.read_parquet(out / "results.parquet").epochs.unique().tolist())) == [40, 80]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["zh-distillation", "--across", "epochs"], ["--across", "KNOB=V1,V2"]),
        (["zh-distillation", "--across", "epochs=40"], ["--across", "two values"]),
        (["bm-digits", "--across", "declared"], ["--across", "bm-digits declares no scale knob"]),
        (["zh-distillation", "--across", "epochs=4,8", "--set", "epochs=5"], ["--across", "epochs is the knob"]),
        (["zh-distillation", "--across", "epochs=4,8", "--seeds", "6"], ["--seeds", "not with --across"]),
        (["nosuch", "--across", "epochs=4,8"], ["reproduce", "nosuch", "allowed"]),
        (["--all", "--across", "epochs=4,8"], ["--across", "with --all, give 'declared'"]),
        (["zh-distillation", "--across", "epochs=a,b"], ["epochs"]),
    ],
)
def test_reproduce_across_refuses_bad_input_in_one_line(cli, tmp_path, args, needles):
    one_line_exit_2(cli("reproduce", *args, "--out", tmp_path / "r"), *needles)
    assert not (tmp_path / "r").exists()


def test_a_reproduction_shows_the_claims_across_scale_it_finds(tmp_path):
    """``reproduce --all --across declared``: each figure that declares a knob also runs across it (its budget's
    sets, the knob swept) into ``<figure>-across-<knob>``; verdicts.md and the page show the section, the flips and
    the preset's rule, and the headline counts stay the figures' own."""
    from spuriouslab.figures import FIGURES
    from spuriouslab.reproduction import reproduce_all, verdicts_markdown, write_outputs

    calls = []

    def run_one(name, path, sets_, run_dir):
        from spuriouslab.runner import parse_sets, run

        calls.append((name, list(sets_), run_dir.name))
        across = any(s.startswith("epochs=") for s in sets_)  # the declared values, run here at a tiny scale
        tiny = [*TINY_DISTILLATION[1::2], "epochs=20,40" if across else "epochs=40"]
        run("distillation", parse_sets(tiny), out=run_dir, progress=False, log=None)

    outcomes = reproduce_all(
        tmp_path,
        "cpu",
        run_one,
        has_gpu=False,
        found=lambda d: True,
        only=["zh-distillation"],
        progress=False,
        echo=lambda line: None,
        across=True,
    )
    knob, values = FIGURES["zh-distillation"].across
    assert calls[1] == ("zh-distillation", [f"{knob}={','.join(map(str, values))}"], f"zh-distillation-across-{knob}")
    page = write_outputs(tmp_path, "cpu", outcomes, {"host": "test"})
    text = (tmp_path / "verdicts.md").read_text()
    assert "## Claims across scale" in text and "### zh-distillation across epochs" in text
    assert f"Preset rule: {FIGURES['zh-distillation'].rule}" in text
    assert verdicts_markdown(outcomes) in text  # the headline table is the figures' own, unchanged
    html = page.read_text()
    assert 'id="across"' in html and html.count("data:image/png") >= 2
