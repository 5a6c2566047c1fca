r"""Class probabilities :math:`P(k = \arg\max_j f_j)` of independent Gaussian outputs.

The one-hot head's predictive (and its log-likelihood in the ArviZ export): a one-dimensional
integral per class, by quadrature centred on the mode of the integrand, in log space.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr, logsumexp

from bayeslayers import _kernels

__all__ = ["argmax_log_proba", "argmax_probabilities"]

_LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)
# Laplace rule (equal variances): 12-node Gauss-Hermite for E[f(X)], X ~ N(0, 1), placed at the
# mode; the log weights carry the factor e^{x^2/2}.
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(12)
_GH_LOGW = np.log(_GH_W / _GH_W.sum()) + 0.5 * _GH_X**2
# Two-sided rule (unequal variances): 16-node Gauss-Legendre on [0, 1], scaled to each side.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(16)
_GL_X, _GL_LOGW = (_GL_X + 1) / 2, np.log(_GL_W / 2)
_DROP = 30.0  # each side ends where the log integrand is this far below its maximum
_REACH_SIDES = float(np.sqrt(2 * _DROP))  # u <= sqrt(2 _DROP), since h'' <= -1
# Factors with b_j / sqrt(1 + a_j^2) above this change log P by less than 1.5e-9 each.
_FAR = 6.0


def _log_integrand(z: np.ndarray, b: np.ndarray, a: np.ndarray):
    r"""``h(z)``, ``h'(z)`` and ``-h''(z)`` of :math:`h(z) = -z^2/2 + \sum_j \log\Phi(a_j z + b_j)`.

    ``z`` is ``(rows,)`` (or ``(rows, nodes)`` for ``h`` alone), ``b`` and ``a`` ``(rows, k)``.
    With :math:`m` the inverse Mills ratio :math:`\varphi/\Phi`,
    :math:`h' = -z + \sum_j a_j m(t_j)` and
    :math:`-h'' = 1 + \sum_j a_j^2 m(t_j)(t_j + m(t_j)) \ge 1`, :math:`t_j = a_j z + b_j`.
    """
    t = z[..., None] * a + b
    lc = log_ndtr(t)
    m = np.exp(-0.5 * t * t - _LOG_SQRT_2PI - lc)
    am = a * m
    curv = 1.0 + (a * am * (t + m)).sum(axis=-1)
    return lc.sum(axis=-1) - 0.5 * z * z, am.sum(axis=-1) - z, curv


def _mode(b: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mode ``z* > 0`` of the log integrand by Newton's method; returns ``z*``, ``h``, ``-h''``.

    ``h'`` is decreasing and convex (``a_j m(a_j z + b_j)`` is, for ``a_j > 0``), so Newton's
    iterates approach the root monotonically after the first step. The start is the root when
    only the factors with ``b_j < 0`` count, each in its linear regime ``m(t) ~ -t``:
    ``z = -sum a_j b_j / (1 + sum a_j^2)`` over those factors.
    """
    behind = b < 0
    z = -np.where(behind, a * b, 0.0).sum(axis=-1) / (1.0 + np.where(behind, a * a, 0.0).sum(-1))
    top, grad, curv = _log_integrand(z, b, a)
    todo = np.arange(len(z))
    for _ in range(100):  # two or three steps for most rows; rows far behind take more
        step = grad[todo] / curv[todo]
        z[todo] += step
        todo = todo[np.abs(step) > 1e-6 * (1.0 + np.abs(z[todo]))]
        if todo.size == 0:
            break
        top[todo], grad[todo], curv[todo] = _log_integrand(z[todo], b[todo], a[todo])
    return z, top, curv  # h and -h'' before the last step, of relative size below 1e-6


