r"""Iterate averaging of the hidden layers' means, used to predict where the evidence says so.

One pass moves the hidden layers by pseudo-observations whose targets keep changing, so the
posterior mean after the last batch carries the noise of the last targets (the last iterate
of a stochastic approximation), while the head's statistics were accumulated from features
all along the trajectory. The average of the trajectory of means,

.. math::

    \bar W_l = \frac{\sum_b w_b W_l^{(b)}}{\sum_b w_b}, \qquad w_b = n_b\, s_b^2,

over the batches :math:`b` (:math:`n_b` rows, :math:`s_b` rows of the stream seen after it,
:math:`W_l^{(b)}` layer :math:`l`'s posterior mean after it), is polynomial-decay averaging
(Polyak & Juditsky 1992; Shamir & Zhang 2013): each batch weighs by the square of its place
in the stream, the weighting of the one-hot head's temperature evidence, with no time scale
(the last third of a stream holds :math:`1 - (2/3)^3 = 70\%` of the weight). It is kept as
a scale-free recursion: with the effective rows
:math:`Z_b = (s_{b-1} / s_b)^2 Z_{b-1} + n_b`,

.. math::

    \bar W \leftarrow \bar W + \frac{n_b}{Z_b} \big(W^{(b)} - \bar W\big).

Whether predictions use it is decided by the prequential evidence of the labels. Before each
batch (after the first), the head's log predictive density of the batch is computed at the
averaged means as well as at the posterior means, and the difference
:math:`\Delta_b = \log p(y_b \mid \bar W) - \log p(y_b \mid W)` accumulates with the same
weights,

.. math::

    M_b = (s_{b-1} / s_b)^2 M_{b-1} + \Delta_b
        = \sum_{b' \le b} (s_{b'} / s_b)^2 \Delta_{b'},

so the untrained start does not decide. As for the temperature
(:mod:`bayeslayers.heads.gaussian`), the batches that start within the first
:data:`~bayeslayers.heads.gaussian.SCORE_ALL` rows are all scored; after them one batch in
:data:`~bayeslayers.heads.gaussian.SCORE_STRIDE` is, its :math:`\Delta_b` standing for that
many (a systematic sample, which keeps the cost of scoring a small share of the pass's even
at one row per batch). ``average="evidence"`` (the default) predicts at the
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

from bayeslayers.engine import NetSpec, NetState, forward
from bayeslayers.evidence import STRONG
from bayeslayers.heads.gaussian import SCORE_ALL, SCORE_STRIDE

__all__ = ["Average", "in_use", "predictive_state", "score", "update"]


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
        Batches seen since the average started (the scoring's systematic sample counts them).
    """

    means: tuple[np.ndarray, ...]
    rows: int
    weight: float
    margin: float
    batches: int


def _scored(average: Average) -> float:
    """How many batches the next batch's score stands for (0: not scored)."""
    if average.rows < SCORE_ALL:
        return 1.0
    return float(SCORE_STRIDE) if average.batches % SCORE_STRIDE == 0 else 0.0


def score(spec: NetSpec, state: NetState, X: np.ndarray, T: np.ndarray) -> float | None:
    """The batch's log predictive density at the averaged means (before the batch's update);
    ``None`` where no average is kept yet or none is to be decided."""
    avg: Average | None = state.average
    if spec.average != "evidence" or avg is None or not _scored(avg):
        return None
    hidden = tuple(p._replace(mean=m) for p, m in zip(state.hidden, avg.means, strict=True))
    return spec.head.log_predictive(state.head, forward(spec, hidden, X)[0], T)


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
        return Average(means, n_rows, float(n_rows), 0.0, 1)
    rows = avg.rows + n_rows
    decay = (avg.rows / rows) ** 2
    weight = decay * avg.weight + n_rows
    step = n_rows / weight
    means = tuple(m + step * (p.mean - m) for m, p in zip(avg.means, state.hidden, strict=True))
    delta = 0.0 if averaged is None else _scored(avg) * (averaged - log_predictive)
    return Average(means, rows, weight, decay * avg.margin + delta, avg.batches + 1)


def in_use(spec: NetSpec, average: Average | None) -> bool:
    """Whether predictions use the averaged means (module docstring)."""
    if average is None or not spec.average:
        return False
    return spec.average is True or average.margin > STRONG


def predictive_state(spec: NetSpec, state: NetState) -> NetState:
    """``state`` with the hidden means replaced by their average where :func:`in_use`."""
    if not in_use(spec, state.average):
        return state
    means = state.average.means
    return state._replace(
        hidden=tuple(p._replace(mean=m) for p, m in zip(state.hidden, means, strict=True))
    )
