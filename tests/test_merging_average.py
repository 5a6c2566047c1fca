"""Merging networks that keep an iterate average of the hidden means: it is not merged."""

from __future__ import annotations

import copy

import numpy as np

import bayeslayers
from bayeslayers import Network, layers
from bayeslayers.engine import forward
from bayeslayers.merging import apply_deltas, network_delta

RNG = np.random.default_rng(5)
X = RNG.normal(size=(240, 4))
Y = np.tanh(X @ RNG.normal(size=4)) + 0.1 * RNG.normal(size=240)
XT = RNG.normal(size=(30, 4))


def _at_posterior_means(net):
    """The mean prediction at the posterior means of every layer, whatever the average."""
    features, _ = forward(net.spec, net.posteriors_, XT)
    return (features @ net.head_state_.post.mean).ravel()


def test_shards_with_averages_merge_to_no_average_and_predict_at_the_merged_means():
    prior = Network([layers.ReLU(8), layers.ReLU(4)], average=True, seed=3)
    prior.fit(X[:60], Y[:60], batch_size=4)
    assert prior.averaging_  # a stale average a copy of the prior would carry
    shards = [
        copy.deepcopy(prior).partial_fit(X[a:b], Y[a:b], batch_size=4)
        for a, b in ((60, 150), (150, 240))
    ]
    assert all(s.average_ is not None and s.averaging_ for s in shards)
    deltas = [network_delta(prior, s) for s in shards]
    merged = apply_deltas(prior, deltas)
    assert merged.average_ is None and not merged.averaging_
    assert prior.average_ is not None  # the prior is not changed
    np.testing.assert_array_equal(merged.predict(XT), _at_posterior_means(merged))
    assert not np.allclose(merged.predict(XT), _at_posterior_means(prior))
    again = bayeslayers.merge(prior, shards)
    assert again.average_ is None
    np.testing.assert_array_equal(again.predict(XT), merged.predict(XT))
    # A later pass starts a fresh average from the merged posterior.
    merged.partial_fit(X[:20], Y[:20], batch_size=4)
    assert (merged.average_.rows, merged.average_.batches) == (20, 5)
    assert merged.averaging_


def test_one_averaged_network_merged_gives_its_posterior_mean_predictions_back():
    prior = Network([layers.ReLU(8)], average=True, seed=1).initialize(X, Y)
    trained = copy.deepcopy(prior).partial_fit(X, Y, batch_size=4)
    assert trained.averaging_
    assert not np.allclose(trained.predict(XT), _at_posterior_means(trained))
    merged = bayeslayers.merge(prior, [trained])
    assert merged.average_ is None
    trained.head_state_ = trained.head.flush(trained.head_state_)  # as merge does, on a copy
    np.testing.assert_allclose(
        merged.predict(XT), _at_posterior_means(trained), rtol=1e-8, atol=1e-10
    )
