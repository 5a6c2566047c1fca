"""The head contract, run over every registered head (closed-form fits; ADVI in test_advi.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bayeslayers import conjugate, heads

CASES = [
    ("gaussian", {}),
    ("gaussian", {"learn_noise": True}),
    ("onehot", {}),
    ("probit", {"fit": "laplace"}),
    ("probit", {"fit": "adf"}),
    ("logistic", {"fit": "laplace"}),
]
IDS = [f"{kind}-{'-'.join(map(str, kw.values())) or 'default'}" for kind, kw in CASES]
D, K, N = 4, 3, 6


def _problem(head, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.c_[rng.normal(size=(N, D - 1)), np.ones(N)]
    if head.is_classifier:  # linearly separable labels
        T = head.encode(np.argmax(X @ rng.normal(size=(D, K)), axis=1), K)
    else:
        T = head.encode(rng.normal(size=(N, K)))
    return X, T


@pytest.mark.parametrize(("kind", "kwargs"), CASES, ids=IDS)
def test_registry_builds_every_head(kind, kwargs):
    head = heads.make_head(kind, **kwargs)
    assert head.kind == kind
    assert isinstance(head, heads.Head)
    assert heads.HEADS[kind] is type(head)


def test_unknown_kind_lists_the_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown head kind 'softmax'; allowed: \["):
        heads.make_head("softmax")


@pytest.mark.parametrize(("kind", "kwargs"), CASES, ids=IDS)
@pytest.mark.parametrize("structure", conjugate.STRUCTURES)
def test_head_contract(kind, kwargs, structure):
    """init -> update -> residual / predictive / proba: shapes, immutability, prior = unfitted."""
    head = heads.make_head(kind, **kwargs)
    X, T = _problem(head)
    state = head.init(np.zeros((D, K)), 0.5, structure, 1.0)
    assert isinstance(state.post, conjugate.WeightPosterior)
    C = state.post.mean.shape[1]
    m0, v0 = head.predictive(state, X)
    assert m0.shape == v0.shape == (N, C)
    np.testing.assert_allclose(m0, 0.0)
    prior_var = conjugate.marginal_variance(state.post, X)
    np.testing.assert_allclose(prior_var, 0.5 * np.sum(X**2, axis=1, keepdims=True) * np.ones(C))

    frozen = [np.copy(a) for a in (state.post.mean, state.post.cov)]
    new = head.update(state, X, T, 1.0)
    assert type(new) is type(state)
    np.testing.assert_array_equal(state.post.mean, frozen[0])  # the old state is untouched
    np.testing.assert_array_equal(state.post.cov, frozen[1])
    assert not np.allclose(new.post.mean, state.post.mean)

    E, J = head.residual(new, X, T)
    assert E.shape == (N, C)
    assert J.shape in {(D - 1, C), (N, D - 1, C)}
    assert np.all(np.isfinite(E)) and np.all(np.isfinite(J))
    _, v1 = head.predictive(new, X)
    assert np.all(v1 > 0)
    if head.is_classifier:
        proba = head.proba(new, X)
        assert proba.shape == (N, K)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        assert np.all(proba >= 0)


@pytest.mark.parametrize(("kind", "kwargs"), CASES, ids=IDS)
def test_sequential_updates_learn_the_training_labels(kind, kwargs):
    """Twenty passes of single-row updates fit the training data (labels, or least squares)."""
    head = heads.make_head(kind, **kwargs)
    X, T = _problem(head, seed=1)
    state = head.init(np.zeros((D, K)), 1.0, "unit", 0.01)
    for _ in range(20):
        for i in range(N):
            state = head.update(state, X[i : i + 1], T[i : i + 1], 1.0)
    if head.is_classifier:
        assert np.mean(head.proba(state, X).argmax(axis=1) == T.argmax(axis=1)) == 1.0
    else:  # N > D: the repeated data make the posterior mean the least-squares fit
        mean, _ = head.predictive(state, X)
        np.testing.assert_allclose(mean, X @ np.linalg.lstsq(X, T, rcond=None)[0], atol=0.15)


@pytest.mark.parametrize(
    ("kind", "kwargs"), [c for c in CASES if heads.HEADS[c[0]].is_classifier], ids=str
)
def test_classifier_encode_is_one_hot(kind, kwargs):
    head = heads.make_head(kind, **kwargs)
    np.testing.assert_array_equal(head.encode(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
