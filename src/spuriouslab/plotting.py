"""Plot helpers in one place: panels, labels, axis styling, and bands that respect the quantity.

A band is the mean over seeds with its 95% interval; :func:`band` clips it to the range of the quantity it
shows (an accuracy stays in [0, 1], a loss or a norm stays >= 0), because with few seeds a t-interval can
reach far outside it.  Figures are returned to the caller; the store saves them (PNG and PDF by default,
``$SPURIOUSLAB_FIGURE_FORMATS``: :func:`spuriouslab.runtime.figure_formats`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

import matplotlib

matplotlib.use("Agg")
# every text is shown literally: a user's name such as "$\foo$" (an OOD folder, a run label) is a name, not TeX
matplotlib.rcParams["text.parse_math"] = False
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import ticker  # noqa: E402

# Range of a quantity, by the last part of its name (``test_acc`` -> ``acc``)
BOUNDS: dict[str, tuple[float, float]] = {
    "acc": (0.0, 1.0),
    "accuracy": (0.0, 1.0),
    "fraction": (0.0, 1.0),
    "loss": (0.0, math.inf),
    "mse": (0.0, math.inf),
    "norm": (0.0, math.inf),
    "seconds": (0.0, math.inf),
    "change": (0.0, math.inf),
    "border": (0.0, 1.0),
    # the coloured task's records, named by their test set rather than their kind
    "acc_id": (0.0, 1.0),
    "acc_indep": (0.0, 1.0),
    "acc_reversed": (0.0, 1.0),
    "colour_flip": (0.0, 1.0),
    "reversed_drop": (-1.0, 1.0),
}


def bounds_for(quantity: str | None) -> tuple[float, float]:
    """The range of a quantity named like ``test_acc``, ``id_loss`` or ``bg_norm`` (by its last part), or named
    exactly in :data:`BOUNDS` (``acc_reversed``); unbounded otherwise."""
    if not quantity:
        return (-math.inf, math.inf)
    return BOUNDS.get(quantity.rsplit("_", 1)[-1], BOUNDS.get(quantity, (-math.inf, math.inf)))


def band(ax, x, mean, ci, label=None, quantity: str | None = None, **kw):
    """A line with its 95% interval as a shaded band, clipped to the range of ``quantity``."""
    line = ax.plot(x, mean, label=label, **kw)[0]
    lo, hi = bounds_for(quantity)
    mean, ci = np.asarray(mean, dtype=float), np.asarray(ci, dtype=float)
    ax.fill_between(
        x, np.clip(mean - ci, lo, hi), np.clip(mean + ci, lo, hi), color=line.get_color(), alpha=0.18, linewidth=0
    )
    return line


def colors(n: int) -> list:
    """``n`` distinct line colours (tab10, then viridis beyond ten)."""
    if n <= 10:
        return [plt.cm.tab10(i) for i in range(n)]
    return list(plt.cm.viridis(np.linspace(0, 0.95, n)))


def bar_errors(values, ci, quantity: str | None = None) -> np.ndarray:
    """Asymmetric error-bar lengths (2, n) for bars ``values`` +- ``ci``, clipped to the quantity's range."""
    lo, hi = bounds_for(quantity)
    v, c = np.asarray(values, dtype=float), np.nan_to_num(np.asarray(ci, dtype=float))
    return np.stack([np.minimum(c, np.maximum(v - lo, 0)), np.minimum(c, np.maximum(hi - v, 0))])


def panel_grid(n_rows: int, n_cols: int, size=(4.2, 3.2)):
    fig, axes = plt.subplots(
        max(1, n_rows),
        max(1, n_cols),
        figsize=(size[0] * max(1, n_cols), size[1] * max(1, n_rows)),
        squeeze=False,
        layout="constrained",
    )
    return fig, axes


def figure(size=(4.6, 4.0)):
    """One panel."""
    return plt.subplots(figsize=size)


def label(values: Mapping, keys: Iterable[str]) -> str:
    """A legend label for the settings ``keys`` of a line: names bare, numbers as ``key=value``."""
    parts = []
    for k in keys:
        v = values[k]
        parts.append(
            f"{k}={v:g}"
            if isinstance(v, float | np.floating | int | np.integer) and not isinstance(v, bool)
            else str(v)
        )
    return ", ".join(parts)


