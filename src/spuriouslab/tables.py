"""Tables from records: mean and 95% interval over seeds, aggregation by grid point, Markdown tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats


def mean_ci(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 95% t-interval half-width along ``axis`` (half-width 0 for a single value)."""
    v = np.asarray(values, dtype=float)
    n = v.shape[axis]
    mean = v.mean(axis=axis)
    if n < 2:
        return mean, np.zeros_like(mean)
    return mean, stats.t.ppf(0.975, n - 1) * v.std(axis=axis, ddof=1) / math.sqrt(n)


def aggregate(df: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean, 95% t-interval half-width (``<metric>_ci``) and seed count ``n`` per group."""
    rows = []
    for key, sub in df.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key, strict=True))
        row["n"] = len(sub)
        for m in metrics:
            if m not in sub:
                continue
            v = pd.to_numeric(sub[m], errors="coerce").dropna().to_numpy(dtype=float)
            if len(v):
                mean, ci = mean_ci(v)
                row[m], row[m + "_ci"] = float(mean), float(ci)
            else:
                row[m], row[m + "_ci"] = math.nan, math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def remedy_table(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """:func:`aggregate` of ``metrics`` per remedy (the ``remedy`` column), ``none`` first and the others in
    the records' order, over the ReLU records where there are any (the remedies' claims are about ReLU nets;
    records without an ``activation`` column are all kept)."""
    relu = df.activation == "relu" if "activation" in df else pd.Series(False, index=df.index)
    sub = df[relu] if relu.any() else df
    table = aggregate(sub, ["remedy"], metrics)
    order = [m for m in dict.fromkeys(["none", *sub.remedy]) if m in set(table.remedy)]
    return table.set_index("remedy").loc[order].reset_index()


def fmt(v: object) -> str:
    """A number as a table shows it (4 significant digits, scientific outside [1e-3, 1e5))."""
    if isinstance(v, float | np.floating):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf"
        size = abs(float(v))  # (numpy's stubs give abs of a numpy float as object)
        if v != 0 and (size >= 1e5 or size < 1e-3):
            return f"{v:.3g}"
        return f"{v:.4g}"
    return str(v)


def cell(v: object) -> str:
    """A value as a Markdown table cell: :func:`fmt`, with ``|`` escaped (a name like ``x|y`` stays one cell)
    and line breaks as spaces."""
    return fmt(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    cols = [c for c in (columns or list(df.columns)) if c in df.columns]
    lines = ["| " + " | ".join(cell(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df[cols].iterrows():
        lines.append("| " + " | ".join(cell(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def latex_table(df: pd.DataFrame) -> str:
    """A table as LaTeX, every cell escaped (``_``, ``%``, ``&``, ``$`` ... in names and values)."""
    return df.to_latex(index=False, float_format="%.4g", escape=True)


def curve_stats(sub: pd.DataFrame, key: str, x: str = "curve_step") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The logged x values, and the mean and 95% interval over the rows (seeds) of the curve column
    ``curve_<key>``."""
    vals = np.stack([np.asarray(v, dtype=float) for v in sub[f"curve_{key}"]])
    return (np.asarray(sub.iloc[0][x]), *mean_ci(vals))
