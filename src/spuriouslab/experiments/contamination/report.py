"""Contamination report, from records alone: ID vs OOD losses, core vs background projections, activation
asymmetry by output sign, the background projection per combination, and the end-of-training table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spuriouslab import plotting, tables
from spuriouslab.experiments.base import Report
from spuriouslab.experiments.contamination.config import ContaminationConfig

COMBO = ["activation", "loss", "optimizer", "remedy"]
METRICS = [
    "id_loss",
    "ood_loss",
    "ood_id_gap",
    "id_acc",
    "ood_acc",
    "core_norm",
    "bg_norm_init",
    "bg_norm",
    "bg_norm_growth",
    "bg_signed_change",
    "asym_corr",
    "seconds",
]


def report(cfg: ContaminationConfig, df: pd.DataFrame) -> Report:
    bad = df[df.status != "ok"] if "status" in df else df.iloc[:0]
    df = df[df.status == "ok"] if "status" in df else df
    if "remedy" not in df:  # records written before the remedy axis: no remedy
        df, bad = df.assign(remedy="none"), bad.assign(remedy="none")
    if df.empty:
        return Report(
            "# Feature contamination\n\nEvery seed diverged:\n\n"
            + tables.markdown_table(bad, [*COMBO, "seed", "status", "error"])
            + "\n"
        )
    keys = [k for k in COMBO if df[k].nunique() > 1]
    groups = list(df.groupby(COMBO, sort=False))
    labels = [plotting.label(dict(zip(COMBO, key, strict=True)), keys) or "model" for key, _ in groups]
    figures = {
        "losses": _losses_figure(groups, labels),
        "projections": _projections_figure(groups, labels),
        "asymmetry": _asymmetry_figure(groups),
    }
    if len(groups) > 1:  # the background projection per combination (the activation / loss comparison)
        figures["background_by_" + ("_".join(keys) or "model")] = _background_figure(groups, labels)
    if df.remedy.nunique() > 1:
        figures["remedies"] = remedy_figure(df)
    agg = tables.aggregate(df, COMBO, METRICS)
    cols_ = [*COMBO, "n", *[m for m in METRICS if m in agg]]
    lines = [
        "# Feature contamination",
        "",
        f"preset={cfg.preset}, core={cfg.core}, ood={cfg.ood}, sampling={cfg.sampling}, depth={cfg.depth}, "
        f"width={cfg.width}, lr={cfg.lr:g}, wd={cfg.weight_decay:g}, iterations={cfg.iterations}.  End of training, "
        "means over seeds (n).  bg_norm_growth = final / initial background projection norm (initial: at random "
        "initialisation, before any pre-training); bg_signed_change = change of the signed background-mean "
        "projection; ood_id_gap = OOD loss - ID loss.",
        "",
        tables.markdown_table(agg, cols_),
        "",
        "Figures: " + ", ".join(f"figures/{name}" for name in figures) + " (PNG, PDF).",
    ]
    if len(bad):
        lines += [
            f"\n{len(bad)} seed(s) diverged (left out above):\n",
            tables.markdown_table(bad, [*COMBO, "seed", "error"]),
        ]
    return Report("\n".join(lines) + "\n", figures)


def remedy_figure(df: pd.DataFrame):
    """Every remedy side by side (ReLU nets where there are any): background growth, OOD - ID gap, ID accuracy and
    time, mean and 95% interval over seeds, the no-remedy value dotted."""
    table = tables.remedy_table(df, ["bg_norm_growth", "ood_id_gap", "id_acc", "seconds"])
    return plotting.comparison_figure(
        table,
        "remedy",
        [
            ("bg_norm_growth", "background weight: final / initial"),
            ("ood_id_gap", "OOD - ID loss"),
            ("id_acc", "ID accuracy"),
            ("seconds", "training seconds per seed"),
        ],
        "remedies of contamination vs none (dotted): mean and 95% interval over seeds",
        baseline="none",
    )


def _losses_figure(groups: list, labels: list[str]):
    colors = plotting.colors(len(groups))
    """Losses and accuracies, ID (solid) vs OOD (dashed)."""
    fig, axes = plotting.panel_grid(1, 2, size=(5.0, 3.6))
    for (_, sub), lab, color in zip(groups, labels, colors, strict=True):
        for j, metric in enumerate(["loss", "acc"]):
            for split, style in [("id", "-"), ("ood", "--")]:
                steps, mean, ci = tables.curve_stats(sub, f"{split}_{metric}")
                plotting.band(
                    axes[0][j],
                    steps,
                    mean,
                    ci,
                    label=f"{lab} {split.upper()}",
                    quantity=metric,
                    color=color,
                    linestyle=style,
                )
    plotting.style_axes(axes[0][0], "iteration", "loss")
    plotting.style_axes(axes[0][1], "iteration", "accuracy")
    fig.suptitle("ID (solid) vs OOD (dashed): mean and 95% band over seeds", fontsize=9)
    return fig


def _projections_figure(groups: list, labels: list[str]):
    colors = plotting.colors(len(groups))
    """Projections: core vs background norm; signed background projection by output-weight sign."""
    fig, axes = plotting.panel_grid(1, 2, size=(5.0, 3.6))
    for (_, sub), lab, color in zip(groups, labels, colors, strict=True):
        for metric, style in [("core_norm", "-"), ("bg_norm", "--")]:
            steps, mean, ci = tables.curve_stats(sub, metric)
            plotting.band(
                axes[0][0],
                steps,
                mean,
                ci,
                label=f"{lab} {metric.split('_')[0]}",
                quantity=metric,
                color=color,
                linestyle=style,
            )
        if "curve_bg_signed_pos" in sub and sub["curve_bg_signed_pos"].notna().all():
            for metric, style, name in [("bg_signed_pos", "-", "a>0"), ("bg_signed_neg", "--", "a<0")]:
                steps, mean, ci = tables.curve_stats(sub, metric)
                plotting.band(axes[0][1], steps, mean, ci, label=f"{lab} {name}", color=color, linestyle=style)
        else:
            steps, mean, ci = tables.curve_stats(sub, "bg_signed")
            plotting.band(axes[0][1], steps, mean, ci, label=lab, color=color)
    plotting.style_axes(
        axes[0][0], "iteration", "mean per-neuron projection norm", "core (solid) vs background (dashed)"
    )
    plotting.style_axes(
        axes[0][1], "iteration", "signed projection on background mean", "split by sign of output weight a"
    )
    return fig


def _asymmetry_figure(groups: list):
    """Activation asymmetry at the end of training, split by sign of the output weight."""
    cols = min(len(groups), 3)
    fig, axes = plotting.panel_grid((len(groups) + cols - 1) // cols, cols, size=(3.6, 2.8))
    for i, (key, sub) in enumerate(groups):
        ax = axes[i // cols][i % cols]
        asym = np.concatenate([np.asarray(v) for v in sub.asymmetry])
        title = plotting.label(dict(zip(COMBO, key, strict=True)), COMBO)
        if "out_sign" in sub and sub.out_sign.notna().all():
            sign = np.concatenate([np.asarray(v) for v in sub.out_sign])
            bins = np.linspace(-1, 1, 41)
            ax.hist(asym[sign > 0], bins=bins, alpha=0.6, label="a > 0")
            ax.hist(asym[sign < 0], bins=bins, alpha=0.6, label="a < 0")
            title += f"  corr={sub.asym_corr.mean():.2f}"
        else:
            ax.hist(asym, bins=40)
        plotting.style_axes(ax, "P(active|y=+1) - P(active|y=-1)", "neurons", title, fontsize=8)
    plotting.hide_unused(axes, len(groups))
    return fig


def _background_figure(groups: list, labels: list[str]):
    colors = plotting.colors(len(groups))
    """Background projection per combination (the activation / loss comparison)."""
    fig, axes = plotting.panel_grid(1, 2, size=(5.0, 3.6))
    for (_, sub), lab, color in zip(groups, labels, colors, strict=True):
        for j, metric in enumerate(["bg_norm", "bg_signed"]):
            steps, mean, ci = tables.curve_stats(sub, metric)
            plotting.band(axes[0][j], steps, mean, ci, label=lab, quantity=metric, color=color)
    plotting.style_axes(axes[0][0], "iteration", "background projection norm")
    plotting.style_axes(axes[0][1], "iteration", "signed background-mean projection")
    return fig
