r"""Figures for papers: calibration, confusion, learning curves, 1-D and 2-D fits, comparisons.

The one plotting module of the project: the ``bayeslayers`` command, the notebooks and
``docs/make_figures.py`` all draw through it. Every function takes plain arrays (no network),
draws on a new ``matplotlib.figure.Figure`` attached to the Agg canvas (no pyplot, no display,
no global state; matplotlib is imported on the first call), saves it as a PNG when ``path``
is given and returns the figure.

* :func:`plot_reliability`: top-label accuracy per confidence bin as bars, the gap to the
  bin's mean confidence hatched, the per-bin counts as a histogram below, the ECE in the
  title; one column per model when given several.
* :func:`plot_confusion`: confusion matrix normalised per true class, with a colour bar, the
  counts printed in every non-empty cell (white on dark cells) and the accuracy in the title.
* :func:`plot_learning_curve`: a test metric against training rows seen, pass boundaries
  marked, optional reference lines (the noise floor of a synthetic regression) and events.
* :func:`plot_fit_1d`: predictive mean and central interval of a 1-D regression on a grid
  that may reach beyond the training range (shaded), with data and the true function; the
  legend sits outside the axes.
* :func:`plot_fit_2d`: maps of the predictive mean and standard deviation of a 2-D
  regression (and, given the truth, the true function on the mean's colour scale and the
  absolute error), labelled colour bars, the training range outlined.
* :func:`plot_comparison`: a :func:`bayeslayers.diagnostics.compare` table, drawn like
  ``az.plot_compare``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from bayeslayers import metrics

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "plot_comparison",
    "plot_confusion",
    "plot_fit_1d",
    "plot_fit_2d",
    "plot_learning_curve",
    "plot_reliability",
]

PathLike = str | os.PathLike | None
DPI = 120


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _figure(width: float, height: float, rows: int = 1, **gridspec) -> tuple[Figure, list]:
    fig = _new_figure(width, height)
    axes = fig.subplots(rows, 1, squeeze=False, gridspec_kw=gridspec or None)[:, 0]
    return fig, list(axes)


def _finish(fig: Figure, path: PathLike) -> Figure:
    if path is not None:
        fig.savefig(path, format="png", dpi=DPI)
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


# ------------------------------------------------------------------------------ reliability
def plot_reliability(
    y,
    proba,
    *,
    n_bins: int = 10,
    classes=None,
    title: str | None = None,
    path: PathLike = None,
) -> Figure:
    r"""Reliability diagram of the top label, with the expected calibration error.

    Each bar is a confidence bin :math:`B_b`: its height is the accuracy
    :math:`\operatorname{acc}(B_b)`, the hatched red part the gap to the mean confidence
    :math:`\operatorname{conf}(B_b)`; the lower panel counts the test points per bin (log
    scale, the count printed above each bar), so a bar resting on a handful of points is
    visible as such. The title gives
    :math:`\mathrm{ECE} = \sum_b \frac{|B_b|}{n} |\operatorname{acc}(B_b) -
    \operatorname{conf}(B_b)|`.

    Parameters
    ----------
    y : array-like of shape (n,)
        True labels.
    proba : array-like of shape (n, K), or a mapping of names to such arrays
        Class probabilities; a mapping draws one column per model, sharing the axes.
    n_bins, classes
        As in :func:`bayeslayers.metrics.reliability_curve`.
    title : str, optional
        Title (each column's title is its name and ECE).
    path : path-like, optional
        Save the figure there as a PNG.
    """
    models = dict(proba) if isinstance(proba, Mapping) else {"": proba}
    if not models:
        raise ValueError("proba must hold at least one model's probabilities")
    curves = {
        name: (
            metrics.reliability_curve(y, p, n_bins=n_bins, classes=classes),
            metrics.ece(y, p, n_bins=n_bins, classes=classes),
        )
        for name, p in models.items()
    }
    fig = _new_figure(4.2 * len(models) + 0.6, 5.2)
    grid = fig.subplots(
        2, len(models), squeeze=False, sharex=True, sharey="row", height_ratios=[3, 1]
    )
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    width = np.diff(edges)
    for col, (name, ((conf, acc, count), ece)) in enumerate(curves.items()):
        top, bottom = grid[0, col], grid[1, col]
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
        top.set(xlim=(0, 1), ylim=(0, 1))
        top.set_title(f"{name + ': ' if name else ''}ECE = {ece:.3f}", fontsize="medium")
        bars = bottom.bar(edges[:-1], count, width, align="edge", color="0.5", edgecolor="white")
        bottom.bar_label(bars, labels=[str(c) if c else "" for c in count], fontsize=6)
        bottom.set_yscale("log")
        bottom.set_ylim(0.8, max(2.0, float(count.max())) * 4)
        bottom.set_xlabel("confidence (top-label probability)")
        if col == 0:
            top.set_ylabel("accuracy")
            bottom.set_ylabel("test points")
    handles, labels = grid[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize="small")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


# -------------------------------------------------------------------------------- confusion
def plot_confusion(
    y_true,
    y_pred,
    *,
    classes=None,
    title: str | None = None,
    path: PathLike = None,
) -> Figure:
    r"""Confusion matrix normalised per true class, counts in the cells, accuracy in the title.

    Cell :math:`(i, j)` is coloured by :math:`C_{ij} / \sum_{j'} C_{ij'}`, the fraction of
    true class :math:`i` predicted as :math:`j` (the diagonal is each class's recall), and
    labelled with the count :math:`C_{ij}`.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        True and predicted labels.
    classes : array-like, optional
        Label order (default: the sorted labels seen in either).
    title : str, optional
        Prefix of the title (the accuracy is appended).
    path : path-like, optional
        Save the figure there as a PNG.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must be 1-D of the same length, got {y_true.shape} and "
            f"{y_pred.shape}"
        )
    classes = np.unique(np.concatenate([y_true, y_pred])) if classes is None else classes
    classes = np.asarray(classes)
    index = {c: i for i, c in enumerate(classes.tolist())}
    unknown = sorted({*y_true.tolist(), *y_pred.tolist()} - set(index), key=str)
    if unknown:
        raise ValueError(f"labels {unknown} are not in classes")
    k = len(classes)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, ([index[c] for c in y_true.tolist()], [index[c] for c in y_pred.tolist()]), 1)
    totals = counts.sum(axis=1, keepdims=True)
    rates = counts / np.maximum(totals, 1)
    accuracy = float(np.trace(counts) / max(counts.sum(), 1))
    side = min(2.8 + 0.3 * k, 12.0)
    fig = _new_figure(side + 1.0, side)
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    bar = fig.colorbar(image, ax=ax, shrink=0.8)
    bar.set_label("fraction of the true class")
    size = 8 if k <= 12 else 6 if k <= 25 else 0
    if size:
        for (i, j), c in np.ndenumerate(counts):
            if c:
                colour = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, str(c), ha="center", va="center", fontsize=size, color=colour)
    ticks = np.arange(k)
    labels = [str(c) for c in classes]
    ax.set_xticks(ticks, labels, rotation=90 if max(map(len, labels)) > 3 else 0)
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    name = f"{title}: " if title else ""
    ax.set_title(f"{name}accuracy {accuracy:.1%} on {counts.sum()} test points")
    return _finish(fig, path)


