"""Verdicts a statistician would sign (spuriouslab.inference, spuriouslab.claims): corrections against statsmodels,
TOST on constructed bands, exact tests where a t interval is degenerate, the seeds-to-decide planner against a
power calculation by hand, and the digest of the claim definitions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spuriouslab import inference
from spuriouslab.claims import Claim, adjust, claims_digest, count_verdicts, judge, minimum, verdict_markdown


def _sign(values, **kw) -> pd.DataFrame:
    return pd.DataFrame({"seed": range(len(values)), "x": values, "status": "ok", **kw})


X_ABOVE = Claim("t", "x above 0", "x", "sign")


# ----------------------------------------------------------------------------------------------- corrections
def test_holm_and_bh_equal_statsmodels_on_constructed_p_values():
    from statsmodels.stats.multitest import multipletests

    p = [0.001, 0.008, 0.012, 0.03, 0.2, math.nan]
    holm, bh = inference.adjust_p(p, "holm"), inference.adjust_p(p, "fdr_bh")
    assert holm[:5] == pytest.approx(list(multipletests(p[:5], method="holm")[1]))
    assert bh[:5] == pytest.approx(list(multipletests(p[:5], method="fdr_bh")[1]))
    assert math.isnan(holm[5]) and math.isnan(bh[5])  # an untested claim is not part of the family
    # by hand: Holm multiplies the k-th smallest by (m - k + 1) and keeps the sequence monotone
    assert holm[:4] == pytest.approx([0.005, 0.032, 0.036, 0.06])
    # BH: p_(k) m / k, made monotone from the top
    assert bh[:4] == pytest.approx([0.005, 0.02, 0.02, 0.0375])


def test_adjusted_verdicts_sit_beside_the_raw_ones_and_the_counts_use_them():
    rng = np.random.default_rng(1)
    # three claims whose raw one-sided p lie in (0.01, 0.025) and one far under it: Holm keeps only the strong one
    weak = [_sign(v) for v in ([0.2, 0.9, 1.1, 1.4], [0.3, 0.8, 1.2, 1.3], [0.1, 0.9, 1.0, 0.6])]
    strong = _sign(list(5 + rng.normal(0, 0.1, 6)))
    raw = [judge(X_ABOVE, df) for df in [*weak, strong]]
    assert all(v.verdict == "holds" for v in raw) and all(0.01 < v.p_value < 0.025 for v in raw[:3])
    holm = adjust(raw, "holm")
    assert [v.adjusted for v in holm] == ["inconclusive"] * 3 + ["holds"]
    assert [v.verdict for v in holm] == ["holds"] * 4 and {v.correction for v in holm} == {"holm"}
    rows = [v.row() for v in holm]
    assert count_verdicts(rows) == {"holds": 4, "contradicted": 0, "inconclusive": 0}
    assert count_verdicts(rows, "adjusted") == {"holds": 1, "contradicted": 0, "inconclusive": 3}
    table = verdict_markdown(holm)
    assert "adjusted (holm)" in table and "| one-sample t |" in table


def test_raw_verdicts_are_the_95_percent_interval_rule():
    """A one-sided p below 0.025 exactly when the 95% two-sided interval excludes 0 on the claimed side."""
    rng = np.random.default_rng(0)
    for _ in range(40):
        values = rng.normal(rng.normal(0, 0.5), 1, 4)
        v = judge(X_ABOVE, _sign(list(values)))
        assert (v.verdict == "holds") == (v.low > 0) and (v.verdict == "contradicted") == (v.high < 0)
        assert v.p_value == pytest.approx(stats.ttest_1samp(values, 0, alternative="greater").pvalue)


# ----------------------------------------------------------------------------------------------- TOST
BAND = Claim("t", "measured = predicted", "x", "agreement", predicted="p", tolerance=0.1)


@pytest.mark.parametrize(
    ("centre", "verdict"),
    [(0.0, "holds"), (0.5, "contradicted"), (-0.5, "contradicted"), (0.1, "inconclusive")],
    ids=["inside", "outside-above", "outside-below", "straddling"],
)
def test_tost_on_constructed_bands(centre, verdict):
    noise = np.array([-0.02, 0.01, 0.015, -0.005, 0.0, 0.01])
    df = _sign(list(centre + noise), p=0.0)
    v = judge(BAND, df)
    assert v.verdict == verdict and v.test == "TOST"
    # by hand: both one-sided t tests against the edges, p = the larger
    se = noise.std(ddof=1) / math.sqrt(6)
    m = float(np.mean(centre + noise))
    p_lower = stats.t.sf((m + 0.1) / se, 5)
    p_upper = stats.t.cdf((m - 0.1) / se, 5)
    assert v.p_value == pytest.approx(max(p_lower, p_upper))


def test_tost_power_and_plan_by_hand():
    # inside the band but noisy: the plan is the smallest n whose TOST power reaches 80%
    n = inference._plan_tost(0.02, 0.1, 0.1)
    assert n is not None and inference.tost_power(n, 0.02, 0.1, 0.1) >= 0.8 > inference.tost_power(
        n - 1, 0.02, 0.1, 0.1
    )


# ----------------------------------------------------------------------------------------------- exact tests
def test_tau_of_one_with_three_seeds_is_not_testable_and_six_decide_it():
    """Kendall's tau = +1 for 3 seeds: the permutation p-value cannot reach 0.025, so it is not 'holds'."""
    tau = Claim("t", "same order", "x", "sign", statistic=minimum("x"))  # an exact statistic
    three = judge(tau, _sign([1.0, 1.0, 1.0]))
    assert three.verdict == "inconclusive" and three.test == "exact sign-flip"
    assert three.p_value == pytest.approx(1 / 8) and math.isnan(three.low) and three.seeds_to_decide == 6
    six = judge(tau, _sign([1.0] * 6))
    assert six.verdict == "holds" and six.p_value == pytest.approx(1 / 64)


