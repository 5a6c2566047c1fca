"""The label-free rules that resolve a network's defaults, and its parameter checks.

Everything here depends only on the parameters a user set and on the shapes of the first
call's data, never on labels:

* :func:`structure` -- ``covariance="auto"``: exact per-unit covariances up to
  :data:`AUTO_UNIT_MAX`-wide design rows, mean-field ``"diag"`` above (per-unit memory and
  time grow with the square of the width);
* :func:`head_structure` -- the head under ``covariance="auto"``: one covariance shared by
  its output columns where they have the same posterior covariance (the Gaussian heads:
  the same inputs, unit slopes, one noise) and there are several, else per-unit;
* :func:`hidden_noise` -- the hidden layers' pseudo-noise: learned (``None``) under a
  regression head, :data:`CLASSIFIER_HIDDEN_NOISE` under a classification head, whose
  residuals are structural misfit of the link rather than noise (calibrated on them, the
  pseudo-noise makes the hidden layers overfit);
* :func:`sweeps` -- ``sweeps="auto"``: two relinearized backward passes of the hidden
  layers on a batch of several rows, one on a single row;
* :func:`check_params` -- every constructor parameter, with a message naming it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bayeslayers import conjugate, forgetting, propagation
from bayeslayers._validation import check_count, check_real, check_seed
from bayeslayers.heads import Head
from bayeslayers.layers import Layer

__all__ = [
    "AUTO_UNIT_MAX",
    "CLASSIFIER_HIDDEN_NOISE",
    "check_params",
    "head_structure",
    "hidden_noise",
    "skip",
    "structure",
    "sweeps",
]

#: ``covariance="auto"``: widest design row (inputs plus bias) given per-unit covariances;
#: up to this width the compiled rank-one kernel keeps a per-unit step cheap.
AUTO_UNIT_MAX = 257
#: Default pseudo-noise variance of hidden layers under a classification head (the hidden
#: activations are on a unit scale by construction of the prior mean).
CLASSIFIER_HIDDEN_NOISE = 1.0


def structure(covariance: str, fan_in: int | None) -> str:
    """Covariance structure of a layer with ``fan_in`` inputs (``None``: the head)."""
    if covariance != "auto":
        return covariance
    if fan_in is None or fan_in + 1 <= AUTO_UNIT_MAX:
        return "unit"
    return "diag"


def head_structure(covariance: str, head: Head, n_outputs: int | None) -> str:
    r"""Covariance structure of the head's weights, ``n_outputs`` columns (``None``: not known
    before the first call).

    The head's own ``covariance`` where set, else ``covariance`` unless ``"auto"``. Under
    ``"auto"``: ``"shared"`` for a head whose columns all have one posterior covariance
    (``head.shares_covariance``: the Gaussian heads, which regress every column on the same
    inputs with slope one and one noise) when it has more than one column, else ``"unit"``.
    The shared form is the same posterior, not an approximation: every column's precision is
    :math:`\Sigma_0^{-1} + \sum_i x_i x_i^\top / \sigma^2`, so one :math:`D \times D`
    matrix replaces :math:`m` equal ones (memory and time of the update and of the
    predictive variances :math:`m` times smaller).
    """
    if head.covariance is not None:
        return head.covariance
    if covariance != "auto":
        return covariance
    if head.shares_covariance and n_outputs is not None and n_outputs > 1:
        return "shared"
    return "unit"


def skip(value: bool | str, n_features: int | None, depth: int) -> bool:
    r"""Whether the head sees the inputs :math:`x` beside the top hidden output.

    ``True`` / ``False`` as given, but never for a network without hidden layers (``depth``
    0), whose head sees the inputs already. ``"auto"``: yes when the inputs with the bias
    fit :data:`AUTO_UNIT_MAX` (``n_features + 1 <= AUTO_UNIT_MAX``), no for wider inputs or
    before the first call (``n_features`` unknown). The head keeps a full covariance (per
    output, or one shared by its columns), whose cost per row grows with the square of its
    width (top units plus ``n_features`` plus 1): the skip connection is the same width
    budget that ``covariance="auto"`` gives a per-unit layer (:func:`structure`), so a
    784-pixel input does not make the head the slowest layer of the network.
    """
    if depth == 0:
        return False
    if isinstance(value, str):  # "auto" (checked by check_params)
        return n_features is not None and n_features + 1 <= AUTO_UNIT_MAX
    return bool(value)


def hidden_noise(value: float | None, head: Head) -> float | None:
    """The hidden layers' pseudo-noise: ``value`` if set, else the default for ``head``."""
    if value is not None:
        return value
    return CLASSIFIER_HIDDEN_NOISE if head.is_classifier else None


