r"""Gaussian posteriors over weight columns, the one conjugate update, and the structures.

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
``S``; :math:`A^\top A` goes through BLAS ``syrk``, so covariances stay exactly symmetric.

Covariance structures are registered hook records (:class:`Structure`) in :data:`STRUCTURES`,
chosen per layer by name (``structure=``); :func:`init`, :func:`update`,
:func:`marginal_variance`, :func:`sample`, :func:`inflate`, :func:`covariance_health`,
:func:`natural_delta` and :func:`merge` dispatch through the record. A new structure (low rank,
Kronecker) is one more record, picked up by the parametrized contract tests
(``tests/test_conjugate_structures.py``). The three shipped ones:

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

Positive definiteness and the floating-point bound
--------------------------------------------------
The downdate subtracts :math:`A^\top A` from :math:`\Sigma`, so it loses what rounding leaves
below about :math:`\varepsilon \lVert\Sigma\rVert` (:math:`\varepsilon` the machine epsilon of
the dtype). After a row with :math:`r = \phi^\top \Sigma \phi / (\sigma^2 / c)`, the posterior
variance along :math:`\Sigma\phi` is a fraction :math:`1 / (1 + r)` of the prior's, so once
:math:`r` approaches :math:`1 / (D \varepsilon)` (about :math:`10^{13}` in float64 and
:math:`10^{5}` in float32 for ``D = 65``) that variance is below rounding and the computed
covariance may have a negative eigenvalue. :func:`update` screens every batch with the cheap
bound :math:`r \le g_{ij}^2 \lVert x_i \rVert^2 \operatorname{tr}\Sigma_j / (\sigma^2 / c)`
(:math:`O(nD + mD)`); for the units of a batch above :math:`1 / (D \varepsilon)` it factors
the updated covariances and raises :class:`numpy.linalg.LinAlgError` if one is no longer
positive definite, so the caller rolls the update back (the network names the layer). This is
the case of an outlier row scaled by :math:`10^{10}` or more, and of float32 on inputs with
large norms: standardize the inputs, raise the noise, or train in float64. ``"diag"`` variances
are floored above zero by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import numpy as np
import scipy.linalg

from bayeslayers import _kernels

__all__ = [
    "STRUCTURES",
    "CovarianceHealth",
    "NaturalDelta",
    "Structure",
    "UpdateInfo",
    "WeightPosterior",
    "covariance_health",
    "inflate",
    "init",
    "marginal_variance",
    "merge",
    "natural_delta",
    "sample",
    "update",
    "variances",
]


class WeightPosterior(NamedTuple):
    """Gaussian posterior over a ``(D, m)`` weight matrix, one column per output unit.

    Attributes
    ----------
    structure : str
        A key of :data:`STRUCTURES` (``"unit"``, ``"shared"``, ``"diag"``).
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


class CovarianceHealth(NamedTuple):
    """Numerical health of one posterior's covariances (:func:`covariance_health`).

    Attributes
    ----------
    finite : bool
        Every mean and covariance entry is finite.
    symmetric : bool
        Every covariance is symmetric to the tolerance asked for (always true for ``"diag"``).
    cholesky : bool
        Every covariance has a Cholesky factor (``"diag"``: every variance is > 0).
    min_eigenvalue : float
        Smallest eigenvalue over the covariances (smallest variance for ``"diag"``).
    """

    finite: bool
    symmetric: bool
    cholesky: bool
    min_eigenvalue: float


class NaturalDelta(NamedTuple):
    r"""Change of a posterior's natural parameters from a prior (:func:`natural_delta`).

    With precision :math:`\Lambda_j = \Sigma_j^{-1}` and precision-weighted mean
    :math:`h_j = \Lambda_j \mu_j`, conditioning on data ``k`` adds
    :math:`\Delta\Lambda_j = \tfrac{c}{\sigma^2}\Phi_j^\top\Phi_j` and
    :math:`\Delta h_j = \tfrac{c}{\sigma^2}\Phi_j^\top t_j` (exactly for exact structures).

    Attributes
    ----------
    precision : ndarray
        :math:`\Delta\Lambda`, in the structure's covariance layout (``(m, D, D)``,
        ``(D, D)`` or ``(D, m)``).
    shift : ndarray of shape (D, m) (``(m, D)`` for ``"unit"``)
        :math:`\Delta h`.
    quad : float
        :math:`\Delta \sum_j \mu_j^\top \Lambda_j \mu_j` (not additive over data sets; the
        Normal-Inverse-Gamma noise merge needs it).
    logdet : float
        :math:`\Delta \sum_j \log|\Lambda_j|` (not additive either; the merge of the log
        evidence needs it).
    """

    precision: np.ndarray
    shift: np.ndarray
    quad: float
    logdet: float = 0.0


