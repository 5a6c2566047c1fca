r"""Type-II maximum likelihood for the prior precision of a Gaussian (regression) head.

For a head :math:`y = x^\top w + \varepsilon`, :math:`\varepsilon \sim N(0, \sigma^2)`, with
the Normal-Inverse-Gamma prior :math:`w \sim N(0, \sigma^2 / \alpha \, I)`, the posterior
precision (relative to :math:`\sigma^2`) is :math:`\Lambda = \alpha I + \Lambda_D` with
:math:`\Lambda_D = \sum_i c\, x_i x_i^\top` the data's part, and the mean
:math:`m(\alpha) = \Lambda^{-1} \eta` with :math:`\eta = \Lambda m` fixed by the data. MacKay's
fixed point for the evidence-maximizing :math:`\alpha` (MacKay 1992; Bishop PRML 3.5.2;
scikit-learn's ``BayesianRidge``) is, with the eigenvalues :math:`\lambda_i` of
:math:`\Lambda_D` and the noise estimate :math:`\hat\sigma^2`,

.. math::

    \gamma = \sum_i \frac{\lambda_i}{\lambda_i + \alpha}, \qquad
    \alpha \leftarrow \frac{\gamma\, \hat\sigma^2}{\lVert m(\alpha) \rVert^2},

(the :math:`\hat\sigma^2` because the prior is relative to the noise). Two safeguards keep
the online estimate away from the degenerate fixed points :math:`\alpha \to 0` and
:math:`\alpha \to \infty` (the latter is always a fixed point: :math:`\gamma` and
:math:`\lVert m \rVert` vanish together, and the head then predicts zero): a Gamma
hyperprior on :math:`\alpha` with shape :math:`a_0 = 1` and mean the current value
:math:`\alpha_0` (the maximum a posteriori form of the update,
:math:`\alpha \leftarrow (\gamma + 2a_0 - 2) \hat\sigma^2 / (\lVert m \rVert^2 +
2 b_0 \hat\sigma^2)` with :math:`b_0 = a_0 / \alpha_0`), and a trust region: one call moves
:math:`\alpha` by at most a factor :data:`MAX_STEP`, because the data part was accumulated
from features that kept changing. The posterior is then
re-based on the new :math:`\alpha`: :math:`\Lambda \leftarrow \Lambda + (\alpha' - \alpha) I`,
:math:`m \leftarrow \Lambda'^{-1} \eta`, in the eigenbasis of :math:`\Lambda` (so the new
covariance is symmetric positive definite by construction). The data's part is the one the
online pass accumulated, so in a network whose features change as it learns this is the
evidence of the features as they were seen.

**One precision per block.** :func:`block_mackay_prior` gives each block :math:`g` of
consecutive weight rows its own precision :math:`\alpha_g` (a network's head: the top hidden
output, the skip inputs, the bias), the prior :math:`w \sim N(0, \sigma^2 A^{-1})` with
:math:`A = \operatorname{diag}(\alpha_{g(i)})`: automatic relevance determination over
blocks (MacKay 1994; Tipping 2001 for single weights). With :math:`\Sigma' = (\Lambda_D +
A)^{-1}` and :math:`m = \Sigma' \eta`, each block's fixed point is

.. math::

    \gamma_g = \sum_{i \in g} \sum_j \big(1 - \alpha_g \Sigma'_{j,ii}\big), \qquad
    \alpha_g \leftarrow \frac{(\gamma_g + 2a_0 - 2)\, \hat\sigma^2}
    {\lVert m_g \rVert^2 + 2 b_{0,g} \hat\sigma^2},

with the same hyperprior (mean the block's current value) and trust region per block.
:math:`A` is not a multiple of the identity, so there is no common eigenbasis: each
iteration factors :math:`\Lambda_D + A` (the data's natural parameters merged onto the
prior, :func:`bayeslayers.conjugate.merge`), and the iterations stop after
:data:`BLOCK_ITERATIONS`; the trust region binds in the first calls of a pass, whose
features still change.

The eigenbasis comes from the covariance structure's own hooks
(:attr:`bayeslayers.conjugate.Structure.eig` and ``from_eig``), so any registered structure
is re-based the same way: one basis per column (``"unit"``; a single one when every column
has the same covariance, as a head with unit slopes does), one shared by every column
(``"shared"``, each of its :math:`m` columns counted in :math:`\gamma`), or the weights
themselves (``"diag"``). The fixed-point iteration stops early once :math:`\alpha` repeats
exactly (every further iteration would return the same value).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import scipy.linalg

from bayeslayers import conjugate
from bayeslayers.conjugate import WeightPosterior

__all__ = ["BLOCK_ITERATIONS", "MAX_STEP", "STRONG", "block_mackay_prior", "mackay_prior"]

#: Largest factor by which one evidence update may move the prior precision.
MAX_STEP = 4.0
#: Log Bayes factor by which an alternative must beat the simpler default to replace it:
#: "strong" evidence on Kass & Raftery's 1995 scale (:math:`2 \ln B > 6`, :math:`B > 20`).
STRONG = 3.0
#: Largest number of fixed-point iterations of :func:`block_mackay_prior` per call (each
#: factors the head's precision once).
BLOCK_ITERATIONS = 3
#: Relative change of every block's precision below which :func:`block_mackay_prior` stops.
BLOCK_RTOL = 1e-6


def mackay_prior(
    post: WeightPosterior, alpha: float, noise: float, iterations: int = 30
) -> tuple[WeightPosterior, float]:
    """Re-base ``post`` on the evidence-maximizing prior precision (module docstring).

    Parameters
    ----------
    post : WeightPosterior
        Head posterior, covariance relative to the noise, prior mean zero.
    alpha : float
        The (relative) prior precision ``post`` was built with.
    noise : float
        Current noise variance estimate :math:`\\hat\\sigma^2`.
    iterations : int
        Largest number of fixed-point iterations.

    Returns
    -------
    (WeightPosterior, float)
        The re-based posterior and the new prior precision.
    """
    record = conjugate.STRUCTURES[post.structure]
    s, coef, basis = record.eig(post)  # per column (m, D), or (1, D) shared by the m columns
    s = np.maximum(s, np.finfo(s.dtype).tiny)
    prec = 1.0 / s  # eigenvalues of Lambda
    lam = np.maximum(prec - alpha, 0.0)  # of the data's part
    eta = prec * coef  # eta in the eigenbasis, (m, D)
    copies = len(coef) / len(s)  # columns per covariance
    b0 = 1.0 / alpha  # Gamma(a0 = 1, b0) hyperprior with mean alpha
    low, high = alpha / MAX_STEP, alpha * MAX_STEP
    new = alpha
    for _ in range(iterations):
        denominator = lam + new
        gamma = float(np.sum(lam / denominator) * copies)
        norm = float(np.sum((eta / denominator) ** 2))
        last, new = new, gamma * noise / (norm + 2 * b0 * noise)
        new = min(max(new, low), high)  # the trust region (NaN stays NaN)
        if new == last:  # a fixed point in floating point: every further step repeats it
            break
    denominator = lam + new
    return record.from_eig(post, basis, 1.0 / denominator, eta / denominator), new


def block_mackay_prior(
    post: WeightPosterior,
    alpha: np.ndarray,
    blocks: np.ndarray,
    noise: float,
    iterations: int = BLOCK_ITERATIONS,
) -> tuple[WeightPosterior, np.ndarray]:
    """Re-base ``post`` on one evidence-maximizing prior precision per block of rows (module
    docstring, "One precision per block").

    Parameters
    ----------
    post : WeightPosterior
        Head posterior, covariance relative to the noise, prior mean zero.
    alpha : ndarray of shape (k,)
        The (relative) prior precision of each block ``post`` was built with.
    blocks : ndarray of shape (k,)
        Rows per block, consecutive from the first row; they sum to the weights' rows.
    noise : float
        Current noise variance estimate :math:`\\hat\\sigma^2`.
    iterations : int
        Largest number of fixed-point iterations.

    Returns
    -------
    (WeightPosterior, ndarray of shape (k,))
        The re-based posterior and the new prior precisions.
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    labels = np.repeat(np.arange(len(blocks)), blocks)
    if post.structure in ("unit", "shared"):
        precision, shift = _dense_data(post, alpha[labels])
        moments = functools.partial(_dense_moments, precision, shift)
    else:
        data = conjugate.natural_delta(_prior(post, alpha[labels]), post)
        moments = functools.partial(_merged_moments, post, data)
    b0 = 1.0 / alpha
    low, high = alpha / MAX_STEP, alpha * MAX_STEP
    new = alpha
    for i in range(iterations):
        variances, mean = _own_moments(post) if i == 0 else moments(new[labels])
        gamma = np.bincount(labels, (1.0 - new[labels, None] * variances).sum(axis=1), len(blocks))
        norm = np.bincount(labels, (mean**2).sum(axis=1), len(blocks))
        last, new = new, np.clip(gamma * noise / (norm + 2 * b0 * noise), low, high)
        if np.allclose(new, last, rtol=BLOCK_RTOL, atol=0.0):
            break
    if post.structure in ("unit", "shared"):
        mean, cov = _dense_posterior(precision, shift, post.structure == "shared", new[labels])
        return post._replace(mean=mean, cov=cov), new
    return conjugate.merge(_prior(post, new[labels]), [data]), new


