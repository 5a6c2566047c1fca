r"""Iterate averaging of the hidden layers' means, used to predict where the evidence says so.

One pass moves the hidden layers by pseudo-observations whose targets keep changing, so the
posterior mean after the last batch carries the noise of the last targets (the last iterate
of a stochastic approximation), while the head's statistics were accumulated from features
all along the trajectory. The average of the trajectory of means,

.. math::

    \bar W_l = \frac{\sum_b w_b W_l^{(b)}}{\sum_b w_b}, \qquad w_b = r_b\, s_b^2,

is polynomial-decay averaging (Polyak & Juditsky 1992; Shamir & Zhang 2013): each iterate
weighs by the square of its place in the stream, the weighting of the one-hot head's
temperature evidence, with no time scale (the last third of a stream holds
:math:`1 - (2/3)^3 = 70\%` of the weight). The trajectory is sampled systematically, to keep
the cost small at one row per batch: the first batch and then one batch in
:math:`k = \max(4, \lceil 16 / n \rceil)` (``n`` rows per batch: every 16th row at batch 1,
every fourth batch from 4 rows up); :math:`W_l^{(b)}` is layer :math:`l`'s posterior mean after
a sampled batch :math:`b`, :math:`s_b` the rows of the stream seen then and :math:`r_b` the rows
since the previous sampled batch, which that iterate stands for. It is kept as a scale-free
recursion over the sampled batches: with the effective rows
:math:`Z_b = (s_{b'} / s_b)^2 Z_{b'} + r_b` (:math:`b'` the previous sampled batch),

.. math::

    \bar W \leftarrow \bar W + \frac{r_b}{Z_b} \big(W^{(b)} - \bar W\big).

Whether predictions use it is decided by the prequential evidence of the labels. Before each
sampled batch (after the first), the head's log predictive density of the batch is computed
at the averaged means as well as at the posterior means, and the difference
:math:`\Delta_b = \log p(y_b \mid \bar W) - \log p(y_b \mid W)` over its :math:`n_b` rows,
standing for the :math:`r_b` rows, accumulates with the same weights,

.. math::

    M_b = (s_{b'} / s_b)^2 M_{b'} + \frac{r_b}{n_b} \Delta_b
        = \sum_{\text{sampled } c \le b} (s_c / s_b)^2 \frac{r_c}{n_c} \Delta_c,

so the untrained start does not decide. ``average="evidence"`` (the default) predicts at the
averaged means when :math:`M > ` :data:`bayeslayers.evidence.STRONG` nats (a strong Bayes
factor, as for the temperature and the memory), at the posterior means otherwise; ``True``
always at the averaged means, ``False`` keeps no average.

Training never reads the average: every batch is still learned from the filter's posterior,
whose covariances also give the hidden layers' uncertainty around the averaged means in the
``"linearized"`` and ``"sample"`` predictives. The head's state is not averaged: its
posterior is exact given the features it saw.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bayeslayers.conjugate import WeightPosterior
from bayeslayers.engine import NetSpec, NetState, forward
from bayeslayers.evidence import STRONG

__all__ = [
    "SAMPLE_ROWS",
    "STRIDE",
    "Average",
    "in_use",
    "predictive_state",
    "sampled",
    "score",
    "update",
]


#: A batch of ``n`` rows is sampled once in ``max(STRIDE, ceil(SAMPLE_ROWS / n))`` batches.
STRIDE = 4
SAMPLE_ROWS = 16


class Average(NamedTuple):
    r"""The running average of the hidden means and its evidence (module docstring).

    Attributes
    ----------
    means : tuple of ndarray
        :math:`\bar W_l`, one per hidden layer (input side first), shaped as its mean.
    rows : int
        Rows :math:`s` seen since the average started.
    weight : float
        Effective rows :math:`Z` of the recursion (at most ``rows``).
    margin : float
        :math:`M`, the weighted log Bayes factor of the averaged means over the posterior means.
    batches : int
        Batches seen since the average started (the systematic sample counts them).
    last : int
        ``rows`` at the last sampled batch.
    """

    means: tuple[np.ndarray, ...]
    rows: int
    weight: float
    margin: float
    batches: int
    last: int


def sampled(average: Average, n_rows: int) -> bool:
    """Whether the next batch, of ``n_rows`` rows, is in the systematic sample."""
    stride = max(STRIDE, -(-SAMPLE_ROWS // n_rows))
    return average.batches % stride == 0


def score(spec: NetSpec, state: NetState, X: np.ndarray, T: np.ndarray) -> float | None:
    """The batch's log predictive density at the averaged means (before the batch's update);
    ``None`` where no average is kept yet, none is to be decided or the batch is not sampled."""
    avg: Average | None = state.average
    if spec.average != "evidence" or avg is None or not sampled(avg, len(X)):
        return None
    return spec.head.log_predictive(state.head, forward(spec, _at(state, avg), X)[0], T)


def update(
    spec: NetSpec, state: NetState, n_rows: int, log_predictive: float, averaged: float | None
) -> Average | None:
    """``state.average`` after a batch of ``n_rows`` rows (``state``: after the batch's update).

    ``log_predictive`` and ``averaged`` are the batch's log predictive densities at the
    posterior means and at the averaged means before the update (``averaged``: from
    :func:`score`, ``None`` if not scored). ``None`` where no average is kept.
    """
    if not spec.average or not state.hidden:
        return None
    avg: Average | None = state.average
    if avg is None:
        means = tuple(p.mean.copy() for p in state.hidden)
        return Average(means, n_rows, float(n_rows), 0.0, 1, n_rows)
    rows = avg.rows + n_rows
    if not sampled(avg, n_rows):
        return avg._replace(rows=rows, batches=avg.batches + 1)
    since = rows - avg.last
    decay = (avg.last / rows) ** 2
    weight = decay * avg.weight + since
    step = since / weight
    means = tuple(m + step * (p.mean - m) for m, p in zip(avg.means, state.hidden, strict=True))
    delta = 0.0 if averaged is None else since / n_rows * (averaged - log_predictive)
    return Average(means, rows, weight, decay * avg.margin + delta, avg.batches + 1, rows)


def in_use(spec: NetSpec, average: Average | None) -> bool:
    """Whether predictions use the averaged means (module docstring)."""
    if average is None or not spec.average:
        return False
    return spec.average is True or average.margin > STRONG


def predictive_state(spec: NetSpec, state: NetState) -> NetState:
    """``state`` with the hidden means replaced by their average where :func:`in_use`."""
    if not in_use(spec, state.average):
        return state
    return state._replace(hidden=_at(state, state.average))


def _at(state: NetState, average: Average) -> tuple[WeightPosterior, ...]:
    """The hidden posteriors of ``state`` with their means replaced by ``average``'s."""
    return tuple(p._replace(mean=m) for p, m in zip(state.hidden, average.means, strict=True))