# --------------------------------------------------------------------------- learning curve
def plot_learning_curve(
    samples_seen,
    scores,
    *,
    ylabel: str,
    pass_length: int | None = None,
    references: Mapping[str, float] | None = None,
    events: Mapping[str, float] | None = None,
    yscale: str = "linear",
    title: str | None = None,
    path: PathLike = None,
) -> Figure:
    """A test metric against the number of training rows seen.

    Parameters
    ----------
    samples_seen : array-like of shape (n,)
        Rows seen at each checkpoint (across passes).
    scores : array-like of shape (n,), or a mapping of labels to such arrays
        The metric at each checkpoint; a mapping draws one curve per label.
    ylabel : str
        What the metric is (e.g. ``"test accuracy"``, ``"test RMSE"``).
    pass_length : int, optional
        Rows per pass: the boundaries between passes are drawn as dotted lines.
    references : mapping of str to float, optional
        Horizontal reference lines, e.g. ``{"noise floor (noise sd 0.1)": 0.1}``.
    events : mapping of str to float, optional
        Vertical lines at a number of rows seen, e.g. ``{"target flips": 400}``.
    yscale : str
        ``"linear"`` or ``"log"``.
    title : str, optional
    path : path-like, optional
        Save the figure there as a PNG.
    """
    seen = _vector(samples_seen, "samples_seen")
    curves = dict(scores) if isinstance(scores, Mapping) else {None: scores}
    fig, (ax,) = _figure(6.0, 3.6)
    for label, values in curves.items():
        ax.plot(seen, _vector(values, "scores", len(seen)), marker="o", ms=3, label=label)
    if pass_length and seen.size and seen.max() > pass_length:
        for k, x in enumerate(np.arange(pass_length, seen.max(), pass_length)):
            ax.axvline(x, color="0.6", ls=":", lw=1, label="end of a pass" if k == 0 else None)
    for i, (label, value) in enumerate((references or {}).items()):
        ax.axhline(value, color=f"C{len(curves) + i}", ls="--", lw=1, label=label)
    for i, (label, value) in enumerate((events or {}).items()):
        ax.axvline(value, color="k", ls=["--", "-.", ":"][i % 3], lw=1, label=label)
    ax.set(xlabel="training rows seen", ylabel=ylabel, yscale=yscale, title=title or "")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="best")
    return _finish(fig, path)


