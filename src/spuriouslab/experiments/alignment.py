"""A sweep designed to test the feature-alignment theory: many alpha, four activations, N from 10 to 4d.

Same computation as ``memorization`` (its records carry the measured mean alignment and the predictions);
defaults to the infinite-width kernels, whose alignment the theory describes, and to nested N.
Adds a measured-vs-predicted table with the gap and a figure of the alignment against alpha.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from spuriouslab import report as R
from spuriouslab.experiments.base import ActivationName
from spuriouslab.experiments.memorization import (Fraction, Listed, Memorization, MemorizationConfig, Size,
                                                  report_memorization)
from spuriouslab.theory.alignment import predict_alignment


class AlignmentConfig(MemorizationConfig):
    d: int = Field(500, ge=2, description="input dimension d = d_x + d_y")
    alpha: Annotated[list[Fraction], Listed] = Field([0.1, 0.25, 0.5, 0.75, 0.9], description="spurious fraction d_y/d")
    n_train: Annotated[list[Size], Listed] = Field([10, 25, 50, 100, 250, 500, 1000, 2000],
                                                  description="training-set sizes N (10 to 4d)")
    n_test: int = Field(200, ge=1, description="fresh test samples")
    model: Annotated[list[Literal["rf", "ntk"]], Listed] = Field(["rf", "ntk"], description="rf or ntk")
    activation: Annotated[list[ActivationName], Listed] = Field(["phi2", "phi4", "relu", "tanh"],
                                                     description="registered name or hermite:c0,c1,...")
    width: Annotated[list[int | Literal["inf"]], Listed] | None = Field(["inf"], description="features k (int or inf)")
    nested: bool = Field(True, description="share one draw of data and features across nested N")
    seeds: int = Field(2, ge=1, description="number of seeds per grid point")


class Alignment(Memorization):
    name = "alignment"
    summary = "Feature alignment measured vs predicted over alpha, activations and N (theory check)"
    Config = AlignmentConfig

    def report(self, cfg, df: pd.DataFrame, store) -> str:
        base = report_memorization(df, store.figures)
        keys = ["model", "activation", "alpha", "width", "n_train"]
        agg = R.aggregate(df, keys, ["alignment_mean", "gamma_pred", "gamma_few", "gamma_many"])
        agg["gap"] = agg["alignment_mean"] - agg["gamma_pred"]
        _figure_vs_alpha(df, agg, cfg.d, store.figures)
        worst = agg.loc[agg.gap.abs().idxmax()]
        lines = ["# Feature alignment: measured vs predicted", "",
                 f"max |measured - predicted| = {abs(worst.gap):.4f} (at {worst.model} {worst.activation}, "
                 f"alpha={worst.alpha:g}, N={worst.n_train}); mean |gap| = {agg.gap.abs().mean():.4f}.  "
                 "Prediction: finite-psi formula at psi=(N-1)/d (see spuriouslab.theory.alignment).  "
                 "Figure: figures/alignment_vs_alpha.", "",
                 R.markdown_table(agg, ["model", "activation", "alpha", "width", "n_train", "n", "alignment_mean",
                                        "alignment_mean_ci", "gamma_pred", "gap", "gamma_few", "gamma_many"]),
                 "", base]
        return "\n".join(lines) + "\n"


def _figure_vs_alpha(df, agg, d: int, fig_dir) -> None:
    import matplotlib.pyplot as plt

    models = [m for m in ["rf", "ntk"] if m in set(agg.model)]
    acts = list(dict.fromkeys(df.activation))
    fig, axes = R.panel_grid(len(models), len(acts), size=(3.6, 3.0))
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
                ax.errorbar(pts.alpha, pts.alignment_mean, yerr=pts.alignment_mean_ci, fmt="o", ms=3, color=color,
                            label=f"N={n}")
                ax.plot(grid, [predict_alignment(a, m, x, int(n), d).gamma_pred for x in grid], ":", color=color,
                        linewidth=1)
            ax.plot(grid, [predict_alignment(a, m, x).gamma_few for x in grid], "k-.", linewidth=0.8,
                    label="N<<d")
            ax.plot(grid, [predict_alignment(a, m, x).gamma_many for x in grid], "k-", linewidth=0.8,
                    label="N>>d")
            ax.set_title(f"{m.upper()} {a}", fontsize=9)
            ax.set_xlabel("alpha = d_y/d")
            ax.set_ylabel("mean feature alignment")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"Alignment vs alpha (d={d}): measured (points, 95% CI), theory at each N (dotted), limits",
                 fontsize=9)
    R.save_figure(fig, fig_dir, "alignment_vs_alpha")


EXPERIMENT = Alignment()