def sweeps(value: int | str, n_rows: int) -> int:
    r"""Backward passes of the hidden layers on a batch of ``n_rows`` rows.

    ``"auto"``: 2 for a batch of several rows, 1 for a single row. A joint update on several
    rows does not meet each row's target (their corrections interfere through the shared
    weights), and a second pass relinearized at the updated means aims at what the first
    left. On a single row the relinearized pass finds nearly the same targets (only slopes
    that flip and the layers below move them), so the two tempered halves add up to about
    the one update, at twice the cost.
    """
    if value == "auto":
        return 1 if n_rows <= 1 else 2
    return int(value)


def check_params(layers: Sequence, head, params: dict) -> None:
    """Check ``Network``'s parameters before any work (TypeError / ValueError naming each)."""
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"layers[{i}] must be a Layer (e.g. layers.ReLU(100)), got {layer!r}")
    if not isinstance(head, Head):
        hint = f"; build it with heads.make_head({head!r})" if isinstance(head, str) else ""
        raise TypeError(f"head must be a Head (e.g. heads.Probit()), got {head!r}{hint}")
    check_real(params["prior_precision"], "prior_precision", 0, low_open=True)
    for name in ("noise", "hidden_noise"):  # None: learned
        check_real(params[name], name, 0, allow_none=True, low_open=True)
    check_seed(params["seed"])
    covariance = params["covariance"]
    if covariance != "auto" and covariance not in conjugate.STRUCTURES:
        raise ValueError(
            f"covariance must be 'auto' or one of {tuple(conjugate.STRUCTURES)}, got {covariance!r}"
        )
    check_real(params["damping"], "damping", 0)
    check_real(params["clip"], "clip", 0, allow_none=True, low_open=True)
    check_real(params["bias_spread"], "bias_spread", 0)
    propagation.check_targets(params["targets"])
    structures = [layer.covariance or covariance for layer in layers]
    forgetting.check_memory(params["memory"], [s for s in structures if s != "auto"])
    check_count(params["blas_threads"], "blas_threads", allow_none=True)
    if params["init"] not in ("samples", "he"):
        raise ValueError(f"init must be 'samples' or 'he', got {params['init']!r}")
    sweeps = params["sweeps"]
    if not (isinstance(sweeps, str) and sweeps == "auto"):
        if isinstance(sweeps, bool) or not isinstance(sweeps, int | np.integer) or sweeps < 1:
            raise ValueError(f"sweeps must be an int >= 1 or 'auto', got {sweeps!r}")
    skip = params["skip"]
    if isinstance(skip, str):
        if skip != "auto":
            raise ValueError(f"skip must be 'auto', True or False, got {skip!r}")
    elif not isinstance(skip, bool | np.bool_):
        raise TypeError(f"skip must be 'auto', True or False, got {type(skip).__name__} {skip!r}")
    average = params["average"]
    if isinstance(average, str):
        if average != "evidence":
            raise ValueError(f"average must be 'evidence', True or False, got {average!r}")
    elif not isinstance(average, bool | np.bool_):
        raise TypeError(
            f"average must be 'evidence', True or False, got {type(average).__name__} {average!r}"
        )
    scale = params["hidden_scale"]
    if isinstance(scale, str):
        if scale != "evidence":
            raise ValueError(f"hidden_scale must be 'evidence' or a number >= 0, got {scale!r}")
    else:
        check_real(scale, "hidden_scale", 0)
    head_prior = params["head_prior"]
    if not isinstance(head_prior, str):
        raise TypeError(
            f"head_prior must be 'flat', 'fan_in' or 'evidence', got "
            f"{type(head_prior).__name__} {head_prior!r}"
        )
    if head_prior not in ("flat", "fan_in", "evidence"):
        raise ValueError(f"head_prior must be 'flat', 'fan_in' or 'evidence', got {head_prior!r}")
    if params["dtype"] not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {params['dtype']!r}")
