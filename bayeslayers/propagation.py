r"""Targets for the layer below: the damped minimum-norm correction of its output.

After a layer is updated to :math:`W_{new}`, its input :math:`a` (the output of the layer
below) should move by the smallest :math:`\delta` that makes the updated layer reproduce its
target. With the residual :math:`e = h^* - (g \circ (x W_{new}) + b)` over the units that took
part, and :math:`J = W_{new}[:d] \operatorname{diag}(g)` restricted to the entries of :math:`a`
that can move,

.. math::

    \delta = e\, (J^\top J + \lambda I)^{-1} J^\top = e\, J^\top (J J^\top + \lambda I)^{-1},
    \qquad a^* = a + \delta .

With :math:`\lambda = 0` this is the minimum-norm solution :math:`\delta = e J^+` (the original
post's :math:`a + W (W^\top W)^{-1} (Y - a W)^\top` when ``J`` has full column rank).

Rows that cannot move and columns that did not take part are passed as zeros in ``J`` (and
``e``); zero rows and columns leave the solution on the remaining block unchanged, so a whole
batch is solved at once with stacked matrices (one batched LAPACK call, no loop over rows).
"""

from __future__ import annotations

import numpy as np

__all__ = ["solve_targets"]


def solve_targets(
    E: np.ndarray, J: np.ndarray, damping: float = 1e-2, clip: float | None = None
) -> np.ndarray:
    """Minimum-norm input corrections :math:`\\delta_i` with :math:`\\delta_i J_i \\approx e_i`.

    Parameters
    ----------
    E : ndarray of shape (n, k)
        Residuals of the updated layer (zero where a unit did not take part).
    J : ndarray of shape (n, d, k) or (d, k)
        Jacobian of the layer's linearized output with respect to its input, per row, with
        zero rows for inputs that cannot move and zero columns for units that did not take part.
    damping : float
        :math:`\\lambda \\ge 0`. Zero gives the pseudo-inverse solution.
    clip : float, optional
        If given, every entry of :math:`\\delta` is clipped to ``[-clip, clip]``.

    Returns
    -------
    ndarray of shape (n, d)
        The corrections :math:`\\delta`.
    """
    if damping < 0:
        raise ValueError(f"damping must be >= 0, got {damping}")
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be > 0 or None, got {clip}")
    E = np.asarray(E)
    J = np.broadcast_to(J, (E.shape[0], *np.shape(J)[-2:]))
    d, k = J.shape[-2:]
    if damping == 0:
        delta = np.einsum("nk,nkd->nd", E, np.linalg.pinv(J))
    elif k <= d:
        gram = np.swapaxes(J, -1, -2) @ J  # (n, k, k)
        gram[:, np.arange(k), np.arange(k)] += damping
        coef = np.linalg.solve(gram, E[..., None])[..., 0]
        delta = np.einsum("nk,ndk->nd", coef, J)
    else:
        gram = J @ np.swapaxes(J, -1, -2)  # (n, d, d)
        gram[:, np.arange(d), np.arange(d)] += damping
        rhs = np.einsum("ndk,nk->nd", J, E)
        delta = np.linalg.solve(gram, rhs[..., None])[..., 0]
    if clip is not None:
        delta = np.clip(delta, -clip, clip)
    return delta
