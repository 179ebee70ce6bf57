"""Memorization report, from records alone: accuracies vs N, alignment vs N with the theory, memorization
against its bound, and the summary table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spuriouslab import plotting, tables
from spuriouslab.experiments.base import Report
from spuriouslab.experiments.memorization.config import MemorizationConfig
from spuriouslab.kernels.matrices import MODELS

METRICS = [
    "train_acc",
    "test_acc",
    "spurious_acc",
    "memorization_cov",
    "alignment_mean",
    "gamma_pred",
    "stability_g_mean",
    "alignment_stability_mean",
    "test_mse",
    "residual_max",
    "seconds",
]
KEYS = ["model", "alpha", "activation", "width", "ridge", "correlation", "n_train"]


def report(cfg: MemorizationConfig, df: pd.DataFrame) -> Report:
    return report_memorization(df)


def report_memorization(df: pd.DataFrame) -> Report:
    """Figures (accuracies vs N, alignment vs N with theory, memorization vs bound) and the summary."""
    metrics = [*METRICS, "gamma_many", "gamma_few"] + (["spurious_corr"] if "spurious_corr" in df else [])
    agg = tables.aggregate(df, KEYS, metrics)
    panels = agg[["model", "alpha"]].drop_duplicates().sort_values(["model", "alpha"]).to_records(index=False)
    candidates = ["activation", "width", "ridge", "correlation"]
    varying = agg.groupby(["model", "alpha"])[candidates].nunique().max()
    line_keys = [k for k in candidates if varying[k] > 1] or ["activation"]
    alphas = sorted(agg["alpha"].unique(), reverse=True)
    models = sorted(agg["model"].unique(), key=lambda m: MODELS.index(m))
    figures = {}

    def panel_lines(axes):
        """(axis, line label, line rows) for every line of every (model, alpha) panel."""
        for model, alpha in panels:
            ax = axes[models.index(model)][alphas.index(alpha)]
            sub = agg[(agg.model == model) & (agg.alpha == alpha)]
            for _, grp in sub.groupby(line_keys, sort=True):
                yield ax, plotting.label(grp.iloc[0], line_keys), grp.sort_values("n_train")

    def style_panels(axes, ylabel: str) -> None:
        for model, alpha in panels:
            plotting.style_axes(
                axes[models.index(model)][alphas.index(alpha)],
                "N (training samples)",
                ylabel,
                f"{model.upper()}, alpha={alpha:g}",
                logx=True,
            )

    # 1. test (solid) and spurious (dashed) accuracy vs N
    fig, axes = plotting.panel_grid(len(models), len(alphas))
    for ax, label, grp in panel_lines(axes):
        line = plotting.band(
            ax, grp.n_train, grp.test_acc, grp.test_acc_ci, label=f"{label} test", quantity="acc", marker="o", ms=3
        )
        plotting.band(
            ax,
            grp.n_train,
            grp.spurious_acc,
            grp.spurious_acc_ci,
            label=f"{label} spurious",
            quantity="acc",
            color=line.get_color(),
            linestyle="--",
            marker="s",
            ms=3,
        )
        ax.set_ylim(0.4, 1.02)
    style_panels(axes, "accuracy")
    fig.suptitle("Test (solid) and spurious (dashed) accuracy; mean and 95% interval over seeds", fontsize=10)
    figures["accuracy_vs_n"] = fig

    # 2. mean feature alignment vs N with the theory
    fig, axes = plotting.panel_grid(len(models), len(alphas))
    for ax, label, grp in panel_lines(axes):
        line = plotting.band(
            ax, grp.n_train, grp.alignment_mean, grp.alignment_mean_ci, label=f"{label} measured", marker="o", ms=3
        )
        if grp.gamma_pred.notna().any():
            ax.plot(grp.n_train, grp.gamma_pred, color=line.get_color(), linestyle=":", label=f"{label} theory")
            first = grp.iloc[0]
            ax.axhline(first.gamma_many, color=line.get_color(), linewidth=0.7, alpha=0.6)
            ax.axhline(first.gamma_few, color=line.get_color(), linewidth=0.7, alpha=0.6, linestyle="-.")
    style_panels(axes, "mean feature alignment F")
    fig.suptitle(
        "Feature alignment: measured (band), finite-N theory (dotted), N<<d (dash-dot) and N>>d (thin) limits",
        fontsize=9,
    )
    figures["alignment_vs_n"] = fig

    # 3. memorization covariance against the bound: gamma * E[g S] and mean F S g
    fig, ax = plotting.figure()
    for (model, act), grp in agg.groupby(["model", "activation"], sort=True):
        ax.scatter(
            grp.gamma_pred * grp.stability_g_mean, grp.memorization_cov, s=14, label=f"{model} {act}: gamma E[gS]"
        )
        ax.scatter(
            grp.alignment_stability_mean, grp.memorization_cov, s=14, marker="x", label=f"{model} {act}: mean F S g"
        )
    lim = [0, max(0.05, float(np.nanmax(agg.memorization_cov.to_numpy())) * 1.05)]
    ax.plot(lim, lim, color="k", linewidth=0.7)
    plotting.style_axes(ax, "prediction", "memorization Cov(f(z^s), g)", "Memorization vs its bound (one point per N)")
    figures["memorization_vs_bound"] = fig

    cols = [
        "model",
        "alpha",
        "activation",
        "width",
        "ridge",
        "correlation",
        "n_train",
        "n",
        "train_acc",
        "test_acc",
        "spurious_acc",
        "memorization_cov",
        "alignment_stability_mean",
        "alignment_mean",
        "gamma_pred",
        "residual_max",
        "seconds",
    ]
    if "spurious_corr" in agg:
        cols.insert(-2, "spurious_corr")
    lines = [
        "# Spurious-feature memorization",
        "",
        f"{len(df)} records; means over seeds (n = seeds).  Figures: figures/accuracy_vs_n, "
        "figures/alignment_vs_n, figures/memorization_vs_bound (PNG and PDF).",
        "",
        tables.markdown_table(agg, cols),
    ]
    if "solver" in df and (df.solver != "cholesky").any():
        lines += [
            "",
            f"{int((df.solver != 'cholesky').sum())} points were solved by the eigen pseudo-inverse "
            "(Gram matrix singular or ill-conditioned); see the `solver` and `cond` columns.",
        ]
    return Report("\n".join(lines) + "\n", figures)
