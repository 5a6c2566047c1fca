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
forget per unit and takes no memory. No memory (``None``, the default) is the static
posterior. A memory is a prior on how fast the targets move, not a learning rate: choose it
by the prequential evidence of candidates fitted side by side
(:func:`bayeslayers.selection.select_by_evidence`), which ranked memories as held-out data did
(``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import numpy as np

from bayeslayers.conjugate import WeightPosterior

__all__ = ["FORGETS", "check_memory", "forget"]


def _forget_diag(var: np.ndarray, lam: float, precision: float) -> np.ndarray:
    return 1.0 / (lam / var + (1.0 - lam) * precision)


def _forget_unit(cov: np.ndarray, lam: float, precision: float) -> np.ndarray:
    eye = np.eye(cov.shape[-1], dtype=cov.dtype)
    out = np.linalg.solve(lam * eye + (1.0 - lam) * precision * cov, cov)
    return 0.5 * (out + np.swapaxes(out, -1, -2))


#: Structures that can forget, and how (the module docstring).
FORGETS = {"unit": _forget_unit, "diag": _forget_diag}


def check_memory(memory, structures) -> None:
    """``memory`` is ``None`` or a positive number, and every structure in ``structures``
    can forget if it is a number (``ValueError`` naming the argument otherwise)."""
    if memory is None:
        return
    if isinstance(memory, bool) or not isinstance(memory, int | float | np.number):
        raise TypeError(f"memory must be None or a number of rows per weight, got {memory!r}")
    if not (np.isfinite(memory) and memory > 0):
        raise ValueError(f"memory must be a finite number > 0 of rows per weight, got {memory!r}")
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
