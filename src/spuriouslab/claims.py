"""Claims of the papers as data, judged from records alone.

A :class:`Claim` is one sentence in the paper's terms, the record column it is measured by, the comparison
that would support it - a ``difference`` between two conditions (paired over seeds where the seeds pair), the
``sign`` of one condition's value against a reference, a ``trend`` over a column (the per-seed slope against
its logarithm), or ``agreement`` with a prediction column within a tolerance - and its smallest effect of
interest.  :func:`judge` computes the effect, its 95% interval over seeds and the one-sided p-values of the test
that fits the evidence (:mod:`spuriouslab.inference`: t tests, two one-sided tests for agreement, exact
randomisation tests for bounded, rank and extreme-value statistics), and the verdict:

* **holds** - the one-sided test in the claimed direction rejects at 0.025 (the 95% interval lies on the claimed
  side; agreement: inside the tolerance band, by two one-sided tests);
* **contradicted** - the one-sided test in the other direction rejects (agreement: the values lie outside the
  band);
* **inconclusive** - otherwise, with the reason (one seed, the interval spans zero, not testable with this many
  seeds, no records) and the seeds that would decide it with 80% power.

:func:`adjust` corrects a set of verdicts for multiplicity (Holm within a figure, Benjamini-Hochberg across a
table of figures): the raw and the adjusted verdict are reported side by side.  :func:`claims_digest` is a hash
of the claim definitions, printed beside every verdict table, so a reader can see which definitions judged a run.

Records that did not finish (``status`` other than ok) or whose metric is NaN are excluded and counted, never
dropped silently.  Experiments only declare their claims; this module owns the judgement.

>>> import pandas as pd
>>> df = pd.DataFrame({"activation": ["relu"] * 3 + ["identity"] * 3, "seed": [0, 1, 2] * 2,
...                    "gap": [0.5, 0.6, 0.55, 0.0, 0.01, -0.01], "status": "ok"})
>>> claim = Claim("toy", "ReLU's gap exceeds the linear net's", "gap", "difference",
...               when={"activation": "relu"}, versus={"activation": "identity"})
>>> v = judge(claim, df)
>>> v.verdict, v.n, v.paired
('holds', 3, True)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from spuriouslab import inference
from spuriouslab.inference import SIDE_ALPHA, Correction, TestResult

Comparison = Literal["difference", "sign", "trend", "agreement"]

# The smallest effect of interest of a claim on each record column, in the column's own units (a difference, a
# trend's slope per unit of log, a statistic that keeps the units such as a minimum or a curve's change), declared
# here once and read by every claim on the column that does not declare its own; an agreement claim's is its band's
# half-width, and a claim whose statistic changes the units (a Kendall tau, a slope at an optimum) declares its own.
# It is the effect the seeds-to-decide planner powers a test for when the observed one is smaller (spuriouslab.
# inference), never a threshold that makes a verdict.
SMALLEST_EFFECTS: dict[str, float] = {
    # accuracies and fractions of test points: one point of accuracy
    **dict.fromkeys(
        (
            "spurious_acc",
            "test_acc",
            "id_acc",
            "acc_id",
            "acc_reversed",
            "worst_group_acc",
            "reversed_drop",
            "colour_flip",
            "acc_teacher_ood_mean",
            "acc_student_ood_mean",
            "acc_student_id",
            "student_ood_drop",
            "acc_colour_gap",
            "gradcam_border_train_colour",
        ),
        0.01,
    ),
    # correlations and alignments in [-1, 1]: C and the alignment by 0.01, the activation asymmetry by 0.05
    "spurious_corr": 0.01,
    "alignment_mean": 0.01,
    "asym_corr": 0.05,
    "curve_asym_corr": 0.05,
    # a weight norm's growth (end / start): 1%
    "bg_norm_growth": 0.01,
    "student_bg_growth": 0.01,
    # a loss gap (nats): 0.01
    "ood_id_gap": 0.01,
    # the student's match to its teacher, OOD against ID: 0.01 of a relative embedding error or of a linear CKA
    "relerr_ood_gap": 0.01,
    "cka_ood_gap": 0.01,
    # a visualization's projection on the border colour's axis (pixel values in [0, 1]): 0.01
    "vis_border_axis": 0.01,
    "vis_border_axis_abs": 0.01,
    # training time per seed: a tenth of a second
    "seconds": 0.1,
    "seconds_student": 0.1,
}
VERDICTS = ("holds", "contradicted", "inconclusive")


@dataclass(frozen=True)
class Claim:
    """One claim: ``figure`` (the reproduce name or experiment it belongs to), ``text`` (one sentence), the record
    column ``metric`` and the comparison.

    ``when`` / ``versus`` select records by column values (``versus`` only for ``difference``); ``side`` is the
    claimed sign of the effect (``greater``: effect > 0); ``reference`` the value ``sign`` compares with (with
    ``difference``: the margin, effect = when - versus - reference, e.g. -0.02 for "at most 0.02 worse");
    ``over`` the column of a ``trend`` (slope of the metric against log of it, per seed); ``predicted`` the
    column ``agreement`` compares with and ``tolerance`` the half-width of the band it must lie in; ``minus`` a
    column subtracted from the metric in each record (``sign`` of a within-record difference, e.g. teacher minus
    student accuracy of one seed); ``pair_on`` the columns that identify one unit of pairing (a seed); ``paper``
    where the claim comes from.

    ``statistic`` (with ``sign``) reduces the records of one unit - one seed, within each combination of the
    ``by`` columns - to one number (e.g. the slope of C at the test-loss-optimal lambda, or the last minus the
    first point of a training curve); the unit's value is the mean over its ``by`` combinations, compared with
    ``reference``.  ``needs`` names the further columns it reads.  A claim whose ``when`` / ``versus`` values are
    absent from a run's records (an activation that run did not train), one of whose ``varies`` columns takes
    a single value there, or whose ``predicted`` column its records lack (a theory that does not cover that data),
    is not applicable to that run."""

    figure: str
    text: str
    metric: str
    comparison: Comparison
    when: dict[str, Any] = field(default_factory=dict)
    versus: dict[str, Any] | None = None
    side: Literal["greater", "less"] = "greater"
    reference: float = 0.0
    over: str | None = None
    predicted: str | None = None
    tolerance: float = 0.0
    pair_on: tuple[str, ...] = ("seed",)
    minus: str | None = None
    paper: str = ""
    statistic: Callable[[pd.DataFrame], float] | None = None
    by: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    varies: tuple[str, ...] = ()
    smallest_effect: float | None = None

    def __post_init__(self) -> None:
        if self.smallest_effect is None:  # the band of an agreement, else the column's (SMALLEST_EFFECTS)
            declared = self.tolerance if self.comparison == "agreement" else None
            if declared is None and (self.statistic is None or getattr(self.statistic, "same_units", False)):
                declared = SMALLEST_EFFECTS.get(self.metric)
            object.__setattr__(self, "smallest_effect", declared)
        if self.comparison == "difference" and self.versus is None:
            raise ValueError(f"claim {self.text!r}: a difference needs `versus`")
        if self.comparison == "trend" and self.over is None:
            raise ValueError(f"claim {self.text!r}: a trend needs `over`")
        if self.comparison == "agreement" and (self.predicted is None or self.tolerance <= 0):
            raise ValueError(f"claim {self.text!r}: agreement needs `predicted` and a tolerance > 0")
        if self.statistic is not None and self.comparison != "sign":
            raise ValueError(f"claim {self.text!r}: a statistic is compared by `sign`")
        if self.smallest_effect is not None and not (math.isfinite(self.smallest_effect) and self.smallest_effect >= 0):
            raise ValueError(f"claim {self.text!r}: the smallest effect of interest is a finite number >= 0")

    def definition(self) -> dict[str, Any]:
        """What the claim says, as plain values (its hash is :func:`claims_digest`)."""
        return {
            "figure": self.figure,
            "text": self.text,
            "metric": self.metric,
            "comparison": self.comparison,
            "when": self.when,
            "versus": self.versus,
            "side": self.side,
            "reference": self.reference,
            "over": self.over,
            "predicted": self.predicted,
            "tolerance": self.tolerance,
            "minus": self.minus,
            "statistic": None if self.statistic is None else self.statistic.__name__,
            "by": list(self.by),
            "varies": list(self.varies),
            "smallest_effect": self.smallest_effect,
        }

    def columns(self) -> list[str]:
        """Every record column the claim reads."""
        return [
            self.metric,
            *[c for c in (self.predicted, self.over, self.minus) if c],
            *self.by,
            *self.needs,
            *self.varies,
        ]


@dataclass(frozen=True)
class Verdict:
    """A judged claim: the effect and its 95% interval, the number of units (seeds, or pairs) it rests on,
    whether they were paired, how many records were excluded (not ok, or NaN), the verdict and its reason; the
    ``test`` that judged it with its one-sided p-values (``p_value`` for the claim, ``p_against`` for the other
    side), ``seeds_to_decide`` (an inconclusive verdict: the units that would give the test 80% power; None
    otherwise), and - once :func:`adjust` has seen it with the rest of its family - the ``adjusted`` verdict, its
    adjusted p-value and the ``correction`` (empty before)."""

    claim: Claim
    effect: float
    low: float
    high: float
    n: int
    paired: bool
    excluded: int
    verdict: str
    reason: str
    applicable: bool = True
    test: str = "none"
    p_value: float = math.nan
    p_against: float = math.nan
    seeds_to_decide: int | None = None
    adjusted: str = ""
    p_adjusted: float = math.nan
    correction: str = ""

    def row(self) -> dict[str, Any]:
        c = self.claim
        return {
            "figure": c.figure,
            "claim": c.text,
            "metric": c.metric,
            "effect": self.effect,
            "low": self.low,
            "high": self.high,
            "n_seeds": self.n,
            "paired": self.paired,
            "excluded": self.excluded,
            "verdict": self.verdict,
            "reason": self.reason,
            "test": self.test,
            "p": self.p_against if self.verdict == "contradicted" else self.p_value,
            "p_value": self.p_value,
            "p_against": self.p_against,
            "p_adjusted": self.p_adjusted,
            "adjusted": self.adjusted or self.verdict,
            "correction": self.correction,
            "seeds_to_decide": self.seeds_to_decide,
            "smallest_effect": c.smallest_effect,
        }


def _select(df: pd.DataFrame, where: dict[str, Any]) -> pd.DataFrame:
    mask = pd.Series(True, index=df.index)
    for k, v in where.items():
        if k not in df:
            return df.iloc[0:0]
        mask &= df[k].map(
            lambda a, v=v: a == v or (isinstance(a, float) and isinstance(v, float) and math.isclose(a, v))
        )
    return df[mask]


def _usable(df: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, int]:
    """Records that finished with finite values in ``columns``, and how many others there were."""
    ok = df[df["status"] == "ok"] if "status" in df else df
    for c in columns:
        if c not in ok:
            return ok.iloc[0:0], len(df)
        first = ok[c].iloc[0] if len(ok) else None
        if isinstance(first, list | tuple | np.ndarray):  # a curve: usable when every point is finite
            ok = ok[ok[c].map(lambda v: v is not None and len(v) > 0 and np.isfinite(np.asarray(v, float)).all())]
        elif isinstance(first, str):  # a label (a loss's name): usable when present
            ok = ok[ok[c].notna()]
        else:
            value = pd.to_numeric(ok[c], errors="coerce")
            ok = ok[value.notna() & np.isfinite(value)]
    return ok, len(df) - len(ok)


def _absent(claim: Claim, df: pd.DataFrame) -> str | None:
    """The first condition of ``when`` / ``versus`` no record of ``df`` has (finished or not), in words."""
    for where in (claim.when, claim.versus or {}):
        for k, v in where.items():
            if k not in df or not len(_select(df, {k: v})):
                return f"no records with {k}={v}"
    for k in claim.varies:
        if k not in df or df[k].nunique() < 2:
            return f"{k} not varied"
    if claim.predicted is not None and claim.predicted not in df:  # a theory that does not cover this data
        return f"no prediction ({claim.predicted}) for these records"
    return None


def judge(claim: Claim, df: pd.DataFrame) -> Verdict:
    """The verdict on ``claim`` from the records ``df``."""
    absent = _absent(claim, df)
    if absent:
        return Verdict(
            claim,
            math.nan,
            math.nan,
            math.nan,
            0,
            False,
            0,
            "inconclusive",
            f"not run here: {absent}",
            applicable=False,
        )
    columns = claim.columns()
    missing = [c for c in columns if c not in df]
    if missing:  # e.g. a metric this configuration does not log (asymmetry of a deeper net)
        return Verdict(
            claim, math.nan, math.nan, math.nan, 0, False, len(df), "inconclusive", f"no {missing[0]} in these records"
        )
    chosen = _select(df, claim.when)
    paired = False
    if claim.statistic is not None:
        return _judge_statistic(claim, chosen, columns)
    smallest = claim.smallest_effect
    if claim.comparison == "difference":
        other = _select(df, claim.versus or {})
        a, ex_a = _usable(chosen, columns)
        b, ex_b = _usable(other, columns)
        excluded = ex_a + ex_b
        keys = [k for k in claim.pair_on if k in a and k in b]
        if keys:  # pair the units (seeds) both conditions have; a unit whose partner is gone is excluded
            ga, gb = a.groupby(keys)[claim.metric].mean(), b.groupby(keys)[claim.metric].mean()
            common = ga.index.intersection(gb.index)
            paired = len(common) >= 2
        if paired:
            excluded += (len(ga) - len(common)) + (len(gb) - len(common))
            d = (ga.loc[common] - gb.loc[common]).to_numpy(dtype=float) - claim.reference
            result, n = inference.one_sample(d, claim.side, smallest=smallest), len(d)
        else:
            va, vb = a[claim.metric].to_numpy(dtype=float) - claim.reference, b[claim.metric].to_numpy(dtype=float)
            n = min(len(va), len(vb))
            result = inference.welch(va, vb, claim.side, smallest=smallest)
    else:
        rows, excluded = _usable(chosen, columns)
        keys = [k for k in claim.pair_on if k in rows]
        if claim.comparison == "trend":
            slopes: list[float] = []
            for _, unit in rows.groupby(keys) if keys else [((), rows)]:
                curve = unit.groupby(claim.over)[claim.metric].mean()  # averaged over the other axes
                # on a log axis: a ridge of 0 drops out, and its records count as excluded
                excluded += int((unit[claim.over].to_numpy(dtype=float) <= 0).sum())
                curve = curve[curve.index.to_numpy(dtype=float) > 0]
                x = np.log(curve.index.to_numpy(dtype=float))
                y = curve.to_numpy(dtype=float)
                if len(np.unique(x)) >= 2:
                    slopes.append(float(np.polyfit(x, y, 1)[0]))
            values = np.asarray(slopes)
        else:
            per = rows[claim.metric].to_numpy(dtype=float)
            if claim.comparison == "agreement":
                per = per - rows[claim.predicted].to_numpy(dtype=float)
            else:
                per = per - claim.reference - (rows[claim.minus].to_numpy(dtype=float) if claim.minus else 0.0)
            values = (
                pd.Series(per, index=rows.index).groupby([rows[k] for k in keys]).mean().to_numpy()
                if keys and len(rows)
                else per
            )
        if claim.comparison == "agreement":
            result = inference.tost(values, claim.tolerance, smallest=smallest)
        else:
            result = inference.one_sample(values, claim.side, smallest=smallest)
        n = len(values)
    return _verdict(claim, result, n, paired, int(excluded))


def _judge_statistic(claim: Claim, chosen: pd.DataFrame, columns: list[str]) -> Verdict:
    """A ``sign`` claim on a per-unit statistic: each unit's (seed's) statistic, averaged over its ``by``
    combinations, against the reference; an ``exact`` statistic (bounded, rank, extreme value) by the exact
    sign-flip test."""
    statistic = claim.statistic
    assert statistic is not None, "judge gives this the claims with a statistic"
    rows, excluded = _usable(chosen, [c for c in columns if c not in claim.by])
    keys = [k for k in claim.pair_on if k in rows]
    values = []
    for _, unit in rows.groupby(keys) if keys else [((), rows)]:
        parts = [statistic(g) for _, g in (unit.groupby(list(claim.by)) if claim.by else [((), unit)])]
        parts = [v for v in parts if np.isfinite(v)]
        if parts:
            values.append(float(np.mean(parts)) - claim.reference)
    exact = bool(getattr(statistic, "exact", False))
    result = inference.one_sample(np.asarray(values), claim.side, exact=exact, smallest=claim.smallest_effect)
    return _verdict(claim, result, len(values), False, int(excluded))


def _finite(*numbers: float) -> bool:
    return all(math.isfinite(x) for x in numbers)


def _verdict(claim: Claim, result: TestResult, n: int, paired: bool, excluded: int) -> Verdict:
    verdict, reason = _decide(claim, result, n)
    plan = result.plan if verdict == "inconclusive" else None
    if plan is not None and plan <= n:  # the planner asks for no more seeds than the run has
        smallest = claim.smallest_effect
        if smallest is not None and abs(result.effect) < smallest:
            # powered for the smallest effect of interest already: more seeds would chase an effect below it
            plan = None
            reason += f"; {n} units already give 80% power at the smallest effect of interest ({smallest:g})"
        else:
            plan = n + 1
    return Verdict(
        claim,
        result.effect,
        result.low,
        result.high,
        n,
        paired,
        excluded,
        verdict,
        reason,
        test=result.test,
        p_value=result.p_for,
        p_against=result.p_against,
        seeds_to_decide=plan,
    )


def _decide(claim: Claim, result: TestResult, n: int) -> tuple[str, str]:
    """The raw verdict from the test's one-sided p-values at :data:`~spuriouslab.inference.SIDE_ALPHA` (the 95%
    interval's rule).  A non-finite effect, bound or p-value is never a verdict."""
    effect, low, high = result.effect, result.low, result.high
    if n == 0 or math.isnan(effect):
        return "inconclusive", "no usable records"
    if not math.isfinite(effect):
        return "inconclusive", "the effect is not finite"
    if n < 2:
        return "inconclusive", "one seed: no interval"
    if result.untestable:
        return "inconclusive", result.untestable
    if not _finite(result.p_for, result.p_against) or not _finite(low, high):
        return "inconclusive", "the interval or p-value is not finite"
    holds, against = result.p_for < SIDE_ALPHA, result.p_against < SIDE_ALPHA
    if claim.comparison == "agreement":
        t = claim.tolerance
        if holds:
            return "holds", f"inside +-{t:g} by two one-sided tests"
        if against:
            return "contradicted", f"outside +-{t:g}"
        return "inconclusive", f"interval crosses the +-{t:g} band"
    if holds:
        return "holds", "interval on the claimed side"
    if against:
        return "contradicted", "interval on the other side"
    if low == high == 0:
        return "inconclusive", "no difference at all (every unit's effect is 0)"
    return "inconclusive", "interval spans zero"


