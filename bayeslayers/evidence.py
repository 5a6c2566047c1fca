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
"""

from __future__ import annotations

import numpy as np

from bayeslayers.conjugate import WeightPosterior

__all__ = ["MAX_STEP", "mackay_prior"]

#: Largest factor by which one evidence update may move the prior precision.
MAX_STEP = 4.0


def _eig(post: WeightPosterior) -> tuple[np.ndarray, np.ndarray | None]:
    """Eigenvalues ``(m, D)`` of each column's covariance and eigenvectors (None: diagonal)."""
    if post.structure == "diag":
        return post.cov.T, None
    cov = post.cov if post.structure == "unit" else post.cov[None]
    s, U = np.linalg.eigh(cov)
    return s, U


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
        Fixed-point iterations.

    Returns
    -------
    (WeightPosterior, float)
        The re-based posterior and the new prior precision.
    """
    s, U = _eig(post)
    s = np.maximum(s, np.finfo(s.dtype).tiny)
    prec = 1.0 / s  # eigenvalues of Lambda, per column (m, D) or shared (1, D)
    lam = np.maximum(prec - alpha, 0.0)  # of the data's part
    mean = post.mean.T  # (m, D)
    if U is None:
        coef = mean
    elif post.structure == "shared":
        coef = np.einsum("dk,md->mk", U[0], mean)
    else:
        coef = np.einsum("mdk,md->mk", U, mean)
    eta = prec * coef  # eta in the eigenbasis
    copies = len(mean) if post.structure == "shared" else 1
    b0 = 1.0 / alpha  # Gamma(a0 = 1, b0) hyperprior with mean alpha
    new = alpha
    for _ in range(iterations):
        m_new = eta / (lam + new)
        gamma = float(np.sum(lam / (lam + new)) * copies)
        norm = float(np.sum(m_new**2))
        new = gamma * noise / (norm + 2 * b0 * noise)
        new = float(np.clip(new, alpha / MAX_STEP, alpha * MAX_STEP))
    coef_new = eta / (lam + new)
    s_new = 1.0 / (lam + new)
    if U is None:
        return post._replace(mean=coef_new.T.copy(), cov=s_new.T.copy()), new
    if post.structure == "shared":
        mean_new = np.einsum("dk,mk->dm", U[0], coef_new)
        cov_new = (U[0] * s_new[0]) @ U[0].T
    else:
        mean_new = np.einsum("mdk,mk->dm", U, coef_new)
        cov_new = np.einsum("mdk,mk,mek->mde", U, s_new, U)
    cov_new = 0.5 * (cov_new + np.swapaxes(cov_new, -1, -2))
    return post._replace(mean=mean_new, cov=cov_new), new
