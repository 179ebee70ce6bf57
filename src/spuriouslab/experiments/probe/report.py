"""Probe report, from its one record: the border-reliance table and figure, and the spurious-border query."""

from __future__ import annotations

import pandas as pd

from spuriouslab import tables
from spuriouslab.experiments.background_features.report import reliance_figure, summary_table
from spuriouslab.experiments.base import Report
from spuriouslab.experiments.probe.config import ProbeConfig


def report(cfg: ProbeConfig, df: pd.DataFrame) -> Report:
    colours = ["train_colour", *cfg.other_colours]
    agg, shown = summary_table(df, ["model"], colours)
    fig = reliance_figure(agg, "model", colours, cfg.colour)
    fig.suptitle(f"{cfg.model} on {cfg.data}: border reliance", fontsize=9)
    row = df.iloc[0]
    table = pd.DataFrame({"metric": [c for c in shown.columns if c not in ("model", "n")]})
    table["value"] = [f"{row[c]:.4g}" for c in table.metric]
    extra = pd.DataFrame(
        {
            "metric": ["train_acc", "spurious_acc", "chance"],
            "value": [f"{row.train_acc:.4g}", f"{row.spurious_acc:.4g}", f"{row.chance:.3g}"],
        }
    )
    lines = [
        f"# Probe: {cfg.model}",
        "",
        f"data={cfg.data}, {int(row.n)} test images, frame {cfg.eval_border} px, training colour {cfg.colour}"
        + (f", checkpoint {cfg.checkpoint}" if cfg.checkpoint else "")
        + ".",
        "",
        tables.markdown_table(pd.concat([table, extra]), ["metric", "value"]),
        "",
        "spurious_acc: each training image's frame with its core zeroed, classified as its label (Bombari & "
        "Mondelli's query).  See background-features for the other columns.  Figure: figures/border_reliance.",
    ]
    return Report("\n".join(lines) + "\n", {"border_reliance": fig})
