r"""Save the figures the README shows into ``docs/figures/*.png``.

Run from the repository root::

    python docs/make_figures.py            # all figures (about a minute on two cores)
    python docs/make_figures.py --only regression_1d

Every figure is recomputed from the public API (nothing is pasted by hand), drawn by
:mod:`bayeslayers.plots` (the plotting module the command and the notebooks use) and saved
small (low DPI, a few tens of kB):

``regression_1d.png``
    A 1-50-50-1 ReLU network fitted to :math:`y = \sin(3x) + \varepsilon` in one pass, with the
    library's default (linearized) predictive band :math:`\pm 2\sigma`: the head's weights and
    the noise integrated analytically, the hidden layers' weight uncertainty propagated by
    linearization around their posterior means (notebook 01). Inputs in the data's units, on
    a grid reaching a quarter of the training range beyond it.
``regression_2d.png``
    The same method on :math:`y = \sin(2x_1)\cos(1.5x_2) + \varepsilon`: true surface, one-pass
    mean, absolute error and linearized predictive standard deviation on :math:`[-3, 3]^2`
    (notebook 02).
``heads_reliability.png``
    Reliability diagrams (bars per confidence bin, test points per bin below, ECE) on digits
    for the one-hot Gaussian, probit (ADF) and logit (Laplace) heads after one pass
    (notebook 05, closed-form fits only).
``online_drift.png``
    Test RMSE along a stream whose target flips from :math:`\sin(3x)` to :math:`-\sin(3x)`,
    with and without exponential forgetting of the head's covariance
    (:func:`bayeslayers.conjugate.inflate`, notebook 06).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bayeslayers import Network, conjugate, heads, layers, plots
from bayeslayers.datasets import DATASETS, load_dataset
from bayeslayers.metrics import rmse

__all__ = ["FIGURES", "main"]

OUT = Path(__file__).resolve().parent / "figures"
DPI = 72
NOISE_SD = 0.1


def _save(fig: Figure, name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.png"
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def regression_1d() -> Figure:
    """One-pass fit of sin(3x) with the linearized predictive band, in the data's units."""
    data = load_dataset("sine-1d", n_samples=1000, noise_sd=NOISE_SD, seed=0)
    net = Network([layers.ReLU(50), layers.ReLU(50)], seed=0)
    net.fit(data.X_train, data.y_train)
    x_train = data.unstandardize(data.X_train)[:, 0]
    lo, hi = x_train.min(), x_train.max()
    grid = np.linspace(lo - 0.25 * (hi - lo), hi + 0.25 * (hi - lo), 400)
    mean, var = net.predict_moments(data.standardize(grid[:, None]), hidden="linearized")
    mean, sd = mean[:, 0], np.sqrt(var[:, 0])
    test_rmse = rmse(data.y_test, net.predict(data.X_test))
    return plots.plot_fit_1d(
        grid,
        mean,
        mean - 2 * sd,
        mean + 2 * sd,
        x_obs=x_train,
        y_obs=data.y_train,
        obs_label="training data",
        truth=DATASETS["sine-1d"].truth(grid[:, None]),
        train_range=(float(lo), float(hi)),
        band_label="±2 predictive sd (linearized)",
        title=f"sin(3x), 1-50-50-1 ReLU, one pass: test RMSE {test_rmse:.3f}",
    )


def regression_2d() -> Figure:
    """True surface, one-pass mean, error and predictive sd of the 2-D wave."""
    data = load_dataset("wave-2d", n_samples=1500, noise_sd=NOISE_SD, seed=0, standardize=False)
    net = Network([layers.ReLU(50), layers.ReLU(50)], seed=0)
    net.fit(data.X_train, data.y_train)
    side = np.linspace(-3, 3, 61)
    g1, g2 = np.meshgrid(side, side)
    grid = np.column_stack([g1.ravel(), g2.ravel()])
    mean, var = net.predict_moments(grid, hidden="linearized")
    return plots.plot_fit_2d(
        side,
        side,
        mean[:, 0].reshape(g1.shape),
        np.sqrt(var[:, 0]).reshape(g1.shape),
        truth=DATASETS["wave-2d"].truth(grid).reshape(g1.shape),
        x_obs=data.X_train,
        train_box=(-2.0, 2.0, -2.0, 2.0),
        title="sin(2 x1) cos(1.5 x2), 2-50-50-1 ReLU, one pass (dashed: training range)",
    )


def heads_reliability() -> Figure:
    """Reliability diagrams of three closed-form heads on digits after one pass."""
    data = load_dataset("digits", seed=0)
    choices = {
        "one-hot (learned noise)": heads.OneHot(),
        "probit (ADF)": heads.Probit(fit="adf"),
        "logit (Laplace)": heads.Logistic(fit="laplace"),
    }
    proba = {}
    for name, head in choices.items():
        net = Network([layers.ReLU(100)], head=head, seed=0).fit(data.X_train, data.y_train)
        accuracy = np.mean(net.predict(data.X_test) == data.y_test)
        proba[f"{name}, acc {accuracy:.3f}"] = net.predict_proba(data.X_test)
    return plots.plot_reliability(
        data.y_test, proba, n_bins=10, title="digits, 64-100-10, one pass (test split)"
    )


def online_drift(n_rows: int = 400, chunk: int = 20, lam: float = 0.7) -> Figure:
    """Test RMSE along a stream whose target flips halfway, with and without forgetting.

    Forgetting widens the head's posterior before each chunk with
    :func:`bayeslayers.conjugate.inflate` (covariance divided by ``lam``).
    """
    rng = np.random.default_rng(7)
    x = rng.uniform(-2, 2, (2 * n_rows, 1))
    x_test = rng.uniform(-2, 2, (500, 1))
    sign = np.where(np.arange(2 * n_rows) < n_rows, 1.0, -1.0)
    y = sign * np.sin(3 * x[:, 0]) + rng.normal(0, NOISE_SD, 2 * n_rows)
    curves: dict[str, list[float]] = {}
    seen: list[int] = []
    for label, forget in (("no forgetting", None), (f"head forgetting, λ = {lam}", lam)):
        net = Network([layers.ReLU(50), layers.ReLU(50)], seed=0)
        seen, errors = [], []
        for rows in np.array_split(np.arange(2 * n_rows), 2 * n_rows // chunk):
            if forget is not None and net.is_fitted:
                state = net.head_state_
                net.head_state_ = state._replace(
                    post=conjugate.inflate(state.post, forgetting=forget)
                )
            net.partial_fit(x[rows], y[rows])
            truth = sign[rows[-1]] * np.sin(3 * x_test[:, 0])
            seen.append(net.n_samples_seen_)
            errors.append(rmse(truth, net.predict(x_test)))
        curves[label] = errors
    return plots.plot_learning_curve(
        seen,
        curves,
        ylabel="RMSE against the noise-free target",
        events={"target flips": n_rows},
        yscale="log",
        title="online learning: sin(3x), then -sin(3x)",
    )


FIGURES: dict[str, Callable[[], Figure]] = {
    "regression_1d": regression_1d,
    "regression_2d": regression_2d,
    "heads_reliability": heads_reliability,
    "online_drift": online_drift,
}


def main(argv: list[str] | None = None) -> list[Path]:
    """Build the figures named by ``--only`` (all by default); return the files written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(FIGURES), default=sorted(FIGURES))
    args = parser.parse_args(argv)
    written = []
    for name in args.only:
        path = _save(FIGURES[name](), name)
        print(f"{path} ({path.stat().st_size / 1024:.0f} kB)")
        written.append(path)
    return written


if __name__ == "__main__":
    main()
