"""Memorization-NN report, from records alone: accuracy vs N, training curves, and the table (diverged seeds
listed apart)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spuriouslab import plotting, tables
from spuriouslab.experiments.base import Report

METRICS = ["train_acc", "test_acc", "spurious_acc", "seconds"]


def report(cfg, df: pd.DataFrame) -> Report:
    import matplotlib.pyplot as plt

    ok = df[df.status == "ok"]
    agg = tables.aggregate(ok, ["model", "n_train"], METRICS)
    models = list(dict.fromkeys(ok.model))
    fig, axes = plotting.panel_grid(1, len(models))
    for j, m in enumerate(models):
        ax = axes[0][j]
        sub = agg[agg.model == m].sort_values("n_train")
        plotting.band(ax, sub.n_train, sub.test_acc, sub.test_acc_ci, label="test", quantity="acc", marker="o", ms=3)
        plotting.band(
            ax,
            sub.n_train,
            sub.spurious_acc,
            sub.spurious_acc_ci,
            label="spurious",
            quantity="acc",
            marker="s",
            ms=3,
            linestyle="--",
        )
        ax.axhline(float(ok.chance.iloc[0]), color="k", linewidth=0.6, linestyle=":", label="chance")
        plotting.style_axes(ax, "N (training samples)", "accuracy", f"{m} on {cfg.data}", logx=True)
    figures = {"nn_accuracy_vs_n": fig}

    fig, axes = plotting.panel_grid(1, len(models))
    ns = sorted(ok.n_train.unique())
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(ns))))
    for (m, n), sub in ok.groupby(["model", "n_train"], sort=True):
        ax = axes[0][models.index(m)]
        epochs = np.asarray(sub.curve_epoch.iloc[0])
        for k, style in [("test_acc", "-"), ("spurious_acc", "--")]:
            vals = np.stack([np.asarray(v) for v in sub[f"curve_{k}"]])
            ax.plot(epochs, vals.mean(0), style, color=colors[ns.index(n)], label=f"N={n} {k.split('_')[0]}")
    for m in models:
        plotting.style_axes(axes[0][models.index(m)], "epoch", "accuracy", m)
    figures["nn_curves"] = fig

    lines = [
        "# Trained networks: spurious-feature memorization",
        "",
        f"data={cfg.data}, epochs={cfg.epochs}, batch={cfg.batch_size}, Adam lr={cfg.lr:g}, "
        f"wd={cfg.weight_decay:g}, StepLR({cfg.step_size}, {cfg.gamma:g}).  Spurious accuracy: the "
        "training image's border alone (core zeroed) recalls its label.  Figures: figures/nn_accuracy_vs_n,"
        " figures/nn_curves.",
        "",
        tables.markdown_table(agg, ["model", "n_train", "n", *METRICS]),
    ]
    bad = df[df.status != "ok"]
    if len(bad):
        lines += [
            "",
            f"{len(bad)} point(s) diverged:",
            "",
            tables.markdown_table(bad, ["model", "n_train", "seed", "status", "error"]),
        ]
    return Report("\n".join(lines) + "\n", figures)
