"""Memorization-NN report, from records alone: accuracy vs N, training curves, and the table (diverged seeds
listed apart)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from spuriouslab import plotting, tables
from spuriouslab.experiments.base import Report

METRICS = ["train_acc", "test_acc", "spurious_acc", "seconds"]
# the coloured task's remedies (remedy axis): what each changes, in the table and the comparison figure
REMEDY_PANELS = [
    ("acc_reversed", "accuracy, colours reversed"),
    ("reversed_drop", "ID - reversed-colour accuracy"),
    ("worst_group_acc", "worst-group accuracy (indep)"),
    ("colour_flip", "predictions flipped by the colour"),
    ("acc_id", "ID accuracy"),
    ("seconds", "training seconds per seed"),
]


def _lines(agg: pd.DataFrame, extra: list[str]) -> Iterator[tuple[str, pd.DataFrame]]:
    """The rows of each combination of the ``extra`` settings, with its label (`` rho=0.9 remedy=none``)."""
    if not extra:
        yield "", agg
        return
    for combo, part in agg.groupby(extra, sort=False):
        values = combo if isinstance(combo, tuple) else (combo,)
        yield "".join(f" {k}={v}" for k, v in zip(extra, values, strict=True)), part


def _coloured_setting(cfg, ok: pd.DataFrame) -> str:
    """The coloured task's setting as the summary names it: the border, the single rho and remedy (when they do
    not take several values, as rows of the table), so that a one-remedy run still says which remedy it is."""
    if cfg.border_content != "coloured":
        return ""
    parts = [f"border coloured ({' / '.join(cfg.colours)})"]
    for key in ("rho", "remedy"):
        if key in ok and ok[key].nunique() == 1:
            parts.append(f"{key}={ok[key].iloc[0]}")
    return " (" + ", ".join(parts) + ")"


def report(cfg, df: pd.DataFrame) -> Report:
    import matplotlib.pyplot as plt

    if "remedy" not in df:  # records written before the remedy axis: no remedy
        df = df.assign(remedy="none")
    ok = df[df.status == "ok"]
    # settings besides (model, N) that take several values: each its own row and line
    extra = [c for c in ("rho", "remedy") if c in ok and ok[c].nunique() > 1]
    agg = tables.aggregate(ok, ["model", "n_train", *extra], METRICS)
    models = list(dict.fromkeys(ok.model))
    fig, axes = plotting.panel_grid(1, len(models))
    for j, m in enumerate(models):
        ax = axes[0][j]
        for tag, sub in _lines(agg[agg.model == m], extra):
            sub = sub.sort_values("n_train")
            plotting.band(
                ax, sub.n_train, sub.test_acc, sub.test_acc_ci, label=f"test{tag}", quantity="acc", marker="o", ms=3
            )
            plotting.band(
                ax,
                sub.n_train,
                sub.spurious_acc,
                sub.spurious_acc_ci,
                label=f"spurious{tag}",
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
    remedies = None  # the remedy table, once, for the figure and the summary
    if ok.remedy.nunique() > 1 and "acc_reversed" in ok:
        remedies = tables.remedy_table(ok, [m for m, _ in REMEDY_PANELS])
        figures["remedies"] = plotting.comparison_figure(
            remedies,
            "remedy",
            REMEDY_PANELS,
            "remedies on the coloured task vs none (dotted): mean and 95% interval over seeds",
            baseline="none",
        )

    lines = [
        "# Trained networks: spurious-feature memorization",
        "",
        f"data={cfg.data}{_coloured_setting(cfg, ok)}, epochs={cfg.epochs}, batch={cfg.batch_size}, Adam "
        f"lr={cfg.lr:g}, wd={cfg.weight_decay:g}, StepLR({cfg.step_size}, {cfg.gamma:g}).  Spurious accuracy: the "
        "training image's border alone (core zeroed) recalls its label.  Figures: figures/nn_accuracy_vs_n,"
        " figures/nn_curves.",
        "",
        tables.markdown_table(agg, ["model", "n_train", *extra, "n", *METRICS]),
    ]
    coloured = [m for m, _ in REMEDY_PANELS if m in ok and m != "seconds"]
    if coloured:  # the coloured task's own measurements, per row of the table above
        lines += [
            "",
            "The coloured task (accuracy with the colours reversed, the ID - reversed drop, worst-group accuracy on "
            "the independent set, predictions flipped by the colour, ID accuracy):",
            "",
            tables.markdown_table(
                tables.aggregate(ok, ["model", "n_train", *extra], coloured),
                ["model", "n_train", *extra, "n", *coloured],
            ),
        ]
    if remedies is not None:
        lines += [
            "",
            "Remedies on the coloured task (spuriouslab.nets.remedies; every model, rho and N pooled per remedy;"
            " figure: figures/remedies):",
            "",
            tables.markdown_table(remedies, ["remedy", "n", *[m for m, _ in REMEDY_PANELS]]),
        ]
    lines += selection_lines(ok, extra)
    bad = df[df.status != "ok"]
    if len(bad):
        lines += [
            "",
            f"{len(bad)} point(s) diverged:",
            "",
            tables.markdown_table(bad, ["model", "n_train", *extra, "seed", "status", "error"]),
        ]
    return Report("\n".join(lines) + "\n", figures)


# the averages people confuse, each named (docs/remedies.rst), beside the drops of the two failure modes
AVERAGES = [
    "acc_id",
    "acc_indep",
    "group_balanced_acc",
    "worst_group_acc",
    "train_weighted_acc",
    "acc_reversed",
    "acc_novel",
    "reversed_drop",
    "novel_drop",
]
SELECTIONS = [("last epoch", ""), ("worst-group validation", "sel_wg_"), ("worst-class validation", "sel_wc_")]


def selection_lines(ok: pd.DataFrame, extra: list[str]) -> list[str]:
    """With a validation split: every model selection as its own rows (the last epoch, the checkpoint with the
    best worst-group validation accuracy - group labels - and the one with the best worst-class validation
    accuracy - none), each with the named averages; and the (label, colour) group counts of every split."""
    if "sel_wg_worst_group_acc" not in ok:
        return []
    keys = ["model", "n_train", *extra]
    parts = []
    for name, prefix in SELECTIONS:
        cols = {prefix + m: m for m in AVERAGES if prefix + m in ok}
        part = ok[[*keys, "seed", *cols]].rename(columns=cols).assign(selection=name)
        parts.append(part)
    table = tables.aggregate(pd.concat(parts, ignore_index=True), [*keys, "selection"], AVERAGES)
    counts = [c for c in ok.columns if c.startswith("count_")]
    lines = [
        "",
        "Model selection, each rule its own rows (acc_id / acc_indep: mean over samples; group_balanced_acc: mean "
        "over the four (label, colour) groups of the independent set; worst_group_acc: its lowest group; "
        "train_weighted_acc: the groups weighted by their training proportions, the 'mean accuracy' of the DFR and "
        "JTT code):",
        "",
        tables.markdown_table(table, [*keys, "selection", "n", *[m for m in AVERAGES if m in table]]),
    ]
    if counts:
        mean_counts = ok.groupby(keys, sort=True)[counts].mean().reset_index()
        lines += [
            "",
            "(label, colour) group counts per split (train, validation, independent test), mean over seeds:",
            "",
            tables.markdown_table(mean_counts, [*keys, *counts]),
        ]
    return lines
