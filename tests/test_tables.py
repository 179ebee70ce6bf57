import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spuriouslab import plotting
from spuriouslab.tables import aggregate, markdown_table, mean_ci


def test_mean_ci_is_the_t_interval():
    v = np.array([1.0, 2.0, 4.0])
    mean, ci = mean_ci(v)
    assert mean == pytest.approx(7 / 3)
    sd = np.sqrt(((v - 7 / 3) ** 2).sum() / 2)
    assert ci == pytest.approx(4.302652729911275 * sd / math.sqrt(3))  # t_{0.975, 2}
    assert stats.t.ppf(0.975, 2) == pytest.approx(4.302652729911275)
    m, c = mean_ci(np.array([[1.0, 5.0], [3.0, 5.0]]), axis=0)  # per column; a constant column has width 0
    np.testing.assert_allclose(m, [2.0, 5.0])
    assert c[1] == 0 and c[0] == pytest.approx(12.706204736174696 * math.sqrt(2) / math.sqrt(2))
    m1, c1 = mean_ci(np.array([3.5]))
    assert m1 == 3.5 and c1 == 0


def test_aggregate_groups_counts_and_skips_missing():
    df = pd.DataFrame(
        {
            "model": ["rf", "rf", "ntk", "ntk", "ntk"],
            "n": [10, 10, 10, 10, 10],
            "acc": [0.5, 0.7, 0.9, np.nan, 0.7],
            "x": ["a", "b", "c", "d", "e"],
        }
    )
    agg = aggregate(df.rename(columns={"n": "n_train"}), ["model", "n_train"], ["acc", "missing", "x"])
    rf = agg[agg.model == "rf"].iloc[0]
    ntk = agg[agg.model == "ntk"].iloc[0]
    assert rf.n == 2 and rf.acc == pytest.approx(0.6) and rf.acc_ci == pytest.approx(mean_ci(np.array([0.5, 0.7]))[1])
    assert ntk.n == 3 and ntk.acc == pytest.approx(0.8)  # the NaN seed does not enter the mean
    assert math.isnan(rf.x) and "missing" not in agg  # a non-numeric metric is NaN, an absent one left out
    table = markdown_table(agg, ["model", "n", "acc", "absent"])
    assert table.splitlines()[0] == "| model | n | acc |" and "| ntk | 3 | 0.8 |" in table


def test_bands_stay_inside_the_quantity_range():
    fig, ax = plotting.figure()
    plotting.band(ax, [1, 2, 3], [0.95, 0.5, 0.05], [0.5, 2.0, 0.5], quantity="test_acc")
    plotting.band(ax, [1, 2, 3], [0.1, 0.2, 0.3], [1.0, 1.0, 1.0], quantity="id_loss")
    plotting.band(ax, [1, 2, 3], [0.1, 0.2, 0.3], [1.0, 1.0, 1.0], quantity="bg_signed")
    acc, loss, free = [c.get_paths()[0].vertices[:, 1] for c in ax.collections]
    assert acc.min() >= 0 and acc.max() <= 1 and acc.max() == 1 and acc.min() == 0
    assert loss.min() == 0 and loss.max() == pytest.approx(1.3)
    assert free.min() == pytest.approx(-0.9)
    assert plotting.bounds_for("spurious_acc") == (0, 1) and plotting.bounds_for("alignment_mean") == (
        -math.inf,
        math.inf,
    )
    assert plotting.bounds_for("acc_reversed") == (0, 1) and plotting.bounds_for("colour_flip") == (0, 1)
    assert plotting.bounds_for("reversed_drop") == (-1, 1) and plotting.bounds_for("acc_colour_gap")[0] == -math.inf
    errors = plotting.bar_errors([0.05, 0.9], [0.2, 0.2], "acc_reversed")  # the whiskers stop at 0 and 1
    assert errors[0].tolist() == pytest.approx([0.05, 0.2]) and errors[1].tolist() == pytest.approx([0.2, 0.1])
    matplotlib.pyplot.close(fig)


def test_labels_and_axis_styling():
    assert (
        plotting.label({"model": "rf", "alpha": 0.5, "n_train": 100}, ["model", "alpha", "n_train"])
        == "rf, alpha=0.5, n_train=100"
    )
    fig, ax = plotting.figure()
    ax.plot([1, 10], [1, 2], label="a")
    plotting.style_axes(ax, "N", "accuracy", "title", logx=True)
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "N" and ax.get_legend() is not None
    matplotlib.pyplot.close(fig)
