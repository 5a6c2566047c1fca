"""Helpers shared by the research notebooks: seeds, paired differences, fair baselines, verdicts.

Every comparison in the notebooks is run over several seeds (data split, noise and network
seed together) and summarised by the paired difference ``a - b`` per seed, its mean and a
Student-t interval. A verdict is read off that interval only: "a lower" when the whole interval
is below zero, "b lower" when above, "no measurable difference" when it contains zero.
"""

from __future__ import annotations

import copy
import io
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss, mean_squared_error
from sklearn.neural_network import MLPClassifier, MLPRegressor

from bayeslayers import Network, engine

__all__ = [
    "LEVEL",
    "Paired",
    "RandomFeatures",
    "claims_markdown",
    "interval",
    "mlp_converged",
    "mlp_one_epoch",
    "paired",
    "seed_band",
    "show",
    "timed",
    "verdict",
]

LEVEL = 0.95  # level of every interval printed by the notebooks


class Paired(NamedTuple):
    """Paired difference ``a - b`` over seeds: mean, interval, and how often ``a < b``."""

    mean: float
    lo: float
    hi: float
    below: int  # seeds with a < b
    n: int

    def __str__(self) -> str:
        return (
            f"{self.mean:+.4f} [{self.lo:+.4f}, {self.hi:+.4f}] "
            f"(a < b on {self.below}/{self.n} seeds)"
        )


