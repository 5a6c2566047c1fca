r"""One pass over the data: the loop that feeds :func:`bayeslayers.engine.train_step`.

A pass visits the rows in ``order``, ``batch_size`` at a time, one
:func:`bayeslayers.engine.train_step` per batch (the head updated once, the hidden layers in
``sweeps`` relinearized backward passes). It works on a private copy of the hidden
posteriors, updated in place, so the caller's state is never touched and a failure anywhere
leaves it as it was. The pass also sums the prequential log evidence: each batch's log
predictive density under the state *before* its first update,

.. math::

    \log \hat p(y_{1:n}) = \sum_b \log p(y_b \mid x_b, \mathcal{D}_{<b}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from bayeslayers import engine

if TYPE_CHECKING:
    from bayeslayers.network import Network

__all__ = ["FitProgress", "run_pass"]


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
    """``state`` with every hidden posterior's arrays copied (safe to update in place)."""
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
        state, info = engine.train_step(
            spec, state, X[rows], T[rows], fraction, sweeps=sweeps, overwrite=True
        )
        log_evidence += info.log_predictive  # the one-step-ahead density, before the update
        if on_batch is not None:
            on_batch(state, min(start + batch_size, len(order)))
    return state, log_evidence
