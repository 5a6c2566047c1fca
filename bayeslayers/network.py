r"""The ``Network`` shell: validation, atomic fit / partial_fit, predictions.

The training step and the forward pass are :mod:`bayeslayers.engine`'s, the predictive
distributions :mod:`bayeslayers.predictive`'s; this module binds them to the parameters a user
sets. The new posteriors of a pass are computed on private copies and assigned together at the
end, so an exception anywhere leaves the network exactly as it was.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from bayeslayers import defaults, engine, health, predictive
from bayeslayers._atomic import unchanged_on_error
from bayeslayers._threads import blas_threads, one_at_a_time
from bayeslayers._validation import (
    check_count,
    check_features,
    check_labels,
    check_real,
    check_targets,
)
from bayeslayers.heads import Gaussian
from bayeslayers.layers import Layer

__all__ = ["FitProgress", "Network"]


class FitProgress(NamedTuple):
    """What a ``fit`` callback is told after every batch.

    Attributes
    ----------
    pass_index : int
        Index of the current pass, from 0.
    rows_done : int
        Rows of this pass already used.
    n_rows : int
        Rows in one pass.
    snapshot : callable
        ``snapshot()`` returns a fitted copy of the network holding the posterior so far
        (copies the posteriors, so call it only where it is needed, e.g. at checkpoints).
    """

    pass_index: int
    rows_done: int
    n_rows: int
    snapshot: Callable[[], Network]


class Network:
    """A feed-forward network trained by layer-wise conjugate Bayesian updates.

    Parameters
    ----------
    layers : sequence of Layer
        Hidden layers, input side first (e.g. ``[layers.ReLU(100)]``). Empty: plain Bayesian
        linear regression (or classification) on the inputs.
    head : Head, optional
        Output layer; ``heads.Gaussian()`` (regression) by default.
    covariance : {"auto", "unit", "shared", "diag"}
        Default covariance structure of every layer's weight posterior; ``"auto"`` picks it
        from each layer's width (:func:`bayeslayers.defaults.structure`).
    prior_precision : float
        Prior precision of every weight (prior variance ``1 / prior_precision``).
    noise : float, optional
        Observation noise variance :math:`\\sigma^2` of the head, fixed. Omitted (the default):
        learned by the head (Normal-Inverse-Gamma), starting from 1.
    hidden_noise : float, optional
        Noise variance of the hidden layers' pseudo-observations. Omitted (the default): under
        a regression head, learned per layer from its own innovations during the pass
        (:func:`bayeslayers.engine.learn_noise`); under a classification head
        :data:`bayeslayers.defaults.CLASSIFIER_HIDDEN_NOISE`. A layer's own ``noise`` overrides it.
    damping : float
        :math:`\\lambda` of the target solve; 0 gives the original post's pseudo-inverse.
    clip : float, optional
        Clip on every entry of a target correction.
    targets : {"gauss_newton", "min_norm", "ekf"}
        The backward step that gives each hidden layer its target (a key of
        :data:`bayeslayers.propagation.TARGETS`; its docstring has the math and the cost).
        ``"gauss_newton"`` equals the original post's ``"min_norm"`` with one hidden layer and
        trains deeper stacks better.
    bias_spread : float
        Standard deviation of the hidden biases' prior mean (the initialization). Zero biases
        make every ReLU kink pass through the origin, which hurts low-dimensional inputs.
    init : {"he", "samples"}
        Prior mean of the first hidden layer. ``"he"``: random He-scaled weights, a prior that
        does not look at the data (so a stream of ``partial_fit`` calls equals one ``fit``).
        ``"samples"``: each unit's weights are a centred input row of the first call's training
        data (inputs only, never labels), scaled to unit pre-activation spread on those rows;
        the biases centre the pre-activations (plus ``bias_spread``). A first call with a
        single row, or a unit with no spread, falls back to ``"he"``. One pass moves a random
        first layer too little, so sampling it is the default. Deeper layers always use
        ``"he"``. With a single input every unit gets the same slope magnitude (only the biases
        differ): fine for ReLU kinks, worse than ``"he"`` for a narrow ``TaylorTanh`` layer.
    sweeps : int
        Updates per batch, each tempered by ``1 / sweeps`` and relinearized at the new means
        (an iterated extended Kalman filter step). A linear model gets the same posterior for
        every value.
    seed : int
        Seeds the prior mean (initialization), shuffling and posterior sampling.
    dtype : {"float64", "float32"}
        Floating point type of all parameters.
    blas_threads : int or None
        BLAS threads while training. A step is many small BLAS/LAPACK calls, for which one
        thread is fastest (waking threads per call costs more than it saves). ``None`` keeps
        the BLAS library's own setting. Prediction always runs with the library's setting.

    Attributes
    ----------
    posteriors_ : list of WeightPosterior
        Hidden layers' weight posteriors.
    head_state_ : object
        The head's posterior state.
    n_features_in_, n_outputs_ : int
    classes_ : ndarray
        Class labels (classification heads only).
    n_samples_seen_ : int
    log_evidence_ : float
        Prequential log evidence: the sum over every row trained on of its one-step-ahead log
        predictive density (each head's ``log_predictive``); for a model without
        hidden layers at batch size 1 and a fixed noise, the log marginal likelihood.
    noise_ : list of NoiseState
        Hidden layers' pseudo-noise estimates.
    """

    _FITTED = (
        "posteriors_",
        "head_state_",
        "noise_",
        "classes_",
        "n_samples_seen_",
        "log_evidence_",
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
        bias_spread: float = 1.0,
        init: str = "samples",
        sweeps: int = 1,
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
        self.bias_spread = bias_spread
        self.init = init
        self.sweeps = sweeps
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
        return engine.NetSpec(
            layers=tuple(self.layers),
            head=self.head,
            structures=tuple(
                layer.covariance or defaults.structure(self.covariance, fan_in)
                for layer, fan_in in zip(self.layers, self._fan_ins(), strict=True)
            ),
            head_structure=self.head.covariance or defaults.structure(self.covariance, None),
            noises=tuple(
                defaults.hidden_noise(self.hidden_noise, self.head)
                if layer.noise is None
                else layer.noise
                for layer in self.layers
            ),
            damping=self.damping,
            clip=self.clip,
            targets=self.targets,
        )

    def _fan_ins(self) -> list[int | None]:
        """Inputs of each hidden layer (the first one's is known once fitted)."""
        first = getattr(self, "n_features_in_", None)
        return [first, *(layer.units for layer in self.layers[:-1])][: len(self.layers)]

    @property
    def state(self) -> engine.NetState:
        """The fitted :class:`~bayeslayers.engine.NetState` (hidden posteriors and head)."""
        self._check_fitted()
        return engine.NetState(tuple(self.posteriors_), self.head_state_, tuple(self.noise_))

    def _init_state(self, n_features: int, n_outputs: int, X: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed)
        self.n_features_in_ = n_features  # the first layer's structure may depend on it
        state = engine.init_state(
            self.spec,
            n_features,
            n_outputs,
            prior_precision=self.prior_precision,
            head_noise=1.0 if self.noise is None else self.noise,
            hidden_noise=1.0,
            bias_spread=self.bias_spread,
            rng=rng,
            dtype=np.dtype(self.dtype),
            sample_rows=X if self.init == "samples" else None,
        )
        self.posteriors_, self.head_state_, self.noise_ = (
            list(state.hidden),
            state.head,
            list(state.noise),
        )
        self.n_features_in_ = n_features
        self.n_outputs_ = n_outputs
        self.n_samples_seen_ = 0
        self.rng_ = np.random.default_rng([self.seed, 1])

    def encode(self, X, Y, classes=None) -> tuple[np.ndarray, np.ndarray]:
        """Validated features and the head's working targets for ``(X, Y)``.

        On an unfitted network this also sets the prior from the first call's data (shapes,
        classes and, with ``init="samples"``, the inputs).
        """
        n_features = self.n_features_in_ if self.is_fitted else None
        X = check_features(X, n_features, self.dtype)
        if not self.head.is_classifier:
            Y = check_targets(
                Y, X.shape[0], self.n_outputs_ if self.is_fitted else None, self.dtype
            )
            if not self.is_fitted:
                self._init_state(X.shape[1], Y.shape[1], X)
            return X, self.head.encode(Y)
        y = check_labels(Y, X.shape[0])
        if not self.is_fitted:
            known = np.unique(y) if classes is None else np.unique(np.asarray(classes))
            if len(known) < 2:
                raise ValueError(f"a classifier needs at least 2 classes, got {known.tolist()}")
            self.classes_ = known
        elif classes is not None:
            given = np.unique(check_labels(classes, len(classes), "classes"))
            if not np.array_equal(given, self.classes_):
                raise ValueError(
                    f"classes={given.tolist()} differs from the classes "
                    f"{self.classes_.tolist()} this network was first fitted with"
                )
        unseen = np.setdiff1d(np.unique(y), self.classes_)
        if unseen.size:
            raise ValueError(
                f"y contains labels {unseen.tolist()} not among the classes "
                f"{self.classes_.tolist()} (pass classes= to the first partial_fit)"
            )
        if not self.is_fitted:
            self._init_state(X.shape[1], len(self.classes_), X)
        index = np.searchsorted(self.classes_, y)
        return X, self.head.encode(index, len(self.classes_)).astype(self.dtype)

    def _forget(self) -> None:
        """Drop every fitted attribute (the next call sets the prior anew)."""
        for attr in self._FITTED:
            self.__dict__.pop(attr, None)

    @one_at_a_time  # one thread at a time trains this network (others wait)
    def initialize(self, X, Y, classes=None) -> Network:
        """Set the prior from ``(X, Y)`` without training (shapes, classes, sampled init).

        Any fitted state is dropped; afterwards the network predicts with its prior.
        """
        with self._atomic():
            self._forget()
            self.encode(X, Y, classes)
        return self

    # -------------------------------------------------------------- training
    @one_at_a_time  # one thread at a time trains this network (others wait)
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
        progress : bool
            Show a tqdm progress bar.
        shuffle : bool
            Visit the rows in a random order (seeded).

        Returns
        -------
        Network
            ``self``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        check_real(fraction, "fraction", 0, 1, low_open=True)
        with self._atomic(), blas_threads(self.blas_threads):
            X, T = self.encode(X, Y, classes)
            self._run_pass(X, T, batch_size, fraction, progress, shuffle, _callback, _pass_index)
        return self

    def _atomic(self):
        """Restore every attribute (and the generator's state) if the block raises."""
        return unchanged_on_error(self, deep=("rng_",))

    def _run_pass(
        self, X, T, batch_size, fraction, progress, shuffle, callback=None, pass_index=0
    ) -> None:
        order = self.rng_.permutation(len(X)) if shuffle else np.arange(len(X))
        starts = range(0, len(X), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, total=len(starts), desc="bayeslayers", unit="batch")
        spec = self.spec
        # One private copy per pass, then in-place updates: the fitted state is replaced only
        # at the end, so an exception anywhere in the pass leaves it untouched.
        state = engine.NetState(
            tuple(p._replace(mean=p.mean.copy(), cov=p.cov.copy()) for p in self.posteriors_),
            self.head_state_,
            tuple(self.noise_),
        )
        log_evidence = 0.0
        for start in starts:
            rows = order[start : start + batch_size]
            for sweep in range(self.sweeps):
                state, info = engine.train_step(
                    spec, state, X[rows], T[rows], fraction / self.sweeps, overwrite=True
                )
                if not sweep:  # the one-step-ahead density: before the batch's first update
                    log_evidence += info.log_predictive
            if callback is not None:
                done = min(start + batch_size, len(X))
                snapshot = functools.partial(self._snapshot, state, done)
                callback(FitProgress(pass_index, done, len(X), snapshot))
        self.posteriors_, self.head_state_ = list(state.hidden), state.head
        self.noise_ = list(state.noise)
        self.log_evidence_ = getattr(self, "log_evidence_", 0.0) + log_evidence
        self.n_samples_seen_ += len(X)

    def _snapshot(self, state: engine.NetState, rows_done: int) -> Network:
        """A fitted copy holding ``state`` (arrays copied)."""
        net = copy.copy(self)
        net.__dict__ = dict(self.__dict__)
        net.posteriors_ = [p._replace(mean=p.mean.copy(), cov=p.cov.copy()) for p in state.hidden]
        net.head_state_ = copy.deepcopy(state.head)
        net.noise_ = list(state.noise)
        net.n_samples_seen_ = self.n_samples_seen_ + rows_done
        net.rng_ = copy.deepcopy(self.rng_)
        return net

    @one_at_a_time  # one thread at a time trains this network (others wait)
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

    # ------------------------------------------------------------ prediction
    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("this Network is not fitted yet: call fit or partial_fit first")

    def _prepare(self, X, hidden: str, n_samples) -> tuple[np.ndarray, int]:
        """Checked features and number of draws for a prediction (before any work)."""
        self._check_fitted()
        if n_samples is not None and hidden != "sample":
            raise ValueError(
                f"n_samples is the number of draws of hidden='sample', "
                f"but hidden={hidden!r}: drop n_samples or pass hidden='sample'"
            )
        draws = predictive.check_hidden(hidden, 100 if n_samples is None else n_samples)
        return check_features(X, self.n_features_in_, self.dtype), draws

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
        return predictive.moments(self.spec, self.state, X, hidden, draws, self.seed)

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
            mean, var = predictive.moments(self.spec, self.state, X, hidden, draws, self.seed)
            return self._shape_output(mean), self._shape_output(np.sqrt(var))
        xh, _ = engine.forward(self.spec, self.posteriors_, X)
        return self._shape_output(xh @ self.head_state_.post.mean)

    def _shape_output(self, a: np.ndarray) -> np.ndarray:
        return a[:, 0] if self.n_outputs_ == 1 else a

    def predict_proba(self, X, *, hidden: str = "mean", n_samples: int | None = None):
        """Class probabilities ``(n, n_classes)``.

        The head integrates its own weight uncertainty; the hidden layers' weights enter as
        ``hidden`` says (``"mean"``, the default, ``"linearized"`` or ``"sample"``).
        """
        self._check_fitted()
        if not self.head.is_classifier:
            raise AttributeError(f"predict_proba needs a classification head, not {self.head!r}")
        X, draws = self._prepare(X, hidden, n_samples)
        return predictive.proba(self.spec, self.state, X, hidden, draws, self.seed)

    def predict_quantiles(
        self,
        X,
        quantiles=(0.05, 0.5, 0.95),
        *,
        hidden: str = "linearized",
        n_samples: int | None = None,
    ) -> np.ndarray:
        """Quantiles of the predictive distribution of every output (regression heads).

        See :func:`bayeslayers.predictive.quantiles` for ``hidden`` and ``n_samples``.

        Returns
        -------
        ndarray of shape (len(quantiles), n) or (len(quantiles), n, k)
        """
        self._check_fitted()
        if self.head.is_classifier:
            raise AttributeError(f"predict_quantiles needs a regression head, not {self.head!r}")
        q = np.asarray(quantiles, dtype=np.float64)
        if q.ndim != 1 or q.size == 0 or not np.all((q > 0) & (q < 1)):
            raise ValueError(
                f"quantiles must be a 1-D sequence of numbers in (0, 1), got {quantiles!r}"
            )
        X, draws = self._prepare(X, hidden, n_samples)
        out = predictive.quantiles(self.spec, self.state, X, q, hidden, draws, self.seed)
        return out[..., 0] if self.n_outputs_ == 1 else out

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
