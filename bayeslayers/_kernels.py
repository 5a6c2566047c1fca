r"""Compiled inner loops (numba) for updates that are sequences of tiny steps.

NumPy pays a few microseconds per call; a row-by-row filter over a 784-100 layer makes about
ten calls per row, so a NumPy version is all overhead. These kernels run the same arithmetic in
one compiled loop. numba is a dependency of PyTensor, hence of PyMC, so it costs no new install.

Kernels are compiled on first use (about a second each) and cached on disk
(``cache=True``, in ``__pycache__``); float64 and float32 arrays get their own compiled
versions. numba itself is imported on the first call of a kernel, not with this module, so
``import bayeslayers`` stays fast: each name below is a plain function until its first call,
which compiles it and puts the compiled dispatcher in its place.
Arrays should be C-contiguous: other layouts work but compile (and run) a slower version.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "diag_rows",
    "equal_orthant",
    "healthy",
    "masked_solves",
    "noise_memories",
    "probit_adf_row",
    "shared_rows",
    "unit_quadratic",
    "unit_rows",
]

_COMPILE_LOCK = threading.Lock()
#: Names of the scalar helpers that kernels call (:func:`_helper`), compiled before any kernel.
_HELPERS: list[str] = []


def _helper(func: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``func`` as a helper called from kernels: the first kernel call compiles it
    (``numba.njit``) in its module-level name, so that the kernels' compilation finds it."""
    _HELPERS.append(func.__name__)
    return func


def _compiled_on_first_call(func: Callable[..., Any]) -> Callable[..., Any]:
    """``numba.njit(cache=True, nogil=True)(func)``, done (and numba imported) on the first call.

    The compiled dispatcher then replaces the module-level name, so later look-ups
    (``_kernels.unit_rows``) reach it directly with no wrapper in between.
    """

    @functools.wraps(func)
    def first_call(*args: Any) -> Any:
        with _COMPILE_LOCK:
            kernel = globals()[func.__name__]
            if kernel is first_call:
                import numba

                for name in _HELPERS:
                    if not isinstance(globals()[name], numba.core.dispatcher.Dispatcher):
                        globals()[name] = numba.njit(cache=True, nogil=True)(globals()[name])
                kernel = numba.njit(cache=True, nogil=True)(func)
                globals()[func.__name__] = kernel
        return kernel(*args)

    return first_call


@_compiled_on_first_call
def diag_rows(
    mean: np.ndarray, var: np.ndarray, X: np.ndarray, T: np.ndarray, G: np.ndarray, s2: float
) -> float:
    r"""Assumed-density filter of a diagonal Gaussian over rows, one row at a time, in place.

    For row ``i`` and every unit ``j`` with :math:`g = g_{ij} \ne 0` (``v = var[:, j]``,
    ``mu = mean[:, j]``, ``x = X[i]``):

    .. math::

        s = s^2 + g^2 \sum_d x_d^2 v_d, \quad r = t_{ij} - g\, x^\top \mu, \quad
        \mu_d \leftarrow \mu_d + v_d\, x_d\, g\, r / s, \quad
        v_d \leftarrow v_d \bigl(1 - v_d\, x_d^2\, g^2 / s\bigr),

    the exact Kalman step of one scalar observation under a diagonal prior, with the
    covariance projected back onto its diagonal. Inputs with :math:`x_d = 0` change nothing,
    so they are skipped (exactly). The shrink factor is at least :math:`s^2 / s > 0`; it is
    floored at ``1e-12`` against rounding when :math:`s^2` is negligible.

    Parameters
    ----------
    mean, var : ndarray of shape (D, m)
        Means and variances, updated in place.
    X : ndarray of shape (n, D)
        Design rows.
    T, G : ndarray of shape (n, m)
        Targets and slopes; ``G == 0`` means "unit ``j`` does not take part in row ``i``".
    s2 : float
        Noise variance of one observation (already divided by the tempering fraction).

    Returns
    -------
    float
        :math:`\sum_{ij} r_{ij}^2 / s_{ij}`, each residual taken before its own row's update.
    """
    n, D = X.shape
    m = mean.shape[1]
    nonzero = np.empty(D, dtype=np.int64)
    spread = np.empty(m)  # sum_d x_d^2 v_d, then the mean step's coefficient g r / s
    fit = np.empty(m)  # x . mu, then the variance step's coefficient g^2 / s
    quad = 0.0
    for i in range(n):
        k = 0
        for d in range(D):
            if X[i, d] != 0.0:
                nonzero[k] = d
                k += 1
        spread[:] = 0.0
        fit[:] = 0.0
        for q in range(k):
            d = nonzero[q]
            x = X[i, d]
            for j in range(m):
                spread[j] += x * x * var[d, j]
                fit[j] += x * mean[d, j]
        taking_part = False
        for j in range(m):
            g = G[i, j]
            if g != 0.0:
                s = s2 + g * g * spread[j]
                r = T[i, j] - g * fit[j]
                quad += r * r / s
                spread[j] = g * r / s
                fit[j] = g * g / s
                taking_part = True
            else:
                spread[j] = 0.0
                fit[j] = 0.0
        if not taking_part:
            continue
        for q in range(k):
            d = nonzero[q]
            x = X[i, d]
            for j in range(m):
                v = var[d, j]
                mean[d, j] += v * x * spread[j]
                shrink = 1.0 - v * x * x * fit[j]
                var[d, j] = v * max(shrink, 1e-12)
    return quad


