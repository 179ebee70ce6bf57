"""The claim evaluator on constructed records: every verdict, paired and unpaired, one seed, NaN and diverged
records excluded and counted; intervals against an independent computation."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spuriouslab.claims import Claim, judge, verdict_markdown


def _records(relu, identity, status=None):
    n = len(relu)
    df = pd.DataFrame(
        {
            "activation": ["relu"] * n + ["identity"] * len(identity),
            "seed": [*range(n), *range(len(identity))],
            "gap": [*relu, *identity],
        }
    )
    df["status"] = status if status is not None else "ok"
    return df


DIFF = Claim(
    "t",
    "ReLU's gap exceeds the linear net's",
    "gap",
    "difference",
    when={"activation": "relu"},
    versus={"activation": "identity"},
)


def test_paired_difference_holds_with_the_t_interval_of_the_differences():
    relu, ident = [0.5, 0.7, 0.6, 0.65], [0.1, 0.12, 0.05, 0.2]
    v = judge(DIFF, _records(relu, ident))
    d = np.subtract(relu, ident)
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert v.paired and v.n == 4 and v.verdict == "holds" and v.excluded == 0
    assert v.effect == pytest.approx(d.mean()) and v.low == pytest.approx(d.mean() - half)
    assert v.high == pytest.approx(d.mean() + half)


def test_contradicted_and_inconclusive():
    assert judge(DIFF, _records([0.1, 0.11, 0.12], [0.5, 0.52, 0.49])).verdict == "contradicted"
    v = judge(DIFF, _records([0.1, 0.5, 0.3], [0.3, 0.2, 0.35]))
    assert v.verdict == "inconclusive" and v.reason == "interval spans zero"
    less = Claim(
        "t",
        "ReLU's gap is smaller",
        "gap",
        "difference",
        when={"activation": "relu"},
        versus={"activation": "identity"},
        side="less",
    )
    assert judge(less, _records([0.1, 0.11, 0.12], [0.5, 0.52, 0.49])).verdict == "holds"


def test_unpaired_difference_is_welch():
    df = _records([0.5, 0.6, 0.7], [0.1, 0.2])
    df.loc[df.activation == "identity", "seed"] += 10  # seeds that do not pair up: Welch
    v = judge(DIFF, df)
    a, b = np.array([0.5, 0.6, 0.7]), np.array([0.1, 0.2])
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    assert not v.paired and v.effect == pytest.approx(a.mean() - b.mean())
    assert v.low == pytest.approx(ci.low) and v.high == pytest.approx(ci.high)


def test_one_seed_is_inconclusive():
    v = judge(DIFF, _records([0.5], [0.1]))
    assert v.verdict == "inconclusive" and "one seed" in v.reason and v.n == 1


def test_nan_and_diverged_records_are_excluded_and_counted():
    df = _records(
        [0.5, 0.6, math.nan, 0.7], [0.1, 0.2, 0.15, 0.1], status=["ok", "ok", "ok", "diverged", "ok", "ok", "ok", "ok"]
    )
    v = judge(DIFF, df)  # seeds 2 (NaN) and 3 (diverged) of ReLU out, and so their identity partners
    assert v.paired and v.n == 2 and v.excluded == 4 and v.effect == pytest.approx(((0.5 - 0.1) + (0.6 - 0.2)) / 2)
    assert "2 pairs (4 excluded)" in verdict_markdown([v])
    empty = judge(DIFF, _records([math.nan], [math.nan]))
    assert empty.verdict == "inconclusive" and empty.reason == "no usable records" and empty.excluded == 2


def test_sign_trend_and_agreement():
    df = pd.DataFrame(
        {
            "seed": [0, 0, 0, 1, 1, 1, 2, 2, 2],
            "n_train": [10, 100, 1000] * 3,
            "acc": [0.9, 0.7, 0.5, 0.85, 0.72, 0.52, 0.95, 0.69, 0.48],
            "status": "ok",
        }
    )
    falls = Claim("t", "accuracy falls with N", "acc", "trend", over="n_train", side="less")
    v = judge(falls, df)
    slopes = [np.polyfit(np.log([10, 100, 1000]), df.acc[df.seed == s], 1)[0] for s in range(3)]
    assert v.verdict == "holds" and v.effect == pytest.approx(np.mean(slopes)) and v.n == 3
    above = Claim("t", "above chance", "acc", "sign", reference=0.5, when={"n_train": 10})
    assert judge(above, df).verdict == "holds"
    df["pred"] = df.acc + np.array([0.01, -0.01, 0.0, 0.0, 0.0, 0.006, -0.004, 0.0, 0.0])
    agree = Claim("t", "measured = predicted", "acc", "agreement", predicted="pred", tolerance=0.05)
    assert judge(agree, df).verdict == "holds"
    far = Claim("t", "measured = predicted", "acc", "agreement", predicted="pred", tolerance=0.001)
    df["pred"] = df.acc + np.array([0.2] * 3 + [0.21] * 3 + [0.19] * 3)
    assert judge(far, df).verdict == "contradicted"


def test_a_metric_the_records_lack_is_inconclusive_not_an_error():
    v = judge(Claim("t", "x", "asym_corr", "sign"), _records([0.5, 0.6], [0.1, 0.2]))
    assert v.verdict == "inconclusive" and v.reason == "no asym_corr in these records" and v.excluded == 4


def test_an_agreement_without_its_prediction_in_the_records_is_not_applicable():
    """A theory that does not cover the data (no predicted column) is not a verdict, unlike a missing metric."""
    v = judge(Claim("t", "x", "acc", "agreement", predicted="acc_pred", tolerance=0.1), _records([0.5, 0.6], [0.1]))
    assert not v.applicable and v.verdict == "inconclusive" and "no prediction (acc_pred)" in v.reason


def test_bad_claims_are_refused():
    with pytest.raises(ValueError, match="needs `versus`"):
        Claim("t", "x", "gap", "difference")
    with pytest.raises(ValueError, match="needs `over`"):
        Claim("t", "x", "gap", "trend")
    with pytest.raises(ValueError, match="tolerance"):
        Claim("t", "x", "gap", "agreement", predicted="p")


def test_a_within_record_difference_and_a_trend_averaged_over_other_axes():
    df = pd.DataFrame({"seed": [0, 1, 2], "teacher": [0.9, 0.92, 0.91], "student": [0.8, 0.85, 0.83], "status": "ok"})
    behind = Claim("t", "the student is behind the teacher", "teacher", "sign", minus="student")
    v = judge(behind, df)
    assert v.verdict == "holds" and v.effect == pytest.approx(np.mean([0.1, 0.07, 0.08]))
    rows = [
        {"seed": s, "n_train": n, "model": m, "acc": 1 / n + (0.5 if m == "ntk" else 0), "status": "ok"}
        for s in range(3)
        for n in (10, 100)
        for m in ("rf", "ntk")
    ]
    trend = judge(Claim("t", "falls", "acc", "trend", over="n_train", side="less"), pd.DataFrame(rows))
    assert trend.n == 3 and trend.effect == pytest.approx((0.01 - 0.1) / np.log(10))  # one slope a seed


RIDGE_TINY = {
    "d": 40,
    "n_train": [30],
    "n_test": 40,
    "alpha": [0.5],
    "ridge": [0.0, 0.01, 0.1, 1.0],
    "correlation": [0.5],
    "seeds": 2,
}
TINY_RUNS = {
    "contamination": {
        "activation": ["relu", "identity", "gelu", "leaky_relu", "sigmoid", "tanh"],
        "loss": ["hinge", "logistic"],
        "optimizer": ["sgd", "adam"],
        "iterations": 60,
        "log_every": 30,
        "seeds": 2,
        "n": 60,
        "n_test": 60,
        "width": 16,
    },
    "distillation": {
        "activation": ["relu"],
        "epochs": 20,
        "teacher_epochs": 20,
        "log_every": 10,
        "seeds": 2,
        "n": 60,
        "n_test": 40,
        "width": 16,
        "embed": 4,
    },
    "memorization": {
        "d": 40,
        "n_train": [10, 30],
        "n_test": 40,
        "width": ["inf"],
        "activation": ["relu", "phi2"],
        "alpha": [0.5, 0.25],
        "seeds": 2,
    },
    "alignment": {"d": 40, "n_train": [10, 30], "activation": ["relu", "phi2"], "alpha": [0.25, 0.5], "seeds": 2},
    "ridge": [  # linear ridge, and random features at infinite width (each with its deterministic equivalent)
        {"model": ["linear"], **RIDGE_TINY},
        {"model": ["rf"], "activation": ["relu"], "width": ["inf"], "spurious_corr": True, **RIDGE_TINY},
    ],
    "memorization-nn": {
        "data": "synthetic",
        "model": ["fc"],
        "d": 30,
        "n_train": [10, 30],
        "epochs": 2,
        "log_every": 1,
        "seeds": 2,
        "n_test": 30,
    },
    "background-features": {
        "data": "digits",
        "n_train": 60,
        "n_test": 30,
        "epochs": 1,
        "depth": 8,
        "seeds": 2,
        "vis_channels": 2,
        "vis_steps": 2,
        "vis_rounds": 1,
        "cam_images": 10,
        "batch_size": 30,
    },
}


@pytest.mark.parametrize("name", list(TINY_RUNS))
def test_every_declared_claim_is_measured_on_a_tiny_real_run(name):
    from spuriouslab.experiments import get_experiment, run_points

    exp = get_experiment(name)
    assert exp.claims, f"{name} declares no claim"
    runs = TINY_RUNS[name] if isinstance(TINY_RUNS[name], list) else [TINY_RUNS[name]]
    cfg = exp.make_config(runs[0])  # several runs where one config cannot hold every claim's conditions
    df = pd.concat([pd.DataFrame(run_points(exp, exp.make_config(r))) for r in runs], ignore_index=True)
    # claims about a swept field (the coloured task's rho) are judged across a sweep: tests/test_coloured.py
    claims = [c for c in exp.claims if set(c.varies) <= {*exp.Config.AXES, "seed"}]
    # claims about a remedy against none are judged on runs with the remedy axis: tests/test_remedies.py
    claims = [c for c in claims if c.when.get("remedy", "none") == "none"]
    # claims at one value of a swept field (the thesis claims at rho 0.5 / 0.9) are judged across a sweep over it:
    # tests/test_thesis.py
    claims = [c for c in claims if "rho" not in c.when]
    for claim in claims:  # each run covers every condition its experiment's claims name
        v = judge(claim, df)
        # a trend on a log axis cannot use the records at 0 (a ridge of 0): they are counted as excluded
        off_axis = int((df[claim.over] <= 0).sum()) if claim.comparison == "trend" else 0
        assert v.applicable and v.n == 2 and v.excluded == off_axis and math.isfinite(v.effect), (claim.text, v)
    report = exp.report(cfg, df)
    assert "## Verdicts on the paper's claims" in report.summary and len(report.verdicts) == len(claims), [
        v["claim"] for v in report.verdicts
    ]
    narrow = df[df[exp.Config.AXES[0]] == df[exp.Config.AXES[0]].iloc[0]]  # one value of the first axis
    report = exp.report(cfg, narrow)  # a run without some claims' conditions leaves those claims out, named nowhere
    assert all(judge(c, narrow).applicable for c in claims if c.text in {v["claim"] for v in report.verdicts})
    import matplotlib.pyplot as plt

    plt.close("all")


def test_statistics_reduce_each_seed_then_judge():
    from spuriouslab.claims import curve_change, minimum, rank_agreement, slope_at_optimum

    rows = [{"seed": s, "curve": [0.0, 0.1 + s / 10, 0.3 + s / 10], "status": "ok"} for s in range(3)]
    rises = Claim("t", "rises", "curve", "sign", statistic=curve_change("curve"))
    v = judge(rises, pd.DataFrame(rows))
    assert v.verdict == "holds" and v.effect == pytest.approx(0.4) and v.n == 3
    # C at lambda = 0, 0.1, 1 (per seed); the test loss is least at 0.1, where C still rises (+) or falls (-)
    rows = [
        {"seed": s, "ridge": lam, "C": c + s / 100 * (lam == 1.0), "mse": m, "status": "ok"}
        for s in range(3)
        for lam, c, m in [(0.0, 0.1, 0.5), (0.1, 0.2, 0.4), (1.0, 0.25, 0.6)]
    ]
    at_optimum = Claim(
        "t",
        "rising at the optimum",
        "C",
        "sign",
        statistic=slope_at_optimum("C", "ridge", "mse"),
        needs=("ridge", "mse"),
    )
    v = judge(at_optimum, pd.DataFrame(rows))
    assert v.verdict == "holds" and v.effect == pytest.approx(0.16)
    rows = [
        {"seed": s, "activation": a, "alpha": al, "m": g * al + s / 100 * (a == "b"), "g": g, "status": "ok"}
        for s in range(3)
        for al in (0.25, 0.5)
        for a, g in (("a", 1.0), ("b", 2.0), ("c", 3.0))
    ]
    order = Claim(
        "t",
        "ordered",
        "m",
        "sign",
        statistic=rank_agreement("m", "g", "activation"),
        by=("alpha",),
        needs=("g",),
        varies=("activation",),
    )
    v = judge(order, pd.DataFrame(rows))
    # tau 1 for each of 3 seeds: a bounded statistic, judged by the exact sign-flip test, whose smallest p at n = 3
    # is 1/8 - not testable, never a degenerate "+1 [+1, +1] holds"
    assert v.verdict == "inconclusive" and v.effect == pytest.approx(1.0) and v.test == "exact sign-flip"
    assert v.reason.startswith("not testable with n = 3") and v.seeds_to_decide == 6
    reversed_ = pd.DataFrame(rows).assign(m=lambda d: -d.m + np.random.default_rng(0).normal(0, 1e-3, len(d)))
    assert judge(order, reversed_).effect < -0.9
    one = pd.DataFrame(rows)[lambda d: d.activation == "a"]
    assert not judge(order, one).applicable and "activation not varied" in judge(order, one).reason
    worst = Claim("t", "every condition above 1", "g", "sign", reference=1.0, statistic=minimum("g"))
    assert judge(worst, pd.DataFrame(rows)).effect == pytest.approx(0.0)


def test_a_claim_whose_condition_a_run_lacks_is_not_applicable():
    df = _records([0.5, 0.6, 0.55], [0.0, 0.1, 0.05])
    gelu = Claim(
        "t",
        "gelu beats the linear net",
        "gap",
        "difference",
        when={"activation": "gelu"},
        versus={"activation": "identity"},
    )
    v = judge(gelu, df)
    assert not v.applicable and v.reason == "not run here: no records with activation=gelu"
    assert verdict_markdown([v]) == ""


def test_an_effect_of_exactly_zero_says_so():
    v = judge(DIFF, _records([0.2, 0.2, 0.2], [0.2, 0.2, 0.2]))
    assert v.verdict == "inconclusive" and v.reason == "no difference at all (every unit's effect is 0)"
