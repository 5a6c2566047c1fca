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
:math:`\nu / (\nu - 2)`, and :func:`predictive_quantiles` its quantiles (for ``"sample"``,
the mixture's components stay Gaussian).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import ndtr, ndtri, stdtrit

from bayeslayers import averaging, conjugate, hidden_scale
from bayeslayers._validation import check_count, check_features
from bayeslayers.engine import NetSpec, NetState, forward, head_design, with_bias
from bayeslayers.heads import Head, RegressionHead

__all__ = [
    "HIDDEN",
    "PredictiveMixin",
    "check_hidden",
    "check_quantiles",
    "head_inputs",
    "hidden_factor",
    "linearized_moments",
    "mixture_quantiles",
    "moments",
    "predictive_quantiles",
    "proba",
    "student_t_factor",
]

HIDDEN = ("linearized", "mean", "sample")


def check_hidden(hidden: str, n_samples: int | None) -> int:
    """Validate ``hidden`` and ``n_samples``; return the number of draws (0 unless sampling).

    ``n_samples`` is the number of draws of ``hidden="sample"`` (100 if omitted) and an
    error with any other ``hidden``, where it would mean nothing.
    """
    if hidden not in HIDDEN:
        raise ValueError(f"hidden must be one of {HIDDEN}, got {hidden!r}")
    if n_samples is not None and hidden != "sample":
        raise ValueError(
            f"n_samples is the number of draws of hidden='sample', "
            f"but hidden={hidden!r}: drop n_samples or pass hidden='sample'"
        )
    count = check_count(100 if n_samples is None else n_samples, "n_samples")
    return count if hidden == "sample" else 0


def check_quantiles(quantiles) -> np.ndarray:
    """``quantiles`` as a float array, or a ``ValueError`` unless a 1-D sequence in (0, 1)."""
    q = np.asarray(quantiles, dtype=np.float64)
    if q.ndim != 1 or q.size == 0 or not np.all((q > 0) & (q < 1)):
        raise ValueError(
            f"quantiles must be a 1-D sequence of numbers in (0, 1), got {quantiles!r}"
        )
    return q


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
    return head_design(spec, A, X)


def linearized_moments(
    spec: NetSpec, state: NetState, X: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean and variance ``(n, k)`` of the head's linear predictor by local linearization.

    With independent Gaussian weight columns,

    .. math::

        \operatorname{Var} f_k = v^{head}_k + \tau \sum_l \sum_j
            \big(x_l^\top \Sigma_{l,j}\, x_l\big)\,
            \big(g_{l,j}\, \partial f_k / \partial h_{l,j}\big)^2,

    where :math:`v^{head}` is the head's own predictive variance (its weights and noise),
    :math:`x_l` the layer's input, :math:`g_{l,j}` the slope of unit ``j`` and
    :math:`\partial f / \partial h_l` the Jacobian at the means, accumulated from the top
    down (the tangent-linear pass) from the head's top hidden rows :math:`W_h` (the skip rows
    do not depend on the hidden weights; :func:`bayeslayers.hidden_scale.hidden_variance`).
    Units that are off (``g = 0``) contribute nothing. :math:`\tau` is the hidden layers'
    scale (:func:`hidden_factor`; 1 for a classifier).
    """
    xh, trace = forward(spec, state.hidden, X)
    mean, var = spec.head.predictive(state.head, xh)
    if not trace:
        return mean, var
    extra = hidden_scale.hidden_variance(spec, state.hidden, state.head.post.mean, trace)
    return mean, var + hidden_factor(spec, state) * extra


def hidden_factor(spec: NetSpec, state: NetState) -> float:
    """The factor on the hidden layers' variance in the predictive: 1 for a classifier, else
    :func:`bayeslayers.hidden_scale.factor` of the state's record."""
    if spec.head.is_classifier:
        return 1.0
    return hidden_scale.factor(spec, state.hidden_scale)


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
        return spec.head.proba_from_moments(state.head, *linearized_moments(spec, state, X))
    return spec.head.proba(state.head, head_inputs(spec, state, X, n_samples, seed)).mean(axis=0)


def predictive_quantiles(
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


class PredictiveMixin:
    """The prediction methods of a fitted :class:`~bayeslayers.network.Network`.

    They validate their arguments, then call this module's functions on the network's
    ``spec`` and ``state``.
    """

    head: Head
    dtype: str
    seed: int
    n_features_in_: int
    n_outputs_: int
    classes_: np.ndarray
    posteriors_: list[conjugate.WeightPosterior]
    head_state_: Any

    if TYPE_CHECKING:

        @property
        def is_fitted(self) -> bool: ...
        @property
        def spec(self) -> NetSpec: ...
        @property
        def state(self) -> NetState: ...

    @property
    def prediction_state(self) -> NetState:
        """The state predictions use: :attr:`state` with the hidden means replaced by their
        iterate average where the network uses it
        (:func:`bayeslayers.averaging.predictive_state`)."""
        return averaging.predictive_state(self.spec, self.state)

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("this Network is not fitted yet: call fit or partial_fit first")

    def _prepare(self, X, hidden: str, n_samples) -> tuple[np.ndarray, int]:
        """Checked features and number of draws for a prediction (before any work)."""
        self._check_fitted()
        draws = check_hidden(hidden, n_samples)
        return check_features(X, self.n_features_in_, self.dtype), draws

    def _output(self, a: np.ndarray) -> np.ndarray:
        return a[..., 0] if self.n_outputs_ == 1 else a

    def predictive_dof(self) -> float:
        r"""Degrees of freedom :math:`\nu` of the regression predictive (``inf``: Gaussian).

        With a learned noise, ``predict(return_std=True)``'s standard deviation and
        ``predict_quantiles`` are those of a Student-t with :math:`\nu` degrees of freedom;
        score them with ``bayeslayers.metrics.regression_metrics(..., dof=nu)``.
        """
        self._check_fitted()
        if self.head.is_classifier or not isinstance(self.head, RegressionHead):
            raise AttributeError(f"predictive_dof needs a regression head, not {self.head!r}")
        return float(self.head.dof(self.head_state_))

    def predict_moments(
        self, X, *, hidden: str = "linearized", n_samples: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and variance ``(n, k)`` of the head's linear predictor.

        The head's weights (and, for regression, the noise) are integrated analytically; the
        hidden layers' weights as ``hidden`` says (:mod:`bayeslayers.predictive`:
        ``"linearized"``, ``"mean"`` or ``"sample"`` with ``n_samples`` draws, 100 if
        omitted).
        """
        X, draws = self._prepare(X, hidden, n_samples)
        return moments(self.spec, self.prediction_state, X, hidden, draws, self.seed)

    def predict(
        self,
        X,
        *,
        return_std: bool = False,
        hidden: str = "linearized",
        n_samples: int | None = None,
    ):
        """Posterior-mean prediction; class labels for a classification head.

        With ``return_std=True`` (regression) also returns the predictive standard deviation:
        weight uncertainty of every layer plus the observation noise (``hidden`` and
        ``n_samples`` as in :meth:`predict_moments`).
        """
        self._check_fitted()
        if self.head.is_classifier:
            if return_std:
                raise ValueError("return_std is for regression heads; use predict_proba")
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        if hidden == "sample" and not return_std:
            raise ValueError(
                "hidden='sample' applies with return_std=True; the point prediction is the "
                "forward pass at the posterior means (predict_moments gives the sampled mean)"
            )
        X, draws = self._prepare(X, hidden, n_samples)
        if return_std:
            mean, var = moments(self.spec, self.prediction_state, X, hidden, draws, self.seed)
            return self._output(mean), self._output(np.sqrt(var))
        xh, _ = forward(self.spec, self.prediction_state.hidden, X)
        return self._output(xh @ self.head_state_.post.mean)

    def predict_proba(self, X, *, hidden: str = "mean", n_samples: int | None = None):
        """Class probabilities ``(n, n_classes)``.

        The head integrates its own weight uncertainty; the hidden layers' weights enter as
        ``hidden`` says (``"mean"``, the default, ``"linearized"`` or ``"sample"``).
        """
        self._check_fitted()
        if not self.head.is_classifier:
            raise AttributeError(f"predict_proba needs a classification head, not {self.head!r}")
        X, draws = self._prepare(X, hidden, n_samples)
        return proba(self.spec, self.prediction_state, X, hidden, draws, self.seed)

    def predict_quantiles(
        self,
        X,
        quantiles=(0.05, 0.5, 0.95),
        *,
        hidden: str = "linearized",
        n_samples: int | None = None,
    ) -> np.ndarray:
        """Quantiles ``(len(quantiles), n[, k])`` of the predictive distribution (regression).

        See :func:`predictive_quantiles` for ``hidden`` and ``n_samples``.
        """
        self._check_fitted()
        if self.head.is_classifier:
            raise AttributeError(f"predict_quantiles needs a regression head, not {self.head!r}")
        q = check_quantiles(quantiles)
        X, draws = self._prepare(X, hidden, n_samples)
        out = predictive_quantiles(self.spec, self.prediction_state, X, q, hidden, draws, self.seed)
        return self._output(out)