@_compiled_on_first_call
def masked_solves(K: np.ndarray, G: np.ndarray, R: np.ndarray, s2: float) -> np.ndarray:
    r"""Solve the ``m`` small systems of the shared update, each on its unit's active rows.

    For unit ``j`` with slopes :math:`g = G_{\cdot j}` and active rows ``a`` (:math:`g \ne 0`),

    .. math::

        v_a = S^{-1} r_a, \qquad S = (g_a g_a^\top) \circ K_{aa} + s^2 I,

    by a Cholesky factorization of ``S``; rows where :math:`g = 0` get :math:`v = 0` (their
    system is :math:`s^2 v = 0`). Only the ``p x p`` block of the active rows is factored,
    instead of ``n x n`` per unit, and no LAPACK call is paid per unit.

    Parameters
    ----------
    K : ndarray of shape (n, n)
        :math:`X \Sigma X^\top`, symmetric positive semi-definite.
    G : ndarray of shape (n, m)
        Slopes.
    R : ndarray of shape (m, n)
        Residuals (zero where ``G == 0``).
    s2 : float
        Noise variance (already divided by the tempering fraction).

    Returns
    -------
    ndarray of shape (m, n)
        :math:`v`; raises :class:`numpy.linalg.LinAlgError` if some ``S`` is not positive
        definite (only possible when ``K`` holds NaN or has lost positive semi-definiteness).
    """
    n, m = G.shape
    V = np.zeros((m, n))
    rows = np.empty(n, dtype=np.int64)
    L = np.empty((n, n))
    y = np.empty(n)
    for j in range(m):
        p = 0
        for a in range(n):
            if G[a, j] != 0.0:
                rows[p] = a
                p += 1
        for a in range(p):  # Cholesky-Crout, row by row: L L^T = S
            ga = G[rows[a], j]
            for b in range(a + 1):
                acc = ga * G[rows[b], j] * K[rows[a], rows[b]]
                for c in range(b):
                    acc -= L[a, c] * L[b, c]
                if b < a:
                    L[a, b] = acc / L[b, b]
                else:
                    acc += s2
                    if not acc > 0.0:
                        raise np.linalg.LinAlgError("a unit's system is not positive definite")
                    L[a, a] = math.sqrt(acc)
        for a in range(p):  # L y = r
            acc = R[j, rows[a]]
            for c in range(a):
                acc -= L[a, c] * y[c]
            y[a] = acc / L[a, a]
        for a in range(p - 1, -1, -1):  # L^T v = y
            acc = y[a]
            for c in range(a + 1, p):
                acc -= L[c, a] * y[c]
            y[a] = acc / L[a, a]
            V[j, rows[a]] = y[a]
    return V


