r"""Probit and logistic output layers (generalized linear heads).

The head's linear predictor is :math:`\eta = x^\top W` (``x`` the head input with its bias 1)
and the classes follow from a link:

``Probit``
    Two classes: one column, :math:`P(y = 1) = \Phi(\eta)`. More classes: one-vs-rest probit,
    one column per class, :math:`P(y_k = 1) = \Phi(\eta_k)`, probabilities renormalized over
    the classes at prediction.
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

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
from scipy.special import log_ndtr, log_softmax, softmax

from bayeslayers import conjugate
from bayeslayers._validation import check_count

__all__ = ["FITS", "GLMState", "Logistic", "Probit"]

FITS = ("laplace", "adf", "advi")

# Curvatures below this are treated as this (keeps the working response finite).
_MIN_CURVATURE = 1e-12
# Newton iterations (and step halvings per iteration) for the Laplace mode of one row.
_NEWTON_STEPS = 30
_HALVINGS = 30


class GLMState(NamedTuple):
    """Posterior state of a probit or logistic head.

    Attributes
    ----------
    post : WeightPosterior
        Current weight posterior, used for predictions.
    prior : WeightPosterior
        ``"advi"``: the posterior at the last refit (the prior of the chunk being filled);
        the other fits keep it equal to ``post``.
    before : WeightPosterior
        The posterior before the last :meth:`~_GLMHead.update` (the body's targets come from it
        with ``body_target="before"``).
    buffer_X : ndarray of shape (chunk_size, D)
        Head inputs of the rows waiting for the next refit (``"advi"``; 0 rows otherwise).
    buffer_T : ndarray of shape (chunk_size, K)
        Their one-hot labels.
    buffer_weight : ndarray of shape (chunk_size,)
        Their tempering fractions; 0 marks a free slot.
    n_buffered : int
        Number of rows in the buffer.
    n_refits : int
        Number of ADVI refits so far (seeds the Monte Carlo draws of the next one).
    """

    post: conjugate.WeightPosterior
    prior: conjugate.WeightPosterior
    before: conjugate.WeightPosterior
    buffer_X: np.ndarray
    buffer_T: np.ndarray
    buffer_weight: np.ndarray
    n_buffered: int
    n_refits: int


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
    labels), ``_loglik(eta, Y)`` (per row) and ``_grad_hess(eta, Y)`` (gradient ``g`` (n, C) and
    negative Hessian ``H`` (n, C, C) of the log-likelihood in :math:`\eta`).
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
    link: ClassVar[str]
    fits: ClassVar[tuple[str, ...]]

    def __post_init__(self) -> None:
        if self.fit not in self.fits:
            raise ValueError(f"fit must be one of {self.fits}, got {self.fit!r}")
        if self.body_target not in ("before", "after"):
            raise ValueError(f"body_target must be 'before' or 'after', got {self.body_target!r}")
        if not (isinstance(self.curvature_floor, int | float) and self.curvature_floor >= 0):
            raise ValueError(f"curvature_floor must be a number >= 0, got {self.curvature_floor!r}")
        for name in ("chunk_size", "n_steps", "n_mc"):
            check_count(getattr(self, name), name)
        if not (isinstance(self.learning_rate, int | float) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a number > 0, got {self.learning_rate!r}")
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

    def init(self, mean: np.ndarray, prior_variance: float, structure: str, noise: float):
        """Prior state; ``mean`` is ``(D, K)`` and only its first :meth:`n_columns` are used.

        ``noise`` is ignored: the link fixes the likelihood's scale.
        """
        K = mean.shape[1]
        C = self.n_columns(K)
        if self.fit == "advi":
            structure = "diag"
        post = conjugate.init(structure, mean[:, :C], prior_variance)
        rows = self.chunk_size if self.fit == "advi" else 0
        dtype = mean.dtype
        return GLMState(
            post,
            post,
            post,
            np.zeros((rows, mean.shape[0]), dtype=dtype),
            np.zeros((rows, K), dtype=dtype),
            np.zeros(rows, dtype=dtype),
            0,
            0,
        )

    def update(self, state: GLMState, X: np.ndarray, T: np.ndarray, fraction: float) -> GLMState:
        """Condition on head inputs ``X`` (n, D) and one-hot labels ``T`` (n, K)."""
        if self.fit != "advi":
            post = self._closed_form(state.post, X, T, fraction)
            return state._replace(post=post, prior=post, before=state.post)
        before, start = state.post, 0
        while start < len(X):
            free = self.chunk_size - state.n_buffered
            stop = min(start + free, len(X))
            post = self._closed_form(state.post, X[start:stop], T[start:stop], fraction)
            rows = slice(state.n_buffered, state.n_buffered + stop - start)
            buffer_X, buffer_T = state.buffer_X.copy(), state.buffer_T.copy()
            buffer_weight = state.buffer_weight.copy()
            buffer_X[rows], buffer_T[rows], buffer_weight[rows] = (
                X[start:stop],
                T[start:stop],
                fraction,
            )
            state = state._replace(
                post=post,
                buffer_X=buffer_X,
                buffer_T=buffer_T,
                buffer_weight=buffer_weight,
                n_buffered=state.n_buffered + stop - start,
            )
            if state.n_buffered == self.chunk_size:
                state = self.flush(state)
            start = stop
        return state._replace(before=before)

    def flush(self, state: GLMState) -> GLMState:
        """Refit by ADVI on the buffered rows now (no-op for closed-form fits or an empty buffer).

        .. math::

            q_{new} = \\arg\\max_q \\; \\sum_i c_i \\mathbb E_q \\log p(y_i \\mid x_i^\\top W)
                      - \\mathrm{KL}(q \\,\\|\\, q_{prior})
        """
        if self.fit != "advi" or state.n_buffered == 0:
            return state
        from bayeslayers.heads.advi import get_fitter

        prior = state.prior
        n_in, n_cols = prior.mean.shape
        fitter = get_fitter(
            self.link, self.chunk_size, n_in, n_cols, self.n_mc, float(self.learning_rate)
        )
        result = fitter.fit(
            state.buffer_X,
            self._targets(state.buffer_T),
            state.buffer_weight,
            prior.mean,
            np.sqrt(prior.cov),
            start_mean=state.post.mean,
            start_sd=np.sqrt(state.post.cov),
            n_steps=self.n_steps,
            seed=int(np.random.SeedSequence([self.seed, state.n_refits]).generate_state(1)[0]),
        )
        dtype = prior.mean.dtype
        post = conjugate.WeightPosterior(
            "diag", result.mean.astype(dtype), (result.sd**2).astype(dtype)
        )
        return GLMState(
            post,
            post,
            state.before,
            np.zeros_like(state.buffer_X),
            np.zeros_like(state.buffer_T),
            np.zeros_like(state.buffer_weight),
            0,
            state.n_refits + 1,
        )

    def _closed_form(self, post, X, T, fraction):
        """One Laplace (IRLS / EKF) or ADF step through the conjugate core."""
        Y = self._targets(T)
        m, v = X @ post.mean, conjugate.marginal_variance(post, X)
        if self.fit == "adf":
            G, target = self._adf_pseudo(m, v, Y)
        else:
            eta = self._mode(m, v, Y)
            g, H = self._grad_hess(eta, Y)
            G = np.sqrt(np.maximum(np.diagonal(H, axis1=1, axis2=2), _MIN_CURVATURE))
            target = G * eta + g / G
        return conjugate.update(post, X, target, G, noise=1.0, fraction=fraction)[0]

    def _mode(self, m: np.ndarray, v: np.ndarray, Y: np.ndarray) -> np.ndarray:
        r"""Mode of :math:`\log p(y \mid \eta) - \sum_c (\eta_c - m_c)^2 / (2 v_c)` per row.

        Newton's method with step halving (the objective is strictly concave). At the mode
        :math:`g(\eta^*) = (\eta^* - m) / v`, so the pseudo-observation built there moves the
        predictor's mean exactly to :math:`\eta^*`: the Laplace approximation of each row's
        posterior (the iterated extended Kalman step).
        """
        C = m.shape[1]

        def objective(eta):
            return self._loglik(eta, Y) - 0.5 * np.sum((eta - m) ** 2 / v, axis=1)

        eta = m.copy()
        value = objective(eta)
        for _ in range(_NEWTON_STEPS):
            g, H = self._grad_hess(eta, Y)
            H[:, np.arange(C), np.arange(C)] += 1.0 / v
            step = np.linalg.solve(H, (g - (eta - m) / v)[..., None])[..., 0]
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

    def residual(self, state: GLMState, X, T) -> tuple[np.ndarray, np.ndarray]:
        """Whitened Gauss-Newton residual ``E`` (n, C) and Jacobian ``J`` (n, d, C).

        Taken at the posterior before the last update (``body_target="before"``) or after it.
        """
        W = (state.before if self.body_target == "before" else state.post).mean
        g, H = self._grad_hess(X @ W, self._targets(T))
        lam, Q = np.linalg.eigh(H)
        lam = np.maximum(lam, _MIN_CURVATURE) + self.curvature_floor
        E = np.einsum("nce,ne->nc", Q, np.einsum("nce,nc->ne", Q, g) / np.sqrt(lam))
        root_H = np.einsum("nce,ne,nfe->ncf", Q, np.sqrt(lam), Q)
        return E, np.einsum("dc,nce->nde", W[:-1], root_H)

    def proba(self, state: GLMState, X) -> np.ndarray:
        """Class probabilities ``(..., K)`` for head inputs ``X`` (with bias)."""
        return self.proba_from_moments(*self.predictive(state, X))

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
    :math:`P(y_k = 1) = \\Phi\\big(m_k / \\sqrt{1 + v_k}\\big)` with ``m, v`` the mean and
    variance of :math:`\\eta_k`; one-vs-rest probabilities are renormalized over the classes.
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

    def _grad_hess(self, eta, Y):
        g, w = _probit_terms(eta, Y)
        return g, w[:, :, None] * np.eye(w.shape[1])

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

        Binary: :math:`[\\log\\Phi(-\\eta), \\log\\Phi(\\eta)]`; one-vs-rest:
        :math:`\\log \\Phi(\\eta_k) - \\log \\sum_j \\Phi(\\eta_j)`.
        """
        if eta.shape[-1] == 1:
            return np.concatenate([log_ndtr(-eta), log_ndtr(eta)], axis=-1)
        return log_softmax(log_ndtr(eta), axis=-1)

    def proba_from_moments(self, m: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Class probabilities ``(..., K)`` for Gaussian latents :math:`\\eta \\sim N(m, v)`.

        :math:`E\\,\\Phi(\\eta_k) = \\Phi(m_k / \\sqrt{1 + v_k})`, then
        :meth:`log_proba_given` at those predictors.
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

    def _grad_hess(self, eta, Y):
        p = np.exp(self.log_proba_given(eta)[:, :-1])
        H = p[:, :, None] * np.eye(p.shape[1]) - p[:, :, None] * p[:, None, :]
        return Y[:, :-1] - p, H

    def proba_from_moments(self, m: np.ndarray, v: np.ndarray) -> np.ndarray:
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
