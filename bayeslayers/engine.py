r"""The pure training core: a static network description, its state and one training step.

Everything that trains or inspects a network goes through these functions; :class:`Network`
is a thin shell around them (validation, atomicity, progress, the scikit-learn surface).

* :class:`NetSpec` is static: the layers, the head, every layer's covariance structure and
  pseudo-noise, the damping and clip of the backward step, all resolved once
  (:func:`resolve_spec`).
* :class:`NetState` is what training changes: the hidden layers' weight posteriors and the
  head's state. Functions return a new state; they never modify one passed in (except with
  ``overwrite=True``, for a caller that owns private copies).
* :func:`forward` runs the network at the posterior means and keeps, for each hidden layer,
  its input :math:`x_l = [a_{l-1}, 1]`, its output :math:`h_l` and its linearization
  :math:`\phi(z) \approx g_l \circ z + b_l` (:class:`LayerTrace`).
* The head's inputs are the top hidden output with the bias, :math:`[h_L, 1]`, or with the
  skip connection (``NetSpec.skip``, "wide & deep") also the network's inputs,
  :math:`[h_L, x, 1]`, so that

  .. math::

      f(x) = W_h^\top h_L(x) + W_x^\top x + b .

  The head's conjugate update (and its evidence prior) covers :math:`W_h`, :math:`W_x` and
  :math:`b` jointly, as one Bayesian linear regression on the wider row; the hidden layers
  get their targets through :math:`W_h` only (:func:`top_rows`), so they learn what the
  linear part leaves.
* The head's prior is isotropic in its inputs, :math:`w \sim N(0, \alpha^{-1} I)`. With
  ``NetSpec.head_prior = "fan_in"`` the top hidden output enters the head divided by
  :math:`\sqrt{H}` (:func:`top_scale`, :math:`H` its units), which is the same as the prior
  :math:`W_h \sim N(0, (\alpha H)^{-1} I)` on the weights of :math:`h_L` (Neal 1996): the
  prior variance of :math:`W_h^\top h_L` then stays of the order of one unit's
  :math:`h^2` whatever the width, instead of growing with :math:`H`. The skip rows and the
  bias keep :math:`\alpha^{-1}`. The head's evidence prior scales :math:`\alpha` of the
  whole design, so the ratio between the groups is the prior's. The Jacobian the hidden
  layers learn through is :math:`\partial f / \partial h_L = W_h / \sqrt{H}`
  (:func:`top_jacobian`).
* :func:`train_step` is one step of the method on a batch:

  1. forward at the means;
  2. update the head towards the targets;
  3. from the updated head, solve the damped minimum-norm correction :math:`\delta` of the top
     hidden output (:func:`bayeslayers.propagation.solve_targets`) over the entries that can
     move (:math:`g \ne 0`), giving the target :math:`h^* = h + \delta`;
  4. update that layer with pseudo-observations
     :math:`h^* - b = g \circ (x W) + \varepsilon`, :math:`\varepsilon \sim N(0, \sigma_l^2)`
     (:func:`bayeslayers.conjugate.update`), compute the residual of the updated layer
     :math:`e = h^* - (g \circ (x W_{new}) + b)` and the target of the layer below; repeat
     down to the input.

  With ``sweeps`` :math:`k > 1`, steps 3-4 run :math:`k` times, each tempered by
  :math:`1/k` and relinearized at the updated means (the head is updated once).
  It returns :class:`StepInfo`: every layer's :class:`~bayeslayers.conjugate.UpdateInfo` and
  the largest target correction per layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from bayeslayers import conjugate, defaults, heads, health, propagation
from bayeslayers.conjugate import UpdateInfo, WeightPosterior
from bayeslayers.layers import Layer

__all__ = [
    "LayerTrace",
    "NetSpec",
    "NetState",
    "NoiseState",
    "StepInfo",
    "forward",
    "head_blocks",
    "head_design",
    "head_width",
    "init_state",
    "learn_noise",
    "resolve_spec",
    "sample_prior_mean",
    "top_jacobian",
    "top_rows",
    "top_scale",
    "train_step",
    "with_bias",
]


class NetSpec(NamedTuple):
    r"""Static description of a network, resolved once from its parameters.

    Attributes
    ----------
    layers : tuple of Layer
        Hidden layers, input side first.
    head : Head
        The output layer.
    structures : tuple of str
        Covariance structure of each hidden layer (a key of ``conjugate.STRUCTURES``).
    head_structure : str
        Covariance structure of the head's weights.
    noises : tuple of (float or None)
        Pseudo-observation noise variance :math:`\sigma_l^2` of each hidden layer; ``None``:
        learned from the layer's own innovations (:func:`learn_noise`).
    damping : float
        :math:`\lambda` of the target solve.
    clip : float or None
        Clip on every entry of a target correction.
    targets : str
        The backward strategy (a key of ``propagation.TARGETS``).
    memory : float or None
        Memory of the hidden layers in rows per weight, forgotten between batches by
        :func:`bayeslayers.forgetting.forget_state`; ``None``: the static posterior.
    prior_precision : float
        Prior precision of the weights, to which forgetting returns.
    skip : bool
        The head sees the inputs beside the top hidden output, :math:`[h_L, x, 1]`
        (:func:`head_design`); never for a network without hidden layers.
    average : {"evidence", True, False}
        Whether a pass keeps the iterate average of the hidden means and when predictions
        use it (:mod:`bayeslayers.averaging`).
    hidden_scale : float or "evidence"
        Factor on the hidden layers' variance in a regression predictive, or chosen by
        evidence (:mod:`bayeslayers.hidden_scale`).
    head_prior : {"flat", "fan_in"}
        The head's prior on the weights of the top hidden output: variance
        :math:`1 / \alpha` like every other weight, or :math:`1 / (\alpha H)`
        (:func:`top_scale`).
    head_blocks : bool
        The head's evidence prior has one precision per block of its inputs
        (:func:`head_blocks`) instead of one for every row.
    """

    layers: tuple[Layer, ...]
    head: Any
    structures: tuple[str, ...]
    head_structure: str
    noises: tuple[float | None, ...]
    damping: float
    clip: float | None
    targets: str = "min_norm"
    memory: float | None = None
    prior_precision: float = 1.0
    skip: bool = False
    average: bool | str = False
    hidden_scale: float | str = 1.0
    head_prior: str = "flat"
    head_blocks: bool = False


def resolve_spec(
    layers,
    head,
    *,
    covariance: str,
    hidden_noise: float | None,
    n_features: int | None,
    n_outputs: int | None,
    skip: bool | str,
    **solve,
) -> NetSpec:
    """The :class:`NetSpec` a network's parameters resolve to, by the label-free rules of
    :mod:`bayeslayers.defaults`: each layer's own ``covariance`` and ``noise`` where set, else
    ``defaults.structure`` of its fan-in (the first layer's is ``n_features``, unknown before
    the first call), ``defaults.head_structure`` of the head and ``n_outputs``,
    ``defaults.hidden_noise`` of the head and ``defaults.skip`` of ``n_features`` and the
    depth. ``solve``: ``damping``, ``clip``, ``targets``, ``memory``,
    ``prior_precision``, ``average``, ``hidden_scale``, ``head_prior``, ``head_blocks``."""
    fan_ins = [n_features, *(layer.units for layer in layers)]
    return NetSpec(
        layers=tuple(layers),
        head=head,
        structures=tuple(
            layer.covariance or defaults.structure(covariance, fan_in)
            for layer, fan_in in zip(layers, fan_ins, strict=False)
        ),
        head_structure=defaults.head_structure(covariance, head, n_outputs),
        noises=tuple(
            defaults.hidden_noise(hidden_noise, head) if layer.noise is None else layer.noise
            for layer in layers
        ),
        skip=defaults.skip(skip, n_features, len(layers)),
        **solve,
    )


class NoiseState(NamedTuple):
    r"""Running estimate of a hidden layer's pseudo-noise variance, :math:`\hat\sigma^2 = b / a`.

    Attributes
    ----------
    a : float
        Half the number of scalar pseudo-observations seen (plus the prior's).
    b : float
        Half the sum of their scaled squared innovations (plus the prior's).
    """

    a: float
    b: float


class NetState(NamedTuple):
    """What training changes: hidden posteriors (input side first), the head's state, the
    hidden layers' noise estimates (:class:`NoiseState`; fixed for a layer with a set noise)
    and the iterate average of the hidden means (:class:`bayeslayers.averaging.Average`;
    ``None`` until a pass keeps one), and the evidence for the scale of the hidden layers'
    predictive variance (:class:`bayeslayers.hidden_scale.HiddenScale`; ``None`` likewise).
    """

    hidden: tuple[WeightPosterior, ...]
    head: Any
    noise: tuple[NoiseState, ...]
    average: Any = None
    hidden_scale: Any = None


class LayerTrace(NamedTuple):
    r"""One hidden layer in a forward pass at the means (rows ``n``, inputs ``d``, units ``m``).

    Attributes
    ----------
    x : ndarray of shape (n, d + 1)
        Input with the bias column.
    h : ndarray of shape (n, m)
        Output :math:`\phi(x W)`.
    g, b : ndarray of shape (n, m)
        Slope and offset of the activation at the pre-activation; ``g = 0``: unit not taking
        part.
    """

    x: np.ndarray
    h: np.ndarray
    g: np.ndarray
    b: np.ndarray


class StepInfo(NamedTuple):
    r"""Diagnostics of one :func:`train_step`, kept apart from the state.

    Attributes
    ----------
    layers : tuple of UpdateInfo
        Each hidden layer's update (input side first; summed over the sweeps).
    corrections : tuple of float
        Largest :math:`|\delta|` of each hidden layer's target correction (input side first;
        over the sweeps).
    log_predictive : float
        :math:`\sum_i \log p(y_i \mid \text{state before the step})`, the batch's
        one-step-ahead log predictive density (the head's ``log_predictive``); summed over a
        pass, the prequential log evidence (for a model without hidden layers, batch size 1
        and a fixed noise, exactly the log marginal likelihood).
    """

    layers: tuple[UpdateInfo, ...]
    corrections: tuple[float, ...]
    log_predictive: float


def with_bias(a: np.ndarray) -> np.ndarray:
    """Append the constant-1 bias column: ``x = [a, 1]``."""
    return np.concatenate([a, np.ones((*a.shape[:-1], 1), dtype=a.dtype)], axis=-1)


def head_design(spec: NetSpec, A: np.ndarray, X: np.ndarray) -> np.ndarray:
    """The head's inputs from the top hidden output ``A`` and the network's inputs ``X``.

    ``[A, 1]``, or ``[A, X, 1]`` with ``spec.skip``; ``A`` may have leading axes (e.g. one per
    posterior draw), over which ``X`` ``(n, d)`` is broadcast.
    """
    scale = top_scale(spec)
    if scale != 1.0:
        A = A * scale
    if spec.skip:
        A = np.concatenate([A, np.broadcast_to(X, (*A.shape[:-1], X.shape[-1]))], axis=-1)
    return with_bias(A)


def top_scale(spec: NetSpec) -> float:
    r"""Factor on the top hidden output in the head's inputs: :math:`1 / \sqrt{H}` with
    ``spec.head_prior == "fan_in"`` (:math:`H` the top layer's units), else 1 (and 1 for a
    network without hidden layers)."""
    if spec.head_prior != "fan_in" or not spec.layers:
        return 1.0
    return 1.0 / float(np.sqrt(spec.layers[-1].units))


def top_jacobian(spec: NetSpec, W: np.ndarray) -> np.ndarray:
    r""":math:`\partial f / \partial h_L` from the head's weights (or its Jacobian) ``W``:
    the rows that multiply the top hidden output (:func:`top_rows`) times :func:`top_scale`.

    ``W`` has the head's rows on its second-to-last axis, with or without the bias row.
    """
    J = W[..., top_rows(spec), :]
    scale = top_scale(spec)
    return J * scale if scale != 1.0 else J


def head_width(spec: NetSpec, n_features: int) -> int:
    """Rows of the head's weights: its input width with the bias (:func:`head_design`)."""
    top = spec.layers[-1].units if spec.layers else n_features
    return top + (n_features if spec.skip else 0) + 1


def head_blocks(spec: NetSpec, n_features: int) -> tuple[int, ...] | None:
    """Rows per block of the head's inputs, in :func:`head_design`'s order, where
    ``spec.head_blocks`` asks for one prior precision per block: the top hidden output, the
    skip inputs (with the skip connection) and the bias (for a network without hidden
    layers: the inputs and the bias); ``None`` otherwise."""
    if not spec.head_blocks:
        return None
    top = spec.layers[-1].units if spec.layers else n_features
    return (top, n_features, 1) if spec.layers and spec.skip else (top, 1)


def top_rows(spec: NetSpec) -> slice:
    r"""The rows of the head's weights that multiply the top hidden output (no skip, no bias).

    They make the Jacobian :math:`\partial f / \partial h_L` through which the hidden layers
    learn; the skip rows :math:`W_x` and the bias do not depend on the hidden layers. (For a
    network without hidden layers: every row but the bias.) The first rows either way, so the
    slice also fits a Jacobian without the bias row.
    """
    return slice(0, spec.layers[-1].units) if spec.layers else slice(0, -1)


def forward(
    spec: NetSpec, hidden: Sequence[WeightPosterior], A: np.ndarray
) -> tuple[np.ndarray, tuple[LayerTrace, ...]]:
    """Forward pass at the posterior means.

    Returns
    -------
    head_inputs : ndarray of shape (n, D)
        The head's inputs (:func:`head_design`): the top hidden output, with the skip
        connection the inputs, and the bias column (the inputs and the bias, for a network
        without hidden layers).
    trace : tuple of LayerTrace
        Per hidden layer, input side first.
    """
    X, trace = A, []
    for layer, post in zip(spec.layers, hidden, strict=True):
        x = with_bias(A)
        z = x @ post.mean
        g, b = layer.linearize(z)
        A = layer.activate(z)
        trace.append(LayerTrace(x, A, g, b))
    return head_design(spec, A, X), tuple(trace)


def train_step(
    spec: NetSpec,
    state: NetState,
    X: np.ndarray,
    T: np.ndarray,
    fraction: float,
    *,
    sweeps: int | str = 1,
    overwrite: bool = False,
    first_pass: tuple[np.ndarray, tuple[LayerTrace, ...]] | None = None,
) -> tuple[NetState, StepInfo]:
    r"""One training step on a batch ``(X, T)`` (see the module docstring); pure.

    The head is updated once, with the full ``fraction``. The hidden layers then make
    ``sweeps`` backward passes, each tempered by ``1 / sweeps``: the first from the forward
    trace of the step, every later one relinearized at the updated means (a new forward
    pass, new targets from the updated head, slopes and inputs), an iterated extended Kalman
    filter step for the hidden layers. Within a batch the rows' corrections interfere through
    the shared weights, so one update does not meet every row's target; each relinearized
    sweep aims at what the previous ones left. The head sees every row once, so its noise
    statistics count one-step-ahead residuals only and a model without hidden layers gets
    the same posterior for every ``sweeps``.

    Parameters
    ----------
    spec : NetSpec
    state : NetState
    X : ndarray of shape (n, d)
        Inputs.
    T : ndarray of shape (n, k)
        The head's working targets (``head.encode``).
    fraction : float
        Tempering fraction :math:`c` in (0, 1].
    sweeps : int or "auto"
        Backward passes of the hidden layers; ``"auto"``: :func:`bayeslayers.defaults.sweeps`
        of the batch's row count.
    overwrite : bool
        Update the hidden posteriors' arrays in place (the caller owns private copies).
    first_pass : (ndarray, tuple of LayerTrace), optional
        :func:`forward` of ``state.hidden`` on ``X``, where the caller has computed it.

    Returns
    -------
    (NetState, StepInfo)
        The info's layer updates add up over the sweeps; its corrections are the largest.

    Raises
    ------
    FloatingPointError, numpy.linalg.LinAlgError
        Naming the layer whose update failed; ``state`` is then unchanged (unless
        ``overwrite``).
    """
    xh, trace = forward(spec, state.hidden, X) if first_pass is None else first_pass
    with health.named_failure("the head"):  # the density before the update, and the update
        log_pred, head_state = spec.head.score_and_update(state.head, xh, T, fraction)
    health.check_posteriors([head_state], ["the head"])
    k = defaults.sweeps(sweeps, len(X))
    hidden, noise = state.hidden, state.noise
    infos = [UpdateInfo(0.0, 0.0)] * len(hidden)
    corrections = [0.0] * len(hidden)
    names = [f"hidden layer {i}" for i in range(len(hidden))]
    for sweep in range(k if hidden else 0):
        if sweep:
            xh, trace = forward(spec, hidden, X)
        # a later sweep owns the arrays of a layer the earlier ones changed
        owned = [overwrite or p is not q for p, q in zip(hidden, state.hidden, strict=True)]
        hidden, noise, swept, largest = _backward(
            spec, head_state, hidden, noise, xh, trace, T, fraction / k, owned
        )
        infos = [
            UpdateInfo(a.n_obs + b.n_obs, a.quad + b.quad)
            for a, b in zip(infos, swept, strict=True)
        ]
        corrections = [max(a, b) for a, b in zip(corrections, largest, strict=True)]
        # after every sweep: the next one must not start from a non-finite posterior
        health.check_posteriors(hidden, names)
    state = state._replace(hidden=hidden, head=head_state, noise=noise)
    return state, StepInfo(tuple(infos), tuple(corrections), log_pred)


def _backward(
    spec: NetSpec,
    head_state: Any,
    hidden: tuple[WeightPosterior, ...],
    noise: tuple[NoiseState, ...],
    xh: np.ndarray,
    trace: tuple[LayerTrace, ...],
    T: np.ndarray,
    fraction: float,
    owned: list[bool],
) -> tuple[tuple[WeightPosterior, ...], tuple[NoiseState, ...], list[UpdateInfo], list[float]]:
    """One backward pass from the updated head: every hidden layer's target and update.

    Returns the new posteriors and noise estimates, each layer's ``UpdateInfo`` and its
    largest target correction; ``owned[i]``: layer ``i``'s arrays may be updated in place.
    """
    strategy = propagation.check_targets(spec.targets)
    new, noises = list(hidden), list(noise)
    infos = [UpdateInfo(0.0, 0.0)] * len(new)
    corrections = [0.0] * len(new)
    upper = strategy.start(*heads.teaching(spec.head, head_state), xh, T, fraction)
    # the hidden layers answer for the head's top hidden rows only, through df / dh_L
    upper = upper._replace(J=top_jacobian(spec, upper.J))
    for i in reversed(range(len(spec.layers))):
        x, h, g, b = trace[i]
        view = propagation.LayerView(x, h, g, b, hidden[i])
        tgt = strategy.target(upper, view, fraction, spec.damping, spec.clip)
        corrections[i] = float(np.abs(tgt.delta).max(initial=0.0))
        slopes, values = g, h + tgt.delta - b
        if tgt.weight is not None:  # per-observation noise sigma^2 / weight^2
            slopes, values = g * tgt.weight, values * tgt.weight
        with health.named_failure(f"hidden layer {i}"):
            new[i], infos[i] = conjugate.update(
                hidden[i],
                x,
                values,
                slopes,
                noise=noises[i].b / noises[i].a,
                fraction=fraction,
                overwrite=owned[i],
            )
        if spec.noises[i] is None:
            noises[i] = learn_noise(noises[i], infos[i], fraction)
        if i:
            upper = strategy.down(upper, view, tgt, new[i])
    return tuple(new), tuple(noises), infos, corrections


def learn_noise(noise: NoiseState, info: UpdateInfo, fraction: float) -> NoiseState:
    r"""Update a hidden layer's pseudo-noise estimate from the innovations of one update.

    The update at noise :math:`\sigma^2` reports :math:`q = \sigma^2 \sum_i r_i^2 / S_i`
    over its :math:`N = n_{obs} / c` scalar pseudo-observations (``info.quad``,
    ``info.n_obs``), with innovations :math:`r_i` and their predicted variances
    :math:`S_i = \sigma^2 / c + g_i^2 x_i^\top \Sigma x_i`. The estimate accumulates

    .. math::

        a \leftarrow a + N / 2, \qquad b \leftarrow b + q / 2, \qquad
        \hat\sigma^2 = b / a,

    the Inverse-Gamma form of an innovation-based adaptive filter: where the innovations are
    larger than the filter predicts (:math:`r^2 / S > 1` on average) the estimate grows, where
    smaller it shrinks, and its fixed point is the noise at which the layer's one-step-ahead
    predictions are calibrated (:math:`E[r^2 / S] = 1`).
    """
    if not info.n_obs:
        return noise
    return NoiseState(noise.a + info.n_obs / (2 * fraction), noise.b + info.quad / 2)


def init_state(
    spec: NetSpec,
    n_features: int,
    n_outputs: int,
    *,
    prior_precision: float,
    head_noise: float,
    hidden_noise: float,
    bias_spread: float,
    rng: np.random.Generator,
    dtype: np.dtype,
    sample_rows: np.ndarray | None = None,
) -> NetState:
    """The prior: He-scaled weight means, hidden biases with spread ``bias_spread``.

    Every weight has prior variance ``1 / prior_precision``. With ``sample_rows`` (the first
    call's inputs, never labels; at least two rows) the first hidden layer's mean comes from
    them (:func:`sample_prior_mean`); units without spread on those rows keep their He draw.
    The head's mean is zero (:func:`head_width` rows, the skip rows included). Every hidden
    layer's noise starts at its set value, or at ``hidden_noise`` held with the weight of two
    pseudo-observations where it is learned.
    """
    prior_var = 1.0 / prior_precision
    hidden = []
    fan_in = n_features
    for i, (layer, structure) in enumerate(zip(spec.layers, spec.structures, strict=True)):
        mean = np.empty((fan_in + 1, layer.units), dtype=dtype)
        mean[:-1] = rng.normal(0.0, np.sqrt(layer.init_gain / fan_in), (fan_in, layer.units))
        mean[-1] = rng.normal(0.0, bias_spread, layer.units)
        if i == 0 and sample_rows is not None and len(sample_rows) > 1:
            sampled = sample_prior_mean(sample_rows, layer, bias_spread, rng)
            flat = ~np.isfinite(sampled).all(axis=0)  # no spread on the rows: keep He
            mean[:, ~flat] = sampled[:, ~flat]
        hidden.append(conjugate.init(structure, mean, prior_var))
        fan_in = layer.units
    head_mean = np.zeros((head_width(spec, n_features), n_outputs), dtype=dtype)
    blocks = head_blocks(spec, n_features)
    head = spec.head.init(head_mean, prior_var, spec.head_structure, head_noise, blocks)
    noise = tuple(
        NoiseState(1.0, hidden_noise if fixed is None else fixed) for fixed in spec.noises
    )
    return NetState(tuple(hidden), head, noise)


def sample_prior_mean(
    X: np.ndarray, layer: Layer, bias_spread: float, rng: np.random.Generator
) -> np.ndarray:
    """First-layer prior mean ``(d + 1, units)`` built from input rows (no labels).

    Each unit's weights are a centred row of ``X`` (drawn without replacement, with
    replacement if ``X`` has fewer rows than units), scaled so that its pre-activations on
    ``X`` have spread ``sqrt(init_gain / 2)`` (1 for ReLU); the bias centres them on the rows'
    mean, plus ``N(0, bias_spread^2)``. A unit whose pre-activations have no spread on ``X``
    gets NaN (the caller keeps its He draw).
    """
    mu = X.mean(axis=0)
    pick = rng.choice(len(X), layer.units, replace=len(X) < layer.units)
    W = (X[pick] - mu).T
    spread = ((X - mu) @ W).std(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        W = W * (np.sqrt(layer.init_gain / 2.0) / np.where(spread > 0, spread, np.nan))
    bias = -mu @ W + rng.normal(0.0, bias_spread, layer.units)
    return np.vstack([W, bias])