#: In-place update of ``(mean, cov)`` on ``X, T, G`` (mask ``active``, noise ``s2``); returns
#: the residual quadratic form.
UpdateFn = Callable[
    [np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float], float
]


class Structure(NamedTuple):
    r"""The hooks that make one covariance structure (one record of :data:`STRUCTURES`).

    Every hook is a small pure function of arrays; the public functions of this module
    validate the arguments and dispatch to them.

    Attributes
    ----------
    name : str
        The registry key (``WeightPosterior.structure``).
    exact : str
        Where :func:`update` equals closed-form Bayesian linear regression: ``"always"`` (any
        design and slopes), ``"unit_slopes"`` (every slope one) or ``"disjoint_rows"`` (every
        design row has at most one non-zero input, with any slopes). The contract tests pick
        their designs from it.
    prior : callable
        ``prior(variance, m) -> cov``: the covariance of :math:`\mathcal N(\mu_0, \operatorname
        {diag}(s^2))` per column, ``variance`` of shape ``(D,)``.
    update : callable
        ``update(mean, cov, X, T, G, active, s2) -> quad``, in place (see :func:`update`).
    marginal_variance : callable
        ``marginal_variance(post, X) -> (..., n, m)`` :math:`x^\top\Sigma_j x`.
    draws : callable
        ``draws(post, eps) -> (S, D, m)`` weights from standard normal ``eps`` ``(S, D, m)``.
    variances : callable
        ``variances(cov)``: the variance of every weight (any layout; the cheap health guard).
    health : callable
        ``health(post, symmetry_tol) -> CovarianceHealth``.
    inflate : callable
        ``inflate(cov, forgetting, process_noise) -> cov``:
        :math:`\Sigma / \lambda + \operatorname{diag}(q)` (see :func:`inflate`).
    delta : callable
        ``delta(prior, post) -> NaturalDelta`` (see :func:`natural_delta`).
    merge : callable
        ``merge(prior, deltas) -> (WeightPosterior, NaturalDelta)``: the prior plus the sum of
        the deltas, back in covariance form, and the result's own delta from the prior (its
        ``quad`` and ``logdet`` recomputed; see :func:`merge`).
    eig : callable
        ``eig(post) -> (values, coef, basis)``: the eigenvalues of the covariances,
        ``(m, D)`` one row per column (or ``(1, D)`` for one covariance shared by every
        column), each column's mean in its eigenbasis ``(m, D)``, :math:`U_j^\top \mu_j`
        with :math:`\Sigma_j = U_j \operatorname{diag}(s_j) U_j^\top`, and the basis
        (opaque, for ``from_eig``).
    from_eig : callable
        ``from_eig(post, basis, values, coef) -> WeightPosterior``: the inverse of ``eig``,
        the posterior with covariances :math:`U_j \operatorname{diag}(s_j) U_j^\top` and means
        :math:`U_j c_j` (exactly symmetric covariances). With ``eig`` it is what
        :func:`bayeslayers.evidence.mackay_prior` needs to re-base a posterior on a new prior
        precision.
    """

    name: str
    exact: str
    prior: Callable[[np.ndarray, int], np.ndarray]
    update: UpdateFn
    marginal_variance: Callable[[WeightPosterior, np.ndarray], np.ndarray]
    draws: Callable[[WeightPosterior, np.ndarray], np.ndarray]
    variances: Callable[[np.ndarray], np.ndarray]
    health: Callable[[WeightPosterior, float], CovarianceHealth]
    inflate: Callable[[np.ndarray, float, np.ndarray], np.ndarray]
    delta: Callable[[WeightPosterior, WeightPosterior], NaturalDelta]
    merge: Callable[[WeightPosterior, Sequence[NaturalDelta]], tuple[WeightPosterior, NaturalDelta]]
    eig: Callable[[WeightPosterior], tuple[np.ndarray, np.ndarray, np.ndarray | None]]
    from_eig: Callable[
        [WeightPosterior, np.ndarray | None, np.ndarray, np.ndarray], WeightPosterior
    ]


class _Registry(dict[str, Structure]):
    """Name -> :class:`Structure`; its ``repr`` lists the names, as error messages show it."""

    def __repr__(self) -> str:
        return repr(tuple(self))


