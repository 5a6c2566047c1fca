r"""Probit and logistic output layers (generalized linear heads).

The head's linear predictor is :math:`\eta = x^\top W` (``x`` the head input with its bias 1)
and the classes follow from a link:

``Probit``
    Two classes: one column, :math:`P(y = 1) = \Phi(\eta)`. More classes: one-vs-rest probit,
    one column per class, independent indicators :math:`P(y_k = 1) = \Phi(\eta_k)`; a class
    label is the event that exactly one indicator is on, so class probabilities condition on
    it: :math:`P(k) \propto \Phi(\eta_k) / \Phi(-\eta_k)`.
``Logistic``
    Multinomial logit with the last class as the reference (its logit pinned to 0, which makes
    the weights identifiable): ``K - 1`` columns, :math:`P(y = k) = \operatorname{softmax}
    ([\eta, 0])_k`. Two classes give the ordinary binary logistic regression.

Three ways to fit the weights' Gaussian posterior (``fit=``):

``"laplace"``
    Closed form through the conjugate core (the IRLS / extended-Kalman step). Each column's
    log-likelihood is expanded to second order at the current predictor
    :math:`\eta_0 = x^\top \mu`, with gradient :math:`g` and curvature :math:`w > 0`, which is a
    Gaussian pseudo-observation of :math:`x^\top w` (the working response)

    .. math::

        \tilde t = \eta_0 + g / w, \qquad \tilde t = x^\top w + \varepsilon, \quad
        \varepsilon \sim \mathcal N(0, 1 / w).

    It is passed to :func:`bayeslayers.conjugate.update` as slope :math:`\sqrt w`, target
    :math:`\sqrt w\,\eta_0 + g / \sqrt w` and unit noise. For the multinomial logit the
    columns are decoupled (diagonal of the softmax Hessian, :math:`w_c = p_c (1 - p_c)`), as the
    ``"unit"`` structure keeps one covariance per column.
``"adf"`` (probit only)
    Assumed-density filtering: exact moment matching of
    :math:`\Phi(s\eta)\,\mathcal N(\eta \mid m, v)` (:math:`s = \pm 1`), with
    :math:`z = s m / \sqrt{1 + v}`, :math:`\lambda = \phi(z) / \Phi(z)`,
    :math:`\alpha = s \lambda / \sqrt{1 + v}`, :math:`\beta = \lambda (\lambda + z) / (1 + v)`,
    is again a Gaussian pseudo-observation: target :math:`m + \alpha / \beta`, noise variance
    :math:`1 / \beta - v > 0` (Minka 2001; Opper 1998). Exact ADF for ``batch_size=1``; a batch
    uses the moments of its rows under the batch's prior.
``"advi"``
    PyMC ADVI, online and chunked (:mod:`bayeslayers.heads.advi`): the head input and labels of
    every row are buffered; when ``chunk_size`` rows are in, the mean-field posterior is refitted on
    the chunk with the posterior of the previous chunk as prior, warm-started at the current
    mean. Between refits the head's mean follows ``"laplace"`` steps from the last ADVI
    posterior, so that the body always gets fresh targets; the refit replaces them. The
    posterior is mean-field (``"diag"``) whatever ``covariance`` says. :meth:`flush` refits on
    a partly filled chunk (``Network.fit`` calls it at the end).

Target for the body (all fits): the Gauss-Newton step of the log-likelihood in :math:`\eta`
at the head's posterior *before* the batch's update (``body_target="before"``, the default),
:math:`\delta\eta = (H + \kappa I)^{-1} g` with :math:`H` the negative Hessian (diagonal for
the probit columns, :math:`\operatorname{diag}(p) - p p^\top` over the ``K - 1`` free logits
of the multinomial logit) and a curvature floor :math:`\kappa` (``curvature_floor``), propagated
like a Gaussian head's residual with the weighting :math:`\tilde H = H + \kappa I`:
:meth:`residual` returns :math:`E = \tilde H^{-1/2} g` and :math:`J = W_{[:d]} \tilde H^{1/2}`,
so that the damped minimum-norm solve of :mod:`bayeslayers.propagation` gives the
Levenberg-Marquardt step :math:`\delta a = g^\top W^\top (W \tilde H W^\top + \lambda I)^{-1}`.

This departs from the Gaussian head, whose residual is taken after its update: a probit or
logistic head that has just been updated on a row already explains it, the gradient nearly
vanishes and the body stops learning: its accuracy is that of a frozen hidden layer
(benchmarks/RESULTS.md).
``body_target="after"`` keeps the other behaviour for comparison. Without the floor, a
confidently wrong prediction (:math:`H \to 0`) asks for corrections of the hidden outputs
far larger than the outputs themselves, which wrecks the hidden layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
from scipy.special import log_ndtr, log_softmax, softmax

from bayeslayers import _kernels, conjugate
from bayeslayers._validation import check_count, check_real, check_seed

__all__ = ["FITS", "ADVIBuffer", "Fit", "GLMState", "Logistic", "Probit", "state_from_legacy"]

# Curvatures below this are treated as this (keeps the working response finite).
_MIN_CURVATURE = 1e-12
#: Widest head input scored and updated row by row in one compiled call (as the conjugate
#: core's compiled rank-one path).
_ROW_KERNEL_MAX_D = 256
_EPS64 = float(np.finfo(np.float64).eps)
# Newton iterations (and step halvings per iteration) for the Laplace mode of one row.
_NEWTON_STEPS = 30
_HALVINGS = 30


class GLMState(NamedTuple):
    """Posterior state of a probit or logistic head.

    Attributes
    ----------
    post : WeightPosterior
        Current weight posterior, used for predictions.
    before : WeightPosterior
        The posterior before the last :meth:`~_GLMHead.update` (the body's targets come from it
        with ``body_target="before"``).
    fit : NamedTuple or None
        The fit strategy's own state (:class:`ADVIBuffer` for ``"advi"``; ``None`` for the
        closed-form fits, which carry nothing beyond the posterior).
    """

    post: conjugate.WeightPosterior
    before: conjugate.WeightPosterior
    fit: Any


class ADVIBuffer(NamedTuple):
    """What the ``"advi"`` fit carries between refits.

    Attributes
    ----------
    prior : WeightPosterior
        The posterior at the last refit (the prior of the chunk being filled).
    X : ndarray of shape (chunk_size, D)
        Head inputs of the rows waiting for the next refit.
    T : ndarray of shape (chunk_size, K)
        Their one-hot labels.
    weight : ndarray of shape (chunk_size,)
        Their tempering fractions; 0 marks a free slot.
    n_buffered : int
        Number of rows in the buffer.
    n_refits : int
        Number of ADVI refits so far (seeds the Monte Carlo draws of the next one).
    """

    prior: conjugate.WeightPosterior
    X: np.ndarray
    T: np.ndarray
    weight: np.ndarray
    n_buffered: int
    n_refits: int


def state_from_legacy(
    post, prior, before, buffer_X, buffer_T, buffer_weight, n_buffered, n_refits
) -> GLMState:
    """The state saved by earlier versions (one flat tuple of 8 fields) in today's layout.

    Closed-form fits saved a 0-row buffer; ``"advi"`` saved ``chunk_size`` rows.
    """
    if len(buffer_X) == 0:
        return GLMState(post, before, None)
    buffer = ADVIBuffer(prior, buffer_X, buffer_T, buffer_weight, n_buffered, n_refits)
    return GLMState(post, before, buffer)


# ------------------------------------------------------------------ fit strategies
def _pseudo_laplace(head: _GLMHead, m: np.ndarray, v: np.ndarray, Y: np.ndarray):
    """Slope and target of the Laplace (IRLS / iterated EKF) pseudo-observation at the row mode."""
    eta = head._mode(m, v, Y)
    g, c = head._grad_curv(eta, Y)
    G = np.sqrt(np.maximum(head._hess_diag(c), _MIN_CURVATURE))
    return G, G * eta + g / G


def _pseudo_adf(head: _GLMHead, m: np.ndarray, v: np.ndarray, Y: np.ndarray):
    """Slope and target of the ADF moment-matching pseudo-observation (probit)."""
    return head._adf_pseudo(m, v, Y)


def _step(pseudo, head: _GLMHead, post, X, T, fraction, moments=None):
    """One closed-form step through the conjugate core with a pseudo-observation rule;
    ``moments``: the rows' ``(m, v)`` under ``post`` if already computed."""
    m, v = (X @ post.mean, conjugate.marginal_variance(post, X)) if moments is None else moments
    G, target = pseudo(head, m, v, head._targets(T))
    return conjugate.update(post, X, target, G, noise=1.0, fraction=fraction)[0]


