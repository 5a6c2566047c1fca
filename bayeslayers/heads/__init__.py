"""Output layers ("heads") and their registry.

The protocol (:mod:`bayeslayers.heads._protocol`) lists what every head supplies.

``Gaussian``, ``OneHot`` (:mod:`bayeslayers.heads.gaussian`)
    Conjugate linear outputs: regression, and classification by one-hot regression whose class
    probabilities come from the argmax quadrature (:mod:`bayeslayers.heads.argmax`).
``Probit``, ``Logistic`` (:mod:`bayeslayers.heads.glm`)
    Generalized linear heads fitted in closed form (Laplace, or assumed-density filtering for
    the probit) or by PyMC ADVI (:mod:`bayeslayers.heads.advi`, imported only when used).
``Choice`` (:mod:`bayeslayers.heads.choice`)
    A one-hot head that teaches the body, raced against a probit readout of the same inputs;
    predictions from the one of larger prequential evidence.

To add a head, write a class that satisfies :class:`Head` and add it to :data:`HEADS`; the
contract tests in ``tests/test_heads.py`` pick it up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bayeslayers.heads._protocol import ClassifierHead, Head, RegressionHead
from bayeslayers.heads.argmax import argmax_log_proba, argmax_probabilities
from bayeslayers.heads.choice import Choice, ChoiceState, teaching
from bayeslayers.heads.gaussian import Gaussian, GaussianState, OneHot
from bayeslayers.heads.glm import GLMState, Logistic, Probit, state_from_legacy

__all__ = [
    "HEADS",
    "LEGACY_STATES",
    "Choice",
    "ChoiceState",
    "ClassifierHead",
    "GLMState",
    "Gaussian",
    "GaussianState",
    "Head",
    "Logistic",
    "OneHot",
    "Probit",
    "RegressionHead",
    "argmax_log_proba",
    "argmax_probabilities",
    "make_head",
    "teaching",
]

HEADS: dict[str, type[Head]] = {
    cls.kind: cls for cls in (Gaussian, OneHot, Probit, Logistic, Choice)
}

#: State types saved by earlier versions under another name (``"module:Name"`` in a model file),
#: each mapped to a function that builds today's state from the saved fields (as keywords).
LEGACY_STATES: dict[str, Callable[..., Any]] = {
    "bayeslayers.glm_heads:GLMState": state_from_legacy,
}


def make_head(kind: str, **kwargs) -> Head:
    """Build a head from its registry name, e.g. ``make_head("gaussian", learn_noise=True)``."""
    if kind not in HEADS:
        raise ValueError(f"unknown head kind {kind!r}; allowed: {sorted(HEADS)}")
    return HEADS[kind](**kwargs)
