r"""Calibration and accuracy metrics for predictive distributions, in one place.

Regression metrics take the observed ``y`` and a predictive given by its ``mean`` and
standard deviation ``std`` (what ``Network.predict(X, return_std=True)`` returns), each of shape
``(n,)`` or ``(n, k)``: Gaussian, or Student-t with ``dof`` degrees of freedom (what
``Network.predictive_dof()`` returns for a head with a learned noise; ``std`` is then the
t distribution's standard deviation, its scale times :math:`\sqrt{\nu / (\nu - 2)}`).
Classification metrics take labels ``y`` and class probabilities
``proba`` of shape ``(n, K)`` (what ``Network.predict_proba`` returns); labels are either
integer indices ``0..K-1`` or, with ``classes=``, values of ``classes`` (e.g. ``net.classes_``).

Every metric is an average over the ``n`` points (``rmse`` is the root of one); lower is better
except for ``interval_coverage``, which should match the interval's nominal level.

=========================  ================================================================
regression                 :func:`rmse`, :func:`nll_gaussian`, :func:`crps_gaussian`,
                           :func:`nll_student_t`, :func:`crps_student_t`,
                           :func:`interval_coverage` (with :func:`central_interval`)
classification             :func:`nll_classification`, :func:`brier`, :func:`ece`
                           (with :func:`reliability_curve`), :func:`accuracy`
pointwise (for comparing)  :func:`log_density_gaussian`, :func:`log_density_student_t`,
                           :func:`log_density_classification`
=========================  ================================================================
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.special import betaln, ndtr, ndtri

from bayeslayers._validation import as_float_array, check_count

__all__ = [
    "accuracy",
    "brier",
    "central_interval",
    "classification_metrics",
    "crps_gaussian",
    "crps_student_t",
    "ece",
    "interval_coverage",
    "log_density_classification",
    "log_density_gaussian",
    "log_density_student_t",
    "nll_classification",
    "nll_gaussian",
    "nll_student_t",
    "regression_metrics",
    "reliability_curve",
    "rmse",
]

_LOG_2PI = np.log(2.0 * np.pi)


# --------------------------------------------------------------------------- checks
def _as_real(x, name: str) -> np.ndarray:
    arr = as_float_array(x, name, np.float64)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (n,) or 2-D (n, k), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 points")
    return arr


def _regression_args(y, mean, std=None) -> tuple[np.ndarray, ...]:
    y, mean = _as_real(y, "y"), _as_real(mean, "mean")
    if y.shape != mean.shape:
        raise ValueError(f"y and mean must have the same shape, got {y.shape} and {mean.shape}")
    if std is None:
        return y, mean
    std = _as_real(std, "std")
    if std.shape != y.shape:
        raise ValueError(f"std must have the shape of y {y.shape}, got {std.shape}")
    if np.any(std <= 0):
        raise ValueError("std must be > 0 everywhere")
    return y, mean, std


def _check_level(level: float) -> float:
    if not (isinstance(level, int | float | np.floating) and 0 < level < 1):
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    return float(level)


def _classification_args(y, proba, classes=None) -> tuple[np.ndarray, np.ndarray]:
    """Integer class indices ``(n,)`` and probabilities ``(n, K)``, both checked."""
    proba = _as_real(proba, "proba")
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise ValueError(f"proba must have shape (n, K) with K >= 2, got {proba.shape}")
    if np.any(proba < 0) or not np.allclose(proba.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("proba rows must be non-negative and sum to 1")
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != proba.shape[0]:
        raise ValueError(
            f"y must be 1-D with {proba.shape[0]} labels (one per row of proba), got {y.shape}"
        )
    if classes is not None:
        classes = np.asarray(classes)
        if classes.shape != (proba.shape[1],):
            raise ValueError(
                f"classes must list the {proba.shape[1]} classes (columns of proba), "
                f"got shape {classes.shape}"
            )
        order = np.argsort(classes)
        pos = np.searchsorted(classes, y, sorter=order).clip(0, len(classes) - 1)
        index = order[pos]
        unknown = classes[index] != y
        if np.any(unknown):
            raise ValueError(f"y contains labels not in classes: {np.unique(y[unknown]).tolist()}")
        return index, proba
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        raise TypeError(
            f"y must hold integer class indices 0..K-1 (or pass classes=), got dtype {y.dtype}"
        )
    y = y.astype(np.intp)
    if np.any((y < 0) | (y >= proba.shape[1])):
        raise ValueError(f"y must hold class indices in [0, {proba.shape[1] - 1}]")
    return y, proba


# ----------------------------------------------------------------------- regression
def rmse(y, mean) -> float:
    r"""Root mean squared error, :math:`\sqrt{\tfrac{1}{nk} \sum_{i,j} (y_{ij} - \mu_{ij})^2}`."""
    y, mean = _regression_args(y, mean)
    return float(np.sqrt(np.mean((y - mean) ** 2)))


def log_density_gaussian(y, mean, std) -> np.ndarray:
    r"""Pointwise log predictive density under independent Gaussians, shape ``(n,)``.

    .. math::

        \log p(y_i) = \sum_j \Big[-\tfrac12 \log(2\pi\sigma_{ij}^2)
                      - \frac{(y_{ij} - \mu_{ij})^2}{2\sigma_{ij}^2}\Big],

    summed over the ``k`` outputs of a point (``mean`` = :math:`\mu`, ``std`` = :math:`\sigma`).
    """
    y, mean, std = _regression_args(y, mean, std)
    z = (y - mean) / std
    lp = -0.5 * (_LOG_2PI + z**2) - np.log(std)
    return lp if lp.ndim == 1 else lp.sum(axis=1)


def nll_gaussian(y, mean, std) -> float:
    r"""Mean negative log predictive density, :math:`-\tfrac1n \sum_i \log p(y_i)`.

    See :func:`log_density_gaussian`; in nats per point (summed over outputs).
    """
    return float(-np.mean(log_density_gaussian(y, mean, std)))


def crps_gaussian(y, mean, std) -> float:
    r"""Mean continuous ranked probability score of Gaussian predictives (Gneiting & Raftery 2007).

    .. math::

        \mathrm{CRPS}(\mathcal N(\mu, \sigma^2), y) = \sigma \Big[z\,(2\Phi(z) - 1)
            + 2\varphi(z) - \tfrac{1}{\sqrt\pi}\Big], \qquad z = \frac{y - \mu}{\sigma},

    averaged over every point and output. It has the units of ``y`` and tends to the absolute
    error as :math:`\sigma \to 0`.
    """
    y, mean, std = _regression_args(y, mean, std)
    z = (y - mean) / std
    pdf = np.exp(-0.5 * z**2) / np.sqrt(2.0 * np.pi)
    crps = std * (z * (2.0 * ndtr(z) - 1.0) + 2.0 * pdf - 1.0 / np.sqrt(np.pi))
    return float(np.mean(crps))


def _check_dof(dof) -> float:
    """``dof`` as a float in (0, inf] (``None`` is ``inf``: Gaussian)."""
    if dof is None:
        return np.inf
    if isinstance(dof, bool) or not isinstance(dof, int | float | np.integer | np.floating):
        raise TypeError(f"dof must be a number or None, got {type(dof).__name__}")
    if not dof > 0:
        raise ValueError(f"dof must be > 0 (inf for a Gaussian), got {dof!r}")
    return float(dof)


def _t_scale(std: np.ndarray, nu: float) -> np.ndarray:
    """The t scale whose standard deviation is ``std`` (``std`` itself where ``nu <= 2``,
    where the variance is infinite and ``Network.predict`` reports the scale)."""
    return std * np.sqrt((nu - 2.0) / nu) if 2.0 < nu < np.inf else std


def log_density_student_t(y, mean, std, dof) -> np.ndarray:
    r"""Pointwise log predictive density under independent Student-t's, shape ``(n,)``.

    With scale :math:`s = \sigma \sqrt{(\nu - 2) / \nu}` (so that ``std`` is the standard
    deviation) and :math:`z = (y - \mu) / s`,

    .. math::

        \log p(y) = \log\Gamma\big(\tfrac{\nu+1}{2}\big) - \log\Gamma\big(\tfrac{\nu}{2}\big)
            - \tfrac12 \log(\nu \pi s^2) - \tfrac{\nu + 1}{2} \log\big(1 + z^2 / \nu\big),

    summed over outputs; ``dof=None`` or ``inf`` gives :func:`log_density_gaussian`.
    """
    nu = _check_dof(dof)
    if nu == np.inf:
        return log_density_gaussian(y, mean, std)
    y, mean, std = _regression_args(y, mean, std)
    scale = _t_scale(std, nu)
    lp = stats.t.logpdf(y, nu, loc=mean, scale=scale)
    return lp if lp.ndim == 1 else lp.sum(axis=1)


def nll_student_t(y, mean, std, dof) -> float:
    """Mean negative log predictive density (:func:`log_density_student_t`), nats per point."""
    return float(-np.mean(log_density_student_t(y, mean, std, dof)))


def crps_student_t(y, mean, std, dof) -> float:
    r"""Mean CRPS of Student-t predictives (closed form, e.g. Jordan, Krüger & Lerch 2019).

    For :math:`\nu > 1`, scale :math:`s` (as in :func:`log_density_student_t`) and
    :math:`z = (y - \mu) / s`, with :math:`F_\nu, f_\nu` the standard t's CDF and density,

    .. math::

        \mathrm{CRPS} = s \Big[ z\,(2F_\nu(z) - 1) + 2 f_\nu(z) \frac{\nu + z^2}{\nu - 1}
            - \frac{2\sqrt{\nu}\, B(\tfrac12, \nu - \tfrac12)}{(\nu - 1)\, B(\tfrac12,
            \tfrac{\nu}{2})^2} \Big];

    ``dof=None`` or ``inf`` gives :func:`crps_gaussian`.
    """
    nu = _check_dof(dof)
    if nu == np.inf:
        return crps_gaussian(y, mean, std)
    if nu <= 1:
        raise ValueError(f"the CRPS of a Student-t needs dof > 1 (a finite mean), got {dof!r}")
    y, mean, std = _regression_args(y, mean, std)
    scale = _t_scale(std, nu)
    z = (y - mean) / scale
    const = 2 * np.sqrt(nu) * np.exp(betaln(0.5, nu - 0.5) - 2 * betaln(0.5, nu / 2)) / (nu - 1)
    crps = z * (2 * stats.t.cdf(z, nu) - 1) + 2 * stats.t.pdf(z, nu) * (nu + z**2) / (nu - 1)
    return float(np.mean(scale * (crps - const)))


def central_interval(
    mean, std, level: float = 0.9, *, dof: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""Central ``level`` interval, :math:`\mu \mp z_{(1+\ell)/2}\,\sigma` for Gaussians.

    With ``dof`` (Student-t predictives, ``std`` their standard deviation) the quantile is
    the t's: :math:`\mu \mp t_{\nu, (1+\ell)/2}\, s`, :math:`s` the scale.

    Returns
    -------
    lower, upper : ndarray
        Same shape as ``mean``.
    """
    level = _check_level(level)
    mean, std = _as_real(mean, "mean"), _as_real(std, "std")
    if std.shape != mean.shape:
        raise ValueError(f"std must have the shape of mean {mean.shape}, got {std.shape}")
    if np.any(std < 0):
        raise ValueError("std must be >= 0 everywhere")
    nu = _check_dof(dof)
    if nu == np.inf:
        half = ndtri(0.5 + level / 2.0) * std
    else:
        half = stats.t.ppf(0.5 + level / 2.0, nu) * _t_scale(std, nu)
    return mean - half, mean + half