# ----------------------------------------------------------------------------------- 1-D fit
def _fit_ylim(mean, truth, y_obs) -> tuple[float, float]:
    """The y-range of the mean, truth and data, padded by half of it: a band that widens far
    (outside the data) leaves the axes instead of squashing the fit."""
    parts = [np.asarray(v, dtype=np.float64).ravel() for v in (mean, truth, y_obs) if v is not None]
    values = np.concatenate(parts)
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    pad = 0.5 * (hi - lo) if hi > lo else 1.0
    return lo - pad, hi + pad


def plot_fit_1d(
    x,
    mean,
    lower,
    upper,
    *,
    x_obs=None,
    y_obs=None,
    truth=None,
    train_range: tuple[float, float] | None = None,
    band_label: str = "90% predictive interval",
    obs_label: str = "data",
    xlabel: str = "x",
    ylabel: str = "y",
    title: str | None = None,
    path: PathLike = None,
) -> Figure:
    """A 1-D regression: predictive mean, a shaded interval, the data and the true function.

    Give every array in the data's own units. The grid ``x`` may reach beyond the training
    inputs (where the band should widen); ``train_range`` shades the interval the network
    was trained on. The legend is placed beside the axes, off the data; the y-axis spans the
    mean, truth and data padded by half their range, so a band widening far outside the data
    leaves the axes rather than squashing the fit.

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
    train_range : (float, float), optional
        Smallest and largest training input, shaded.
    band_label, obs_label, xlabel, ylabel, title : str
        Legend entries of the band and the observations; axis labels; figure title.
    path : path-like, optional
        Save the figure there as a PNG.
    """
    x = _vector(x, "x")
    mean, lower, upper = (
        _vector(v, name, len(x)) for v, name in ((mean, "mean"), (lower, "lower"), (upper, "upper"))
    )
    if np.any(lower > upper):
        raise ValueError("lower must be <= upper everywhere")
    if (x_obs is None) != (y_obs is None):
        raise ValueError("x_obs and y_obs must be given together")
    order = np.argsort(x)
    fig, (ax,) = _figure(7.5, 3.8)
    if train_range is not None:
        ax.axvspan(*train_range, color="0.93", zorder=0, label="training inputs")
    ax.fill_between(x[order], lower[order], upper[order], color="C0", alpha=0.25, label=band_label)
    ax.plot(x[order], mean[order], color="C0", lw=2, label="predictive mean")
    if truth is not None:
        ax.plot(x[order], _vector(truth, "truth", len(x))[order], "k--", lw=1, label="truth")
    if x_obs is not None:
        x_obs = _vector(x_obs, "x_obs")
        ax.scatter(
            x_obs,
            _vector(y_obs, "y_obs", len(x_obs)),
            s=5,
            color="C1",
            alpha=0.6,
            linewidths=0,
            label=obs_label,
            zorder=3,
        )
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title or "", xlim=(x.min(), x.max()))
    ax.set_ylim(*_fit_ylim(mean, truth, y_obs))
    ax.grid(alpha=0.2)
    fig.legend(loc="outside right upper", fontsize="small")
    return _finish(fig, path)


# ----------------------------------------------------------------------------------- 2-D fit
def _box(ax: Axes, box: tuple[float, float, float, float], label: str | None = None) -> None:
    from matplotlib.patches import Rectangle

    x0, x1, y0, y1 = box
    ax.add_patch(
        Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ls="--", lw=1, ec="k", label=label)
    )


