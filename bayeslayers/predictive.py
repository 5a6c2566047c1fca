r"""Predictive distributions of a fitted network, with one vocabulary for the hidden layers.

The head's weights (and, for regression, the noise) are always integrated analytically by the
head. How the hidden layers' weight uncertainty enters is chosen by ``hidden``:

``"linearized"``
    The network output is expanded to first order in every hidden layer's weights around the
    posterior means (the linearization the training step itself uses, so this is the
    extended Kalman filter's own predictive); deterministic, its mean is the plug-in
    prediction.
``"mean"``
    Hidden layers at their posterior means: only the head's uncertainty.
``"sample"``
    ``n_samples`` Monte Carlo draws of every hidden weight; moments by the law of total
    variance, probabilities and quantiles of the equal-weight mixture over the draws.

``n_samples`` is used by ``"sample"`` only, and always means the number of draws.

With a learned noise a regression head's predictive is Student-t with :math:`\nu` degrees of
freedom (``head.dof``); :func:`moments` then returns its variance, the squared scale times
:math:`\nu / (\nu - 2)`, and :func:`quantiles` its quantiles (for ``"sample"``, the mixture's
components stay Gaussian).
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri, stdtrit

from bayeslayers import conjugate
from bayeslayers._validation import check_count
from bayeslayers.engine import NetSpec, NetState, forward, with_bias

__all__ = [
    "HIDDEN",
    "check_hidden",
    "head_inputs",
    "linearized_moments",
    "mixture_quantiles",
    "moments",
    "proba",
    "quantiles",
    "student_t_factor",
]

HIDDEN = ("linearized", "mean", "sample")


def check_hidden(hidden: str, n_samples) -> int:
    """Validate ``hidden`` and ``n_samples``; return the number of draws (0 unless sampling)."""
    if hidden not in HIDDEN:
        raise ValueError(f"hidden must be one of {HIDDEN}, got {hidden!r}")
    count = check_count(n_samples, "n_samples")
    assert count is not None
    return count if hidden == "sample" else 0


def head_inputs(
    spec: NetSpec, state: NetState, X: np.ndarray, n_samples: int, seed: int
) -> np.ndarray:
    """Head inputs for ``n_samples`` draws of the hidden weights, shape ``(S, n, D)``.

    A fresh generator seeded by ``[seed, 2]`` per call: predictions are a pure function of the
    fitted state and ``X`` (repeatable, the same for any subset of rows).
    """
    rng = np.random.default_rng([seed, 2])
    A = np.broadcast_to(X, (n_samples, *X.shape))
    for layer, post in zip(spec.layers, state.hidden, strict=True):
        W = conjugate.sample(post, n_samples, rng)
        A = layer.activate(with_bias(A) @ W)
    return with_bias(A)


def linearized_moments(
    spec: NetSpec, state: NetState, X: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean and variance ``(n, k)`` of the head's linear predictor by local linearization.

    With independent Gaussian weight columns,

    .. math::

        \operatorname{Var} f_k = v^{head}_k + \sum_l \sum_j
            \big(x_l^\top \Sigma_{l,j}\, x_l\big)\,
            \big(g_{l,j}\, \partial f_k / \partial h_{l,j}\big)^2,

    where :math:`v^{head}` is the head's own predictive variance (its weights and noise),
    :math:`x_l` the layer's input, :math:`g_{l,j}` the slope of unit ``j`` and
    :math:`\partial f / \partial h_l` the Jacobian at the means, accumulated from the top
    down (the tangent-linear pass). Units that are off (``g = 0``) contribute nothing.
    """
    xh, trace = forward(spec, state.hidden, X)
    mean, var = spec.head.predictive(state.head, xh)
    W = state.head.post.mean
    J = np.broadcast_to(W[:-1], (len(X), *W[:-1].shape))  # df / dh of the top hidden layer
    for step, post in zip(reversed(trace), reversed(state.hidden), strict=True):
        gJ = step.g[:, :, None] * J  # df / dz
        var = var + np.einsum("nm,nmk->nk", conjugate.marginal_variance(post, step.x), gJ**2)
        J = post.mean[None, :-1, :] @ gJ
    return mean, var