def interval_coverage(y, lower, upper) -> float:
    r"""Fraction of observations inside their interval, :math:`\tfrac{1}{nk}\sum [l \le y \le u]`.

    For a calibrated central ``level`` interval (e.g. from :func:`central_interval` or
    ``Network.predict_quantiles``) this should be close to ``level``.
    """
    y, lower, upper = _as_real(y, "y"), _as_real(lower, "lower"), _as_real(upper, "upper")
    if lower.shape != y.shape or upper.shape != y.shape:
        raise ValueError(
            f"lower and upper must have the shape of y {y.shape}, got {lower.shape}, {upper.shape}"
        )
    if np.any(lower > upper):
        raise ValueError("lower must be <= upper everywhere")
    return float(np.mean((lower <= y) & (y <= upper)))


def regression_metrics(
    y, mean, std, level: float = 0.9, *, dof: float | None = None
) -> dict[str, float]:
    """All regression metrics at once: ``rmse``, ``nll``, ``crps`` and ``coverage`` at ``level``.

    ``dof`` (e.g. ``net.predictive_dof()``) scores Student-t predictives; ``None``: Gaussian.
    """
    return {
        "rmse": rmse(y, mean),
        "nll": nll_student_t(y, mean, std, dof),
        "crps": crps_student_t(y, mean, std, dof),
        "coverage": interval_coverage(y, *central_interval(mean, std, level, dof=dof)),
    }


