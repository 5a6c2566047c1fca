"""Plots return figures with the expected content and write PNG files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from bayeslayers import metrics, plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
Y = np.array([0, 1, 1, 0])
P = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.55, 0.45]])


def test_reliability_bars_are_bin_accuracies(tmp_path):
    path = tmp_path / "rel.png"
    fig = plots.plot_reliability(Y, P, n_bins=5, title="toy", path=path)
    assert isinstance(fig, Figure)
    assert path.read_bytes()[:8] == PNG_MAGIC
    top, bottom = fig.axes
    _, acc, count = metrics.reliability_curve(Y, P, n_bins=5)
    full = count > 0
    heights = [p.get_height() for p in top.containers[0]]
    np.testing.assert_allclose(heights, acc[full])
    assert [p.get_height() for p in bottom.containers[0]] == count.tolist()
    assert f"{metrics.ece(Y, P, n_bins=5):.3f}" in top.get_title()


def test_fit_1d_draws_band_mean_truth_and_data(tmp_path):
    x = np.linspace(-1, 1, 20)[::-1]  # unsorted input is sorted for drawing
    mean = np.sin(3 * x)
    fig = plots.plot_fit_1d(
        x, mean, mean - 0.2, mean + 0.2, x_obs=x, y_obs=mean, truth=mean, path=tmp_path / "f.png"
    )
    (ax,) = fig.axes
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), np.sort(x))
    np.testing.assert_allclose(line.get_ydata(), np.sin(3 * np.sort(x)))
    assert len(ax.get_lines()) == 2  # mean and truth
    assert len(ax.collections) == 2  # band and scatter
    assert (tmp_path / "f.png").read_bytes()[:8] == PNG_MAGIC


def test_comparison_plot(tmp_path):
    table = pd.DataFrame(
        {"elpd_test": [-10.0, -12.0], "se": [1.0, 1.5], "elpd_diff": [0.0, 2.0], "dse": [0, 0.5]},
        index=["a", "b"],
    )
    fig = plots.plot_comparison(table, path=tmp_path / "c.png")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: plots.plot_fit_1d([0, 1], [0, 1], [0], [1, 2]), "lower must have 2"),
        (lambda: plots.plot_fit_1d([0, 1], [0, 1], [1, 1], [0, 2]), "lower must be <="),
        (lambda: plots.plot_fit_1d([[0, 1]], [0], [0], [0]), "1-D"),
        (lambda: plots.plot_fit_1d([0], [0], [0], [0], x_obs=[0]), "together"),
        (lambda: plots.plot_comparison(pd.DataFrame({"elpd_test": [0.0]})), "missing columns"),
        (lambda: plots.plot_reliability([0], [[0.5, 0.6]]), "sum to 1"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