def test_identical_values_get_the_exact_test_not_a_degenerate_t_interval():
    v = judge(X_ABOVE, _sign([0.3, 0.3, 0.3]))  # a stacked timing: every seed the same number
    assert v.verdict == "inconclusive" and "not testable with n = 3" in v.reason
    spread = judge(X_ABOVE, _sign([0.3, 0.5, 0.2, 0.7, 0.4, 0.6]))
    assert spread.test == "one-sample t"  # a spread: the t test
    flipped = inference.one_sample(np.array([0.3, 0.5, 0.2, 0.7, 0.4, 0.6]), "greater", exact=True)
    assert flipped.p_for == pytest.approx(1 / 64) and 0 < flipped.low < 0.45 < flipped.high


def test_an_unpaired_difference_without_spread_uses_the_permutation_test():
    df = pd.DataFrame({"seed": [0, 1, 2, 10, 11, 12], "arm": ["a"] * 3 + ["b"] * 3, "x": [1.0] * 3 + [0.0] * 3})
    df["status"] = "ok"
    diff = Claim("t", "a above b", "x", "difference", when={"arm": "a"}, versus={"arm": "b"})
    v = judge(diff, df)
    assert v.test == "exact permutation" and v.p_value == pytest.approx(1 / 20) and v.seeds_to_decide == 4
    assert v.verdict == "inconclusive" and "not testable with n = 3 and 3" in v.reason


def test_a_non_finite_effect_or_bound_is_never_a_verdict():
    v = judge(X_ABOVE, _sign([1e308, 1.7e308, 1.2e308]))
    assert v.verdict == "inconclusive"


# ----------------------------------------------------------------------------------------------- the planner
def test_seeds_to_decide_against_a_power_calculation_by_hand():
    """An inconclusive one-sample claim: n for 80% power of the one-sided t test at 0.025, computed here from the
    noncentral t distribution directly."""
    values = np.array([0.1, -0.05, 0.2, 0.02])
    v = judge(X_ABOVE, _sign(list(values)))
    assert v.verdict == "inconclusive"
    d = values.mean() / values.std(ddof=1)

    def power(n):
        crit = stats.t.ppf(0.975, n - 1)
        return stats.nct.sf(crit, n - 1, d * math.sqrt(n))

    n = next(k for k in range(2, 10_000) if power(k) >= 0.8)
    assert v.seeds_to_decide == n
    # the smallest effect of interest, when larger than the observed effect, sets the plan
    declared = Claim("t", "x above 0", "x", "sign", smallest_effect=0.15)
    assert 4 < judge(declared, _sign(list(values))).seeds_to_decide < n
    # ... and when the run already has the seeds for it, no plan: the effect, if any, is below it
    powered = judge(Claim("t", "x above 0", "x", "sign", smallest_effect=0.5), _sign(list(values)))
    assert powered.seeds_to_decide is None and "already give 80% power at the smallest effect" in powered.reason
    assert judge(X_ABOVE, _sign([5.0, 5.1, 4.9])).seeds_to_decide is None  # decided: nothing to plan


