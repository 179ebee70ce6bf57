"""The statistics behind a verdict: one test per kind of evidence, its p-values, its interval, the seeds that
would decide it, and the corrections for judging many claims at once.

Every claim is judged at the level of the 95% two-sided interval the toolkit has always printed: a claim
**holds** when the one-sided test in the claimed direction rejects at ``SIDE_ALPHA`` = 0.025, and is
**contradicted** when the one-sided test in the other direction does (so the raw verdicts are exactly the
interval's rule: an interval on the claimed side is a one-sided p below 0.025).  The tests:

* ``one-sample t`` - units (seeds, or seed pairs) with a spread: Student's t on their values;
* ``Welch t`` - two unpaired conditions;
* ``TOST`` - agreement with a prediction within a band +-tol: two one-sided t tests (Schuirmann 1987), the
  claim holds when both reject (the interval lies inside the band); the claim is contradicted when the values lie
  outside the band on one side (one-sided t against that edge);
* ``exact sign-flip`` / ``exact permutation`` - bounded, rank and extreme-value statistics (Kendall's tau, a
  minimum over conditions) and values without spread (every seed identical: stacked timings, all-identical
  ranks), where a t interval has no meaning: the exact randomisation test of the mean (every sign assignment, or
  every split of two samples; :func:`scipy.stats.permutation_test`), its interval found by inverting the test.
  With n units the smallest one-sided p the sign-flip test can give is 2^-n: with n = 3 that is 0.125, so such a
  claim is reported **not testable with n = 3** rather than given a degenerate interval.

Seeds to decide: for an inconclusive verdict, the number of units at which the claim's test has 80% power at the
observed effect and spread (or at the claim's smallest effect of interest when that is larger), from
:mod:`statsmodels.stats.power`.  The number is a plan fixed before the new seeds are run: run it once and judge
once.  Adding seeds until a claim holds (optional stopping) inflates the error rate far above the stated alpha.

Many claims: :func:`adjust` applies Holm's step-down correction within a family (one figure's claims: any
verdict wrong at most 5% of the time) or Benjamini-Hochberg's false discovery rate control across a table of
many figures, through :func:`statsmodels.stats.multitest.multipletests`.

>>> import numpy as np
>>> t = one_sample(np.array([0.5, 0.6, 0.55]), "greater")
>>> t.test, round(t.p_for, 4) < 0.025
('one-sample t', True)
>>> exact = one_sample(np.array([1.0, 1.0, 1.0]), "greater", exact=True)
>>> exact.test, exact.p_for, exact.untestable.split(":")[0], exact.plan
('exact sign-flip', 0.125, 'not testable with n = 3', 6)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

ALPHA = 0.05  # two-sided: the level of every printed interval
SIDE_ALPHA = ALPHA / 2  # each one-sided test (holds / contradicted)
POWER = 0.8  # the planner's power
MAX_SEEDS_PLANNED = 100_000  # a plan above this says "more than"
EXACT_ENUMERATION = 16  # units up to which the randomisation tests enumerate every assignment (2^16)
RESAMPLES = 20_000  # beyond it, resampled with a fixed seed

Side = Literal["greater", "less"]


@dataclass(frozen=True)
class TestResult:
    """One claim's test: its ``test`` name, the ``effect`` (mean unit value, or difference of means), the 95%
    interval (``low``, ``high``; NaN when there is none), the one-sided p-values for the claim (``p_for``) and
    against it (``p_against``), ``untestable`` (a reason, when this test cannot reach the level at this n), and
    ``plan`` (the units that would give the test 80% power; None when there is nothing to plan)."""

    test: str
    effect: float
    low: float
    high: float
    p_for: float
    p_against: float
    untestable: str = ""
    plan: int | None = None


def _nan_result(test: str, effect: float = math.nan) -> TestResult:
    return TestResult(test, effect, math.nan, math.nan, math.nan, math.nan)


# ------------------------------------------------------------------------------------------ t tests
def _t_p(t: float, dof: float, side: Side) -> float:
    from scipy import stats

    return float(stats.t.sf(t, dof) if side == "greater" else stats.t.cdf(t, dof))


def _flip(side: Side) -> Side:
    return "less" if side == "greater" else "greater"


def smallest_n(power_at: Callable[[int], float], start: int = 2) -> int:
    """The smallest n >= ``start`` with ``power_at(n) >= POWER`` (power grows with n): doubling, then bisection;
    ``MAX_SEEDS_PLANNED + 1`` when even that many would not do."""
    lo = hi = start
    while power_at(hi) < POWER:
        if hi > MAX_SEEDS_PLANNED:
            return MAX_SEEDS_PLANNED + 1
        lo, hi = hi + 1, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        if power_at(mid) >= POWER:
            hi = mid
        else:
            lo = mid + 1
    return hi


def _plan_one_sample(effect: float, sd: float, smallest: float | None) -> int | None:
    """Units for 80% power of a one-sided one-sample t test at SIDE_ALPHA, at max(|effect|, smallest)
    (statsmodels' power of the t test)."""
    target = max(abs(effect), smallest or 0.0)
    if not (sd > 0 and target > 0 and math.isfinite(target / sd)):
        return None
    from statsmodels.stats.power import TTestPower

    size = target / sd
    return smallest_n(
        lambda n: float(TTestPower().power(effect_size=size, nobs=n, alpha=SIDE_ALPHA, alternative="larger"))
    )


def one_sample(values: np.ndarray, side: Side, *, exact: bool = False, smallest: float | None = None) -> TestResult:
    """The test that the mean of ``values`` lies on ``side`` of 0 (values already minus any reference).

    A t test when the values have a spread and ``exact`` is False; otherwise the exact sign-flip test."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n == 0:
        return _nan_result("none")
    with np.errstate(over="ignore", invalid="ignore"):  # values near the float limit: a non-finite mean / spread
        mean, sd = float(v.mean()), float(v.std(ddof=1)) if n > 1 else math.nan
    if n < 2 or not math.isfinite(mean):
        return TestResult("none", mean, math.nan, math.nan, math.nan, math.nan)
    if not sd > 0 and mean == 0:  # every unit's effect is exactly 0: nothing to test
        return TestResult("none", 0.0, 0.0, 0.0, 1.0, 1.0)
    if exact or not sd > 0:
        return _sign_flip(v, side)
    from scipy import stats

    se = sd / math.sqrt(n)
    t = mean / se
    half = float(stats.t.ppf(1 - SIDE_ALPHA, n - 1) * se)
    return TestResult(
        "one-sample t",
        mean,
        mean - half,
        mean + half,
        _t_p(t, n - 1, side),
        _t_p(t, n - 1, _flip(side)),
        plan=_plan_one_sample(mean, sd, smallest),
    )


def welch(a: np.ndarray, b: np.ndarray, side: Side, *, smallest: float | None = None) -> TestResult:
    """Welch's t test of mean(a) - mean(b) on ``side`` of 0; the exact permutation test when neither sample has
    a spread."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b):
        return _nan_result("none")
    with np.errstate(over="ignore", invalid="ignore"):
        diff = float(a.mean() - b.mean())
        va = a.var(ddof=1) / len(a) if len(a) > 1 else math.nan
        vb = b.var(ddof=1) / len(b) if len(b) > 1 else math.nan
    if len(a) < 2 or len(b) < 2 or not (math.isfinite(diff) and math.isfinite(va) and math.isfinite(vb)):
        return TestResult("none", diff, math.nan, math.nan, math.nan, math.nan)
    se = math.sqrt(va + vb)
    if se == 0:
        return _two_sample_permutation(a, b, side)
    from scipy import stats

    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(1 - SIDE_ALPHA, dof) * se)
    plan = None
    target = max(abs(diff), smallest or 0.0)
    pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    if pooled > 0 and target > 0:
        from statsmodels.stats.power import TTestIndPower

        size = target / pooled
        plan = smallest_n(
            lambda n: float(
                TTestIndPower().power(effect_size=size, nobs1=n, ratio=1.0, alpha=SIDE_ALPHA, alternative="larger")
            )
        )
    t = diff / se
    return TestResult(
        "Welch t", diff, diff - half, diff + half, _t_p(t, dof, side), _t_p(t, dof, _flip(side)), plan=plan
    )


