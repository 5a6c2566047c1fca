r"""The scale of the hidden layers' weight uncertainty in a regression predictive, by evidence.

The linearized predictive (:mod:`bayeslayers.predictive`) adds to the head's own predictive
variance :math:`v^{head}` (its weights and the noise) the hidden layers' part,

.. math::

    \operatorname{Var} f = v^{head} + \tau\, v^{hid}, \qquad
    v^{hid}_k = \sum_l \sum_j \big(x_l^\top \Sigma_{l,j}\, x_l\big)
        \big(g_{l,j}\, \partial f_k / \partial h_{l,j}\big)^2
    \quad (:func:`hidden_variance`).

The hidden posteriors are conditioned on pseudo-observations, not on the labels, so
:math:`\tau = 1` is a modelling choice rather than a consequence of the model. It is wrong
where the inputs are wide beside the rows seen: a direction of the input space no training
row spans keeps its prior variance, :math:`x^\top \Sigma x \approx \lVert x \rVert^2 / \alpha`
for a new row, and :math:`v^{hid}` then dwarfs everything else (1,000 standardized features
and 100 rows: predictive sd 30 times the noise, benchmarks/RESULTS.md).

With ``hidden_scale="evidence"`` (the default) :math:`\tau` is chosen from :data:`SCALES`,
octaves from :math:`2^{-16}` to 4, by the prequential evidence of the regression targets,
as the one-hot head's temperature is (:mod:`bayeslayers.heads.gaussian`): before a batch
updates the network, each of its rows is scored by its one-step-ahead Student-t predictive
at every :math:`\tau`, and after a scored batch at :math:`s` rows

.. math::

    L(\tau) = \sum_b \Big(\frac{s_b}{s}\Big)^2 \frac{r_b}{n_b}
        \sum_{i \in b} \log t_\nu\big(y_i \mid m_i, v^{head}_i + \tau v^{hid}_i\big),

over the scored batches :math:`b` so far (:math:`n_b` rows, :math:`s_b` rows seen after it,
standing for the :math:`r_b` rows since the previous scored one), the weights discounting
the untrained start without a time scale. The first batch and then one batch in
:data:`~bayeslayers.heads.gaussian.SCORE_STRIDE` are scored (a systematic sample: scoring a
batch costs about a third of a small network's training step, which reuses its forward
pass). The scale in use is the grid value
closest to 1 (in :math:`\log \tau`) whose evidence is within
:data:`bayeslayers.evidence.STRONG` nats of the best: the posterior is used as it is unless
the evidence strongly rejects it, and then moved only as far as the evidence demands. The
nearest, not the best: with ``init="samples"`` the first layer is built from the first
call's rows, so the rows scored in the pass have their own unit among the features and are
predicted better without the hidden variance than new rows are; on such data the evidence
is flat below some :math:`\tau` and its arg max at the end of the grid is far too
confident on new rows, where the edge of the plateau is not.

Training never reads :math:`\tau`: it scales the linearized predictive only, the one it is
scored with (``hidden="linearized"``, the regressors' default, and the ArviZ export's
predictive groups with ``hidden="linearized"``, whose hidden draws deviate from the means by
:math:`\sqrt\tau` of the posterior's). ``hidden="sample"`` draws the hidden posteriors as
they are: pushed through the activations, draws scaled up by :math:`\tau > 1` are not what
the linearized evidence scored (a 1-16-1 ReLU network with a fixed noise chose
:math:`\tau = 4`, and its sampled predictive's sd went from 1.2 to 4.5). Classification
heads keep no record (their class probabilities use the hidden means by default).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bayeslayers import conjugate
from bayeslayers.engine import LayerTrace, NetSpec, NetState, top_jacobian
from bayeslayers.evidence import STRONG
from bayeslayers.heads.gaussian import SCORE_STRIDE, student_t_log_density

__all__ = [
    "SCALES",
    "HiddenScale",
    "empty",
    "factor",
    "hidden_variance",
    "kept",
    "sampled",
    "score",
    "update",
]

#: Factors on the hidden layers' predictive variance compared by evidence: octaves from
#: 2**-16 (the hidden layers' uncertainty all but left out) to 4.
SCALES = 2.0 ** np.arange(-16, 3)
_UNIT = int(np.flatnonzero(SCALES == 1.0)[0])


class HiddenScale(NamedTuple):
    r"""The evidence for the scale of the hidden layers' predictive variance (module docstring).

    Attributes
    ----------
    evidence : ndarray of shape (len(SCALES),)
        :math:`L(\tau)` for every :math:`\tau` in :data:`SCALES`.
    rows : int
        Rows :math:`s` seen since the record started.
    last : int
        ``rows`` at the last scored batch.
    batches : int
        Batches seen since the record started (the systematic sample counts them).
    """

    evidence: np.ndarray
    rows: int
    last: int
    batches: int


def empty() -> HiddenScale:
    """A record before any batch: no evidence, no rows."""
    return HiddenScale(np.zeros(len(SCALES)), 0, 0, 0)


def kept(spec: NetSpec) -> bool:
    """Whether a pass keeps the evidence: ``hidden_scale="evidence"``, a regression head and
    at least one hidden layer."""
    return spec.hidden_scale == "evidence" and bool(spec.layers) and not spec.head.is_classifier


def sampled(spec: NetSpec, record: HiddenScale | None) -> bool:
    """Whether the next batch is scored: the evidence is kept (:func:`kept`) and the batch
    is in the systematic sample, the first batch and then one in :data:`SCORE_STRIDE`."""
    return kept(spec) and (record is None or record.batches % SCORE_STRIDE == 0)


def hidden_variance(
    spec: NetSpec,
    hidden: tuple[conjugate.WeightPosterior, ...],
    head_mean: np.ndarray,
    trace: tuple[LayerTrace, ...],
) -> np.ndarray:
    r""":math:`v^{hid}` ``(n, k)`` (module docstring): the tangent-linear pass from the head's
    top hidden rows of ``head_mean`` down through ``trace`` (:func:`bayeslayers.engine.forward`
    of ``hidden``), one term per unit and layer; units that are off (``g = 0``) add nothing."""
    W = top_jacobian(spec, head_mean)
    J = W[None]  # df / dh of the top hidden layer (broadcast over the rows)
    var = np.zeros((len(trace[0].x), W.shape[1]), dtype=W.dtype)
    for step, post in zip(reversed(trace), reversed(hidden), strict=True):
        gJ = step.g[:, :, None] * J  # df / dz
        var += np.einsum("nm,nmk->nk", conjugate.marginal_variance(post, step.x), gJ**2)
        J = post.mean[None, :-1, :] @ gJ
    return var


def score(
    spec: NetSpec, state: NetState, first_pass: tuple[np.ndarray, tuple], T: np.ndarray
) -> np.ndarray:
    """The batch's log predictive density at every :math:`\\tau` of :data:`SCALES` under
    ``state`` (before the batch's update), from ``first_pass``, the
    :func:`~bayeslayers.engine.forward` pass of ``state.hidden`` on the batch's inputs (which
    the training step then reuses)."""
    xh, trace = first_pass
    mean, base = spec.head.predictive(state.head, xh)
    extra = hidden_variance(spec, state.hidden, state.head.post.mean, trace)
    scale2 = base + SCALES[:, None, None] * extra  # (scales, n, k)
    return student_t_log_density(T, mean, scale2, spec.head.dof(state.head)).sum(axis=(1, 2))


def update(
    spec: NetSpec, record: HiddenScale | None, n_rows: int, scores: np.ndarray | None
) -> HiddenScale | None:
    """``record`` after a batch of ``n_rows`` rows with :func:`score`'s ``scores`` (``None``:
    not scored); ``None`` where no evidence is kept."""
    if not kept(spec):
        return None
    if record is None:
        record = empty()
    rows = record.rows + n_rows
    if scores is None:
        return HiddenScale(record.evidence, rows, record.last, record.batches + 1)
    if not np.all(np.isfinite(scores)):
        raise FloatingPointError(
            "the hidden layers' scale evidence of a batch is not finite; the model was left "
            "unchanged"
        )
    decay = (record.last / rows) ** 2
    evidence = decay * record.evidence + (rows - record.last) / n_rows * scores
    return HiddenScale(evidence, rows, rows, record.batches + 1)


def factor(spec: NetSpec, record: HiddenScale | None) -> float:
    r""":math:`\tau` in use: a set ``hidden_scale`` as it is; with ``"evidence"`` the grid
    value nearest 1 whose evidence is within :data:`~bayeslayers.evidence.STRONG` nats of the
    best (module docstring), 1 without a record."""
    if spec.hidden_scale != "evidence":
        return float(spec.hidden_scale)
    if record is None:
        return 1.0
    evidence = record.evidence
    near = np.flatnonzero(evidence >= evidence.max() - STRONG)
    return float(SCALES[near[np.argmin(np.abs(near - _UNIT))]])
