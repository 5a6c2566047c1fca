"""Fuzzing with hypothesis: random shapes, dtypes, NaN positions and configurations.

Whatever comes in, a fit either succeeds with finite predictions and healthy posteriors, or
raises one of the documented exceptions (ValueError, TypeError, FloatingPointError); a failed
update never changes a fitted model.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bayeslayers import Network, heads, layers
from bayeslayers.sklearn import BayesLayersClassifier, BayesLayersRegressor

DOCUMENTED = (ValueError, TypeError, FloatingPointError)
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

valid_layer = st.builds(
    lambda kind, units, cov: layers.make_layer(kind, units=units, covariance=cov),
    st.sampled_from(sorted(layers.LAYERS)),
    st.integers(1, 6),
    st.sampled_from([None, "unit", "shared", "diag"]),
)

# Network keyword arguments: valid values, and now and then one invalid entry.
valid_network_config = st.fixed_dictionaries(
    {},
    optional={
        "covariance": st.sampled_from(["unit", "shared", "diag"]),
        "prior_precision": st.sampled_from([0.1, 1.0, 100.0]),
        "noise": st.sampled_from([1e-4, 0.01, 1.0, 10.0]),
        "hidden_noise": st.sampled_from([None, 0.1, 5.0]),
        "damping": st.sampled_from([0.0, 1e-2, 1.0]),
        "clip": st.sampled_from([None, 0.1, 10.0]),
        "bias_spread": st.sampled_from([0.0, 1.0, 5.0]),
        "seed": st.integers(0, 2**32 - 1),
        "dtype": st.sampled_from(["float64", "float32"]),
    },
)
invalid_entry = st.sampled_from(
    [
        {"covariance": "full"},
        {"prior_precision": 0.0},
        {"prior_precision": np.inf},
        {"noise": np.nan},
        {"noise": -1.0},
        {"hidden_noise": -1.0},
        {"damping": -1e-3},
        {"clip": 0.0},
        {"bias_spread": -1.0},
        {"dtype": "int8"},
    ]
)
network_config = st.builds(
    lambda valid, invalid: {**valid, **invalid},
    valid_network_config,
    st.one_of(st.just({}), st.just({}), st.just({}), invalid_entry),
)

fit_config = st.fixed_dictionaries(
    {},
    optional={
        "batch_size": st.sampled_from([1, 2, 3, 7, 100, 1, 2, 3, 7, 100, 0, -2, 1.5]),
        "passes": st.sampled_from([1, 2, 0]),
        "shuffle": st.booleans(),
    },
)


@st.composite
def datasets(draw, classifier: bool = False):
    """``X, y`` with random shape and dtype, sometimes with NaN / inf in random places."""
    n = draw(st.sampled_from([1, 2, 3, 5, 8, 12, 12, 12]))
    d = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1e-3, 1.0, 100.0]))
    X = rng.normal(0.0, scale, (n, d))
    dtype = draw(st.sampled_from(["float64", "float32", "int64", "bool"]))
    X = X.astype(dtype)
    if classifier:
        y = rng.integers(0, draw(st.sampled_from([1, 2, 2, 3, 3])), n)
        if draw(st.booleans()):
            y = np.array(["a", "b", "c"])[y]
    else:
        y = (
            rng.normal(size=(n, draw(st.integers(1, 2))))
            if draw(st.booleans())
            else rng.normal(size=n)
        )
    poison = draw(st.sampled_from([None, None, None, None, "X", "y"]))
    if poison == "X" and np.issubdtype(X.dtype, np.floating):
        X = X.copy()
        X.flat[draw(st.integers(0, X.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    elif poison == "y" and not classifier:
        y = y.copy()
        y.flat[draw(st.integers(0, y.size - 1))] = draw(st.sampled_from([np.nan, np.inf]))
    return X, y


def _outcome(what: str, error: Exception | None = None) -> None:
    """Label the example for ``pytest --hypothesis-show-statistics``."""
    event(f"{what}: " + ("ok" if error is None else type(error).__name__))


def _fits(estimator, X, y, label: str) -> bool:
    """Fit an estimator; on a documented refusal check that nothing was fitted."""
    try:
        estimator.fit(X, y)
    except DOCUMENTED as error:
        _outcome(label, error)
        assert not hasattr(estimator, "network_")
        return False
    _outcome(label)
    return True


def _state(net: Network):
    state = copy.deepcopy({k: v for k, v in vars(net).items() if k not in ("layers", "head")})
    if "rng_" in state:  # a generator compares by identity: compare its state
        state["rng_"] = state["rng_"].bit_generator.state
    return state


def _assert_healthy(net: Network, X) -> None:
    report = net.health()
    assert report.ok, str(report)
    Xf = np.asarray(X, dtype=float)
    out = net.predict_proba(Xf) if net.head.is_classifier else net.predict(Xf)
    assert np.all(np.isfinite(out))


@FUZZ
@given(
    hidden=st.lists(valid_layer, max_size=2),
    config=network_config,
    fit=fit_config,
    data=datasets(),
    more=datasets(),
)
def test_network_fit_and_partial_fit_never_corrupt(hidden, config, fit, data, more):
    X, y = data
    try:
        net = Network(hidden, **config)
    except DOCUMENTED as error:
        _outcome("construct", error)
        return
    try:
        net.fit(X, y, **fit)
    except DOCUMENTED as error:
        _outcome("fit", error)
        assert not net.is_fitted
        return
    _outcome("fit")
    _assert_healthy(net, X)
    before = _state(net)
    X2, y2 = more
    try:
        net.partial_fit(X2, y2, batch_size=fit.get("batch_size", 1))
    except DOCUMENTED as error:
        _outcome("partial_fit", error)
        after = _state(net)
        for key, value in before.items():
            if key.endswith("_") and key != "training_time_":
                np.testing.assert_equal(after[key], value)
        return
    _outcome("partial_fit")
    _assert_healthy(net, X2)


@FUZZ
@given(
    hidden=st.lists(st.integers(1, 5), max_size=2).map(tuple),
    activation=st.sampled_from([*sorted(layers.LAYERS), *sorted(layers.LAYERS), "sigmoid"]),
    covariance=st.sampled_from(["unit", "shared", "diag"]),
    batch_size=st.sampled_from([1, 4, 50]),
    data=datasets(classifier=True),
)
def test_classifier_on_random_labels(hidden, activation, covariance, batch_size, data):
    X, y = data
    clf = BayesLayersClassifier(
        hidden=hidden,
        activation=activation,
        covariance=covariance,
        batch_size=batch_size,
        random_state=0,
    )
    if not _fits(clf, X, y, "classifier fit"):
        return
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), len(clf.classes_))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(clf.predict(X)) <= set(clf.classes_)
    assert clf.health().ok


@FUZZ
@given(
    params=st.fixed_dictionaries(
        {},
        optional={
            "hidden": st.sampled_from([(), (3,), (2, 2), 4, (0,), "3", None]),
            "head": st.sampled_from(["gaussian", "onehot", heads.Gaussian(learn_noise=True), 1]),
            "passes": st.sampled_from([1, 2, -1]),
            "noise": st.sampled_from([0.01, 1.0, 0.0]),
            "random_state": st.sampled_from([None, 0, 123, np.random.RandomState(0), -5]),
        },
    ),
    data=datasets(),
)
def test_regressor_configurations(params, data):
    X, y = data
    reg = BayesLayersRegressor(batch_size=4, **params)
    if not _fits(reg, X, y, "regressor fit"):
        return
    mean, std = reg.predict(X, return_std=True, hidden="sample", n_samples=5)
    assert np.all(np.isfinite(mean)) and np.all(std > 0)


@pytest.mark.parametrize("structure", ["unit", "shared", "diag"])
def test_tiny_noise_on_repeated_rows_stays_positive_definite(structure):
    """Many identical rows with almost no noise drive the variance along them towards zero:
    the posterior must stay positive definite or the update be refused, never go NaN."""
    X = np.tile([[1.0, -2.0]], (300, 1))
    y = np.full(300, 3.0)
    net = Network([layers.Linear(2)], covariance=structure, noise=1e-12, hidden_noise=1e-12)
    try:
        net.fit(X, y)
    except DOCUMENTED:
        assert not net.is_fitted
        return
    _assert_healthy(net, X)
