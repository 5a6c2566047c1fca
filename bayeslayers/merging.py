r"""Merging networks trained independently from one prior (federated and data-parallel steps).

Conjugate updates add up in natural parameters. A weight column with prior
:math:`\mathcal N(\mu_0, \Sigma_0)` conditioned on data sets :math:`k = 1..K` separately gives
posteriors with precisions :math:`\Lambda_k = \Sigma_k^{-1}` and precision-weighted means
:math:`h_k = \Lambda_k \mu_k`; the posterior given all of them is

.. math::

    \Lambda = \Lambda_0 + \sum_k (\Lambda_k - \Lambda_0), \qquad
    h = h_0 + \sum_k (h_k - h_0),

exactly, for any split and order, when the update is exact Bayesian linear regression given
the targets (the structures' :attr:`~bayeslayers.conjugate.Structure.exact`). So a network
without hidden layers (a Gaussian or one-hot head on fixed features) merges to the posterior of
one sequential fit. With hidden layers each shard's targets depend on the body it trained, so
the merge is exact given those targets only: the product of the shards' experts.

Each head state type has a :class:`HeadMerge` record in :data:`HEAD_MERGES`:

``GaussianState``
    Weights by the structure's merge hook. A learned noise (Normal-Inverse-Gamma, covariance
    relative to :math:`\sigma^2`) has :math:`a = a_0 + N/2` and
    :math:`b = b_0 + \tfrac12 (S_{tt} + q_0 - q)`, :math:`S_{tt} = c \sum t^2`,
    :math:`q = \sum_j \mu_j^\top \Lambda_j \mu_j`, so with :math:`\Delta q = q - q_0`

    .. math::

        a = a_0 + \sum_k \Delta a_k, \qquad
        b = b_0 + \sum_k \Delta b_k + \tfrac12 \Big(\sum_k \Delta q_k - \Delta q\Big),

    exact (the last term is the part of the residual sum of squares between shards). With
    ``noise_memory="evidence"`` the full-memory copy merges this way and its prequential
    log evidence, which telescopes to
    :math:`\log\Gamma(a) - \log\Gamma(a_0) - \tfrac N2 \log 2\pi + a_0 \log b_0 - a \log b`, is
    recomputed exactly. A copy with finite memory :math:`M` is approximate (and depends on the
    order of the rows even in one sequential fit): it keeps the prior's statistics decayed by
    all :math:`N` observations plus each shard's own, decayed by the observations of the
    shards after it as if they had run one after the other, the between-shard term weighted
    by :math:`(M / N)(1 - e^{-N/M})` (the share of :math:`N` evenly spread observations the
    memory keeps), and adds the shards' evidence gains. So merged and sequential fits can pick
    different memories, and differ in the predictive standard deviation.
    A one-hot head's temperature evidence (:class:`~bayeslayers.heads.gaussian.Calibration`)
    is approximate too: each shard's rows are scored by its own predictions; the prior's
    weighted evidence :math:`L_0` after :math:`N_0` rows decays to the merged count
    :math:`N`, and each shard adds what it scored beyond the prior's, with the weights it
    gave its rows, :math:`L = (N_0 / N)^2 L_0 + \sum_k (L_k - (N_0 / N_k)^2 L_0)` (one
    network merged gives its own evidence back). So merged and sequential fits can use
    different temperatures, and so differ in the class probabilities.
``GLMState``
    Weights by the structure's merge hook (for the Laplace / ADF fits this is the usual
    product-of-experts approximation, not the sequential result); an ADVI head is flushed
    first, so no buffered rows are counted twice.
``ChoiceState``
    Each readout by its own rule; the readouts' prequential evidence adds the shards' gains
    (each shard's rows scored by its own predictions, as for the temperature).

A head that re-estimates its prior precision :math:`\alpha` by evidence (``prior_evidence``)
re-bases its posterior, :math:`\Lambda \leftarrow \Lambda + (\alpha' - \alpha) I`; each
shard's delta leaves its own re-basing out, so the merged posterior counts the prior once and
the shards' data once; it is re-based on the shards' :math:`\alpha` averaged by rows seen (one
network merged gives it back), and later rows re-estimate it at the doublings of the rows
seen, which the merged state counts over every shard. A head with one precision per block of
rows (``blocks``) does the same block by block, :math:`\Lambda \leftarrow \Lambda +
\operatorname{diag}(\alpha' - \alpha)`. The noise statistics accumulated under
a changing :math:`\alpha` depend on when it changed, even in one sequential fit, so with
``prior_evidence`` (or ``noise_memory="evidence"``) the merged noise is close to, not equal
to, the sequential one.

The prequential log evidence (``Network.log_evidence_``) of each shard is its data's log
marginal likelihood under the common prior where the prequential sum is exact (no hidden
layers, batch size 1, one output); the log evidence of all the data then follows from the
merged natural parameters. With a fixed noise :math:`\sigma^2` (:math:`\Lambda` absolute) and
with :math:`\ell = \sum_j \log|\Lambda_j|`,

.. math::

    \log p(\mathcal D) = \sum_k \log p(\mathcal D_k)
        + \tfrac12 \Big(\sum_k \Delta\ell_k - \Delta\ell\Big)
        - \tfrac12 \Big(\sum_k \Delta q_k - \Delta q\Big),

and with the Normal-Inverse-Gamma noise (:math:`\Lambda` relative) the last term is replaced
by :math:`G(a, b) - \sum_k G(a_k, b_k)`, :math:`G(a, b) = \log\Gamma(a) - \log\Gamma(a_0)
+ a_0 \log b_0 - a \log b`. Elsewhere (hidden layers, classification heads, noise memories,
evidence-updated prior precision) the shards' evidence is added up as it is.

Hidden layers' pseudo-noise statistics (``Network.noise_``) and ``n_samples_seen_`` add up as
deltas. The evidence for the hidden layers' predictive scale (``Network.hidden_scale_``,
:mod:`bayeslayers.hidden_scale`) merges as the temperature's does: the prior's weighted
evidence after :math:`s_0` rows decays to the merged rows :math:`s`, and each shard adds
what it scored beyond the prior's, :math:`L = (s_0 / s)^2 L_0 + \sum_k (L_k - (s_0 / s_k)^2
L_0)` (one network merged gives its own evidence back), so merged and sequential fits can
use different scales.

The iterate average of the hidden means (``Network.average_``,
:mod:`bayeslayers.averaging`) is not merged: each shard's average
:math:`\bar W_k = \sum_b w_b W^{(b)}_k / \sum_b w_b` is taken along its own trajectory,
whose means :math:`W^{(b)}_k` are the common prior's plus that shard's data only, so no
combination of the shards' averages is the average of one sequential trajectory through the
merged posteriors (nor are their evidence margins, each scored by its own predictions).
The merged network has ``average_ = None``: it predicts at the merged posterior means (so one
network merged gives its predictions at its posterior means back), and a later
``partial_fit`` starts a fresh average from them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.special import gammaln

from bayeslayers import conjugate, hidden_scale
from bayeslayers.conjugate import NaturalDelta
from bayeslayers.heads import ChoiceState, GaussianState, GLMState
from bayeslayers.heads.gaussian import NOISE_MEMORIES, Calibration, score_pending
from bayeslayers.hidden_scale import HiddenScale
from bayeslayers.network import Network

__all__ = [
    "HEAD_MERGES",
    "HeadMerge",
    "NetworkDelta",
    "apply_deltas",
    "merge",
    "network_delta",
]


class NetworkDelta(NamedTuple):
    """What one shard learned since the prior, in additive (natural) form.

    Attributes
    ----------
    hidden : tuple of NaturalDelta
        Per hidden layer, input side first.
    head : object
        The head state's delta (:attr:`HeadMerge.delta`).
    noise : tuple of (float, float)
        Per hidden layer, the change of its pseudo-noise statistics ``(a, b)``.
    n_samples : int
        Rows the shard trained on.
    log_evidence : float
        The change of the shard's prequential log evidence (``Network.log_evidence_``).
    hidden_scale : tuple of (ndarray, int, int) or None
        What the shard's scored batches added to the evidence for the hidden layers'
        predictive scale, the rows and the batches it saw (``None`` where it keeps none).
    """

    hidden: tuple[NaturalDelta, ...]
    head: Any
    noise: tuple[tuple[float, float], ...]
    n_samples: int
    log_evidence: float = 0.0
    hidden_scale: tuple[np.ndarray, int, int] | None = None


class HeadMerge(NamedTuple):
    """How one head state type is merged.

    Attributes
    ----------
    delta : callable
        ``delta(prior_state, state) -> object`` (picklable; what a worker sends back).
    apply : callable
        ``apply(head, prior_state, deltas) -> (state, evidence)``: the merged state and the
        correction to add to the sum of the shards' log evidence (0 where none is known);
        raises :class:`numpy.linalg.LinAlgError` if the merged posterior is not positive
        definite.
    """

    delta: Callable[[Any, Any], Any]
    apply: Callable[[Any, Any, Sequence[Any]], tuple[Any, float]]


# --------------------------------------------------------------------------- Gaussian heads
class _GaussianDelta(NamedTuple):
    post: NaturalDelta
    a: float
    b: float
    memory: np.ndarray  # the shard's memory rows (a, b, evidence); (0, 3) without memories
    alpha: float | np.ndarray  # the shard's prior precision(s) (NaN for states without one)
    seen: float
    calibration: tuple[np.ndarray, float, int] | None  # evidence gained, rows scored, offered


def _gaussian_delta(prior: GaussianState, state: GaussianState) -> _GaussianDelta:
    post = conjugate.natural_delta(prior.post, state.post)
    alpha0, alpha = _alpha(prior), _alpha(state)
    if np.all(np.isfinite(alpha0)) and np.all(np.isfinite(alpha)) and _moved(alpha, alpha0):
        # The shard re-based its prior precision (Lambda += diag(alpha - alpha0)): keep only
        # what its data added, so the merge counts the prior once.
        post = post._replace(precision=post.precision - _rebase(prior, alpha0, alpha).precision)
    return _GaussianDelta(
        post,
        float(state.a - prior.a),
        float(state.b - prior.b),
        np.array(state.memory, dtype=np.float64, copy=True),
        alpha,
        float(getattr(state, "seen", 0.0) - getattr(prior, "seen", 0.0)),
        _calibration_delta(
            getattr(prior, "calibration", None), getattr(state, "calibration", None)
        ),
    )


def _decayed_gain(base: np.ndarray, base_rows: float, evidence: np.ndarray, rows: float):
    r"""What a shard's weighted evidence ``evidence`` after ``rows`` rows added to the prior's
    ``base`` after ``base_rows``: :math:`L_k - (s_0 / s_k)^2 L_0` (module docstring; the
    weights are the squared places in the stream)."""
    decay = (base_rows / rows) ** 2 if rows else 1.0
    return evidence - decay * base


def _decayed_sum(base: np.ndarray, base_rows: float, gains: Sequence[np.ndarray], total: float):
    r"""The prior's weighted evidence decayed to the merged ``total`` rows plus the shards'
    gains (:func:`_decayed_gain`): :math:`(s_0 / s)^2 L_0 + \sum_k \Delta L_k`."""
    decay = (base_rows / total) ** 2 if total else 1.0
    return decay * base + sum(gains)


def _calibration_delta(
    prior: Calibration | None, state: Calibration | None
) -> tuple[np.ndarray, float, int] | None:
    """What a shard's scored rows added to the temperature evidence (module docstring)."""
    if prior is None or state is None:
        return None
    base, shard = score_pending(prior), score_pending(state)
    gain = _decayed_gain(base.evidence, base.scored, shard.evidence, shard.scored)
    return gain, shard.scored - base.scored, shard.offered - base.offered