def judge_all(claims: list[Claim], df: pd.DataFrame) -> list[Verdict]:
    return [judge(c, df) for c in claims]


def adjust(verdicts: Sequence[Verdict], method: Correction = "holm") -> list[Verdict]:
    """The verdicts of one family with their adjusted verdicts: each one-sided p-value (for the claim, and against
    it) adjusted by ``method`` (``holm``: within a figure; ``fdr_bh``: across a table of figures) over the
    applicable, testable verdicts, and the adjusted verdict read at the same level as the raw one.  A verdict
    the correction cannot touch (inconclusive before it, or untestable) keeps its raw verdict.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"seed": [0, 1, 2], "gap": [0.5, 0.6, 0.55], "other": [0.1, -0.3, 0.25], "status": "ok"})
    >>> vs = adjust([judge(Claim("toy", "gap > 0", "gap", "sign"), df), judge(Claim("toy", "other > 0", "other",
    ...     "sign"), df)])
    >>> [(v.verdict, v.adjusted) for v in vs]
    [('holds', 'holds'), ('inconclusive', 'inconclusive')]
    """
    verdicts = list(verdicts)
    rows = adjust_rows(
        [{"verdict": v.verdict, "p_value": v.p_value if v.applicable else math.nan, "p_against": v.p_against}
         for v in verdicts],
        method,
    )  # fmt: skip
    return [
        replace(v, adjusted=r["adjusted"], p_adjusted=r["p_adjusted"], correction=method)
        for v, r in zip(verdicts, rows, strict=True)
    ]