@_compiled_on_first_call
def unit_rows(
    mean: np.ndarray, cov: np.ndarray, X: np.ndarray, T: np.ndarray, G: np.ndarray, s2: float
) -> float:
    r"""Exact Kalman steps of full per-unit covariances, one row at a time, in place.

    For row ``i`` and every unit ``j`` with :math:`g = g_{ij} \ne 0` (:math:`\phi = g x_i`,
    :math:`\Sigma = \Sigma_j`), the rank-one (Sherman-Morrison) step

    .. math::

        p = \Sigma \phi, \quad s = s^2 + \phi^\top p, \quad r = t_{ij} - \phi^\top \mu,
        \quad \mu \leftarrow \mu + p\, r / s, \quad
        \Sigma \leftarrow \Sigma - c c^\top, \; c = p / \sqrt{s}.

    Exact Bayesian linear regression, so the result equals the batch Woodbury step to
    rounding. Each entry of :math:`c c^\top` is one product, the same both ways round, so
    :math:`\Sigma` stays exactly symmetric. :math:`2 D^2` operations per row and unit (the
    Woodbury step takes :math:`3 D^2`), with no temporaries: the fastest form while the
    covariances stay in cache (small ``D``); for large ``D`` blocked BLAS calls are faster.

    Parameters
    ----------
    mean : ndarray of shape (D, m)
        Means, updated in place.
    cov : ndarray of shape (m, D, D)
        Covariances, updated in place.
    X : ndarray of shape (n, D)
        Design rows.
    T, G : ndarray of shape (n, m)
        Targets and slopes; ``G == 0`` means "unit ``j`` does not take part in row ``i``".
    s2 : float
        Noise variance of one observation (already divided by the tempering fraction).

    Returns
    -------
    float
        :math:`\sum_{ij} r_{ij}^2 / s_{ij}`, each residual taken before its own row's step
        (for exact regression, the batch :math:`\sum_j r_j^\top S_j^{-1} r_j`). Raises
        :class:`numpy.linalg.LinAlgError` if some :math:`s \le 0` (a covariance that lost
        positive definiteness).
    """
    n, D = X.shape
    m = mean.shape[1]
    phi = np.empty(D)
    p = np.empty(D)
    quad = 0.0
    for i in range(n):
        for j in range(m):
            g = G[i, j]
            if g == 0.0:
                continue
            for d in range(D):
                phi[d] = g * X[i, d]
            p[:] = 0.0
            for k in range(D):  # Sigma phi as a sum of rows (Sigma is symmetric): contiguous
                f = phi[k]
                if f != 0.0:
                    for d in range(D):
                        p[d] += f * cov[j, k, d]
            s = s2
            fit = 0.0
            for d in range(D):
                s += phi[d] * p[d]
                fit += phi[d] * mean[d, j]
            if not s > 0.0:
                raise np.linalg.LinAlgError("a unit's covariance is not positive definite")
            r = T[i, j] - fit
            quad += r * r / s
            step = r / s
            root = math.sqrt(s)
            for d in range(D):
                mean[d, j] += p[d] * step
                p[d] /= root
            for a in range(D):
                ca = p[a]
                for b in range(D):
                    cov[j, a, b] -= ca * p[b]
    return quad


@_compiled_on_first_call
def shared_rows(
    mean: np.ndarray, cov: np.ndarray, X: np.ndarray, T: np.ndarray, s2: float
) -> float:
    r"""Exact Kalman steps of columns that share one covariance, one row at a time, in place.

    Every column takes part in every row with slope one (a linear head), so one step serves
    them all. For row ``i`` (:math:`x = x_i`, :math:`\Sigma` the shared covariance):

    .. math::

        p = \Sigma x, \quad s = s^2 + x^\top p, \quad r_j = t_{ij} - x^\top \mu_j, \quad
        \mu_j \leftarrow \mu_j + p\, r_j / s, \quad
        \Sigma \leftarrow \Sigma - c c^\top, \; c = p / \sqrt{s}.

    Exact Bayesian linear regression of every column under the one covariance, so the result
    equals the batch Woodbury step to rounding, at :math:`2 D^2 + 2 m D` operations per row
    (:func:`unit_rows` takes :math:`2 m D^2` for the same columns kept apart).

    Parameters
    ----------
    mean : ndarray of shape (D, m)
        Means, updated in place.
    cov : ndarray of shape (D, D)
        The shared covariance, updated in place.
    X : ndarray of shape (n, D)
        Design rows.
    T : ndarray of shape (n, m)
        Targets.
    s2 : float
        Noise variance of one observation (already divided by the tempering fraction).

    Returns
    -------
    float
        :math:`\sum_{ij} r_{ij}^2 / s_i`, each residual taken before its own row's step.
        Raises :class:`numpy.linalg.LinAlgError` if some :math:`s \le 0`.
    """
    n, D = X.shape
    m = mean.shape[1]
    p = np.empty(D)
    quad = 0.0
    for i in range(n):
        p[:] = 0.0
        for k in range(D):  # Sigma x as a sum of rows (Sigma is symmetric): contiguous
            f = X[i, k]
            if f != 0.0:
                for d in range(D):
                    p[d] += f * cov[k, d]
        s = s2
        for d in range(D):
            s += X[i, d] * p[d]
        if not s > 0.0:
            raise np.linalg.LinAlgError("the shared covariance is not positive definite")
        for j in range(m):
            fit = 0.0
            for d in range(D):
                fit += X[i, d] * mean[d, j]
            r = T[i, j] - fit
            quad += r * r / s
            step = r / s
            for d in range(D):
                mean[d, j] += p[d] * step
        root = math.sqrt(s)
        for d in range(D):
            p[d] /= root
        for a in range(D):
            ca = p[a]
            for b in range(D):
                cov[a, b] -= ca * p[b]
    return quad


