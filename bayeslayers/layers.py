r"""Hidden-layer variants: each supplies only its activation and its linearization.

A layer with pre-activation :math:`z = x^\top W` and output :math:`h = \phi(z)` is linearized at
the current :math:`z_0`, elementwise,

.. math::

    \phi(z) \approx g \, z + b, \qquad g = \phi'(z_0), \quad b = \phi(z_0) - g z_0,

which turns a target :math:`h^*` into the linear-Gaussian pseudo-observation
:math:`h^*_j - b_j = g_j\, x^\top w_j + \varepsilon` handled by :mod:`bayeslayers.conjugate`.
A slope of exactly zero means "this unit does not take part" (an inactive ReLU, a saturated
tanh). No variant implements an update of its own.

| variant         | g                          | b                   |
|-----------------|----------------------------|---------------------|
| ``Linear``      | 1                          | 0                   |
| ``ReLU``        | 1 if z0 > 0 else 0         | 0                   |
| ``LeakyReLU``   | 1 if z0 > 0 else alpha     | 0                   |
| ``TaylorTanh``  | 1 - tanh(z0)^2 (0 if < floor) | tanh(z0) - g z0  |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from bayeslayers._validation import check_real
from bayeslayers.conjugate import STRUCTURES

__all__ = ["LAYERS", "Layer", "LeakyReLU", "Linear", "ReLU", "TaylorTanh", "make_layer"]


@runtime_checkable
class Layer(Protocol):
    """What the network needs from a hidden layer."""

    kind: str
    units: int
    covariance: str | None
    noise: float | None
    #: Variance scale of the prior mean's weights, ``gain / fan_in`` (2 for ReLU-like units).
    init_gain: float

    def activate(self, z: np.ndarray) -> np.ndarray:
        """Output :math:`\\phi(z)`."""

    def linearize(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slope ``g`` and offset ``b`` of :math:`\\phi` at ``z`` (same shape as ``z``)."""


@dataclass(frozen=True)
class _Base:
    """Common fields of every layer.

    Parameters
    ----------
    units : int
        Number of output units ``m``.
    covariance : str, optional
        Covariance structure for this layer (``"unit"``, ``"shared"`` or ``"diag"``);
        the network's default if omitted.
    noise : float, optional
        Pseudo-observation noise variance for this layer's targets; the network's
        ``hidden_noise`` if omitted.
    """

    units: int
    covariance: str | None = None
    noise: float | None = None

    kind: ClassVar[str]
    #: Variance scale of the initial weights is ``gain / fan_in`` (He for ReLU-like units).
    init_gain: ClassVar[float] = 2.0

    def __post_init__(self) -> None:
        if isinstance(self.units, bool) or not isinstance(self.units, int | np.integer):
            raise TypeError(f"units must be an int, got {type(self.units).__name__}")
        if self.units < 1:
            raise ValueError(f"units must be >= 1, got {self.units}")
        if self.covariance is not None and self.covariance not in STRUCTURES:
            raise ValueError(
                f"covariance must be one of {STRUCTURES} or None, got {self.covariance!r}"
            )
        check_real(self.noise, "noise", 0, allow_none=True, low_open=True)


@dataclass(frozen=True)
class Linear(_Base):
    """Identity activation: :math:`g = 1, b = 0`."""

    kind: ClassVar[str] = "linear"
    init_gain: ClassVar[float] = 1.0

    def activate(self, z: np.ndarray) -> np.ndarray:
        return z

    def linearize(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.ones_like(z), np.zeros_like(z)


@dataclass(frozen=True)
class ReLU(_Base):
    """:math:`\\max(z, 0)`: active units regress with :math:`g = 1`, inactive ones are skipped."""

    kind: ClassVar[str] = "relu"

    def activate(self, z: np.ndarray) -> np.ndarray:
        return np.maximum(z, 0)

    def linearize(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (z > 0).astype(z.dtype), np.zeros_like(z)


@dataclass(frozen=True)
class LeakyReLU(_Base):
    """:math:`z` if :math:`z > 0` else :math:`\\alpha z`: every unit updates.

    Parameters
    ----------
    alpha : float
        Slope for negative inputs, in ``(0, 1]``. ``alpha=1`` is :class:`Linear`.
    """

    alpha: float = 0.01
    kind: ClassVar[str] = "leaky_relu"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")

    def activate(self, z: np.ndarray) -> np.ndarray:
        return np.where(z > 0, z, self.alpha * z)

    def linearize(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.where(z > 0, 1.0, self.alpha).astype(z.dtype), np.zeros_like(z)


@dataclass(frozen=True)
class TaylorTanh(_Base):
    """:math:`\\tanh(z)`, linearized by a first-order Taylor expansion (an EKF step).

    Parameters
    ----------
    floor : float
        Units with slope :math:`1 - \\tanh^2(z_0)` below ``floor`` are saturated and skipped.
    """

    floor: float = 1e-3
    kind: ClassVar[str] = "taylor_tanh"
    init_gain: ClassVar[float] = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.floor < 1:
            raise ValueError(f"floor must be in [0, 1), got {self.floor}")

    def activate(self, z: np.ndarray) -> np.ndarray:
        return np.tanh(z)

    def linearize(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = np.tanh(z)
        g = 1.0 - h**2
        g = np.where(g >= self.floor, g, 0.0).astype(z.dtype)
        return g, h - g * z


LAYERS: dict[str, type[_Base]] = {cls.kind: cls for cls in (Linear, ReLU, LeakyReLU, TaylorTanh)}


def make_layer(kind: str, **kwargs) -> _Base:
    """Build a layer from its registry name, e.g. ``make_layer("relu", units=100)``."""
    if kind not in LAYERS:
        raise ValueError(f"unknown layer kind {kind!r}; allowed: {sorted(LAYERS)}")
    return LAYERS[kind](**kwargs)
