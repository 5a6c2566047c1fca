r"""Save the figures the README shows into ``docs/figures/*.png``.

Run from the repository root::

    python docs/make_figures.py            # all figures (about a minute on two cores)
    python docs/make_figures.py --only regression_1d

Every figure is recomputed from the public API (nothing is pasted by hand) and saved small
(low DPI, a few tens of kB):

``regression_1d.png``
    A 1-50-50-1 ReLU network fitted to :math:`y = \sin(3x) + \varepsilon` in one pass, with the
    library's default (linearized) predictive band :math:`\pm 2\sigma`: the head's weights and
    the noise integrated analytically, the hidden layers' weight uncertainty propagated by
    linearization around their posterior means (notebook 01).
``regression_2d.png``
    The same method on :math:`y = \sin(2x_1)\cos(1.5x_2) + \varepsilon`: true surface, one-pass
    mean, absolute error and linearized predictive standard deviation on :math:`[-3, 3]^2`
    (notebook 02).
``heads_reliability.png``
    Reliability diagrams on digits for the one-hot Gaussian, probit (ADF) and logit (Laplace)
    heads after one pass (notebook 05, closed-form fits only).
``online_drift.png``
    Test RMSE along a stream whose target flips from :math:`\sin(3x)` to :math:`-\sin(3x)`,
    with and without exponential forgetting of the head's covariance (notebook 06).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from bayeslayers import Network, heads, layers
from bayeslayers.datasets import load_dataset
from bayeslayers.metrics import classification_metrics, reliability_curve, rmse

__all__ = ["FIGURES", "main"]

OUT = Path(__file__).resolve().parent / "figures"
DPI = 72
NOISE_SD = 0.1


def _save(fig: plt.Figure, name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.png"
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def regression_1d() -> plt.Figure:
    """One-pass fit of sin(3x) with the head-only predictive band."""
    data = load_dataset("sine-1d", n_samples=1000, noise=NOISE_SD, seed=0)
    net = Network([layers.ReLU(50), layers.ReLU(50)], noise=NOISE_SD**2, seed=0)
    net.fit(data.X_train, data.y_train)
    grid = np.linspace(data.X_train.min() - 0.5, data.X_train.max() + 0.5, 300)[:, None]
    mean, var = net.predict_moments(grid, method="linearized")
    mean, sd = mean[:, 0], np.sqrt(var[:, 0])
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.scatter(data.X_train[:, 0], data.y_train, s=3, c="0.6", label="training data")
    ax.plot(grid[:, 0], mean, "C0", label="posterior mean")
    ax.fill_between(grid[:, 0], mean - 2 * sd, mean + 2 * sd, color="C0", alpha=0.3, label="±2 sd")
    test_rmse = rmse(data.y_test, net.predict(data.X_test))
    ax.set(
        xlabel="x (standardized)",
        ylabel="y",
        title=f"sin(3x), 1-50-50-1 ReLU, one pass: test RMSE {test_rmse:.3f}",
    )
    ax.legend(fontsize=8, loc="lower right")
    return fig


def regression_2d() -> plt.Figure:
    """True surface, one-pass mean, error and predictive sd of the 2-D wave."""
    data = load_dataset("wave-2d", n_samples=1500, noise=NOISE_SD, seed=0, standardize=False)
    net = Network([layers.ReLU(50), layers.ReLU(50)], noise=NOISE_SD**2, seed=0)
    net.fit(data.X_train, data.y_train)
    side = np.linspace(-3, 3, 61)
    g1, g2 = np.meshgrid(side, side)
    grid = np.column_stack([g1.ravel(), g2.ravel()])
    truth = np.sin(2 * grid[:, 0]) * np.cos(1.5 * grid[:, 1])
    mean, var = net.predict_moments(grid, method="linearized")
    panels = [
        ("true function", truth, "RdBu_r"),
        ("one-pass mean", mean[:, 0], "RdBu_r"),
        ("|error|", np.abs(mean[:, 0] - truth), "magma"),
        ("predictive sd", np.sqrt(var[:, 0]), "viridis"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3))
    for ax, (title, values, cmap) in zip(axes, panels, strict=True):
        kw = {"vmin": -1, "vmax": 1} if cmap == "RdBu_r" else {}
        im = ax.contourf(g1, g2, values.reshape(g1.shape), levels=20, cmap=cmap, **kw)
        ax.add_patch(plt.Rectangle((-2, -2), 4, 4, fill=False, ls="--", color="k"))
        ax.set(title=title, aspect="equal", xticks=[-2, 0, 2], yticks=[-2, 0, 2])
        fig.colorbar(im, ax=ax, shrink=0.75)
    return fig


def heads_reliability() -> plt.Figure:
    """Reliability diagrams of three closed-form heads on digits after one pass."""
    data = load_dataset("digits", seed=0)
    choices = {
        "one-hot (learned noise)": heads.OneHot(),
        "probit (ADF)": heads.Probit(fit="adf"),
        "logit (Laplace)": heads.Logistic(fit="laplace"),
    }
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    for name, head in choices.items():
        net = Network([layers.ReLU(100)], head=head, seed=0).fit(data.X_train, data.y_train)
        proba = net.predict_proba(data.X_test)
        scores = classification_metrics(data.y_test, proba, classes=net.classes_)
        conf, acc, count = reliability_curve(data.y_test, proba, n_bins=10, classes=net.classes_)
        keep = count > 0
        ax.plot(
            conf[keep],
            acc[keep],
            "o-",
            ms=3,
            label=f"{name}: acc {scores['accuracy']:.3f}, NLL {scores['nll']:.2f}",
        )
    ax.set(xlabel="confidence", ylabel="accuracy", title="digits, 64-100-10, one pass")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def online_drift(n_rows: int = 400, chunk: int = 20, lam: float = 0.7) -> plt.Figure:
    """Test RMSE along a stream whose target flips halfway, with and without forgetting.

    Forgetting divides the head's covariance by ``lam`` before each chunk (done here through
    the network's public attributes; the library has no forgetting parameter).
    """
    rng = np.random.default_rng(7)
    x = rng.uniform(-2, 2, (2 * n_rows, 1))
    x_test = rng.uniform(-2, 2, (500, 1))
    sign = np.where(np.arange(2 * n_rows) < n_rows, 1.0, -1.0)
    y = sign * np.sin(3 * x[:, 0]) + rng.normal(0, NOISE_SD, 2 * n_rows)
    fig, ax = plt.subplots(figsize=(6, 3))
    for label, forget in (("no forgetting", None), (f"head forgetting, λ = {lam}", lam)):
        net = Network([layers.ReLU(50), layers.ReLU(50)], noise=NOISE_SD**2, seed=0)
        seen, errors = [], []
        for rows in np.array_split(np.arange(2 * n_rows), 2 * n_rows // chunk):
            if forget is not None and net.is_fitted:
                state = net.head_state_
                net.head_state_ = state._replace(
                    post=state.post._replace(cov=state.post.cov / forget)
                )
            net.partial_fit(x[rows], y[rows])
            truth = sign[rows[-1]] * np.sin(3 * x_test[:, 0])
            seen.append(net.n_samples_seen_)
            errors.append(rmse(truth, net.predict(x_test)))
        ax.plot(seen, errors, "o-", ms=3, label=label)
    ax.axvline(n_rows, color="k", ls="--", lw=1, label="target flips")
    ax.set(
        xlabel="rows seen",
        ylabel="test RMSE",
        yscale="log",
        title="online learning: sin(3x), then -sin(3x)",
    )
    ax.legend(fontsize=8)
    return fig


FIGURES: dict[str, Callable[[], plt.Figure]] = {
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
