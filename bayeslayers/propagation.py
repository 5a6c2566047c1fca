r"""Target strategies for the backward step: how a hidden layer gets its share of the error.

After the head is updated, the hidden layers are updated from the top down, each towards a
target :math:`h^* = h + \delta` for its output, as linear-Gaussian pseudo-observations

.. math::

    h^*_{ij} - b_{ij} = g_{ij}\, x_i^\top w_j + \varepsilon_{ij}, \qquad
    \varepsilon_{ij} \sim \mathcal N(0, \sigma_l^2 / \omega_{ij}^2),

through the one conjugate core (:func:`bayeslayers.conjugate.update`), with the layer's
pseudo-noise :math:`\sigma_l^2` (learned by :func:`bayeslayers.engine.learn_noise` unless
set). A strategy chooses :math:`\delta` and the per-observation weights :math:`\omega` (one
unless said): the weights enter the core by scaling the slopes and targets of each
pseudo-observation, :math:`g \to \omega g`, :math:`h^* - b \to \omega (h^* - b)`, which is
exactly a per-(row, unit) noise :math:`\sigma_l^2 / \omega^2` for the ``"unit"`` and ``"diag"``
structures (``"shared"`` shrinks its one covariance with the unscaled rows, as always).

A strategy is a :class:`TargetStrategy` record of three small hooks in :data:`TARGETS`,
chosen by name (``Network(targets=...)``):

``start(head, head_state, xh, T, fraction) -> Upper``
    What the updated head hands to the top hidden layer.
``target(upper, layer, fraction, damping, clip) -> Target``
    The correction :math:`\delta` and weights :math:`\omega` of one layer (:class:`LayerView`:
    its input, output, linearization and posterior before the update).
``down(upper, layer, target, new) -> Upper``
    What the layer, updated to ``new``, hands to the layer below.

The shipped strategies (their math in their functions' docstrings):

``"min_norm"`` (the reference)
    The damped minimum-norm correction of the layer's output that makes the *updated layer
    above* reproduce its own target (the original post's formula), layer by layer.
``"gauss_newton"`` (the default of ``Network`` and the estimators)
    The damped minimum-norm correction that makes the *network output* reproduce its target,
    through the Jacobian of the output with respect to the layer's output, chained through
    every updated layer above (the Gauss-Newton target that target propagation approximates,
    Meulemans et al. 2020). Identical to ``"min_norm"`` for the top hidden layer.
``"ekf"``
    The node-decoupled extended Kalman filter (Puskorius & Feldkamp 1991) in the
    pseudo-observation form: each unit's target and noise come from the output residual, the
    output Jacobian and the innovation covariance of the output, which holds the head's noise
    and the posterior weight uncertainty of every layer above, so a layer learns most where
    the layers above are confident. Parameter-free (no damping).

Cost per sample, with :math:`k` outputs and :math:`m_l` units in layer :math:`l`: ``"min_norm"``
solves one :math:`\min(k, m_{l+1})`-square damped system per layer; ``"gauss_newton"`` and
``"ekf"`` solve a :math:`\min(k, m_l)`-square system and carry the output Jacobian
(:math:`m_{l-1} m_l k` per layer); ``"ekf"`` also forms one :math:`k \times k` innovation
covariance per layer and the marginal variances :math:`x^\top \Sigma_j x` of every unit,
under the prior of the step and, for every layer but the first, under the update
(:func:`bayeslayers.conjugate.marginal_variance`: :math:`m D^2` per row for ``"unit"``,
about as much as the layer's update; :math:`m D` for ``"diag"``).

The solver (:func:`solve_targets`)
-----------------------------------
With a residual :math:`e` and a Jacobian :math:`J` (rows: the entries of :math:`h` that can
move, columns: the outputs), the damped minimum-norm correction is

.. math::

    \delta = e\, (J^\top J + \lambda I)^{-1} J^\top = e\, J^\top (J J^\top + \lambda I)^{-1}.

With :math:`\lambda = 0` this is :math:`\delta = e J^+` (the original post's
:math:`a + W (W^\top W)^{-1} (Y - a W)^\top` when ``J`` has full column rank). It is also the
posterior mean of :math:`\delta` under the prior :math:`\delta \sim \mathcal N(0, \tau^2 I)`
and the observation :math:`e = \delta J + \mathcal N(0, \lambda \tau^2 I)`.

Rows that cannot move and columns that did not take part are zero rows and columns of ``J``:
they leave the solution on the remaining block unchanged (zero rows of :math:`\delta`). They are
given as masks, ``rows`` and the column scales ``cols`` (the slopes :math:`g`), so that the
per-row Jacobians :math:`J_i = \operatorname{diag}(\text{rows}_i)\, J\,
\operatorname{diag}(\text{cols}_i)` need not be formed. Small layers are solved for the whole
batch at once with stacked matrices (one batched LAPACK call, no loop over rows); wide layers
row by row on the block that can move only, which for a ReLU layer with about half its units
active is about 8x less work than the zero-padded system.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from bayeslayers import conjugate
from bayeslayers.conjugate import WeightPosterior
from bayeslayers.heads import Gaussian

__all__ = [
    "TARGETS",
    "LayerView",
    "Target",
    "TargetStrategy",
    "Upper",
    "check_targets",
    "solve_targets",
]

#: ``min(d, k)`` above which each row is solved on its own compacted block.
_COMPACT_MIN = 128


class Upper(NamedTuple):
    r"""What the layers above hand to a hidden layer (rows ``n``, its units ``m``, ``k`` columns).

    Attributes
    ----------
    E : ndarray of shape (n, k)
        Residual to explain: of the updated layer above (``"min_norm"``) or of the network's
        linear predictor with every layer above updated (``"gauss_newton"``, ``"ekf"``).
    J : ndarray of shape (n, m, k) or (m, k)
        Jacobian of what ``E`` is the residual of with respect to this layer's output ``h``.
    cols : ndarray of shape (n, k), optional
        Column scales of ``J`` (the slopes of the layer above; ``None``: none).
    S : ndarray of shape (n, k, k), optional
        Innovation covariance of ``E`` from everything above this layer (``"ekf"``).
    """

    E: np.ndarray
    J: np.ndarray
    cols: np.ndarray | None = None
    S: np.ndarray | None = None


class LayerView(NamedTuple):
    r"""One hidden layer as the backward step sees it (its forward trace and its prior).

    Attributes
    ----------
    x : ndarray of shape (n, d + 1)
        Input with the bias column.
    h : ndarray of shape (n, m)
        Output at the means.
    g, b : ndarray of shape (n, m)
        Slope and offset of the activation (``g = 0``: the unit does not take part).
    post : WeightPosterior
        The layer's posterior before its update.
    """

    x: np.ndarray
    h: np.ndarray
    g: np.ndarray
    b: np.ndarray
    post: WeightPosterior


class Target(NamedTuple):
    r"""A layer's target :math:`h^* = h + \delta` and pseudo-observation weights.

    Attributes
    ----------
    delta : ndarray of shape (n, m)
        The correction :math:`\delta`.
    weight : ndarray of shape (n, m), optional
        :math:`\omega_{ij} \ge 0`: the pseudo-observation of unit ``j`` in row ``i`` has noise
        :math:`\sigma_l^2 / \omega_{ij}^2` (zero: it does not take part). ``None``: all one.
    """

    delta: np.ndarray
    weight: np.ndarray | None = None


class TargetStrategy(NamedTuple):
    """The hooks that make one backward strategy (one record of :data:`TARGETS`).

    Attributes
    ----------
    name : str
        The registry key (``Network(targets=...)``).
    start : callable
        ``start(head, head_state, xh, T, fraction) -> Upper`` from the updated head
        (``xh``: the head's inputs with the bias column, ``T``: its working targets).
    target : callable
        ``target(upper, layer, fraction, damping, clip) -> Target``.
    down : callable
        ``down(upper, layer, target, new) -> Upper`` for the layer below, ``new`` the layer's
        updated posterior.
    """

    name: str
    start: Callable[[Any, Any, np.ndarray, np.ndarray, float], Upper]
    target: Callable[[Upper, LayerView, float, float, float | None], Target]
    down: Callable[[Upper, LayerView, Target, WeightPosterior], Upper]


class _Registry(dict[str, TargetStrategy]):
    """Name -> :class:`TargetStrategy`; its ``repr`` lists the names, as error messages show it."""

    def __repr__(self) -> str:
        return repr(tuple(self))


def check_targets(targets: str) -> TargetStrategy:
    """The record of ``targets``, or a ValueError listing the registered names."""
    if not isinstance(targets, str) or targets not in TARGETS:
        raise ValueError(f"targets must be one of {TARGETS}, got {targets!r}")
    return TARGETS[targets]


# ------------------------------------------------------------------------------ the solver
def solve_targets(
    E: np.ndarray,
    J: np.ndarray,
    damping: float = 1e-2,
    clip: float | None = None,
    *,
    rows: np.ndarray | None = None,
    cols: np.ndarray | None = None,
) -> np.ndarray:
    r"""Minimum-norm input corrections :math:`\delta_i` with :math:`\delta_i J_i \approx e_i`.

    Parameters
    ----------
    E : ndarray of shape (n, k)
        Residuals of the updated layer (zero where a unit did not take part).
    J : ndarray of shape (n, d, k) or (d, k)
        Jacobian of the layer's linearized output with respect to its input, per row or shared.
    damping : float
        :math:`\lambda \ge 0`. Zero gives the pseudo-inverse solution.
    clip : float, optional
        If given, every entry of :math:`\delta` is clipped to ``[-clip, clip]``.
    rows : ndarray of bool, shape (n, d), optional
        Inputs that can move; the others get a zero correction (zero rows of :math:`J_i`).
    cols : ndarray of shape (n, k), optional
        Scale of each column of :math:`J_i` (e.g. the slopes :math:`g`; zero for a unit that
        did not take part).

    Returns
    -------
    ndarray of shape (n, d)
        The corrections :math:`\delta`.
    """
    if damping < 0:
        raise ValueError(f"damping must be >= 0, got {damping}")
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be > 0 or None, got {clip}")
    E = np.asarray(E)
    n, (d, k) = E.shape[0], np.shape(J)[-2:]
    J = np.broadcast_to(J, (n, d, k))
    if min(d, k) <= _COMPACT_MIN:
        if rows is not None:
            J = np.where(rows[:, :, None], J, 0.0)
        if cols is not None:
            J = J * cols[:, None, :]
        delta = _solve(E, J, damping)
    else:
        delta = np.zeros((n, d), dtype=np.result_type(E, J))
        for i in range(n):
            r = np.arange(d) if rows is None else np.flatnonzero(rows[i])
            c = np.arange(k) if cols is None else np.flatnonzero(cols[i])
            Ji = J[i][np.ix_(r, c)]
            if cols is not None:
                Ji *= cols[i, c]
            delta[i, r] = _solve(E[i : i + 1, c], Ji[None], damping)[0]
    if clip is not None:
        delta = np.clip(delta, -clip, clip)
    return delta


def _solve(E: np.ndarray, J: np.ndarray, damping: float) -> np.ndarray:
    r""":math:`e_i (J_i^\top J_i + \lambda I)^{-1} J_i^\top` for stacked ``J`` (n, d, k).

    Through the smaller of the two Gram matrices (``k x k`` or ``d x d``).
    """
    d, k = J.shape[-2:]
    if damping == 0:
        return np.einsum("nk,nkd->nd", E, np.linalg.pinv(J))
    if k <= d:
        gram = np.swapaxes(J, -1, -2) @ J  # (n, k, k)
        gram[:, np.arange(k), np.arange(k)] += damping
        coef = np.linalg.solve(gram, E[..., None])[..., 0]
        return np.einsum("nk,ndk->nd", coef, J)
    gram = J @ np.swapaxes(J, -1, -2)  # (n, d, d)
    gram[:, np.arange(d), np.arange(d)] += damping
    rhs = np.einsum("ndk,nk->nd", J, E)
    return np.linalg.solve(gram, rhs[..., None])[..., 0]


# ------------------------------------------------------------------------------ min_norm
def _head_start(head, head_state, xh, T, fraction) -> Upper:
    E, J = head.residual(head_state, xh, T)
    return Upper(E, J)


def _min_norm_target(upper: Upper, layer: LayerView, fraction, damping, clip) -> Target:
    r"""The seed's layer-by-layer target.

    With the residual :math:`e` of the updated layer above (``upper.E``; for the top hidden
    layer the head's residual) and the Jacobian :math:`J = W_{new}[:d] \operatorname{diag}(g)`
    of that layer's linearized output (``upper.J``, ``upper.cols``), over the entries of
    :math:`h` that can move (:math:`g \ne 0`):

    .. math::

        \delta = e\, J^\top (J J^\top + \lambda I)^{-1}, \qquad \omega = 1 .
    """
    movable = layer.g != 0
    return Target(solve_targets(upper.E, upper.J, damping, clip, rows=movable, cols=upper.cols))


def _min_norm_down(upper: Upper, layer: LayerView, target: Target, new: WeightPosterior) -> Upper:
    """The residual of the updated layer on its own target, and its Jacobian."""
    x, h, g, b, _ = layer
    W = new.mean
    E = np.where(g != 0, h + target.delta - (g * (x @ W) + b), 0.0)
    return Upper(E, W[:-1], g)


# -------------------------------------------------------------------------- gauss_newton
def _gauss_newton_target(upper: Upper, layer: LayerView, fraction, damping, clip) -> Target:
    r"""The damped Gauss-Newton target of the layer's output.

    With the residual :math:`e` of the network's linear predictor after the layers above were
    updated (linearized, ``upper.E``) and the Jacobian :math:`A = \partial f / \partial h`
    of that predictor with respect to this layer's output, chained through the updated means
    of every layer above (``upper.J``, rows: the entries that can move),

    .. math::

        \delta = e\, A^\top (A A^\top + \lambda I)^{-1}, \qquad \omega = 1 ,

    the damped minimum-norm change of :math:`h` that moves the *output* onto its target. For
    the top hidden layer :math:`A` is the head's Jacobian and this is ``"min_norm"``. Below,
    ``"min_norm"`` also spends the layer's capacity on parts of the target above that the
    output does not see (the null space of the upper Jacobian); the Gauss-Newton target does
    not (Meulemans et al. 2020: target propagation approximates this step and can fail on
    non-invertible layers).
    """
    movable = layer.g != 0
    return Target(solve_targets(upper.E, upper.J, damping, clip, rows=movable))


def _chain(upper: Upper, layer: LayerView, target: Target, new: WeightPosterior):
    r"""Output residual after the layer's update and the output Jacobian of the layer below.

    :math:`e \leftarrow e - \Delta h\, A` with :math:`\Delta h = g \circ (x W_{new}) + b - h`
    the linearized change of the layer's output (:math:`h = g \circ (x W_{old}) + b` by the
    definition of the linearization), and :math:`A_{below} = W_{new}[:d] \operatorname{diag}
    (g) A` per row. (The old posterior is not read: with ``overwrite`` it is the new one.)
    """
    x, h, g, b, _ = layer
    J = np.broadcast_to(upper.J, (len(x), *np.shape(upper.J)[-2:]))
    dh = g * (x @ new.mean) + b - h
    E = upper.E - (dh[:, None, :] @ J)[:, 0]
    J_below = new.mean[:-1] @ (g[:, :, None] * J)  # (n, d, k), one batched BLAS product
    return E, J, J_below


def _gauss_newton_down(upper: Upper, layer: LayerView, target: Target, new) -> Upper:
    E, _, J_below = _chain(upper, layer, target, new)
    return Upper(E, J_below)


# ----------------------------------------------------------------------------------- ekf
def _ekf_start(head, head_state, xh, T, fraction) -> Upper:
    r"""The head's residual, Jacobian and innovation covariance.

    For a Gaussian head, :math:`S_i = \operatorname{diag}(x_i^\top \Sigma_k x_i +
    \sigma^2 / c)` (the updated head's weight variance plus its tempered noise); a GLM head's
    residual is whitened by its curvature, so :math:`S_i = I / c` (its weight uncertainty is
    not counted).
    """
    E, J = head.residual(head_state, xh, T)
    n, k = E.shape
    if isinstance(head, Gaussian):
        var = head.predictive(head_state, xh)[1]
        noise = head.noise_variance(head_state)
        diag = var - noise + noise / fraction
    else:
        diag = np.full((n, k), 1.0 / fraction, dtype=E.dtype)
    S = np.zeros((n, k, k), dtype=E.dtype)
    S[:, np.arange(k), np.arange(k)] = diag
    return Upper(E, J, None, S)


#: Units whose output Jacobian gives :math:`p = a^\top S^{-1} a` below this fraction of the
#: largest in the row take no part (no information, and :math:`1 / p` would overflow).
_EKF_TINY = 1e-12


def _ekf_target(upper: Upper, layer: LayerView, fraction, damping, clip) -> Target:
    r"""The node-decoupled EKF step as one pseudo-observation per unit.

    With the output residual :math:`e` (``upper.E``), the output Jacobian rows
    :math:`a_j = \partial f / \partial h_j` (``upper.J``, zero for units that cannot move), the
    variance :math:`c_j = g_j^2 x^\top \Sigma_j x` of each unit's output under its posterior
    before the update, and the innovation covariance of the output

    .. math::

        S = S_{up} + \sum_j c_j a_j a_j^\top

    (``upper.S``: the head's noise and the posterior uncertainty of every layer above), the
    decoupled EKF gives unit ``j`` the gain :math:`K_j = \Sigma_j g_j x\, a_j^\top S^{-1}`.
    The conjugate update on the target :math:`h_j + \delta_j` with noise :math:`s_j` gives
    :math:`\Sigma_j g_j x\, \delta_j / (c_j + s_j)` and :math:`\Sigma_j \leftarrow \Sigma_j -
    \Sigma_j g_j^2 x x^\top \Sigma_j / (c_j + s_j)`; both agree with the EKF for

    .. math::

        p_j = a_j^\top S^{-1} a_j, \qquad \delta_j = \frac{a_j^\top S^{-1} e}{p_j}, \qquad
        s_j = \frac{1}{p_j} - c_j = \frac{1}{a_j^\top S_{-j}^{-1} a_j},

    :math:`S_{-j} = S - c_j a_j a_j^\top` (Sherman-Morrison), so :math:`s_j > 0`. The weight
    is :math:`\omega_j = 1 / \sqrt{c\, s_j}` (``c`` the tempering fraction, which the core
    divides the noise by; :math:`S` is already tempered): with the layer's pseudo-noise
    :math:`\sigma_l^2 = 1` the update is exactly the EKF step, and a learned
    :math:`\sigma_l^2` is the factor that calibrates the innovations
    (:func:`bayeslayers.engine.learn_noise`). Each unit explains the residual in
    proportion to its share of :math:`S`: the output moves by :math:`(S - S_{up}) S^{-1} e`,
    never past :math:`e`, and where the layers above are uncertain (large :math:`S_{up}`)
    the layer learns little. ``damping`` is not used.
    """
    x, _, g, _, post = layer
    n, m = g.shape
    A = np.broadcast_to(upper.J, (n, m, upper.E.shape[1]))
    A = np.where((g != 0)[:, :, None], A, 0.0)
    c = g * g * conjugate.marginal_variance(post, x)
    S = upper.S + _outer_sum(c, A)
    L = np.linalg.cholesky(S)
    # Whitened Jacobian and residual: B = L^{-1} A^T, u = L^{-1} e.
    rhs = np.concatenate([np.swapaxes(A, 1, 2), upper.E[:, :, None]], axis=2)
    sol = np.linalg.solve(L, rhs)
    B, u = sol[:, :, :m], sol[:, :, m]
    p = np.einsum("nkm,nkm->nm", B, B)
    q = np.einsum("nkm,nk->nm", B, u)
    take = p > _EKF_TINY * p.max(axis=1, keepdims=True)
    take &= p > 0
    safe = np.where(take, p, 1.0)
    delta = np.where(take, q / safe, 0.0)
    # s = (1 - c p) / p, with 1 - c p = 1 / (1 + c q_-) > 0 floored against rounding.
    rest = np.maximum(1.0 - c * p, np.finfo(p.dtype).eps)
    weight = np.where(take, np.sqrt(safe / (fraction * rest)), 0.0)
    if clip is not None:
        delta = np.clip(delta, -clip, clip)
    return Target(delta, weight)


def _ekf_down(upper: Upper, layer: LayerView, target: Target, new: WeightPosterior) -> Upper:
    r"""Chained residual and Jacobian (as ``"gauss_newton"``) and the innovation covariance.

    :math:`S_{below} = S_{up} + \sum_j c'_j a_j a_j^\top` with :math:`c'_j = g_j^2 x^\top
    \Sigma'_j x` under the layer's *updated* posterior.
    """
    E, J, J_below = _chain(upper, layer, target, new)
    g = layer.g
    A = np.where((g != 0)[:, :, None], J, 0.0)
    c = g * g * conjugate.marginal_variance(new, layer.x)
    return Upper(E, J_below, None, upper.S + _outer_sum(c, A))


def _outer_sum(c: np.ndarray, A: np.ndarray) -> np.ndarray:
    r""":math:`\sum_j c_{ij} a_{ij} a_{ij}^\top` per row, ``(n, k, k)``.

    ``c`` is ``(n, m)``, ``A`` is ``(n, m, k)``.
    """
    return np.swapaxes(A * c[:, :, None], 1, 2) @ A


#: The backward strategies by name (``Network(targets=...)``).
TARGETS: dict[str, TargetStrategy] = _Registry(
    min_norm=TargetStrategy("min_norm", _head_start, _min_norm_target, _min_norm_down),
    gauss_newton=TargetStrategy(
        "gauss_newton", _head_start, _gauss_newton_target, _gauss_newton_down
    ),
    ekf=TargetStrategy("ekf", _ekf_start, _ekf_target, _ekf_down),
)
