r"""The estimators' label-free standardization of features and targets (first call's data).

Every column is centred and scaled so that predictions do not depend on its units
(:func:`moments`): dense columns by their mean and standard deviation, sparse ones (zero in
at least half of the rows) by their largest magnitude with their zeros kept.

A dense column with heavy tails is squeezed by its standard deviation: a few extreme rows
set the scale and the bulk of the rows lands in a sliver of it, where a ReLU layer of
unit-scale units cannot tell them apart. :func:`tails` therefore chooses per column, by
maximum likelihood and without labels, between that z-score and the *tail transform*

.. math::

    u = \lambda \operatorname{asinh}(z / \lambda), \qquad
    z = \frac{x - \operatorname{median}(x)}{\mathrm{IQR}(x) / 1.349},

which is the identity for :math:`|z| \ll \lambda` and logarithmic beyond (the inverse
hyperbolic sine family of Johnson's :math:`S_U` distributions). As in Box and Cox (1964),
each :math:`\lambda` of :data:`TAIL_SCALES` is scored by the profile log-likelihood of a
Gaussian fitted to the transformed column, with the Jacobian of the transform,

.. math::

    \ell(\lambda) = -\frac n2 \log \widehat{\operatorname{Var}}(u)
        - \frac12 \sum_i \log\big(1 + z_i^2 / \lambda^2\big),
    \qquad \ell(\infty) = -\frac n2 \log \widehat{\operatorname{Var}}(z),

and the z-score (:math:`\lambda = \infty`) is kept unless a tail transform beats it by a
Bayes factor above :math:`e^3` (:data:`bayeslayers.evidence.STRONG`). Only columns with
positive excess kurtosis (tails heavier than a Gaussian's) are scored: on a bounded,
bimodal column (a pixel) a Gaussian fits badly whatever the transform, and with thousands
of rows the likelihood would prefer one by many nats for its shape, not its tails. A
Gaussian or uniform column keeps its z-score; a Cauchy or log-normal one is transformed.
Binary columns and sparse ones are never transformed. The median and the interquartile
range move with the column's units, so the transform, like the z-score, is invariant to
each feature's scale and shift.

The transform is label-free, and it is wrong where the target is linear in the column as
given (a unit conversion, a derived or leaked feature, a linear effect of a skewed
variable): the asinh makes that relation curved, and a network that could reproduce it
exactly through its skip connection no longer can. A regressor therefore checks each
transformed column against its targets (:func:`linear_guard`): it keeps the z-score where
the log evidence of Bayesian linear regression on all the standardized columns
(scikit-learn's ``BayesianRidge``, its type-II maximum likelihood, summed over the
outputs) is higher with that column's z-score than with its transform by more than
:data:`~bayeslayers.evidence.STRONG` nats.
"""

from __future__ import annotations

import numpy as np

from bayeslayers.evidence import STRONG

__all__ = ["TAIL_SCALES", "linear_guard", "moments", "standardize", "tails"]

#: Scales :math:`\lambda` of the tail transform tried per column, in robust standard
#: deviations (octaves; :func:`tails`).
TAIL_SCALES = (8.0, 4.0, 2.0, 1.0, 0.5, 0.25)
#: Normal-consistent interquartile range: IQR / 1.349 is the standard deviation of a Gaussian.
_IQR_SD = 1.349


def _sparse(A: np.ndarray) -> np.ndarray:
    """Columns zero in at least half of the rows."""
    return np.mean(A == 0, axis=0) >= 0.5


