"""bayeslayers: neural networks trained without gradients, layer by layer, by conjugate
Bayesian linear regression (one pass, no loss, no learning rate, online by nature).

>>> from bayeslayers import Network, layers, heads
>>> net = Network([layers.ReLU(50)], head=heads.Gaussian())  # doctest: +SKIP

The names below are loaded on first access (a module-level ``__getattr__``), so
``import bayeslayers`` and the ``bayeslayers`` command's ``--help`` load no numerical
module; every submodule (``bayeslayers.metrics``, ``bayeslayers.plots``, ...) is reachable
as an attribute the same way.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from bayeslayers import conjugate, heads, layers
    from bayeslayers.io import load
    from bayeslayers.merging import merge
    from bayeslayers.network import Network

__all__ = ["Network", "__version__", "conjugate", "heads", "layers", "load", "merge"]

# name -> (module, attribute or None for the module itself)
_LAZY: dict[str, tuple[str, str]] = {
    "Network": ("bayeslayers.network", "Network"),
    "load": ("bayeslayers.io", "load"),
    "merge": ("bayeslayers.merging", "merge"),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bayeslayers")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
    elif not name.startswith("__"):
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