def _check_structure(structure: str) -> Structure:
    if structure not in STRUCTURES:
        raise ValueError(f"structure must be one of {STRUCTURES}, got {structure!r}")
    return STRUCTURES[structure]


def _record(post: WeightPosterior) -> Structure:
    if not isinstance(post, WeightPosterior):
        raise TypeError(f"post must be a WeightPosterior, got {type(post).__name__}")
    return _check_structure(post.structure)


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
    record = _check_structure(structure)
    mean = np.array(mean, copy=True)
    if mean.ndim != 2:
        raise ValueError(f"mean must be a 2-D (D, m) array, got shape {mean.shape}")
    n_in, m = mean.shape
    var = np.broadcast_to(np.asarray(prior_variance, dtype=mean.dtype), (n_in,))
    if not np.all(np.isfinite(var)) or np.any(var <= 0):
        raise ValueError("prior_variance must be finite and > 0")
    return WeightPosterior(structure, mean, record.prior(var, m))


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

    Raises
    ------
    numpy.linalg.LinAlgError
        If a covariance is (or would become) not positive definite: a factorization failed,
        or a row exceeded the floating-point bound of the module docstring and the updated
        covariance has no Cholesky factor.

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
    record = _record(post)
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
    quad = record.update(mean, cov, X, T, G, active, noise / fraction)
    return WeightPosterior(post.structure, mean, cov), UpdateInfo(n_obs, quad * noise)


def marginal_variance(post: WeightPosterior, X: np.ndarray) -> np.ndarray:
    """Variance :math:`x_i^\\top \\Sigma_j x_i` of :math:`x_i^\\top w_j`, shape ``(..., n, m)``."""
    return _record(post).marginal_variance(post, np.asarray(X, dtype=post.mean.dtype))


