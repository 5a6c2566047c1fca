"""Threads: concurrent training calls on one network lose no update; the lock stays invisible
to copies, pickling, scikit-learn's clone and save/load."""

from __future__ import annotations

import copy
import pickle
import threading
import time

import numpy as np
import pytest
from sklearn.base import clone

import bayeslayers
from bayeslayers import Network, heads, layers
from bayeslayers._threads import blas_threads, training_lock
from bayeslayers.sklearn import BayesLayersRegressor

N_CALLS = 12  # partial_fit calls per thread
ROWS = 5  # rows per call


def _chunks(n_threads: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=3)
    out = []
    for _ in range(n_threads * N_CALLS):
        X = rng.normal(size=(ROWS, 3))
        out.append((X, X @ w + 0.1 * rng.normal(size=ROWS)))
    return out


@pytest.fixture
def slow_head_update(monkeypatch):
    """Make every head update yield the interpreter (``sleep``), so two threads interleave
    inside their updates on every call instead of by chance."""
    real = heads.Gaussian.update

    def update(self, state, X, T, fraction):
        time.sleep(0.002)
        return real(self, state, X, T, fraction)

    monkeypatch.setattr(heads.Gaussian, "update", update)


def _linear(covariance: str) -> Network:
    return Network([], covariance=covariance, noise=0.5)


@pytest.mark.parametrize("covariance", ["unit", "shared"])  # "diag" (ADF) depends on the order
def test_two_threads_partial_fit_lose_no_update(slow_head_update, covariance):
    """An exact linear model's posterior does not depend on the order of the rows, so two
    threads feeding one network must reach the sequential posterior, with every row counted."""
    chunks = _chunks(2)
    sequential = _linear(covariance)
    for X, y in chunks:
        sequential.partial_fit(X, y, batch_size=2)

    net = _linear(covariance)
    net.partial_fit(*chunks[0], batch_size=2)  # fitted first: both threads only update
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def feed(part):
        try:
            start.wait()
            for X, y in part:
                net.partial_fit(X, y, batch_size=2)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=feed, args=(chunks[1 + i :: 2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert net.n_samples_seen_ == sequential.n_samples_seen_ == len(chunks) * ROWS
    np.testing.assert_allclose(
        net.head_state_.post.mean, sequential.head_state_.post.mean, rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(
        net.head_state_.post.cov, sequential.head_state_.post.cov, rtol=1e-10, atol=1e-12
    )


def test_fit_and_partial_fit_from_two_threads_are_serialized(slow_head_update):
    """``fit`` (which calls ``partial_fit`` per pass) holds the same reentrant lock: a
    concurrent ``partial_fit`` runs wholly before or after it, never inside."""
    chunks = _chunks(1)
    X = np.vstack([c[0] for c in chunks])
    y = np.concatenate([c[1] for c in chunks])
    net = _linear("unit").fit(X[:ROWS], y[:ROWS])
    done = threading.Event()

    def other():
        net.partial_fit(X[:ROWS], y[:ROWS])
        done.set()

    thread = threading.Thread(target=other)
    with training_lock(net):  # the fit below waits for nobody; the other thread waits for us
        thread.start()
        time.sleep(0.05)
        assert not done.is_set()
        net.fit(X, y, passes=2, batch_size=ROWS)
        assert net.n_samples_seen_ == 2 * len(X)
    thread.join()
    assert net.n_samples_seen_ == 2 * len(X) + ROWS


def test_lock_is_per_network_and_not_part_of_the_state():
    X = np.random.default_rng(1).normal(size=(20, 2))
    y = X[:, 0] - X[:, 1]
    net = Network([layers.ReLU(3)]).fit(X, y)
    lock = training_lock(net)
    assert training_lock(net) is lock
    assert all(not isinstance(v, type(lock)) for v in vars(net).values())
    twin = copy.deepcopy(net)
    assert training_lock(twin) is not lock
    again = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(again.predict(X), net.predict(X))
    twin.partial_fit(X, y)  # a copy trains on its own
    assert twin.n_samples_seen_ == net.n_samples_seen_ + len(X)


def test_estimator_clone_and_save_after_concurrent_use(tmp_path):
    X = np.random.default_rng(2).normal(size=(30, 2))
    y = X.sum(axis=1)
    est = BayesLayersRegressor(hidden=(3,), random_state=0).fit(X, y)
    training_lock(est.network_)
    clone(est).fit(X, y)
    back = bayeslayers.load(est.network_.save(tmp_path / "m.npz"))
    np.testing.assert_array_equal(back.predict(X), est.network_.predict(X))


def test_blas_threads_restores_limits_and_ignores_none():
    from threadpoolctl import threadpool_info

    def blas_limits():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_limits()
    with blas_threads(1):
        assert all(n == 1 for n in blas_limits())
    assert blas_limits() == before
    with blas_threads(None):
        assert blas_limits() == before
    with pytest.raises(RuntimeError), blas_threads(1):
        raise RuntimeError
    assert blas_limits() == before
