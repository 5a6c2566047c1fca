"""Merging networks trained from one prior: exact for models without hidden layers."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest

import bayeslayers
from bayeslayers import Network, heads, layers
from bayeslayers.heads.gaussian import NOISE_MEMORIES
from bayeslayers.merging import apply_deltas, network_delta

TOL = 1e-9


def _regression(n=240, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + 0.3 * rng.normal(size=n)
    return X, y, rng.normal(size=(40, d))


def _labels(X, seed=0):
    rng = np.random.default_rng(seed)
    return np.argmax(X[:, :3] + 0.5 * rng.normal(size=(len(X), 3)), axis=1)


def _shards(prior, X, y, split, batch_size=5):
    edges = np.cumsum([0, *split])
    return [
        copy.deepcopy(prior).partial_fit(X[a:b], y[a:b], batch_size=batch_size)
        for a, b in itertools.pairwise(edges)
    ]


HEADS = {
    "fixed-noise": lambda cov: heads.Gaussian(learn_noise=False, covariance=cov),
    "nig": lambda cov: heads.Gaussian(
        learn_noise=True, noise_memory=None, prior_evidence=False, covariance=cov
    ),
    # the temperature's evidence merges approximately (test_temperature_evidence_merges...)
    "onehot": lambda cov: heads.OneHot(
        noise_memory=None, prior_evidence=False, temperature=None, covariance=cov
    ),
}


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("covariance", ["unit", "shared"])
@pytest.mark.parametrize("split", [[240], [100, 140], [7, 50, 3, 90, 40, 50]])
def test_without_hidden_layers_the_merge_is_the_sequential_fit(head, covariance, split):
    X, y, Xt = _regression()
    Y = _labels(X) if head == "onehot" else y
    kw = {"head": HEADS[head](covariance), "noise": 0.5 if head == "fixed-noise" else None}
    sequential = Network([], **kw).fit(X, Y, batch_size=5, shuffle=False)
    prior = Network([], **kw).initialize(X[:3], Y[:3], classes=np.unique(Y))
    merged = bayeslayers.merge(prior, _shards(prior, X, Y, split))
    assert merged.n_samples_seen_ == len(X)
    if head == "onehot":
        np.testing.assert_allclose(merged.predict_proba(Xt), sequential.predict_proba(Xt), atol=TOL)
        return
    m1, s1 = sequential.predict(Xt, return_std=True)
    m2, s2 = merged.predict(Xt, return_std=True)
    np.testing.assert_allclose(m2, m1, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(s2, s1, rtol=TOL, atol=TOL)
    state, reference = merged.head_state_, sequential.head_state_
    assert state.a == pytest.approx(reference.a, rel=TOL)
    assert state.b == pytest.approx(reference.b, rel=TOL)


def test_the_full_memory_noise_statistics_and_evidence_merge_exactly():
    X, y, _ = _regression()
    full = NOISE_MEMORIES.index(np.inf)
    head = heads.Gaussian(prior_evidence=False)  # the default noise memories
    sequential = Network([], head=head).fit(X, y, batch_size=5, shuffle=False)
    prior = Network([], head=head).initialize(X[:3], y[:3])
    merged = bayeslayers.merge(prior, _shards(prior, X, y, [60, 30, 150]))
    assert len(merged.head_state_.memory) == len(NOISE_MEMORIES)
    np.testing.assert_allclose(
        merged.head_state_.memory[full], sequential.head_state_.memory[full], rtol=TOL
    )


def test_merging_one_network_gives_it_back_and_changes_nothing():
    X, y, Xt = _regression()
    prior = Network([layers.ReLU(8)], seed=1).initialize(X, y)
    trained = copy.deepcopy(prior).partial_fit(X, y, batch_size=4)
    before = [p.cov.copy() for p in prior.posteriors_]
    merged = bayeslayers.merge(prior, [trained])
    trained.head_state_ = trained.head.flush(trained.head_state_)  # as merge does, on a copy
    np.testing.assert_allclose(merged.predict(Xt), trained.predict(Xt), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(
        merged.predict(Xt, return_std=True)[1], trained.predict(Xt, return_std=True)[1], rtol=1e-7
    )
    for a, b in zip(before, prior.posteriors_, strict=True):
        np.testing.assert_array_equal(a, b.cov)
    assert merged is not prior and prior.n_samples_seen_ == 0
    assert [n.a for n in merged.noise_] == pytest.approx([n.a for n in trained.noise_])


def test_hidden_layer_shards_merge_to_a_healthy_network_close_to_sequential():
    X, y, Xt = _regression(n=400)
    sequential = Network([layers.ReLU(16)], seed=2).fit(X, y, batch_size=4, shuffle=False)
    prior = Network([layers.ReLU(16)], seed=2).initialize(X, y)
    merged = bayeslayers.merge(prior, _shards(prior, X, y, [200, 200], batch_size=4))
    assert merged.health().ok
    truth = Xt @ np.linalg.lstsq(X, y, rcond=None)[0]
    rmse = [np.sqrt(np.mean((n.predict(Xt) - truth) ** 2)) for n in (sequential, merged)]
    assert rmse[1] < 3 * rmse[0] + 0.1


def test_a_glm_head_merges_to_a_positive_definite_posterior():
    X, _, Xt = _regression()
    Y = _labels(X)
    net = Network([], head=heads.Probit(fit="adf"))
    sequential = copy.deepcopy(net).fit(X, Y, batch_size=5, shuffle=False)
    prior = net.initialize(X[:3], Y[:3], classes=[0, 1, 2])
    merged = bayeslayers.merge(prior, _shards(prior, X, Y, [120, 120]))
    assert merged.health().ok
    agree = np.mean(merged.predict(Xt) == sequential.predict(Xt))
    assert agree > 0.9


def test_mismatched_networks_are_refused():
    X, y, _ = _regression()
    prior = Network([layers.ReLU(4)]).initialize(X, y)
    other_features = Network([layers.ReLU(4)]).initialize(X[:, :3], y)
    with pytest.raises(ValueError, match=r"networks\[0\] has 3 features, the prior 4"):
        bayeslayers.merge(prior, [other_features])
    with pytest.raises(ValueError, match="layers"):
        bayeslayers.merge(prior, [Network([layers.ReLU(5)]).initialize(X, y)])
    with pytest.raises(ValueError, match="head"):
        bayeslayers.merge(prior, [Network([layers.ReLU(4)], noise=0.5).initialize(X, y)])
    with pytest.raises(ValueError, match="not fitted"):
        bayeslayers.merge(prior, [Network([layers.ReLU(4)])])
    with pytest.raises(ValueError, match=r"skip=False .* the prior skip=True"):
        bayeslayers.merge(prior, [Network([layers.ReLU(4)], skip=False).initialize(X, y)])
    fan_in = Network([layers.ReLU(4)], head_prior="fan_in").initialize(X, y)
    with pytest.raises(ValueError, match=r"head_prior='fan_in' .* the prior head_prior='flat'"):
        bayeslayers.merge(prior, [fan_in])
    blocks = Network([layers.ReLU(4)], head_prior="evidence").initialize(X, y)
    with pytest.raises(ValueError, match=r"head_blocks=True .* the prior head_blocks=False"):
        bayeslayers.merge(prior, [blocks])
    with pytest.raises(TypeError, match="sequence of Network"):
        bayeslayers.merge(prior, prior)
    labels = _labels(X)
    clf = Network([], head=heads.OneHot()).initialize(X, labels)
    renamed = Network([], head=heads.OneHot()).initialize(X, np.where(labels == 2, 5, labels))
    with pytest.raises(ValueError, match="classes"):
        bayeslayers.merge(clf, [renamed])


def test_a_merge_that_is_not_positive_definite_raises_and_changes_nothing():
    X, y, Xt = _regression()
    prior = Network([], noise=0.5).initialize(X, y)
    delta = network_delta(prior, copy.deepcopy(prior).partial_fit(X, y))
    bad = delta._replace(
        head=delta.head._replace(
            post=delta.head.post._replace(precision=-1e3 * delta.head.post.precision)
        )
    )
    before = prior.predict(Xt, return_std=True)
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        apply_deltas(prior, [bad])
    np.testing.assert_array_equal(prior.predict(Xt, return_std=True)[1], before[1])


@pytest.mark.parametrize("learn_noise", [False, True])
def test_the_log_evidence_of_a_linear_model_merges_to_the_sequential_one(learn_noise):
    """Batch size 1, one output: the prequential evidence is the log marginal likelihood."""
    X, y, _ = _regression(n=120)
    head = heads.Gaussian(learn_noise=learn_noise, noise_memory=None, prior_evidence=False)
    kw = {"head": head, "noise": None if learn_noise else 0.5}
    sequential = Network([], **kw).fit(X, y, batch_size=1, shuffle=False)
    prior = Network([], **kw).initialize(X[:3], y[:3])
    merged = bayeslayers.merge(prior, _shards(prior, X, y, [20, 70, 30], batch_size=1))
    shards_sum = sum(s.log_evidence_ for s in _shards(prior, X, y, [20, 70, 30], batch_size=1))
    assert merged.log_evidence_ == pytest.approx(sequential.log_evidence_, rel=TOL)
    assert abs(shards_sum - sequential.log_evidence_) > 1e-3  # the correction matters


def test_temperature_evidence_merges_by_the_power_law_weights():
    """A one-hot head's temperature evidence: one network merged gives its own back; shards
    add what each scored beyond the prior, the prior's decayed to the merged row count."""
    X, _, Xt = _regression()
    Y = _labels(X)
    head = heads.OneHot(noise_memory=None, prior_evidence=False)
    prior = Network([], head=head).fit(X[:100], Y[:100], batch_size=5)
    base = prior.head_state_.calibration
    one = copy.deepcopy(prior).partial_fit(X[100:], Y[100:], batch_size=5)
    merged = bayeslayers.merge(prior, [one])
    flushed = one.head.flush(one.head_state_).calibration
    np.testing.assert_allclose(merged.head_state_.calibration.evidence, flushed.evidence)
    one.head_state_ = one.head.flush(one.head_state_)  # as merge does, on a copy
    np.testing.assert_allclose(merged.predict_proba(Xt), one.predict_proba(Xt), atol=TOL)
    shards = _shards(prior, X[100:], Y[100:], [60, 80])
    merged = bayeslayers.merge(prior, shards)
    cal = merged.head_state_.calibration
    assert cal.scored == len(X) and cal.n_pending == 0
    gains = []
    for shard in shards:
        own = shard.head.flush(shard.head_state_).calibration
        gains.append(own.evidence - (base.scored / own.scored) ** 2 * base.evidence)
    expected = (base.scored / len(X)) ** 2 * base.evidence + sum(gains)
    np.testing.assert_allclose(cal.evidence, expected, rtol=1e-12)