def _merge_calibration(
    prior: Calibration, deltas: Sequence[tuple[np.ndarray, float, int]]
) -> Calibration:
    """The prior's temperature evidence decayed to the merged row count, plus the shards'."""
    base = score_pending(prior)
    total = base.scored + sum(rows for _, rows, _ in deltas)
    evidence = _decayed_sum(base.evidence, base.scored, [gain for gain, _, _ in deltas], total)
    offered = base.offered + sum(rows for _, _, rows in deltas)
    return base._replace(evidence=evidence, scored=float(total), offered=int(offered))


def _hidden_scale_delta(
    prior: HiddenScale | None, trained: HiddenScale | None
) -> tuple[np.ndarray, int, int] | None:
    """What a shard's scored batches added to the hidden scale's evidence, as for the
    temperature (module docstring): its evidence less the prior's decayed to its rows."""
    if trained is None:
        return None
    base = hidden_scale.empty() if prior is None else prior
    gain = _decayed_gain(base.evidence, base.rows, trained.evidence, trained.rows)
    return gain, trained.rows - base.rows, trained.batches - base.batches


def _merge_hidden_scale(
    prior: HiddenScale | None, deltas: Sequence[tuple[np.ndarray, int, int]]
) -> HiddenScale | None:
    """The prior's hidden scale evidence decayed to the merged rows, plus the shards' gains
    (the prior's own record where no shard keeps one)."""
    if not deltas:
        return prior
    base = hidden_scale.empty() if prior is None else prior
    total = base.rows + sum(rows for _, rows, _ in deltas)
    evidence = _decayed_sum(base.evidence, base.rows, [gain for gain, _, _ in deltas], total)
    return HiddenScale(evidence, total, total, base.batches + sum(b for _, _, b in deltas))