def _own_moments(post: WeightPosterior) -> tuple[np.ndarray, np.ndarray]:
    """Variances and means ``(D, m)`` of ``post`` itself: its moments at the precisions it was
    built with, the first iteration's (no factorization for the dense structures; any other
    structure through its own hook, :func:`~bayeslayers.conjugate.marginal_variance` of the
    unit vectors)."""
    if post.structure == "shared":
        return np.repeat(np.diagonal(post.cov)[:, None], post.mean.shape[1], axis=1), post.mean
    if post.structure == "unit":
        return np.diagonal(post.cov, axis1=1, axis2=2).T, post.mean
    eye = np.eye(len(post.mean), dtype=post.mean.dtype)
    return conjugate.marginal_variance(post, eye), post.mean


def _prior(post: WeightPosterior, rows: np.ndarray) -> WeightPosterior:
    """The zero-mean prior of ``post``'s structure with precision ``rows`` per row."""
    return conjugate.init(post.structure, np.zeros_like(post.mean), 1.0 / rows)


def _dense_data(post: WeightPosterior, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""The data's part of a dense posterior's natural parameters, ``(c, D, D)`` precisions
    :math:`\Sigma_j^{-1} - \operatorname{diag}(\alpha)` (one per covariance, ``c = 1`` for
    ``"shared"``) and the shift :math:`\Sigma_j^{-1} \mu_j` ``(D, m)``."""
    covs = post.cov[None] if post.structure == "shared" else post.cov
    precision, shift = np.empty_like(covs), np.empty_like(post.mean)
    for j, cov in enumerate(covs):
        columns = slice(None) if len(covs) == 1 else slice(j, j + 1)
        factor = scipy.linalg.cho_factor(cov, check_finite=False)
        precision[j] = _inverse(factor) - np.diag(rows)
        shift[:, columns] = scipy.linalg.cho_solve(
            factor, post.mean[:, columns], check_finite=False
        )
    return precision, shift


def _inverse(factor: tuple[np.ndarray, bool]) -> np.ndarray:
    """The symmetric inverse from a Cholesky factor (LAPACK ``potri``)."""
    (potri,) = scipy.linalg.lapack.get_lapack_funcs(("potri",), (factor[0],))
    inverse, info = potri(factor[0], lower=factor[1])
    if info:
        raise np.linalg.LinAlgError(f"a re-based precision is singular (potri info {info})")
    triangle = np.tril(inverse) if factor[1] else np.triu(inverse)
    return triangle + triangle.T - np.diag(np.diagonal(triangle))


def _factors(
    precision: np.ndarray, rows: np.ndarray
) -> Iterator[tuple[slice, tuple[np.ndarray, bool]]]:
    """Per dense precision (the data's part), its columns and the Cholesky factor of it plus
    ``diag(rows)``."""
    for j, data in enumerate(precision):
        columns = slice(None) if len(precision) == 1 else slice(j, j + 1)
        yield columns, scipy.linalg.cho_factor(data + np.diag(rows), lower=True, check_finite=False)


def _dense_moments(
    precision: np.ndarray, shift: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Variances and means ``(D, m)`` at prior precision ``rows``: one Cholesky factor per
    covariance, the variances as the squared column sums of its triangular inverse (LAPACK
    ``trtri``, half the work of the inverse)."""
    variances, mean = np.empty_like(shift), np.empty_like(shift)
    for columns, factor in _factors(precision, rows):
        mean[:, columns] = scipy.linalg.cho_solve(factor, shift[:, columns], check_finite=False)
        (trtri,) = scipy.linalg.lapack.get_lapack_funcs(("trtri",), (factor[0],))
        inverse, info = trtri(factor[0], lower=True)
        if info:
            raise np.linalg.LinAlgError(f"a re-based precision is singular (trtri info {info})")
        variances[:, columns] = np.square(np.tril(inverse)).sum(axis=0)[:, None]
    return variances, mean


def _dense_posterior(
    precision: np.ndarray, shift: np.ndarray, shared: bool, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D, m)`` and covariance at prior precision ``rows``, in the structure's layout:
    ``(D, D)`` if ``shared``, else ``(m, D, D)`` (symmetric by construction)."""
    mean, cov = np.empty_like(shift), np.empty_like(precision)
    for j, (columns, factor) in enumerate(_factors(precision, rows)):
        mean[:, columns] = scipy.linalg.cho_solve(factor, shift[:, columns], check_finite=False)
        cov[j] = _inverse(factor)
    return mean, cov[0] if shared else cov


def _merged_moments(
    post: WeightPosterior, data: conjugate.NaturalDelta, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_dense_moments` for any structure, through its own hooks: the data merged onto
    the prior of precision ``rows``, its variances read off by :func:`_own_moments`."""
    return _own_moments(conjugate.merge(_prior(post, rows), [data]))
