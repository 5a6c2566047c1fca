"""One pass over the data: training.run_pass."""

from __future__ import annotations

import numpy as np
import pytest

from bayeslayers import Network, engine, forgetting, layers, training
from bayeslayers.evidence import STRONG


def _setup(n=48, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 1))
    y = np.sin(3 * X[:, 0]) + 0.1 * rng.normal(size=n)
    net = Network([layers.ReLU(8)]).initialize(X, y)
    return net.spec, net.state, X, net.head.encode(y)


def test_run_pass_leaves_its_input_state_untouched_and_matches_train_step():
    spec, state, X, T = _setup()
    before = [p.mean.copy() for p in state.hidden]
    order = np.arange(len(X))
    out, log_ev = training.run_pass(spec, state, X, T, order=order, batch_size=5, fraction=1.0)
    for p, m in zip(state.hidden, before, strict=True):
        np.testing.assert_array_equal(p.mean, m)
    # the same pass step by step through the engine
    ref, total = state, 0.0
    for start in range(0, len(X), 5):
        ref, info = engine.train_step(spec, ref, X[start : start + 5], T[start : start + 5], 1.0)
        total += info.log_predictive
    np.testing.assert_allclose(out.hidden[0].mean, ref.hidden[0].mean, rtol=1e-12)
    np.testing.assert_allclose(out.head.post.mean, ref.head.post.mean, rtol=1e-12)
    np.testing.assert_allclose(log_ev, total, rtol=1e-12)


def test_run_pass_counts_evidence_once_per_batch_and_reports_every_batch():
    spec, state, X, T = _setup()
    seen: list[int] = []
    order = np.random.default_rng(1).permutation(len(X))
    one = training.run_pass(spec, state, X, T, order=order, batch_size=10, fraction=1.0)
    two, log_ev = training.run_pass(
        spec,
        state,
        X,
        T,
        order=order,
        batch_size=10,
        fraction=1.0,
        sweeps=2,
        on_batch=lambda s, done: seen.append(done),
    )
    assert seen == [10, 20, 30, 40, 48]
    assert np.isfinite(log_ev)
    assert not np.allclose(two.hidden[0].mean, one[0].hidden[0].mean)  # sweeps change the fit
    # one batch of every row: the evidence is that batch's density before its first sweep,
    # whatever the number of sweeps
    whole = [
        training.run_pass(spec, state, X, T, order=order, batch_size=48, fraction=1, sweeps=k)[1]
        for k in (1, 3)
    ]
    assert whole[0] == whole[1]


def test_the_visiting_order_matters_for_hidden_layers():
    spec, state, X, T = _setup()
    forward = training.run_pass(spec, state, X, T, order=np.arange(48), batch_size=1, fraction=1)
    backward = training.run_pass(
        spec, state, X, T, order=np.arange(48)[::-1], batch_size=1, fraction=1
    )
    assert not np.allclose(forward[0].hidden[0].mean, backward[0].hidden[0].mean)


def test_race_candidates_put_the_reference_first_and_handicap_a_memory():
    spec, state, X, T = _setup()
    memory = training.race_candidates(spec, state, "memory")
    assert memory[0] == ({"memory": None}, 0.0)  # the static posterior is the reference
    assert [c["memory"] for c, _ in memory] == list(forgetting.CANDIDATES)
    assert all(h == STRONG for c, h in memory[1:])  # a memory must win strongly
    # the two priors stand equal; the flat one is the reference and wins ties
    assert training.race_candidates(spec, state, "head_prior") == [
        ({"head_prior": "flat"}, 0.0),
        ({"head_prior": "fan_in"}, 0.0),
    ]
    linear = Network([]).initialize(X, T[:, 0])  # no hidden layers: nothing to race
    assert training.race_candidates(linear.spec, linear.state, "head_prior") == []
    assert training.race_candidates(linear.spec, linear.state, "memory") == []
    with pytest.raises(ValueError, match="setting must be 'memory' or 'head_prior'"):
        training.race_candidates(spec, state, "damping")


def test_the_race_returns_the_winner_of_evidence_less_handicap():
    spec, state, X, T = _setup(n=64)
    order = np.arange(len(X))
    candidates = training.race_candidates(spec, state, "head_prior")
    scores = {
        c["head_prior"]: training.run_pass(
            spec._replace(**c), state, X, T, order=order, batch_size=1, fraction=1.0
        )
        for c, _ in candidates
    }
    won, out, evidence = training.race(spec, state, X, T, order, 1, 1.0, "auto", candidates)
    best = max(scores, key=lambda k: (scores[k][1], k == "flat"))  # the flat one on ties
    assert won == {"head_prior": best} and evidence == scores[best][1]
    np.testing.assert_array_equal(out.head.post.mean, scores[best][0].head.post.mean)
    # a handicap larger than any difference keeps the reference
    handicapped = [candidates[0], (candidates[1][0], 1e9)]
    assert training.race(spec, state, X, T, order, 1, 1.0, "auto", handicapped)[0] == {
        "head_prior": "flat"
    }