def test_block_precisions_merge_by_rows_seen_and_count_the_prior_once():
    """With one prior precision per block of head inputs (``head_prior="evidence"``), each
    shard re-bases its own blocks; the merge leaves those re-basings out, averages the
    blocks' precisions by rows seen and re-bases on them: without hidden layers the merged
    head is closed-form BLR on both shards' rows at prior precision diag(alpha per row).
    One shard merged gives it back."""
    X, y, Xt = _regression(n=400)
    head = heads.Gaussian(learn_noise=True, noise_memory=None)
    prior = Network([], head=head, head_prior="evidence").initialize(X[:3], y[:3])
    shards = _shards(prior, X, y, [200, 200])
    alphas = [s.head_state_.alpha for s in shards]
    assert all(a.shape == (2,) and not np.array_equal(a, [1.0, 1.0]) for a in alphas)
    merged = bayeslayers.merge(prior, shards)
    state = merged.head_state_
    np.testing.assert_allclose(state.alpha, (alphas[0] + alphas[1]) / 2, rtol=1e-12)
    design = np.column_stack([X, np.ones(len(X))])
    precision = np.diag(np.repeat(state.alpha, state.blocks)) + design.T @ design
    expected = np.linalg.solve(precision, design.T @ y)
    np.testing.assert_allclose(state.post.mean[:, 0], expected, rtol=1e-8, atol=1e-10)
    one = bayeslayers.merge(prior, shards[:1])
    np.testing.assert_allclose(one.predict(Xt), shards[0].predict(Xt), rtol=1e-9, atol=1e-12)