_SQRT1_2 = 1.0 / math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
#: Terms of the continued fraction of the Mills ratio (below z = -5 it converges to rounding).
_MILLS_TERMS = 40


@_helper
def _inverse_mills_tail(u: float) -> float:
    r""":math:`1 / R(u)` for the Mills ratio :math:`R(u) = 1 / (u + 1 / (u + 2 / (u + \dots)))`
    (continued fraction, :data:`_MILLS_TERMS` terms; to rounding for :math:`u \ge 5`)."""
    f = u
    for k in range(_MILLS_TERMS, 0, -1):
        f = u + k / f
    return f


@_helper
def _log_ndtr(z: float) -> float:
    r""":math:`\log\Phi(z)`: ``log1p(-erfc / 2)`` above 0, ``log(erfc / 2)`` down to -5 and,
    below, :math:`\log\varphi(z) + \log R(-z)` (:func:`_inverse_mills_tail`)."""
    if z > 0.0:
        return math.log1p(-0.5 * math.erfc(z * _SQRT1_2))
    if z > -5.0:
        return math.log(0.5 * math.erfc(-z * _SQRT1_2))
    return -0.5 * z * z - _LOG_SQRT_2PI - math.log(_inverse_mills_tail(-z))


@_helper
def _mills(t: float) -> float:
    r"""The inverse Mills ratio :math:`\varphi(t) / \Phi(t)`: directly down to -5, below
    by the continued fraction (:func:`_inverse_mills_tail`, no exponent or logarithm)."""
    if t > -5.0:
        return math.exp(-0.5 * t * t - _LOG_SQRT_2PI) / (0.5 * math.erfc(-t * _SQRT1_2))
    return _inverse_mills_tail(-t)