def student_t_factor(spec: NetSpec, state: NetState) -> float:
    r""":math:`\nu / (\nu - 2)`, variance over squared scale (1 for a Gaussian predictive)."""
    if spec.head.is_classifier:
        return 1.0
    nu = spec.head.dof(state.head)
    return float(nu / (nu - 2)) if 2 < nu < np.inf else 1.0


def moments(
    spec: NetSpec, state: NetState, X: np.ndarray, hidden: str, n_samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Predictive mean and variance ``(n, k)`` of the head's linear predictor."""
    mean, var = _scale_moments(spec, state, X, hidden, n_samples, seed)
    return mean, var * student_t_factor(spec, state)


def _scale_moments(
    spec: NetSpec, state: NetState, X: np.ndarray, hidden: str, n_samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and squared scale ``(n, k)`` (the variance when the predictive is Gaussian)."""
    if hidden == "linearized":
        return linearized_moments(spec, state, X)
    if hidden == "mean":
        return spec.head.predictive(state.head, forward(spec, state.hidden, X)[0])
    mean, var = spec.head.predictive(state.head, head_inputs(spec, state, X, n_samples, seed))
    return mean.mean(axis=0), var.mean(axis=0) + mean.var(axis=0)


def proba(
    spec: NetSpec, state: NetState, X: np.ndarray, hidden: str, n_samples: int, seed: int
) -> np.ndarray:
    """Class probabilities ``(n, n_classes)`` (classification heads)."""
    if hidden == "mean":
        return spec.head.proba(state.head, forward(spec, state.hidden, X)[0])
    if hidden == "linearized":
        return spec.head.proba_from_moments(*linearized_moments(spec, state, X))
    return spec.head.proba(state.head, head_inputs(spec, state, X, n_samples, seed)).mean(axis=0)


def quantiles(
    spec: NetSpec,
    state: NetState,
    X: np.ndarray,
    q: np.ndarray,
    hidden: str,
    n_samples: int,
    seed: int,
) -> np.ndarray:
    r"""Quantiles ``(Q, n, k)`` of the predictive distribution of every output.

    ``"linearized"`` and ``"mean"``: :math:`y_q = m + s\,F_\nu^{-1}(q)` with the scale
    :math:`s` and the Student-t (Gaussian for :math:`\nu = \infty`) quantile function.
    ``"sample"``: the equal-weight mixture over the draws :math:`s` of the head's predictive
    :math:`N(m_s, v_s)`, :math:`F(y) = \frac1S \sum_s \Phi((y - m_s) / \sqrt{v_s})`,
    :math:`y_q = F^{-1}(q)` (:func:`mixture_quantiles`).
    """
    if hidden == "sample":
        mean, var = spec.head.predictive(state.head, head_inputs(spec, state, X, n_samples, seed))
        return mixture_quantiles(mean, np.sqrt(var), q)
    mean, var = _scale_moments(spec, state, X, hidden, n_samples, seed)
    nu = np.inf if spec.head.is_classifier else spec.head.dof(state.head)
    z = ndtri(q) if nu == np.inf else stdtrit(nu, q)
    return mean + np.sqrt(var) * z[:, None, None]


def mixture_quantiles(mean: np.ndarray, sd: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Quantiles ``(Q, n, k)`` of equal-weight Gaussian mixtures over axis 0 of ``mean, sd``.

    Bisection on :math:`F(y) - q`, 64 halvings of a bracket that holds every quantile asked
    for (float precision).
    """
    shape = (len(q), *mean.shape[1:])
    lo = np.broadcast_to((mean + sd * ndtri(q.min())).min(axis=0), shape).copy()
    hi = np.broadcast_to((mean + sd * ndtri(q.max())).max(axis=0), shape).copy()
    target = q[:, None, None]
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        below = ndtr((mid[:, None] - mean) / sd).mean(axis=1) < target
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)
