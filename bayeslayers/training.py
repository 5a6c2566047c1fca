r"""One pass over the data: the loop that feeds :func:`bayeslayers.engine.train_step`.

A pass visits the rows in ``order``, ``batch_size`` at a time, one
:func:`bayeslayers.engine.train_step` per batch (the head updated once, the hidden layers in
``sweeps`` relinearized backward passes). It works on a private copy of the hidden
posteriors, updated in place, so the caller's state is never touched and a failure anywhere
leaves it as it was. The pass also sums the prequential log evidence: each batch's log
predictive density under the state *before* its first update,

.. math::

    \log \hat p(y_{1:n}) = \sum_b \log p(y_b \mid x_b, \mathcal{D}_{<b}).

With a memory (``spec.memory``) the hidden layers forget between batches
(:func:`bayeslayers.forgetting.forget_state`); :func:`race` chooses what has no closed form
(the memory, ``memory="evidence"``; the head's prior on its top hidden inputs,
``head_prior="evidence"``) by that evidence on a pass's first rows. With ``spec.average``
the pass also keeps the iterate average of the hidden means and its own evidence
(:mod:`bayeslayers.averaging`), and with a regression head the evidence for the scale of the
hidden layers' predictive variance (:mod:`bayeslayers.hidden_scale`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from bayeslayers import averaging, engine, forgetting, hidden_scale
from bayeslayers.evidence import STRONG

if TYPE_CHECKING:
    from bayeslayers.network import Network

__all__ = [
    "Candidate",
    "FitProgress",
    "prior_race_rows",
    "race",
    "race_candidates",
    "run_pass",
]


class FitProgress(NamedTuple):
    """What a ``Network.fit`` callback is told after every batch.

    Attributes
    ----------
    pass_index : int
        Index of the current pass, from 0.
    rows_done : int
        Rows of this pass already used.
    n_rows : int
        Rows in one pass.
    snapshot : callable
        ``snapshot()`` returns a fitted copy of the network holding the posterior so far
        (copies the posteriors, so call it only where it is needed, e.g. at checkpoints).
    """

    pass_index: int
    rows_done: int
    n_rows: int
    snapshot: Callable[[], Network]


def private_copy(state: engine.NetState) -> engine.NetState:
    """``state`` with every hidden posterior's arrays copied (safe to update in place; the
    average's arrays are never updated in place)."""
    hidden = tuple(p._replace(mean=p.mean.copy(), cov=p.cov.copy()) for p in state.hidden)
    return state._replace(hidden=hidden)


def run_pass(
    spec: engine.NetSpec,
    state: engine.NetState,
    X: np.ndarray,
    T: np.ndarray,
    *,
    order: np.ndarray,
    batch_size: int,
    fraction: float,
    sweeps: int | str = 1,
    seen: int = 0,
    progress: bool = False,
    on_batch: Callable[[engine.NetState, int], None] | None = None,
) -> tuple[engine.NetState, float]:
    """One pass over ``(X[order], T[order])`` from ``state`` (module docstring).

    Parameters
    ----------
    spec, state
        The network's static description and its state before the pass (not modified).
    X, T : ndarray
        Inputs and the head's working targets.
    order : ndarray of int
        The order in which the rows are visited.
    batch_size : int
        Rows per update.
    fraction : float
        Tempering fraction :math:`c` of the pass.
    sweeps : int or "auto"
        Backward passes of the hidden layers per batch (:func:`bayeslayers.engine.train_step`).
    seen : int
        Rows of the stream before this pass: with a memory (``spec.memory``), the hidden
        layers forget between batches on the schedule of
        :func:`bayeslayers.forgetting.forget_state`.
    progress : bool
        Show a tqdm progress bar.
    on_batch : callable, optional
        Called as ``on_batch(state, rows_done)`` after every batch; ``state`` is the pass's
        working copy (copy it before keeping it).

    Returns
    -------
    (NetState, float)
        The state after the pass and the pass's prequential log evidence.
    """
    starts = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, total=len(starts), desc="bayeslayers", unit="batch")
    state = private_copy(state)
    log_evidence = 0.0
    for start in starts:
        rows = order[start : start + batch_size]
        state = forgetting.forget_state(spec, state, seen + start, len(rows), fraction)
        averaged = averaging.score(spec, state, X[rows], T[rows])
        scales, first_pass = None, None
        if hidden_scale.sampled(spec, state.hidden_scale):
            first_pass = engine.forward(spec, state.hidden, X[rows])
            scales = hidden_scale.score(spec, state, first_pass, T[rows])
        state, info = engine.train_step(
            spec,
            state,
            X[rows],
            T[rows],
            fraction,
            sweeps=sweeps,
            overwrite=True,
            first_pass=first_pass,
        )
        average = averaging.update(spec, state, len(rows), info.log_predictive, averaged)
        scale = hidden_scale.update(spec, state.hidden_scale, len(rows), scales)
        state = state._replace(average=average, hidden_scale=scale)
        log_evidence += info.log_predictive  # the one-step-ahead density, before the update
        if on_batch is not None:
            on_batch(state, min(start + batch_size, len(order)))
    return state, log_evidence


