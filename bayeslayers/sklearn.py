r"""scikit-learn estimators around :class:`bayeslayers.Network`.

``BayesLayersRegressor`` and ``BayesLayersClassifier`` follow scikit-learn's conventions:
``__init__`` only stores its arguments, everything is validated in ``fit`` / ``partial_fit``,
learned attributes end in ``_`` and ``random_state`` seeds the prior mean (initialization),
the shuffling and the posterior draws. They pass ``check_estimator`` and work in ``Pipeline``,
``GridSearchCV`` and ``cross_val_score``.

Training is the network's: one conjugate Bayesian update per batch, layer by layer, so
``partial_fit`` is an exact online step (the posterior after ``partial_fit(A)`` then
``partial_fit(B)`` is the posterior after seeing ``A`` then ``B``), and ``fit`` with
``passes=k`` tempers every pass by :math:`c = 1/k`.

Every public update is atomic: input is validated before anything changes, and if any step
raises (bad input, a failed Cholesky factorization, a non-finite update, an interrupt) the
estimator is left exactly as it was.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from bayeslayers import heads as heads_module
from bayeslayers import scaling
from bayeslayers._atomic import unchanged_on_error
from bayeslayers.layers import LAYERS, make_layer
from bayeslayers.network import Network

__all__ = ["BayesLayersClassifier", "BayesLayersRegressor", "auto_batch_size"]


def auto_batch_size(n_rows: int) -> int:
    r"""Rows per update for ``batch_size="auto"``: 1 up to 2,000 rows, then 20 to 32.

    Smaller batches relinearize the network more often (better one-pass fits on small data);
    larger ones spread each step's fixed cost over more rows, which a long pass needs. One
    row per update up to 2,000 rows, then :math:`\lfloor n / 100 \rfloor`, at most 32.
    """
    return 1 if n_rows <= 2000 else min(32, n_rows // 100)


class _BayesLayersBase(BaseEstimator):
    r"""Parameters and the network construction shared by both estimators.

    Parameters
    ----------
    hidden : tuple of int
        Units of each hidden layer, input side first (an int is one layer); ``()`` gives
        Bayesian linear regression (or one-hot / GLM classification) on the raw features.
    activation : str
        Hidden-layer variant from :data:`bayeslayers.layers.LAYERS`: ``"relu"``,
        ``"leaky_relu"``, ``"taylor_tanh"`` or ``"linear"``.
    head : str or Head
        Output layer: ``"auto"`` (each estimator says what it resolves to), a name from
        :data:`bayeslayers.heads.HEADS` (see each estimator for the allowed names) or a head
        object such as ``heads.Gaussian(learn_noise=True)``.
    random_state : int, RandomState instance or None
        Seed of the network (prior mean, shuffling, posterior draws).

    Everything else is an optional, keyword-only prior or setting; the defaults need no
    tuning (every noise is learned, the structure follows the width):

    covariance : {"auto", "unit", "shared", "diag"}
        Covariance structure of the weight posteriors (``"auto"``: per-unit up to
        :data:`bayeslayers.defaults.AUTO_UNIT_MAX`-wide rows, diagonal above; the head's
        columns share one covariance where they have the same posterior,
        :func:`bayeslayers.defaults.head_structure`).
    prior_precision : float
        Prior precision of every weight (relative to the noise where it is learned), on the
        standardized scale.
    noise : float, optional
        Observation noise variance :math:`\sigma^2` of the head, fixed; omitted: learned.
    hidden_noise : float, optional
        Pseudo-observation noise variance of the hidden layers, fixed; omitted: learned per
        layer.
    damping : float
        Damping :math:`\lambda` of the target correction.
    clip : float, optional
        Clip on every entry of a target correction.
    bias_spread : float
        Standard deviation of the hidden biases' prior mean.
    init : {"he", "samples"}
        Prior mean of the first hidden layer: random He-scaled weights, or centred training
        inputs (see :class:`bayeslayers.Network`).
    sweeps : int or "auto"
        Backward passes of the hidden layers per batch, each tempered by ``1 / sweeps`` (an
        iterated EKF step; see :class:`bayeslayers.Network`).
    targets : {"gauss_newton", "min_norm", "ekf"}
        The backward step (:data:`bayeslayers.propagation.TARGETS`).
    memory : float, "evidence" or None
        Memory of the hidden layers in rows per weight (:mod:`bayeslayers.forgetting`).
        ``"evidence"`` (the default): chosen among
        :data:`bayeslayers.forgetting.CANDIDATES` by the prequential evidence of a race on
        the first call's first rows; ``None``: nothing is forgotten.
    skip : {"auto", True, False}
        A linear skip connection into the head ("wide & deep"): the head regresses on
        :math:`[h_L, x, 1]`, the top hidden output beside the standardized features, so that
        :math:`f(x) = W_h^\top h_L(x) + W_x^\top x + b`; the head's conjugate update and
        evidence prior cover both parts, and the hidden layers learn what the linear part
        leaves. ``"auto"``: on up to ``AUTO_UNIT_MAX - 1`` features
        (:func:`bayeslayers.defaults.skip`; the head's per-unit cost grows with the square of
        its width). Nothing to skip without hidden layers.
    average : {"evidence", True, False}
        Predict at the iterate average of the hidden layers' means when its prequential
        evidence beats the posterior means' (``"evidence"``), always (``True``) or never
        (``False``); :mod:`bayeslayers.averaging`.
    hidden_scale : "evidence" or float
        Factor on the hidden layers' weight variance in a regressor's predictive std and
        quantiles: chosen by the prequential evidence of the targets (``"evidence"``), or a
        number ``>= 0``; :mod:`bayeslayers.hidden_scale`. Classifiers ignore it.
    head_prior : {"evidence", "flat", "fan_in"}
        The head's prior on the weights of the top hidden layer: variance
        :math:`1 / \alpha` (``"flat"``) or :math:`1 / (\alpha H)` for :math:`H` units
        (``"fan_in"``, Neal's scaling), or (``"evidence"``, the default) the one of larger
        prequential evidence over a first call of no more rows than the head has inputs
        (flat on more rows), with one evidence prior precision per block of the head's
        inputs (top units, skip inputs, bias) in every case; see
        :class:`bayeslayers.Network`. A classifier's evidence is that of the labels under the
        head's class probabilities; its blocks' precisions are those of the one-hot
        regression on the class indicators.
    passes : int
        Passes over the data in ``fit``, each tempered by ``1 / passes``.
    batch_size : int or "auto"
        Rows per conjugate update; 1 is the original post's sample-by-sample update.
        ``"auto"``: :func:`auto_batch_size` of the first call's row count.
    shuffle : bool
        Visit the rows in a seeded random order in ``fit`` (``partial_fit`` keeps the order
        it is given: a stream is learned in stream order).
    standardize : bool
        Centre and scale every feature (and, for regression, every target) with the first
        call's statistics, so that predictions do not depend on the units of the data; the
        network works on the standardized scale and predictions come back in the data's
        units. Sparse features (zero in half the rows or more) are scaled by their largest
        magnitude instead (their zeros kept); constant features are only centred; a dense
        feature with heavy tails gets the tail transform :math:`\lambda \operatorname{asinh}
        (z / \lambda)` of its robust z-score where a Gaussian fits it far better
        (:mod:`bayeslayers.scaling`; ``x_tail_`` holds each feature's :math:`\lambda`,
        ``inf`` for none). A regressor keeps a column's z-score where Bayesian linear
        regression on the first call's rows has far higher evidence with it than with the
        transform (:func:`bayeslayers.scaling.linear_guard`: a target linear in the column
        as given). :meth:`network_features` gives what the network sees.
    dtype : {"float64", "float32"}
        Floating point type of the parameters.
    """

    #: Head names that stand for a registry kind (e.g. a classifier's "gaussian" head is the
    #: one-hot regression head).
    _head_aliases: ClassVar[dict[str, str]] = {}
    _is_classifier: ClassVar[bool] = False
    # Fitted statistics (set by the first fit): arrays, or 0.0 / 1.0 without standardize.
    x_mean_: np.ndarray | float
    x_scale_: np.ndarray | float
    x_tail_: np.ndarray | None
    y_mean_: np.ndarray | float
    y_scale_: np.ndarray | float

    def __init__(
        self,
        hidden: tuple[int, ...] = (100,),
        activation: str = "relu",
        head="auto",
        random_state=None,
        *,
        covariance: str = "auto",
        prior_precision: float = 1.0,
        noise: float | None = None,
        hidden_noise: float | None = None,
        damping: float = 1e-2,
        clip: float | None = None,
        bias_spread: float = 1.0,
        init: str = "samples",
        sweeps: int | str = "auto",
        targets: str = "gauss_newton",
        memory: float | str | None = "evidence",
        skip: bool | str = "auto",
        average: bool | str = "evidence",
        hidden_scale: float | str = "evidence",
        head_prior: str = "evidence",
        passes: int = 1,
        batch_size: int | str = "auto",
        shuffle: bool = True,
        standardize: bool = True,
        dtype: str = "float64",
    ) -> None:
        self.hidden = hidden
        self.activation = activation
        self.head = head
        self.random_state = random_state
        self.covariance = covariance
        self.prior_precision = prior_precision
        self.noise = noise
        self.hidden_noise = hidden_noise
        self.damping = damping
        self.clip = clip
        self.bias_spread = bias_spread
        self.init = init
        self.sweeps = sweeps
        self.targets = targets
        self.memory = memory
        self.skip = skip
        self.average = average
        self.hidden_scale = hidden_scale
        self.head_prior = head_prior
        self.passes = passes
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.standardize = standardize
        self.dtype = dtype

    # ------------------------------------------------------------------ set-up
    def _allowed_heads(self) -> list[str]:
        kinds = [
            k for k, cls in heads_module.HEADS.items() if cls.is_classifier == self._is_classifier
        ]
        return sorted({"auto", *self._head_aliases, *kinds})

    def _auto_head(self) -> str:
        """The registry kind ``head="auto"`` stands for."""
        return "gaussian"

    def _make_head(self):
        if isinstance(self.head, str):
            kind = self._auto_head() if self.head == "auto" else self.head
            kind = self._head_aliases.get(kind, kind)
            cls = heads_module.HEADS.get(kind)
            if cls is None or cls.is_classifier != self._is_classifier:
                raise ValueError(
                    f"head must be one of {self._allowed_heads()} or a head object, "
                    f"got {self.head!r}"
                )
            return cls()
        if isinstance(self.head, heads_module.Head):
            if self.head.is_classifier != self._is_classifier:
                task = "classification" if self._is_classifier else "regression"
                raise ValueError(f"head {self.head!r} is not a {task} head")
            return self.head
        raise TypeError(
            f"head must be a name in {self._allowed_heads()} or a head object, "
            f"got {type(self.head).__name__}"
        )

    def _make_layers(self) -> list:
        hidden = (self.hidden,) if isinstance(self.hidden, int | np.integer) else self.hidden
        if isinstance(hidden, str | bytes) or not hasattr(hidden, "__iter__"):
            raise TypeError(f"hidden must be a tuple of ints, got {self.hidden!r}")
        hidden = tuple(hidden)
        for units in hidden:
            if isinstance(units, bool) or not isinstance(units, int | np.integer) or units < 1:
                raise ValueError(
                    f"hidden must hold ints >= 1 (units per layer), got {self.hidden!r}"
                )
        if self.activation not in LAYERS:
            raise ValueError(f"activation must be one of {sorted(LAYERS)}, got {self.activation!r}")
        return [make_layer(self.activation, units=int(units)) for units in hidden]

    def _seed(self) -> int:
        if isinstance(self.random_state, int | np.integer) and not isinstance(
            self.random_state, bool
        ):
            if self.random_state < 0:
                raise ValueError(f"random_state must be >= 0, got {self.random_state}")
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _make_network(self) -> Network:
        """A fresh, unfitted network from the current parameters (validated here)."""
        if not isinstance(self.shuffle, bool | np.bool_):
            raise TypeError(f"shuffle must be a bool, got {type(self.shuffle).__name__}")
        return Network(
            self._make_layers(),
            self._make_head(),
            covariance=self.covariance,
            prior_precision=self.prior_precision,
            noise=self.noise,
            hidden_noise=self.hidden_noise,
            damping=self.damping,
            clip=self.clip,
            bias_spread=self.bias_spread,
            init=self.init,
            sweeps=self.sweeps,
            targets=self.targets,
            memory=self.memory,
            skip=self.skip,
            average=self.average,
            hidden_scale=self.hidden_scale,
            head_prior=self.head_prior,
            seed=self._seed(),
            dtype=self.dtype,
        )

    def _batch(self, n_rows: int) -> int:
        if isinstance(self.batch_size, str):
            if self.batch_size != "auto":
                raise ValueError(f"batch_size must be an int or 'auto', got {self.batch_size!r}")
            return auto_batch_size(n_rows)
        return self.batch_size

    def _scale_X(self, X: np.ndarray, first: bool, targets: np.ndarray | None = None) -> np.ndarray:
        """Standardized features; the first call sets the statistics (a regressor's with its
        standardized ``targets``, :func:`bayeslayers.scaling.linear_guard`)."""
        if not isinstance(self.standardize, bool | np.bool_):
            raise TypeError(f"standardize must be a bool, got {type(self.standardize).__name__}")
        if first:
            if self.standardize:
                self.x_mean_, self.x_scale_, self.x_tail_ = scaling.tails(X)
                if targets is not None:
                    self.x_mean_, self.x_scale_, self.x_tail_ = scaling.linear_guard(
                        X, targets, self.x_mean_, self.x_scale_, self.x_tail_
                    )
            else:
                self.x_mean_, self.x_scale_, self.x_tail_ = 0.0, 1.0, None
        return scaling.standardize(X, self.x_mean_, self.x_scale_, self.x_tail_)

    def network_features(self, X) -> np.ndarray:
        """The features ``X`` as the fitted network sees them (``standardize``'s transform,
        with the first call's statistics)."""
        check_is_fitted(self)
        return self._scale_X(validate_data(self, X, reset=False), first=False)

    def _fit_network(self, X: np.ndarray, y: np.ndarray) -> None:
        targets = None if self._is_classifier else y
        self.network_ = self._make_network().fit(
            self._scale_X(X, first=True, targets=targets),
            y,
            passes=self.passes,
            batch_size=self._batch(len(X)),
            shuffle=bool(self.shuffle),
        )

    def health(self, X=None, y=None):
        """Numerical health of the fitted posteriors (:func:`bayeslayers.health.report`)."""
        check_is_fitted(self)
        if X is not None:
            X = self._scale_X(validate_data(self, X, reset=False), first=False)
        if y is not None:
            y = self._network_targets(y)
        return self.network_.health(X, y)

    def _network_targets(self, y) -> np.ndarray:
        return (np.asarray(y, dtype=float) - self.y_mean_) / self.y_scale_


class BayesLayersRegressor(RegressorMixin, _BayesLayersBase):
    """Regression by a network trained with layer-wise conjugate Bayesian updates.

    See :class:`_BayesLayersBase` for the parameters; ``head`` is ``"auto"`` or
    ``"gaussian"`` (the same: Bayesian linear regression output) or a regression head object
    such as ``heads.Gaussian(learn_noise=True)``.

    Attributes
    ----------
    network_ : Network
        The fitted network.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Defined when ``X`` had string column names.
    n_outputs_ : int
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X, y) -> BayesLayersRegressor:
        """Train from the prior on ``(X, y)``; ``y`` of shape ``(n,)`` or ``(n, k)``."""
        with unchanged_on_error(self):
            X, y = validate_data(self, X, y, multi_output=True, y_numeric=True)
            self._scale_y(y)
            self._fit_network(X, self._network_targets(y))
            self.n_outputs_ = self.network_.n_outputs_
        return self

    def partial_fit(self, X, y) -> BayesLayersRegressor:
        """One online conjugate update on ``(X, y)`` (from the prior on the first call)."""
        first = not hasattr(self, "network_")
        with unchanged_on_error(self):
            X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, reset=first)
            if first:
                self._scale_y(y)
            network = self._make_network() if first else self.network_
            targets = self._network_targets(y)
            network.partial_fit(
                self._scale_X(X, first, targets if first else None),
                targets,
                batch_size=self._batch(len(X)),
            )
            self.network_ = network
            self.n_outputs_ = network.n_outputs_
        return self

    def predict(
        self,
        X,
        return_std: bool = False,
        hidden: str = "linearized",
        n_samples: int | None = None,
    ):
        """Posterior-mean prediction, and with ``return_std`` the predictive std.

        The std combines the head's weight uncertainty (analytic), the hidden layers' weight
        uncertainty (``hidden``, see :mod:`bayeslayers.predictive`) and the observation noise.
        """
        check_is_fitted(self)
        X = self._scale_X(validate_data(self, X, reset=False), first=False)
        out = self.network_.predict(X, return_std=return_std, hidden=hidden, n_samples=n_samples)
        if return_std:
            mean, std = out
            return mean * self._y_out_scale() + self._y_out_mean(), std * self._y_out_scale()
        return out * self._y_out_scale() + self._y_out_mean()

    def predictive_dof(self) -> float:
        """Degrees of freedom of the Student-t predictive (``inf``: Gaussian); see
        :meth:`bayeslayers.network.Network.predictive_dof`."""
        check_is_fitted(self)
        return self.network_.predictive_dof()

    def _scale_y(self, y: np.ndarray) -> None:
        """Target statistics from the first call (identity without ``standardize``)."""
        if self.standardize:
            self.y_mean_, self.y_scale_ = scaling.moments(np.asarray(y, dtype=float))
        else:
            self.y_mean_, self.y_scale_ = 0.0, 1.0

    def _y_out_scale(self):
        return np.squeeze(self.y_scale_) if self.network_.n_outputs_ == 1 else self.y_scale_

    def _y_out_mean(self):
        return np.squeeze(self.y_mean_) if self.network_.n_outputs_ == 1 else self.y_mean_


class BayesLayersClassifier(ClassifierMixin, _BayesLayersBase):
    """Classification by a network trained with layer-wise conjugate Bayesian updates.

    See :class:`_BayesLayersBase` for the parameters. ``head`` is ``"auto"`` (the default),
    ``"gaussian"`` (regression on one-hot class indicators, the original post's set-up),
    another classification head in :data:`bayeslayers.heads.HEADS` (e.g. ``"probit"``,
    ``"logistic"``, ``"choice"``) or a head object. ``"auto"`` is the one-hot head, raced
    against a probit readout of the same features by prequential evidence
    (:class:`bayeslayers.heads.Choice`) when there are two classes, where the probit costs
    one column, no more than the one-hot head it shadows; with more classes it would cost
    one covariance per class, and ``"auto"`` is the one-hot head alone (``"choice"`` races
    it there too).

    Attributes
    ----------
    network_ : Network
        The fitted network (it sees the class indices ``0 .. n_classes - 1``).
    classes_ : ndarray
        Class labels, sorted.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Defined when ``X`` had string column names.
    """

    _head_aliases: ClassVar[dict[str, str]] = {"gaussian": "onehot"}
    _is_classifier: ClassVar[bool] = True

    def _auto_head(self) -> str:
        """``"choice"`` for two classes, else ``"onehot"`` (the class docstring)."""
        return "choice" if len(self.classes_) == 2 else "onehot"

    def fit(self, X, y) -> BayesLayersClassifier:
        """Train from the prior on ``(X, y)`` with class labels ``y``."""
        with unchanged_on_error(self):
            X, y = validate_data(self, X, y)
            check_classification_targets(y)
            self.classes_, index = np.unique(y, return_inverse=True)
            if len(self.classes_) < 2:
                raise ValueError(
                    "a classifier needs at least 2 classes; y has 1 class: "
                    f"{self.classes_.tolist()}"
                )
            self._fit_network(X, index)
        return self

    def partial_fit(self, X, y, classes=None) -> BayesLayersClassifier:
        """One online conjugate update on ``(X, y)``.

        ``classes`` (every label the stream may contain) is required on the first call and,
        if given later, must equal ``classes_``.
        """
        first = not hasattr(self, "network_")
        with unchanged_on_error(self):
            X, y = validate_data(self, X, y, reset=first)
            check_classification_targets(y)
            if classes is not None:
                classes = np.unique(classes)
            if first:
                if classes is None:
                    raise ValueError("classes must be passed on the first call to partial_fit")
                if len(classes) < 2:
                    raise ValueError(
                        f"a classifier needs at least 2 classes, got {classes.tolist()}"
                    )
                self.classes_ = classes
            elif classes is not None and not np.array_equal(classes, self.classes_):
                raise ValueError(
                    f"classes={classes.tolist()} differs from classes_={self.classes_.tolist()} "
                    "set by the first call to partial_fit"
                )
            index = self._network_targets(y)
            network = self._make_network() if first else self.network_
            network.partial_fit(
                self._scale_X(X, first),
                index,
                batch_size=self._batch(len(X)),
                classes=np.arange(len(self.classes_)),
            )
            self.network_ = network
        return self

    def _network_targets(self, y) -> np.ndarray:
        """Class indices of the labels ``y`` (ValueError for a label not in ``classes_``)."""
        y = np.asarray(y)
        unseen = np.setdiff1d(y, self.classes_)
        if unseen.size:
            raise ValueError(
                f"y contains labels {unseen.tolist()} not among classes_ {self.classes_.tolist()}"
            )
        return np.searchsorted(self.classes_, y)

    def predict_proba(self, X, hidden: str = "mean", n_samples: int | None = None) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` in the order of ``classes_``.

        The head's weight uncertainty is integrated by the head; the hidden layers' as
        ``hidden`` says (``"mean"``, ``"linearized"`` or ``"sample"`` with ``n_samples`` draws).
        """
        check_is_fitted(self)
        X = self._scale_X(validate_data(self, X, reset=False), first=False)
        return self.network_.predict_proba(X, hidden=hidden, n_samples=n_samples)

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