# ------------------------------------------------------------------- classification
def log_density_classification(y, proba, *, classes=None, floor: float = 1e-300) -> np.ndarray:
    r"""Pointwise log probability of the observed class, :math:`\log p_{i, y_i}`, shape ``(n,)``.

    Probabilities below ``floor`` are raised to it, so a confidently wrong prediction costs a
    large finite amount (:math:`-\log 10^{-300} \approx 691` nats) rather than infinity.
    """
    if not 0 < floor < 1:
        raise ValueError(f"floor must be in (0, 1), got {floor!r}")
    y, proba = _classification_args(y, proba, classes)
    return np.log(np.maximum(proba[np.arange(len(y)), y], floor))


def nll_classification(y, proba, *, classes=None, floor: float = 1e-300) -> float:
    r"""Mean negative log likelihood (log loss), :math:`-\tfrac1n \sum_i \log p_{i, y_i}`."""
    return float(-np.mean(log_density_classification(y, proba, classes=classes, floor=floor)))


def brier(y, proba, *, classes=None) -> float:
    r"""Multiclass Brier score (Brier 1950), :math:`\tfrac1n \sum_i \sum_k (p_{ik} - [y_i = k])^2`.

    Between 0 and 2. For two classes it is twice scikit-learn's ``brier_score_loss``, which
    scores only the positive class.
    """
    y, proba = _classification_args(y, proba, classes)
    onehot = np.zeros_like(proba)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def accuracy(y, proba, *, classes=None) -> float:
    """Fraction of points whose most probable class is the observed one."""
    y, proba = _classification_args(y, proba, classes)
    return float(np.mean(np.argmax(proba, axis=1) == y))