def _gaussian_apply(
    head, prior: GaussianState, deltas: Sequence[_GaussianDelta]
) -> tuple[GaussianState, float]:
    record = conjugate.STRUCTURES[prior.post.structure]
    parts = [d.post for d in deltas]
    alpha0 = _alpha(prior)
    alpha = _merged_alpha(alpha0, deltas)
    if _moved(alpha, alpha0):
        parts.append(_rebase(prior, alpha0, alpha))
    post, total = record.merge(prior.post, parts)
    between = 0.5 * (sum(d.post.quad for d in deltas) - total.quad)
    learned = any(d.a != 0 for d in deltas)  # a fixed noise keeps a (and b) unchanged
    memory = np.asarray(prior.memory, dtype=np.float64)
    if not len(memory):
        a = prior.a + sum(d.a for d in deltas)
        b = prior.b + sum(d.b for d in deltas) + (between if learned else 0.0)
    else:
        memory = _merge_memories(memory, [d.memory for d in deltas], between)
        a, b = prior.a, prior.b  # recomputed from the merged memories below
    out = prior._replace(post=post, a=float(a), b=float(b), memory=memory)
    if "seen" in type(prior)._fields:
        out = out._replace(seen=prior.seen + sum(d.seen for d in deltas), alpha=alpha)
    out = head.noise_from_memory(out)  # the noise in use, by the head's own rule
    calibration = getattr(prior, "calibration", None)
    gains = [d.calibration for d in deltas if d.calibration is not None]
    if calibration is not None and len(gains) == len(deltas):
        out = out._replace(calibration=_merge_calibration(calibration, gains))
    evidence = 0.0
    if not head.is_classifier and not len(memory) and not _moved(alpha, alpha0):
        # The log marginal likelihood from natural parameters (module docstring).
        logdets = 0.5 * (sum(d.post.logdet for d in deltas) - total.logdet)
        if not learned:
            evidence = logdets - between
        else:
            scalars = [(prior.a + d.a, prior.b + d.b) for d in deltas]
            evidence = (
                logdets
                + _nig(prior.a, prior.b, a, b)
                - sum(_nig(prior.a, prior.b, ak, bk) for ak, bk in scalars)
            )
    return out, float(evidence)