@_compiled_on_first_call
def probit_adf_row(
    mean: np.ndarray, cov: np.ndarray, x: np.ndarray, Y: np.ndarray, s2: float, bound: float
) -> tuple[float, np.ndarray, np.ndarray, bool]:
    r"""The score and assumed-density-filter step of one row for probit columns with full
    covariances, in one pass over each covariance.

    For every column ``j`` (:math:`\Sigma = \Sigma_j`, :math:`\mu = \mu_j`, sign
    :math:`s = 2 y_j - 1`): :math:`p = \Sigma x`, the predictor's moments
    :math:`m = x^\top \mu`, :math:`v = x^\top p`; with :math:`z = s m / \sqrt{1 + v}`,
    :math:`\lambda = \varphi(z) / \Phi(z)` and :math:`\beta = \lambda (\lambda + z) / (1 + v)`,
    the moment-matched pseudo-observation of slope :math:`g = \sqrt{\beta / (1 - \beta v)}`
    and target :math:`t = g (m + s \sqrt{1 + v} / (\lambda + z))` (as
    :meth:`bayeslayers.heads.Probit._adf_pseudo`), :math:`\log \Phi` by :func:`_log_ndtr`.
    The step is exact Bayesian linear regression on the design row :math:`\phi = g x`
    at noise ``s2`` (the rank-one step of :func:`unit_rows`), with :math:`\Sigma \phi = g p`
    already known:

    .. math::

        S = s_2 + g^2 v, \quad r = t - g m, \quad
        \mu \leftarrow \mu + p\, g r / S, \quad
        \Sigma \leftarrow \Sigma - c c^\top, \; c = p\, g / \sqrt{S},

    written to new arrays (one matrix-vector product and one pass over :math:`\Sigma` per
    column, where the pseudo-observations followed by :func:`unit_rows` on copies take two
    products and three passes). Each entry of :math:`c c^\top` is one product, the same
    both ways round, so :math:`\Sigma` stays exactly symmetric.

    Parameters
    ----------
    mean : ndarray of shape (D, C)
        Means.
    cov : ndarray of shape (C, D, D)
        Covariances.
    x : ndarray of shape (D,)
        The design row.
    Y : ndarray of shape (C,)
        Indicators (0 or 1) of the columns.
    s2 : float
        One over the tempering fraction (the step's noise).
    bound : float
        Largest :math:`g^2 v / s_2` accepted (the floating-point bound of
        :mod:`bayeslayers.conjugate`).

    Returns
    -------
    (float, ndarray, ndarray, bool)
        The row's log class probability (one column: :math:`\log\Phi(z)`; several:
        one-vs-rest conditioned on exactly one indicator, the log-odds
        :math:`\log\Phi(\zeta_j) - \log\Phi(-\zeta_j)`, :math:`\zeta_j = m_j / \sqrt{1 + v_j}`,
        normalized), the updated means and covariances, and ``True``; or, if some column
        passed ``bound``, the score, ``mean`` and ``cov`` themselves and ``False`` (no step
        taken). Raises :class:`numpy.linalg.LinAlgError` if some :math:`S \le 0`.
    """
    D, C = mean.shape
    P = np.empty((C, D))
    m = np.empty(C)
    v = np.empty(C)
    for j in range(C):
        p = P[j]
        p[:] = 0.0
        for k in range(D):  # Sigma x as a sum of rows (Sigma is symmetric): contiguous
            f = x[k]
            if f != 0.0:
                for d in range(D):
                    p[d] += f * cov[j, k, d]
        mj = 0.0
        vj = 0.0
        for d in range(D):
            mj += x[d] * mean[d, j]
            vj += x[d] * p[d]
        m[j] = mj
        v[j] = vj
    if C == 1:
        score = _log_ndtr((2.0 * Y[0] - 1.0) * m[0] / math.sqrt(1.0 + v[0]))
    else:
        top = -np.inf
        observed = 0.0
        odds = np.empty(C)
        for j in range(C):
            zeta = m[j] / math.sqrt(1.0 + v[j])
            odds[j] = _log_ndtr(zeta) - _log_ndtr(-zeta)
            top = max(top, odds[j])
            if Y[j] > 0.5:
                observed = odds[j]
        total = 0.0
        for j in range(C):
            total += math.exp(odds[j] - top)
        score = observed - top - math.log(total)
    G = np.empty(C)
    target = np.empty(C)
    for j in range(C):
        s = 2.0 * Y[j] - 1.0
        root = math.sqrt(1.0 + v[j])
        z = s * m[j] / root
        lam = math.exp(-0.5 * z * z - _LOG_SQRT_2PI - _log_ndtr(z))
        beta = lam * (lam + z) / (1.0 + v[j])
        G[j] = math.sqrt(beta / max(1.0 - beta * v[j], 1e-12))
        target[j] = G[j] * (m[j] + s * root / (lam + z))
        if not G[j] * G[j] * v[j] / s2 <= bound:
            return score, mean, cov, False
    new_mean = mean.copy()
    new_cov = np.empty_like(cov)
    for j in range(C):
        g = G[j]
        S = s2 + g * g * v[j]
        if not S > 0.0:
            raise np.linalg.LinAlgError("a unit's covariance is not positive definite")
        step = g * (target[j] - g * m[j]) / S
        scale = g / math.sqrt(S)
        p = P[j]
        for d in range(D):
            new_mean[d, j] += p[d] * step
            p[d] *= scale
        for a in range(D):
            ca = p[a]
            for b in range(D):
                new_cov[j, a, b] = cov[j, a, b] - ca * p[b]
    return score, new_mean, new_cov, True


