r"""The ``Network`` shell: validation, atomic fit / partial_fit, predictions.

The training step is :mod:`bayeslayers.engine`'s, the pass over the data
:mod:`bayeslayers.training`'s, the predictive distributions :mod:`bayeslayers.predictive`'s;
this module binds them to the parameters a user sets. A pass works on a private copy of the
state, assigned only at its end, so an exception anywhere leaves the network as it was.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import time
from collections.abc import Callable, Sequence

import numpy as np

from bayeslayers import (
    averaging,
    defaults,
    engine,
    forgetting,
    health,
    predictive,
    training,
)
from bayeslayers._atomic import unchanged_on_error
from bayeslayers._threads import blas_threads, one_at_a_time
from bayeslayers._validation import (
    check_batch_size,
    check_classes,
    check_count,
    check_features,
    check_labels,
    check_real,
    check_targets,
)
from bayeslayers.heads import Gaussian
from bayeslayers.heads.choice import teaching
from bayeslayers.layers import Layer
from bayeslayers.training import FitProgress

__all__ = ["FitProgress", "Network"]


class Network(predictive.PredictiveMixin):
    r"""A feed-forward network trained by layer-wise conjugate Bayesian updates.

    Parameters
    ----------
    layers : sequence of Layer
        Hidden layers, input side first (e.g. ``[layers.ReLU(100)]``). Empty: plain Bayesian
        linear regression (or classification) on the inputs.
    head : Head, optional
        Output layer; ``heads.Gaussian()`` (regression) by default.
    covariance : {"auto", "unit", "shared", "diag"}
        Covariance structure of every layer's weight posterior; ``"auto"`` picks it from each
        layer's width (:func:`bayeslayers.defaults.structure`) and the head's from its kind
        and number of outputs (:func:`bayeslayers.defaults.head_structure`).
    prior_precision : float
        Prior precision of every weight (prior variance ``1 / prior_precision``).
    noise : float, optional
        Observation noise variance :math:`\sigma^2` of the head, fixed. Omitted (the default):
        learned by the head (Normal-Inverse-Gamma), starting from 1.
    hidden_noise : float, optional
        Noise variance of the hidden layers' pseudo-observations; omitted: the label-free
        rule :func:`bayeslayers.defaults.hidden_noise` (learned per layer under a regression
        head). A layer's own ``noise`` overrides it.
    damping : float
        :math:`\lambda` of the target solve; 0 gives the original post's pseudo-inverse.
    clip : float, optional
        Clip on every entry of a target correction.
    targets : {"gauss_newton", "min_norm", "ekf"}
        The backward step that gives each hidden layer its target (a key of
        :data:`bayeslayers.propagation.TARGETS`, whose docstrings have the math and cost).
        ``"gauss_newton"`` equals the original post's ``"min_norm"`` with one hidden layer.
    bias_spread : float
        Standard deviation of the hidden biases' prior mean. Zero biases make every ReLU kink
        pass through the origin, which hurts low-dimensional inputs.
    init : {"samples", "he"}
        Prior mean of the first hidden layer. ``"samples"``: centred, rescaled input rows of
        the first call (inputs only, never labels; :func:`bayeslayers.engine.sample_prior_mean`),
        because one pass moves a random first layer too little. ``"he"``: random He-scaled
        weights that do not look at the data (a stream of ``partial_fit`` calls then equals
        one ``fit``). Deeper layers always use ``"he"``.
    sweeps : int or "auto"
        Backward passes of the hidden layers per batch, each tempered by ``1 / sweeps`` and
        relinearized at the new means (an iterated extended Kalman filter step); the head is
        updated once per batch, so a linear model's posterior is the same for every value.
        ``"auto"``: 2 on batches of several rows, 1 on single rows
        (:func:`bayeslayers.defaults.sweeps`).
    memory : float, "evidence" or None
        Memory of the hidden layers' posteriors, in rows per weight: between batches they
        forget toward the prior with a memory of ``memory * (fan_in + 1)`` rows
        (:mod:`bayeslayers.forgetting`), so that they keep following targets made by layers
        that keep learning. ``None`` (the default): nothing is forgotten. ``"evidence"``: the
        first call from the prior races the candidate memories on its first rows and keeps
        the one with the largest prequential evidence (``memory_``; a network set up by
        :meth:`initialize` keeps none).
    skip : {"auto", True, False}
        A linear skip connection into the head ("wide & deep"): the head's inputs are
        :math:`[h_L, x, 1]` (the top hidden output, the network's inputs, the bias) instead
        of :math:`[h_L, 1]`, so that :math:`f(x) = W_h^\top h_L(x) + W_x^\top x + b`. The
        head's conjugate update and its evidence prior cover :math:`W_h`, :math:`W_x` and
        :math:`b` as one Bayesian linear regression; the hidden layers get their targets
        through :math:`W_h` only, so they learn what the linear part leaves. ``"auto"``: on
        when the inputs fit the head's per-unit budget (:func:`bayeslayers.defaults.skip`:
        ``n_features + 1 <= AUTO_UNIT_MAX``). A network without hidden layers has nothing to
        skip.
    average : {"evidence", True, False}
        Iterate averaging of the hidden layers' means (:mod:`bayeslayers.averaging`): every
        pass keeps the average of the trajectory of means, each batch weighted by the square
        of its place in the stream, with its prequential evidence against the posterior
        means. ``"evidence"``: predictions use the averaged means once their evidence beats
        the posterior means' by :data:`bayeslayers.evidence.STRONG` nats; ``True``: always;
        ``False``: no average is kept. Training always continues from the posterior.
    hidden_scale : "evidence" or float
        Factor :math:`\tau` on the hidden layers' weight variance in the linearized
        regression predictive (``hidden="linearized"``, :mod:`bayeslayers.predictive`;
        ``"sample"`` draws the posteriors as they are). ``"evidence"``:
        chosen in every pass by the prequential evidence of the targets
        (:mod:`bayeslayers.hidden_scale`); a number ``>= 0``: that factor (1: the posteriors
        as they are, 0: the hidden means only). Training never reads it; classification
        heads ignore it.
    head_prior : {"flat", "fan_in", "evidence"}
        The head's prior on the weights of the top hidden output. ``"flat"`` (the default):
        variance :math:`1 / \alpha` like every other weight, so the prior variance of
        :math:`W_h^\top h_L` grows with the width :math:`H`. ``"fan_in"``: variance
        :math:`1 / (\alpha H)` (Neal 1996), the prior of a network of any width on the same
        scale; the skip rows and the bias keep :math:`1 / \alpha`
        (:func:`bayeslayers.engine.top_scale`). ``"evidence"``: a first call from the prior with
        no more rows than the head has inputs races the two over all its rows and keeps the
        one of larger prequential evidence (``head_prior_``; the flat one on ties); on more
        rows, or on a network set up by :meth:`initialize`, the prior is flat
        (:func:`bayeslayers.training.prior_race_rows`). With ``"evidence"`` the head's
        evidence prior (a Gaussian head's ``prior_evidence``) also has one precision per
        block of the head's inputs, the top hidden output, the skip inputs and the bias
        (:func:`bayeslayers.evidence.block_mackay_prior`), so the evidence can shrink the
        hidden part where the data are nearly linear, or the linear part where they are not.
    seed : int
        Seeds the prior mean, shuffling and posterior sampling.
    dtype : {"float64", "float32"}
        Floating point type of all parameters.
    blas_threads : int or None
        BLAS threads while training (one is fastest for a step's many small calls); ``None``
        keeps the BLAS library's setting. Prediction always runs with the library's setting.

    Attributes
    ----------
    posteriors_ : list of WeightPosterior
        Hidden layers' weight posteriors.
    head_state_ : object
        The head's posterior state.
    noise_ : list of NoiseState
        Hidden layers' pseudo-noise estimates.
    memory_ : float or None
        With ``memory="evidence"``: the memory the race chose (``None``: no forgetting).
    head_prior_ : str
        With ``head_prior="evidence"``: the prior the race chose, ``"flat"`` or
        ``"fan_in"``.
    average_ : Average or None
        The iterate average of the hidden means (:class:`bayeslayers.averaging.Average`);
        ``averaging_`` tells whether predictions use it.
    hidden_scale_ : HiddenScale or None
        The evidence for the hidden layers' predictive scale
        (:class:`bayeslayers.hidden_scale.HiddenScale`); ``hidden_factor_`` is the factor in
        use.
    head_precision_ : float or ndarray
        The head's prior precision in use (relative to the noise where it is learned): one
        number, or with ``head_prior="evidence"`` one per block of the head's inputs (top
        units, skip inputs, bias; ``head_state_.blocks`` rows each); NaN for a head that has
        none (the GLM heads). A two-class race's is its teacher's.
    n_features_in_, n_outputs_, n_samples_seen_ : int
    classes_ : ndarray
        Class labels (classification heads only).
    log_evidence_ : float
        Prequential log evidence: the sum over every row trained on of its one-step-ahead log
        predictive density (:mod:`bayeslayers.training`); for a model without hidden layers
        at batch size 1 and a fixed noise, the log marginal likelihood.
    rng_ : numpy.random.Generator
        The shuffling generator, carried from pass to pass.
    """

    #: The attributes a fit sets (``_forget`` drops them).
    _FITTED = (
        "posteriors_",
        "head_state_",
        "noise_",
        "average_",
        "hidden_scale_",
        "classes_",
        "n_samples_seen_",
        "log_evidence_",
        "memory_",
        "head_prior_",
    )

    def __init__(
        self,
        layers: Sequence[Layer] = (),
        head=None,
        *,
        covariance: str = "auto",
        prior_precision: float = 1.0,
        noise: float | None = None,
        hidden_noise: float | None = None,
        damping: float = 1e-2,
        clip: float | None = None,
        targets: str = "gauss_newton",
        memory: float | str | None = None,
        bias_spread: float = 1.0,
        init: str = "samples",
        sweeps: int | str = "auto",
        skip: bool | str = "auto",
        average: bool | str = "evidence",
        hidden_scale: float | str = "evidence",
        head_prior: str = "flat",
        seed: int = 0,
        dtype: str = "float64",
        blas_threads: int | None = 1,
    ) -> None:
        self.layers = list(layers)
        head = Gaussian() if head is None else head
        if isinstance(head, Gaussian) and head.learn_noise is None:
            head = dataclasses.replace(head, learn_noise=noise is None)  # learned unless set
        self.head = head
        self.covariance = covariance
        self.prior_precision = prior_precision
        self.noise = noise
        self.hidden_noise = hidden_noise
        self.damping = damping
        self.clip = clip
        self.targets = targets
        self.memory = memory
        self.bias_spread = bias_spread
        self.init = init
        self.sweeps = sweeps
        self.skip = skip
        self.average = average
        self.hidden_scale = hidden_scale
        self.head_prior = head_prior
        self.seed = seed
        self.dtype = dtype
        self.blas_threads = blas_threads
        defaults.check_params(
            self.layers,
            self.head,
            {k: v for k, v in vars(self).items() if k not in ("layers", "head")},
        )

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "head_state_")

    @property
    def spec(self) -> engine.NetSpec:
        """The static :class:`~bayeslayers.engine.NetSpec` these parameters resolve to."""
        return engine.resolve_spec(
            self.layers,
            self.head,
            covariance=self.covariance,
            hidden_noise=self.hidden_noise,
            n_features=getattr(self, "n_features_in_", None),
            n_outputs=getattr(self, "n_outputs_", None),
            skip=self.skip,
            damping=self.damping,
            clip=self.clip,
            targets=self.targets,
            memory=getattr(self, "memory_", None) if self.memory == "evidence" else self.memory,
            prior_precision=self.prior_precision,
            average=self.average,
            hidden_scale=self.hidden_scale,
            head_prior=(
                getattr(self, "head_prior_", "flat")
                if self.head_prior == "evidence"
                else self.head_prior
            ),
            head_blocks=self.head_prior == "evidence",
        )

    @property
    def state(self) -> engine.NetState:
        """The fitted :class:`~bayeslayers.engine.NetState` (hidden posteriors, head, noise
        estimates, the iterate average and the hidden scale's evidence)."""
        self._check_fitted()
        return engine.NetState(
            tuple(self.posteriors_),
            self.head_state_,
            tuple(self.noise_),
            self.average_,
            self.hidden_scale_,
        )

    @property
    def averaging_(self) -> bool:
        """Whether predictions use the averaged hidden means (:mod:`bayeslayers.averaging`)."""
        self._check_fitted()
        return averaging.in_use(self.spec, self.average_)

    @property
    def hidden_factor_(self) -> float:
        """The factor on the hidden layers' variance in the linearized predictive
        (:func:`bayeslayers.predictive.hidden_factor`: 1 for a classifier)."""
        self._check_fitted()
        return predictive.hidden_factor(self.spec, self.state)

    @property
    def head_precision_(self) -> float | np.ndarray:
        """The head's prior precision in use (see the class docstring)."""
        self._check_fitted()
        state = teaching(self.head, self.head_state_)[1]
        alpha = getattr(state, "alpha", float("nan"))
        return np.array(alpha, copy=True) if np.ndim(alpha) else float(alpha)

    def _set_state(self, state: engine.NetState) -> None:
        self.posteriors_, self.head_state_ = list(state.hidden), state.head
        self.noise_, self.average_ = list(state.noise), state.average
        self.hidden_scale_ = state.hidden_scale

    def _init_state(self, n_features: int, n_outputs: int, X: np.ndarray) -> None:
        self.n_features_in_ = n_features  # the first layer's structure depends on it,
        self.n_outputs_ = n_outputs  # the head's on it
        self._set_state(
            engine.init_state(
                self.spec,
                n_features,
                n_outputs,
                prior_precision=self.prior_precision,
                head_noise=1.0 if self.noise is None else self.noise,
                hidden_noise=1.0,
                bias_spread=self.bias_spread,
                rng=np.random.default_rng(self.seed),
                dtype=np.dtype(self.dtype),
                sample_rows=X if self.init == "samples" else None,
            )
        )
        self.n_samples_seen_ = 0
        self.rng_ = np.random.default_rng([self.seed, 1])

    def encode(self, X, Y, classes=None) -> tuple[np.ndarray, np.ndarray]:
        """Validated features and the head's working targets for ``(X, Y)``.

        On an unfitted network this also sets the prior from the first call's data (shapes,
        classes and, with ``init="samples"``, the inputs).
        """
        X = check_features(X, self.n_features_in_ if self.is_fitted else None, self.dtype)
        if not self.head.is_classifier:
            n_outputs = self.n_outputs_ if self.is_fitted else None
            Y = check_targets(Y, X.shape[0], n_outputs, self.dtype)
            if not self.is_fitted:
                self._init_state(X.shape[1], Y.shape[1], X)
            return X, self.head.encode(Y)
        y = check_labels(Y, X.shape[0])
        known, index = check_classes(y, self.classes_ if self.is_fitted else None, classes)
        if not self.is_fitted:
            self.classes_ = known
            self._init_state(X.shape[1], len(known), X)
        return X, self.head.encode(index, len(known)).astype(self.dtype)

    def _forget(self) -> None:
        """Drop every fitted attribute (the next call sets the prior anew)."""
        for attr in self._FITTED:
            self.__dict__.pop(attr, None)

    def _atomic(self):
        """Restore every attribute (and the generator's state) if the block raises."""
        return unchanged_on_error(self, deep=("rng_",))

    @one_at_a_time  # one thread at a time trains this network (others wait)
    def initialize(self, X, Y, classes=None, *, prior_rows=None) -> Network:
        """Set the prior from ``(X, Y)`` without training (shapes, classes, sampled init).

        Any fitted state is dropped; afterwards the network predicts with its prior.
        ``prior_rows``, optional: the rows ``init="samples"`` draws the first layer from
        instead of ``X`` (an array, or a row source that
        :func:`bayeslayers.engine.sample_prior_mean` reads, e.g. partitions on a cluster).
        """
        with self._atomic():
            self._forget()
            self.encode(X, Y, classes)
            if prior_rows is not None and self.init == "samples":
                self._init_state(self.n_features_in_, self.n_outputs_, prior_rows)
        return self

    # -------------------------------------------------------------- training
    @one_at_a_time
    def partial_fit(
        self,
        X,
        Y,
        *,
        batch_size: int = 1,
        fraction: float = 1.0,
        classes=None,
        progress: bool = False,
        shuffle: bool = False,
        _callback: Callable[[FitProgress], None] | None = None,
        _pass_index: int = 0,
    ) -> Network:
        """Update the posterior with one pass over ``(X, Y)``, keeping what was learned.

        Parameters
        ----------
        X : array-like of shape (n, d)
        Y : array-like of shape (n,) or (n, k)
            Regression targets, or class labels for a classification head.
        batch_size : int
            Rows per update (Woodbury form); 1 reproduces the original post.
        fraction : float
            Tempering fraction ``c`` in (0, 1].
        classes : array-like, optional
            All class labels, required on the first call if ``Y`` may not show every class.
        progress, shuffle : bool
            Show a tqdm progress bar; visit the rows in a random (seeded) order.
        """
        batch_size = check_batch_size(batch_size)
        check_real(fraction, "fraction", 0, 1, low_open=True)
        with self._atomic(), blas_threads(self.blas_threads):
            first = not self.is_fitted
            X, T = self.encode(X, Y, classes)
            order = self.rng_.permutation(len(X)) if shuffle else np.arange(len(X))
            done = 0
            state, log_evidence = self.state, 0.0
            if first:
                done, state, log_evidence = self._race(X, T, order, batch_size, fraction)
            on_batch = None
            if _callback is not None:

                def on_batch(state: engine.NetState, rows: int) -> None:
                    snapshot = functools.partial(self._snapshot, state, done + rows)
                    _callback(FitProgress(_pass_index, done + rows, len(X), snapshot))

            state, rest = training.run_pass(
                self.spec,
                state,
                X,
                T,
                order=order[done:],
                batch_size=batch_size,
                fraction=fraction,
                sweeps=self.sweeps,
                seen=self.n_samples_seen_ + done,
                progress=progress,
                on_batch=on_batch,
            )
            self._set_state(state)
            self.log_evidence_ = getattr(self, "log_evidence_", 0.0) + log_evidence + rest
            self.n_samples_seen_ += len(X)
        return self

    def _race(
        self, X: np.ndarray, T: np.ndarray, order: np.ndarray, batch_size: int, fraction: float
    ) -> tuple[int, engine.NetState, float]:
        """The first call's races of what is set to ``"evidence"`` (:func:`training.race`);
        sets ``head_prior_`` / ``memory_`` and returns the rows trained on, the winner's state
        and its evidence.

        The head prior races first, on every row of the call, where the rows are no more than
        the head's inputs (:func:`training.prior_race_rows`); the memory then races under the
        chosen prior on the first :data:`forgetting.RACE_FRACTION` of the rows, from the prior
        again (where those rows outnumber the longest memory), so that either winner has made
        exactly one pass over its rows.
        """
        prior, done, log_evidence = self.state, 0, 0.0
        state = prior
        if self.head_prior == "evidence":
            candidates = training.race_candidates(self.spec, prior, "head_prior")
            if candidates:
                done = training.prior_race_rows(self.spec, len(X), self.n_features_in_)
            won, state, log_evidence = self._race_on(
                X, T, order[:done], batch_size, fraction, candidates
            )
            self.head_prior_ = won.get("head_prior", "flat")
        if self.memory == "evidence":
            n_ins = [post.mean.shape[0] for post in self.posteriors_]
            rows = forgetting.race_rows(len(X), batch_size, n_ins)
            candidates = training.race_candidates(self.spec, prior, "memory") if rows else []
            self.memory_ = None
            if candidates:  # from the prior again, under the chosen head prior
                won, state, log_evidence = self._race_on(
                    X, T, order[:rows], batch_size, fraction, candidates
                )
                self.memory_, done = won["memory"], rows
        return done, state, log_evidence

    def _race_on(
        self,
        X: np.ndarray,
        T: np.ndarray,
        order: np.ndarray,
        batch_size: int,
        fraction: float,
        candidates: list[training.Candidate],
    ) -> tuple[dict, engine.NetState, float]:
        """:func:`training.race` of ``candidates`` from the prior (this network's spec and
        the state before any row) on the rows ``X[order]``."""
        return training.race(
            self.spec, self.state, X, T, order, batch_size, fraction, self.sweeps, candidates
        )

    def _snapshot(self, state: engine.NetState, rows_done: int) -> Network:
        """A fitted copy holding ``state`` (arrays copied)."""
        net = copy.copy(self)
        net.__dict__ = dict(self.__dict__)
        net._set_state(training.private_copy(state._replace(head=copy.deepcopy(state.head))))
        net.n_samples_seen_ = self.n_samples_seen_ + rows_done
        net.rng_ = copy.deepcopy(self.rng_)
        return net

    @one_at_a_time
    def fit(
        self,
        X,
        Y,
        *,
        passes: int = 1,
        batch_size: int = 1,
        fraction: float | None = None,
        progress: bool = False,
        shuffle: bool = True,
        callback: Callable[[FitProgress], None] | None = None,
    ) -> Network:
        """Train from the prior: ``passes`` passes over the data, tempered by ``fraction``.

        ``fraction`` defaults to ``1 / passes`` (the original post's ``c``), so for a linear
        model several passes reach the same posterior as one. ``callback``, if given, is
        called after every batch with a :class:`FitProgress` (e.g. to score a learning curve
        on ``progress.snapshot()`` at checkpoints); an exception it raises aborts the fit and
        leaves the network as it was.
        """
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
        check_count(passes, "passes")
        check_real(fraction, "fraction", 0, 1, allow_none=True, low_open=True)
        c = 1.0 / passes if fraction is None else fraction
        start = time.perf_counter()
        with self._atomic():
            self._forget()
            for k in range(passes):
                self.partial_fit(
                    X,
                    Y,
                    batch_size=batch_size,
                    fraction=c,
                    progress=progress,
                    shuffle=shuffle,
                    _callback=callback,
                    _pass_index=k,
                )
            # e.g. an ADVI head's last partial chunk (the identity for conjugate heads)
            self.head_state_ = self.head.flush(self.head_state_)
        self.training_time_ = time.perf_counter() - start
        return self

    def health(self, X=None, Y=None) -> health.HealthReport:
        """Numerical health of every posterior (:func:`bayeslayers.health.report`).

        Symmetry, Cholesky success and smallest eigenvalue per layer; with probe inputs ``X``
        the number of dead units, with targets ``Y`` too the largest target correction. The
        network is not changed.
        """
        return health.report(self, X, Y)

    def save(self, path, config: dict | None = None):
        """Write the fitted network to an NPZ file (no pickle); see :func:`bayeslayers.io.save`.

        ``bayeslayers.load(path)`` gives back a network with identical predictions.
        """
        from bayeslayers import io

        return io.save(self, path, config=config)

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Network([{inner}], head={self.head!r}, covariance={self.covariance!r})"
