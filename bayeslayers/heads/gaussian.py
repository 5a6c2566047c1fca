r"""Gaussian heads: linear regression outputs through the conjugate core.

``Gaussian``
    Linear output with Gaussian noise: Bayesian linear regression through the conjugate core.
    With ``learn_noise=True`` the noise variance gets a conjugate Inverse-Gamma prior
    (Normal-Inverse-Gamma model): the weights' covariance is then carried relative to
    :math:`\sigma^2` and, after each batch with :math:`n` tempered observations,

    .. math::

        a \leftarrow a + \tfrac{n}{2}, \qquad
        b \leftarrow b + \tfrac12 \sum_j r_j^\top \tilde S_j^{-1} r_j,

    with :math:`\tilde S_j = I / c + \Phi_j \tilde\Sigma_j \Phi_j^\top` (Bishop PRML 3.3,
    Murphy MLPP 7.6.3). The noise estimate is :math:`b / a`.
``OneHot``
    The ``Gaussian`` head regressing one-hot class indicators (the original post's MNIST
    set-up). Class probabilities are :math:`P(k = \arg\max_j f_j)` under the independent
    Gaussian predictive of the outputs (:func:`bayeslayers.heads.argmax.argmax_log_proba`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from bayeslayers import conjugate
from bayeslayers.heads.argmax import argmax_log_proba, argmax_probabilities

__all__ = ["Gaussian", "GaussianState", "OneHot"]


class GaussianState(NamedTuple):
    """Posterior of a Gaussian head.

    Attributes
    ----------
    post : WeightPosterior
        Weight posterior (covariance relative to :math:`\\sigma^2` when the noise is learned).
    a, b : float
        Inverse-Gamma shape and scale of the noise variance. With a fixed noise ``a = inf``
        is not used; ``b / a`` is always the noise variance in use.
    """

    post: conjugate.WeightPosterior
    a: float
    b: float


@dataclass(frozen=True)
class Gaussian:
    """Linear output layer with Gaussian observation noise (regression).

    Parameters
    ----------
    learn_noise : bool
        Learn the noise variance with the conjugate Normal-Inverse-Gamma extension. The
        network's ``noise`` is then the prior guess, held with ``noise_strength`` pseudo
        observations, and ``prior_precision`` is relative to the noise.
    noise_strength : float
        Prior weight (in observations) of the noise guess when ``learn_noise`` is set.
    covariance : str, optional
        Covariance structure of the head's weights; the network's default if omitted.
    """

    learn_noise: bool = False
    noise_strength: float = 2.0
    covariance: str | None = None

    kind: ClassVar[str] = "gaussian"
    is_classifier: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not self.noise_strength > 0:
            raise ValueError(f"noise_strength must be > 0, got {self.noise_strength}")
        if self.covariance is not None and self.covariance not in conjugate.STRUCTURES:
            raise ValueError(
                f"covariance must be one of {conjugate.STRUCTURES} or None, got {self.covariance!r}"
            )

    def encode(self, y: np.ndarray, n_classes: int | None = None) -> np.ndarray:
        return y.reshape(len(y), -1)

    def init(self, mean, prior_variance, structure, noise) -> GaussianState:
        a = self.noise_strength / 2 if self.learn_noise else 1.0
        return GaussianState(conjugate.init(structure, mean, prior_variance), a, a * noise)

    def noise_variance(self, state: GaussianState) -> float:
        """Current noise variance estimate :math:`b / a`."""
        return state.b / state.a

    def update(self, state: GaussianState, X, T, fraction) -> GaussianState:
        if self.learn_noise:
            post, info = conjugate.update(state.post, X, T, noise=1.0, fraction=fraction)
            return GaussianState(post, state.a + info.n_obs / 2, state.b + info.quad / 2)
        post, _ = conjugate.update(
            state.post, X, T, noise=self.noise_variance(state), fraction=fraction
        )
        return GaussianState(post, state.a, state.b)

    def residual(self, state: GaussianState, X, T) -> tuple[np.ndarray, np.ndarray]:
        W = state.post.mean
        return T - X @ W, W[:-1]

    def predictive(self, state: GaussianState, X) -> tuple[np.ndarray, np.ndarray]:
        mean = X @ state.post.mean
        var = conjugate.marginal_variance(state.post, X)
        s2 = self.noise_variance(state)
        return mean, (var * s2 if self.learn_noise else var) + s2

    def flush(self, state: GaussianState) -> GaussianState:
        """Nothing is pending in a conjugate head: ``state`` unchanged."""
        return state

    def weight_posterior(self, state: GaussianState) -> conjugate.WeightPosterior:
        """The weight posterior on the scale of the weights.

        With a learned noise the covariance is carried relative to :math:`b / a`; it is
        scaled back here (a Gaussian draw is then the plug-in approximation of the
        Normal-Inverse-Gamma marginal).
        """
        post = state.post
        if self.learn_noise:
            post = post._replace(cov=post.cov * self.noise_variance(state))
        return post

    def log_likelihood(self, state: GaussianState, F: np.ndarray, y: np.ndarray) -> np.ndarray:
        r"""Pointwise :math:`\log N(y \mid f, \sigma^2)`, summed over outputs: ``F.shape[:-1]``.

        ``F`` ``(..., n, k)`` are linear predictors for drawn weights, ``y`` ``(n, k)`` targets.
        """
        sd = np.sqrt(self.noise_variance(state))
        z = (y - F) / sd
        return (-0.5 * (np.log(2 * np.pi) + z**2) - np.log(sd)).sum(axis=-1)

    def sample(self, state: GaussianState, F: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One outcome per predictor: ``F + sigma * noise``."""
        sd = np.sqrt(self.noise_variance(state))
        return F + sd * rng.standard_normal(F.shape)


@dataclass(frozen=True)
class OneHot(Gaussian):
    """Gaussian head on one-hot class indicators: classification by regression.

    The noise variance is learned by default (``learn_noise=True``): the residual variance of
    one-hot regression is far below the default ``noise=1``, and a fixed unit noise makes the
    class probabilities nearly uniform at the same accuracy (benchmarks/RESULTS.md).
    """

    learn_noise: bool = True
    kind: ClassVar[str] = "onehot"
    is_classifier: ClassVar[bool] = True

    def encode(self, y: np.ndarray, n_classes: int | None = None) -> np.ndarray:
        return np.eye(n_classes)[y]

    def proba(self, state: GaussianState, X) -> np.ndarray:
        """Class probabilities for head inputs ``X`` (with bias)."""
        return self.proba_from_moments(*self.predictive(state, X))

    def proba_from_moments(self, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
        """Class probabilities for independent Gaussian outputs :math:`N(m, v)`."""
        return argmax_probabilities(mean, var)

    def log_likelihood(self, state: GaussianState, F: np.ndarray, y: np.ndarray) -> np.ndarray:
        """:math:`\\log P(y = \\arg\\max_j (f_j + \\varepsilon_j))`, noise of variance ``b / a``.

        ``F`` ``(..., n, K)`` are the outputs for drawn weights, ``y`` ``(n,)`` class indices.
        """
        return argmax_log_proba(F, self.noise_variance(state), y)

    def sample(self, state: GaussianState, F: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One class index per row: the argmax of the outputs plus noise."""
        s2 = self.noise_variance(state)
        return np.argmax(F + np.sqrt(s2) * rng.standard_normal(F.shape), axis=-1)