# ----------------------------------------------------------------------------------------------- definitions
def test_every_registered_claim_declares_its_smallest_effect_of_interest():
    from spuriouslab.claims import SMALLEST_EFFECTS
    from spuriouslab.experiments import EXPERIMENTS, get_experiment

    claims = [c for name in EXPERIMENTS for c in get_experiment(name).claims]
    assert claims and all(c.smallest_effect is not None and c.smallest_effect > 0 for c in claims), [
        c.text for c in claims if not c.smallest_effect
    ]
    agreement = [c for c in claims if c.comparison == "agreement"]
    assert agreement and all(c.smallest_effect == c.tolerance for c in agreement)  # the band
    tau = [c for c in claims if c.statistic is not None and "Kendall" in c.statistic.__name__]
    assert tau and all(c.smallest_effect == 0.3 for c in tau)  # declared: the column's units do not apply
    assert Claim("t", "x", "spurious_acc", "sign").smallest_effect == SMALLEST_EFFECTS["spurious_acc"] == 0.01
    assert Claim("t", "x", "unknown_column", "sign").smallest_effect is None  # a user's column: none assumed


def test_the_claims_digest_changes_when_a_definition_changes():
    a = Claim("t", "x above 0", "x", "sign", smallest_effect=0.1)
    assert claims_digest([a]) == claims_digest([Claim("t", "x above 0", "x", "sign", smallest_effect=0.1)])
    assert claims_digest([a]) != claims_digest([Claim("t", "x above 0", "x", "sign", smallest_effect=0.2)])
    assert claims_digest([a]) != claims_digest([Claim("t", "x above 0", "x", "sign", reference=0.1)])
    with pytest.raises(ValueError, match="smallest effect"):
        Claim("t", "x", "x", "sign", smallest_effect=-1)


# ----------------------------------------------------------------------------------------------- --seeds N
def test_reproduce_seeds_extends_a_run_computing_only_the_new_seeds(cli, tmp_path):
    """``reproduce NAME --seeds N`` computes only the seeds the run lacks, and judges exactly as a fresh N-seed run."""
    from spuriouslab.report import judge_run
    from spuriouslab.store import RunStore

    small = ["--set", "n_train=10,20,50", "--no-progress"]  # the recipe at three training sizes
    code, _, err = cli("reproduce", "bm-digits", "--set", "seeds=2", *small, "--out", tmp_path / "a")
    assert code == 0, err
    code, out, err = cli("reproduce", "bm-digits", "--seeds", "3", *small, "--out", tmp_path / "a")
    assert code == 0, err
    assert "6 done, 0 failed, 12 skipped (done earlier) of 18 points" in err  # only the third seed computed
    assert "seeds to decide" in out
    code, _, err = cli("reproduce", "bm-digits", "--seeds", "3", *small, "--out", tmp_path / "b")
    assert code == 0, err

    def rows(d):
        return [{k: v for k, v in r.items() if not k.startswith("seconds")} for r in judge_run(RunStore(d))]

    extended, fresh = rows(tmp_path / "a"), rows(tmp_path / "b")
    assert extended == fresh and all(r["n_seeds"] == 3 for r in fresh)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bm-digits", "--seeds", "2"], "--seeds: got 2; bm-digits's recipe runs 3, so extend to at least 3"),
        (["bm-digits", "--seeds", "4", "--set", "seeds=4"], "--seeds: give the number of seeds once"),
        (["--all", "--seeds", "4"], "--seeds: not with --all"),
    ],
)
def test_reproduce_seeds_refuses_bad_input_in_one_line(cli, tmp_path, args, message):
    code, _, err = cli("reproduce", *args, "--out", tmp_path / "x")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