def _label_log_density(proba: np.ndarray, T: np.ndarray) -> float:
    r""":math:`\sum_i \log p_i(k_i)` of class probabilities ``(n, K)`` at one-hot rows ``T``."""
    picked = proba[np.arange(len(T)), np.argmax(T, axis=1)]
    return float(np.log(np.maximum(picked, np.finfo(float).tiny)).sum())


def _one_row_kernel(post: conjugate.WeightPosterior, X: np.ndarray) -> bool:
    """Whether :func:`_adf_row` applies: one float64 row, per-unit covariances of at most
    :data:`_ROW_KERNEL_MAX_D` rows."""
    return (
        post.structure == "unit"
        and X.shape[0] == 1
        and post.mean.dtype == np.float64
        and post.mean.shape[0] <= _ROW_KERNEL_MAX_D
    )


def _adf_row(head: _GLMHead, state: GLMState, X, T, fraction) -> tuple[float, GLMState] | None:
    """Score and ADF step of one row in one compiled call (:func:`_kernels.probit_adf_row`):
    the batch path's arithmetic, with the rank-one step of the conjugate core's
    :func:`_kernels.unit_rows`; ``None`` (nothing done) past the floating-point bound, which
    the batch path guards with a factorization."""
    post = state.post
    Y = np.ascontiguousarray(head._targets(T)[0], dtype=np.float64)
    bound = 1.0 / (X.shape[1] * _EPS64)  # the conjugate core's bound, 1 / (D eps)
    score, mean, cov, ok = _kernels.probit_adf_row(
        post.mean, post.cov, np.ascontiguousarray(X[0], dtype=np.float64), Y, 1.0 / fraction, bound
    )
    if not ok:
        return None
    return float(score), GLMState(conjugate.WeightPosterior("unit", mean, cov), post, None)