def _two_sided_rule(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    r"""Unequal variances: Gauss-Legendre on each side of the mode, out to a drop of 30.

    A slope :math:`a_j \gg 1` makes its factor a sharp step left of the mode, so the integrand
    is skewed and a Laplace width misplaces the nodes. Each side :math:`\pm` is integrated on
    :math:`[0, u_\pm]` with :math:`h(z^* \pm u_\pm) = h(z^*) - 30`, found by Newton's method
    from the Laplace guess :math:`u = \sqrt{60}\,\sigma` (:math:`h` is concave, so after the
    first step the iterates approach the root monotonically from beyond it). The rest of the
    mass is below :math:`e^{-30}` of the total.
    """
    z, top, curv = _mode(b, a)
    out = []
    for side in (1.0, -1.0):
        u = _REACH_SIDES / np.sqrt(curv)  # the root if h were quadratic; one step overshoots
        todo = np.arange(len(z))
        for _ in range(100):
            h, grad, _ = _log_integrand(z[todo] + side * u[todo], b[todo], a[todo])
            step = (h - top[todo] + _DROP) / (side * grad)
            u[todo] -= step
            todo = todo[np.abs(step) > 1e-6 * u[todo]]
            if todo.size == 0:
                break
        zk = z[:, None] + side * u[:, None] * _GL_X  # (rows, nodes)
        lk = log_ndtr(zk[:, :, None] * a[:, None, :] + b[:, None, :]).sum(axis=-1) - 0.5 * zk**2
        out.append(np.log(u) + logsumexp(lk + _GL_LOGW, axis=-1))
    return np.logaddexp(*out) - _LOG_SQRT_2PI


def _log_orthant(b: np.ndarray, a: np.ndarray | None) -> np.ndarray:
    r""":math:`\log \int \varphi(z) \prod_j \Phi(a_j z + b_j)\,dz` for each row of ``b`` (rows, k).

    ``a=None``: every slope is 1, the Laplace rule of :func:`bayeslayers._kernels.equal_orthant`
    (compiled, row by row). Otherwise :func:`_two_sided_rule`. The log integrand is concave
    with a single mode :math:`z^* > 0` (:func:`_mode`).

    Far factors are left out, rows being grouped by how many factors remain (a row with none
    has log P = 0). Leaving out factor :math:`j` multiplies P by
    :math:`1 - E_q[\Phi(-(a_j Z + b_j))]`, ``q`` the normalized integrand of the others. ``q`` is
    :math:`\varphi` tilted by an increasing function, so its median is :math:`\ge 0`, and it
    is strongly log-concave (:math:`-(\log q)'' \ge 1`), so its quantile map from
    :math:`N(0, 1)` is 1-Lipschitz (Caffarelli): :math:`Z \ge \min(G, 0)` in law, and
    :math:`E_q[\Phi(-(a_j Z + b_j))] \le \tfrac12 \Phi(-b_j) + \Phi(-b_j / \sqrt{1 + a_j^2})`,
    below 1.5e-9 when :math:`b_j / \sqrt{1 + a_j^2} \ge 6`.
    """
    if a is None:
        return _kernels.equal_orthant(np.ascontiguousarray(b), _GH_X, _GH_LOGW, _FAR)
    key = b / np.sqrt(1.0 + a * a)
    order = np.argsort(key, axis=-1)
    b = np.take_along_axis(b, order, axis=-1)
    a = np.take_along_axis(a, order, axis=-1)
    key = np.take_along_axis(key, order, axis=-1)
    keep = (key < _FAR).sum(axis=-1)
    out = np.zeros(len(b))
    for k in np.unique(keep[keep > 0]):
        rows = np.flatnonzero(keep == k)
        out[rows] = _two_sided_rule(b[rows, :k], a[rows, :k])
    out[np.isnan(key).any(axis=-1)] = np.nan  # do not drop NaN as a far factor
    return out


def argmax_log_proba(
    mean: np.ndarray, var: np.ndarray | float, index: np.ndarray | None = None
) -> np.ndarray:
    r""":math:`\log P(k = \arg\max_j f_j)` for independent :math:`f_j \sim N(m_j, v_j)`.

    Conditioning on :math:`f_k = m_k + s_k z`,

    .. math::

        P_k = \int \varphi(z) \prod_{j \ne k} \Phi(a_j z + b_j)\,dz, \qquad
        a_j = s_k / s_j, \quad b_j = (m_k - m_j) / s_j .

    The log integrand :math:`h` is concave (:math:`-h'' \ge 1`) with one mode :math:`z^* > 0`,
    found by Newton's method, and the quadrature is placed there, so the nodes sit where the
    mass is even when class ``k`` is far behind (log P of -1e5 and below stays finite and
    accurate). Two classes need no quadrature: :math:`f_k - f_j \sim N(m_k - m_j, v_k + v_j)`,
    so :math:`P_k = \Phi\big((m_k - m_j) / \sqrt{v_k + v_j}\big)` exactly. With more classes
    and equal variances (every :math:`a_j = 1`) a 12-node Gauss-Hermite rule on
    :math:`z^* + \sigma x`, :math:`\sigma^2 = -1/h''(z^*)`, is used; otherwise the integrand
    can be skewed by sharp steps and each side of the mode gets 16-node Gauss-Legendre.
    Log error against adaptive quadrature (tests/test_heads.py): about 1e-6 for equal
    variances, below 1e-5 for variance ratios up to 16 (sd ratio 4), 3e-4 at sd ratio 30.

    Parameters
    ----------
    mean : ndarray of shape (..., K)
        Means :math:`m`.
    var : ndarray or float
        Variances :math:`v > 0`, broadcastable to ``mean``.
    index : ndarray of int, optional
        One class per row (shape ``mean.shape[:-1]`` or broadcastable): only its log
        probability is computed. All ``K`` by default.

    Returns
    -------
    ndarray
        ``(..., K)`` log probabilities, or ``(...)`` with ``index``.
    """
    mean = np.asarray(mean, dtype=np.float64)
    K = mean.shape[-1]
    if K == 2:
        return _two_classes(mean, var, index)
    sd = np.sqrt(np.broadcast_to(np.asarray(var, dtype=np.float64), mean.shape))
    if index is None:
        m_k, s_k = mean[..., :, None], sd[..., :, None]  # (..., K, 1): row k, factor j
        m_j, s_j = mean[..., None, :], sd[..., None, :]
        lead = mean.shape
        same = np.broadcast_to(np.eye(K, dtype=bool), (*mean.shape, K))
    else:
        index = np.broadcast_to(np.asarray(index), mean.shape[:-1])[..., None]
        m_k = np.take_along_axis(mean, index, axis=-1)
        s_k = np.take_along_axis(sd, index, axis=-1)
        m_j, s_j = mean, sd
        lead = mean.shape[:-1]
        same = np.arange(K) == index
    b = (m_k - m_j) / s_j
    b[same] = np.inf  # the j = k factor is 1
    b = b.reshape(-1, K)
    if np.ndim(var) == 0:  # equal variances everywhere: every slope is 1
        return _log_orthant(b, None).reshape(lead)
    a = np.broadcast_to(s_k / s_j, (*lead, K)).reshape(-1, K)
    equal = np.all(a == 1.0, axis=-1)
    out = np.empty(len(b))
    out[equal] = _log_orthant(b[equal], None)
    if not np.all(equal):
        out[~equal] = _log_orthant(b[~equal], a[~equal])
    return out.reshape(lead)


def _two_classes(mean: np.ndarray, var, index: np.ndarray | None) -> np.ndarray:
    r""":func:`argmax_log_proba` for ``K = 2``, exactly:
    :math:`\log\Phi(\pm(m_0 - m_1) / \sqrt{v_0 + v_1})`."""
    v = np.broadcast_to(np.asarray(var, dtype=np.float64), mean.shape)
    d = (mean[..., 0] - mean[..., 1]) / np.sqrt(v[..., 0] + v[..., 1])
    if index is None:
        return log_ndtr(np.stack([d, -d], axis=-1))
    return log_ndtr(np.where(np.asarray(index) == 0, d, -d))


def argmax_probabilities(mean: np.ndarray, var: np.ndarray | float) -> np.ndarray:
    r""":math:`P(k = \arg\max_j f_j)` for independent :math:`f_j \sim N(m_j, v_j)`, ``(..., K)``.

    Up to :data:`MANY_CLASSES` classes: :func:`argmax_log_proba` for every class,
    renormalized in log space (:math:`P_k = e^{\ell_k - \operatorname{logsumexp}_j \ell_j}`)
    so that the rows sum to 1 exactly; the quadrature alone sums to 1 within its error. That
    costs :math:`O(K^2)` per row; with more classes :func:`_shared_grid` gives all ``K`` in
    :math:`O(K M)` (``M`` nodes). Rows are taken in blocks, so memory is bounded whatever the
    number of rows.
    """
    mean = np.asarray(mean, dtype=np.float64)
    K = mean.shape[-1]
    var_b = np.broadcast_to(np.asarray(var, dtype=np.float64), mean.shape)
    flat_m, flat_v = mean.reshape(-1, K), var_b.reshape(-1, K)
    scalar = np.ndim(var) == 0
    if K > MANY_CLASSES:
        log_p = _shared_grid(flat_m, flat_v)  # blocks its rows itself
    else:
        log_p = _blocked_log_proba(flat_m, var if scalar else flat_v)
    return np.exp(log_p - logsumexp(log_p, axis=-1, keepdims=True)).reshape(mean.shape)


def _blocked_log_proba(mean: np.ndarray, var: np.ndarray | float) -> np.ndarray:
    """:func:`argmax_log_proba` of rows ``(n, K)`` in blocks of bounded memory."""
    K = mean.shape[-1]
    block = max(1, _BLOCK_ELEMENTS // (K * K * _NODES_PER_PAIR))
    if len(mean) <= block:
        return argmax_log_proba(mean, var)
    out = np.empty_like(mean)
    for i in range(0, len(mean), block):
        v = var if isinstance(var, float) or np.ndim(var) == 0 else var[i : i + block]
        out[i : i + block] = argmax_log_proba(mean[i : i + block], v)
    return out


#: Above this many classes :func:`argmax_probabilities` uses the shared grid.
MANY_CLASSES = 32
# Row blocks hold about this many float64 elements (32 MiB) in their largest temporaries.
_BLOCK_ELEMENTS = 2**22
_NODES_PER_PAIR = 12  # the per-class quadrature evaluates about this many nodes per (k, j) pair
# Shared grid: it spans where the integrands exceed Phi(-_REACH) of their peak, with a spacing
# of the smallest standard deviation that matters divided by _PER_SD (trapezoid rule).
_REACH = 10.0
_PER_SD = 3.0
_MAX_NODES = 4096


def _shared_grid(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    r"""Log class probabilities ``(n, K)`` on one grid in :math:`f` shared by all classes.

    With :math:`G(f) = \prod_j \Phi((f - m_j) / s_j)` (the CDF of :math:`\max_j f_j`),

    .. math::

        P_k = \int N(f \mid m_k, s_k^2)\, \frac{G(f)}{\Phi((f - m_k) / s_k)}\,df,

    so one evaluation of :math:`\log\Phi` per class and node serves every class: ``O(K M)``
    per row, ``M`` nodes, instead of ``O(K^2)`` quadratures. The trapezoid rule on
    :math:`[\ell, u]`: :math:`\ell` the second largest of :math:`m_j - 10 s_j` (below it
    every integrand carries a factor below :math:`\Phi(-10)`), :math:`u = \max_k m_k + 10 s_k`,
    spacing a third of the smallest :math:`s_j` of the classes reaching above :math:`\ell`
    (classes that do not are below :math:`\Phi(-10)` and come out as about 0). The rule is
    spectrally accurate for these smooth integrands, which vanish at both ends (tested against
    adaptive quadrature in ``tests/test_heads.py``); log probabilities below about
    :math:`e^{-50}` are not resolved (use :func:`argmax_log_proba` for those). Rows that would
    need more than 4096 nodes (standard deviations differing by more than about 60x across
    the range) fall back to the per-class quadrature.
    """
    sd = np.sqrt(var)
    n, K = mean.shape
    low_ends = mean - _REACH * sd
    lo = np.partition(low_ends, K - 2, axis=-1)[:, K - 2]
    hi = np.max(mean + _REACH * sd, axis=-1)
    reach = mean + _REACH * sd > lo[:, None]
    h = np.where(reach, sd, np.inf).min(axis=-1) / _PER_SD
    nodes = np.ceil((hi - lo) / h).astype(np.int64) + 1
    out = np.empty((n, K))
    wide = nodes > _MAX_NODES
    if np.any(wide):
        out[wide] = _blocked_log_proba(mean[wide], var[wide])
    rows = np.flatnonzero(~wide)
    if rows.size == 0:
        return out
    M = int(nodes[rows].max())
    block = max(1, _BLOCK_ELEMENTS // (M * K))
    t = np.linspace(0.0, 1.0, M)
    for i in range(0, rows.size, block):
        r = rows[i : i + block]
        f = lo[r, None] + (hi[r] - lo[r])[:, None] * t  # (rows, M)
        step = (hi[r] - lo[r]) / (M - 1)
        z = (f[:, :, None] - mean[r, None, :]) / sd[r, None, :]  # (rows, M, K)
        log_cdf = log_ndtr(z)
        log_g = log_cdf.sum(axis=-1, keepdims=True)
        log_pdf = -0.5 * z * z - _LOG_SQRT_2PI - np.log(sd[r, None, :])
        out[r] = logsumexp(log_pdf + log_g - log_cdf, axis=1) + np.log(step)[:, None]
    return out
