r"""Choosing what cannot be learned in closed form by prequential evidence.

Width, depth, damping or sweeps have no conjugate update. Candidates that differ in them can
still be compared on the same single pass: every candidate sees every chunk once, in the same
order, and accumulates its prequential log evidence

.. math::

    \log p(y_{1:n}) \approx \sum_{i=1}^{n} \log p(y_i \mid y_{1:i-1}),

each row scored by the candidate's one-step-ahead predictive before it learns from it
(``Network.log_evidence_``). For a linear model this is exactly the log marginal likelihood, so
the choice is type-II maximum likelihood; for a network it is Dawid's prequential criterion,
which needs no held-out split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from bayeslayers._validation import check_count, check_features
from bayeslayers.network import Network

__all__ = ["Selection", "select_by_evidence"]


class Selection(NamedTuple):
    """Result of :func:`select_by_evidence`.

    Attributes
    ----------
    best : Network
        The fitted candidate with the highest log evidence.
    chosen : int
        Its position in the candidates.
    log_evidence : ndarray of shape (n_candidates,)
        Every candidate's prequential log evidence.
    networks : list of Network
        Every fitted candidate, in the given order.
    """

    best: Network
    chosen: int
    log_evidence: np.ndarray
    networks: list[Network]


def select_by_evidence(
    candidates: Sequence[Network],
    X,
    Y,
    *,
    batch_size: int = 1,
    chunk_size: int = 256,
    classes=None,
) -> Selection:
    """Fit every candidate in one pass over the same rows and pick the best by evidence.

    Parameters
    ----------
    candidates : sequence of Network
        Unfitted networks (they are fitted in place).
    X, Y : array-like
        The data, visited once in the given order, ``chunk_size`` rows at a time; every
        candidate learns each chunk before the next is read (the stream form).
    batch_size : int
        Rows per update in every candidate.
    chunk_size : int
        Rows handed to all candidates at a time.
    classes : array-like, optional
        All class labels (classification heads), as for ``partial_fit``.

    Returns
    -------
    Selection
    """
    networks = list(candidates)
    if not networks:
        raise ValueError("candidates must hold at least one Network")
    for i, net in enumerate(networks):
        if not isinstance(net, Network):
            raise TypeError(f"candidates[{i}] must be a Network, got {type(net).__name__}")
        if net.is_fitted:
            raise ValueError(f"candidates[{i}] is fitted already: pass unfitted networks")
    check_count(batch_size, "batch_size")
    check_count(chunk_size, "chunk_size")
    n = len(check_features(X, None, "float64"))
    X, Y = np.asarray(X), np.asarray(Y)
    if classes is None and networks[0].head.is_classifier:
        classes = np.unique(Y)
    for start in range(0, n, chunk_size):
        rows = slice(start, start + chunk_size)
        for net in networks:
            net.partial_fit(X[rows], Y[rows], batch_size=batch_size, classes=classes)
    evidence = np.array([net.log_evidence_ for net in networks])
    best = int(np.argmax(evidence))
    return Selection(networks[best], best, evidence, networks)
