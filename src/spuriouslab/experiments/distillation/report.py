"""Distillation report, from records alone: the teacher / student / baseline table (ID and every OOD set, mean and
95% interval over seeds), accuracy bars, the effective-robustness scatter (OOD vs ID), the distillation loss and the
student-teacher fit (MSE, cosine) on ID and OOD inputs over training, and the mechanism: the student's first-layer
weight in the background subspace next to the teacher's (zero by construction) and the baseline's."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spuriouslab import plotting, tables
from spuriouslab.experiments.base import Report
from spuriouslab.experiments.distillation.config import ROLES, DistillationConfig

LABELS = {"teacher": "teacher", "student": "distilled student", "baseline": "baseline (labels)"}


def variants(df: pd.DataFrame) -> pd.Series:
    """The student each record trained: its activation, and its remedy when the records hold several (records
    written before the remedy axis count as no remedy)."""
    remedy = df["remedy"] if "remedy" in df else pd.Series("none", index=df.index)
    if remedy.nunique() <= 1:
        return df.activation.astype(str)
    if df.activation.nunique() <= 1:
        return remedy.astype(str)
    return df.activation.astype(str) + "/" + remedy.astype(str)


def report(cfg: DistillationConfig, df: pd.DataFrame) -> Report:
    bad = df[df.status != "ok"]
    df = df[df.status == "ok"]
    if df.empty:
        return Report(
            "# Representation distillation\n\nEvery seed diverged:\n\n"
            + tables.markdown_table(bad, [c for c in ("activation", "remedy", "seed", "error") if c in bad])
            + "\n"
        )
    df = df.assign(variant=variants(df))
    ood = list(df.ood_sets.iloc[0])
    splits = ["id", *ood]
    acts = list(dict.fromkeys(df.variant))
    table = _accuracy_table(df, acts, splits)
    shown = table.copy()
    for split in [*splits, "ood_mean"]:
        shown[split] = [f"{m:.3f} ± {c:.3f}" for m, c in zip(table[split], table[f"{split}_ci"], strict=True)]
    figures = {
        "accuracy_bars": _accuracy_bars(table, splits, ood),
        "effective_robustness": _robustness_figure(df, acts),
        "distillation_fit": _fit_figure(df, acts, splits),
    }
    mech = "curve_student_bg_norm" in df and df["curve_student_bg_norm"].notna().all()
    if mech:
        figures["mechanism"] = _mechanism_figure(df, acts)
    if "remedy" in df and df.remedy.nunique() > 1:
        figures["remedies"] = remedy_figure(df)
    by = "variant" if len(acts) > 1 else "activation"
    fit_cols = [by, "n", "distill_loss", "fit_mse_id", "fit_mse_ood_mean", "fit_cos_id", "fit_cos_ood_mean"]
    mech_cols = ["student_bg_norm", "baseline_bg_norm", "teacher_bg_norm", "student_core_norm"]
    fit = tables.aggregate(df, [by], [c for c in fit_cols[2:] + mech_cols if c in df])
    built_in = "core-only MLP" if cfg.task == "synthetic" else f"{cfg.encoder} on wide backgrounds"
    lines = [
        "# Representation distillation",
        "",
        f"task={cfg.task}, preset={cfg.preset}, {df.seed.nunique()} seed(s); teacher="
        f"{cfg.teacher or 'built-in (' + built_in + ')'}"
        f", student={cfg.student or 'same architecture, fresh init'}.  Linear-probe accuracy (probe fitted on ID "
        "train features), mean ± 95% interval over seeds:",
        "",
        tables.markdown_table(shown, ["model", "n", *splits, "ood_mean"]),
        "",
        "Student-teacher embedding fit at the end of training (MSE and cosine, on the ID test set and the mean over "
        "OOD sets)" + (" and the first-layer weight norms in the background / core subspaces" if mech else "") + ":",
        "",
        tables.markdown_table(fit, [c for c in fit_cols + mech_cols if c in fit]),
        "",
        *_match_lines(df, splits),
        "Figures: " + ", ".join(f"figures/{k}" for k in figures) + " (PNG, PDF).",
    ]
    if len(bad):
        lines += [
            "",
            f"{len(bad)} seed(s) diverged (left out above):",
            "",
            tables.markdown_table(bad, [c for c in ("activation", "remedy", "seed", "error") if c in bad]),
        ]
    return Report("\n".join(lines) + "\n", figures)


def _match_lines(df: pd.DataFrame, splits: list[str]) -> list[str]:
    """The mechanism in numbers: how closely the student matches its teacher's representation on ID and on each
    OOD set - linear CKA (1 = the same up to rotation and scale) and the relative embedding error (0 = equal) -
    mean ± 95% interval over seeds.  Empty for records written before they were measured."""
    if "cka_id" not in df:
        return []
    rows = []
    several = "teacher" in df and df["teacher"].nunique() > 1
    teachers = df.groupby("teacher", dropna=False, sort=False) if several else [(None, df)]
    for teacher, part in teachers:
        for metric, label in (("cka", "linear CKA with the teacher"), ("relerr", "relative embedding error")):
            row = {"teacher": teacher, "measure": label}
            for split in [*splits, "ood_mean"]:
                mean, ci = tables.mean_ci(part[f"{metric}_{split}"].to_numpy(dtype=float))
                row[split] = f"{float(mean):.3f} ± {float(ci):.3f}"
            rows.append(row)
    first = ["teacher", "measure"] if several else ["measure"]
    return [
        "",
        "The student against its teacher's representation on each set (fits the teacher ID, departs from it OOD "
        "where CKA falls and the error grows):",
        "",
        tables.markdown_table(pd.DataFrame(rows), [*first, *splits, "ood_mean"]),
        "",
    ]


def _accuracy_table(df: pd.DataFrame, acts: list[str], splits: list[str]) -> pd.DataFrame:
    """Rows model (x student variant), columns ID and each OOD set: mean and 95% interval."""
    rows, baselines = [], set()
    for act in acts:
        sub = df[df.variant == act]
        activation = sub.activation.iloc[0]
        for model in ROLES:
            if model == "teacher" and act != acts[0]:
                continue  # one teacher per seed, shared by every student
            if model == "baseline" and activation in baselines:
                continue  # the baseline does not depend on the student's remedy
            baselines.add(activation) if model == "baseline" else None
            row = {
                "model": LABELS[model] + ("" if model == "teacher" or len(acts) == 1 else f" ({act})"),
                "n": len(sub),
            }
            for split in [*splits, "ood_mean"]:
                mean, ci = tables.mean_ci(sub[f"acc_{model}_{split}"].to_numpy(dtype=float))
                row[split], row[f"{split}_ci"] = float(mean), float(ci)
            rows.append(row)
    return pd.DataFrame(rows)


def _accuracy_bars(table: pd.DataFrame, splits: list[str], ood: list[str]):
    """Accuracy per split and model."""
    fig, ax = plotting.figure(size=(max(5.0, 1.1 * len(splits) + 2), 3.8))
    width = 0.8 / len(table)
    xs = np.arange(len(splits))
    for j, (_, row) in enumerate(table.iterrows()):  # the table's index is its range
        vals = [row[s] for s in splits]
        ax.bar(
            xs + (j - (len(table) - 1) / 2) * width,
            vals,
            width,
            yerr=plotting.bar_errors(vals, [row[f"{s}_ci"] for s in splits], "acc"),
            label=row.model,
            capsize=2,
        )
    ax.set_xticks(xs, ["ID", *ood], rotation=20)
    ax.set_ylim(0, 1.05)
    plotting.style_axes(ax, "test set", "linear-probe accuracy", "Probe accuracy (mean and 95% interval over seeds)")
    return fig


def _robustness_figure(df: pd.DataFrame, acts: list[str]):
    """Effective robustness: mean OOD accuracy against ID accuracy, one point per seed and model."""
    fig, ax = plotting.figure(size=(4.4, 4.0))
    for act in acts:
        sub = df[df.variant == act]
        for model, marker in zip(ROLES, ["*", "o", "s"], strict=True):
            if model == "teacher" and act != acts[0]:
                continue
            ax.scatter(
                sub[f"acc_{model}_id"],
                sub[f"acc_{model}_ood_mean"],
                marker=marker,
                s=40 if marker == "*" else 20,
                label=LABELS[model] + ("" if model == "teacher" or len(acts) == 1 else f" ({act})"),
            )
    lim = [0, 1]
    ax.plot(lim, lim, "k:", linewidth=0.7, label="OOD = ID")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    plotting.style_axes(ax, "ID accuracy", "mean OOD accuracy", "Effective robustness (one point per seed)")
    return fig


# the curves' x axis: the trainer's optimizer steps (history["step"]); one step is one epoch only full-batch
STEP = "training step"


def _fit_figure(df: pd.DataFrame, acts: list[str], splits: list[str]):
    """The distillation loss and the student-teacher fit on ID and OOD inputs over training."""
    fig, axes = plotting.panel_grid(1, 3, size=(4.2, 3.4))
    colors = plotting.colors(len(splits))
    for act, style in zip(acts, ["-", "--", ":", "-."] * len(acts), strict=False):
        sub = df[df.variant == act]
        steps, mean, ci = tables.curve_stats(sub, "distill_loss")
        plotting.band(axes[0][0], steps, mean, ci, label=f"{act} train", quantity="loss", linestyle=style)
        for split, color in zip(splits, colors, strict=True):
            for j, metric in [(1, "fit_mse"), (2, "fit_cos")]:
                steps, mean, ci = tables.curve_stats(sub, f"{metric}_{split}")
                plotting.band(
                    axes[0][j],
                    steps,
                    mean,
                    ci,
                    label=f"{act} {split}" if len(acts) > 1 else split,
                    quantity="mse" if metric == "fit_mse" else None,
                    color=color,
                    linestyle=style,
                )
    axes[0][0].set_yscale("log")
    axes[0][1].set_yscale("log")
    plotting.style_axes(axes[0][0], STEP, "distillation loss (MSE)", "Student fitting the teacher")
    plotting.style_axes(axes[0][1], STEP, "MSE to the teacher's embedding", "Fit on ID test and OOD inputs")
    plotting.style_axes(axes[0][2], STEP, "cosine to the teacher's embedding", "Fit on ID test and OOD inputs")
    return fig


def _mechanism_figure(df: pd.DataFrame, acts: list[str]):
    """The mechanism (MLP students): background-subspace weight of the student, the baseline and the teacher."""
    fig, axes = plotting.panel_grid(1, 2, size=(4.6, 3.6))
    for act, color in zip(acts, plotting.colors(len(acts)), strict=True):
        sub = df[df.variant == act]
        for j, space in enumerate(["bg", "core"]):
            for who, style in [("student", "-"), ("baseline", "--")]:
                steps, mean, ci = tables.curve_stats(sub, f"{who}_{space}_norm")
                plotting.band(
                    axes[0][j],
                    steps,
                    mean,
                    ci,
                    label=f"{who} ({act})",
                    quantity="norm",
                    color=color,
                    linestyle=style,
                )
    if "teacher_bg_norm" in df:
        axes[0][0].axhline(float(df.teacher_bg_norm.mean()), color="k", linewidth=1, label="teacher")
    plotting.style_axes(
        axes[0][0],
        STEP,
        "mean per-neuron norm, background subspace",
        "Background weight (teacher: 0 by construction)",
    )
    plotting.style_axes(axes[0][1], STEP, "mean per-neuron norm, core subspace", "Core weight")
    return fig


def remedy_figure(df: pd.DataFrame):
    """Every remedy of the student side by side (ReLU students where there are any): its OOD accuracy, its ID - OOD
    drop, ID accuracy, background-weight growth (synthetic) and training time, mean and 95% interval over seeds,
    the no-remedy value dotted."""
    metrics = ["acc_student_ood_mean", "student_ood_drop", "acc_student_id", "student_bg_growth", "seconds_student"]
    table = tables.remedy_table(df, metrics)
    return plotting.comparison_figure(
        table,
        "remedy",
        [
            ("acc_student_ood_mean", "student OOD accuracy"),
            ("student_ood_drop", "student ID - OOD accuracy"),
            ("acc_student_id", "student ID accuracy"),
            ("student_bg_growth", "background weight: final / initial"),
            ("seconds_student", "student seconds per seed"),
        ],
        "remedies of the student vs none (dotted): mean and 95% interval over seeds",
        baseline="none",
    )
