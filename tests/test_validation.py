"""The shared argument checks in ``bayeslayers._validation``."""

import numpy as np
import pandas as pd
import pytest

from bayeslayers import Network, heads, layers
from bayeslayers._validation import (
    check_batch_size,
    check_count,
    check_features,
    check_labels,
    check_real,
    check_seed,
    check_targets,
)
from bayeslayers.diagnostics import to_inference_data


@pytest.mark.parametrize("value", [1, 7, np.int64(3)])
def test_check_count_accepts_positive_ints(value):
    assert check_count(value, "k") == int(value)
    assert type(check_count(value, "k")) is int


def test_check_count_none_only_when_allowed():
    assert check_count(None, "k", allow_none=True) is None
    with pytest.raises(ValueError, match=r"k must be an int >= 1, got None"):
        check_count(None, "k")


@pytest.mark.parametrize("value", [0, -2, 1.0, True, "3"])
def test_check_count_rejects_everything_else(value):
    with pytest.raises(ValueError, match=r"k must be an int >= 1 or None, got"):
        check_count(value, "k", allow_none=True)


# ----------------------------------------------------------------- numbers, seeds, arrays
INF = float("inf")


@pytest.mark.parametrize("value", [0.5, 2, np.float32(0.5), np.float64(3.0), np.int64(2)])
def test_check_real_accepts_python_and_numpy_numbers(value):
    assert check_real(value, "x", 0, low_open=True) == float(value)


@pytest.mark.parametrize("value", [True, np.True_, "0.5", INF, -INF, np.nan, 1j, None, [1.0]])
def test_check_real_refuses_bools_strings_and_non_finite(value):
    with pytest.raises(ValueError, match=r"x must be a finite number >= 0, got"):
        check_real(value, "x", 0)


def test_check_real_names_the_range():
    with pytest.raises(ValueError, match=r"fraction must be a finite number in \(0, 1\], got 0"):
        check_real(0, "fraction", 0, 1, low_open=True)
    assert check_real(None, "clip", 0, allow_none=True) is None


@pytest.mark.parametrize("value", [-1, 1.0, 2.5, None, True, "3"])
def test_check_seed_refuses_all_but_non_negative_ints(value):
    with pytest.raises(ValueError, match=r"seed must be an int >= 0, got"):
        check_seed(value)
    assert check_seed(np.int64(7)) == 7


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"seed": -1}, ValueError, "seed must be an int >= 0"),
        ({"seed": 0.5}, ValueError, "seed must be an int >= 0"),
        ({"seed": None}, ValueError, "seed must be an int >= 0"),
        ({"head": "probit"}, TypeError, r"head must be a Head .*heads.make_head\('probit'\)"),
        ({"prior_precision": True}, ValueError, "prior_precision must be a finite number > 0"),
        ({"damping": INF}, ValueError, "damping must be a finite number >= 0"),
        ({"hidden_noise": INF}, ValueError, "hidden_noise must be a finite number > 0"),
        ({"clip": INF}, ValueError, "clip must be a finite number > 0"),
        ({"bias_spread": INF}, ValueError, "bias_spread must be a finite number >= 0"),
        ({"noise": "1"}, ValueError, "noise must be a finite number > 0"),
    ],
)
def test_network_refuses_bad_parameters_naming_them(kwargs, error, match):
    with pytest.raises(error, match=match):
        Network([layers.ReLU(2)], **kwargs)


def test_network_accepts_numpy_scalars():
    net = Network(
        [layers.ReLU(2)], prior_precision=np.float32(0.5), damping=np.float64(0.1), seed=np.int64(1)
    )
    X = np.random.default_rng(0).normal(size=(10, 2))
    assert net.fit(X, X[:, 0]).predict(X).shape == (10,)


def test_layer_noise_must_be_finite():
    with pytest.raises(ValueError, match="noise must be a finite number > 0"):
        layers.ReLU(3, noise=INF)


def _data(n=30):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 2))
    return X, (X[:, 0] > 0).astype(int)