#: A candidate of :func:`race`: the fields of :class:`~bayeslayers.engine.NetSpec` it
#: changes, and the nats its evidence must beat the others' by.
Candidate = tuple[dict, float]


def race_candidates(spec: engine.NetSpec, state: engine.NetState, setting: str) -> list[Candidate]:
    """The candidates of a first call's race of ``setting``; the first is the reference.

    ``"memory"``: every memory of :data:`bayeslayers.forgetting.CANDIDATES`, the static
    posterior (``None``) without handicap and every other one handicapped by
    :data:`bayeslayers.evidence.STRONG` nats (the simpler hypothesis is kept unless beaten
    strongly), where a hidden layer can forget. ``"head_prior"``: the flat and the fan-in
    prior of the head's top hidden inputs (:func:`bayeslayers.engine.top_scale`), two priors
    of equal standing (no handicap; the flat one wins ties), where the network has hidden
    layers. An empty list: nothing to race.
    """
    if setting == "memory":
        if not any(p.structure in forgetting.FORGETS for p in state.hidden):
            return []
        return [({"memory": m}, 0.0 if m is None else STRONG) for m in forgetting.CANDIDATES]
    if setting == "head_prior":
        if not spec.layers:
            return []
        return [({"head_prior": "flat"}, 0.0), ({"head_prior": "fan_in"}, 0.0)]
    raise ValueError(f"setting must be 'memory' or 'head_prior', got {setting!r}")


def prior_race_rows(spec: engine.NetSpec, n_rows: int, n_features: int) -> int:
    """Rows of the head prior's race: all ``n_rows`` of the first call where they are no
    more than the head's inputs (:func:`bayeslayers.engine.head_width`), else none.

    Where the rows outnumber the head's weights the data outweigh its prior, and the flat
    prior is kept. On fewer rows the two priors differ most, and only their evidence over
    the whole call tells them apart: on a curve that the hidden layer must learn the flat
    prior's evidence overtakes the fan-in prior's only after the first rows, so a race on a
    share of the rows picks the fan-in prior where it loses (notebook 13).
    """
    return n_rows if n_rows <= engine.head_width(spec, n_features) else 0


def race(
    spec: engine.NetSpec,
    state: engine.NetState,
    X: np.ndarray,
    T: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    fraction: float,
    sweeps: int | str,
    candidates: list[Candidate],
) -> tuple[dict, engine.NetState, float]:
    """The race of ``candidates`` (:func:`race_candidates`) on the rows ``X[order]``.

    Every candidate, ``spec`` with its changes, makes the pass over ``X[order]`` from
    ``state`` (the prior); returns the winner's changes, its state after those rows and its
    prequential log evidence. The winner has the largest evidence less its handicap; ties go
    to the earlier candidate. A candidate whose update fails numerically drops out, except
    the first (the reference), whose failure is the network's own. Without rows or
    candidates nothing runs: ``({}, state, 0.0)``.
    """
    if not len(order) or not candidates:
        return {}, state, 0.0
    best: tuple[float, dict, engine.NetState, float] | None = None
    for i, (changes, handicap) in enumerate(candidates):
        try:
            out, evidence = run_pass(
                spec._replace(**changes),
                state,
                X,
                T,
                order=order,
                batch_size=batch_size,
                fraction=fraction,
                sweeps=sweeps,
            )
        except (np.linalg.LinAlgError, FloatingPointError):
            if not i:
                raise
            continue
        score = evidence - handicap
        if best is None or score > best[0]:
            best = (score, changes, out, evidence)
    assert best is not None  # the reference either ran or raised
    return best[1], best[2], best[3]
