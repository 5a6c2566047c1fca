"""Layer variants: linearizations, registry, and the contract every variant meets."""

import numpy as np
import pytest

from bayeslayers import Network, conjugate, layers

Z = np.linspace(-3, 3, 61).reshape(-1, 1) * np.array([[1.0, 0.5, 2.0]])


def test_leaky_relu_with_slope_one_is_linear():
    leaky, linear = layers.LeakyReLU(3, alpha=1.0), layers.Linear(3)
    np.testing.assert_array_equal(leaky.activate(Z), linear.activate(Z))
    for a, b in zip(leaky.linearize(Z), linear.linearize(Z), strict=True):
        np.testing.assert_array_equal(a, b)


def test_leaky_relu_network_with_slope_one_equals_linear_network():
    """Same prior mean, same data: alpha=1 trains exactly like the identity layer."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 3)), rng.normal(size=50)
    a = Network([layers.LeakyReLU(4, alpha=1.0)], seed=1)
    b = Network([layers.Linear(4)], seed=1)
    a.partial_fit(X[:1], y[:1])
    b.partial_fit(X[:1], y[:1])
    b.posteriors_ = a.posteriors_  # align the prior means (the init gains differ by design)
    b.head_state_ = a.head_state_
    b.noise_ = a.noise_
    a.partial_fit(X[1:], y[1:], batch_size=7)
    b.partial_fit(X[1:], y[1:], batch_size=7)
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-12)


def test_taylor_tanh_linearization_matches_finite_difference():
    layer = layers.TaylorTanh(3, floor=0.0)
    g, b = layer.linearize(Z)
    eps = 1e-6
    fd = (np.tanh(Z + eps) - np.tanh(Z - eps)) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(g * Z + b, np.tanh(Z), rtol=1e-12)  # exact at z0


def test_taylor_tanh_skips_saturated_units():
    g, _ = layers.TaylorTanh(1, floor=1e-3).linearize(np.array([[0.0, 5.0, -6.0]]))
    np.testing.assert_array_equal(g[0, 1:], 0.0)
    assert g[0, 0] == 1.0


def test_relu_slopes_mark_active_units():
    g, b = layers.ReLU(3).linearize(Z)
    np.testing.assert_array_equal(g, (Z > 0).astype(float))
    np.testing.assert_array_equal(b, 0.0)
    np.testing.assert_array_equal(g * Z + b, layers.ReLU(3).activate(Z))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kind": "relu", "units": 0}, ValueError, "units must be >= 1"),
        ({"kind": "relu", "units": 2.5}, TypeError, "units must be an int"),
        ({"kind": "relu", "units": 3, "covariance": "full"}, ValueError, "covariance"),
        ({"kind": "leaky_relu", "units": 3, "alpha": 0.0}, ValueError, "alpha"),
        ({"kind": "taylor_tanh", "units": 3, "floor": 1.0}, ValueError, "floor"),
        ({"kind": "relu", "units": 3, "noise": -1.0}, ValueError, "noise"),
        ({"kind": "sigmoid", "units": 3}, ValueError, "unknown layer kind 'sigmoid'"),
    ],
)
def test_bad_layer_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        layers.make_layer(**kwargs)


def sine_problem(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (2 * n, 1))
    y = x[:, 0] + np.sin(3 * x[:, 0]) + 0.1 * rng.normal(size=2 * n)
    return x[:n], y[:n], x[n:], y[n:]


@pytest.mark.parametrize("kind", sorted(layers.LAYERS))
@pytest.mark.parametrize("structure", conjugate.STRUCTURES)
def test_every_layer_and_structure_learns(kind, structure):
    """Contract: shapes, finite values, and the test error falls as data arrive."""
    X, y, Xt, yt = sine_problem()
    net = Network(  # the prior mean ignores the data, so "early" is the untrained network
        [layers.make_layer(kind, units=16)],
        covariance=structure,
        noise=0.01,
        hidden_noise=0.01,
        init="he",
        seed=0,
    )
    net.partial_fit(X[:3], y[:3])
    early = np.sqrt(np.mean((net.predict(Xt) - yt) ** 2))
    net.partial_fit(X[3:], y[3:])
    mean, std = net.predict(Xt, return_std=True, hidden="sample", n_samples=10)
    assert mean.shape == std.shape == yt.shape
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
    late = np.sqrt(np.mean((mean - yt) ** 2))
    assert late < 0.8 * early
    assert late < 0.75  # the linear variant can only fit a line (its best rmse is about 0.7)