def moments(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Per-column centre and scale: the mean and standard deviation, except for sparse columns.

    A column that is zero in at least half of the rows (pixels, counts, indicators) keeps its
    zeros: centre 0 and scale :math:`\max_i |a_i|` (scikit-learn's ``MaxAbsScaler``), so a
    rarely active entry is not blown up to many standard deviations. A constant column gets
    scale 1. Both scales are equivariant: multiplying a column by ``c`` divides it back out.
    """
    mean = A.mean(axis=0)
    scale = A.std(axis=0)
    sparse = _sparse(A)
    mean = np.where(sparse, 0.0, mean)
    scale = np.where(sparse, np.abs(A).max(axis=0), scale)
    return mean, np.where(scale > 0, scale, 1.0)


def _tail_scale(x: np.ndarray) -> tuple[float, float, float] | None:
    """``(centre, scale, lambda)`` of the tail transform of one dense column with heavy tails
    (module docstring), or ``None`` where its z-score is kept."""
    q75, q25 = np.percentile(x, [75, 25])
    scale = (q75 - q25) / _IQR_SD
    if not scale > 0:
        return None
    centre = float(np.median(x))
    z = (x - centre) / scale
    best = -0.5 * len(z) * np.log(np.var(z)) + STRONG  # the z-score, by e^3 ahead
    chosen = None
    for lam in TAIL_SCALES:
        u = lam * np.arcsinh(z / lam)
        score = -0.5 * len(z) * np.log(np.var(u)) - 0.5 * np.sum(np.log1p((z / lam) ** 2))
        if score > best:
            best, chosen = score, lam
    return None if chosen is None else (centre, float(scale), chosen)


def tails(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column centre, scale and tail scale ``lambda`` (``inf``: none) of ``A`` ``(n, d)``.

    :func:`moments` for every column, with the median, the robust scale and a tail scale
    where :func:`_tail_scale` chooses one: dense columns of more than two values whose
    excess kurtosis is positive (tails heavier than a Gaussian's) only.
    """
    mean, scale = moments(A)
    lam = np.full(A.shape[1], np.inf)
    dense = np.flatnonzero(~_sparse(A))
    D = A[:, dense] - mean[dense]  # moments' centre of a dense column is its mean
    D *= D
    m2 = D.mean(axis=0)
    D *= D
    heavy = dense[(D.mean(axis=0) > 3 * m2 * m2) & (m2 > 0)]
    for j in heavy:
        x = A[:, j]
        lo, hi = x.min(), x.max()
        if np.all((x == lo) | (x == hi)):  # binary: nothing to squeeze
            continue
        tail = _tail_scale(x)
        if tail is not None:
            mean[j], scale[j], lam[j] = tail
    return mean, scale, lam


def standardize(
    X: np.ndarray, mean: np.ndarray | float, scale: np.ndarray | float, lam: np.ndarray | None
) -> np.ndarray:
    r"""``(X - mean) / scale``, then :math:`\lambda \operatorname{asinh}(\cdot / \lambda)` on the
    columns with a finite ``lam`` (``None``: no column)."""
    Z = (X - mean) / scale
    if lam is None or not np.isfinite(lam).any():
        return Z
    cols = np.isfinite(lam)
    Z[:, cols] = lam[cols] * np.arcsinh(Z[:, cols] / lam[cols])
    return Z


def linear_guard(
    A: np.ndarray, targets: np.ndarray, mean: np.ndarray, scale: np.ndarray, lam: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`tails`' choice with the z-score (:func:`moments`' centre and scale) back on
    every transformed column where a linear model of ``targets`` ``(n,)`` or ``(n, k)`` has
    more than :data:`~bayeslayers.evidence.STRONG` nats more log evidence with it (module
    docstring). Each column is compared against the design with every chosen transform;
    ``mean``, ``scale`` and ``lam`` are not modified."""
    transformed = np.flatnonzero(np.isfinite(lam))
    if not len(transformed):
        return mean, scale, lam
    Y = np.asarray(targets, dtype=np.float64).reshape(len(A), -1)
    centre, spread = moments(A)
    Z = standardize(np.asarray(A, dtype=np.float64), mean, scale, lam)
    base = _linear_evidence(Z, Y)
    mean, scale, lam = mean.copy(), scale.copy(), lam.copy()
    for j in transformed:
        column = Z[:, j].copy()
        Z[:, j] = (A[:, j] - centre[j]) / spread[j]
        if _linear_evidence(Z, Y) - base > STRONG:
            mean[j], scale[j], lam[j] = centre[j], spread[j], np.inf
        Z[:, j] = column
    return mean, scale, lam


def _linear_evidence(Z: np.ndarray, Y: np.ndarray) -> float:
    """Log marginal likelihood of ``BayesianRidge`` on ``Z``, summed over ``Y``'s columns."""
    from sklearn.linear_model import BayesianRidge

    return float(sum(BayesianRidge(compute_score=True).fit(Z, y).scores_[-1] for y in Y.T))
