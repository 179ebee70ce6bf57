"""Alignment report: measured vs predicted table with the gap, alignment against alpha, and the memorization
report beneath."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spuriouslab import plotting, tables
from spuriouslab.experiments.base import Report
from spuriouslab.experiments.memorization.config import MemorizationConfig
from spuriouslab.experiments.memorization.report import report_memorization
from spuriouslab.theory.alignment import predict_alignment


def report(cfg: MemorizationConfig, df: pd.DataFrame) -> Report:
    base = report_memorization(df)
    keys = ["model", "activation", "alpha", "width", "n_train"]
    agg = tables.aggregate(df, keys, ["alignment_mean", "gamma_pred", "gamma_few", "gamma_many"])
    agg["gap"] = agg["alignment_mean"] - agg["gamma_pred"]
    worst = agg.iloc[agg.gap.abs().argmax()]  # idxmax's position (agg has a range index)
    lines = [
        "# Feature alignment: measured vs predicted",
        "",
        f"max |measured - predicted| = {abs(worst.gap):.4f} (at {worst.model} {worst.activation}, "
        f"alpha={worst.alpha:g}, N={worst.n_train}); mean |gap| = {agg.gap.abs().mean():.4f}.  "
        "Prediction: finite-psi formula at psi=(N-1)/d (see spuriouslab.theory.alignment).  "
        "Figure: figures/alignment_vs_alpha.",
        "",
        tables.markdown_table(
            agg,
            [
                "model",
                "activation",
                "alpha",
                "width",
                "n_train",
                "n",
                "alignment_mean",
                "alignment_mean_ci",
                "gamma_pred",
                "gap",
                "gamma_few",
                "gamma_many",
            ],
        ),
        "",
        base.summary,
    ]
    figures = {**base.figures, "alignment_vs_alpha": _figure_vs_alpha(df, agg, cfg.d)}
    return Report("\n".join(lines) + "\n", figures)


def _figure_vs_alpha(df, agg, d: int):
    import matplotlib.pyplot as plt

    models = [m for m in ["rf", "ntk"] if m in set(agg.model)]
    acts = list(dict.fromkeys(df.activation))
    fig, axes = plotting.panel_grid(len(models), len(acts), size=(3.6, 3.0))
    ns = sorted(agg.n_train.unique())
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(ns)))
    grid = np.linspace(0.02, 0.98, 49)
    for i, m in enumerate(models):
        for j, a in enumerate(acts):
            ax = axes[i][j]
            sub = agg[(agg.model == m) & (agg.activation == a)]
            for n, color in zip(ns, colors, strict=True):
                pts = sub[sub.n_train == n].sort_values("alpha")
                if pts.empty:
                    continue
                ax.errorbar(
                    pts.alpha,
                    pts.alignment_mean,
                    yerr=pts.alignment_mean_ci,
                    fmt="o",
                    ms=3,
                    color=color,
                    label=f"N={n}",
                )
                ax.plot(
                    grid,
                    [predict_alignment(a, m, x, int(n), d).gamma_pred for x in grid],
                    ":",
                    color=color,
                    linewidth=1,
                )
            ax.plot(grid, [predict_alignment(a, m, x).gamma_few for x in grid], "k-.", linewidth=0.8, label="N<<d")
            ax.plot(grid, [predict_alignment(a, m, x).gamma_many for x in grid], "k-", linewidth=0.8, label="N>>d")
            plotting.style_axes(
                ax, "alpha = d_y/d", "mean feature alignment", f"{m.upper()} {a}", legend=(i, j) == (0, 0)
            )
    fig.suptitle(
        f"Alignment vs alpha (d={d}): measured (points, 95% CI), theory at each N (dotted), limits", fontsize=9
    )
    return fig