def _no_state(head: _GLMHead, post, n_in: int, n_classes: int, dtype) -> None:
    return None


def _closed_update(pseudo):
    def update(head: _GLMHead, state: GLMState, X, T, fraction) -> GLMState:
        return GLMState(_step(pseudo, head, state.post, X, T, fraction), state.post, None)

    return update


def _identity(head: _GLMHead, state: GLMState) -> GLMState:
    return state


def _advi_init(head: _GLMHead, post, n_in: int, n_classes: int, dtype) -> ADVIBuffer:
    from bayeslayers.heads.advi import check_blas

    check_blas()  # PyTensor's BLAS notice now, not under the progress bar of the first refit
    rows = head.chunk_size
    return ADVIBuffer(
        post,
        np.zeros((rows, n_in), dtype=dtype),
        np.zeros((rows, n_classes), dtype=dtype),
        np.zeros(rows, dtype=dtype),
        0,
        0,
    )


def _advi_update(head: _GLMHead, state: GLMState, X, T, fraction) -> GLMState:
    """Laplace steps for fresh targets, the rows buffered; a full buffer triggers a refit."""
    before, start = state.post, 0
    while start < len(X):
        buf = state.fit
        stop = min(start + head.chunk_size - buf.n_buffered, len(X))
        post = _step(_pseudo_laplace, head, state.post, X[start:stop], T[start:stop], fraction)
        rows = slice(buf.n_buffered, buf.n_buffered + stop - start)
        bX, bT, bw = buf.X.copy(), buf.T.copy(), buf.weight.copy()
        bX[rows], bT[rows], bw[rows] = X[start:stop], T[start:stop], fraction
        buf = buf._replace(X=bX, T=bT, weight=bw, n_buffered=buf.n_buffered + stop - start)
        state = state._replace(post=post, fit=buf)
        if buf.n_buffered == head.chunk_size:
            state = _advi_refit(head, state)
        start = stop
    return state._replace(before=before)


def _advi_refit(head: _GLMHead, state: GLMState) -> GLMState:
    r"""Refit by ADVI on the buffered rows (no-op on an empty buffer).

    .. math::

        q_{new} = \arg\max_q \; \sum_i c_i \mathbb E_q \log p(y_i \mid x_i^\top W)
                  - \mathrm{KL}(q \,\|\, q_{prior})
    """
    buf = state.fit
    if buf.n_buffered == 0:
        return state
    from bayeslayers.heads.advi import get_fitter

    prior = buf.prior
    n_in, n_cols = prior.mean.shape
    fitter = get_fitter(
        head.link, head.chunk_size, n_in, n_cols, head.n_mc, float(head.learning_rate)
    )
    result = fitter.fit(
        buf.X,
        head._targets(buf.T),
        buf.weight,
        prior.mean,
        np.sqrt(prior.cov),
        start_mean=state.post.mean,
        start_sd=np.sqrt(state.post.cov),
        n_steps=head.n_steps,
        seed=int(np.random.SeedSequence([head.seed, buf.n_refits]).generate_state(1)[0]),
    )
    dtype = prior.mean.dtype
    post = conjugate.WeightPosterior(
        "diag", result.mean.astype(dtype), (result.sd**2).astype(dtype)
    )
    empty = ADVIBuffer(
        post,
        np.zeros_like(buf.X),
        np.zeros_like(buf.T),
        np.zeros_like(buf.weight),
        0,
        buf.n_refits + 1,
    )
    return GLMState(post, state.before, empty)