def _nig(a0: float, b0: float, a: float, b: float) -> float:
    """:math:`\\log\\Gamma(a) - \\log\\Gamma(a_0) + a_0 \\log b_0 - a \\log b`."""
    return float(gammaln(a) - gammaln(a0) + a0 * math.log(b0) - a * math.log(b))


def _alpha(state: GaussianState) -> float | np.ndarray:
    """The state's prior precision: a float, or one per block of rows (NaN if it has none)."""
    alpha = getattr(state, "alpha", np.nan)
    return np.asarray(alpha, dtype=np.float64) if np.ndim(alpha) else float(alpha)


def _moved(alpha: float | np.ndarray, alpha0: float | np.ndarray) -> bool:
    """Whether the prior precision changed (NaN never counts as a change)."""
    changed = np.asarray(alpha) != np.asarray(alpha0)
    return bool(np.any(changed & np.isfinite(alpha) & np.isfinite(alpha0)))


def _merged_alpha(
    alpha0: float | np.ndarray, deltas: Sequence[_GaussianDelta]
) -> float | np.ndarray:
    """The shards' prior precisions averaged by rows seen, block by block (``alpha0`` if
    none changed it)."""
    changed = [d for d in deltas if np.all(np.isfinite(d.alpha)) and _moved(d.alpha, alpha0)]
    if not np.all(np.isfinite(alpha0)) or not changed:
        return alpha0
    weight = sum(d.seen for d in deltas)
    if weight <= 0:
        return alpha0
    merged = (
        sum(d.seen * (d.alpha if np.all(np.isfinite(d.alpha)) else alpha0) for d in deltas) / weight
    )
    return np.asarray(merged, dtype=np.float64) if np.ndim(alpha0) else float(merged)