def adjust_rows(rows: Sequence[dict[str, Any]], method: Correction) -> list[dict[str, Any]]:
    """:func:`adjust` on verdict rows (:meth:`Verdict.row`, as stored in a run's or a reproduction's index): the
    rows with ``adjusted``, ``p_adjusted`` and ``correction`` recomputed from their raw verdicts and one-sided
    p-values over the whole family.  Rows without p-values (written before verdicts carried them) keep their raw
    verdict and are left out of the family."""

    def p(row: dict[str, Any], key: str) -> float:
        value = row.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan

    p_for = inference.adjust_p([p(r, "p_value") for r in rows], method)
    p_against = inference.adjust_p([p(r, "p_against") for r in rows], method)
    out = []
    for r, pf, pa in zip(rows, p_for, p_against, strict=True):
        raw = r["verdict"]
        if raw == "holds":
            adjusted = "holds" if pf < SIDE_ALPHA else "inconclusive"
        elif raw == "contradicted":
            adjusted = "contradicted" if pa < SIDE_ALPHA else "inconclusive"
        else:
            adjusted = raw
        out.append({**r, "adjusted": adjusted, "p_adjusted": pa if raw == "contradicted" else pf, "correction": method})
    return out


def setting_text(row: dict[str, Any], keys: Sequence[str]) -> str:
    """What a verdict row judged, in words: ``rho=0.9, model=cnn`` from the swept fields ``keys`` (empty when the
    run swept nothing)."""
    return ", ".join(f"{k}={row[k]}" for k in keys if k in row)


