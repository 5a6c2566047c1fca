"""Atomic updates: a failure anywhere (bad input, between two layers' updates, mid-pass, a
non-finite update, an interrupt) leaves the model exactly as it was; predictions never change
it."""

from __future__ import annotations

import copy
import gc
import sys

import numpy as np
import pytest

from bayeslayers import Network, conjugate, heads, layers, load
from bayeslayers.sklearn import BayesLayersClassifier, BayesLayersRegressor

STRUCTURES = ["unit", "shared", "diag"]


def _leaves(obj):
    """Flatten arrays, tuples, lists, dicts and scalars into comparable leaves."""
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, tuple | list):
        return [leaf for item in obj for leaf in _leaves(item)]
    if isinstance(obj, dict):
        return [leaf for key in sorted(obj) for leaf in (key, *_leaves(obj[key]))]
    return [obj]


def _state(net: Network):
    """A deep snapshot of everything training may change."""
    keep = {k: v for k, v in vars(net).items() if k not in ("layers", "head", "rng_")}
    snap = copy.deepcopy(keep)
    snap["rng_"] = net.rng_.bit_generator.state
    return snap


def _assert_same_state(before, net: Network) -> None:
    after = _state(net)
    assert sorted(before) == sorted(after)
    for key in before:
        a, b = _leaves(before[key]), _leaves(after[key])
        assert len(a) == len(b), key
        for x, y in zip(a, b, strict=True):
            if isinstance(x, np.ndarray):
                assert x.dtype == y.dtype and np.array_equal(x, y), key
            else:
                assert x == y, key


