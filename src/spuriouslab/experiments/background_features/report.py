"""Background-features report, from records alone: padded vs control (mean and 95% interval over seeds) for
accuracy under each border colour, border sensitivity of the representation and the logits, Grad-CAM mass on the
border, and the colours of the feature visualizations; the feature grids side by side, Grad-CAM examples and the
training curves."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from spuriouslab import plotting, tables
from spuriouslab.experiments.background_features.config import model_name
from spuriouslab.experiments.base import Report
from spuriouslab.records import decode_array


def _grid(images: np.ndarray, cols: int = 8) -> np.ndarray:
    """(N, C, H, W) uint8 -> one (rows * H, cols * W, C) mosaic with 1-pixel white gaps."""
    n, c, h, w = images.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + 1), cols * (w + 1), c), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        out[r * (h + 1) : r * (h + 1) + h, k * (w + 1) : k * (w + 1) + w] = images[i].transpose(1, 2, 0)
    return out


def _images(row, key: str, channels: tuple[int, ...]) -> np.ndarray | None:
    """A record's encoded image array (``vis``: (N, C, H, W); Grad-CAM maps (N, H, W), images (N, H, W, C)),
    or None with a warning naming the record when it is missing or malformed (a hand-edited record): the report
    is drawn without it."""
    where = f"record (pipeline={getattr(row, 'pipeline', '?')}, seed={getattr(row, 'seed', '?')})"
    try:
        a = decode_array(getattr(row, key))
        if a.ndim not in channels or a.size == 0 or a.dtype != np.uint8:
            raise ValueError(f"an array of shape {a.shape} and dtype {a.dtype}")
    except (ValueError, AttributeError) as exc:
        warnings.warn(f"{where}: {key} is not usable ({exc}); not drawn", stacklevel=2)
        return None
    return a


def metric_columns(df: pd.DataFrame, colours: list[str]) -> list[str]:
    cols = ["acc_plain", *[f"acc_{c}" for c in colours]]
    cols += [f"repr_change_{c}" for c in colours] + [f"logit_change_{c}" for c in colours]
    cols += ["gradcam_border_plain", *[f"gradcam_border_{c}" for c in colours]]
    cols += [
        "acc_colour_gap",
        "vis_border_axis_abs",
        "vis_border_axis",
        "vis_redness",
        "vis_near_border_colour",
        "vis_hue",
        "vis_gain",
    ]
    return [c for c in cols if c in df]


def summary_table(df: pd.DataFrame, by: list[str], colours: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    metrics = metric_columns(df, colours)
    agg = tables.aggregate(df, by, metrics)
    shown = agg[[*by, "n"]].copy()
    for m in metrics:
        shown[m] = [f"{a:.3f} ± {b:.3f}" for a, b in zip(agg[m], agg[m + "_ci"], strict=True)]
    return agg, shown


def reliance_figure(agg: pd.DataFrame, by: str, colours: list[str], colour_name: str):
    """Bars per row of ``agg`` (one per value of ``by``): accuracy per border, representation change, Grad-CAM
    border mass."""
    rows = list(agg[by])
    panels = [
        ("acc", "accuracy", ["plain", *colours]),
        ("repr_change", "relative change of the representation", colours),
        ("gradcam_border", "Grad-CAM mass on the border", ["plain", *colours]),
    ]
    fig, axes = plotting.panel_grid(1, 3, size=(4.4, 3.6))
    for ax, (prefix, ylabel, names) in zip(axes[0], panels, strict=True):
        xs = np.arange(len(names))
        width = 0.8 / len(rows)
        for j, key in enumerate(rows):
            row = agg[agg[by] == key].iloc[0]
            vals = [row.get(f"{prefix}_{c}", np.nan) for c in names]
            errs = [row.get(f"{prefix}_{c}_ci", 0.0) for c in names]
            quantity = {"acc": "acc", "repr_change": "change", "gradcam_border": "border"}[prefix]
            ax.bar(
                xs + (j - (len(rows) - 1) / 2) * width,
                vals,
                width,
                yerr=plotting.bar_errors(vals, errs, quantity),
                capsize=2,
                label=str(key),
            )
        ax.set_xticks(xs, [n.replace("train_colour", f"train ({colour_name})") for n in names], rotation=25, fontsize=7)
        if prefix != "repr_change":
            ax.set_ylim(0, 1.05)
        plotting.style_axes(ax, "test images with a frame of", ylabel)
    return fig


def report(cfg, df: pd.DataFrame) -> Report:
    bad = df[df.status != "ok"]
    df = df[df.status == "ok"]
    colours = ["train_colour", *cfg.other_colours]
    if df.empty:
        return Report(
            "# Background features in deep networks\n\nEvery run diverged:\n\n"
            + tables.markdown_table(bad, ["pipeline", "seed", "error"])
            + "\n"
        )
    agg, shown = summary_table(df, ["pipeline"], colours)
    pipes = list(agg.pipeline)
    figures = {}
    vit = cfg.model == "vit"
    name = model_name(cfg)

    # 1. feature visualizations, padded and control side by side (the first seed of each)
    fig, axes = plotting.panel_grid(1, len(pipes), size=(5.0, 5.4))
    for j, pipe in enumerate(pipes):
        row = df[df.pipeline == pipe].sort_values("seed").iloc[0]
        vis = _images(row, "vis", (4,))
        if vis is not None and vis.shape[1] in (1, 3):
            axes[0][j].imshow(_grid(vis))
        unsigned = getattr(row, "vis_border_axis_abs", math.nan)  # records written before the measure existed
        axes[0][j].set_title(f"{pipe}: |border-colour axis| {unsigned:.3f}, redness {row.vis_redness:+.3f}", fontsize=8)
        axes[0][j].axis("off")
    what = "the last block's MLP units (token mean)" if vit else "the last convolution's channels"
    fig.suptitle(
        f"Activation maximization of {what} ({name}, seed {int(df.seed.min())}); training border {cfg.colour}",
        fontsize=9,
    )
    figures["feature_grids"] = fig

    # 2. the numbers: accuracy per border colour, representation change, Grad-CAM border mass
    fig = reliance_figure(agg, "pipeline", colours, cfg.colour)
    fig.suptitle("Padded vs control: mean and 95% interval over seeds", fontsize=9)
    figures["border_reliance"] = fig

    # 3. Grad-CAM examples on test images framed with the training colour
    fig, axes = plotting.panel_grid(len(pipes), 8, size=(1.3, 1.4))
    for i, pipe in enumerate(pipes):
        row = df[df.pipeline == pipe].sort_values("seed").iloc[0]
        cams, imgs = _images(row, "cam_examples", (3,)), _images(row, "cam_images", (4,))
        if cams is None or imgs is None or cams.shape[1:] != imgs.shape[1:3]:
            continue
        for k in range(min(8, len(cams), len(imgs))):
            axes[i][k].imshow(imgs[k])
            axes[i][k].imshow(
                cams[k], cmap="jet", alpha=0.45, extent=(-0.5, imgs.shape[2] - 0.5, imgs.shape[1] - 0.5, -0.5)
            )
            axes[i][k].axis("off")
        axes[i][0].set_title(pipe, fontsize=8, loc="left")
    figures["gradcam_examples"] = fig

    # 4. training curves
    fig, axes = plotting.panel_grid(1, 2, size=(4.4, 3.4))
    for pipe, color in zip(pipes, plotting.colors(len(pipes)), strict=True):
        sub = df[df.pipeline == pipe]
        epochs = np.asarray(sub.curve_epoch.iloc[0])
        for j, key in enumerate(["train_loss", "test_acc"]):
            vals = np.stack([np.asarray(v, dtype=float) for v in sub[f"curve_{key}"]])
            mean, ci = tables.mean_ci(vals)
            plotting.band(axes[0][j], epochs, mean, ci, label=pipe, quantity=key, color=color, marker="o", ms=3)
    plotting.style_axes(axes[0][0], "epoch", "training loss (last batch)")
    plotting.style_axes(axes[0][1], "epoch", "test accuracy (plain images)")
    figures["training"] = fig

    optimizer = {"sgd": "SGD", "adamw": "AdamW"}[cfg.optimizer]
    lines = [
        "# Background features in deep networks",
        "",
        f"data={df.data.iloc[0]}, {name} ({int(df.parameters.iloc[0])} parameters), "
        f"{int(df.n_train.iloc[0])} training images, {cfg.epochs} epochs, {optimizer} lr {cfg.lr:g}; "
        f"padded = border of {int(df.border.iloc[0])} px in {cfg.colour}, random crop, flip; "
        f"test frames of {int(df.eval_border.iloc[0])} px"
        + (", adversarial training" if cfg.adversarial else "")
        + ".  Mean ± 95% interval over seeds:",
        "",
        tables.markdown_table(
            shown.T.reset_index()
            .rename(columns=lambda c: str(c))
            .pipe(lambda t: t.set_axis(["metric", *[str(p) for p in shown.pipeline]], axis=1).iloc[2:]),
            None,
        ),
        "",
        "acc_X: accuracy on test images framed with X; repr_change_X / logit_change_X: relative change of the "
        "penultimate representation / logits from plain to framed; gradcam_border_X: fraction of Grad-CAM "
        "mass on the frame; acc_colour_gap = acc_train_colour minus the mean over the other colours; vis_*: "
        "colours of the channel visualizations (border_axis = mean chroma along the training colour's chroma "
        "direction, + toward it, - toward its complement; border_axis_abs = its absolute value, the claim's "
        "metric, since a channel raised by the complement carries the colour axis as well; redness = R - "
        "(G+B)/2; near_border_colour = fraction of pixels near the training colour); vis_gain = activation "
        "gained by the visualization.",
        "",
        "Scale: the paper's evidence is an adversarially trained ResNet-32 on all 50000 CIFAR-10 images for "
        "250 epochs (preset=paper, a GPU); a verdict here speaks for this scale only.",
        "",
        *(
            [
                "ViT: Grad-CAM is read on the patch embedding (the one layer whose tokens are exactly the patches; "
                "each patch's value covers its pixels), the same positive predicted-class mass fraction as the "
                "ResNet's; the visualizations maximize the token mean of the last block's MLP units (after the "
                "GELU), the transformer's counterpart of the last convolution's channels.",
                "",
            ]
            if vit
            else []
        ),
        "Figures: " + ", ".join(f"figures/{k}" for k in figures) + " (PNG, PDF).",
    ]
    if len(bad):
        lines += ["", f"{len(bad)} run(s) diverged:", "", tables.markdown_table(bad, ["pipeline", "seed", "error"])]
    return Report("\n".join(lines) + "\n", figures)