@_compiled_on_first_call
def noise_memories(
    memory: np.ndarray, decays: np.ndarray, n: float, quad: float
) -> tuple[np.ndarray, float, float]:
    r"""Every noise memory's Student-t evidence of a batch, its forgetting and its update, and
    the noise in use after them (:class:`bayeslayers.heads.Gaussian`'s ``noise_memory``).

    Row ``k`` of ``memory`` is :math:`(a_k, b_k, L_k)`. With the decay :math:`\lambda_k`
    (``decays[k]``), :math:`a \leftarrow \max(\lambda_k a_k, 10^{-300})` and likewise
    :math:`b` (no underflow to 0 in a huge batch), the log evidence of ``n`` scalar
    innovations with scaled squares summing to ``quad`` is the multivariate Student-t

    .. math::

        \Delta L_k = \log\Gamma(a + n/2) - \log\Gamma(a) - \tfrac n2 \log(2\pi b)
        - (a + n/2) \log\bigl(1 + \tfrac{q}{2b}\bigr),

    then :math:`a_k \leftarrow a + n/2`, :math:`b_k \leftarrow b + q/2`. The noise in use is
    the evidence-weighted average (Bayesian model averaging over the memories), weights
    :math:`w_k \propto e^{L_k}`: :math:`\bar a = \sum_k w_k a_k` and
    :math:`\bar b = \bar a \sum_k w_k b_k / a_k`, so that :math:`\bar b / \bar a` is the
    averaged variance. ``n = 0`` (with unit decays) leaves the memories as they are and
    returns their average. A NaN anywhere gives a NaN average.

    Returns
    -------
    (ndarray, float, float)
        The updated memories (a new ``(K, 3)`` array), :math:`\bar a` and :math:`\bar b`.
    """
    out = np.empty_like(memory)
    half = n / 2.0
    for k in range(memory.shape[0]):
        a = memory[k, 0] * decays[k]
        b = memory[k, 1] * decays[k]
        if a < 1e-300:
            a = 1e-300
        if b < 1e-300:
            b = 1e-300
        a_next = a + half
        gain = math.lgamma(a_next) - math.lgamma(a) - half * math.log(2.0 * math.pi * b)
        gain -= a_next * math.log1p(quad / (2.0 * b))
        out[k, 0] = a_next
        out[k, 1] = b + quad / 2.0
        out[k, 2] = memory[k, 2] + gain
    top = out[0, 2]
    for k in range(1, out.shape[0]):
        if out[k, 2] > top:
            top = out[k, 2]
    total = 0.0
    a_sum = 0.0
    ratio = 0.0
    for k in range(out.shape[0]):
        w = math.exp(out[k, 2] - top)
        total += w
        a_sum += w * out[k, 0]
        ratio += w * (out[k, 1] / out[k, 0])
    a_bar = a_sum / total
    return out, a_bar, a_bar * (ratio / total)


@_compiled_on_first_call
def healthy(mean: np.ndarray, var: np.ndarray) -> bool:
    """Whether every entry of ``mean`` is finite and every entry of ``var`` is > 0 (NaN is
    not): the guard of :func:`bayeslayers.health.check_posteriors`, in one compiled pass that
    stops at the first failure (arrays of any shape and layout, e.g. a covariance's diagonal
    as a view)."""
    for x in mean.flat:
        if not math.isfinite(x):
            return False
    for v in var.flat:
        if not v > 0.0:
            return False
    return True


@_compiled_on_first_call
def unit_quadratic(cov: np.ndarray, x: np.ndarray) -> np.ndarray:
    r""":math:`x^\top \Sigma_j x` for every unit ``j`` of a stack ``cov`` ``(m, D, D)`` of
    symmetric covariances and one row ``x`` ``(D,)``: the diagonal term and twice the upper
    triangle, :math:`\sum_a x_a^2 \Sigma_{aa} + 2 \sum_{a < b} x_a x_b \Sigma_{ab}`, half
    the products of the full form (one row's marginal variances, where NumPy's batched
    products cost more in calls than in arithmetic)."""
    m, D = cov.shape[0], cov.shape[1]
    out = np.empty(m, dtype=cov.dtype)
    for j in range(m):
        total = 0.0
        for a in range(D):
            xa = x[a]
            if xa != 0.0:
                row = 0.0
                for b in range(a + 1, D):
                    row += cov[j, a, b] * x[b]
                total += xa * (xa * cov[j, a, a] + 2.0 * row)
        out[j] = total
    return out