def tost(values: np.ndarray, tolerance: float, *, smallest: float | None = None) -> TestResult:
    """Two one-sided tests that the mean of ``values`` (measured minus predicted) lies inside +-``tolerance``.

    ``p_for`` is the larger of the two one-sided p-values (equivalence holds when both reject); ``p_against`` the
    smaller one-sided p that the mean lies beyond one edge (outside the band).  Values without a spread (or fewer
    than six of them) fall back to the exact sign-flip test against each edge."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n == 0:
        return _nan_result("none")
    with np.errstate(over="ignore", invalid="ignore"):
        mean, sd = float(v.mean()), float(v.std(ddof=1)) if n > 1 else math.nan
    if n < 2 or not math.isfinite(mean):
        return TestResult("none", mean, math.nan, math.nan, math.nan, math.nan)
    if not sd > 0:
        above, below = _sign_flip(v + tolerance, "greater"), _sign_flip(v - tolerance, "less")
        inside = max(above.p_for, below.p_for)
        outside = min(_sign_flip(v - tolerance, "greater").p_for, _sign_flip(v + tolerance, "less").p_for)
        interval = _sign_flip(v, "greater")
        return TestResult(
            "exact sign-flip TOST",
            mean,
            interval.low,
            interval.high,
            inside,
            outside,
            untestable=above.untestable,
            plan=above.plan,
        )
    from scipy import stats

    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(1 - SIDE_ALPHA, n - 1) * se)
    p_lower = _t_p((mean + tolerance) / se, n - 1, "greater")  # H0: mean <= -tol
    p_upper = _t_p((mean - tolerance) / se, n - 1, "less")  # H0: mean >= +tol
    p_out = min(_t_p((mean - tolerance) / se, n - 1, "greater"), _t_p((mean + tolerance) / se, n - 1, "less"))
    return TestResult(
        "TOST",
        mean,
        mean - half,
        mean + half,
        max(p_lower, p_upper),
        p_out,
        plan=_plan_tost(mean, sd, tolerance),
    )


def tost_power(n: int, mean: float, sd: float, tolerance: float) -> float:
    """Power of the TOST at ``SIDE_ALPHA`` with ``n`` units when the true mean is ``mean`` and the spread ``sd``
    (the noncentral-t approximation: both one-sided tests reject)."""
    from scipy import stats

    dof = n - 1
    crit = stats.t.ppf(1 - SIDE_ALPHA, dof)
    se = sd / math.sqrt(n)
    lower = stats.nct.sf(crit, dof, (mean + tolerance) / se)
    upper = stats.nct.cdf(-crit, dof, (mean - tolerance) / se)
    return float(max(0.0, lower + upper - 1.0))


def _plan_tost(mean: float, sd: float, tolerance: float) -> int | None:
    """The smallest n with TOST power >= 80% at the observed mean and spread (None: the mean lies outside the
    band, where more seeds decide against agreement instead)."""
    if not (sd > 0) or abs(mean) >= tolerance:
        return _plan_one_sample(abs(mean) - tolerance, sd, None) if sd > 0 else None
    return smallest_n(lambda n: tost_power(n, mean, sd, tolerance))


# ------------------------------------------------------------------------------------------ exact tests
def _resamples(count: int) -> float | int:
    return np.inf if count <= 2**EXACT_ENUMERATION else RESAMPLES


def _sign_flip_p(v: np.ndarray, side: Side) -> float:
    from scipy import stats

    res = stats.permutation_test(
        (v,),
        np.mean,
        permutation_type="samples",
        alternative=side,
        n_resamples=_resamples(2 ** len(v)),
        random_state=0,
    )
    return float(res.pvalue)


def smallest_sign_flip_p(n: int) -> float:
    """The smallest one-sided p the exact sign-flip test can give with ``n`` units: 2^-n."""
    return 2.0**-n


def sign_flip_seeds(alpha: float = SIDE_ALPHA) -> int:
    """The fewest units at which the exact sign-flip test can reach ``alpha`` (6 at 0.025)."""
    return math.ceil(math.log2(1 / alpha) + 1e-12)


def _invert(p_at: Callable[[float], float], start: float, end: float) -> float:
    """The shift in [start, end] where the monotone one-sided ``p_at(shift)`` crosses SIDE_ALPHA (bisection)."""
    lo, hi = start, end
    for _ in range(60):
        mid = (lo + hi) / 2
        if p_at(mid) <= SIDE_ALPHA:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _sign_flip(v: np.ndarray, side: Side) -> TestResult:
    n = len(v)
    mean = float(v.mean())
    p_for, p_against = _sign_flip_p(v, side), _sign_flip_p(v, _flip(side))
    if smallest_sign_flip_p(n) > SIDE_ALPHA:
        return TestResult(
            "exact sign-flip",
            mean,
            math.nan,
            math.nan,
            p_for,
            p_against,
            untestable=(
                f"not testable with n = {n}: the exact sign-flip test cannot reach p < {SIDE_ALPHA:g} "
                f"(smallest p {smallest_sign_flip_p(n):.3g})"
            ),
            plan=sign_flip_seeds(),
        )
    span = float(v.max() - v.min()) or max(abs(mean), 1.0)
    # the interval: every shift mu the two one-sided tests do not reject at SIDE_ALPHA
    low = _invert(lambda mu: _sign_flip_p(v - mu, "greater"), float(v.min()) - 2 * span, float(v.max()))
    high = -_invert(lambda mu: _sign_flip_p(-v - mu, "greater"), float(-v.max()) - 2 * span, float(-v.min()))
    return TestResult("exact sign-flip", mean, low, high, p_for, p_against)


def _two_sample_permutation(a: np.ndarray, b: np.ndarray, side: Side) -> TestResult:
    from scipy import stats

    diff = float(a.mean() - b.mean())
    total = math.comb(len(a) + len(b), len(a))

    def p(x: np.ndarray, y: np.ndarray, alternative: Side) -> float:
        res = stats.permutation_test(
            (x, y),
            lambda s, t: np.mean(s) - np.mean(t),
            permutation_type="independent",
            alternative=alternative,
            n_resamples=_resamples(total),
            random_state=0,
        )
        return float(res.pvalue)

    p_for, p_against = p(a, b, side), p(a, b, _flip(side))
    if 1 / total > SIDE_ALPHA:
        k = 2
        while 1 / math.comb(2 * k, k) > SIDE_ALPHA:
            k += 1
        return TestResult(
            "exact permutation",
            diff,
            math.nan,
            math.nan,
            p_for,
            p_against,
            untestable=(
                f"not testable with n = {len(a)} and {len(b)}: the exact permutation test cannot reach "
                f"p < {SIDE_ALPHA:g} (smallest p {1 / total:.3g})"
            ),
            plan=k,
        )
    span = abs(diff) or 1.0
    low = _invert(lambda mu: p(a - mu, b, "greater"), diff - 2 * span, diff)
    high = -_invert(lambda mu: p(b - mu, a, "greater"), -diff - 2 * span, -diff)
    return TestResult("exact permutation", diff, low, high, p_for, p_against)


# ------------------------------------------------------------------------------------------ many claims
Correction = Literal["holm", "fdr_bh"]
CORRECTIONS: dict[str, str] = {
    "holm": "Holm (family-wise error rate, within a figure)",
    "fdr_bh": "Benjamini-Hochberg (false discovery rate, across figures)",
}


def adjust_p(p_values: Sequence[float], method: Correction) -> list[float]:
    """``p_values`` adjusted by ``method`` (statsmodels' ``multipletests``); NaN entries (claims that could not be
    tested) stay NaN and are not part of the family."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), math.nan)
    finite = np.isfinite(p)
    if finite.any():
        out[finite] = multipletests(p[finite], alpha=SIDE_ALPHA, method=method)[1]
    return out.tolist()