def plot_fit_2d(
    x1,
    x2,
    mean,
    std,
    *,
    truth=None,
    x_obs=None,
    train_box: tuple[float, float, float, float] | None = None,
    xlabel: str = "x1",
    ylabel: str = "x2",
    zlabel: str = "y",
    title: str | None = None,
    path: PathLike = None,
) -> Figure:
    """Maps of a 2-D regression: predictive mean and standard deviation (and truth, error).

    Give the grid in the data's own units and wider than the training inputs, so the
    standard deviation can be seen growing outside them; ``train_box`` outlines the training
    range. Training points are drawn only on the mean map (small, translucent), so they do
    not hide the standard deviation. With ``truth`` the figure has four panels: the true
    function and the mean on one colour scale, the absolute error and the standard
    deviation on their own (a log scale for the standard deviation when it spans more than a
    factor of 20).

    Parameters
    ----------
    x1, x2 : array-like of shape (n1,) and (n2,)
        Grid axes.
    mean, std, truth : array-like of shape (n2, n1)
        Values on the grid (``mean[i, j]`` at ``(x1[j], x2[i])``).
    x_obs : array-like of shape (m, 2), optional
        Training inputs to scatter on the mean map.
    train_box : (x1_min, x1_max, x2_min, x2_max), optional
        Training range, drawn as a dashed rectangle on every map.
    xlabel, ylabel, zlabel, title : str
        Axis labels, the target's name (colour bar labels) and the figure title.
    path : path-like, optional
        Save the figure there as a PNG.
    """
    x1, x2 = _vector(x1, "x1"), _vector(x2, "x2")
    shape = (len(x2), len(x1))
    arrays = {"mean": mean, "std": std} | ({} if truth is None else {"truth": truth})
    values = {}
    for name, a in arrays.items():
        a = np.asarray(a, dtype=np.float64)
        if a.shape != shape:
            raise ValueError(f"{name} must have shape {shape} (len(x2), len(x1)), got {a.shape}")
        values[name] = a
    if np.any(values["std"] < 0):
        raise ValueError("std must be >= 0 everywhere")
    panels: list[tuple[str, np.ndarray, str, str, tuple[Any, Any]]] = []
    if truth is not None:
        lim = float(np.max(np.abs([values["truth"], values["mean"]])))
        panels.append(("true function", values["truth"], "RdBu_r", zlabel, (-lim, lim)))
        panels.append(("predictive mean", values["mean"], "RdBu_r", zlabel, (-lim, lim)))
        error = np.abs(values["mean"] - values["truth"])
        panels.append(("|mean - truth|", error, "magma", f"|error| of {zlabel}", (0, None)))
    else:
        lo, hi = float(values["mean"].min()), float(values["mean"].max())
        panels.append(("predictive mean", values["mean"], "viridis", zlabel, (lo, hi)))
    panels.append(
        ("predictive sd", values["std"], "viridis", f"predictive sd of {zlabel}", (None, None))
    )
    fig = _new_figure(3.9 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, z, cmap, label, (vmin, vmax)) in zip(axes, panels, strict=True):
        norm = None
        if name == "predictive sd":  # log scale when the sd spans more than a factor of 20
            low, high = float(z.min()), float(z.max())
            if low > 0 and high / low > 20:
                from matplotlib.colors import LogNorm

                norm, label = LogNorm(low, high), f"{label} (log scale)"
            else:
                vmin = 0.0
        limits = {} if norm is not None else {"vmin": vmin, "vmax": vmax}
        image = ax.pcolormesh(x1, x2, z, shading="auto", cmap=cmap, norm=norm, **limits)
        bar = fig.colorbar(image, ax=ax, shrink=0.85)
        bar.set_label(label)
        if norm is not None:  # ticks at 1, 2, 5 x 10^k as plain numbers
            from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

            bar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            bar.ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            bar.ax.yaxis.set_minor_formatter(NullFormatter())
        if train_box is not None:
            _box(ax, train_box)
        if x_obs is not None and name == "predictive mean":
            obs = np.asarray(x_obs, dtype=np.float64)
            ax.scatter(obs[:, 0], obs[:, 1], s=1, c="k", alpha=0.25, linewidths=0)
        ax.set(title=name, xlabel=xlabel, ylabel=ylabel, aspect="equal")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


# -------------------------------------------------------------------------------- comparison
def plot_comparison(
    table: pd.DataFrame, *, title: str | None = None, path: PathLike = None
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
