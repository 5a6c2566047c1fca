r"""Gaussian posteriors over weight columns and the one conjugate update.

A layer's weights :math:`W \in \mathbb{R}^{D \times m}` (``D = d + 1`` rows including the bias
row) get a Gaussian posterior column by column, :math:`w_j \sim \mathcal N(\mu_j, \Sigma_j)`.
Every layer variant turns its target into linear-Gaussian pseudo-observations

.. math::

    t_{ij} = g_{ij} \, x_i^\top w_j + \varepsilon_{ij}, \qquad
    \varepsilon_{ij} \sim \mathcal N(0, \sigma^2 / c),

with design rows ``X`` (``x_i``), slopes ``G`` (``g_ij``; zero means "unit j did not take
part in row i") and the tempering fraction ``c`` of the original post. For a batch of rows the
update is the Kalman / Woodbury form (Bishop, PRML eqs. 3.50-3.51 written in covariance form):

.. math::

    S_j = \tfrac{\sigma^2}{c} I + \Phi_j \Sigma_j \Phi_j^\top, \quad
    \mu_j \leftarrow \mu_j + \Sigma_j \Phi_j^\top S_j^{-1} (t_j - \Phi_j \mu_j), \quad
    \Sigma_j \leftarrow \Sigma_j - \Sigma_j \Phi_j^\top S_j^{-1} \Phi_j \Sigma_j,

with :math:`\Phi_j = \operatorname{diag}(g_{\cdot j}) X`. The covariance downdate is computed
as :math:`\Sigma - A^\top A` with :math:`A = L^{-1} \Phi \Sigma`, ``L`` the Cholesky factor of
``S``; :math:`A^\top A` goes through BLAS ``syrk``, so covariances stay exactly symmetric (and
positive definite).

Three covariance structures share this module (``structure=``):

``"unit"``
    One full :math:`\Sigma_j` per output column; exact Bayesian linear regression given the
    targets (the decoupled extended Kalman filter). Memory :math:`m D^2`.
``"shared"``
    One row covariance for all columns (the matrix-normal form of the original post). Each
    column's mean gets its exact Kalman step under the shared prior; the shared covariance is
    shrunk once with the unscaled rows of every sample in which any unit took part. Identical
    to ``"unit"`` when every slope is one; approximate otherwise. Memory :math:`D^2`.
``"diag"``
    Mean-field: one variance per weight. Row by row, the mean gets the exact Kalman step
    under the diagonal prior and the covariance is projected back onto its diagonal
    (assumed-density filtering), so any batch split gives the same posterior. Cost
    :math:`O(m D)` per row (compiled, :mod:`bayeslayers._kernels`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg

from bayeslayers import _kernels

__all__ = [
    "STRUCTURES",
    "UpdateInfo",
    "WeightPosterior",
    "init",
    "marginal_variance",
    "sample",
    "update",
]

STRUCTURES = ("unit", "shared", "diag")


class WeightPosterior(NamedTuple):
    """Gaussian posterior over a ``(D, m)`` weight matrix, one column per output unit.

    Attributes
    ----------
    structure : str
        ``"unit"``, ``"shared"`` or ``"diag"``.
    mean : ndarray of shape (D, m)
        Posterior mean :math:`\\mu`.
    cov : ndarray
        ``(m, D, D)`` for ``"unit"``, ``(D, D)`` for ``"shared"``, ``(D, m)`` variances for
        ``"diag"``.
    """

    structure: str
    mean: np.ndarray
    cov: np.ndarray


class UpdateInfo(NamedTuple):
    """Per-update diagnostics, kept apart from the posterior.

    Attributes
    ----------
    n_obs : float
        Tempered number of scalar observations, :math:`c \\sum_{ij} [g_{ij} \\ne 0]`.
    quad : float
        :math:`\\sum_j r_j^\\top \\tilde S_j^{-1} r_j` with :math:`\\tilde S_j = S_j / \\sigma^2`
        (residuals before the update; for ``"diag"``, the sum over rows of each row's
        one-step-ahead :math:`r^2 / \\tilde s`). With ``n_obs`` it gives the
        Normal-Inverse-Gamma noise update.
    """

    n_obs: float
    quad: float


def _check_structure(structure: str) -> None:
    if structure not in STRUCTURES:
        raise ValueError(f"structure must be one of {STRUCTURES}, got {structure!r}")


def init(structure: str, mean: np.ndarray, prior_variance: float | np.ndarray) -> WeightPosterior:
    """Prior :math:`w_j \\sim \\mathcal N(\\mu_{0,j}, s^2 I)` for every column.

    Parameters
    ----------
    structure : str
        One of :data:`STRUCTURES`.
    mean : ndarray of shape (D, m)
        Prior mean (the initialization of the weights).
    prior_variance : float or ndarray of shape (D,)
        Prior variance of each weight, per input row if an array (e.g. a different variance for
        the bias row).
    """
    _check_structure(structure)
    mean = np.array(mean, copy=True)
    if mean.ndim != 2:
        raise ValueError(f"mean must be a 2-D (D, m) array, got shape {mean.shape}")
    n_in, m = mean.shape
    var = np.broadcast_to(np.asarray(prior_variance, dtype=mean.dtype), (n_in,))
    if not np.all(np.isfinite(var)) or np.any(var <= 0):
        raise ValueError("prior_variance must be finite and > 0")
    if structure == "unit":
        cov = np.broadcast_to(np.diag(var), (m, n_in, n_in)).copy()
    elif structure == "shared":
        cov = np.diag(var)
    else:
        cov = np.repeat(var[:, None], m, axis=1)
    return WeightPosterior(structure, mean, cov)


def update(
    post: WeightPosterior,
    X: np.ndarray,
    T: np.ndarray,
    G: np.ndarray | None = None,
    *,
    noise: float,
    fraction: float = 1.0,
    overwrite: bool = False,
) -> tuple[WeightPosterior, UpdateInfo]:
    """Condition the weight posterior on a batch of pseudo-observations.

    Parameters
    ----------
    post : WeightPosterior
        Current posterior; it is not modified unless ``overwrite`` is set.
    X : ndarray of shape (n, D)
        Design rows (layer inputs with the bias 1 appended).
    T : ndarray of shape (n, m)
        Targets :math:`t_{ij}` (entries where ``G == 0`` are ignored).
    G : ndarray of shape (n, m), optional
        Slopes :math:`g_{ij}`; ones (plain linear regression) if omitted.
    noise : float
        Observation noise variance :math:`\\sigma^2 > 0`.
    fraction : float
        Tempering fraction :math:`c \\in (0, 1]`; ``k`` updates with ``c = 1/k`` equal one
        update with ``c = 1``.
    overwrite : bool
        Reuse ``post``'s arrays for the result (no copy of the covariances, which for
        ``"unit"`` are :math:`m D^2` numbers). ``post`` must not be used afterwards: on return
        it holds the new posterior, and after an exception it is undefined.

    Returns
    -------
    WeightPosterior, UpdateInfo
        The new posterior and diagnostics.

    Notes
    -----
    Cost per batch of ``n`` rows, with :math:`p_j` the rows in which unit ``j`` takes part:
    ``"unit"`` :math:`\\sum_j 2 p_j D^2` for ``D <= 256`` (rank-one steps in one compiled
    loop), else :math:`\\sum_j (3 p_j D^2 + p_j^2 D)` (each unit's Woodbury step on its
    active rows, a few BLAS calls per unit); ``"shared"`` :math:`3 n D^2 + \\sum_j p_j^3 / 3` (the
    ``m`` small systems, each on its unit's active rows, in one compiled loop); ``"diag"``
    :math:`11 n D m`, less for inputs that are zero (one compiled loop over rows).
    ``float32`` posteriors run the same code in single precision.
    """
    if not noise > 0:
        raise ValueError(f"noise must be > 0, got {noise}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    # C order once here: the compiled kernels (bayeslayers._kernels) want contiguous rows.
    X = np.ascontiguousarray(X, dtype=post.mean.dtype)
    T = np.ascontiguousarray(T, dtype=post.mean.dtype)
    n_in, m = post.mean.shape
    if X.ndim != 2 or X.shape[1] != n_in:
        raise ValueError(f"X must have shape (n, {n_in}), got {X.shape}")
    if T.shape != (X.shape[0], m):
        raise ValueError(f"T must have shape ({X.shape[0]}, {m}), got {T.shape}")
    G = np.ones(T.shape, T.dtype) if G is None else np.ascontiguousarray(G, dtype=T.dtype)
    if G.shape != T.shape:
        raise ValueError(f"G must have shape {T.shape}, got {G.shape}")
    active = G != 0
    n_obs = float(fraction * active.sum())
    if not n_obs:
        return post, UpdateInfo(0.0, 0.0)
    T = np.where(active, T, 0.0)
    mean = post.mean if overwrite else post.mean.copy()
    cov = post.cov if overwrite else post.cov.copy()
    quad = _UPDATES[post.structure](mean, cov, X, T, G, active, noise / fraction)
    return WeightPosterior(post.structure, mean, cov), UpdateInfo(n_obs, quad * noise)


def _lower_solve(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """:math:`L^{-1} B` for lower-triangular ``L`` by BLAS ``trsm``, C-ordered like ``B``.

    Solved from the right on :math:`B^\\top` (:math:`B^\\top L^{-\\top}`): for a C-ordered
    ``B`` that is a Fortran-ordered array, so BLAS works on it without the copy a left-side
    solve of ``B`` would need (a third of the solve's time for a 128 x 785 block). Called
    directly rather than through :func:`scipy.linalg.solve_triangular`: LAPACK ``trtrs`` is
    multithreaded even for tiny systems, which on a busy machine costs milliseconds a call.
    """
    (trsm,) = scipy.linalg.get_blas_funcs(("trsm",), (L, B))
    return trsm(1.0, L, B.T, side=1, lower=1, trans_a=1).T


#: Largest ``D`` for which the "unit" update runs row by row in a compiled loop.
_KERNEL_MAX_D = 256


def _update_unit(mean, cov, X, T, G, active, s2) -> float:
    """Per-unit exact step: compiled rank-one steps for small ``D``, else BLAS per unit.

    Small covariances stay in cache and the compiled loop (:func:`_kernels.unit_rows`) has no
    per-call overhead, so they beat batched LAPACK calls. A 785 x 785 covariance per unit is
    memory-bound row by row, so large layers take the Woodbury step on each unit's active rows
    with BLAS-3 calls (measurements in ``benchmarks/HISTORY.md``).
    """
    if cov.shape[-1] <= _KERNEL_MAX_D:
        return _kernels.unit_rows(mean, cov, X, T, G, s2)
    return _update_unit_loop(mean, cov, X, T, G, active, s2)


def _update_unit_loop(mean, cov, X, T, G, active, s2) -> float:
    """Per-unit Woodbury step over the rows where the unit is active, in place.

    One unit at a time (a few BLAS calls each): no stacked temporaries of the size of ``cov``.

    The downdate ``A.T @ A`` goes through BLAS ``syrk`` (NumPy detects the transposed
    operand), so every :math:`\\Sigma_j` stays exactly symmetric.
    """
    quad = 0.0
    for j in np.flatnonzero(active.any(axis=0)):
        rows = np.flatnonzero(active[:, j])
        phi = G[rows, j, None] * X[rows]  # (p, D): rows scaled by their slopes
        sigma = cov[j]
        ps = phi @ sigma  # Phi Sigma
        S = ps @ phi.T
        S.flat[:: len(rows) + 1] += s2
        L = np.linalg.cholesky(S)
        A = _lower_solve(L, ps)
        r = T[rows, j] - phi @ mean[:, j]
        u = _lower_solve(L, r[:, None])[:, 0]
        mean[:, j] += u @ A
        if len(rows) == 1:  # rank one, in place: -a_i a_j is the same number both ways round
            (ger,) = scipy.linalg.get_blas_funcs(("ger",), (sigma, A))
            ger(-1.0, A[0], A[0], a=sigma.T, overwrite_a=1)
        else:
            _downdate(sigma, A)
        quad += float(u @ u)
    return quad


#: Block size of the triangle mirror in :func:`_downdate`.
_MIRROR_BLOCK = 128


def _downdate(cov: np.ndarray, A: np.ndarray) -> None:
    """``cov -= A.T @ A`` in place, exactly symmetric, without a ``(D, D)`` temporary.

    BLAS ``syrk`` accumulates into the upper triangle of ``cov`` (``beta = 1``); the upper
    triangle is then copied onto the lower one block by block. The same BLAS routine NumPy uses
    for ``A.T @ A``, but no temporary and no separate subtraction pass over :math:`D^2` numbers.
    """
    if not cov.flags.c_contiguous or cov.dtype != A.dtype:  # BLAS would work on a copy
        cov -= A.T @ A
        return
    (syrk,) = scipy.linalg.get_blas_funcs(("syrk",), (A,))
    # cov.T is Fortran-ordered: BLAS writes in place; its lower triangle is cov's upper one.
    # A.T is Fortran-ordered for the C-ordered A of _lower_solve: no copy either.
    syrk(-1.0, A.T, beta=1.0, c=cov.T, trans=0, lower=1, overwrite_c=1)
    b, D = _MIRROR_BLOCK, cov.shape[0]
    below = np.tri(min(b, D), k=-1, dtype=bool)
    for i in range(0, D, b):
        cov[i + b :, i : i + b] = cov[i : i + b, i + b :].T
        block = cov[i : i + b, i : i + b]
        np.copyto(block, block.T, where=below[: len(block), : len(block)])


def _update_shared(mean, cov, X, T, G, active, s2) -> float:
    """Exact Kalman step of every column under the shared prior; one shared downdate."""
    XS = X @ cov  # (n, D)
    K = XS @ X.T  # (n, n) = X Sigma X^T
    R = X @ mean  # r_ij = t_ij - g_ij x_i mu_j, transposed to (m, n)
    R *= G
    np.subtract(T, R, out=R)
    R = np.ascontiguousarray(R.T)
    # (m, n) = S_j^{-1} r_j, S_j = (g_j g_j^T) o K + s2 I: one compiled loop of small Choleskys.
    v = _kernels.masked_solves(K, G, R, s2).astype(X.dtype, copy=False)
    mean += XS.T @ (G.T * v).T
    # Shared covariance: shrink once with the unscaled rows that had any unit taking part.
    rows = active.any(axis=1)
    if rows.all():
        Sp, XSp = K, XS
    else:
        rows = np.flatnonzero(rows)
        Sp, XSp = K[np.ix_(rows, rows)], XS[rows]
    Sp.flat[:: len(Sp) + 1] += s2
    Lp = np.linalg.cholesky(Sp)
    _downdate(cov, _lower_solve(Lp, XSp))
    return float(np.einsum("mn,mn->", R, v))


def _update_diag(mean, var, X, T, G, active, s2) -> float:
    """Row-by-row assumed-density filter under the diagonal prior (:func:`_kernels.diag_rows`).

    Each row gets the exact Kalman step of its scalar observations under the current diagonal
    prior, and the covariance is projected back onto its diagonal before the next row. So a
    batch gives the same posterior as its rows one at a time, whatever the batch size. A
    projection after a whole batch instead costs :math:`O(n^2 D m)` per batch (the rows'
    pairwise products); this costs :math:`O(D m)` per row, and zero inputs are skipped.
    """
    return _kernels.diag_rows(mean, var, X, T, G, s2)


_UPDATES = {"unit": _update_unit, "shared": _update_shared, "diag": _update_diag}


#: Elements of the ``(m, rows, D)`` temporary in :func:`marginal_variance` (bounds its memory).
_MARGINAL_BLOCK_ELEMENTS = 1 << 23


def marginal_variance(post: WeightPosterior, X: np.ndarray) -> np.ndarray:
    """Variance :math:`x_i^\\top \\Sigma_j x_i` of :math:`x_i^\\top w_j`, shape ``(..., n, m)``.

    Matrix products (BLAS) over blocks of rows: a three-operand ``einsum`` loops in C over all
    four indices and is over an order of magnitude slower for a 784-100 layer.
    """
    X = np.asarray(X, dtype=post.mean.dtype)
    lead, (n_in, m) = X.shape[:-1], post.mean.shape
    if post.structure == "diag":
        return (X**2) @ post.cov
    if post.structure == "shared":
        v = np.einsum("...d,...d->...", X @ post.cov, X)
        return np.repeat(v[..., None], m, axis=-1)
    rows = X.reshape(-1, n_in)
    out = np.empty((len(rows), m), dtype=X.dtype)
    step = max(1, _MARGINAL_BLOCK_ELEMENTS // (m * n_in))
    for start in range(0, len(rows), step):
        block = rows[start : start + step]
        out[start : start + step] = np.einsum("mnd,nd->nm", block @ post.cov, block)
    return out.reshape(*lead, m)


def sample(post: WeightPosterior, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Draw weight matrices from the posterior, shape ``(n_draws, D, m)``."""
    n_in, m = post.mean.shape
    eps = rng.standard_normal((n_draws, n_in, m)).astype(post.mean.dtype, copy=False)
    if post.structure == "diag":
        return post.mean + eps * np.sqrt(post.cov)
    if post.structure == "shared":
        L = np.linalg.cholesky(post.cov)
        return post.mean + L @ eps
    L = np.linalg.cholesky(post.cov)  # (m, D, D)
    # (m, D, D) @ (m, D, S) as one batched matmul: several times faster than the einsum.
    return post.mean + np.matmul(L, eps.transpose(2, 1, 0)).transpose(2, 1, 0)