def sample(post: WeightPosterior, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Draw weight matrices from the posterior, shape ``(n_draws, D, m)``."""
    record = _record(post)
    n_in, m = post.mean.shape
    eps = rng.standard_normal((n_draws, n_in, m)).astype(post.mean.dtype, copy=False)
    return record.draws(post, eps)


def variances(post: WeightPosterior) -> np.ndarray:
    """The variance of every weight (the covariances' diagonals), in the structure's layout."""
    return _record(post).variances(post.cov)


def covariance_health(post: WeightPosterior, symmetry_tol: float = 1e-10) -> CovarianceHealth:
    """Finiteness, symmetry (to ``symmetry_tol`` relative), Cholesky and smallest eigenvalue."""
    return _record(post).health(post, symmetry_tol)


def inflate(
    post: WeightPosterior, *, forgetting: float = 1.0, process_noise: float | np.ndarray = 0.0
) -> WeightPosterior:
    r"""Widen the posterior before new data: forgetting and process noise.

    .. math::

        \Sigma_j \leftarrow \Sigma_j / \lambda + \operatorname{diag}(q), \qquad
        \mu_j \text{ unchanged},

    with forgetting factor :math:`\lambda` (``forgetting``) and process noise :math:`q`
    (``process_noise``, per input row if an array). :math:`q` is the Kalman filter's predict
    step for weights following a random walk :math:`w_t = w_{t-1} + \mathcal N(0,
    \operatorname{diag}(q))`; :math:`\lambda` scales the precision by :math:`\lambda`, which
    for :math:`q = 0` is everything learned so far (prior included) raised to the power
    :math:`\lambda` (exponential forgetting, recursive least squares' :math:`\lambda`). Call it
    between batches of a drifting stream; ``forgetting=1, process_noise=0`` changes nothing.
    ``"diag"`` inflates every variance the same way.

    Parameters
    ----------
    post : WeightPosterior
    forgetting : float
        :math:`\lambda \in (0, 1]`.
    process_noise : float or ndarray of shape (D,)
        :math:`q \ge 0`.

    Returns
    -------
    WeightPosterior
        A new posterior (``post`` is not modified).
    """
    record = _record(post)
    if isinstance(forgetting, bool) or not (
        isinstance(forgetting, int | float | np.number) and 0 < forgetting <= 1
    ):
        raise ValueError(f"forgetting must be a number in (0, 1], got {forgetting!r}")
    n_in = post.mean.shape[0]
    q = np.asarray(process_noise, dtype=post.mean.dtype)
    if q.ndim > 1 or (q.ndim == 1 and q.shape != (n_in,)):
        raise ValueError(f"process_noise must be a number or shape ({n_in},), got {q.shape}")
    if not (np.all(np.isfinite(q)) and np.all(q >= 0)):
        raise ValueError("process_noise must be finite and >= 0")
    q = np.broadcast_to(q, (n_in,))
    return post._replace(cov=record.inflate(post.cov, float(forgetting), q))


def natural_delta(prior: WeightPosterior, post: WeightPosterior) -> NaturalDelta:
    r"""What ``post`` learned since ``prior``, in natural parameters.

    :math:`\Delta\Lambda_j = \Sigma_{j}^{-1} - \Sigma_{0,j}^{-1}` and
    :math:`\Delta h_j = \Sigma_j^{-1}\mu_j - \Sigma_{0,j}^{-1}\mu_{0,j}`, each inverse through
    a Cholesky factor (``"diag"``: elementwise). For exact structures this is the data's
    sufficient statistic, so deltas of independent data sets add up (:func:`merge`).

    Raises
    ------
    ValueError
        If the two posteriors differ in structure, shape or dtype.
    numpy.linalg.LinAlgError
        If a covariance is not positive definite.
    """
    record = _record(prior)
    _check_same(prior, post, "post")
    return record.delta(prior, post)


def merge(
    prior: WeightPosterior, deltas: Sequence[NaturalDelta | WeightPosterior]
) -> WeightPosterior:
    r"""Combine posteriors learned independently from the same prior.

    .. math::

        \Lambda = \Lambda_0 + \sum_k \Delta\Lambda_k, \qquad h = h_0 + \sum_k \Delta h_k,
        \qquad \Sigma = \Lambda^{-1}, \quad \mu = \Lambda^{-1} h,

    by a Cholesky factor of :math:`\Lambda` (``"diag"``: elementwise). For a structure that is
    exact on the data (:attr:`Structure.exact`), the result is the posterior of all the data
    sets together, in any order and split; otherwise it is the usual product-of-experts
    approximation.

    Parameters
    ----------
    prior : WeightPosterior
    deltas : sequence of NaturalDelta or WeightPosterior
        Each shard's :func:`natural_delta`, or the shard's posterior itself.

    Returns
    -------
    WeightPosterior

    Raises
    ------
    numpy.linalg.LinAlgError
        If the merged precision is not positive definite (nothing is modified).
    """
    return _merge(prior, deltas)[0]


def _merge(prior: WeightPosterior, deltas) -> tuple[WeightPosterior, NaturalDelta]:
    """:func:`merge`, also returning the merged posterior's delta from the prior."""
    record = _record(prior)
    items = []
    for k, d in enumerate(deltas):
        if isinstance(d, WeightPosterior):
            _check_same(prior, d, f"deltas[{k}]")
            d = record.delta(prior, d)
        elif not isinstance(d, NaturalDelta):
            raise TypeError(
                f"deltas[{k}] must be a NaturalDelta or WeightPosterior, got {type(d).__name__}"
            )
        items.append(d)
    return record.merge(prior, items)


def _check_same(prior: WeightPosterior, post: WeightPosterior, name: str) -> None:
    if not isinstance(post, WeightPosterior):
        raise TypeError(f"{name} must be a WeightPosterior, got {type(post).__name__}")
    if post.structure != prior.structure:
        raise ValueError(f"{name} has structure {post.structure!r}, the prior {prior.structure!r}")
    if post.mean.shape != prior.mean.shape or post.cov.shape != prior.cov.shape:
        raise ValueError(
            f"{name} has weights of shape {post.mean.shape}, the prior {prior.mean.shape}"
        )
    if post.mean.dtype != prior.mean.dtype:
        raise ValueError(f"{name} has dtype {post.mean.dtype}, the prior {prior.mean.dtype}")


# ---------------------------------------------------------------- positive-definiteness guard
def _pd_bound(dtype: np.dtype, n_in: int) -> float:
    """:math:`1 / (D \\varepsilon)`: the largest :math:`x^\\top\\Sigma x / s^2` safely downdated."""
    return 1.0 / (n_in * float(np.finfo(dtype).eps))


def _risky_units(X, G, traces, s2) -> tuple[np.ndarray, float]:
    """Units past the bound, :math:`g^2 \\lVert x\\rVert^2 \\operatorname{tr}\\Sigma_j / s^2`.

    ``traces`` is ``(m,)`` (or a scalar for one shared covariance). Returns the unit indices
    and the largest bound.
    """
    norms = np.einsum("nd,nd->n", X, X)
    ratio = (G * G * norms[:, None]).max(axis=0) * traces / s2
    bound = _pd_bound(X.dtype, X.shape[1])
    largest = float(ratio.max(initial=0.0))
    if not largest > bound:  # also NaN: left to the finiteness guard
        return np.empty(0, dtype=np.intp), largest
    return np.flatnonzero(~(ratio <= bound)), largest


def _require_cholesky(covs: np.ndarray, units, largest: float) -> None:
    """Raise :class:`numpy.linalg.LinAlgError` unless every covariance in ``covs`` factors.

    The factorization is the one ``covariance_health`` checks (SciPy's LAPACK), so a covariance
    accepted here is one the health report calls positive definite.
    """
    try:
        scipy.linalg.cholesky(covs, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        pass
    else:
        return
    bound = _pd_bound(covs.dtype, covs.shape[-1])
    advice = "standardize the inputs" + (", or use float64" if covs.dtype != np.float64 else "")
    raise np.linalg.LinAlgError(
        f"the updated covariance of unit(s) {units} is not positive definite: a row had "
        f"x^T Sigma x / noise up to {largest:.3g}, beyond what {covs.dtype} can downdate "
        f"(1 / (D eps) = {bound:.3g}; an outlier row? {advice})"
    )


# ------------------------------------------------------------------------- "unit" structure
def _unit_prior(var: np.ndarray, m: int) -> np.ndarray:
    return np.broadcast_to(np.diag(var), (m, len(var), len(var))).copy()


#: Largest ``D`` for which the "unit" update runs row by row in a compiled loop.
_KERNEL_MAX_D = 256


def _update_unit(mean, cov, X, T, G, active, s2) -> float:
    """Per-unit exact step: compiled rank-one steps for small ``D``, else BLAS per unit.

    Small covariances stay in cache and the compiled loop (:func:`_kernels.unit_rows`) has no
    per-call overhead, so they beat batched LAPACK calls. A 785 x 785 covariance per unit is
    memory-bound row by row, so large layers take the Woodbury step on each unit's active rows
    with BLAS-3 calls (measurements in ``benchmarks/HISTORY.md``). Units past the
    floating-point bound (module docstring) are checked for a Cholesky factor afterwards.
    """
    risky, largest = _risky_units(X, G, np.einsum("mdd->m", cov), s2)
    if cov.shape[-1] <= _KERNEL_MAX_D:
        quad = _kernels.unit_rows(mean, cov, X, T, G, s2)
    else:
        quad = _update_unit_loop(mean, cov, X, T, G, active, s2)
    if risky.size:
        _require_cholesky(cov[risky], risky.tolist(), largest)
    return quad


#: Elements of the ``(m, rows, D)`` temporary in :func:`_unit_marginal_variance`.
_MARGINAL_BLOCK_ELEMENTS = 1 << 23


def _unit_marginal_variance(post: WeightPosterior, X: np.ndarray) -> np.ndarray:
    """Matrix products (BLAS) over blocks of rows; one row by a compiled loop.

    A three-operand ``einsum`` loops in C over all four indices and is over an order of
    magnitude slower for a 784-100 layer.
    """
    lead, (n_in, m) = X.shape[:-1], post.mean.shape
    rows = X.reshape(-1, n_in)
    if len(rows) == 1:  # one row: a compiled loop over the units (:func:`_kernels.unit_quadratic`)
        one = _kernels.unit_quadratic(post.cov, np.ascontiguousarray(rows[0]))
        return one.reshape(*lead, m)
    out = np.empty((len(rows), m), dtype=X.dtype)
    step = max(1, _MARGINAL_BLOCK_ELEMENTS // (m * n_in))
    for start in range(0, len(rows), step):
        block = rows[start : start + step]
        out[start : start + step] = np.einsum("mnd,nd->nm", block @ post.cov, block)
    return out.reshape(*lead, m)


def _unit_draws(post: WeightPosterior, eps: np.ndarray) -> np.ndarray:
    L = np.linalg.cholesky(post.cov)  # (m, D, D)
    # (m, D, D) @ (m, D, S) as one batched matmul: several times faster than the einsum.
    return post.mean + np.matmul(L, eps.transpose(2, 1, 0)).transpose(2, 1, 0)


def _dense_variances(cov: np.ndarray) -> np.ndarray:
    return cov.diagonal(0, -2, -1)


def _dense_inflate(cov: np.ndarray, forgetting: float, q: np.ndarray) -> np.ndarray:
    out = cov / forgetting
    idx = np.arange(cov.shape[-1])
    out[..., idx, idx] += q
    return out


def _unit_natural(post: WeightPosterior) -> NaturalDelta:
    """Natural parameters :math:`\\Lambda_j`, :math:`h_j = \\Lambda_j\\mu_j` and the scalars."""
    eye = np.eye(post.mean.shape[0], dtype=post.mean.dtype)
    precision = np.empty_like(post.cov)
    shift = np.empty_like(post.mean)
    logdet = 0.0
    for j, sigma in enumerate(post.cov):
        factor = _cholesky(sigma, f"the covariance of unit {j}")
        precision[j] = _symmetric(scipy.linalg.cho_solve(factor, eye, check_finite=False))
        shift[:, j] = scipy.linalg.cho_solve(factor, post.mean[:, j], check_finite=False)
        logdet -= _logdet(factor)
    return NaturalDelta(precision, shift, float(np.sum(shift * post.mean)), logdet)


def _unit_from_natural(precision: np.ndarray, shift: np.ndarray):
    eye = np.eye(shift.shape[0], dtype=shift.dtype)
    cov = np.empty_like(precision)
    mean = np.empty_like(shift)
    logdet = 0.0
    for j, lam in enumerate(precision):
        factor = _cholesky(lam, f"the merged precision of unit {j}")
        cov[j] = _symmetric(scipy.linalg.cho_solve(factor, eye, check_finite=False))
        mean[:, j] = scipy.linalg.cho_solve(factor, shift[:, j], check_finite=False)
        logdet += _logdet(factor)
    return mean, cov, logdet


def _unit_eig(post: WeightPosterior):
    """One ``eigh`` per column, or a single one when every column's covariance is the same
    (a head whose slopes are all one): the basis is then ``(1, D, D)``."""
    cov = post.cov
    if len(cov) > 1 and bool((cov == cov[0]).all()):
        s, U = np.linalg.eigh(cov[0])
        s, U = np.broadcast_to(s, cov.shape[:2]).copy(), U[None]
    else:
        s, U = np.linalg.eigh(cov)
    coef = np.einsum("mdk,md->mk", np.broadcast_to(U, cov.shape), post.mean.T)
    return s, coef, U


def _unit_from_eig(post: WeightPosterior, U, values: np.ndarray, coef: np.ndarray):
    m, D = values.shape
    full = np.broadcast_to(U, (m, D, D))
    # Fortran order, as the einsum gives it for one basis per column: the same layout (and
    # so the same rounding downstream) whether the columns share a basis or not.
    mean = np.asfortranarray(np.einsum("mdk,mk->dm", full, coef))
    if len(U) == 1 and bool((values == values[0]).all()):  # one covariance, copied
        cov = (U[0] * values[0]) @ U[0].T
        cov = np.broadcast_to(0.5 * (cov + cov.T), (m, D, D)).copy()
    else:
        cov = (full * values[:, None, :]) @ np.swapaxes(full, -1, -2)
        cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
    return post._replace(mean=mean, cov=cov)


# ----------------------------------------------------------------------- "shared" structure
def _shared_prior(var: np.ndarray, m: int) -> np.ndarray:
    return np.diag(var)


def _update_shared(mean, cov, X, T, G, active, s2) -> float:
    """Exact Kalman step of every column under the shared prior; one shared downdate.

    Where every column takes part in every row with slope one (a linear head) and ``D`` is
    small, the compiled row-by-row step (:func:`_kernels.shared_rows`) gives the same result
    without the batch's BLAS and LAPACK calls, whose overhead dominates at one row.
    """
    rows_any = active.any(axis=1)
    risky, largest = _risky_units(X, rows_any[:, None], np.trace(cov), s2)
    if cov.shape[-1] <= _KERNEL_MAX_D and np.all(G == 1.0):
        quad = _kernels.shared_rows(mean, cov, X, T, s2)
        if risky.size:
            _require_cholesky(cov, "all (shared)", largest)
        return quad
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
    rows = rows_any
    if rows.all():
        Sp, XSp = K, XS
    else:
        rows = np.flatnonzero(rows)
        Sp, XSp = K[np.ix_(rows, rows)], XS[rows]
    Sp.flat[:: len(Sp) + 1] += s2
    Lp = np.linalg.cholesky(Sp)
    _downdate(cov, _lower_solve(Lp, XSp))
    if risky.size:
        _require_cholesky(cov, "all (shared)", largest)
    return float(np.einsum("mn,mn->", R, v))


def _shared_marginal_variance(post: WeightPosterior, X: np.ndarray) -> np.ndarray:
    v = np.einsum("...d,...d->...", X @ post.cov, X)
    return np.repeat(v[..., None], post.mean.shape[1], axis=-1)


def _shared_draws(post: WeightPosterior, eps: np.ndarray) -> np.ndarray:
    L = np.linalg.cholesky(post.cov)
    return post.mean + L @ eps


def _shared_natural(post: WeightPosterior) -> NaturalDelta:
    eye = np.eye(post.mean.shape[0], dtype=post.mean.dtype)
    factor = _cholesky(post.cov, "the shared covariance")
    precision = _symmetric(scipy.linalg.cho_solve(factor, eye, check_finite=False))
    shift = scipy.linalg.cho_solve(factor, post.mean, check_finite=False)
    logdet = -post.mean.shape[1] * _logdet(factor)  # every column has this precision
    return NaturalDelta(precision, shift, float(np.sum(shift * post.mean)), logdet)


def _shared_from_natural(precision: np.ndarray, shift: np.ndarray):
    eye = np.eye(shift.shape[0], dtype=shift.dtype)
    factor = _cholesky(precision, "the merged shared precision")
    cov = _symmetric(scipy.linalg.cho_solve(factor, eye, check_finite=False))
    mean = scipy.linalg.cho_solve(factor, shift, check_finite=False)
    return mean, cov, shift.shape[1] * _logdet(factor)


def _shared_eig(post: WeightPosterior):
    s, U = np.linalg.eigh(post.cov[None])
    return s, np.einsum("dk,md->mk", U[0], post.mean.T), U


def _shared_from_eig(post: WeightPosterior, U, values: np.ndarray, coef: np.ndarray):
    mean = np.einsum("dk,mk->dm", U[0], coef)
    cov = (U[0] * values[0]) @ U[0].T
    return post._replace(mean=mean, cov=0.5 * (cov + cov.T))


def _dense_health(post: WeightPosterior, symmetry_tol: float) -> CovarianceHealth:
    cov = post.cov
    if not (np.all(np.isfinite(post.mean)) and np.all(np.isfinite(cov))):
        return CovarianceHealth(False, False, False, float("nan"))
    scale = max(float(np.abs(cov).max()), np.finfo(cov.dtype).tiny)
    symmetric = bool(np.abs(cov - np.swapaxes(cov, -1, -2)).max() <= symmetry_tol * scale)
    try:
        scipy.linalg.cholesky(cov, lower=True)
        cholesky = True
    except np.linalg.LinAlgError:
        cholesky = False
    return CovarianceHealth(True, symmetric, cholesky, float(np.linalg.eigvalsh(cov).min()))


# ------------------------------------------------------------------------- "diag" structure
def _diag_prior(var: np.ndarray, m: int) -> np.ndarray:
    return np.repeat(var[:, None], m, axis=1)


def _update_diag(mean, var, X, T, G, active, s2) -> float:
    """Row-by-row assumed-density filter under the diagonal prior (:func:`_kernels.diag_rows`).

    Each row gets the exact Kalman step of its scalar observations under the current diagonal
    prior, and the covariance is projected back onto its diagonal before the next row. So a
    batch gives the same posterior as its rows one at a time, whatever the batch size. A
    projection after a whole batch instead costs :math:`O(n^2 D m)` per batch (the rows'
    pairwise products); this costs :math:`O(D m)` per row, and zero inputs are skipped.
    """
    return _kernels.diag_rows(mean, var, X, T, G, s2)


def _diag_marginal_variance(post: WeightPosterior, X: np.ndarray) -> np.ndarray:
    return (X**2) @ post.cov


def _diag_draws(post: WeightPosterior, eps: np.ndarray) -> np.ndarray:
    return post.mean + eps * np.sqrt(post.cov)


def _diag_variances(cov: np.ndarray) -> np.ndarray:
    return cov


def _diag_health(post: WeightPosterior, symmetry_tol: float) -> CovarianceHealth:
    cov = post.cov
    finite = bool(np.all(np.isfinite(post.mean)) and np.all(np.isfinite(cov)))
    min_eig = float(cov.min()) if finite else float("nan")
    return CovarianceHealth(finite, True, finite and min_eig > 0, min_eig)


def _diag_inflate(var: np.ndarray, forgetting: float, q: np.ndarray) -> np.ndarray:
    return var / forgetting + q[:, None]


def _diag_natural(post: WeightPosterior) -> NaturalDelta:
    if not np.all(post.cov > 0):
        raise np.linalg.LinAlgError("a variance is not positive")
    precision = 1.0 / post.cov
    shift = post.mean * precision
    return NaturalDelta(
        precision, shift, float(np.sum(shift * post.mean)), float(np.log(precision).sum())
    )


def _diag_from_natural(precision: np.ndarray, shift: np.ndarray):
    if not np.all(precision > 0):
        raise np.linalg.LinAlgError("a merged precision is not positive")
    return shift / precision, 1.0 / precision, float(np.log(precision).sum())


def _diag_eig(post: WeightPosterior):
    """Every weight is its own eigendirection: no basis."""
    return post.cov.T, post.mean.T, None


def _diag_from_eig(post: WeightPosterior, basis, values: np.ndarray, coef: np.ndarray):
    return post._replace(mean=coef.T.copy(), cov=values.T.copy())


# ------------------------------------------------------------------------ shared helpers
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


def _cholesky(matrix: np.ndarray, what: str):
    """``cho_factor`` (lower) of ``matrix``, or a :class:`numpy.linalg.LinAlgError` naming it."""
    try:
        return scipy.linalg.cho_factor(matrix, lower=True, check_finite=False)
    except np.linalg.LinAlgError as error:
        raise np.linalg.LinAlgError(f"{what} is not positive definite ({error})") from error


def _symmetric(a: np.ndarray) -> np.ndarray:
    return 0.5 * (a + a.T)


def _logdet(factor) -> float:
    """:math:`\\log|A|` from ``cho_factor``'s lower factor of ``A``."""
    return 2.0 * float(np.log(np.diagonal(factor[0])).sum())


def _natural_delta(natural, prior: WeightPosterior, post: WeightPosterior) -> NaturalDelta:
    p0, h0, q0, l0 = natural(prior)
    p1, h1, q1, l1 = natural(post)
    return NaturalDelta(p1 - p0, h1 - h0, q1 - q0, l1 - l0)


def _natural_merge(
    natural, from_natural, prior: WeightPosterior, deltas: Sequence[NaturalDelta]
) -> tuple[WeightPosterior, NaturalDelta]:
    p0, h0, q0, l0 = natural(prior)
    precision, shift = p0, h0
    for k, d in enumerate(deltas):
        if d.precision.shape != precision.shape or d.shift.shape != shift.shape:
            raise ValueError(
                f"deltas[{k}] has shapes {d.precision.shape}, {d.shift.shape}; the prior's "
                f"natural parameters have {precision.shape}, {shift.shape}"
            )
        precision = precision + d.precision
        shift = shift + d.shift
    mean, cov, logdet = from_natural(precision, shift)
    mean = mean.astype(prior.mean.dtype, copy=False)
    cov = cov.astype(prior.cov.dtype, copy=False)
    total = NaturalDelta(precision - p0, shift - h0, float(np.sum(shift * mean)) - q0, logdet - l0)
    return WeightPosterior(prior.structure, mean, cov), total


def _record_of(
    name, exact, prior, upd, marg, draws, var, health, infl, natural, from_natural, eig, from_eig
):
    return Structure(
        name,
        exact,
        prior,
        upd,
        marg,
        draws,
        var,
        health,
        infl,
        partial(_natural_delta, natural),
        partial(_natural_merge, natural, from_natural),
        eig,
        from_eig,
    )


#: The covariance structures by name (``WeightPosterior.structure``).
STRUCTURES: dict[str, Structure] = _Registry(
    unit=_record_of(
        "unit",
        "always",
        _unit_prior,
        _update_unit,
        _unit_marginal_variance,
        _unit_draws,
        _dense_variances,
        _dense_health,
        _dense_inflate,
        _unit_natural,
        _unit_from_natural,
        _unit_eig,
        _unit_from_eig,
    ),
    shared=_record_of(
        "shared",
        "unit_slopes",
        _shared_prior,
        _update_shared,
        _shared_marginal_variance,
        _shared_draws,
        _dense_variances,
        _dense_health,
        _dense_inflate,
        _shared_natural,
        _shared_from_natural,
        _shared_eig,
        _shared_from_eig,
    ),
    diag=_record_of(
        "diag",
        "disjoint_rows",
        _diag_prior,
        _update_diag,
        _diag_marginal_variance,
        _diag_draws,
        _diag_variances,
        _diag_health,
        _diag_inflate,
        _diag_natural,
        _diag_from_natural,
        _diag_eig,
        _diag_from_eig,
    ),
)
