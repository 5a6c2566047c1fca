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

    Early in a pass the body is still untrained, so its residuals overstate the noise. With
    ``noise_memory="evidence"`` (the default) several copies of :math:`(a, b)` are kept side
    by side, each forgetting old residuals with its own memory :math:`M` (in scalar
    observations: before a batch of :math:`n`, :math:`a, b \leftarrow e^{-n/M} (a, b)`),
    and each scores its own one-step-ahead predictive of every batch, the multivariate
    Student-t

    .. math::

        \log p(r) = \log\Gamma(a + \tfrac n2) - \log\Gamma(a) - \tfrac n2 \log(2\pi b)
            - \tfrac12 \log|\tilde S| - (a + \tfrac n2) \log\Big(1 + \frac{q}{2b}\Big),

    :math:`q = \sum_j r_j^\top \tilde S_j^{-1} r_j` (the :math:`\log|\tilde S|` term is
    the same for every copy). The noise in use is the average of the copies' estimates
    weighted by their accumulated (prequential) evidence, Bayesian model averaging over the
    memory: a stationary stream gives every copy about the same weight, one whose residuals
    shrink as the body learns gives the short memories the weight. The weights' posterior
    does not depend on the noise in this model, so the copies cost a few scalars per batch.
``OneHot``
    The ``Gaussian`` head regressing one-hot class indicators (the original post's MNIST
    set-up). Class probabilities are :math:`P(k = \arg\max_j f_j)` under the independent
    Gaussian predictive of the outputs (:func:`bayeslayers.heads.argmax.argmax_log_proba`).

    The regression noise of the indicators is not the noise that calibrates those
    probabilities: indicator residuals are bounded and heteroscedastic (small where a class
    is clear, large near a boundary), so a single Gaussian noise learned from them makes a
    misclassified row's probability far too small (imbalanced classes: a few rows at
    :math:`P \approx 10^{-7}`). With ``temperature="evidence"`` (the default) the class
    probabilities use the predictive variance :math:`\tau v` instead of :math:`v`, and
    :math:`\tau` is chosen by the prequential evidence of the class labels themselves,
    computed on the grid :data:`TEMPERATURES` and refined between its octaves
    (:func:`refined_temperature`): before each batch updates the head, every row's
    one-step-ahead class probability is scored at every :math:`\tau`, and after :math:`N`
    rows

    .. math::

        L(\tau) = \sum_{i \le N} \Big(\frac{i}{N}\Big)^2
            \log P_\tau(k_i = \arg\max_j f_j \mid \text{rows before } i).

    The weights :math:`(i / N)^2` discount the predictions of the still-untrained start of
    the pass, whose calibration is not the final network's (scored evenly, a 500-feature
    task picked :math:`\tau = 4` where 1 was best on held-out rows; benchmarks/RESULTS.md);
    they need no time scale, being a power of the position in the stream. The temperature
    in use is 1, the regression noise itself, unless the grid's best beats it by a
    log Bayes factor above :data:`bayeslayers.evidence.STRONG`, as the hidden layers'
    memory does. The scores are of predictions made before each label was seen, held out by
    construction. The first :data:`SCORE_ALL` rows of a stream are all scored; after them the
    sum is estimated from a systematic sample, one row in :data:`SCORE_STRIDE`, each sampled
    row standing for that many (scoring costs a quadrature per temperature and row, as much
    as a cheap network's training step). The moments of :data:`SCORE_ROWS` sampled rows are
    held and scored together (one vectorized quadrature instead of one per row).
    :math:`\tau` scales the head's noise and weight variance alike (both are relative to
    :math:`\sigma^2` in this model); the regression update, and so the body's training, is
    unchanged.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from bayeslayers import _kernels, conjugate
from bayeslayers.evidence import STRONG, block_mackay_prior, mackay_prior
from bayeslayers.heads.argmax import argmax_log_proba, argmax_probabilities

__all__ = [
    "EVIDENCE_START",
    "NOISE_MEMORIES",
    "SCORE_ALL",
    "SCORE_ROWS",
    "SCORE_STRIDE",
    "TEMPERATURES",
    "Calibration",
    "Gaussian",
    "GaussianState",
    "OneHot",
    "refined_temperature",
    "score_pending",
    "student_t_log_density",
    "temperature_scores",
]

