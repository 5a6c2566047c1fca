"""The label-free rules of bayeslayers.defaults."""

from __future__ import annotations

import numpy as np
import pytest

from bayeslayers import Network, defaults, layers


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
