"""Ridge report: the test-optimal lambda per setting, memorization / spurious correlation / test loss vs lambda."""

from __future__ import annotations

import pandas as pd

from spuriouslab import plotting, tables
from spuriouslab.experiments.base import Report
from spuriouslab.experiments.memorization.config import MemorizationConfig

METRICS = ["test_acc", "test_mse", "memorization_cov", "spurious_corr", "spurious_acc"]
KEYS = ["model", "activation", "alpha", "width", "n_train", "correlation", "ridge"]


PREDICTED = ["spurious_corr_pred", "test_mse_pred"]  # linear ridge: the deterministic equivalent (theory/ridge.py)


def report(cfg: MemorizationConfig, df: pd.DataFrame) -> Report:
    theory = [c for c in PREDICTED if c in df and df[c].notna().any()]
    agg = tables.aggregate(df, KEYS, [*METRICS, *theory])
    curves = [k for k in ["model", "activation", "alpha", "width", "n_train"] if agg[k].nunique() > 1]
    best = agg.loc[agg.groupby([*curves, "correlation"] if curves else ["correlation"]).test_mse.idxmin()].reset_index(
        drop=True
    )
    groups = list(agg.groupby(curves, sort=True)) if curves else [((), agg)]
    positive = agg.ridge[agg.ridge > 0]
    linthresh = float(positive.min()) if len(positive) else 1.0

    def figure(panels: list[tuple[str, str]], xlabel: str, mark_best: bool, note: str = ""):
        fig, axes = plotting.panel_grid(len(groups), 2)
        if note:
            fig.suptitle(note, fontsize=9)
        for i, (gkey, sub) in enumerate(groups):
            bsub = best.merge(sub[[*curves, "correlation"]].drop_duplicates()) if curves else best
            gkey = gkey if isinstance(gkey, tuple) else (gkey,)
            title = plotting.label(dict(zip(curves, gkey, strict=False)), curves) or "all"
            for j, (metric, ylabel) in enumerate(panels):
                ax = axes[i][j]
                for c, line in sub.groupby("correlation", sort=True):
                    line = line.sort_values("ridge")
                    handle = plotting.band(
                        ax,
                        line.ridge,
                        line[metric],
                        line[metric + "_ci"],
                        label=f"c={c:g}",
                        quantity=metric,
                        marker="o",
                        ms=3,
                    )
                    if f"{metric}_pred" in line:  # the deterministic equivalent, dashed in the line's colour
                        ax.plot(
                            line.ridge,
                            line[f"{metric}_pred"],
                            linestyle="--",
                            color=handle.get_color(),
                            label=f"c={c:g} theory",
                        )
                    opt = bsub[bsub.correlation == c]
                    if mark_best and len(opt):
                        ax.plot(
                            opt.ridge,
                            opt[metric],
                            marker="*",
                            ms=12,
                            color=handle.get_color(),
                            markeredgecolor="k",
                            linestyle="none",
                        )
                ax.set_xscale("symlog", linthresh=linthresh)
                plotting.style_axes(ax, xlabel, ylabel, title)
        return fig

    figures = {
        "ridge_memorization": figure(
            [("memorization_cov", "memorization Cov(f(z^s), g)"), ("test_acc", "test accuracy")],
            "ridge lambda (0 at the left)",
            False,
        ),
        "ridge_correlation": figure(
            [("spurious_corr", "spurious correlation C on test"), ("test_mse", "test loss (MSE)")],
            "ridge lambda (0 at the left)",
            True,
            "star = test-optimal lambda"
            + ("; dashed = the deterministic equivalent (theory/ridge.py)" if theory else ""),
        ),
    }
    lines = [
        "# Ridge and spurious correlation",
        *equivalence(df),
        "",
        "Test-optimal lambda (minimum test MSE) per setting:",
        "",
        tables.markdown_table(
            best, [*curves, "correlation", "ridge", "test_mse", "test_acc", "spurious_corr", "memorization_cov"]
        ),
        "",
        "All points (means over seeds). Figures: figures/ridge_memorization, figures/ridge_correlation.",
        "",
        tables.markdown_table(agg, [*KEYS, "n", *METRICS]),
    ]
    return Report("\n".join(lines) + "\n", figures)


def equivalence(df: pd.DataFrame) -> list[str]:
    """Random features against the linear ridge they amount to (``ridge_equiv``, lambda~): per activation, width,
    N and correlation, the measured minus the predicted C and L, each a per-seed mean over the lambda grid, with
    its 95% interval over seeds; a width whose interval leaves the claims' bands (0.01, 0.02) departs from the
    equivalence."""
    if "ridge_equiv" not in df or not df.ridge_equiv.notna().any():
        return []
    rf = df[df.ridge_equiv.notna()]
    rf = rf.assign(C_gap=rf.spurious_corr - rf.spurious_corr_pred, L_gap=rf.test_mse - rf.test_mse_pred)
    keys = [k for k in ["activation", "width", "n_train", "correlation"] if k in rf]
    per_seed = rf.groupby([*keys, "seed"], as_index=False)[["C_gap", "L_gap"]].mean()
    agg = tables.aggregate(per_seed, keys, ["C_gap", "L_gap"])
    return [
        "",
        "Random features against linear ridge at their effective lambda~ (theory/ridge.py): measured minus "
        "predicted C and L, the mean over the lambda grid, with the half-width of its 95% interval over seeds "
        "(_ci; n seeds):",
        "",
        tables.markdown_table(agg, [*keys, "n", "C_gap", "C_gap_ci", "L_gap", "L_gap_ci"]),
        "",
    ]
