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
    np.testing.assert_allclose(heights, acc[full])  # bars, not a line across sparse bins
    assert not [line for line in top.get_lines() if len(line.get_xdata()) > 2]
    assert [p.get_height() for p in bottom.containers[0]] == count.tolist()
    printed = [t.get_text() for t in bottom.texts]  # the count of every non-empty bin
    assert sorted(int(t) for t in printed if t) == sorted(count[full].tolist())
    assert f"{metrics.ece(Y, P, n_bins=5):.3f}" in top.get_title()
    assert fig.legends and not top.get_legend()  # legend off the bars


def test_reliability_of_several_models_shares_axes():
    fig = plots.plot_reliability(Y, {"a": P, "b": P[:, ::-1]}, n_bins=5)
    assert len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes[:2]]
    assert titles[0].startswith("a: ECE") and titles[1].startswith("b: ECE")


def test_confusion_is_normalised_with_counts_colorbar_and_accuracy(tmp_path):
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 1, 0])
    fig = plots.plot_confusion(y, pred, title="toy", path=tmp_path / "c.png")
    ax, bar = fig.axes
    rates = ax.get_images()[0].get_array()
    np.testing.assert_allclose(rates.sum(axis=1), 1.0)  # per true class
    np.testing.assert_allclose(rates[0], [2 / 3, 1 / 3, 0])
    assert bar.get_ylabel() == "fraction of the true class"
    texts = {(t.get_position(), t.get_text()): t.get_color() for t in ax.texts}
    assert texts[((0, 0), "2")] == "white" and texts[((1, 0), "1")] == "black"
    assert ((2, 0), "0") not in texts  # empty cells stay blank
    assert "accuracy 66.7%" in ax.get_title()
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG_MAGIC


def test_learning_curve_marks_passes_and_noise_floor():
    seen = np.arange(1, 7) * 50
    fig = plots.plot_learning_curve(
        seen,
        np.linspace(0.5, 0.1, 6),
        ylabel="test RMSE",
        pass_length=100,
        references={"noise floor (noise sd 0.1)": 0.1},
        title="sine-relu on sine-1d",
    )
    (ax,) = fig.axes
    vertical = [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert vertical == [100, 200]  # the ends of passes 1 and 2 (300 is the end of training)
    floor = [line for line in ax.get_lines() if line.get_label().startswith("noise floor")]
    assert floor and floor[0].get_ydata()[0] == 0.1
    assert ax.get_title() == "sine-relu on sine-1d"


def test_fit_1d_draws_band_mean_truth_and_data(tmp_path):
    x = np.linspace(-1, 1, 20)[::-1]  # unsorted input is sorted for drawing
    mean = np.sin(3 * x)
    upper = mean + np.where(np.abs(x) > 0.5, 50.0, 0.2)  # widens far outside the data
    fig = plots.plot_fit_1d(
        x,
        mean,
        mean - 0.2,
        upper,
        x_obs=x[5:15],
        y_obs=mean[5:15],
        truth=mean,
        train_range=(-0.5, 0.5),
        xlabel="x (m)",
        path=tmp_path / "f.png",
    )
    (ax,) = fig.axes
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), np.sort(x))
    np.testing.assert_allclose(line.get_ydata(), np.sin(3 * np.sort(x)))
    assert len(ax.get_lines()) == 2  # mean and truth
    assert len(ax.collections) == 2  # band and scatter
    assert ax.get_xlim() == (-1.0, 1.0)  # the grid, beyond the shaded training range
    assert len(ax.patches) == 1 and ax.get_xlabel() == "x (m)"
    assert ax.get_ylim()[1] < 5  # the wide band leaves the axes instead of squashing the fit
    assert fig.legends and not ax.get_legend()  # the legend is outside the data
    assert (tmp_path / "f.png").read_bytes()[:8] == PNG_MAGIC


def test_fit_2d_labelled_colorbars_points_only_on_the_mean(tmp_path):
    x1, x2 = np.linspace(-3, 3, 30), np.linspace(-3, 3, 20)
    g1, g2 = np.meshgrid(x1, x2)
    truth = np.sin(g1) * np.cos(g2)
    std = 0.1 + 0.05 * (g1**2 + g2**2)
    obs = np.random.default_rng(0).uniform(-2, 2, (50, 2))
    fig = plots.plot_fit_2d(
        x1, x2, truth + 0.01, std, truth=truth, x_obs=obs, train_box=(-2, 2, -2, 2), zlabel="y"
    )
    maps = [ax for ax in fig.axes if ax.get_title()]
    bars = [ax for ax in fig.axes if not ax.get_title()]
    assert [ax.get_title() for ax in maps] == [
        "true function",
        "predictive mean",
        "|mean - truth|",
        "predictive sd",
    ]
    assert [b.get_ylabel() for b in bars] == ["y", "y", "|error| of y", "predictive sd of y"]
    assert maps[0].collections[0].get_clim() == maps[1].collections[0].get_clim()  # one scale
    scatters = [len(ax.collections) for ax in maps]
    assert scatters == [1, 2, 1, 1]  # the training points only on the mean map
    assert all(len(ax.patches) == 1 for ax in maps)  # the training range outlined
    assert maps[0].get_xlim()[0] < -3 and maps[0].get_xlim()[1] > 3  # the whole grid shown
    with pytest.raises(ValueError, match="std must have shape"):
        plots.plot_fit_2d(x1, x2, truth, std.T)


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