#: Memories (scalar observations) of the noise statistics compared by evidence: a geometric
#: grid from "keep everything" down to a short window.
NOISE_MEMORIES = (math.inf, 4096.0, 1024.0, 256.0, 64.0)
#: Temperatures of the one-hot head's class probabilities compared by evidence: factors on
#: the outputs' predictive variance, octaves from 1/8 to 8.
TEMPERATURES = 2.0 ** np.arange(-3, 4)
#: One-step-ahead predictions held until they are scored together.
SCORE_ROWS = 64
#: Rows of a stream scored one by one for the temperature's evidence; after them, one in
#: :data:`SCORE_STRIDE` (a systematic sample, each sampled row standing for that many).
SCORE_ALL = 256
SCORE_STRIDE = 4
# Rows per vectorized scoring call (bounds its temporaries for a huge batch).
_SCORE_BLOCK = 4096
_UNIT = int(np.flatnonzero(TEMPERATURES == 1.0)[0])


class Calibration(NamedTuple):
    """The one-hot head's evidence for the temperature of its class probabilities.

    Attributes
    ----------
    evidence : ndarray of shape (len(TEMPERATURES),)
        Per temperature, the weighted sum of the scored rows' one-step-ahead log class
        probabilities (module docstring).
    scored : float
        Rows of the stream the scored ones stand for (their weights summed).
    mean, var : ndarray of shape (SCORE_ROWS, K)
        One-step-ahead predictive moments of the rows not yet scored (the first
        ``n_pending``), at temperature 1.
    label : ndarray of shape (SCORE_ROWS,)
        Their classes.
    weight : ndarray of shape (SCORE_ROWS,)
        Rows of the stream each stands for (1, or :data:`SCORE_STRIDE` in the sample).
    n_pending : int
        Rows waiting to be scored.
    offered : int
        Rows the head was updated on (the position of the next one in the stream).
    """

    evidence: np.ndarray
    scored: float
    mean: np.ndarray
    var: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    n_pending: int
    offered: int = 0