def claims_digest(claims: Sequence[Claim]) -> str:
    """A short hash of the claim definitions (sentence, metric, comparison, conditions, smallest effect): printed
    beside a verdict table, it shows which definitions judged the run (an edit after the run changes it)."""
    text = json.dumps([c.definition() for c in claims], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# a sweep's short verdict table: the claim, its effect and interval, seeds, the p-value of the verdict's side, the
# raw verdict, the verdict after Holm's correction over the run, and the seeds that would decide it
VERDICT_COLUMNS = ("claim", "effect", "low", "high", "n_seeds", "p", "verdict", "adjusted", "seeds_to_decide")


def effect_text(row: dict[str, Any], digits: int = 4) -> str:
    """``+0.123 [+0.1, +0.15]``: a verdict row's effect and its interval (no interval for fewer than two units)."""
    effect, low, high = row["effect"], row["low"], row["high"]
    if effect is None or math.isnan(effect):
        return "-"
    bounds = "" if low is None or math.isnan(low) else f" [{low:+.{digits}g}, {high:+.{digits}g}]"
    return f"{effect:+.{digits}g}{bounds}"


def figure_cell(row: dict[str, Any]) -> str:
    """A verdict row's figure as the tables show it: its name, and beside it how its run differs from its recipe
    (a subset of the data, other settings) when it does."""
    note = row.get("note") or ""
    return f"{row['figure']} ({note})" if note else str(row["figure"])


def seeds_text(row: dict[str, Any]) -> str:
    """``3 pairs (1 excluded)``: what a verdict row's interval rests on."""
    return f"{row['n_seeds']}{' pairs' if row.get('paired') else ''}" + (
        f" ({row['excluded']} excluded)" if row.get("excluded") else ""
    )


def count_verdicts(rows: list[dict[str, Any]], key: str = "verdict") -> dict[str, int]:
    """How many rows hold, are contradicted, are inconclusive (``key="adjusted"``: after the correction)."""
    return {v: sum((r.get(key) or r["verdict"]) == v for r in rows) for v in VERDICTS}


def p_text(p: float | None) -> str:
    """A p-value for a table: three significant digits, ``<0.001`` below that, ``-`` when there is none."""
    if p is None or not math.isfinite(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3g}"


def plan_text(row: dict[str, Any]) -> str:
    """The seeds that would decide an inconclusive claim (80% power), or ``-``."""
    n = row.get("seeds_to_decide")
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return "-"
    return f">{inference.MAX_SEEDS_PLANNED}" if int(n) > inference.MAX_SEEDS_PLANNED else str(int(n))


def verdict_markdown(verdicts: list[Verdict]) -> str:
    """The verdict table as Markdown: claim, effect +- interval, n, the test and its one-sided p-value, the raw
    verdict, the verdict after the family's correction (the p-value shown is the one-sided p of the verdict's own side:
    for the claim, or against it when contradicted), the seeds that would decide an inconclusive claim, and the
    reason (claims the run could not test - conditions it did not include - are left out)."""
    verdicts = [v for v in verdicts if v.applicable]
    if not verdicts:
        return ""
    corrected = next((v.correction for v in verdicts if v.correction), "")
    lines = [
        "| claim | metric | effect [95% interval] | n | test | p | verdict | "
        f"{'adjusted (' + corrected + ')' if corrected else 'adjusted'} | seeds to decide | reason |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        row = v.row()
        text = v.claim.text.replace("|", "\\|")
        lines.append(
            f"| {text} | {v.claim.metric} | {effect_text(row)} | {seeds_text(row)} | {v.test} | "
            f"{p_text(row['p'])} | **{v.verdict}** | "
            f"{'**' + row['adjusted'] + '**' if v.correction else '-'} | {plan_text(row)} | {v.reason} |"
        )
    return "\n".join(lines)


# Statistics for ``Claim(statistic=...)``: each reduces one unit's records (one seed, one ``by`` combination) to a
# number.


def curve_change(column: str) -> Callable[[pd.DataFrame], float]:
    """The last minus the first point of a training curve (a list column), averaged over the unit's records."""

    def change(unit: pd.DataFrame) -> float:
        values = [float(c[-1]) - float(c[0]) for c in unit[column] if c is not None and len(c) >= 2]
        return float(np.mean(values)) if values else math.nan

    change.__name__ = f"last - first of {column}"
    change.same_units = True  # type: ignore[attr-defined]  # its smallest effect of interest is the column's
    return change


def slope_at_optimum(metric: str, over: str, objective: str) -> Callable[[pd.DataFrame], float]:
    """How ``metric`` moves across the ``over`` value that minimizes ``objective``: ``metric`` at the next grid
    value minus at the previous one (one-sided at the ends of the grid)."""

    def slope(unit: pd.DataFrame) -> float:
        curve = unit.groupby(over)[[metric, objective]].mean().sort_index()
        if len(curve) < 2:
            return math.nan
        k = int(np.argmin(curve[objective].to_numpy()))
        lo, hi = max(k - 1, 0), min(k + 1, len(curve) - 1)
        return float(curve[metric].iloc[hi] - curve[metric].iloc[lo])

    slope.__name__ = f"change of {metric} across the {objective}-optimal {over}"
    return slope


def fraction_at_largest(metric: str, over: str) -> Callable[[pd.DataFrame], float]:
    """``metric`` at the largest ``over`` value as a fraction of its largest value over ``over`` (0: it has
    vanished there; 1: it peaks there); NaN when the peak is not positive."""

    def fraction(unit: pd.DataFrame) -> float:
        curve = unit.groupby(over)[metric].mean().sort_index()
        peak = float(curve.max()) if len(curve) else math.nan
        if len(curve) < 2 or not peak > 0:
            return math.nan
        return float(curve.iloc[-1] / peak)

    fraction.__name__ = f"{metric} at the largest {over} over its peak"
    return fraction


def rank_agreement(metric: str, predicted: str, over: str) -> Callable[[pd.DataFrame], float]:
    """Kendall's tau between ``metric`` and ``predicted`` across the values of ``over`` (1: the same order)."""

    def tau(unit: pd.DataFrame) -> float:
        from scipy import stats

        curve = unit.groupby(over)[[metric, predicted]].mean()
        if len(curve) < 2 or curve[predicted].nunique() < 2:
            return math.nan
        return float(stats.kendalltau(curve[metric], curve[predicted]).statistic)

    tau.__name__ = f"Kendall tau of {metric} and {predicted} across {over}"
    tau.exact = True  # type: ignore[attr-defined]  # bounded in [-1, 1]: judged by the exact sign-flip test
    return tau


def minimum(column: str) -> Callable[[pd.DataFrame], float]:
    """The smallest value of ``column`` in the unit: a claim that must hold for every condition."""

    def smallest(unit: pd.DataFrame) -> float:
        return float(unit[column].astype(float).min())

    smallest.__name__ = f"min of {column}"
    smallest.exact = True  # type: ignore[attr-defined]  # an extreme value: judged by the exact sign-flip test
    smallest.same_units = True  # type: ignore[attr-defined]  # its smallest effect of interest is the column's
    return smallest


COLOURED_TASK = "coloured task (this toolkit: Zhang et al.'s label-independent colour to the follow-up's spurious one)"


def coloured_claims(figure: str) -> tuple[Claim, ...]:
    """What the coloured task is expected to show as ``rho`` goes from 0.5 (a colour independent of the label) to 1
    (a fully spurious colour), for any model: the colour moves more predictions, the spurious correlation C grows,
    and worst-group and reversed-colour accuracy fall.  Judged across a sweep over ``rho`` (``varies``)."""
    return (
        Claim(
            figure,
            "coloured task: the colour alone flips more predictions as rho grows",
            "colour_flip",
            "trend",
            over="rho",
            side="greater",
            varies=("rho",),
            paper=COLOURED_TASK,
        ),
        Claim(
            figure,
            "coloured task: the spurious correlation C grows with rho",
            "spurious_corr",
            "trend",
            over="rho",
            side="greater",
            varies=("rho",),
            paper=COLOURED_TASK,
        ),
        Claim(
            figure,
            "coloured task: worst-group accuracy (independent test set) falls as rho grows",
            "worst_group_acc",
            "trend",
            over="rho",
            side="less",
            varies=("rho",),
            paper=COLOURED_TASK,
        ),
        Claim(
            figure,
            "coloured task: accuracy with the colours reversed falls as rho grows",
            "acc_reversed",
            "trend",
            over="rho",
            side="less",
            varies=("rho",),
            paper=COLOURED_TASK,
        ),
    )


REMEDY_SOURCE = "beyond the papers: remedies of contamination (spuriouslab.nets.remedies)"


@dataclass(frozen=True)
class Effect:
    """What a remedy should do to one record column, against no remedy: ``side`` (``less``: lower than none's),
    ``margin`` (the difference's reference: -0.02 with ``greater`` reads "at most 0.02 lower"), and the claim's
    wording after the remedy's name."""

    metric: str
    side: Literal["greater", "less"]
    text: str
    margin: float = 0.0


THESIS = "Zhang et al., ICML 2024 (contamination is not spurious correlation) x the spurious-correlation literature"
GROUP_REMEDIES = ("reweight", "groupdro", "jtt", "dfr")  # the spurious-correlation field's remedies
NOVEL_MARGIN = 0.02  # "reduces the novel-colour drop by more than": two points of accuracy


def thesis_claims(figure: str) -> tuple[Claim, ...]:
    """The contamination paper's thesis on the coloured task, as claims (each at the checkpoint chosen by
    worst-group validation accuracy, ``sel_wg_*``, the literature's protocol): on the correlated task (rho 0.9)
    each spurious-correlation remedy raises worst-group and reversed-colour accuracy over no remedy; on the
    independent task (rho 0.5) there is a drop on novel colours without a remedy, no spurious-correlation remedy
    narrows it by more than :data:`NOVEL_MARGIN`, and pre-training on varied colours does narrow it."""
    out: list[Claim] = []
    for name in GROUP_REMEDIES:
        for metric, what in (("worst_group_acc", "worst-group"), ("acc_reversed", "reversed-colour")):
            out.append(
                Claim(
                    figure,
                    f"spurious correlation (rho 0.9): {name} raises {what} accuracy over no remedy (checkpoints "
                    "chosen by worst-group validation accuracy)",
                    f"sel_wg_{metric}",
                    "difference",
                    when={"rho": 0.9, "remedy": name},
                    versus={"rho": 0.9, "remedy": "none"},
                    paper=THESIS,
                    smallest_effect=0.01,
                )
            )
    out.append(
        Claim(
            figure,
            "contamination (rho 0.5): without a remedy, accuracy drops on border colours never seen in training "
            "(ID minus novel-colour accuracy > 0)",
            "sel_wg_novel_drop",
            "sign",
            when={"rho": 0.5, "remedy": "none"},
            paper=THESIS,
            smallest_effect=0.01,
        )
    )
    for name in GROUP_REMEDIES:
        out.append(
            Claim(
                figure,
                f"contamination (rho 0.5): {name} does not narrow the novel-colour drop by more than "
                f"{NOVEL_MARGIN:g} (its drop minus no remedy's > -{NOVEL_MARGIN:g})",
                "sel_wg_novel_drop",
                "difference",
                when={"rho": 0.5, "remedy": name},
                versus={"rho": 0.5, "remedy": "none"},
                reference=-NOVEL_MARGIN,
                paper=THESIS,
                smallest_effect=0.01,
            )
        )
    out.append(
        Claim(
            figure,
            "contamination (rho 0.5): pre-training on varied border colours narrows the novel-colour drop",
            "sel_wg_novel_drop",
            "difference",
            when={"rho": 0.5, "remedy": "pretrain"},
            versus={"rho": 0.5, "remedy": "none"},
            side="less",
            paper=THESIS,
            smallest_effect=0.01,
        )
    )
    return tuple(out)


def remedy_claims(
    figure: str, remedies: list[str], effects: list[Effect], when: dict[str, Any] | None = None
) -> tuple[Claim, ...]:
    """One claim per remedy and effect, each remedy's records against ``remedy=none`` (paired over seeds),
    both restricted to ``when`` (e.g. the ReLU net).  A remedy a run did not train is not applicable to it.

    >>> [c.text for c in remedy_claims("toy", ["pretrain"], [Effect("gap", "less", "narrows the gap")])]
    ['pretrain narrows the gap (vs no remedy)']
    """
    base = dict(when or {})
    return tuple(
        Claim(
            figure,
            f"{name} {e.text} (vs no remedy)",
            e.metric,
            "difference",
            when={**base, "remedy": name},
            versus={**base, "remedy": "none"},
            side=e.side,
            reference=e.margin,
            paper=REMEDY_SOURCE,
        )
        for name in remedies
        if name != "none"
        for e in effects
    )