def _rebase(
    prior: GaussianState, alpha0: float | np.ndarray, alpha: float | np.ndarray
) -> NaturalDelta:
    r""":math:`\operatorname{diag}(\alpha - \alpha_0)` (one value per row, from its block)
    in the structure's natural-parameter layout."""
    post = prior.post
    zeros = np.zeros_like(post.mean)
    if np.ndim(alpha0):
        alpha0, alpha = np.repeat(alpha0, prior.blocks), np.repeat(alpha, prior.blocks)
    return conjugate.natural_delta(
        conjugate.init(post.structure, zeros, 1.0 / alpha0),
        conjugate.init(post.structure, zeros, 1.0 / alpha),
    )


def _merge_memories(prior: np.ndarray, shards: Sequence[np.ndarray], between: float):
    """Rows ``(a, b, log evidence)`` per memory of :data:`NOISE_MEMORIES` (module docstring)."""
    for k, s in enumerate(shards):
        if s.shape != prior.shape:
            raise ValueError(f"shard {k} has noise memories of shape {s.shape}, not {prior.shape}")
    memories = np.asarray(NOISE_MEMORIES, dtype=np.float64)
    if len(memories) != len(prior) or not np.isinf(memories).any():
        raise ValueError("the head's noise memories do not match NOISE_MEMORIES")
    full = int(np.flatnonzero(np.isinf(memories))[0])
    counts = [2.0 * (s[full, 0] - prior[full, 0]) for s in shards]  # tempered observations
    total = sum(counts)
    out = np.empty_like(prior)
    later = np.cumsum(counts[::-1])[::-1] - counts  # observations in the shards after k
    for i, M in enumerate(memories):
        out[i, :2] = prior[i, :2] * math.exp(-total / M)
        for s, n, after in zip(shards, counts, later, strict=True):
            out[i, :2] += (s[i, :2] - prior[i, :2] * math.exp(-n / M)) * math.exp(-after / M)
        # The between-shard residuals, spread over the N observations, as this memory keeps
        # them: a fraction (M / N)(1 - exp(-N / M)) of them (all of them for M = inf).
        out[i, 1] += between * (1.0 if math.isinf(M) else -math.expm1(-total / M) * M / total)
        out[i, 2] = prior[i, 2] + sum(s[i, 2] - prior[i, 2] for s in shards)
    a0, b0 = prior[full, :2]
    a, b = out[full, :2]
    out[full, 2] = prior[full, 2] + (
        gammaln(a)
        - gammaln(a0)
        - (a - a0) * math.log(2 * math.pi)
        + a0 * math.log(b0)
        - a * math.log(b)
    )
    return out


# ------------------------------------------------------------------------------- GLM heads
class _GLMDelta(NamedTuple):
    post: NaturalDelta
    n_refits: int


def _glm_delta(prior: GLMState, state: GLMState) -> _GLMDelta:
    refits = getattr(state.fit, "n_refits", 0) - getattr(prior.fit, "n_refits", 0)
    return _GLMDelta(conjugate.natural_delta(prior.post, state.post), int(refits))


def _glm_apply(head, prior: GLMState, deltas: Sequence[_GLMDelta]) -> tuple[GLMState, float]:
    record = conjugate.STRUCTURES[prior.post.structure]
    post, _ = record.merge(prior.post, [d.post for d in deltas])
    fit = prior.fit
    if fit is not None and hasattr(fit, "n_buffered"):  # ADVI: the merged post is the new prior
        if fit.n_buffered:
            raise ValueError("the prior's ADVI head has buffered rows: flush it before merging")
        fit = fit._replace(prior=post, n_refits=fit.n_refits + sum(d.n_refits for d in deltas))
    return prior._replace(post=post, before=post, fit=fit), 0.0


# ---------------------------------------------------------------------------- Choice head
class _ChoiceDelta(NamedTuple):
    teacher: Any
    rival: Any
    log_evidence: np.ndarray


def _choice_delta(prior: ChoiceState, state: ChoiceState) -> _ChoiceDelta:
    return _ChoiceDelta(
        _head_merge(prior.teacher).delta(prior.teacher, state.teacher),
        _head_merge(prior.rival).delta(prior.rival, state.rival),
        np.asarray(state.log_evidence, dtype=np.float64) - prior.log_evidence,
    )


