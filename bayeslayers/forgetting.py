r"""Stabilized forgetting of the hidden layers: a memory for targets that keep moving.

A hidden layer's pseudo-targets are not a stationary regression problem: they come from the
layers above, which keep learning. A static-weight posterior counts a target made by the
untrained network of the first rows as much as one made by the network of the last, and its
gain decays as :math:`1/n`, so after a few hundred rows per weight the layer hardly moves
(``benchmarks/RESULTS.md``, "Probes"). ``Network(memory=mu)`` models the weights as drifting
instead: before each update on :math:`n` (tempered) rows, each hidden posterior forgets
the fraction :math:`1 - \lambda` of its information,

.. math::

    \lambda = e^{-n / M}, \qquad M = \mu D,

a memory of :math:`M` rows, :math:`\mu` rows per weight of the layer (:math:`D` = fan-in +
1). The forgotten information is replaced by the prior's (stabilized forgetting, Kulhavý &
Zarrop 1993), in precision form,

.. math::

    \Sigma^{-1} \leftarrow \lambda \Sigma^{-1} + (1 - \lambda)\, \alpha I,

with :math:`\alpha` the prior precision: a direction no row informs stays at its prior
instead of winding up, as plain exponential forgetting (:math:`\Sigma / \lambda`) does; the
mean is kept. For ``"diag"`` this is elementwise; for ``"unit"``,
:math:`\Sigma_j \leftarrow (\lambda I + (1 - \lambda)\alpha \Sigma_j)^{-1} \Sigma_j`, one
:math:`D \times D` solve per unit (the two factors commute), symmetrized. ``"shared"`` cannot
forget per unit and takes no memory. No memory (``None``) is the static posterior.

Forgetting is the predict step of the drifting-weight model, applied between batches
(:func:`forget_state`, called by :func:`bayeslayers.training.run_pass`). To spread its cost
(a ``"unit"`` layer solves one :math:`D \times D` system per unit), layer :math:`l` forgets
every :math:`k_l = \max(1, \lfloor M_l / 8 \rfloor)` rows of the stream, each time the
rows since its last forgetting (:func:`period`): every step then forgets at most
:math:`1 - e^{-1/8}` (12 %) of the information, and the schedule depends only on the global
row count, so a stream of ``partial_fit`` calls forgets as one ``fit`` does.

A memory is a prior on how fast the targets move, not a learning rate, and it is chosen by
evidence (``memory="evidence"``): on the first call from the prior, if its first
:data:`RACE_FRACTION` of the rows outnumber the longest candidate memory of every layer (on
fewer, a memory has forgotten nothing; :func:`race_rows`), one candidate per entry of
:data:`CANDIDATES` makes the pass over those rows, from
the same prior, in the same order, and is scored by its prequential log evidence over those
rows (``Network.log_evidence_``, a one-step-ahead density of every row). The static
posterior (``None``) is the simpler hypothesis and is kept unless a memory's evidence beats
it strongly, by a Bayes factor above :math:`e^{3} \approx 20`
(:data:`bayeslayers.evidence.STRONG`); the chosen candidate
continues over the rest of the pass and the others are dropped. The winner has made exactly
one pass; the race costs ``(len(CANDIDATES) - 1) * RACE_FRACTION`` of a pass. With
``head_prior="evidence"`` it runs under the head prior that race chose.

Forgetting is not additive: the natural-parameter merges of :mod:`bayeslayers.merging` and
:mod:`bayeslayers.distributed` add up what shards learned from one broadcast state, which
holds for networks without a memory (``Network``'s default; a network set up by
:meth:`~bayeslayers.Network.initialize`, as the distributed fit does, keeps none).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from bayeslayers._validation import check_real
from bayeslayers.conjugate import WeightPosterior

if TYPE_CHECKING:  # engine imports defaults, which imports this module
    from bayeslayers.engine import NetSpec, NetState

__all__ = [
    "CANDIDATES",
    "FORGETS",
    "RACE_FRACTION",
    "check_memory",
    "forget",
    "forget_state",
    "period",
    "race_rows",
]

#: Candidate memories of ``memory="evidence"``, in rows per weight: the static posterior
#: (``None``) against a short memory, the two hypotheses a short race can tell apart.
CANDIDATES: tuple[float | None, ...] = (None, 4.0)
#: Share of the first call's rows on which the candidates race.
RACE_FRACTION = 0.125


def _forget_diag(var: np.ndarray, lam: float, precision: float) -> np.ndarray:
    return 1.0 / (lam / var + (1.0 - lam) * precision)


def _forget_unit(cov: np.ndarray, lam: float, precision: float) -> np.ndarray:
    eye = np.eye(cov.shape[-1], dtype=cov.dtype)
    out = np.linalg.solve(lam * eye + (1.0 - lam) * precision * cov, cov)
    return 0.5 * (out + np.swapaxes(out, -1, -2))


#: Structures that can forget, and how (the module docstring).
FORGETS = {"unit": _forget_unit, "diag": _forget_diag}


def check_memory(memory: object, structures: Sequence[str]) -> None:
    """``memory`` is ``None``, ``"evidence"`` or a positive number, and if it is a number every
    structure in ``structures`` can forget (``TypeError`` / ``ValueError`` naming the argument
    otherwise). With ``"evidence"``, layers that cannot forget keep no memory."""
    if memory is None or (isinstance(memory, str) and memory == "evidence"):
        return
    if isinstance(memory, bool) or not isinstance(memory, int | float | np.number):
        raise TypeError(
            f"memory must be None, 'evidence' or a number of rows per weight, got {memory!r}"
        )
    check_real(memory, "memory", 0, low_open=True)
    cannot = sorted(set(structures) - set(FORGETS))
    if cannot:
        raise ValueError(
            f"memory needs hidden layers whose covariance can forget ({sorted(FORGETS)}), "
            f"got {cannot}: use another covariance or memory=None"
        )


def forget(
    post: WeightPosterior, n_rows: float, memory: float | None, precision: float
) -> WeightPosterior:
    """``post`` after forgetting ``n_rows`` rows' worth at ``memory`` rows per weight.

    Returns ``post`` itself when ``memory`` is ``None``, else a new posterior (``post`` is
    not modified) with the same mean.
    """
    if memory is None:
        return post
    lam = float(np.exp(-n_rows / (memory * post.mean.shape[0])))
    cov = FORGETS[post.structure](post.cov, lam, precision)
    return post._replace(cov=cov.astype(post.cov.dtype, copy=False))


def period(memory: float, n_in: int) -> int:
    """Rows between two forgettings of a layer with ``n_in``-wide design rows."""
    return max(1, int(memory * n_in / 8))


def forget_state(
    spec: NetSpec, state: NetState, seen: int, n_rows: int, fraction: float
) -> NetState:
    """``state`` with every hidden layer forgotten before a batch of ``n_rows`` rows.

    ``seen`` rows of the stream came before the batch; layer ``l`` forgets the rows of every
    multiple of :func:`period` that the batch crosses, tempered by ``fraction``. The state is
    returned unchanged without a memory (``spec.memory is None``).
    """
    if spec.memory is None:
        return state
    hidden = list(state.hidden)
    for i, post in enumerate(hidden):
        if post.structure not in FORGETS:
            continue
        k = period(spec.memory, post.mean.shape[0])
        due = (seen + n_rows) // k - seen // k
        if due:
            hidden[i] = forget(post, due * k * fraction, spec.memory, spec.prior_precision)
    return state._replace(hidden=tuple(hidden))


def race_rows(n_rows: int, batch_size: int, n_ins: Sequence[int]) -> int:
    """Rows of the memory race: :data:`RACE_FRACTION` of ``n_rows``, in whole batches.

    0 (no memory race) unless they outnumber the longest candidate memory of the layers with
    ``n_ins``-wide design rows: on fewer rows a memory has forgotten nothing, and the
    candidates could not differ.
    """
    rows = min(n_rows, int(np.ceil(RACE_FRACTION * n_rows / batch_size)) * batch_size)
    longest = max(m for m in CANDIDATES if m is not None) * max(n_ins, default=0)
    return rows if n_ins and rows > longest else 0