class GaussianState(NamedTuple):
    """Posterior of a Gaussian head.

    Attributes
    ----------
    post : WeightPosterior
        Weight posterior (covariance relative to :math:`\\sigma^2` when the noise is learned).
    a, b : float
        Inverse-Gamma shape and scale of the noise variance in use; ``b / a`` is always the
        noise variance in use (with a fixed noise ``a = 1``).
    memory : ndarray of shape (len(NOISE_MEMORIES), 3) or (0, 3)
        With ``noise_memory="evidence"``: per candidate memory its ``a``, ``b`` and
        accumulated log evidence; empty otherwise.
    alpha : float or ndarray of shape (k,)
        Prior precision of the weights in use (relative to the noise where it is learned);
        one per block of rows with ``blocks``; NaN if the state predates the field.
    seen : float
        Tempered rows seen (schedules the evidence updates of ``alpha``).
    calibration : Calibration or None
        The one-hot head's temperature evidence (``temperature="evidence"``); ``None``
        otherwise, and in states that predate the field (temperature 1).
    blocks : ndarray of shape (k,)
        Rows per block of the weights, each with its own evidence prior precision
        (:func:`bayeslayers.evidence.block_mackay_prior`); empty: one precision for every
        row (:func:`bayeslayers.evidence.mackay_prior`).
    """

    post: conjugate.WeightPosterior
    a: float
    b: float
    memory: np.ndarray = np.zeros((0, 3))
    alpha: float | np.ndarray = float("nan")
    seen: float = 0.0
    calibration: Calibration | None = None
    blocks: np.ndarray = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Gaussian:
    """Linear output layer with Gaussian observation noise (regression).

    Parameters
    ----------
    learn_noise : bool, optional
        Learn the noise variance with the conjugate Normal-Inverse-Gamma extension. The
        network's ``noise`` is then the prior guess (1 if unset), held with
        ``noise_strength`` pseudo observations, and ``prior_precision`` is relative to the
        noise. Omitted: learned unless the network's ``noise`` is set (``Network`` resolves
        it when built).
    noise_strength : float
        Prior weight (in observations) of the noise guess when ``learn_noise`` is set: the
        Inverse-Gamma prior has shape ``noise_strength / 2``. The default, a tenth of an
        observation, lets the first residuals decide: the guess is the whole variance of a
        standardized target, far above the noise of a well-predicted one.
    covariance : str, optional
        Covariance structure of the head's weights; the network's default if omitted.
    noise_memory : {"evidence", None}
        With a learned noise: ``"evidence"`` picks the memory of the noise statistics by
        prequential evidence among :data:`NOISE_MEMORIES` (see the module docstring);
        ``None`` keeps every residual (plain Normal-Inverse-Gamma).
    prior_evidence : bool
        With a learned noise: re-estimate the weights' prior precision by type-II maximum
        likelihood (:func:`bayeslayers.evidence.mackay_prior`) each time the rows seen
        double, from as many rows as the head has inputs (at least :data:`EVIDENCE_START`);
        the network's ``prior_precision`` is the starting value. Where the network hands
        :meth:`init` the blocks of the head's inputs (``Network(head_prior="evidence")``: the
        top hidden output, the skip inputs, the bias), one precision per block
        (:func:`bayeslayers.evidence.block_mackay_prior`), from :data:`EVIDENCE_START` rows
        on whatever the width: each block's precision has its own hyperprior and trust
        region, and waiting for as many rows as a wide head has inputs left a 301-input head
        on 450 rows at its starting prior (benchmarks/RESULTS.md, "Thirteenth round").
    """

    learn_noise: bool | None = None
    noise_strength: float = 0.1
    covariance: str | None = None
    noise_memory: str | None = "evidence"
    prior_evidence: bool = True

    kind: ClassVar[str] = "gaussian"
    is_classifier: ClassVar[bool] = False
    shares_covariance: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not self.noise_strength > 0:
            raise ValueError(f"noise_strength must be > 0, got {self.noise_strength}")
        if self.covariance is not None and self.covariance not in conjugate.STRUCTURES:
            raise ValueError(
                f"covariance must be one of {conjugate.STRUCTURES} or None, got {self.covariance!r}"
            )
        if self.noise_memory not in ("evidence", None):
            raise ValueError(f"noise_memory must be 'evidence' or None, got {self.noise_memory!r}")

    def encode(self, y: np.ndarray, n_classes: int | None = None) -> np.ndarray:
        return y.reshape(len(y), -1)

    def init(self, mean, prior_variance, structure, noise, blocks=None) -> GaussianState:
        """Prior state; with ``blocks`` (rows per block of the weights, from the first row)
        and the evidence prior, one prior precision per block."""
        a = self.noise_strength / 2 if self.learn_noise else 1.0
        post = conjugate.init(structure, mean, prior_variance)
        alpha: float | np.ndarray = 1.0 / float(np.max(prior_variance))
        sizes = GaussianState._field_defaults["blocks"]
        if blocks is not None and self.prior_evidence and self.learn_noise:
            sizes = np.asarray(blocks, dtype=np.int64)
            alpha = np.full(len(sizes), alpha)
        memory = GaussianState._field_defaults["memory"]
        if self.learn_noise and self.noise_memory == "evidence":
            memory = np.tile([a, a * noise, 0.0], (len(NOISE_MEMORIES), 1))
        return GaussianState(post, a, a * noise, memory, alpha, blocks=sizes)

    def noise_variance(self, state: GaussianState) -> float:
        """Current noise variance estimate :math:`b / a`."""
        return state.b / state.a

    def score_and_update(self, state: GaussianState, X, T, fraction):
        """The batch's log predictive density under ``state``, and the updated state."""
        return self.log_predictive(state, X, T), self.update(state, X, T, fraction)

    def update(self, state: GaussianState, X, T, fraction) -> GaussianState:
        if self.learn_noise:
            post, info = conjugate.update(state.post, X, T, noise=1.0, fraction=fraction)
            seen = state.seen + fraction * len(X)
            if not len(state.memory):
                a, b, memory = state.a + info.n_obs / 2, state.b + info.quad / 2, state.memory
            else:
                memory, a, b = _kernels.noise_memories(
                    state.memory, _decays(info.n_obs), info.n_obs, info.quad
                )
            new = GaussianState(
                post, float(a), float(b), memory, state.alpha, seen, None, state.blocks
            )
            first = EVIDENCE_START if len(state.blocks) else max(EVIDENCE_START, X.shape[1])
            if seen >= first and math.floor(math.log2(seen)) > math.floor(
                math.log2(max(state.seen, 1))
            ):
                new = self._evidence_prior(new)
            return new
        post, _ = conjugate.update(
            state.post, X, T, noise=self.noise_variance(state), fraction=fraction
        )
        return state._replace(post=post, seen=state.seen + fraction * len(X))

    def residual(self, state: GaussianState, X, T) -> tuple[np.ndarray, np.ndarray]:
        W = state.post.mean
        return T - X @ W, W[:-1]

    def dof(self, state: GaussianState) -> float:
        r"""Degrees of freedom :math:`\nu = 2a` of the Student-t predictive (``inf`` when the
        noise is fixed): with a learned noise the predictive of a new target is
        :math:`t_\nu(m, \hat\sigma^2 (1 + x^\top \tilde\Sigma x))`."""
        return 2.0 * state.a if self.learn_noise else float("inf")

    def predictive(self, state: GaussianState, X) -> tuple[np.ndarray, np.ndarray]:
        r"""Mean and squared scale ``(n, k)`` of the predictive (the variance for a fixed noise;
        see :meth:`dof`)."""
        mean, var = self._moments(state, X)
        return mean, var * self._scale(state)

    def _moments(self, state: GaussianState, X) -> tuple[np.ndarray, np.ndarray]:
        """The predictive's mean and squared scale before :meth:`_scale`."""
        mean = X @ state.post.mean
        var = conjugate.marginal_variance(state.post, X)
        s2 = self.noise_variance(state)
        return mean, (var * s2 if self.learn_noise else var) + s2

    def _scale(self, state: GaussianState) -> float:
        """Factor on every predictive variance (the noise's and the weights'): 1 here."""
        return 1.0

    def noise_from_memory(self, state: GaussianState) -> GaussianState:
        """``state`` with the noise in use recomputed from its memories (the evidence-weighted
        average, as after every update); unchanged without memories."""
        if not len(state.memory):
            return state
        _, a, b = _kernels.noise_memories(state.memory, _NO_DECAY, 0.0, 0.0)
        return state._replace(a=float(a), b=float(b))

    def _evidence_prior(self, state: GaussianState) -> GaussianState:
        """``state`` re-based on the evidence-maximizing prior precision (if enabled)."""
        if not (self.prior_evidence and self.learn_noise and np.all(np.isfinite(state.alpha))):
            return state
        noise = self.noise_variance(state)
        if len(state.blocks):
            alpha = np.asarray(state.alpha, dtype=np.float64)
            post, alphas = block_mackay_prior(state.post, alpha, state.blocks, noise)
            return state._replace(post=post, alpha=alphas)
        post, scalar = mackay_prior(state.post, float(state.alpha), noise)
        return state._replace(post=post, alpha=scalar)

    def flush(self, state: GaussianState) -> GaussianState:
        """Nothing is pending in a conjugate head: ``state`` unchanged (so a stream of
        ``partial_fit`` calls ends where ``fit`` does)."""
        return state

    def weight_posterior(self, state: GaussianState) -> conjugate.WeightPosterior:
        """The weight posterior on the scale of the weights.

        With a learned noise the covariance is carried relative to :math:`b / a`; it is
        scaled back here (a Gaussian draw is then the plug-in approximation of the
        Normal-Inverse-Gamma marginal).
        """
        post, scale = state.post, self._scale(state)
        if self.learn_noise:
            scale *= self.noise_variance(state)
        return post if scale == 1.0 else post._replace(cov=post.cov * scale)

    def log_predictive(self, state: GaussianState, X: np.ndarray, T: np.ndarray) -> float:
        r""":math:`\sum_{ij} \log t_\nu(t_{ij} \mid m_{ij}, s_{ij})`, Gaussian for a fixed noise.

        With :math:`z = (t - m) / s`, the Student-t log density is
        :math:`\log\Gamma(\frac{\nu+1}{2}) - \log\Gamma(\frac\nu2)
        - \frac12 \log(\nu\pi s^2) - \frac{\nu+1}{2} \log(1 + z^2/\nu)`.
        """
        mean, scale2 = self.predictive(state, X)
        return float(np.sum(student_t_log_density(T, mean, scale2, self.dof(state))))

    def noise_draws(
        self, state: GaussianState, n_draws: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        r"""Joint posterior draws of the noise: variances and the head weights' scale, ``(S,)``.

        With a learned noise the posterior is Normal-Inverse-Gamma,
        :math:`\sigma^2 \sim \mathrm{IG}(a, b)`, :math:`w \mid \sigma^2 \sim N(m, \sigma^2
        \tilde\Sigma)`; :meth:`weight_posterior` draws :math:`w` at :math:`\hat\sigma^2 = b / a`,
        so a joint draw scales that draw's deviation from :math:`m` by
        :math:`\sqrt{\sigma_s^2 / \hat\sigma^2}` (the second array). Predictors from such draws,
        plus noise of variance :math:`\sigma_s^2`, have the Student-t predictive of
        :meth:`dof`. A fixed noise gives constant variances and unit scales.
        """
        scale = self._scale(state)
        s2 = self.noise_variance(state) * scale
        if not self.learn_noise:
            return np.full(n_draws, s2), np.ones(n_draws)
        draws = scale * state.b / rng.gamma(state.a, 1.0, n_draws)
        return draws, np.sqrt(draws / s2)

    def _noise_sd(self, state: GaussianState, noise: np.ndarray | None, F: np.ndarray):
        """The noise sd: the point estimate, or one per draw along ``F``'s first axis."""
        if noise is None:
            return np.sqrt(self.noise_variance(state) * self._scale(state))
        return np.sqrt(np.asarray(noise)).reshape(-1, *([1] * (F.ndim - 1)))

    def log_likelihood(
        self, state: GaussianState, F: np.ndarray, y: np.ndarray, noise: np.ndarray | None = None
    ) -> np.ndarray:
        r"""Pointwise :math:`\log N(y \mid f, \sigma^2)`, summed over outputs: ``F.shape[:-1]``.

        ``F`` ``(..., n, k)`` are linear predictors for drawn weights, ``y`` ``(n, k)`` targets;
        ``noise``, optional, one noise variance per draw (``F``'s first axis, as from
        :meth:`noise_draws`), else the point estimate.
        """
        sd = self._noise_sd(state, noise, F)
        z = (y - F) / sd
        return (-0.5 * (np.log(2 * np.pi) + z**2) - np.log(sd)).sum(axis=-1)

    def sample(
        self,
        state: GaussianState,
        F: np.ndarray,
        rng: np.random.Generator,
        noise: np.ndarray | None = None,
    ) -> np.ndarray:
        """One outcome per predictor: ``F + sigma * noise`` (``noise`` as in log_likelihood)."""
        return F + self._noise_sd(state, noise, F) * rng.standard_normal(F.shape)


#: Rows seen before the head's first evidence update of its prior precision (the update
#: then follows every doubling of the rows seen).
EVIDENCE_START = 32


@functools.lru_cache(maxsize=16)
def _decays(n: float) -> np.ndarray:
    """:math:`e^{-n / M}` per memory (one batch size is met again and again); read-only."""
    decays = np.exp(-n / np.array(NOISE_MEMORIES))
    decays.flags.writeable = False
    return decays


_NO_DECAY = np.ones(len(NOISE_MEMORIES))
_NO_DECAY.flags.writeable = False


@dataclass(frozen=True)
class OneHot(Gaussian):
    """Gaussian head on one-hot class indicators: classification by regression.

    The noise variance is learned by default (``learn_noise=True``): the residual variance of
    one-hot regression is far below the default ``noise=1``, and a fixed unit noise makes the
    class probabilities nearly uniform at the same accuracy (benchmarks/RESULTS.md).

    Parameters
    ----------
    temperature : {"evidence", None}
        ``"evidence"``: the class probabilities' temperature is chosen among
        :data:`TEMPERATURES` by the prequential evidence of the labels (module docstring);
        ``None``: temperature 1, the regression noise itself. The other parameters are
        :class:`Gaussian`'s.
    """

    learn_noise: bool = True
    temperature: str | None = "evidence"
    kind: ClassVar[str] = "onehot"
    is_classifier: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.temperature not in ("evidence", None):
            raise ValueError(f"temperature must be 'evidence' or None, got {self.temperature!r}")

    def init(self, mean, prior_variance, structure, noise, blocks=None) -> GaussianState:
        state = super().init(mean, prior_variance, structure, noise, blocks)
        if self.temperature is None:
            return state
        k = mean.shape[1]
        calibration = Calibration(
            np.zeros(len(TEMPERATURES)),
            0.0,
            np.zeros((SCORE_ROWS, k), dtype=mean.dtype),
            np.ones((SCORE_ROWS, k), dtype=mean.dtype),
            np.zeros(SCORE_ROWS, dtype=np.int64),
            np.zeros(SCORE_ROWS),
            0,
        )
        return state._replace(calibration=calibration)

    def update(self, state: GaussianState, X, T, fraction) -> GaussianState:
        """The regression update of :class:`Gaussian`; first, with a temperature by evidence,
        the one-step-ahead moments of the batch's sampled rows join the rows to be scored."""
        return self._calibrated_update(state, X, T, fraction, None)

    def score_and_update(self, state: GaussianState, X, T, fraction):
        """:meth:`log_predictive` and :meth:`update` from one computation of the batch's
        one-step-ahead moments (the calibration records the same moments)."""
        moments = self._moments(state, X)
        score = self._label_log_density(state, moments, T)
        return score, self._calibrated_update(state, X, T, fraction, moments)

    def _calibrated_update(
        self, state: GaussianState, X, T, fraction, moments: tuple[np.ndarray, np.ndarray] | None
    ) -> GaussianState:
        """:meth:`update`, given the batch's moments under ``state`` if already computed."""
        new = super().update(state, X, T, fraction)
        cal = state.calibration
        if cal is None:
            return new
        pick, weight = _sampled(int(cal.offered), len(X))
        cal = cal._replace(offered=cal.offered + len(X))
        if len(pick):
            if moments is None:
                mean, var = self._moments(state, X[pick])
            else:
                mean, var = moments[0][pick], moments[1][pick]
            cal = _record(cal, mean, var, np.argmax(T[pick], 1), weight)
        return new._replace(calibration=cal)

    def flush(self, state: GaussianState) -> GaussianState:
        """``state`` with the rows waiting to be scored scored (:func:`score_pending`)."""
        if state.calibration is None or not state.calibration.n_pending:
            return state
        return state._replace(calibration=score_pending(state.calibration))

    def temperature_of(self, state: GaussianState) -> float:
        """The temperature in use: the one of highest evidence (:func:`refined_temperature`)
        if the best on the grid beats 1 by more than :data:`~bayeslayers.evidence.STRONG`
        nats, else 1 (and 1 without calibration)."""
        if state.calibration is None:
            return 1.0
        evidence = state.calibration.evidence
        if evidence.max() - evidence[_UNIT] > STRONG:
            return refined_temperature(evidence)
        return 1.0

    def _scale(self, state: GaussianState) -> float:
        return self.temperature_of(state)

    def encode(self, y: np.ndarray, n_classes: int | None = None) -> np.ndarray:
        if n_classes is None:
            raise ValueError(f"n_classes is required for a {self.kind} head")
        return np.eye(n_classes)[y]

    def proba(self, state: GaussianState, X) -> np.ndarray:
        """Class probabilities for head inputs ``X`` (with bias)."""
        return self.proba_from_moments(state, *self.predictive(state, X))

    def proba_from_moments(self, state: GaussianState, mean: np.ndarray, var) -> np.ndarray:
        """Class probabilities for independent Gaussian outputs :math:`N(m, v)`."""
        return argmax_probabilities(mean, var)

    def log_predictive(self, state: GaussianState, X: np.ndarray, T: np.ndarray) -> float:
        r""":math:`\sum_i \log P(k_i = \arg\max_j f_j)` for one-hot rows ``T``: the
        quadrature for the observed class only (:func:`argmax_log_proba`)."""
        return self._label_log_density(state, self._moments(state, X), T)

    def _label_log_density(
        self, state: GaussianState, moments: tuple[np.ndarray, np.ndarray], T: np.ndarray
    ) -> float:
        """:meth:`log_predictive` from the batch's moments before :meth:`_scale`."""
        mean, var = moments
        return float(argmax_log_proba(mean, var * self._scale(state), np.argmax(T, axis=1)).sum())

    def log_likelihood(
        self, state: GaussianState, F: np.ndarray, y: np.ndarray, noise: np.ndarray | None = None
    ) -> np.ndarray:
        """:math:`\\log P(y = \\arg\\max_j (f_j + \\varepsilon_j))`, noise of variance ``b / a``.

        ``F`` ``(..., n, K)`` are the outputs for drawn weights, ``y`` ``(n,)`` class indices;
        ``noise`` as in :meth:`Gaussian.log_likelihood`.
        """
        return argmax_log_proba(F, self._noise_sd(state, noise, F) ** 2, y)

    def sample(
        self,
        state: GaussianState,
        F: np.ndarray,
        rng: np.random.Generator,
        noise: np.ndarray | None = None,
    ) -> np.ndarray:
        """One class index per row: the argmax of the outputs plus noise."""
        return np.argmax(super().sample(state, F, rng, noise), axis=-1)


def student_t_log_density(
    T: np.ndarray, mean: np.ndarray, scale2: np.ndarray, nu: float
) -> np.ndarray:
    r""":math:`\log t_\nu(t \mid m, s^2)` elementwise, Gaussian for :math:`\nu = \infty`: with
    :math:`z = (t - m) / s`, :math:`\log\Gamma(\frac{\nu+1}{2}) - \log\Gamma(\frac\nu2)
    - \frac12 \log(\nu\pi s^2) - \frac{\nu+1}{2} \log(1 + z^2/\nu)`."""
    z2 = (T - mean) ** 2 / scale2
    if nu == np.inf:
        return -0.5 * (np.log(2 * np.pi * scale2) + z2)
    const = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
    return const - 0.5 * np.log(scale2) - (nu + 1) / 2 * np.log1p(z2 / nu)


def _sampled(offered: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a batch of ``n`` after ``offered`` rows of the stream that join the
    temperature's scoring (every row of the first :data:`SCORE_ALL`, then one in
    :data:`SCORE_STRIDE`), and the rows of the stream each stands for."""
    if n == 1:  # the common batch, without array arithmetic
        if offered < SCORE_ALL:
            return _FIRST, _WEIGHT_ONE
        if (offered - SCORE_ALL) % SCORE_STRIDE == 0:
            return _FIRST, _WEIGHT_STRIDE
        return _NO_ROWS, _NO_WEIGHTS
    index = offered + np.arange(n)
    later = index >= SCORE_ALL
    pick = np.flatnonzero(~later | ((index - SCORE_ALL) % SCORE_STRIDE == 0))
    return pick, np.where(later[pick], float(SCORE_STRIDE), 1.0)


_FIRST, _NO_ROWS = np.zeros(1, dtype=np.intp), np.zeros(0, dtype=np.intp)
_WEIGHT_ONE, _WEIGHT_STRIDE = np.ones(1), np.full(1, float(SCORE_STRIDE))
_NO_WEIGHTS = np.zeros(0)
for _array in (_FIRST, _NO_ROWS, _WEIGHT_ONE, _WEIGHT_STRIDE, _NO_WEIGHTS):
    _array.flags.writeable = False


def _record(
    cal: Calibration, mean: np.ndarray, var: np.ndarray, label: np.ndarray, weight: np.ndarray
) -> Calibration:
    """``cal`` with a batch's one-step-ahead moments (and each row's weight) added: held while
    they fit in the :data:`SCORE_ROWS` slots, else scored at once together with the held ones
    (new arrays; ``cal`` is not changed)."""
    given = (mean, var, label, weight)
    n, held = len(mean), cal.n_pending
    if held + n < SCORE_ROWS:
        out = (cal.mean.copy(), cal.var.copy(), cal.label.copy(), cal.weight.copy())
        for slots, rows in zip(out, given, strict=True):
            slots[held : held + n] = rows
        return Calibration(cal.evidence, cal.scored, *out, held + n, cal.offered)
    old = (cal.mean, cal.var, cal.label, cal.weight)
    return _scored(cal, *(np.concatenate([a[:held], b]) for a, b in zip(old, given, strict=True)))


def score_pending(cal: Calibration) -> Calibration:
    """``cal`` with its held rows scored at every temperature (none held: ``cal`` itself)."""
    held = cal.n_pending
    if not held:
        return cal
    return _scored(cal, cal.mean[:held], cal.var[:held], cal.label[:held], cal.weight[:held])


def _scored(
    cal: Calibration, mean: np.ndarray, var: np.ndarray, label: np.ndarray, weight: np.ndarray
) -> Calibration:
    r"""``cal`` after scoring rows that stand for :math:`w_i` rows of the stream each:
    :math:`L \leftarrow (N / (N + \sum w))^2 L + \sum_i w_i \log P_\tau(k_i)`, nothing
    held (the latest rows count fully, each earlier one by the square of its share of the
    stream, as in the module docstring)."""
    total = cal.scored + float(np.sum(weight))
    decay = (cal.scored / total) ** 2
    evidence = decay * cal.evidence + _log_proba_grid(mean, var, label, weight)
    return cal._replace(evidence=evidence, scored=total, n_pending=0)


def refined_temperature(evidence: np.ndarray) -> float:
    r"""The temperature of highest evidence, refined between the octaves of the grid.

    With :math:`\ell_j` the evidence at :math:`\log_2 \tau_j` (one octave apart) and
    :math:`b` the grid's best, the vertex of the parabola through :math:`b - 1, b, b + 1`,

    .. math::

        \tau = \tau_b \, 2^{\delta}, \qquad
        \delta = \frac{\ell_{b-1} - \ell_{b+1}}{2 (\ell_{b-1} - 2 \ell_b + \ell_{b+1})}
        \in [-\tfrac12, \tfrac12],

    exact where the evidence is quadratic in :math:`\log \tau` (as a smooth log-likelihood is
    near its maximum), and within half an octave of the grid's best in any case (:math:`\ell_b`
    is the largest of the three). At either end of the grid, or where rounding leaves the
    three level, :math:`\tau_b` itself.

    Parameters
    ----------
    evidence : ndarray of shape (len(TEMPERATURES),)
        :attr:`Calibration.evidence`.
    """
    best = int(np.argmax(evidence))
    if best == 0 or best == len(evidence) - 1:
        return float(TEMPERATURES[best])
    left, mid, right = evidence[best - 1 : best + 2]
    curvature = left - 2.0 * mid + right
    if curvature >= 0.0:  # left < mid by the arg max: level only by rounding
        return float(TEMPERATURES[best])
    return float(TEMPERATURES[best] * 2.0 ** ((left - right) / (2.0 * curvature)))


def temperature_scores(mean: np.ndarray, var: np.ndarray, label: np.ndarray) -> np.ndarray:
    r""":math:`\log P_\tau(k_i = \arg\max_j f_j)` for every :math:`\tau` in
    :data:`TEMPERATURES` and row :math:`i`, ``(len(TEMPERATURES), n)``: the outputs
    :math:`f_i \sim N(m_i, \tau v_i)`, one quadrature call over every (temperature, row) pair.
    """
    G, (n, K) = len(TEMPERATURES), mean.shape
    scaled = (TEMPERATURES[:, None, None] * var).reshape(G * n, K)
    return argmax_log_proba(np.tile(mean, (G, 1)), scaled, np.tile(label, G)).reshape(G, n)


def _log_proba_grid(
    mean: np.ndarray, var: np.ndarray, label: np.ndarray, weight: np.ndarray
) -> np.ndarray:
    r""":math:`\sum_i w_i \log P_\tau(k_i)` for every :math:`\tau` in :data:`TEMPERATURES`,
    ``(len(TEMPERATURES),)``: :func:`temperature_scores` per block of rows (bounded memory)."""
    total = np.zeros(len(TEMPERATURES))
    for start in range(0, len(mean), _SCORE_BLOCK):
        block = slice(start, start + _SCORE_BLOCK)
        total += temperature_scores(mean[block], var[block], label[block]) @ weight[block]
    return total
