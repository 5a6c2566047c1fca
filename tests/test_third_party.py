"""A layer and a head written outside the library (not registered) train, predict, export."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from bayeslayers import Network, heads, layers
from bayeslayers.diagnostics import to_inference_data


@dataclass(frozen=True)
class ReLU6:
    """min(max(z, 0), 6): slope 1 between the kinks, 0 outside (those units do not update)."""

    units: int
    covariance: str | None = None
    noise: float | None = None
    kind: ClassVar[str] = "relu6"
    init_gain: ClassVar[float] = 2.0

    def activate(self, z: np.ndarray) -> np.ndarray:
        return np.clip(z, 0.0, 6.0)

    def linearize(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = ((z > 0) & (z < 6)).astype(z.dtype)
        return g, np.where(z >= 6, 6.0, 0.0)


@dataclass(frozen=True)
class ScaledGaussian(heads.Gaussian):
    """A regression head of the user's: the library's Gaussian head under another kind."""

    kind: ClassVar[str] = "scaled_gaussian"


def data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 2))
    return X, np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.normal(size=n)


def test_the_protocols_accept_them_and_the_network_learns():
    assert isinstance(ReLU6(4), layers.Layer)
    assert isinstance(ScaledGaussian(), heads.Head)
    X, y = data()
    net = Network([ReLU6(20)], head=ScaledGaussian()).fit(X[:200], y[:200])
    mean, sd = net.predict(X[200:], return_std=True)
    assert np.sqrt(np.mean((mean - y[200:]) ** 2)) < 0.5 * np.std(y[200:])
    assert np.all(sd > 0) and np.isfinite(net.log_evidence_)
    q = net.predict_quantiles(X[200:210], [0.1, 0.9])
    assert np.all(q[0] < q[1])
    idata = to_inference_data(net, X[200:220], y[200:220], n_draws=20)
    assert "log_likelihood" in idata.groups()


def test_a_layer_missing_a_member_is_refused_before_any_work():
    @dataclass(frozen=True)
    class NoGain:
        units: int
        covariance: str | None = None
        noise: float | None = None
        kind: ClassVar[str] = "nogain"

        def activate(self, z):
            return z

        def linearize(self, z):
            return np.ones_like(z), np.zeros_like(z)

    with pytest.raises(TypeError, match=r"layers\[0\] must be a Layer"):
        Network([NoGain(3)])


def test_saving_an_unregistered_kind_says_so(tmp_path):
    X, y = data(60)
    net = Network([ReLU6(5)]).fit(X, y)
    with pytest.raises(TypeError, match="unregistered type ReLU6"):
        net.save(tmp_path / "m.npz")
    net = Network([layers.ReLU(5)], head=ScaledGaussian()).fit(X, y)
    with pytest.raises(TypeError, match="unregistered type ScaledGaussian"):
        net.save(tmp_path / "m.npz")
    assert not list(tmp_path.iterdir())  # nothing written
