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
``S``, and re-symmetrized, so covariances stay symmetric positive definite.

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
    Mean-field: one variance per weight. The mean gets the exact Kalman step under the
    diagonal prior and the covariance is projected back onto its diagonal (assumed-density
    filtering). Cost :math:`O(m D)` per row.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg

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
        (residuals before the update). With ``n_obs`` it gives the Normal-Inverse-Gamma noise
        update.
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


def _symmetrize(a: np.ndarray) -> np.ndarray:
    return 0.5 * (a + np.swapaxes(a, -1, -2))


def _batched_gain(
    S: np.ndarray, PS: np.ndarray, R: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whiten by the Cholesky factor of ``S``.

    Returns ``A = L^{-1} PS``, ``u = L^{-1} R`` (so the mean step is ``A^T u`` and the
    covariance downdate ``A^T A``) and ``u^T u`` per batch entry.
    """
    L = scipy.linalg.cholesky(S, lower=True)
    A = scipy.linalg.solve_triangular(L, PS, lower=True)
    u = scipy.linalg.solve_triangular(L, R[..., None], lower=True)[..., 0]
    return A, u, np.einsum("...i,...i->...", u, u)


def update(
    post: WeightPosterior,
    X: np.ndarray,
    T: np.ndarray,
    G: np.ndarray | None = None,
    *,
    noise: float,
    fraction: float = 1.0,
) -> tuple[WeightPosterior, UpdateInfo]:
    """Condition the weight posterior on a batch of pseudo-observations.

    Parameters
    ----------
    post : WeightPosterior
        Current posterior; it is not modified.
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

    Returns
    -------
    WeightPosterior, UpdateInfo
        The new posterior (new arrays) and diagnostics.
    """
    if not noise > 0:
        raise ValueError(f"noise must be > 0, got {noise}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    X = np.asarray(X, dtype=post.mean.dtype)
    T = np.asarray(T, dtype=post.mean.dtype)
    n_in, m = post.mean.shape
    if X.ndim != 2 or X.shape[1] != n_in:
        raise ValueError(f"X must have shape (n, {n_in}), got {X.shape}")
    if T.shape != (X.shape[0], m):
        raise ValueError(f"T must have shape ({X.shape[0]}, {m}), got {T.shape}")
    G = np.ones_like(T) if G is None else np.asarray(G, dtype=post.mean.dtype)
    if G.shape != T.shape:
        raise ValueError(f"G must have shape {T.shape}, got {G.shape}")
    active = G != 0
    T = np.where(active, T, 0.0)
    n_obs = float(fraction * active.sum())
    if not active.any():
        return post, UpdateInfo(0.0, 0.0)
    s2 = noise / fraction
    return _UPDATES[post.structure](post, X, T, G, s2, n_obs, noise)


def _update_unit(post, X, T, G, s2, n_obs, noise):
    # Only units that took part in some row are touched (the others keep their arrays).
    cols = np.flatnonzero((G != 0).any(axis=0))
    mu, cov = post.mean[:, cols].T, post.cov[cols]  # (k, D), (k, D, D)
    Phi = G[:, cols].T[:, :, None] * X[None]  # (k, n, D)
    PS = Phi @ cov  # (k, n, D) = Phi Sigma
    S = PS @ np.swapaxes(Phi, -1, -2)
    S[:, np.arange(X.shape[0]), np.arange(X.shape[0])] += s2
    R = T[:, cols].T - np.einsum("knd,kd->kn", Phi, mu)
    A, u, quad = _batched_gain(S, PS, R)
    new_mean = post.mean.copy()
    new_mean[:, cols] = (mu + np.einsum("knd,kn->kd", A, u)).T
    new_cov = post.cov.copy()
    new_cov[cols] = _symmetrize(cov - np.swapaxes(A, -1, -2) @ A)
    return WeightPosterior("unit", new_mean, new_cov), UpdateInfo(n_obs, float(quad.sum()) * noise)


def _update_shared(post, X, T, G, s2, n_obs, noise):
    cov = post.cov
    n = X.shape[0]
    XS = X @ cov  # (n, D)
    K = XS @ X.T  # (n, n) = X Sigma X^T
    # Column means: exact Kalman step under the shared prior with rows scaled by g_ij.
    Gt = G.T  # (m, n)
    S = Gt[:, :, None] * K[None] * Gt[:, None, :]
    S[:, np.arange(n), np.arange(n)] += s2
    R = T.T - Gt * (X @ post.mean).T  # r_ij = t_ij - g_ij x_i mu_j
    L = scipy.linalg.cholesky(S, lower=True)
    v = scipy.linalg.cho_solve((L, True), R[..., None])[..., 0]  # (m, n) = S^{-1} r
    u = scipy.linalg.solve_triangular(L, R[..., None], lower=True)[..., 0]
    new_mean = post.mean + XS.T @ (Gt * v).T
    # Shared covariance: shrink once with the unscaled rows that had any unit taking part.
    rows = (G != 0).any(axis=1)
    Xp, XSp = X[rows], XS[rows]
    Sp = Xp @ XSp.T
    Sp[np.diag_indices_from(Sp)] += s2
    Lp = scipy.linalg.cholesky(Sp, lower=True)
    A = scipy.linalg.solve_triangular(Lp, XSp, lower=True)
    new_cov = _symmetrize(cov - A.T @ A)
    info = UpdateInfo(n_obs, float(np.einsum("mn,mn->", u, u)) * noise)
    return WeightPosterior("shared", new_mean, new_cov), info


def _update_diag(post, X, T, G, s2, n_obs, noise):
    cols = np.flatnonzero((G != 0).any(axis=0))
    n = X.shape[0]
    var = post.cov[:, cols].T  # (k, D)
    mu = post.mean[:, cols].T
    Phi = G[:, cols].T[:, :, None] * X[None]  # (k, n, D)
    PS = Phi * var[:, None, :]  # Phi diag(v)
    S = PS @ np.swapaxes(Phi, -1, -2)
    S[:, np.arange(n), np.arange(n)] += s2
    R = T[:, cols].T - np.einsum("knd,kd->kn", Phi, mu)
    A, u, quad = _batched_gain(S, PS, R)
    new_mean = post.mean.copy()
    new_mean[:, cols] = (mu + np.einsum("knd,kn->kd", A, u)).T
    new_var = post.cov.copy()
    # Diagonal of Sigma - A^T A, floored at a tiny fraction of the prior-side variance.
    new_var[:, cols] = np.maximum(var - np.einsum("knd,knd->kd", A, A), var * 1e-12).T
    return WeightPosterior("diag", new_mean, new_var), UpdateInfo(n_obs, float(quad.sum()) * noise)


_UPDATES = {"unit": _update_unit, "shared": _update_shared, "diag": _update_diag}


def marginal_variance(post: WeightPosterior, X: np.ndarray) -> np.ndarray:
    """Variance of :math:`x_i^\\top w_j` under the posterior, shape ``(..., n, m)``."""
    X = np.asarray(X, dtype=post.mean.dtype)
    if post.structure == "unit":
        return np.einsum("...nd,mde,...ne->...nm", X, post.cov, X)
    if post.structure == "shared":
        v = np.einsum("...nd,de,...ne->...n", X, post.cov, X)
        return np.repeat(v[..., None], post.mean.shape[1], axis=-1)
    return (X**2) @ post.cov


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
    return post.mean + np.einsum("mde,sem->sdm", L, eps)
