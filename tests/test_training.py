"""One pass over the data: training.run_pass."""

from __future__ import annotations

import numpy as np

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


def test_race_candidates_are_every_combination_with_summed_handicaps():
    spec, state, X, T = _setup()
    both = training.race_candidates(spec, state, memory=True, head_prior=True)
    assert both[0] == ({"memory": None, "head_prior": "flat"}, 0.0)  # the reference first
    changes = [c for c, _ in both]
    assert len(both) == len(forgetting.CANDIDATES) * 2
    assert {(c["memory"], c["head_prior"]) for c in changes} == {
        (m, p) for m in forgetting.CANDIDATES for p in ("flat", "fan_in")
    }
    for c, handicap in both:  # a memory must win strongly; the two priors stand equal
        assert handicap == (0.0 if c["memory"] is None else STRONG)
    assert training.race_candidates(spec, state, memory=False, head_prior=True) == [
        ({"head_prior": "flat"}, 0.0),
        ({"head_prior": "fan_in"}, 0.0),
    ]
    assert training.race_candidates(spec, state, memory=False, head_prior=False) == []
    linear = Network([]).initialize(X, T[:, 0])  # no hidden layers: no prior to race
    assert training.race_candidates(linear.spec, linear.state, memory=True, head_prior=True) == []


def test_the_race_returns_the_winner_of_evidence_less_handicap():
    spec, state, X, T = _setup(n=64)
    order = np.arange(len(X))
    candidates = training.race_candidates(spec, state, memory=False, head_prior=True)
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