@pytest.mark.parametrize("fraction", ["0.5", INF, True])
def test_fraction_must_be_a_number_before_any_work(fraction):
    X, y = _data()
    net = Network([layers.ReLU(2)], head=heads.OneHot())
    with pytest.raises(ValueError, match="fraction must be a finite number in"):
        net.fit(X, y, fraction=fraction)
    with pytest.raises(ValueError, match="fraction must be a finite number in"):
        net.partial_fit(X, y, fraction=fraction)
    assert not net.is_fitted


def test_classes_differing_on_a_later_partial_fit_are_refused():
    X, y = _data()
    net = Network([layers.ReLU(2)], head=heads.OneHot()).partial_fit(X, y, classes=[0, 1, 2])
    before = net.head_state_
    with pytest.raises(ValueError, match=r"classes=\[0, 1\] differs from the classes \[0, 1, 2\]"):
        net.partial_fit(X, y, classes=[0, 1])
    assert net.head_state_ is before
    net.partial_fit(X, y, classes=[2, 1, 0])  # the same set in another order is fine


def test_sampled_hidden_without_return_std_is_refused():
    X, _ = _data()
    net = Network([layers.ReLU(2)]).fit(X, X[:, 0])
    with pytest.raises(ValueError, match="hidden='sample' applies with return_std=True"):
        net.predict(X, hidden="sample")
    with pytest.raises(ValueError, match="return_std is for regression heads"):
        Network([layers.ReLU(2)], head=heads.OneHot()).fit(*_data()).predict(X, return_std=True)


@pytest.mark.parametrize("n_samples", [-1, 2.5, 0, True])
def test_n_samples_must_be_a_positive_int(n_samples):
    X, _ = _data()
    net = Network([layers.ReLU(2)]).fit(X, X[:, 0])
    with pytest.raises(ValueError, match="n_samples must be an int >= 1"):
        net.predict(X, return_std=True, hidden="sample", n_samples=n_samples)


@pytest.mark.parametrize("seed", [-1, 1.5, None])
def test_export_seed_is_checked(seed):
    X, _ = _data()
    net = Network([layers.ReLU(2)]).fit(X, X[:, 0])
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        to_inference_data(net, X, seed=seed)


def test_masked_arrays_are_refused_when_anything_is_masked():
    X = np.ma.masked_array(np.ones((3, 2)), mask=[[0, 0], [0, 1], [0, 0]])
    with pytest.raises(ValueError, match="X is a masked array with 1 masked entries"):
        check_features(X, None, np.float64)
    y = np.ma.masked_array([0, 1, 1], mask=[0, 0, 1])
    with pytest.raises(ValueError, match="y is a masked array with 1 masked entries"):
        check_labels(y, 3)
    with pytest.raises(ValueError, match="X is a masked array"):
        Network([layers.ReLU(2)]).fit(X, np.ones(3))
    # nothing masked: the data are used as they are
    np.testing.assert_array_equal(
        check_features(np.ma.masked_array(np.eye(2)), 2, float), np.eye(2)
    )


# ------------------------------------------------------------------------- string labels
@pytest.mark.parametrize("dtype", [object, "str", "string"])
def test_network_fits_pandas_string_labels(dtype):
    X, y = _data(40)
    labels = pd.Series(np.array(["no", "yes"])[y], dtype=dtype)
    net = Network([layers.ReLU(3)], head=heads.OneHot()).fit(X, labels)
    assert net.classes_.tolist() == ["no", "yes"]
    assert set(net.predict(X)) <= {"no", "yes"}
    assert check_labels(labels, 40).dtype.kind == "U"


def test_string_targets_for_a_regression_head_ask_for_a_classification_head():
    X, y = _data()
    labels = pd.Series(np.array(["no", "yes"])[y], dtype=object)
    with pytest.raises(TypeError, match="class labels need a classification head"):
        Network([layers.ReLU(2)]).fit(X, labels)
    with pytest.raises(TypeError, match="class labels need a classification head"):
        check_targets(np.array(["a", "b"]), 2, None, np.float64)


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError)]
)
def test_check_batch_size_refuses_what_is_not_a_positive_int(value, error):
    with pytest.raises(error, match="batch_size"):
        check_batch_size(value)


def test_check_batch_size_gives_a_python_int():
    got = check_batch_size(np.int64(8))
    assert got == 8 and type(got) is int
