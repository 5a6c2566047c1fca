"""Stabilized forgetting of the hidden layers (``Network(memory=...)``)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_friedman1

import bayeslayers
from bayeslayers import Network, conjugate, forgetting, layers, training
from bayeslayers.evidence import STRONG
from bayeslayers.sklearn import BayesLayersRegressor


def _posterior(structure: str, rng: np.random.Generator) -> conjugate.WeightPosterior:
    """A prior with unit variances conditioned on 30 random rows."""
    post = conjugate.init(structure, np.zeros((4, 3)), 1.0)
    X = np.c_[rng.normal(size=(30, 3)), np.ones(30)]
    post, _ = conjugate.update(post, X, rng.normal(size=(30, 3)), noise=0.5)
    return post


def _covariances(post: conjugate.WeightPosterior) -> np.ndarray:
    """Per unit ``(m, D, D)``."""
    if post.structure == "diag":
        return np.stack([np.diag(v) for v in post.cov.T])
    return post.cov


@pytest.mark.parametrize("structure", sorted(forgetting.FORGETS))
def test_forgetting_is_the_precision_mix_with_the_prior(structure):
    rng = np.random.default_rng(0)
    post = _posterior(structure, rng)
    alpha, n_rows, memory = 2.0, 3.0, 1.5  # 1.5 rows per weight: 6 rows for D = 4
    out = forgetting.forget(post, n_rows, memory, alpha)
    lam = np.exp(-n_rows / (memory * 4))
    for before, after in zip(_covariances(post), _covariances(out), strict=True):
        expected = np.linalg.inv(lam * np.linalg.inv(before) + (1 - lam) * alpha * np.eye(4))
        np.testing.assert_allclose(after, expected, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(after, after.T)
        assert np.linalg.eigvalsh(after).min() > 0
    np.testing.assert_array_equal(out.mean, post.mean)
    assert out.cov is not post.cov and not np.shares_memory(out.cov, post.cov)


@pytest.mark.parametrize("structure", sorted(forgetting.FORGETS))
def test_forgetting_returns_to_the_prior_and_never_beyond(structure):
    rng = np.random.default_rng(1)
    post = _posterior(structure, rng)
    alpha = 1.0
    # the prior itself is a fixed point: a direction no row informs does not wind up
    prior = conjugate.init(structure, np.zeros((4, 3)), 1 / alpha)
    np.testing.assert_allclose(forgetting.forget(prior, 50.0, 1.0, alpha).cov, prior.cov)
    for n_rows in (1.0, 10.0, 1e4):
        out = forgetting.forget(post, n_rows, 1.0, alpha)
        for cov in _covariances(out):
            assert np.linalg.eigvalsh(cov).max() <= 1 / alpha * (1 + 1e-12)
    far = forgetting.forget(post, 1e6, 1.0, alpha)
    np.testing.assert_allclose(far.cov, prior.cov, atol=1e-12)


def test_no_memory_is_the_identity_and_a_long_one_tends_to_it():
    rng = np.random.default_rng(2)
    post = _posterior("unit", rng)
    assert forgetting.forget(post, 5.0, None, 1.0) is post
    X = rng.uniform(-1, 1, (200, 2))
    y = np.sin(3 * X[:, 0]) * X[:, 1]
    static = Network([layers.ReLU(8), layers.ReLU(6)], seed=0).fit(X, y)
    long = Network([layers.ReLU(8), layers.ReLU(6)], seed=0, memory=1e12).fit(X, y)
    np.testing.assert_allclose(long.predict(X), static.predict(X), rtol=1e-8, atol=1e-9)


def test_a_memory_lets_the_hidden_layers_keep_learning():
    """Friedman 1 at 4,000 rows: the static posterior freezes the hidden layer early; a short
    memory keeps it following its targets (RESULTS: 2.05 -> 1.25 RMSE at 10,000 rows)."""
    X, y = make_friedman1(5000, noise=1.0, random_state=0)

    def rmse(memory):
        reg = BayesLayersRegressor((50,), random_state=0, memory=memory).fit(X[:4000], y[:4000])
        return float(np.sqrt(np.mean((reg.predict(X[4000:]) - y[4000:]) ** 2)))

    static, forgetting_ = rmse(None), rmse(4.0)
    assert forgetting_ < 0.85 * static


def test_the_race_winner_is_the_winner_fitted_alone():
    """memory="evidence" keeps the candidate the race chose on the first rows; the kept
    network has made exactly the one pass that candidate makes on its own."""
    X, y = make_friedman1(4000, noise=1.0, random_state=1)
    X, y = (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()  # as the estimators see them
    raced = Network([layers.ReLU(20)], seed=4, memory="evidence").fit(
        X, y, batch_size=8, shuffle=False
    )
    assert raced.memory_ == 4.0  # on Friedman 1 the drifting posterior wins strongly
    alone = Network([layers.ReLU(20)], seed=4, memory=4.0).fit(X, y, batch_size=8, shuffle=False)
    np.testing.assert_allclose(raced.predict(X), alone.predict(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(raced.log_evidence_, alone.log_evidence_, rtol=1e-12)


def test_the_race_keeps_the_static_posterior_unless_beaten_strongly():
    X, y = make_friedman1(800, noise=1.0, random_state=2)
    net = Network([layers.ReLU(10)], seed=0).initialize(X, y)
    T = y[:, None]
    for n_rows in (40, 400):
        order = np.arange(n_rows)
        candidates = training.race_candidates(net.spec, net.state, "memory")
        won, _, evidence = training.race(
            net.spec, net.state, X, T, order, 1, 1.0, "auto", candidates
        )
        memory = won["memory"]
        scores = {
            m: training.run_pass(
                net.spec._replace(memory=m),
                net.state,
                X,
                T,
                order=order,
                batch_size=1,
                fraction=1.0,
                sweeps="auto",
            )[1]
            for m in forgetting.CANDIDATES
        }
        strong = scores[4.0] > scores[None] + STRONG
        assert memory == (4.0 if strong else None) and evidence == scores[memory]
    # nothing that can forget: no candidates, no race
    shared = Network([layers.ReLU(4)], covariance="shared", seed=0).initialize(X, y)
    assert training.race_candidates(shared.spec, shared.state, "memory") == []
    assert training.race(shared.spec, shared.state, X, T, order, 1, 1.0, 1, []) == (
        {},
        shared.state,
        0.0,
    )


def test_memory_round_trips_through_a_model_file(tmp_path):
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(60, 3)), rng.normal(size=60)
    for memory in (8.0, "evidence"):
        net = Network([layers.ReLU(5)], covariance="diag", memory=memory, seed=1).fit(X, y)
        back = bayeslayers.load(net.save(tmp_path / "m.npz"))
        assert back.memory == memory
        assert getattr(back, "memory_", "unset") == getattr(net, "memory_", "unset")
        net.partial_fit(X[:10], y[:10])
        back.partial_fit(X[:10], y[:10])
        np.testing.assert_array_equal(back.predict(X), net.predict(X))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"memory": "short"}, TypeError, "memory must be None, 'evidence' or a number"),
        ({"memory": True}, TypeError, "memory must be None, 'evidence' or a number"),
        ({"memory": 0.0}, ValueError, "memory must be a finite number > 0"),
        ({"memory": float("nan")}, ValueError, "memory must be a finite number > 0"),
        ({"memory": 4.0, "covariance": "shared"}, ValueError, r"can forget.*\['shared'\]"),
    ],
)
def test_bad_memory_is_refused_when_the_network_is_built(kwargs, error, match):
    with pytest.raises(error, match=match):
        Network([layers.ReLU(3)], **kwargs)


def test_the_race_runs_only_on_rows_that_outnumber_the_longest_memory():
    longest = max(m for m in forgetting.CANDIDATES if m is not None)
    # 1/8 of 4,000 rows in whole batches of 32 (512), against memories of 11-wide rows
    assert forgetting.race_rows(4000, 32, [11]) == 512
    assert forgetting.race_rows(4000, 1, [11, 51]) == 500
    # a 65-wide layer's memory is longer than the first eighth of 1,347 rows: no race
    assert longest * 65 > 169 and forgetting.race_rows(1347, 1, [65]) == 0
    assert forgetting.race_rows(4000, 32, []) == 0  # no hidden layer