@dataclass(frozen=True)
class Fit:
    """One way to fit a GLM head's weight posterior: the hooks the head delegates to.

    Attributes
    ----------
    name : str
        Registry name (the head's ``fit=``).
    links : tuple of str
        Links it supports.
    structure : str or None
        Covariance structure it imposes (``None``: the head's or the network's).
    init : callable
        ``init(head, post, n_in, n_classes, dtype)``: its own prior state.
    update : callable
        ``update(head, state, X, T, fraction)``: the new :class:`GLMState`.
    flush : callable
        ``flush(head, state)``: pending work done (the end of ``Network.fit``).
    pseudo : callable or None
        ``pseudo(head, m, v, Y)``: slope and target of a closed-form fit's pseudo-observation
        (``None``: not closed-form), so that scoring and updating a batch share its moments.
    """

    name: str
    links: tuple[str, ...]
    structure: str | None
    init: Callable[..., Any]
    update: Callable[..., GLMState]
    flush: Callable[..., GLMState]
    pseudo: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None


#: The fit strategies by name; a new one is one record here.
FITS: dict[str, Fit] = {
    fit.name: fit
    for fit in (
        Fit(
            "laplace",
            ("probit", "logistic"),
            None,
            _no_state,
            _closed_update(_pseudo_laplace),
            _identity,
            _pseudo_laplace,
        ),
        Fit(
            "adf", ("probit",), None, _no_state, _closed_update(_pseudo_adf), _identity, _pseudo_adf
        ),
        Fit("advi", ("probit", "logistic"), "diag", _advi_init, _advi_update, _advi_refit),
    )
}