def style_axes(
    ax,
    xlabel: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    logx: bool = False,
    legend: bool = True,
    fontsize: int = 9,
) -> None:
    """Labels, a light grid, an optional log x axis and a small legend (only when there are labelled lines)."""
    if logx:
        ax.set_xscale("log")
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=fontsize)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6 if len(ax.get_legend_handles_labels()[0]) > 6 else 7)


def hide_unused(axes, used: int) -> None:
    """Turn off the panels after the first ``used`` of a grid."""
    flat = np.asarray(axes).ravel()
    for ax in flat[used:]:
        ax.axis("off")


_SUPERSCRIPT = str.maketrans(
    "0123456789-\u2212+", "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079\u207b\u207b\u207a"
)


class PlainLogFormatter(ticker.LogFormatterSciNotation):
    """Matplotlib's log-axis labels (``10^{-4}``, ``2 x 10^{-4}``) as plain text with Unicode superscripts
    (10⁻⁴, 2×10⁻⁴): with ``text.parse_math`` off (user names are shown literally) its mathtext labels would be
    printed as TeX source."""

    def __call__(self, x, pos=None) -> str:
        text = super().__call__(x, pos)
        text = re.sub(r"^\$\\mathdefault\{(.*)\}\$$", r"\1", text).replace("\\times", "\u00d7")
        return re.sub(r"\^\{([^}]*)\}", lambda m: m.group(1).translate(_SUPERSCRIPT), text)


def plain_log_labels(fig) -> None:
    """Every log axis of ``fig`` labelled by :class:`PlainLogFormatter` (same ticks, same choice of labels)."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for get, put in (
                (axis.get_major_formatter, axis.set_major_formatter),
                (axis.get_minor_formatter, axis.set_minor_formatter),
            ):
                fmt = get()
                if isinstance(fmt, ticker.LogFormatterMathtext) and not isinstance(fmt, PlainLogFormatter):
                    put(
                        PlainLogFormatter(
                            base=fmt._base,  # type: ignore[attr-defined]  # private, not in matplotlib's stubs
                            labelOnlyBase=fmt.labelOnlyBase,
                            minor_thresholds=fmt.minor_thresholds,
                            linthresh=fmt._linthresh,  # type: ignore[attr-defined]  # private, as _base
                        )
                    )


def save_figure(fig, directory, name: str, writer=None) -> list:
    """Write ``name``.png and ``name``.pdf (the formats :func:`~spuriouslab.runtime.figure_formats` names) into
    ``directory`` and close the figure.  ``writer(path, write)``,
    when given, performs each write (the store passes its atomic writer).  Log axes get plain-text labels
    (:func:`plain_log_labels`)."""
    from pathlib import Path

    from spuriouslab.runtime import figure_formats

    plain_log_labels(fig)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in figure_formats():
        path = directory / f"{name}.{ext}"

        def write(target, ext=ext):
            fig.savefig(target, format=ext, dpi=130, bbox_inches="tight")

        if writer is None:
            write(path)
        else:
            writer(path, write)
        paths.append(path)
    plt.close(fig)
    return paths


def comparison_figure(table, by: str, panels: list[tuple[str, str]], title: str, baseline: str | None = None):
    """Bars side by side: one panel per ``(metric, panel title)`` of ``panels``, one bar per row of ``table`` (an
    aggregate with ``<metric>`` and ``<metric>_ci`` columns, one row per value of ``by``), with the 95% interval
    as error bars; the ``baseline`` row's value is drawn as a dotted line across the panel.  Metrics a table
    lacks are left out."""
    panels = [(m, t) for m, t in panels if m in table]
    fig, axes = panel_grid(1, max(1, len(panels)), size=(3.3, 3.4))
    names = [str(v) for v in table[by]]
    palette = colors(len(names))
    for ax, (metric, panel_title) in zip(axes[0], panels, strict=False):
        values, ci = table[metric].to_numpy(dtype=float), table[f"{metric}_ci"].to_numpy(dtype=float)
        ax.bar(range(len(names)), values, color=palette, yerr=bar_errors(values, ci, metric), capsize=3)
        if baseline is not None and baseline in names:
            ax.axhline(values[names.index(baseline)], color="0.3", linestyle=":", linewidth=1)
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        style_axes(ax, "", metric, panel_title, fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig
