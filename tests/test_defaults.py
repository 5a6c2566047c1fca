"""The label-free rules of bayeslayers.defaults."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bayeslayers import Network, defaults, heads, layers


@pytest.mark.parametrize(
    ("value", "n_features", "depth", "expected"),
    [
        ("auto", 10, 1, True),
        ("auto", 300, 1, False),
        ("auto", defaults.AUTO_UNIT_MAX - 1, 2, True),  # inputs plus bias fill the budget
        ("auto", defaults.AUTO_UNIT_MAX, 1, False),
        ("auto", None, 1, False),  # before the first call
        ("auto", 10, 0, False),  # nothing to skip without hidden layers
        (True, 300, 1, True),
        (True, 10, 0, False),
        (False, 10, 1, False),
        (np.bool_(True), 10, 1, True),
    ],
)
def test_skip_rule(value, n_features, depth, expected):
    assert defaults.skip(value, n_features, depth) is expected


@pytest.mark.parametrize(("n_features", "expected"), [(10, True), (300, False)])
def test_skip_auto_resolves_from_the_width_of_the_first_call(n_features, expected):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(8, n_features)), rng.normal(size=8)
    net = Network([layers.ReLU(3)])  # skip="auto"
    assert net.skip == "auto" and not net.spec.skip  # the width is not known yet
    net.initialize(X, y)
    assert net.spec.skip is expected
    assert net.head_state_.post.mean.shape == (3 + expected * n_features + 1, 1)


@pytest.mark.parametrize(
    ("covariance", "head", "n_outputs", "expected"),
    [
        ("auto", heads.OneHot(), 10, "shared"),
        ("auto", heads.OneHot(), 2, "shared"),
        ("auto", heads.Gaussian(), 3, "shared"),
        ("auto", heads.Gaussian(), 1, "unit"),  # one column: nothing to share
        ("auto", heads.OneHot(), None, "unit"),  # before the first call
        ("auto", heads.Probit(), 10, "unit"),  # each column has its own curvature
        ("auto", heads.Logistic(), 10, "unit"),
        ("auto", heads.OneHot(covariance="unit"), 10, "unit"),  # the head's own wins
        ("diag", heads.OneHot(), 10, "diag"),  # a network-wide structure applies to the head
        ("diag", heads.OneHot(covariance="shared"), 10, "shared"),
    ],
)
def test_head_structure_rule(covariance, head, n_outputs, expected):
    assert defaults.head_structure(covariance, head, n_outputs) == expected


@pytest.mark.parametrize("kind", sorted(heads.HEADS))
def test_every_head_declares_whether_its_columns_share_one_covariance(kind):
    assert isinstance(heads.HEADS[kind].shares_covariance, bool)


@pytest.mark.parametrize(
    ("head", "make_y"),
    [
        (heads.OneHot(), lambda X: np.argmax(X[:, :4], axis=1)),
        (heads.Gaussian(), lambda X: np.c_[np.sin(X[:, 0]), X[:, 1] * X[:, 2], X[:, 3]]),
    ],
    ids=["onehot", "gaussian-3-outputs"],
)
def test_the_shared_head_is_the_per_unit_head_in_one_matrix(head, make_y):
    """The rule's "shared" head gives the per-unit head's posterior and predictions."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(120, 5))
    y = make_y(X)
    auto = Network([layers.ReLU(8)], head, seed=0).fit(X, y)
    unit = Network([layers.ReLU(8)], replace(head, covariance="unit"), seed=0).fit(X, y)
    assert auto.spec.head_structure == "shared" and auto.head_state_.post.cov.ndim == 2
    assert unit.head_state_.post.cov.ndim == 3
    for cov in unit.head_state_.post.cov:
        np.testing.assert_allclose(cov, auto.head_state_.post.cov, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(auto.head_state_.post.mean, unit.head_state_.post.mean, rtol=1e-9)
    if head.is_classifier:
        np.testing.assert_allclose(auto.predict_proba(X), unit.predict_proba(X), rtol=1e-9)
    else:
        for a, b in zip(
            auto.predict(X, return_std=True), unit.predict(X, return_std=True), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-9)