def _choice_apply(head, prior: ChoiceState, deltas: Sequence[_ChoiceDelta]):
    teacher, _ = _head_merge(prior.teacher).apply(
        head.teacher, prior.teacher, [d.teacher for d in deltas]
    )
    rival, _ = _head_merge(prior.rival).apply(head.rival, prior.rival, [d.rival for d in deltas])
    evidence = prior.log_evidence + sum((d.log_evidence for d in deltas), np.zeros(2))
    return ChoiceState(teacher, rival, evidence), 0.0


#: Merge rules by head state type; a third-party head registers its state type here.
HEAD_MERGES: dict[type, HeadMerge] = {
    GaussianState: HeadMerge(_gaussian_delta, _gaussian_apply),
    GLMState: HeadMerge(_glm_delta, _glm_apply),
    ChoiceState: HeadMerge(_choice_delta, _choice_apply),
}


def _head_merge(state) -> HeadMerge:
    rule = HEAD_MERGES.get(type(state))
    if rule is None:
        raise TypeError(
            f"no merge rule for head state {type(state).__name__}: register a HeadMerge in "
            "bayeslayers.merging.HEAD_MERGES"
        )
    return rule


# --------------------------------------------------------------------------------- networks
def _check_compatible(prior: Network, net: Network, name: str) -> None:
    if not isinstance(net, Network):
        raise TypeError(f"{name} must be a Network, got {type(net).__name__}")
    if not net.is_fitted:
        raise ValueError(f"{name} is not fitted")
    if type(net.head) is not type(prior.head) or net.head != prior.head:
        raise ValueError(f"{name} has head {net.head!r}, the prior {prior.head!r}")
    if len(net.layers) != len(prior.layers) or any(
        type(a) is not type(b) or a.units != b.units
        for a, b in zip(net.layers, prior.layers, strict=True)
    ):
        raise ValueError(f"{name} has layers {net.layers!r}, the prior {prior.layers!r}")
    if net.n_features_in_ != prior.n_features_in_:
        raise ValueError(
            f"{name} has {net.n_features_in_} features, the prior {prior.n_features_in_}"
        )
    if net.n_outputs_ != prior.n_outputs_:
        raise ValueError(f"{name} has {net.n_outputs_} outputs, the prior {prior.n_outputs_}")
    if net.spec.skip != prior.spec.skip:
        raise ValueError(
            f"{name} has skip={net.spec.skip} (the head sees the inputs or not), "
            f"the prior skip={prior.spec.skip}"
        )
    if net.spec.head_prior != prior.spec.head_prior:
        raise ValueError(
            f"{name} has head_prior={net.spec.head_prior!r} (the scale of the head's top "
            f"hidden inputs), the prior head_prior={prior.spec.head_prior!r}"
        )
    if net.spec.head_blocks != prior.spec.head_blocks:
        raise ValueError(
            f"{name} has head_blocks={net.spec.head_blocks} (one head prior precision per "
            f"block of inputs or one), the prior head_blocks={prior.spec.head_blocks}"
        )
    classes, prior_classes = getattr(net, "classes_", None), getattr(prior, "classes_", None)
    if (classes is None) != (prior_classes is None) or (
        classes is not None
        and prior_classes is not None
        and not np.array_equal(classes, prior_classes)
    ):
        raise ValueError(f"{name} has classes {classes}, the prior {prior_classes}")
    if net.n_samples_seen_ < prior.n_samples_seen_:
        raise ValueError(
            f"{name} has seen {net.n_samples_seen_} rows, fewer than the prior's "
            f"{prior.n_samples_seen_}: it was not trained from this prior"
        )


def network_delta(prior: Network, trained: Network, *, name: str = "trained") -> NetworkDelta:
    """What ``trained`` (a copy of the fitted ``prior``, trained further) learned since ``prior``.

    A head with pending work (an ADVI buffer) is flushed first, on a copy.

    Raises
    ------
    TypeError, ValueError
        If the networks do not share architecture, features, outputs and classes.
    numpy.linalg.LinAlgError
        If a covariance is not positive definite.
    """
    _check_compatible(prior, prior, "prior")
    _check_compatible(prior, trained, name)
    head_state = trained.head.flush(trained.head_state_)
    hidden = tuple(
        conjugate.natural_delta(p, t)
        for p, t in zip(prior.posteriors_, trained.posteriors_, strict=True)
    )
    noise = tuple(
        (float(t.a - p.a), float(t.b - p.b))
        for p, t in zip(prior.noise_, trained.noise_, strict=True)
    )
    head = _head_merge(prior.head_state_).delta(prior.head_state_, head_state)
    evidence = getattr(trained, "log_evidence_", 0.0) - getattr(prior, "log_evidence_", 0.0)
    return NetworkDelta(
        hidden,
        head,
        noise,
        int(trained.n_samples_seen_ - prior.n_samples_seen_),
        float(evidence),
        _hidden_scale_delta(
            getattr(prior, "hidden_scale_", None), getattr(trained, "hidden_scale_", None)
        ),
    )


