"""Beyond the paper (follow-up, arXiv 2502.01347): ridge regularisation and spurious correlations.

Synthetic data whose spurious part is correlated with the core, ``y = c P x + sqrt(1 - c^2) n``, and the
spurious-correlation metric ``C = Cov(f([x~, y]), g)`` on fresh test samples (a model that uses y as a
proxy for the label has C > 0), next to the memorization covariance on training samples, as the ridge
lambda grows.  Same computation as ``memorization``; one Gram matrix serves every lambda.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from spuriouslab import report as R
from spuriouslab.experiments.base import ActivationName
from spuriouslab.experiments.memorization import (Correlation, Fraction, Listed, Memorization, MemorizationConfig,
                                                  RidgeValue, Size)


class RidgeConfig(MemorizationConfig):
    d: int = Field(500, ge=2, description="input dimension d = d_x + d_y")
    alpha: Annotated[list[Fraction], Listed] = Field([0.5], description="spurious fraction d_y/d")
    n_train: Annotated[list[Size], Listed] = Field([500], description="training-set sizes N")
    model: Annotated[list[Literal["rf", "ntk"]], Listed] = Field(["rf", "ntk"], description="rf or ntk")
    activation: Annotated[list[ActivationName], Listed] = Field(["relu"], description="registered name or hermite:c0,c1,...")
    width: Annotated[list[int | Literal["inf"]], Listed] | None = Field(["inf"], description="features k (int or inf)")
    ridge: Annotated[list[RidgeValue], Listed] = Field([0.0, 1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0, 10.0],
                                                  description="ridge lambda >= 0")
    correlation: Annotated[list[Correlation], Listed] = Field([0.0, 0.3, 0.6, 0.9], description="c in [0, 1)")
    spurious_corr: bool = Field(True, description="also measure C = Cov(f([x~, y]), g) on the test set")


class Ridge(Memorization):
    name = "ridge"
    summary = "Ridge lambda and correlated spurious features: memorization, spurious correlation C, test loss"
    Config = RidgeConfig

    def report(self, cfg, df: pd.DataFrame, store) -> str:
        metrics = ["test_acc", "test_mse", "memorization_cov", "spurious_corr", "spurious_acc"]
        keys = ["model", "activation", "alpha", "width", "n_train", "correlation", "ridge"]
        agg = R.aggregate(df, keys, metrics)
        curves = [k for k in ["model", "activation", "alpha", "width", "n_train"] if agg[k].nunique() > 1]
        best = (agg.loc[agg.groupby([*curves, "correlation"] if curves else ["correlation"]).test_mse.idxmin()]
                .reset_index(drop=True))
        _figures(agg, best, curves, store.figures)
        lines = ["# Ridge and spurious correlation", "",
                 "Test-optimal lambda (minimum test MSE) per setting:", "",
                 R.markdown_table(best, [*curves, "correlation", "ridge", "test_mse", "test_acc", "spurious_corr",
                                         "memorization_cov"]),
                 "", "All points (means over seeds). Figures: figures/ridge_memorization, figures/ridge_correlation.",
                 "", R.markdown_table(agg, [*keys, "n", *metrics])]
        return "\n".join(lines) + "\n"


def _figures(agg: pd.DataFrame, best: pd.DataFrame, curves: list[str], fig_dir) -> None:
    import matplotlib.pyplot as plt

    positive = agg.ridge[agg.ridge > 0]
    linthresh = float(positive.min()) if len(positive) else 1.0
    groups = list(agg.groupby(curves, sort=True)) if curves else [((), agg)]

    def figure(panels: list[tuple[str, str]], name: str, xlabel: str, mark_best: bool) -> None:
        fig, axes = R.panel_grid(len(groups), 2)
        for i, (gkey, sub) in enumerate(groups):
            bsub = best.merge(sub[[*curves, "correlation"]].drop_duplicates()) if curves else best
            for j, (metric, ylabel) in enumerate(panels):
                ax = axes[i][j]
                for c, line in sub.groupby("correlation", sort=True):
                    line = line.sort_values("ridge")
                    handle = R.band(ax, line.ridge, line[metric], line[metric + "_ci"], label=f"c={c:g}",
                                    marker="o", ms=3)
                    opt = bsub[bsub.correlation == c]
                    if mark_best and len(opt):
                        ax.plot(opt.ridge, opt[metric], marker="*", ms=12, color=handle.get_color(),
                                markeredgecolor="k", linestyle="none")
                ax.set_xscale("symlog", linthresh=linthresh)
                ax.set_xlabel(xlabel)
                ax.set_ylabel(ylabel)
                ax.set_title(_title(curves, gkey), fontsize=9)
                ax.grid(alpha=0.3)
                ax.legend(fontsize=7)
        R.save_figure(fig, fig_dir, name)

    figure([("memorization_cov", "memorization Cov(f(z^s), g)"), ("test_acc", "test accuracy")],
           "ridge_memorization", "ridge lambda (0 at the left)", mark_best=False)
    figure([("spurious_corr", "spurious correlation C on test"), ("test_mse", "test loss (MSE)")],
           "ridge_correlation", "ridge lambda (0 at the left); star = test-optimal", mark_best=True)
    plt.close("all")


def _title(curves, key) -> str:
    key = key if isinstance(key, tuple) else (key,)
    return ", ".join(f"{c}={v:g}" if isinstance(v, float | np.floating) else f"{c}={v}"
                     for c, v in zip(curves, key, strict=False)) or "all"


EXPERIMENT = Ridge()
