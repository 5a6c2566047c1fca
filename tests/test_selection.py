"""Choosing candidates by prequential evidence in one pass."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from bayeslayers import Network, heads, layers
from bayeslayers.selection import select_by_evidence


def test_linear_candidates_are_ranked_by_their_marginal_likelihood():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X @ [0.2, -0.1, 0.05] + 0.3 * rng.normal(size=60)
    precisions = [0.01, 1.0, 100.0]
    sel = select_by_evidence(
        [Network([], noise=0.09, prior_precision=p) for p in precisions], X, y, chunk_size=7
    )
    Xb = np.column_stack([X, np.ones(60)])
    exact = [
        multivariate_normal(np.zeros(60), Xb @ Xb.T / p + 0.09 * np.eye(60)).logpdf(y)
        for p in precisions
    ]
    np.testing.assert_allclose(sel.log_evidence, exact, rtol=1e-10)
    assert sel.chosen == int(np.argmax(exact)) and sel.best is sel.networks[sel.chosen]


def test_a_network_beats_a_linear_model_on_a_curve():
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, (400, 1))
    y = np.sin(3 * X[:, 0]) + 0.1 * rng.normal(size=400)
    sel = select_by_evidence([Network([]), Network([layers.ReLU(30)])], X, y)
    assert sel.chosen == 1


def test_classifiers_and_bad_candidates():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 2))
    y = (X[:, 0] > 0).astype(int)
    sel = select_by_evidence([Network([layers.ReLU(5)], head=heads.OneHot())], X, y)
    assert np.isfinite(sel.log_evidence).all()
    with pytest.raises(ValueError, match="at least one"):
        select_by_evidence([], X, y)
    with pytest.raises(TypeError, match=r"candidates\[0\] must be a Network"):
        select_by_evidence(["net"], X, y)
    with pytest.raises(ValueError, match="fitted already"):
        select_by_evidence([sel.best], X, y)
