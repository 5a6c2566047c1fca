"""bayeslayers: neural networks trained without gradients, layer by layer, by conjugate
Bayesian linear regression (one pass, no loss, no learning rate, online by nature).

>>> from bayeslayers import Network, layers, heads
>>> net = Network([layers.ReLU(50)], head=heads.Gaussian())  # doctest: +SKIP
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from bayeslayers import conjugate, heads, layers
from bayeslayers.io import load
from bayeslayers.network import Network

try:
    __version__ = version("bayeslayers")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = ["Network", "__version__", "conjugate", "heads", "layers", "load"]