def _probit_terms(eta: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient ``g`` and curvature ``w`` of :math:`\\log\\Phi(s\\eta)`, :math:`s = 2y - 1`.

    With the inverse Mills ratio :math:`\\lambda = \\phi(s\\eta) / \\Phi(s\\eta)`:
    :math:`g = s\\lambda`, :math:`w = \\lambda(\\lambda + s\\eta)`.
    """
    s = 2.0 * y - 1.0
    u = s * eta
    lam = np.exp(-0.5 * u**2 - 0.5 * np.log(2 * np.pi) - log_ndtr(u))
    return s * lam, np.maximum(lam * (lam + u), _MIN_CURVATURE)


@dataclass(frozen=True)
class _GLMHead:
    r"""Shared machinery of the probit and logistic heads (see the module docstring).

    Parameters
    ----------
    fit : {"laplace", "adf", "advi"}
        How the weights' posterior is fitted (``"adf"``: probit only).
    chunk_size : int
        ``"advi"``: rows per refit.
    n_steps : int
        ``"advi"``: Adam steps per refit (the second half is averaged).
    learning_rate : float
        ``"advi"``: Adam step size.
    n_mc : int
        ``"advi"``: Monte Carlo draws per gradient step.
    covariance : str, optional
        Covariance structure for ``"laplace"`` / ``"adf"`` (the network's default if omitted).
    seed : int
        Seeds the ADVI draws and the logistic head's predictive draws.
    body_target : {"before", "after"}
        Linearize the link for the body's target at the head's posterior before the batch's
        update (its prediction error on rows it has not yet learned from) or after it.
    curvature_floor : float
        :math:`\kappa \ge 0` added to the curvature :math:`H` for the body's target (a trust
        region in :math:`\eta`): the step is at most about :math:`|g| / \kappa`, where a
        confidently wrong prediction (:math:`H \to 0`) would otherwise ask for a huge one.
        Default 0 for ``Probit`` and 0.1 for ``Logistic``, the most accurate values on digits
        (benchmarks/RESULTS.md).

    Notes
    -----
    A link supplies ``n_columns(n_classes)``, ``_targets(T)`` (its observed targets from one-hot
    labels), ``_loglik(eta, Y)`` (per row), ``_grad_curv(eta, Y)`` (gradient ``g`` (n, C) and a
    compact form ``c`` of the negative Hessian ``H`` of the log-likelihood in :math:`\eta`) and,
    on ``c``: ``_hess_diag`` (the diagonal of ``H``), ``_dense_hessian`` (``H`` itself, for
    reference), ``_solve`` (Newton systems :math:`(H + \operatorname{diag} e) x = r`) and
    ``_whiten`` (:math:`E, J` of :meth:`residual`), each ``O(C)`` per row.
    """

    fit: str = "laplace"
    chunk_size: int = 256
    n_steps: int = 200
    learning_rate: float = 0.02
    n_mc: int = 4
    covariance: str | None = None
    seed: int = 0
    body_target: str = "before"
    curvature_floor: float = 0.1

    is_classifier: ClassVar[bool] = True
    shares_covariance: ClassVar[bool] = False  # each column has its own curvature
    link: ClassVar[str]
    fits: ClassVar[tuple[str, ...]]

    if TYPE_CHECKING:  # the link hooks of the Notes, supplied by every subclass
        kind: ClassVar[str]

        def n_columns(self, n_classes: int) -> int: ...
        def _targets(self, T: np.ndarray) -> np.ndarray: ...
        def _loglik(self, eta: np.ndarray, Y: np.ndarray) -> np.ndarray: ...
        def _grad_curv(self, eta: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, Any]: ...
        def _hess_diag(self, c: Any) -> np.ndarray: ...
        def _dense_hessian(self, c: Any) -> np.ndarray: ...
        def _solve(self, c: Any, extra: Any, rhs: np.ndarray) -> np.ndarray: ...
        def _whiten(self, g: np.ndarray, c: Any, W: np.ndarray) -> tuple[np.ndarray, Any]: ...
        def _adf_pseudo(self, m: Any, v: Any, Y: Any) -> tuple[np.ndarray, np.ndarray]: ...
        def log_proba_given(self, eta: np.ndarray) -> np.ndarray: ...
        def proba_from_moments(self, state: Any, m: np.ndarray, v: np.ndarray) -> np.ndarray: ...

    def __post_init__(self) -> None:
        if self.fit not in self.fits:
            raise ValueError(f"fit must be one of {self.fits}, got {self.fit!r}")
        if self.link not in FITS[self.fit].links:  # a head's `fits` lists only registered ones
            raise ValueError(f"fit {self.fit!r} does not support the {self.link} link")
        if self.body_target not in ("before", "after"):
            raise ValueError(f"body_target must be 'before' or 'after', got {self.body_target!r}")
        check_real(self.curvature_floor, "curvature_floor", 0)
        for name in ("chunk_size", "n_steps", "n_mc"):
            check_count(getattr(self, name), name)
        check_real(self.learning_rate, "learning_rate", 0, low_open=True)
        check_seed(self.seed)
        if self.covariance is not None and self.covariance not in conjugate.STRUCTURES:
            raise ValueError(
                f"covariance must be one of {conjugate.STRUCTURES} or None, got {self.covariance!r}"
            )

    # ------------------------------------------------------------- head protocol
    def encode(self, y: np.ndarray, n_classes: int | None = None) -> np.ndarray:
        """One-hot rows ``(n, n_classes)`` for class indices ``y``."""
        if n_classes is None or n_classes < 2:
            raise ValueError(f"n_classes must be >= 2 for a {self.kind} head, got {n_classes}")
        return np.eye(n_classes)[y]

    def init(
        self,
        mean: np.ndarray,
        prior_variance: float,
        structure: str,
        noise: float,
        blocks: tuple[int, ...] | None = None,
    ):
        """Prior state; ``mean`` is ``(D, K)`` and only its first :meth:`n_columns` are used.

        ``noise`` and ``blocks`` are ignored: the link fixes the likelihood's scale, and the
        prior precision is not re-estimated.
        """
        fit = FITS[self.fit]
        K = mean.shape[1]
        post = conjugate.init(
            fit.structure or structure, mean[:, : self.n_columns(K)], prior_variance
        )
        return GLMState(post, post, fit.init(self, post, mean.shape[0], K, mean.dtype))

    def update(self, state: GLMState, X: np.ndarray, T: np.ndarray, fraction: float) -> GLMState:
        """Condition on head inputs ``X`` (n, D) and one-hot labels ``T`` (n, K)."""
        return FITS[self.fit].update(self, state, X, T, fraction)

    def score_and_update(
        self, state: GLMState, X: np.ndarray, T: np.ndarray, fraction: float
    ) -> tuple[float, GLMState]:
        """The batch's log predictive density under ``state``, and the updated state; a
        closed-form fit computes the rows' predictor moments once for both."""
        pseudo = FITS[self.fit].pseudo
        if pseudo is None:
            return self.log_predictive(state, X, T), self.update(state, X, T, fraction)
        if pseudo is _pseudo_adf and _one_row_kernel(state.post, X):
            done = _adf_row(self, state, X, T, fraction)
            if done is not None:
                return done
        moments = self.predictive(state, X)
        score = _label_log_density(self.proba_from_moments(state, *moments), T)
        post = _step(pseudo, self, state.post, X, T, fraction, moments)
        return score, GLMState(post, state.post, None)

    def flush(self, state: GLMState) -> GLMState:
        """Finish pending work: an ``"advi"`` refit on a partly filled chunk (else a no-op)."""
        return FITS[self.fit].flush(self, state)

    def _mode(self, m: np.ndarray, v: np.ndarray, Y: np.ndarray) -> np.ndarray:
        r"""Mode of :math:`\log p(y \mid \eta) - \sum_c (\eta_c - m_c)^2 / (2 v_c)` per row.

        Newton's method with step halving (the objective is strictly concave). At the mode
        :math:`g(\eta^*) = (\eta^* - m) / v`, so the pseudo-observation built there moves the
        predictor's mean exactly to :math:`\eta^*`: the Laplace approximation of each row's
        posterior (the iterated extended Kalman step). Each Newton system uses the link's
        structure (:meth:`_solve`), ``O(C)`` per row.
        """

        def objective(eta):
            return self._loglik(eta, Y) - 0.5 * np.sum((eta - m) ** 2 / v, axis=1)

        eta = m.copy()
        value = objective(eta)
        for _ in range(_NEWTON_STEPS):
            g, c = self._grad_curv(eta, Y)
            step = self._solve(c, 1.0 / v, g - (eta - m) / v)
            size = np.ones(len(m))
            for _ in range(_HALVINGS):
                trial = objective(eta + size[:, None] * step)
                worse = trial < value
                if not worse.any():
                    break
                size[worse] *= 0.5
            eta = eta + size[:, None] * step
            value = objective(eta)
            if np.max(np.abs(size[:, None] * step)) < 1e-10:
                break
        return eta

    def _grad_hess(self, eta: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient ``g`` (n, C) and dense negative Hessian ``H`` (n, C, C) (reference form)."""
        g, c = self._grad_curv(eta, Y)
        return g, self._dense_hessian(c)

    def residual(self, state: GLMState, X, T) -> tuple[np.ndarray, np.ndarray]:
        r"""Whitened Gauss-Newton residual ``E`` (n, C) and Jacobian ``J`` (n, d, C).

        Taken at the posterior before the last update (``body_target="before"``) or after it.
        With any factor :math:`R` of :math:`\tilde H = R R^\top` the link supplies
        (:meth:`_whiten`), :math:`E = R^{-1} g` and :math:`J = W_{[:d]} R`; the body's step
        depends on :math:`J J^\top = W \tilde H W^\top` and :math:`E J^\top = g^\top W^\top`
        only, so the factor need not be symmetric.
        """
        W = (state.before if self.body_target == "before" else state.post).mean
        g, c = self._grad_curv(X @ W, self._targets(T))
        return self._whiten(g, c, W[:-1])

    def proba(self, state: GLMState, X) -> np.ndarray:
        """Class probabilities ``(..., K)`` for head inputs ``X`` (with bias)."""
        return self.proba_from_moments(state, *self.predictive(state, X))

    def log_predictive(self, state: GLMState, X: np.ndarray, T: np.ndarray) -> float:
        r""":math:`\sum_i \log p_i(k_i)` for one-hot rows ``T`` (classes ``k_i``)."""
        return _label_log_density(self.proba(state, X), T)

    def weight_posterior(self, state: GLMState) -> conjugate.WeightPosterior:
        """The weight posterior used for predictions."""
        return state.post

    def log_likelihood(self, state: GLMState, F: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Pointwise log probability of classes ``y`` (n,) given predictors ``F`` (..., n, C)."""
        return self.log_proba_given(F)[..., np.arange(len(y)), y]

    def sample(self, state: GLMState, F: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One class index per row of predictors ``F`` (..., n, C), drawn from the link."""
        proba = np.exp(self.log_proba_given(F))
        u = rng.random((*proba.shape[:-1], 1))
        return np.minimum((np.cumsum(proba, axis=-1) < u).sum(axis=-1), proba.shape[-1] - 1)

    def predictive(self, state: GLMState, X) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of the linear predictor :math:`\\eta`, shape ``(..., C)``."""
        X = np.asarray(X)
        flat = X.reshape(-1, X.shape[-1])
        mean = flat @ state.post.mean
        var = conjugate.marginal_variance(state.post, flat)
        shape = (*X.shape[:-1], mean.shape[-1])
        return mean.reshape(shape), var.reshape(shape)


@dataclass(frozen=True)
class Probit(_GLMHead):
    """Probit head: binary probit, or one-vs-rest probit for more than two classes.

    Class probabilities integrate the weights' Gaussian posterior in closed form,
    :math:`p_k = P(y_k = 1) = \\Phi\\big(m_k / \\sqrt{1 + v_k}\\big)` with ``m, v`` the mean
    and variance of :math:`\\eta_k` (the columns are independent a posteriori, so are the
    indicators); with more than two classes they are conditioned on exactly one indicator
    being on, :math:`P(k) = \\frac{p_k / (1 - p_k)}{\\sum_j p_j / (1 - p_j)}`. (Dividing by
    :math:`\\sum_j p_j` instead leaves the mass of the other classes' small :math:`p_j` in
    the answer and is badly underconfident: benchmarks/RESULTS.md, GLM heads calibration.)
    See :mod:`bayeslayers.heads.glm` for the parameters and the fits.
    """

    kind: ClassVar[str] = "probit"
    link: ClassVar[str] = "probit"
    fits: ClassVar[tuple[str, ...]] = ("laplace", "adf", "advi")
    curvature_floor: float = 0.0

    def n_columns(self, n_classes: int) -> int:
        return 1 if n_classes == 2 else n_classes

    def _targets(self, T):
        return T[:, 1:] if T.shape[1] == 2 else T

    def _loglik(self, eta, Y):
        return log_ndtr((2.0 * Y - 1.0) * eta).sum(axis=1)

    def _grad_curv(self, eta, Y):
        """Gradient ``g`` and the diagonal ``w`` of the negative Hessian, both (n, C)."""
        return _probit_terms(eta, Y)

    def _hess_diag(self, w):
        return w

    def _dense_hessian(self, w):
        return w[:, :, None] * np.eye(w.shape[1])

    def _solve(self, w, extra, rhs):
        """:math:`(\\operatorname{diag}(w + e))^{-1} r`."""
        return rhs / (w + extra)

    def _whiten(self, g, w, W):
        """:math:`R = \\operatorname{diag}(w + \\kappa)^{1/2}`: ``E = g / R``, ``J = W R``."""
        root = np.sqrt(np.maximum(w, _MIN_CURVATURE) + self.curvature_floor)
        return g / root, W[None] * root[:, None, :]

    def _adf_pseudo(self, m, v, Y) -> tuple[np.ndarray, np.ndarray]:
        """Slope ``1 / sqrt(r)`` and target ``t / sqrt(r)`` of the ADF pseudo-observation."""
        s = 2.0 * Y - 1.0
        root = np.sqrt(1.0 + v)
        z = s * m / root
        lam = np.exp(-0.5 * z**2 - 0.5 * np.log(2 * np.pi) - log_ndtr(z))
        beta = lam * (lam + z) / (1.0 + v)
        # r = 1 / beta - v, so 1 / r = beta / (1 - beta v); 1 - beta v > 0 for the probit.
        G = np.sqrt(beta / np.maximum(1.0 - beta * v, _MIN_CURVATURE))
        return G, G * (m + s * root / (lam + z))

    def log_proba_given(self, eta: np.ndarray) -> np.ndarray:
        """Log class probabilities ``(..., K)`` for fixed predictors ``eta`` ``(..., C)``.

        Binary: :math:`[\\log\\Phi(-\\eta), \\log\\Phi(\\eta)]`; one-vs-rest: the
        independent indicators conditioned on exactly one being on,
        :math:`P(k) \\propto \\Phi(\\eta_k) \\prod_{j \\ne k} \\Phi(-\\eta_j) \\propto
        \\Phi(\\eta_k) / \\Phi(-\\eta_k)`, i.e. ``log_softmax`` of
        :math:`\\log\\Phi(\\eta_k) - \\log\\Phi(-\\eta_k)`.
        """
        if eta.shape[-1] == 1:
            return np.concatenate([log_ndtr(-eta), log_ndtr(eta)], axis=-1)
        return log_softmax(log_ndtr(eta) - log_ndtr(-eta), axis=-1)

    def proba_from_moments(self, state: GLMState, m: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Class probabilities ``(..., K)`` for Gaussian latents :math:`\\eta \\sim N(m, v)`.

        :math:`E\\,\\Phi(\\eta_k) = \\Phi(m_k / \\sqrt{1 + v_k})`, then
        :meth:`log_proba_given` at those predictors (the conditioning on exactly one class
        needs only the marginals of the independent indicators).
        """
        return np.exp(self.log_proba_given(m / np.sqrt(1.0 + v)))


@dataclass(frozen=True)
class Logistic(_GLMHead):
    """Logistic head: multinomial logit with the last class as reference (binary if K = 2).

    Class probabilities average :math:`\\operatorname{softmax}([\\eta, 0])` over ``n_draws``
    draws of :math:`\\eta` from its Gaussian posterior (columns independent given ``x``),
    with a fixed seed so that predictions are deterministic. See :mod:`bayeslayers.heads.glm`
    for the other parameters and the fits.

    Parameters
    ----------
    n_draws : int
        Posterior draws of the logits per prediction.
    """

    n_draws: int = 200
    curvature_floor: float = 0.1

    kind: ClassVar[str] = "logistic"
    link: ClassVar[str] = "logistic"
    fits: ClassVar[tuple[str, ...]] = ("laplace", "advi")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_count(self.n_draws, "n_draws")

    def n_columns(self, n_classes: int) -> int:
        return n_classes - 1

    def _targets(self, T):
        return T

    def log_proba_given(self, eta: np.ndarray) -> np.ndarray:
        """Log class probabilities ``(..., K)`` for fixed logits ``eta`` ``(..., K - 1)``.

        :math:`\\log \\operatorname{softmax}([\\eta, 0])`, the last class the reference.
        """
        zero = np.zeros((*eta.shape[:-1], 1))
        return log_softmax(np.concatenate([eta, zero], axis=-1), axis=-1)

    def _loglik(self, eta, Y):
        return np.sum(Y * self.log_proba_given(eta), axis=1)

    def _grad_curv(self, eta, Y):
        """Gradient ``g = y - p`` (n, K - 1) and the class probabilities ``q`` (n, K).

        The negative Hessian is :math:`H = \\operatorname{diag}(p) - p p^\\top`, ``p = q[:, :-1]``
        (diagonal plus rank one); ``q[:, -1]``, the reference class, keeps
        :math:`1 - \\sum_c p_c` exact where it is tiny.
        """
        q = np.exp(self.log_proba_given(eta))
        return Y[:, :-1] - q[:, :-1], q

    def _hess_diag(self, q):
        p = q[:, :-1]
        return p - p * p

    def _dense_hessian(self, q):
        p = q[:, :-1]
        return p[:, :, None] * np.eye(p.shape[1]) - p[:, :, None] * p[:, None, :]

    def _solve(self, q, extra, rhs):
        r""":math:`(\operatorname{diag}(p + e) - p p^\top)^{-1} r` by Sherman-Morrison, ``O(C)``.

        With :math:`D = p + e`: :math:`x = r / D + (p / D)\,(p^\top r / D) / \delta`, where
        :math:`\delta = 1 - \sum_c p_c^2 / D_c = q_K + \sum_c p_c e_c / D_c > 0`.
        """
        p, ref = q[:, :-1], q[:, -1]
        D = p + extra
        pd = p / D
        delta = ref + np.sum(pd * extra, axis=1)
        return rhs / D + pd * (np.sum(pd * rhs, axis=1) / delta)[:, None]

    def _whiten(self, g, q, W):
        r"""A factor :math:`R` of :math:`\tilde H = H + \kappa I` in ``O(C)`` per row.

        :math:`\tilde H = D - p p^\top = D^{1/2} (I - u u^\top) D^{1/2}` with
        :math:`D = \operatorname{diag}(p + \kappa)`, :math:`u = D^{-1/2} p`, and
        :math:`(I - c\,u u^\top)^2 = I - u u^\top` for :math:`c = 1 / (1 + s)`,
        :math:`s^2 = 1 - |u|^2 = q_K + \sum_c p_c \kappa / D_c`. So :math:`R = D^{1/2}
        (I - c\,u u^\top)`, :math:`J = W R = W D^{1/2} - c\,(W p) u^\top` and
        :math:`E = R^{-1} g = (I + u u^\top / (s (1 + s)))\,D^{-1/2} g`. (A curvature of
        at least 1e-12 is kept, as for the probit.)
        """
        p, ref = q[:, :-1], q[:, -1]
        kappa = self.curvature_floor + _MIN_CURVATURE
        D = p + kappa
        root = np.sqrt(D)
        u = p / root
        s = np.sqrt(ref + np.sum(p * kappa / D, axis=1))
        y = g / root
        E = y + u * (np.sum(u * y, axis=1) / (s * (1.0 + s)))[:, None]
        J = W[None] * root[:, None, :] - (p @ W.T / (1.0 + s)[:, None])[:, :, None] * u[:, None, :]
        return E, J

    def proba_from_moments(self, state: GLMState, m: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Class probabilities ``(..., K)`` for Gaussian logits :math:`\\eta \\sim N(m, v)`."""
        lead = m.shape[:-1]
        m, sd = m.reshape(-1, m.shape[-1]), np.sqrt(v).reshape(-1, m.shape[-1])
        rng = np.random.default_rng(self.seed)
        eps = rng.standard_normal((self.n_draws, 1, m.shape[1]))
        out = np.empty((len(m), m.shape[1] + 1))
        block = max(1, 2**20 // (self.n_draws * m.shape[1]))
        for i in range(0, len(m), block):
            eta = m[None, i : i + block] + sd[None, i : i + block] * eps
            logits = np.concatenate([eta, np.zeros((*eta.shape[:2], 1))], axis=-1)
            out[i : i + block] = softmax(logits, axis=-1).mean(axis=0)
        return out.reshape(*lead, -1)
