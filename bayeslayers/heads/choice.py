r"""A classification head whose link is chosen by evidence in the same single pass.

:class:`Choice` keeps two readouts of the same head inputs :math:`x` (the top hidden output,
the skip features and the bias):

* the *teacher*, a :class:`~bayeslayers.heads.OneHot` head (Gaussian regression on the class
  indicators, classes by the argmax of its outputs), whose residual is what the hidden layers
  learn from (:func:`teaching`);
* the *rival*, a :class:`~bayeslayers.heads.Probit` head fitted by assumed-density filtering
  (exact moment matching of :math:`\Phi(s\,x^\top w)\,\mathcal N(w \mid \mu, \Sigma)` row by
  row, a closed-form Gaussian pseudo-observation through the conjugate core).

Both see every batch once, in the same order, and each scores the batch's labels by its
one-step-ahead predictive before it learns from them, so each accumulates its prequential log
evidence

.. math::

    L_h = \sum_i \log p_h(y_i \mid x_i, \mathcal D_{<i}), \qquad h \in \{\text{teacher},
    \text{rival}\}.

The *leader* is the readout of larger :math:`L_h` (the teacher on ties); every prediction,
class probability, weight draw and score is the leader's. The network's own prequential score
of a batch is the leader's before the batch (follow the leader, itself a prequential
forecasting system), so ``Network.log_evidence_`` stays the evidence of the predictions made.
With equal prior odds, picking the larger evidence is the Bayes choice between the two
likelihoods (indicator regression or probit) on the same features.

The body always learns from the teacher: a probit head's own Gauss-Newton targets gave no
better features (benchmarks/RESULTS.md, "The link of the class probabilities"). The hidden
layers therefore learn exactly what they learn under a plain one-hot head; only the readout
differs.

Cost: the rival has one covariance per column (``K`` columns, one for two classes) where the
teacher shares one across its columns, so for two classes it costs about one more head update
per row and for ``K`` classes about ``K``; the estimators race it by default for two classes
only (:class:`bayeslayers.sklearn.BayesLayersClassifier`, ``head="auto"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, NamedTuple

import numpy as np

from bayeslayers import conjugate
from bayeslayers.heads.gaussian import OneHot
from bayeslayers.heads.glm import Probit

__all__ = ["Choice", "ChoiceState", "teaching"]


class ChoiceState(NamedTuple):
    """State of a :class:`Choice` head.

    Attributes
    ----------
    teacher : GaussianState
        The one-hot head's state.
    rival : GLMState
        The probit head's state.
    log_evidence : ndarray of shape (2,)
        Prequential log evidence of the teacher and of the rival over the rows scored.
    """

    teacher: Any
    rival: Any
    log_evidence: np.ndarray

    @property
    def leader(self) -> int:
        """0 (the teacher) or 1 (the rival): the readout of larger evidence, 0 on ties."""
        return int(self.log_evidence[1] > self.log_evidence[0])

    @property
    def readouts(self) -> tuple[Any, Any]:
        """The teacher's and the rival's states (what the health checks look into)."""
        return self.teacher, self.rival

    @property
    def post(self) -> conjugate.WeightPosterior:
        """The leader's weight posterior (in its own parametrization)."""
        return (self.teacher, self.rival)[self.leader].post


