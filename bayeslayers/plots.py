r"""Plots of predictive uncertainty: reliability diagram, 1-D fit with bands, variant comparison.

Every function takes plain data, draws on a new ``matplotlib.figure.Figure`` attached to the
Agg canvas (no pyplot, no display, no global state), saves it as a PNG when ``path`` is given
and returns the figure.

* :func:`plot_reliability`: top-label accuracy against confidence per bin
  (:func:`bayeslayers.metrics.reliability_curve`), with the ECE and the bin counts; a
  calibrated classifier follows the diagonal.
* :func:`plot_fit_1d`: predictive mean and central interval of a 1-D regression (e.g. from
  ``Network.predict_quantiles``) with the data and, if known, the true function.
* :func:`plot_comparison`: a :func:`bayeslayers.diagnostics.compare` table, drawn like
  ``az.plot_compare``: held-out elpd with its standard error, and the difference to the best
  variant with the standard error of the paired difference.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bayeslayers import metrics

__all__ = ["plot_comparison", "plot_fit_1d", "plot_reliability"]


def _figure(width: float, height: float, rows: int = 1, **gridspec) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, squeeze=False, gridspec_kw=gridspec or None)[:, 0]
    return fig, list(axes)


def _finish(fig: Figure, path: str | os.PathLike | None) -> Figure:
    if path is not None:
        fig.savefig(path, format="png", dpi=120)
    return fig


def _vector(x, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one input, one output), got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} must have {n} values (one per x), got {arr.shape[0]}")
    return arr


def plot_reliability(
    y,
    proba,
    *,
    n_bins: int = 15,
    classes=None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    r"""Reliability diagram of the top label, with the expected calibration error.

    Each bar is a confidence bin :math:`B_b`: its height is the accuracy
    :math:`\operatorname{acc}(B_b)`, the hatched red part the gap to the mean confidence
    :math:`\operatorname{conf}(B_b)`; the lower panel counts the points per bin.

    Parameters
    ----------
    y, proba, n_bins, classes
        As in :func:`bayeslayers.metrics.reliability_curve`.
    title : str, optional
        Title; the ECE is appended.
    path : path-like, optional
        Save the figure there as a PNG.
    """
    conf, acc, count = metrics.reliability_curve(y, proba, n_bins=n_bins, classes=classes)
    ece = metrics.ece(y, proba, n_bins=n_bins, classes=classes)
    fig, (top, bottom) = _figure(5.0, 5.5, rows=2, height_ratios=[3, 1])
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    width = np.diff(edges)
    full = count > 0
    top.bar(
        edges[:-1][full],
        acc[full],
        width[full],
        align="edge",
        color="C0",
        edgecolor="white",
        label="accuracy",
    )
    top.bar(
        edges[:-1][full],
        conf[full] - acc[full],
        width[full],
        bottom=acc[full],
        align="edge",
        fill=False,
        hatch="//",
        edgecolor="C3",
        label="gap to mean confidence",
    )
    top.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
    top.set_title(f"{title + ': ' if title else ''}ECE = {ece:.3f}")
    top.legend(loc="upper left", fontsize="small")
    bottom.bar(edges[:-1], count, width, align="edge", color="0.5", edgecolor="white")
    bottom.set(xlim=(0, 1), xlabel="confidence (top-label probability)", ylabel="points")
    return _finish(fig, path)


def plot_fit_1d(
    x,
    mean,
    lower,
    upper,
    *,
    x_obs=None,
    y_obs=None,
    truth=None,
    band_label: str = "90% predictive interval",
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """A 1-D regression: predictive mean, a shaded interval, the data and the true function.

    Parameters
    ----------
    x : array-like of shape (n,)
        Grid of inputs (sorted here).
    mean, lower, upper : array-like of shape (n,)
        Predictive mean and interval bounds on the grid (e.g. rows of
        ``Network.predict_quantiles(x[:, None], [0.05, 0.5, 0.95])``).
    x_obs, y_obs : array-like, optional
        Observations to scatter.
    truth : array-like of shape (n,), optional
        True function on the grid.
    band_label, title : str
        Legend entry of the band; figure title.
    path : path-like, optional
        Save the figure there as a PNG.
    """
    x = _vector(x, "x")
    mean, lower, upper = (
        _vector(v, name, len(x)) for v, name in ((mean, "mean"), (lower, "lower"), (upper, "upper"))
    )
    if np.any(lower > upper):
        raise ValueError("lower must be <= upper everywhere")
    order = np.argsort(x)
    fig, (ax,) = _figure(6.0, 4.0)
    ax.fill_between(x[order], lower[order], upper[order], color="C0", alpha=0.25, label=band_label)
    ax.plot(x[order], mean[order], color="C0", lw=2, label="predictive mean")
    if truth is not None:
        ax.plot(x[order], _vector(truth, "truth", len(x))[order], "k--", lw=1, label="truth")
    if (x_obs is None) != (y_obs is None):
        raise ValueError("x_obs and y_obs must be given together")
    if x_obs is not None:
        x_obs = _vector(x_obs, "x_obs")
        ax.scatter(
            x_obs,
            _vector(y_obs, "y_obs", len(x_obs)),
            s=6,
            color="C1",
            alpha=0.5,
            label="data",
            zorder=3,
        )
    ax.set(xlabel="x", ylabel="y", title=title or "")
    ax.legend(loc="best", fontsize="small")
    return _finish(fig, path)


def plot_comparison(
    table: pd.DataFrame, *, title: str | None = None, path: str | os.PathLike | None = None
) -> Figure:
    """Held-out elpd per variant (best on top) with ``se``, and ``elpd_diff`` with ``dse``.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`bayeslayers.diagnostics.compare` (columns ``elpd_test``, ``se``,
        ``elpd_diff``, ``dse``).
    title : str, optional
    path : path-like, optional
        Save the figure there as a PNG.
    """
    missing = {"elpd_test", "se", "elpd_diff", "dse"} - set(getattr(table, "columns", ()))
    if missing:
        raise ValueError(f"table must be a compare() DataFrame; missing columns {sorted(missing)}")
    fig, (ax,) = _figure(6.0, 1.0 + 0.5 * len(table))
    pos = -np.arange(len(table), dtype=float)
    ax.errorbar(
        table["elpd_test"], pos, xerr=table["se"], fmt="o", color="k", label="elpd (held out) ± se"
    )
    best = table["elpd_test"].iloc[0]
    rest = slice(1, None)
    ax.errorbar(
        best - table["elpd_diff"].iloc[rest],
        pos[rest] - 0.25,
        xerr=table["dse"].iloc[rest],
        fmt="^",
        color="0.5",
        label="difference to best ± dse",
    )
    ax.axvline(best, color="0.7", ls="--", lw=1)
    ax.set_yticks(pos, [str(name) for name in table.index])
    ax.set(xlabel="elpd (log)", title=title or "")
    ax.legend(loc="best", fontsize="small")
    return _finish(fig, path)
