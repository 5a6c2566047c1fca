"""Save/load of the iterate average of the hidden means (``Network.average_``)."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
from test_io import _tamper  # the model-file rewriter of the io tests

import bayeslayers
from bayeslayers import Network, heads, layers
from bayeslayers.io import ModelFileError

RNG = np.random.default_rng(4)
X = RNG.normal(size=(80, 3))
Y = np.sin(X[:, 0]) + 0.1 * X[:, 1] + 0.05 * RNG.normal(size=80)
LABELS = np.digitize(X[:, 0], [-0.4, 0.4])


def _fit(average, head=None, y=Y):
    net = Network([layers.ReLU(5), layers.ReLU(3)], head=head, average=average, seed=2)
    return net.fit(X, y, batch_size=4)


def _predictions(net):
    """Labels or means, then probabilities or standard deviations (the last with draws)."""
    if net.head.is_classifier:
        draws = net.predict_proba(X, hidden="sample", n_samples=10)
        return [net.predict(X), net.predict_proba(X), draws]
    return [net.predict(X), *net.predict(X, return_std=True, hidden="sample", n_samples=10)]


def _assert_same_average(a, b):
    assert (a is None) == (b is None)
    if a is None:
        return
    assert (a.rows, a.weight, a.margin, a.batches, a.last) == (
        b.rows,
        b.weight,
        b.margin,
        b.batches,
        b.last,
    )
    assert len(a.means) == len(b.means)
    for m, n in zip(a.means, b.means, strict=True):
        assert m.dtype == n.dtype and m.tobytes() == n.tobytes()


@pytest.mark.parametrize(
    ("average", "head"),
    [(True, None), (True, heads.OneHot()), (False, None), ("evidence", None)],
)
def test_the_average_round_trips_and_predictions_are_bitwise_identical(tmp_path, average, head):
    net = _fit(average, head, LABELS if head is not None else Y)
    assert (net.average_ is None) == (average is False)
    if average is True:  # the average is in use and changes the predictions
        assert net.averaging_
        at_means = copy.copy(net)
        at_means.average_ = None
        assert not np.array_equal(_predictions(at_means)[1], _predictions(net)[1])
    back = bayeslayers.load(net.save(tmp_path / "m.npz"))
    assert back.average == net.average
    assert back.averaging_ == net.averaging_
    _assert_same_average(back.average_, net.average_)
    for a, b in zip(_predictions(back), _predictions(net), strict=True):
        assert a.tobytes() == b.tobytes()
    # Training continues identically, the average included.
    net.partial_fit(X[:12], LABELS[:12] if head is not None else Y[:12], batch_size=4)
    back.partial_fit(X[:12], LABELS[:12] if head is not None else Y[:12], batch_size=4)
    _assert_same_average(back.average_, net.average_)
    assert back.predict(X).tobytes() == net.predict(X).tobytes()


def _fields(m):
    return m["state"]["average_"]["fields"]


@pytest.mark.parametrize(
    ("meta", "arrays", "match"),
    [
        (None, lambda a: a.update({"average_.means.0": a["average_.means.0"][:, :2]}), "shape"),
        (None, lambda a: a.update({"average_.means.1": a["average_.means.1"].ravel()}), "shape"),
        (
            None,
            lambda a: a.update({"average_.means.0": a["average_.means.0"].astype(np.float32)}),
            "dtype float32",
        ),
        (
            None,
            lambda a: a.update({"average_.means.1": np.full_like(a["average_.means.1"], np.nan)}),
            "non-finite",
        ),
        (lambda m: _fields(m)["means"]["list"].pop(), None, "list of 2"),
        (lambda m: _fields(m)["means"].update(list=[{"value": 1.0}] * 2), None, "array"),
        (lambda m: _fields(m).update(rows={"value": 0}), None, "must be >= 1"),
        (lambda m: _fields(m).update(rows={"value": -3}), None, ">= 0"),
        (lambda m: _fields(m).update(rows={"value": 2.5}), None, "expected int"),
        (lambda m: _fields(m).update(rows={"value": True}), None, "expected int"),
        (lambda m: _fields(m).update(weight={"value": 81.0}), None, r"weight must lie in \(0, l"),
        (lambda m: _fields(m).update(weight={"value": 0.0}), None, r"weight must lie in \(0, l"),
        (lambda m: _fields(m).update(weight={"value": float("inf")}), None, "non-finite"),
        (lambda m: _fields(m).update(weight={"value": "5"}), None, "expected float"),
        (lambda m: _fields(m).update(margin={"value": float("nan")}), None, "non-finite"),
        (lambda m: _fields(m).update(margin={"value": None}), None, "expected float"),
        (lambda m: _fields(m).update(batches={"value": 0}), None, "must be >= 1"),
        (lambda m: _fields(m).pop("batches"), None, "has fields"),
        (lambda m: _fields(m).update(last={"value": 0}), None, r"last must lie in \[1, rows"),
        (lambda m: _fields(m).update(last={"value": 81}), None, r"last must lie in \[1, rows"),
        (
            lambda m: _fields(m).update(last={"value": 1}, weight={"value": 2.0}),
            None,
            r"weight must lie in \(0, last = 1\]",
        ),
        (
            lambda m: m["state"]["average_"].update(namedtuple="bayeslayers.engine:NoiseState"),
            None,
            "expected a Average",
        ),
        (lambda m: m["state"].update(average_={"value": 3}), None, "malformed"),
    ],
    ids=[
        "means-shape",
        "means-ravelled",
        "means-dtype",
        "means-nan",
        "means-count",
        "means-scalars",
        "rows-0",
        "rows-negative",
        "rows-float",
        "rows-bool",
        "weight-above-rows",
        "weight-0",
        "weight-inf",
        "weight-str",
        "margin-nan",
        "margin-none",
        "batches-0",
        "batches-missing",
        "last-0",
        "last-above-rows",
        "weight-above-last",
        "other-type",
        "not-a-namedtuple",
    ],
)
def test_a_tampered_average_is_refused_with_the_field_named(tmp_path, meta, arrays, match):
    net = _fit(True)
    assert net.average_.rows == len(X)
    path = net.save(tmp_path / "m.npz")
    _tamper(path, meta=meta, arrays=arrays)
    with pytest.raises(ValueError, match=r"average_[.\[:]?.*" + match) as error:
        bayeslayers.load(path)
    assert isinstance(error.value, ModelFileError)


def test_an_average_on_a_network_without_hidden_layers_is_refused(tmp_path):
    net = Network([], average=True).fit(X, Y)
    assert net.average_ is None
    path = net.save(tmp_path / "m.npz")
    empty = {
        "namedtuple": "bayeslayers.averaging:Average",
        "fields": {
            "means": {"list": [], "tuple": True},
            "rows": {"value": 80},
            "weight": {"value": 80.0},
            "margin": {"value": 0.0},
            "batches": {"value": 1},
            "last": {"value": 80},
        },
    }
    _tamper(path, meta=lambda m: m["state"].update(average_=empty))
    with pytest.raises(ModelFileError, match=re.escape("average_: a network without hidden")):
        bayeslayers.load(path)


def test_a_file_from_before_the_average_loads_without_one_and_predicts_at_the_means(tmp_path):
    net = _fit(True)
    path = net.save(tmp_path / "m.npz")

    def old(m):
        del m["state"]["average_"], m["network"]["average"]

    _tamper(path, meta=old, arrays=lambda a: [a.pop(k) for k in list(a) if "average_" in k])
    back = bayeslayers.load(path)
    assert back.average_ is None and not back.averaging_
    assert back.average == "evidence"  # the constructor's default
    at_means = copy.copy(net)
    at_means.average_ = None  # what the network predicted before it kept an average
    for a, b in zip(_predictions(back), _predictions(at_means), strict=True):
        assert a.tobytes() == b.tobytes()
    back.partial_fit(X[:12], Y[:12], batch_size=4)  # a fresh average from here
    assert (back.average_.rows, back.average_.batches) == (12, 3)
