r"""The ``Head`` protocol: everything the network, the estimators and the ArviZ export use.

A head owns the posterior of the last weight matrix. The network asks it to

* ``encode(y)``: turn user targets into the head's working targets (e.g. one-hot rows);
* ``init(...)``: build the prior state;
* ``update(state, X, T, fraction)``: condition its posterior on a batch;
* ``score_and_update(state, X, T, fraction)``: the batch's one-step-ahead log predictive
  density and the updated state in one call (what the training step asks for), so that a
  head can share the predictive moments of the batch between the two;
* ``residual(state, X, T)``: the residual ``E`` of its linear predictor and the Jacobian ``J``
  of that predictor with respect to the head's input, from which the network derives the
  target for the body (:mod:`bayeslayers.propagation`);
* ``predictive(state, X)``: the predictive mean and variance of the linear predictor given the
  head's input, marginalizing the head's weights analytically;
* ``flush(state)``: finish pending work at the end of ``Network.fit`` (e.g. an ADVI refit on a
  partly filled chunk; the identity for the conjugate heads).

The ArviZ export draws the head's weights from ``weight_posterior(state)``, scores the
observations with ``log_likelihood(state, F, y)`` and draws outcomes with
``sample(state, F, rng)``, ``F`` the linear predictors for each weight draw. A classification
head (``is_classifier = True``) also gives class probabilities: ``proba(state, X)`` and
``proba_from_moments(state, mean, var)`` for Gaussian predictors. The body never knows which
head it has; it learns from ``residual`` (of the head's teacher, for a head that keeps
several readouts: :func:`bayeslayers.heads.teaching`).
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from bayeslayers import conjugate

__all__ = ["ClassifierHead", "Head"]


@runtime_checkable
class Head(Protocol):
    """What the network, the estimators and the export need from an output layer.

    Attributes
    ----------
    kind : str
        Registry name (saved with a model).
    is_classifier : bool
        Whether targets are class labels (then :class:`ClassifierHead` applies).
    covariance : str or None
        Covariance structure of the head's weights; ``None`` for the network's default.
    shares_covariance : bool
        Whether every output column's weights have the same posterior covariance (the same
        inputs, unit slopes and one noise), so that one shared covariance is exact
        (:func:`bayeslayers.defaults.head_structure`).
    """

    kind: ClassVar[str]
    is_classifier: ClassVar[bool]
    shares_covariance: ClassVar[bool]

    @property
    def covariance(self) -> str | None:
        """Covariance structure of the head's weights (read-only: heads are frozen)."""

    def encode(self, y: np.ndarray, n_classes: int | None = None) -> np.ndarray:
        """Working targets of shape ``(n, k)``."""

    def init(
        self,
        mean: np.ndarray,
        prior_variance: float,
        structure: str,
        noise: float,
        blocks: tuple[int, ...] | None = None,
    ):
        """Prior state for a ``(D, k)`` weight matrix; ``blocks``, optional, the rows per
        block of the head's inputs, for a head whose prior has one precision per block (the
        others ignore it)."""

    def update(self, state, X: np.ndarray, T: np.ndarray, fraction: float):
        """New state after conditioning on ``(X, T)``."""

    def residual(self, state, X: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Residual ``E`` (n, k) of the linear predictor and its Jacobian ``J`` (n|-, d, k)."""

    def predictive(self, state, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance ``(n, k)`` of the prediction for head inputs ``X`` (with bias)."""

    def flush(self, state):
        """State with any pending work done (called at the end of ``Network.fit``)."""

    def weight_posterior(self, state) -> conjugate.WeightPosterior:
        """The weights' posterior on their own scale (what the export draws from)."""

    def log_likelihood(self, state, F: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Pointwise log likelihood ``F.shape[:-1]`` of ``y`` given predictors ``F``."""

    def log_predictive(self, state, X: np.ndarray, T: np.ndarray) -> float:
        """Summed log predictive density of working targets ``T`` for head inputs ``X``
        (weights integrated; the prequential evidence adds it up before each update)."""

    def score_and_update(self, state, X: np.ndarray, T: np.ndarray, fraction: float):
        """``(log_predictive(state, X, T), update(state, X, T, fraction))`` in one call."""

    def sample(self, state, F: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One outcome drawn from the likelihood for each row of predictors ``F``."""


@runtime_checkable
class ClassifierHead(Head, Protocol):
    """A head whose targets are class labels: adds class probabilities."""

    def proba(self, state, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, K)`` for head inputs ``X`` (with bias)."""

    def proba_from_moments(self, state, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
        """Class probabilities ``(..., K)`` for Gaussian predictors with these moments (of
        :meth:`predictive` under ``state``: a head may choose its link by its state)."""


@runtime_checkable
class RegressionHead(Head, Protocol):
    """A head whose targets are real numbers: adds the predictive's degrees of freedom."""

    def dof(self, state) -> float:
        """Degrees of freedom of the Student-t predictive (``inf``: Gaussian)."""

    def noise_draws(
        self, state, n_draws: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior draws ``(S,)`` of the noise variance, and the factor by which each scales
        its head-weight draw's deviation from the mean (joint draws; ones if independent)."""

    def log_likelihood(
        self, state, F: np.ndarray, y: np.ndarray, noise: np.ndarray | None = None
    ) -> np.ndarray:
        """Pointwise log likelihood; ``noise``: one variance per draw (``F``'s first axis)."""

    def sample(
        self, state, F: np.ndarray, rng: np.random.Generator, noise: np.ndarray | None = None
    ) -> np.ndarray:
        """One outcome per predictor; ``noise`` as in :meth:`log_likelihood`."""
