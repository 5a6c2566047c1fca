"""The Gaussian head's learned noise: memory chosen by evidence, prior by evidence."""

from __future__ import annotations

import numpy as np
import pytest

from bayeslayers import Network, heads


def drifting_noise(n=2000, seed=0):
    """A linear target whose noise drops from sd 1 to sd 0.1 after the first quarter."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    sd = np.where(np.arange(n) < n // 4, 1.0, 0.1)
    return X, X @ [1.0, -0.5, 0.2] + sd * rng.normal(size=n)


def test_evidence_picks_a_short_memory_when_the_residuals_shrink():
    X, y = drifting_noise()
    plain = Network([], head=heads.Gaussian(noise_memory=None)).fit(X, y, shuffle=False)
    chosen = Network([]).fit(X, y, shuffle=False)
    assert plain.head.noise_variance(plain.head_state_) > 0.2  # early residuals dominate
    assert 0.007 < chosen.head.noise_variance(chosen.head_state_) < 0.015  # true: 0.01


def test_a_stationary_stream_gets_the_noise_whatever_memory_wins():
    """Stationary noise: every memory predicts about as well, and the estimate is right."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 2))
    y = X @ [0.5, 1.0] + 0.3 * rng.normal(size=3000)
    net = Network([]).fit(X, y, shuffle=False)
    evidence = net.head_state_.memory[:, 2]
    assert evidence.max() - evidence[0] < 5.0  # the full memory is within a few nats
    np.testing.assert_allclose(net.head.noise_variance(net.head_state_), 0.09, rtol=0.15)


def test_fixed_noise_when_the_network_sets_it():
    net = Network([], noise=0.5)
    assert net.head.learn_noise is False
    assert Network([]).head.learn_noise is True
    assert Network([], head=heads.Gaussian(learn_noise=True), noise=0.5).head.learn_noise


def test_evidence_prior_shrinks_an_overparameterized_head():
    """Few rows, many weak features: the evidence prior predicts better than alpha = 1."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 60))
    y = X[:, 0] + 0.5 * rng.normal(size=120)
    Xt = rng.normal(size=(500, 60))
    fixed = Network([], head=heads.Gaussian(prior_evidence=False)).fit(X, y)
    tuned = Network([]).fit(X, y)
    assert tuned.head_state_.alpha > 2.0
    err = [np.mean((n.predict(Xt) - Xt[:, 0]) ** 2) for n in (fixed, tuned)]
    assert err[1] < err[0]


@pytest.mark.parametrize("bad", ["sometimes", 3])
def test_bad_noise_memory(bad):
    with pytest.raises(ValueError, match="noise_memory"):
        heads.Gaussian(noise_memory=bad)