def reliability_curve(
    y, proba, *, n_bins: int = 15, classes=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Top-label reliability: mean confidence, accuracy and count in equal-width bins.

    Point ``i`` has confidence :math:`\hat p_i = \max_k p_{ik}` and is correct when
    :math:`\arg\max_k p_{ik} = y_i`; it falls in bin ``b`` when
    :math:`\hat p_i \in ((b-1)/B, b/B]` (the first bin includes 0).

    Returns
    -------
    confidence, accuracy, count : ndarray of shape (n_bins,)
        Per bin; ``confidence`` and ``accuracy`` are NaN for empty bins.
    """
    check_count(n_bins, "n_bins")
    y, proba = _classification_args(y, proba, classes)
    conf = proba.max(axis=1)
    correct = (np.argmax(proba, axis=1) == y).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.intp) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, conf, n_bins) / count
        mean_acc = np.bincount(bins, correct, n_bins) / count
    empty = count == 0
    mean_conf[empty] = np.nan
    mean_acc[empty] = np.nan
    return mean_conf, mean_acc, count


def ece(y, proba, *, n_bins: int = 15, classes=None) -> float:
    r"""Expected calibration error of the top label (Naeini et al. 2015; Guo et al. 2017).

    .. math::

        \mathrm{ECE} = \sum_{b=1}^{B} \frac{|B_b|}{n}\,
                       \big|\operatorname{acc}(B_b) - \operatorname{conf}(B_b)\big|

    over ``n_bins`` equal-width confidence bins (see :func:`reliability_curve`).
    """
    conf, acc, count = reliability_curve(y, proba, n_bins=n_bins, classes=classes)
    full = count > 0
    return float(np.sum(count[full] * np.abs(acc[full] - conf[full])) / count.sum())


def classification_metrics(y, proba, *, n_bins: int = 15, classes=None) -> dict[str, float]:
    """All classification metrics at once: ``accuracy``, ``nll``, ``brier`` and ``ece``."""
    return {
        "accuracy": accuracy(y, proba, classes=classes),
        "nll": nll_classification(y, proba, classes=classes),
        "brier": brier(y, proba, classes=classes),
        "ece": ece(y, proba, n_bins=n_bins, classes=classes),
    }
