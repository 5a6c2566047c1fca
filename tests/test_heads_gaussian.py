"""The Gaussian head's learned noise: memory chosen by evidence, prior by evidence."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bayeslayers import Network, heads
from bayeslayers.heads import gaussian


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


def test_each_memory_scores_the_student_t_predictive_of_the_batch_then_forgets():
    """Gain = log multivariate t_{2a}(r | 0, b/a I) after the decay e^{-n/M}; then
    a <- a + n/2, b <- b + q/2 (module docstring)."""
    rng = np.random.default_rng(0)
    memory = np.column_stack([rng.uniform(1, 50, 5), rng.uniform(0.1, 20, 5), rng.normal(size=5)])
    r = rng.normal(size=4)
    rows = gaussian._score_memories(memory.tolist(), 4.0, float(r @ r))
    for (a_next, b_next, evidence), (a, b, before), M in zip(
        rows, memory, gaussian.NOISE_MEMORIES, strict=True
    ):
        a, b = a * np.exp(-4 / M), b * np.exp(-4 / M)
        t = stats.multivariate_t(np.zeros(4), b / a * np.eye(4), df=2 * a)
        np.testing.assert_allclose(evidence - before, t.logpdf(r), rtol=1e-12)
        np.testing.assert_allclose([a_next, b_next], [a + 2, b + r @ r / 2], rtol=1e-14)
    huge = gaussian._score_memories(memory.tolist(), 1e6, 1e5)  # decay underflows: no 0 / 0
    assert np.all(np.isfinite(huge))


def test_the_noise_in_use_is_the_evidence_weighted_average():
    memory = np.array([[3.0, 1.5, -1000.0], [5.0, 1.0, -1001.0], [2.0, 8.0, -1e6]])
    w = np.exp(memory[:, 2] - memory[:, 2].max())
    w /= w.sum()
    a, b = gaussian._average_memories(memory.tolist())
    np.testing.assert_allclose(a, w @ memory[:, 0], rtol=1e-14)
    np.testing.assert_allclose(b / a, w @ (memory[:, 1] / memory[:, 0]), rtol=1e-14)
    memory[1, 2] = np.nan
    assert np.isnan(gaussian._average_memories(memory.tolist())).all()