def interval(values: Iterable[float], level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and Student-t interval of the mean of ``values`` (one value per seed).

    .. math:: \\bar x \\pm t_{n-1, (1+level)/2}\\, s / \\sqrt{n}
    """
    x = np.asarray(list(values), dtype=float)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"values must hold at least 2 numbers, got shape {x.shape}")
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def paired(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Paired:
    """Paired difference ``a - b`` over seeds with a Student-t interval of its mean."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    mean, lo, hi = interval(a - b, level)
    return Paired(mean, lo, hi, int(np.sum(a < b)), len(a))


def verdict(p: Paired, a: str, b: str, *, lower_is_better: bool = True) -> str:
    """Read a verdict off the interval of ``a - b`` only."""
    if p.lo <= 0 <= p.hi:
        return f"no measurable difference between {a} and {b}"
    a_lower = p.hi < 0
    winner, loser = (a, b) if a_lower == lower_is_better else (b, a)
    return f"{winner} better than {loser}"


def claims_markdown(rows: Sequence[tuple[str, str, str]]) -> str:
    """A Markdown table of ``(claim, verdict, evidence)`` rows."""
    lines = ["| claim of the original post | verdict | evidence (this notebook) |", "|---|---|---|"]
    lines += [f"| {c} | **{v}** | {e} |" for c, v, e in rows]
    return "\n".join(lines)


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    """Run ``fn`` once and return its result and wall-clock seconds (no tracing)."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


# ----------------------------------------------------------------------------- baselines
class RandomFeatures:
    """Random-feature control: the hidden layers frozen at their prior mean, only a head learns.

    ``net`` is initialized from ``(X, Y)`` (the prior, sampled first layer included, no
    training); its head inputs at the prior mean are the fixed feature map (the top hidden
    output, and the inputs themselves where the network has the skip connection), and a
    network without hidden layers (the same head and prior) is fitted on those features in one
    pass. This is exact conjugate regression on random features (plus the linear part of a
    skip network): what a trained body must beat.
    """

    def __init__(self, net: Network) -> None:
        self.body = copy.deepcopy(net)

    def features(self, X) -> np.ndarray:
        return engine.forward(self.body.spec, self.body.posteriors_, np.asarray(X, float))[0][
            :, :-1
        ]

    def _new_head(self) -> Network:
        return Network(
            [],
            head=copy.deepcopy(self.body.head),
            prior_precision=self.body.prior_precision,
            noise=self.body.noise,
            seed=self.body.seed,
        )

    def fit(self, X, Y, **fit_kw) -> RandomFeatures:
        self.body.initialize(X, Y)
        self.head = self._new_head().fit(self.features(X), Y, **fit_kw)
        return self

    def partial_fit(self, X, Y, **fit_kw) -> RandomFeatures:
        """Stream: the feature map is set from the first call's rows, then only the head learns."""
        if not hasattr(self, "head"):
            self.body.initialize(X, Y)
            self.head = self._new_head()
        self.head.partial_fit(self.features(X), Y, **fit_kw)
        return self

    def predict(self, X, **kw):
        return self.head.predict(self.features(X), **kw)

    def predict_proba(self, X, **kw):
        return self.head.predict_proba(self.features(X), **kw)


MLP_GRID = tuple(
    {"alpha": a, "learning_rate_init": lr} for a in (1e-4, 1e-2) for lr in (1e-3, 1e-2)
)
SGD_RATES = (1e-3, 1e-2, 1e-1)


def _split(n: int, seed: int, fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = max(1, round(fraction * n))
    return order[cut:], order[:cut]


def _val_score(model, X, y, classifier: bool) -> float:
    if classifier:
        return log_loss(y, model.predict_proba(X), labels=model.classes_)
    return mean_squared_error(y, model.predict(X))


def _select(make, X, y, seed: int, grid: Sequence[dict], classifier: bool):
    """Choose grid settings on a validation split of the training rows, refit on all of them."""
    fit_rows, val_rows = _split(len(X), seed)
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for params in grid if len(grid) > 1 else ():
            try:
                model = make(**params).fit(X[fit_rows], y[fit_rows])
                score = _val_score(model, X[val_rows], y[val_rows], classifier)
            except ValueError:  # the rate diverged (non-finite weights): not a candidate
                score = np.inf
            scores.append(score if np.isfinite(score) else np.inf)
        best = dict(grid[int(np.argmin(scores))] if scores else grid[0])
        start = time.perf_counter()
        model = make(**best).fit(X, y)
        seconds = time.perf_counter() - start
    return model, best, seconds


def mlp_converged(
    X,
    y,
    hidden: tuple[int, ...],
    seed: int,
    *,
    classifier: bool = False,
    tol: float = 1e-7,
    max_iter: int = 3000,
    params: dict | None = None,
):
    """Adam MLP trained to a tight tolerance, ``alpha`` and learning rate chosen on validation.

    The grid is ``alpha in {1e-4, 1e-2}`` x ``learning_rate_init in {1e-3, 1e-2}``, each
    fitted on 80 % of the training rows and scored (MSE or log loss) on the other 20 %; the
    chosen setting is refitted on all training rows (``params``: a setting chosen before, e.g.
    on another seed's validation split; no search then). Returns the model and an info dict with
    the setting, ``n_iter_``, the tolerance and whether it stopped before ``max_iter``.
    """
    cls = MLPClassifier if classifier else MLPRegressor

    def make(**params):
        return cls(
            hidden_layer_sizes=hidden, tol=tol, max_iter=max_iter, random_state=seed, **params
        )

    grid = [params] if params is not None else list(MLP_GRID)
    model, best, seconds = _select(make, X, y, seed, grid, classifier)
    info = {
        **best,
        "n_iter": int(model.n_iter_),
        "tol": tol,
        "converged": model.n_iter_ < max_iter,
        "seconds": seconds,
    }
    return model, info


def mlp_one_epoch(X, y, hidden: tuple[int, ...], seed: int, *, classifier: bool = False):
    """One epoch of plain SGD at batch size 1 (as many updates as rows, like the single pass).

    The learning rate is chosen from ``{1e-3, 1e-2, 1e-1}`` on a validation split of the
    training rows (momentum 0.9, scikit-learn's default), then refitted on all of them.
    """
    cls = MLPClassifier if classifier else MLPRegressor

    def make(**params):
        return cls(
            hidden_layer_sizes=hidden,
            solver="sgd",
            batch_size=1,
            max_iter=1,
            random_state=seed,
            **params,
        )

    grid = [{"learning_rate_init": lr} for lr in SGD_RATES]
    model, best, seconds = _select(make, X, y, seed, grid, classifier)
    return model, {**best, "seconds": seconds}


# ----------------------------------------------------------------------------- plotting
def show(fig, path: str | None = None) -> None:
    """Display a figure of :mod:`bayeslayers.plots` (Agg, outside pyplot) as a PNG."""
    from IPython.display import Image, display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    if path is not None:
        fig.savefig(path, dpi=90, bbox_inches="tight")
    display(Image(data=buffer.getvalue()))


def seed_band(
    ax, x, values, label: str, color: str | None = None, what: str = "seeds", **kw
) -> None:
    """Mean over seeds (rows of ``values``) with the min-max band across seeds."""
    v = np.asarray(values, dtype=float)
    (line,) = ax.plot(x, v.mean(0), label=f"{label} (mean of {len(v)} {what})", color=color, **kw)
    ax.fill_between(x, v.min(0), v.max(0), color=line.get_color(), alpha=0.2, lw=0)