@_compiled_on_first_call
def equal_orthant(b: np.ndarray, nodes: np.ndarray, log_weights: np.ndarray, far: float):
    r""":math:`\log \int \varphi(z) \prod_j \Phi(z + b_j)\,dz` for each row of ``b`` (n, k):
    the argmax probability of equal-variance Gaussian outputs
    (:func:`bayeslayers.heads.argmax.argmax_log_proba`).

    Factors with :math:`b_j / \sqrt 2 \ge` ``far`` are left out (each changes the result by
    less than the bound in :func:`~bayeslayers.heads.argmax._log_orthant`), and a row left
    with none gives 0; a NaN gives NaN. The log integrand
    :math:`h(z) = -z^2/2 + \sum_j \log\Phi(z + b_j)` is concave (:math:`-h'' \ge 1`); its
    mode :math:`z^*` is found by Newton's method from the root of the factors with
    :math:`b_j < 0` in their linear regime, :math:`z_0 = -\sum_{b_j < 0} b_j / (1 + \#\{b_j
    < 0\})`, to a step below :math:`10^{-6} (1 + |z|)`. The Gauss-Hermite rule of ``nodes``
    :math:`x_i` and ``log_weights`` (the normalized log weights plus :math:`x_i^2 / 2`) is
    placed at :math:`z_i = z^* + \sigma x_i`, :math:`\sigma^2 = -1 / h''`:

    .. math::

        \log\sigma + \log \sum_i \exp\Big(w_i - \tfrac12 z_i^2
        + \sum_j \log\Phi(z_i + b_j)\Big),

    summed as products of :math:`\Phi` where :math:`h(z^*) > -40` (no underflow) and in log
    space below.
    """
    n, k = b.shape
    out = np.zeros(n)
    kept = np.empty(k)
    terms = np.empty(nodes.shape[0])
    threshold = far * math.sqrt(2.0)
    for r in range(n):
        count = 0
        nan = False
        for j in range(k):
            if b[r, j] != b[r, j]:
                nan = True
            elif b[r, j] < threshold:
                kept[count] = b[r, j]
                count += 1
        if nan:
            out[r] = np.nan
            continue
        if count == 0:
            continue
        behind = 0.0
        n_behind = 0
        for j in range(count):
            if kept[j] < 0.0:
                behind += kept[j]
                n_behind += 1
        z = -behind / (1.0 + n_behind)
        curv = 1.0
        for _ in range(101):  # the first evaluation, then at most 100 Newton steps
            grad = -z
            curv = 1.0
            for j in range(count):
                t = z + kept[j]
                m = _mills(t)
                grad += m
                curv += m * (t + m)
            step = grad / curv
            z += step
            if abs(step) <= 1e-6 * (1.0 + abs(z)):
                break
        sigma = 1.0 / math.sqrt(curv)
        top = -0.5 * z * z
        for j in range(count):
            top += _log_ndtr(z + kept[j])
        if top > -40.0:
            total = 0.0
            for i in range(nodes.shape[0]):
                zi = z + sigma * nodes[i]
                term = math.exp(log_weights[i] - 0.5 * zi * zi)
                for j in range(count):
                    term *= 0.5 * math.erfc(-(zi + kept[j]) * _SQRT1_2)
                total += term
            out[r] = math.log(sigma) + math.log(total)
            continue
        peak = -np.inf
        for i in range(nodes.shape[0]):
            zi = z + sigma * nodes[i]
            term = log_weights[i] - 0.5 * zi * zi
            for j in range(count):
                term += _log_ndtr(zi + kept[j])
            terms[i] = term
            if term > peak:
                peak = term
        total = 0.0
        for i in range(nodes.shape[0]):
            total += math.exp(terms[i] - peak)
        out[r] = math.log(sigma) + peak + math.log(total)
    return out
