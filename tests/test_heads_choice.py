"""The Choice head: a one-hot teacher and a probit rival, the link chosen by evidence."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import bayeslayers
from bayeslayers import Network, heads, layers
from bayeslayers.sklearn import BayesLayersClassifier, BayesLayersRegressor


def _probit_labels(n: int = 300, seed: int = 0, scale: float = 1.5):
    """Binary labels drawn from a probit model on 3 features (the rival's likelihood)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (X @ np.array([1.0, -2.0, 0.5]) * scale + rng.normal(size=n) > 0).astype(int)
    return X, y


def _fit(head, X, y, hidden=(), **kw):
    return Network([layers.ReLU(u) for u in hidden], head=head, seed=3, **kw).fit(
        X, y, batch_size=1, shuffle=False
    )


def test_the_body_learns_exactly_what_it_learns_under_the_one_hot_head():
    X, y = _probit_labels()
    choice = _fit(heads.Choice(), X, y, hidden=(6,))
    onehot = _fit(heads.OneHot(), X, y, hidden=(6,))
    for a, b in zip(choice.posteriors_, onehot.posteriors_, strict=True):
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.cov, b.cov)
    teacher = choice.head_state_.teacher
    np.testing.assert_array_equal(teacher.post.mean, onehot.head_state_.post.mean)


def test_each_readout_is_the_head_it_stands_for_and_scores_its_own_evidence():
    """On fixed features (no hidden layer) the teacher is a one-hot fit, the rival a probit
    ADF fit, and each one's evidence is that network's own prequential evidence."""
    X, y = _probit_labels()
    choice = _fit(heads.Choice(), X, y)
    onehot = _fit(heads.OneHot(), X, y)
    probit = _fit(heads.Probit(fit="adf"), X, y)
    state = choice.head_state_
    np.testing.assert_allclose(state.teacher.post.mean, onehot.head_state_.post.mean, rtol=1e-12)
    np.testing.assert_allclose(state.rival.post.mean, probit.head_state_.post.mean, rtol=1e-12)
    np.testing.assert_allclose(state.rival.post.cov, probit.head_state_.post.cov, rtol=1e-12)
    np.testing.assert_allclose(
        state.log_evidence, [onehot.log_evidence_, probit.log_evidence_], rtol=1e-12
    )
    # follow the leader: never above the better readout's evidence by more than a row's worth
    assert choice.log_evidence_ <= max(state.log_evidence) + 1.0


def test_the_leader_makes_every_prediction():
    X, y = _probit_labels()
    Xt = np.random.default_rng(9).normal(size=(20, 3))
    choice = _fit(heads.Choice(), X, y)
    state = choice.head_state_
    assert state.log_evidence[1] > state.log_evidence[0] + 3  # probit labels: the rival wins
    assert choice.head.chosen(state) == "probit"
    probit = _fit(heads.Probit(fit="adf"), X, y)
    np.testing.assert_allclose(choice.predict_proba(Xt), probit.predict_proba(Xt), rtol=1e-10)
    lin = choice.predict_proba(Xt, hidden="linearized")
    np.testing.assert_allclose(lin, probit.predict_proba(Xt, hidden="linearized"), rtol=1e-10)
    # the same network with the evidence turned round predicts as the one-hot head
    flipped = copy.deepcopy(choice)
    flipped.head_state_ = state._replace(log_evidence=state.log_evidence[::-1].copy())
    onehot = _fit(heads.OneHot(), X, y)
    assert flipped.head.chosen(flipped.head_state_) == "onehot"
    np.testing.assert_allclose(flipped.predict_proba(Xt), onehot.predict_proba(Xt), rtol=1e-10)


def test_ties_go_to_the_teacher_and_the_rival_keeps_a_covariance_per_column():
    state = heads.Choice().init(np.zeros((3, 2)), 1.0, "shared", 1.0)
    assert state.leader == 0 and heads.Choice().chosen(state) == "onehot"
    assert state.teacher.post.structure == "shared" and state.rival.post.structure == "unit"


def test_shards_merge_each_readout_and_add_their_evidence():
    X, y = _probit_labels(n=240)
    prior = Network([], head=heads.Choice(), seed=3).initialize(X[:3], y[:3], classes=[0, 1])
    shards = [copy.deepcopy(prior).partial_fit(X[a:b], y[a:b]) for a, b in ((0, 100), (100, 240))]
    merged = bayeslayers.merge(prior, shards)
    gains = sum(s.head_state_.log_evidence for s in shards)
    np.testing.assert_allclose(merged.head_state_.log_evidence, gains, rtol=1e-12)
    sequential = Network([], head=heads.Choice(), seed=3).fit(X, y, batch_size=1, shuffle=False)
    assert merged.head.chosen(merged.head_state_) == sequential.head.chosen(sequential.head_state_)
    Xt = np.random.default_rng(2).normal(size=(30, 3))
    np.testing.assert_allclose(merged.predict_proba(Xt), sequential.predict_proba(Xt), atol=0.05)


def test_the_estimators_auto_head():
    X, y = _probit_labels(n=120)
    binary = BayesLayersClassifier((4,), random_state=0).fit(X, y)
    assert isinstance(binary.network_.head, heads.Choice)
    three = BayesLayersClassifier((4,), random_state=0).fit(X, y + (X[:, 0] > 1))
    assert isinstance(three.network_.head, heads.OneHot)
    plain = BayesLayersClassifier((4,), head="gaussian", random_state=0).fit(X, y)
    assert type(plain.network_.head) is heads.OneHot
    streamed = BayesLayersClassifier((4,), random_state=0).partial_fit(X, y, classes=[0, 1])
    assert isinstance(streamed.network_.head, heads.Choice)
    assert type(BayesLayersRegressor((4,)).fit(X, X[:, 0]).network_.head) is heads.Gaussian
    with pytest.raises(ValueError, match=r"head must be one of .*'auto'"):
        BayesLayersClassifier(head="softmax").fit(X, y)


def test_a_non_finite_rival_fails_the_step_and_leaves_the_network_unchanged():
    X, y = _probit_labels(n=40)
    net = _fit(heads.Choice(), X[:20], y[:20])
    before = copy.deepcopy(net.head_state_)
    bad = net.head_state_.rival
    net.head_state_ = net.head_state_._replace(
        rival=bad._replace(post=bad.post._replace(mean=np.full_like(bad.post.mean, np.nan)))
    )
    broken = copy.deepcopy(net.head_state_)
    with pytest.raises((FloatingPointError, np.linalg.LinAlgError), match="the head"):
        net.partial_fit(X[20:], y[20:])
    np.testing.assert_array_equal(net.head_state_.teacher.post.mean, before.teacher.post.mean)
    np.testing.assert_array_equal(net.head_state_.rival.post.mean, broken.rival.post.mean)