def _data(n=40, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, np.sin(X[:, 0]) + X[:, 1]


def _fitted(structure="unit", n_hidden=2):
    X, y = _data()
    net = Network([layers.ReLU(6) for _ in range(n_hidden)], covariance=structure, seed=1)
    return net.fit(X[:20], y[:20], batch_size=4), X[20:], y[20:]


class _Injected(Exception):
    pass


def _fail_on_call(monkeypatch, k: int, exc: BaseException):
    """Make the k-th call (1-based) of ``conjugate.update`` raise ``exc``.

    Within one training step the head is updated first (call 1), then the hidden layers from
    the top down, so ``k = 2`` fails after the head and before any hidden layer, ``k = 3``
    between the two hidden layers.
    """
    real = conjugate.update
    calls = {"n": 0}

    def update(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == k:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(conjugate, "update", update)
    return calls


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("k", [3, 6])
@pytest.mark.parametrize("exc", [_Injected("boom"), KeyboardInterrupt(), np.linalg.LinAlgError()])
def test_failure_between_layers_leaves_network_unchanged(monkeypatch, structure, k, exc):
    net, X, y = _fitted(structure)
    before = _state(net)
    calls = _fail_on_call(monkeypatch, k, exc)
    with pytest.raises(type(exc)):
        net.partial_fit(X, y, batch_size=4)
    assert calls["n"] == k  # the failure happened where intended: k = 6 is mid-pass
    _assert_same_state(before, net)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_training_after_a_failure_equals_training_without_it(monkeypatch, structure):
    net, X, y = _fitted(structure)
    twin = copy.deepcopy(net)
    _fail_on_call(monkeypatch, 3, _Injected())
    with pytest.raises(_Injected):
        net.partial_fit(X, y, batch_size=4)
    monkeypatch.undo()
    net.partial_fit(X, y, batch_size=4)
    twin.partial_fit(X, y, batch_size=4)
    np.testing.assert_array_equal(net.predict(X), twin.predict(X))
    _assert_same_state(_state(twin), net)


def test_failed_fit_of_a_fitted_network_keeps_the_old_fit(monkeypatch):
    net, X, y = _fitted()
    before = _state(net)
    _fail_on_call(monkeypatch, 5, _Injected())
    with pytest.raises(_Injected):
        net.fit(X, y, passes=2, batch_size=4)
    _assert_same_state(before, net)


def test_failed_first_update_leaves_network_unfitted(monkeypatch):
    X, y = _data()
    net = Network([layers.ReLU(4)])
    _fail_on_call(monkeypatch, 2, _Injected())
    with pytest.raises(_Injected):
        net.partial_fit(X, y)
    assert not net.is_fitted
    assert not hasattr(net, "n_features_in_")


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("where", ["mean", "cov"])
def test_non_finite_update_is_refused_with_the_layer_named(monkeypatch, structure, where):
    net, X, y = _fitted(structure)
    before = _state(net)
    real = conjugate.update
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        post, info = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # hidden layer 0, the second hidden update of the first step
            bad = getattr(post, where).copy()
            bad.flat[0] = np.nan
            post = post._replace(**{where: bad})
        return post, info

    monkeypatch.setattr(conjugate, "update", poisoned)
    with pytest.raises(FloatingPointError, match=r"hidden layer 0.*left unchanged"):
        net.partial_fit(X, y, batch_size=4)
    _assert_same_state(before, net)


@pytest.mark.parametrize(
    ("X", "y", "error"),
    [
        (np.full((5, 3), np.nan), np.zeros(5), ValueError),
        (np.zeros((5, 4)), np.zeros(5), ValueError),
        (np.zeros((5, 3)), np.zeros(4), ValueError),
        (np.zeros((5, 3)), np.full(5, np.inf), ValueError),
        (np.array([["a", "b", "c"]] * 5), np.zeros(5), TypeError),
    ],
    ids=["nan-X", "wrong-features", "wrong-rows", "inf-y", "string-X"],
)
def test_bad_input_after_fit_changes_nothing(X, y, error):
    net, _, _ = _fitted()
    before = _state(net)
    with pytest.raises(error):
        net.partial_fit(X, y)
    _assert_same_state(before, net)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_predictions_are_pure_and_repeatable(structure):
    net, X, _ = _fitted(structure)
    before = _state(net)
    mean, std = net.predict(X, return_std=True, hidden="sample", n_samples=30)
    again_mean, again_std = net.predict(X, return_std=True, hidden="sample", n_samples=30)
    np.testing.assert_array_equal(mean, again_mean)
    np.testing.assert_array_equal(std, again_std)
    # Row i's prediction does not depend on which other rows are predicted with it.
    np.testing.assert_allclose(
        net.predict(X[:3], return_std=True, hidden="sample", n_samples=30)[1], std[:3]
    )
    _assert_same_state(before, net)


def test_classifier_probabilities_with_draws_are_pure():
    X, y = _data()
    net = Network([layers.ReLU(5)], head=heads.OneHot(), seed=3).fit(X, y > 0, batch_size=8)
    before = _state(net)
    p = net.predict_proba(X, hidden="sample", n_samples=20)
    np.testing.assert_array_equal(p, net.predict_proba(X, hidden="sample", n_samples=20))
    _assert_same_state(before, net)


def _estimator_state(est):
    return copy.deepcopy({k: v for k, v in vars(est).items() if k != "network_"}), (
        _state(est.network_) if hasattr(est, "network_") else None
    )


@pytest.mark.parametrize("cls", [BayesLayersRegressor, BayesLayersClassifier])
def test_estimator_failed_partial_fit_changes_nothing(monkeypatch, cls):
    X, y = _data()
    y = y if cls is BayesLayersRegressor else (y > 0).astype(int)
    first = {"classes": [0, 1]} if cls is BayesLayersClassifier else {}
    est = cls(hidden=(5,), batch_size=4, random_state=0)
    _fail_on_call(monkeypatch, 2, _Injected())
    with pytest.raises(_Injected):
        est.partial_fit(X, y, **first)
    assert not hasattr(est, "network_")
    assert not hasattr(est, "n_features_in_") and not hasattr(est, "classes_")
    monkeypatch.undo()
    est.partial_fit(X[:20], y[:20], **first)
    attrs, net_state = _estimator_state(est)
    _fail_on_call(monkeypatch, 3, _Injected())
    with pytest.raises(_Injected):
        est.partial_fit(X[20:], y[20:])
    monkeypatch.undo()
    assert _estimator_state(est)[0].keys() == attrs.keys()
    _assert_same_state(net_state, est.network_)
    with pytest.raises(ValueError, match="features"):
        est.partial_fit(X[:, :2], y)
    _assert_same_state(net_state, est.network_)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_predictions_bitwise_identical_after_save_and_load(structure, tmp_path):
    net, X, _ = _fitted(structure)
    loaded = load(net.save(tmp_path / "model.npz"))
    for a, b in zip(
        (net.predict(X), *net.predict(X, return_std=True, hidden="sample", n_samples=20)),
        (loaded.predict(X), *loaded.predict(X, return_std=True, hidden="sample", n_samples=20)),
        strict=True,
    ):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    ("k", "name"), [(1, "the head"), (2, "hidden layer 1"), (3, "hidden layer 0")]
)
def test_failed_factorization_names_the_layer(monkeypatch, k, name):
    net, X, y = _fitted()
    before = _state(net)
    _fail_on_call(monkeypatch, k, np.linalg.LinAlgError("2-th leading minor not positive definite"))
    with pytest.raises(np.linalg.LinAlgError, match=f"update of {name} failed.*left unchanged"):
        net.partial_fit(X, y, batch_size=4)
    _assert_same_state(before, net)


# ------------------------------------------------------------------ interrupts in __exit__
class _InterruptAtExit:
    """Raise ``KeyboardInterrupt`` on entry to the ``k``-th ``__exit__`` called (1-based).

    A trace function that raises makes the exception appear inside the called frame, exactly
    where a Ctrl-C between two bytecodes of a context manager's exit would: e.g. in
    ``contextlib``'s ``__exit__`` before it resumes its generator, leaving it suspended. Only
    ``__exit__`` methods written in Python are counted (every manager an update uses is).
    With ``k=None`` it only counts.
    """

    def __init__(self, k: int | None) -> None:
        self.k, self.calls = k, 0

    def _trace(self, frame, event, arg):
        if event == "call" and frame.f_code.co_name == "__exit__":
            self.calls += 1
            if self.calls == self.k:
                sys.settrace(None)
                raise KeyboardInterrupt
        return None

    def __enter__(self):
        sys.settrace(self._trace)
        return self

    def __exit__(self, *exc):
        sys.settrace(None)
        return False


def _count_exits(run) -> int:
    with _InterruptAtExit(None) as counter:
        run()
    return counter.calls


def _interrupted(run, k: int):
    """Run with an interrupt at the k-th ``__exit__``; return the traceback-holding error.

    Keeping the exception (as Jupyter keeps the last traceback) keeps every frame it passed
    through alive, and with them any context manager suspended by the interrupt.
    """
    with pytest.raises(KeyboardInterrupt) as info, _InterruptAtExit(k):
        run()
    return info.value


def _partial_fit_args():
    X, y = _data(n=24)
    return X[:12], y[:12], X[12:], y[12:]


def _count_partial_fit_exits() -> int:
    net = _fitted()[0]
    return _count_exits(lambda: net.partial_fit(*_partial_fit_args()[:2], batch_size=4))


def _count_fit_exits() -> int:
    net = _fitted()[0]
    return _count_exits(lambda: _fit_two_passes(net))


N_EXITS_PARTIAL_FIT = _count_partial_fit_exits()


@pytest.mark.parametrize("k", range(1, N_EXITS_PARTIAL_FIT + 1))
def test_interrupt_in_any_exit_never_undoes_a_later_update(k):
    """After an interrupt anywhere in an update's exits the network holds either the old or
    the new state, and a later update is never undone when the interrupted frames go."""
    X1, y1, X2, y2 = _partial_fit_args()
    net, _, _ = _fitted()
    before = _state(net)
    done = copy.deepcopy(net).partial_fit(X1, y1, batch_size=4)
    error = _interrupted(lambda: net.partial_fit(X1, y1, batch_size=4), k)
    now = _state(net)
    try:
        _assert_same_state(before, net)
        reference = copy.deepcopy(net)  # the interrupted update left nothing behind
    except AssertionError:
        _assert_same_state(_state(done), net)  # or it had completed
        reference = done
    net.partial_fit(X2, y2, batch_size=4)
    reference.partial_fit(X2, y2, batch_size=4)
    later = _state(net)
    _assert_same_state(_state(reference), net)
    assert now is not later
    del error
    gc.collect()
    _assert_same_state(later, net)  # nothing restored when the suspended managers are freed


def test_interrupt_counter_reaches_the_atomic_exits():
    """The parametrization above covers the exits that matter: the atomic block's among them."""
    assert N_EXITS_PARTIAL_FIT >= 2


def _fit_two_passes(net):
    X, y = _data(n=16)
    return net.fit(X, y, passes=2, batch_size=4)


N_EXITS_FIT = _count_fit_exits()


@pytest.mark.parametrize("k", range(1, N_EXITS_FIT + 1))
def test_interrupted_two_pass_fit_is_all_or_nothing_for_good(k):
    """An interrupt in any exit of a 2-pass fit leaves the old fit or the whole new one, and
    never 1 of 2 passes later on, when the interrupted frames are collected."""
    net, _, _ = _fitted()
    before = _state(net)
    done = _fit_two_passes(copy.deepcopy(net))
    error = _interrupted(lambda: _fit_two_passes(net), k)
    now = _state(net)
    del error
    gc.collect()
    _assert_same_state(now, net)
    # training_time_ is set after the atomic block; an interrupt there may keep the old one.
    for snapshot in (before, now):
        snapshot.pop("training_time_")
    net.__dict__.pop("training_time_")
    if net.n_samples_seen_ == done.n_samples_seen_:
        expected = _state(done)
        expected.pop("training_time_")
        assert sorted(expected) == sorted(now)
        for key in expected:
            for x, y in zip(_leaves(expected[key]), _leaves(now[key]), strict=True):
                assert np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y, key
    else:
        _assert_same_state(before, net)