def apply_deltas(prior: Network, deltas: Sequence[NetworkDelta]) -> Network:
    """A new network: ``prior`` plus the sum of the shards' deltas (``prior`` is not changed),
    with no iterate average (``average_ = None``, module docstring).

    Raises
    ------
    numpy.linalg.LinAlgError
        If a merged covariance is not positive definite (nothing is changed).
    """
    _check_compatible(prior, prior, "prior")
    for k, d in enumerate(deltas):
        if not isinstance(d, NetworkDelta):
            raise TypeError(f"deltas[{k}] must be a NetworkDelta, got {type(d).__name__}")
        if len(d.hidden) != len(prior.posteriors_) or len(d.noise) != len(prior.noise_):
            raise ValueError(
                f"deltas[{k}] has {len(d.hidden)} hidden layers, the prior {len(prior.posteriors_)}"
            )
    hidden = [
        conjugate.merge(post, [d.hidden[i] for d in deltas])
        for i, post in enumerate(prior.posteriors_)
    ]
    head_state, correction = _head_merge(prior.head_state_).apply(
        prior.head, prior.head_state_, [d.head for d in deltas]
    )
    noise = [
        n._replace(
            a=n.a + sum(d.noise[i][0] for d in deltas), b=n.b + sum(d.noise[i][1] for d in deltas)
        )
        for i, n in enumerate(prior.noise_)
    ]
    out = copy.deepcopy(prior)
    out.posteriors_, out.head_state_, out.noise_ = hidden, head_state, noise
    out.average_ = None  # not merged (module docstring): predictions at the merged means
    scales = [d.hidden_scale for d in deltas if d.hidden_scale is not None]
    out.hidden_scale_ = _merge_hidden_scale(getattr(prior, "hidden_scale_", None), scales)
    out.n_samples_seen_ = prior.n_samples_seen_ + sum(d.n_samples for d in deltas)
    evidence = sum(d.log_evidence for d in deltas) + (correction if deltas else 0.0)
    out.log_evidence_ = getattr(prior, "log_evidence_", 0.0) + evidence
    return out


def merge(prior: Network, networks: Sequence[Network]) -> Network:
    r"""Combine networks trained independently from the same fitted ``prior`` (a federated step).

    Each network in ``networks`` is a copy of ``prior`` trained further (``partial_fit`` on its
    own data), whose head finishes pending work first (``head.flush``, on a copy: an ADVI
    refit, a Gaussian head's evidence update of its prior precision). The result is ``prior``
    plus the sum of what each learned, in natural parameters (module docstring). For a network
    without hidden layers this is exactly the posterior of training one network on all the data
    (with a fixed noise, or a plain Normal-Inverse-Gamma one); with hidden layers, the product
    of the shards' posteriors given their own targets.

    The iterate averages of the hidden means (``average_``) are not merged: the result has
    ``average_ = None`` and predicts at the merged posterior means; a later ``partial_fit``
    starts a fresh average (module docstring).

    Parameters
    ----------
    prior : Network
        The common starting point (fitted, or initialized with ``Network.initialize``).
    networks : sequence of Network
        Networks trained from copies of ``prior``.

    Returns
    -------
    Network
        A new network; ``prior`` and ``networks`` are not changed.

    Raises
    ------
    TypeError, ValueError
        If a network does not match the prior (architecture, features, outputs, classes).
    numpy.linalg.LinAlgError
        If a merged covariance is not positive definite.
    """
    if isinstance(networks, str) or not isinstance(networks, Sequence):
        raise TypeError(f"networks must be a sequence of Network, got {type(networks).__name__}")
    deltas = [network_delta(prior, net, name=f"networks[{k}]") for k, net in enumerate(networks)]
    return apply_deltas(prior, deltas)