@dataclass(frozen=True)
class Choice:
    """One-hot regression or probit readout, chosen by prequential evidence (module docstring).

    Parameters
    ----------
    covariance : str, optional
        Covariance structure of the teacher's weights (the network's default if omitted);
        the rival keeps one covariance per column where the teacher shares one.
    """

    covariance: str | None = None
    kind: ClassVar[str] = "choice"
    is_classifier: ClassVar[bool] = True
    shares_covariance: ClassVar[bool] = True  # the teacher's columns share theirs

    def __post_init__(self) -> None:
        self.teacher  # noqa: B018 -- the teacher validates the covariance

    @cached_property
    def teacher(self) -> OneHot:
        """The head the body learns from."""
        return OneHot(covariance=self.covariance)

    @cached_property
    def rival(self) -> Probit:
        """The probit readout raced against the teacher."""
        rival = None if self.covariance == "shared" else self.covariance
        return Probit(fit="adf", covariance=rival)

    def _heads(self, state: ChoiceState):
        return (self.teacher, self.rival)[state.leader], (state.teacher, state.rival)[state.leader]

    # ------------------------------------------------------------- training
    def encode(self, y: np.ndarray, n_classes: int | None = None) -> np.ndarray:
        """One-hot rows ``(n, n_classes)`` (both readouts take them)."""
        return self.teacher.encode(y, n_classes)

    def init(
        self,
        mean: np.ndarray,
        prior_variance: float,
        structure: str,
        noise: float,
        blocks: tuple[int, ...] | None = None,
    ):
        """Both readouts' priors (``blocks`` for the teacher); no evidence yet."""
        rival = "unit" if structure == "shared" else structure
        return ChoiceState(
            self.teacher.init(mean, prior_variance, structure, noise, blocks),
            self.rival.init(mean, prior_variance, rival, noise),
            np.zeros(2),
        )

    def score_and_update(
        self, state: ChoiceState, X: np.ndarray, T: np.ndarray, fraction: float
    ) -> tuple[float, ChoiceState]:
        """The leader's log predictive density of the batch, and both readouts updated, each
        with its own density added to its evidence."""
        scores = np.empty(2)
        scores[0], teacher = self.teacher.score_and_update(state.teacher, X, T, fraction)
        scores[1], rival = self.rival.score_and_update(state.rival, X, T, fraction)
        evidence = state.log_evidence + scores
        return float(scores[state.leader]), ChoiceState(teacher, rival, evidence)

    def update(self, state: ChoiceState, X: np.ndarray, T: np.ndarray, fraction: float):
        """:meth:`score_and_update`'s state: the evidence counts every row learned."""
        return self.score_and_update(state, X, T, fraction)[1]

    def flush(self, state: ChoiceState) -> ChoiceState:
        """Both readouts' pending work done (``state`` itself if there was none)."""
        teacher, rival = self.teacher.flush(state.teacher), self.rival.flush(state.rival)
        if teacher is state.teacher and rival is state.rival:
            return state
        return state._replace(teacher=teacher, rival=rival)

    def residual(self, state: ChoiceState, X, T) -> tuple[np.ndarray, np.ndarray]:
        """The teacher's residual and Jacobian (what the body learns from)."""
        return self.teacher.residual(state.teacher, X, T)

    # ----------------------------------------------------------- prediction
    def predictive(self, state: ChoiceState, X) -> tuple[np.ndarray, np.ndarray]:
        """The leader's predictor moments."""
        head, own = self._heads(state)
        return head.predictive(own, X)

    def proba(self, state: ChoiceState, X) -> np.ndarray:
        """The leader's class probabilities."""
        head, own = self._heads(state)
        return head.proba(own, X)

    def proba_from_moments(self, state: ChoiceState, mean, var) -> np.ndarray:
        """The leader's class probabilities for its predictor moments ``mean, var``."""
        head, own = self._heads(state)
        return head.proba_from_moments(own, mean, var)

    def log_predictive(self, state: ChoiceState, X: np.ndarray, T: np.ndarray) -> float:
        """The leader's log predictive density of one-hot rows ``T``."""
        head, own = self._heads(state)
        return head.log_predictive(own, X, T)

    def weight_posterior(self, state: ChoiceState) -> conjugate.WeightPosterior:
        """The leader's weight posterior (what the ArviZ export draws from)."""
        head, own = self._heads(state)
        return head.weight_posterior(own)

    def log_likelihood(self, state: ChoiceState, F: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The leader's pointwise log likelihood of classes ``y`` given its predictors ``F``."""
        head, own = self._heads(state)
        return head.log_likelihood(own, F, y)

    def sample(self, state: ChoiceState, F: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Classes drawn from the leader's likelihood."""
        head, own = self._heads(state)
        return head.sample(own, F, rng)

    def chosen(self, state: ChoiceState) -> str:
        """The leader's kind: ``"onehot"`` or ``"probit"``."""
        return self._heads(state)[0].kind


def teaching(head: Any, state: Any) -> tuple[Any, Any]:
    """The head and state the hidden layers learn from: a :class:`Choice` head's teacher,
    else the head itself."""
    if isinstance(head, Choice):
        return head.teacher, state.teacher
    return head, state
