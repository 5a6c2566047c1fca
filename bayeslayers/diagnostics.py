r"""ArviZ export of a fitted network's posterior, and comparison of variants on held-out data.

:func:`to_inference_data` draws :math:`S` weight sets :math:`\theta_s` from every layer's
Gaussian posterior (:func:`bayeslayers.conjugate.sample`, vectorized over draws), runs the
network once per draw (by default linearized around the posterior means, the predictive of
``Network.predict``; see ``hidden``) and returns an ArviZ ``InferenceData`` with the groups

``posterior``
    ``layer{l}_w`` with dims ``(in{l}, unit{l})`` for every hidden layer ``l`` and ``head_w``
    with dims ``(in_head, output)``; input coordinates are ``"0", "1", ..., "bias"`` (with the
    skip connection, ``Network(skip=...)``, the head's rows for the network's inputs are
    ``"x0", "x1", ...``, after those of the top hidden units).
``log_likelihood``
    ``y`` with dims ``(obs,)``: the pointwise log likelihood of each observation under each
    draw :math:`\theta_s` of all the weights, :math:`\ell_{si} = \log p(y_i \mid x_i, \theta_s)`,
    summed over the outputs of a multi-output regression. For the ``Gaussian`` head
    :math:`y \sim N(f_s(x), \sigma^2)`; for ``OneHot`` the class is
    :math:`\arg\max_j (f_{s,j}(x) + \varepsilon_j)`, :math:`\varepsilon \sim N(0, \sigma^2 I)`
    (the model the head's probabilities use), by :func:`bayeslayers.heads.argmax_log_proba`
    (Laplace-centred quadrature, accurate far in the tail); for ``Probit`` and ``Logistic``
    it is the link at the drawn head weights, ``head.log_proba_given(f_s(x))``;
``posterior_predictive``
    ``y``: one draw from the same :math:`p(y_i \mid x_i, \theta_s)` per draw ``s`` (a value per
    output for regression, a class index for classification);
``observed_data``
    ``y``: the observations (class indices ``0..K-1`` for classification, the labels being the
    ``output`` coordinate of ``head_w``).

The :math:`S` draws are independent (not a Markov chain); they are laid out as ``chains``
chains of :math:`S / \text{chains}` draws (4 by default), so that ``az.summary`` and
``az.rhat`` get the layout they check: :math:`\hat R` near 1 and an effective sample size
near :math:`S` are what independent draws give, and a departure (a bug that repeats or
correlates draws) shows there. :func:`elpd` turns the
``log_likelihood`` group of an export on held-out data into the expected log pointwise
predictive density

.. math::

    \widehat{\mathrm{elpd}}_i = \log \frac{1}{S} \sum_{s=1}^{S} e^{\ell_{si}}, \qquad
    \widehat{\mathrm{elpd}} = \sum_i \widehat{\mathrm{elpd}}_i, \qquad
    \mathrm{se} = \sqrt{n \operatorname{Var}_i(\widehat{\mathrm{elpd}}_i)},

and :func:`compare` ranks variants by it with standard errors of the paired pointwise
differences, the layout of ``az.compare``. PSIS-LOO (``az.loo``) on exports of the training
data can be added; on these approximate posteriors its Pareto :math:`\hat k` is often above 0.7
(even 1), which is reported in the table and warned about.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import logsumexp

from bayeslayers import conjugate
from bayeslayers._validation import (
    check_count,
    check_features,
    check_labels,
    check_seed,
    check_targets,
)
from bayeslayers.engine import forward, top_jacobian, top_scale, with_bias
from bayeslayers.heads import Choice, RegressionHead
from bayeslayers.predictive import HIDDEN, check_hidden

__all__ = ["ELPD", "GROUPS", "HIDDEN", "compare", "elpd", "to_inference_data"]

#: Groups :func:`to_inference_data` can build.
GROUPS = ("posterior", "posterior_predictive", "log_likelihood", "observed_data")
_NEED_Y = ("log_likelihood", "observed_data")


def _spread(n: int, keep: int | None) -> np.ndarray:
    """At most ``keep`` indices out of ``n``, evenly spaced, always including the first."""
    if keep is None or keep >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, keep).round().astype(np.intp))


def _head_posterior(net) -> conjugate.WeightPosterior:
    """The head's weight posterior on the scale of the weights (:meth:`Head.weight_posterior`)."""
    return net.head.weight_posterior(net.head_state_)


def _observations(net, y, n: int) -> np.ndarray:
    """Regression targets ``(n, k)`` or class indices ``(n,)``."""
    if not net.head.is_classifier:
        return check_targets(y, n, net.n_outputs_, np.float64, name="y")
    labels = check_labels(y, n)
    index = np.searchsorted(net.classes_, labels).clip(0, len(net.classes_) - 1)
    unknown = net.classes_[index] != labels
    if np.any(unknown):
        raise ValueError(
            f"y contains labels {np.unique(labels[unknown]).tolist()} not among the network's "
            f"classes {net.classes_.tolist()}"
        )
    return index


def to_inference_data(
    net,
    X,
    y=None,
    *,
    n_draws: int = 1000,
    groups: Sequence[str] | None = None,
    var_names: Sequence[str] | None = None,
    max_units: int | None = None,
    max_inputs: int | None = None,
    chunk_size: int = 100,
    hidden: str = "linearized",
    seed: int = 0,
    chains: int = 4,
) -> az.InferenceData:
    r"""Export a fitted network's posterior and predictions on ``X`` as ArviZ ``InferenceData``.

    Parameters
    ----------
    net : Network
        A fitted network (any head following the head protocol).
    X : array-like of shape (n, d)
        Inputs for the predictive groups (held-out data for :func:`compare`).
    y : array-like, optional
        Observations for ``X`` (targets, or class labels for a classifier); needed for
        ``log_likelihood`` and ``observed_data``, which are left out without it.
    n_draws : int
        Number of independent posterior draws :math:`S`, over all chains (a multiple of
        ``chains``).
    groups : sequence of str, optional
        Subset of :data:`GROUPS` to build; all that ``y`` allows by default.
    var_names : sequence of str, optional
        Weight matrices to keep in ``posterior`` (``"layer0_w"``, ..., ``"head_w"``); all by
        default. Every layer is still drawn for the predictive groups.
    max_units, max_inputs : int, optional
        Keep at most this many units (columns of hidden layers; the head keeps every output)
        and non-bias inputs (rows) of every stored weight matrix, evenly spaced; the bias row
        is always kept. A 784x100 layer with 1,000
        draws is 630 MB in float64; ``max_units=10, max_inputs=50`` makes it 4 MB.
    hidden : {"linearized", "mean", "sample"}
        How the predictive groups treat the hidden layers' weights (``posterior`` holds draws
        of every layer except with ``"mean"``, where it holds only ``head_w``):

        ``"linearized"`` (default)
            Every layer is drawn, and the network is expanded to first order in the hidden
            weights around their posterior means (the tangent-linear pass of the extended
            Kalman filter, as in ``Network.predict_moments``): with :math:`\Delta W_{l,s}`
            the draw's deviation from the mean, :math:`x_l` and :math:`g_l` the layer input
            and slope at the means,

            .. math::

                \Delta a_{l+1} = g_l \odot (x_l \Delta W_{l,s}
                    + \Delta a_l \bar W_{l,[:-1]}), \qquad
                f_s = \bar x_{head} W_{head,s} + \Delta a_L \bar W_{head,h},

            with :math:`\bar W_{head,h}` the head's rows for the top hidden units (without
            the bias and, with the skip connection, the inputs' rows), so units off at the
            mean stay off and the draws of :math:`f_s` have the linearized predictive's mean
            and variance. It is the default because it is the
            predictive that ``predict`` and ``predict_quantiles`` report, so :func:`compare`
            scores what users get, and ``posterior`` keeps every layer. Its held-out elpd
            is close to ``"mean"``'s and far above ``"sample"``'s (benchmarks/RESULTS.md,
            Calibration). With ``"diag"`` covariance the linearized predictive is too wide,
            as it is in ``predict``.
        ``"mean"``
            Hidden layers at their posterior means; only the head is drawn (a last-layer
            posterior).
        ``"sample"``
            The full nonlinear forward pass with every layer drawn. Units that were rarely
            active kept most of their prior variance; a draw switches them on with
            prior-scale weights, which widens the predictive enormously with ``"unit"`` and
            ``"diag"`` (benchmarks/RESULTS.md). Compare with :func:`compare`.
    chunk_size : int
        Draws per forward pass; bounds the working memory to about
        ``chunk_size * n * (widest layer)`` numbers (weights of the chunk included).
    seed : int
        Seeds the draws (the network's own generator is not touched); the export does not
        depend on ``chunk_size``.
    chains : int
        Chains the draws are split into (in order: draw ``s`` is draw ``s mod (S / chains)``
        of chain ``s // (S / chains)``); ``chains=1`` gives the layout of earlier versions.

    Notes
    -----
    A regression head with a learned noise has a Normal-Inverse-Gamma posterior: each draw
    takes its noise variance :math:`\sigma_s^2 \sim \mathrm{IG}(a, b)` jointly with the head's
    weights (``RegressionHead.noise_draws``), and ``log_likelihood`` and
    ``posterior_predictive`` use that draw's :math:`\sigma_s`, so the export's predictive is
    the Student-t that ``predict`` reports.

    Returns
    -------
    arviz.InferenceData
        Dims and coordinates as described in the module docstring; ``attrs`` record the
        head, the covariance structures, ``n_draws``, ``hidden``, ``hidden_scale`` (the
        factor on the hidden layers' variance in the predictive groups: the network's with
        ``hidden="linearized"``, else 1; :mod:`bayeslayers.hidden_scale`) and
        ``hidden_means``: the
        means the hidden weights are drawn around, ``"posterior"`` or ``"iterate average"``
        (where predictions use it, :mod:`bayeslayers.averaging`).
    """
    n_draws, chains, chunk_size = _check_counts(net, n_draws, chains, chunk_size)
    seed = check_seed(seed)
    max_units = check_count(max_units, "max_units", allow_none=True)
    max_inputs = check_count(max_inputs, "max_inputs", allow_none=True)
    X = check_features(X, net.n_features_in_, net.dtype)
    n = X.shape[0]
    obs = None if y is None else _observations(net, y, n)
    groups = _check_groups(groups, obs is not None)
    head_post = _head_posterior(net)
    hidden_posts = list(net.prediction_state.hidden)  # the averaged means where in use
    posts = [*hidden_posts, head_post]
    check_hidden(hidden, None)
    names = [f"layer{i}_w" for i in range(len(net.layers))] + ["head_w"]
    var_names = _check_var_names(var_names, names, hidden) if "posterior" in groups else []

    rows = [_spread(p.mean.shape[0] - 1, max_inputs) for p in posts]
    rows = [np.append(r, p.mean.shape[0] - 1) for r, p in zip(rows, posts, strict=True)]
    cols = [_spread(p.mean.shape[1], max_units) for p in hidden_posts]
    cols.append(np.arange(head_post.mean.shape[1]))  # the head keeps every output
    kept: dict[str, list[np.ndarray]] = {name: [] for name in var_names}
    # One generator per weight matrix and one for the predictive draws: the result does not
    # depend on chunk_size.
    *rngs, rng, noise_rng = np.random.default_rng(seed).spawn(len(posts) + 2)
    # a regression head's noise is drawn jointly with its weights (Normal-Inverse-Gamma)
    regression = not net.head.is_classifier and isinstance(net.head, RegressionHead)
    joint = net.head if regression else None

    # the linearized predictive's hidden draws deviate from the means by sqrt(tau) of the
    # posterior's (bayeslayers.hidden_scale); sampled draws are the posterior's
    tau = net.hidden_factor_ if hidden == "linearized" else 1.0
    root = math.sqrt(tau)

    def draw(i: int, c: int, scale: np.ndarray | None = None) -> np.ndarray:
        """``c`` draws of layer ``i`` (kept as drawn from the posterior); what the predictive
        uses: the head's deviations scaled by ``scale`` (joint), a hidden layer's by
        ``root``."""
        W = conjugate.sample(posts[i], c, rngs[i])
        if i == len(posts) - 1 and scale is not None:
            W = posts[i].mean + scale[:, None, None] * (W - posts[i].mean)
        if names[i] in kept:
            whole = len(rows[i]) == W.shape[1] and len(cols[i]) == W.shape[2]
            kept[names[i]].append(W if whole else W[:, rows[i]][:, :, cols[i]])
        if i < len(posts) - 1 and root != 1.0:
            W = posts[i].mean + root * (W - posts[i].mean)
        return W

    ll: list[np.ndarray] = []  # empty without observations
    pp: list[np.ndarray] = []
    xb = with_bias(X)
    spec = net.spec
    mean_xh, cache = forward(spec, hidden_posts, X)
    # linearized: the outputs at the means of the layers' pre-activations, x_l W_l
    mean_z = [x @ post.mean for (x, *_), post in zip(cache, hidden_posts, strict=True)]
    for start in range(0, n_draws, chunk_size):
        c = min(chunk_size, n_draws - start)
        var = scale = None
        if joint is not None:
            var, scale = joint.noise_draws(net.head_state_, c, noise_rng)
        chunk_draw = functools.partial(draw, scale=scale)
        if hidden == "sample":
            F = _sampled_predictors(net, spec, xb, chunk_draw, c)
        else:
            F = _linearized_predictors(
                hidden_posts,
                cache,
                mean_xh,
                mean_z,
                top_jacobian(spec, head_post.mean),
                chunk_draw,
                c,
                hidden,
            )
        chunk_ll, chunk_pp = _predictive_draws(net, F, obs, rng, var)
        if chunk_ll is not None:
            ll.append(chunk_ll)
        pp.append(chunk_pp)

    kept_draws = (posts, kept, rows, cols)
    variables, coords = _variables(net, spec.skip, groups, names, kept_draws, obs, pp, ll)
    attrs = {
        "inference_library": "bayeslayers",
        "head": net.head.kind,
        "covariance": [p.structure for p in posts],
        "n_draws": n_draws,
        "chains": chains,
        "hidden": hidden,
        # the hidden layers' draws are centred on the means that predictions use
        "hidden_means": "iterate average" if net.averaging_ else "posterior",
        # the factor on the hidden layers' variance in the predictive groups
        "hidden_scale": tau,
    }
    if net.head.is_classifier:
        attrs["classes"] = [str(c) for c in net.classes_]
    if isinstance(net.head, Choice):  # the draws are the leading readout's
        attrs["readout"] = net.head.chosen(net.head_state_)
    return _assemble(variables, coords, attrs, chains)


def _check_counts(net, n_draws, chains, chunk_size) -> tuple[int, int, int]:
    """The export's fitted network and its draw counts, checked before any work."""
    if not getattr(net, "is_fitted", False):
        raise ValueError("net must be a fitted Network: call fit or partial_fit first")
    n_draws = check_count(n_draws, "n_draws")
    chains = check_count(chains, "chains")
    if n_draws % chains:
        raise ValueError(f"n_draws={n_draws} must be a multiple of chains={chains}")
    return n_draws, chains, check_count(chunk_size, "chunk_size")


def _variables(net, skip, groups, names, kept_draws, obs, pp, ll) -> tuple[dict, dict[str, Any]]:
    """The export's variables per group and their coordinates.

    ``skip``: the head's inputs hold the network's inputs (``NetSpec.skip``); ``kept_draws``
    is ``(posts, kept, rows, cols)``: the posteriors, the kept weight draws and the rows and
    columns kept of each; ``pp`` and ``ll`` the chunks of predictive draws and pointwise log
    likelihoods.
    """
    posts, kept, rows, cols = kept_draws
    n = pp[0].shape[1]
    coords: dict[str, Any] = {"obs": np.arange(n)}
    variables: dict[str, dict[str, tuple[tuple[str, ...], np.ndarray]]] = {}
    if kept:
        variables["posterior"] = _posterior_group(net, skip, names, posts, kept, rows, cols, coords)
    y_dims: tuple[str, ...] = ("obs",)
    multi = not net.head.is_classifier and net.n_outputs_ > 1
    if multi:
        y_dims = ("obs", "output")
        coords["output"] = _output_coords(net)
    squeeze = () if multi or net.head.is_classifier else (-1,)
    if "posterior_predictive" in groups:
        variables["posterior_predictive"] = {"y": (y_dims, np.concatenate(pp).squeeze(squeeze))}
    if "log_likelihood" in groups:
        variables["log_likelihood"] = {"y": (("obs",), np.concatenate(ll))}
    if "observed_data" in groups and obs is not None:  # checked above: the group needs y
        variables["observed_data"] = {"y": (y_dims, obs.squeeze(squeeze))}
    return variables, coords


def _posterior_group(net, skip, names, posts, kept, rows, cols, coords) -> dict:
    """The ``posterior`` group's variables; adds their dims' coordinates to ``coords``.

    Input rows are named by index and ``"bias"``; with ``skip`` the head's rows for the
    network's inputs (after the top hidden units) are ``"x0", "x1", ...``. The head's rows
    for the top units are the weights of :math:`h_L` itself: under the fan-in prior, whose
    head sees :math:`h_L / \\sqrt{H}`, its weights times
    :func:`bayeslayers.engine.top_scale`.
    """
    group = {}
    for i, name in enumerate(names):
        if name not in kept:
            continue
        n_in = posts[i].mean.shape[0] - 1
        if i < len(net.layers):
            in_dim, out_dim, out_coords = f"in{i}", f"unit{i}", cols[i]
            top = n_in
        else:
            in_dim, (out_dim, out_coords) = "in_head", _head_columns(net, len(cols[i]))
            top = net.layers[-1].units if skip else n_in
        coords[in_dim] = [
            str(r) if r < top else f"x{r - top}" if r < n_in else "bias" for r in rows[i]
        ]
        coords[out_dim] = out_coords
        values = np.concatenate(kept[name])
        scale = top_scale(net.spec) if i == len(net.layers) else 1.0
        if scale != 1.0:  # (S, rows, columns): the rows of the top units on h_L's scale
            values[:, np.asarray(rows[i]) < top] *= scale
        group[name] = ((in_dim, out_dim), values)
    return group


def _check_groups(groups: Sequence[str] | None, have_y: bool) -> list[str]:
    """The groups to build (all that ``y`` allows by default), each checked."""
    if groups is None:
        return [g for g in GROUPS if have_y or g not in _NEED_Y]
    groups = list(groups)
    for g in groups:
        if g not in GROUPS:
            raise ValueError(f"groups may contain only {GROUPS}, got {g!r}")
        if g in _NEED_Y and not have_y:
            raise ValueError(f"group {g!r} needs the observations y")
    return groups


def _check_var_names(var_names: Sequence[str] | None, names: list[str], hidden: str) -> list:
    """The weight matrices kept in ``posterior`` (only the head's with ``hidden="mean"``)."""
    available = names if hidden != "mean" else names[-1:]
    chosen = available if var_names is None else list(var_names)
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise ValueError(
            f"var_names {unknown} are not among the weights {available} (hidden={hidden!r})"
        )
    return chosen


def _sampled_predictors(net, spec, xb: np.ndarray, draw, c: int) -> np.ndarray:
    """Head predictors ``(c, n, k)`` of the full nonlinear pass, every layer drawn.

    With ``spec.skip`` the head's rows are :math:`[W_h; W_x; b]` and
    :math:`f_s = s h_s W_{h,s} + [x, 1] [W_{x,s}; b_s]`, :math:`s` the top hidden output's
    factor in the head's inputs (:func:`bayeslayers.engine.top_scale`).
    """
    A: np.ndarray | None = None
    for i, layer in enumerate(net.layers):
        Z = _first_layer(xb, draw(i, c)) if A is None else _affine(A, draw(i, c))
        A = layer.activate(Z)
    W = draw(len(net.layers), c)
    if A is None:
        return _first_layer(xb, W)
    scale = top_scale(spec)
    if scale != 1.0:
        A = A * scale
    if spec.skip:
        m = A.shape[-1]
        return np.matmul(A, W[:, :m]) + _first_layer(xb, W[:, m:])
    return _affine(A, W)


def _linearized_predictors(
    hidden_posts, cache, mean_xh, mean_z, head_top, draw, c: int, hidden: str
) -> np.ndarray:
    """Head predictors ``(c, n, k)`` of the tangent-linear pass (``hidden="mean"``: the head
    drawn alone); see :func:`to_inference_data`. ``hidden_posts``: the hidden posteriors at
    the means predictions use; ``head_top``: :math:`\\partial f / \\partial h_L` at the head's
    mean (:func:`bayeslayers.engine.top_jacobian`)."""
    dA = None  # first-order change of each layer's output
    if hidden == "linearized":
        for i, ((x, _, slope, _), post) in enumerate(zip(cache, hidden_posts, strict=True)):
            dA_next = _first_layer(x, draw(i, c))
            dA_next -= mean_z[i]
            if dA is not None:
                dA_next += dA @ post.mean[:-1]
            dA_next *= slope
            dA = dA_next
    F = _first_layer(mean_xh, draw(len(hidden_posts), c))
    if dA is not None:
        F += dA @ head_top
    return F


def _predictive_draws(net, F, obs, rng, noise=None) -> tuple[np.ndarray | None, np.ndarray]:
    """Pointwise log likelihood ``(S, n)`` (None without ``obs``) and one predictive draw.

    ``F`` ``(S, n, k)`` are the head's linear predictors for the weight draws, ``noise`` the
    draws' noise variances (regression heads, drawn jointly with the head's weights).
    """
    head, state = net.head, net.head_state_
    if noise is None:
        ll = None if obs is None else head.log_likelihood(state, F, obs)
        return ll, head.sample(state, F, rng)
    ll = None if obs is None else head.log_likelihood(state, F, obs, noise)
    return ll, head.sample(state, F, rng, noise)


def _affine(A: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``with_bias(A) @ W`` without copying ``A``: ``A @ W[:, :-1] + W[:, -1]`` per draw."""
    return np.matmul(A, W[:, :-1]) + W[:, -1:]


def _first_layer(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``x @ W[s]`` for every draw ``s`` as one matrix product: ``(n, D) x (S, D, m) -> (S, n, m)``.

    (A stacked product with a broadcast ``x`` is many times slower.)
    """
    S, D, m = W.shape
    return (x @ W.transpose(1, 0, 2).reshape(D, S * m)).reshape(-1, S, m).transpose(1, 0, 2)


def _output_coords(net) -> np.ndarray:
    return np.asarray(net.classes_) if net.head.is_classifier else np.arange(net.n_outputs_)


def _head_columns(net, n_columns: int) -> tuple[str, np.ndarray]:
    """Dim and coordinates of the head's weight columns.

    One column per output or class: ``"output"`` with the class labels. Heads with fewer
    columns (a binary probit's one, a multinomial logit's ``K - 1`` with the last class as
    reference) get their own dim ``"head_column"`` labelled by the classes the columns model.
    """
    labels = _output_coords(net)
    if len(labels) == n_columns:
        return "output", labels
    if n_columns == 1 and len(labels) == 2:  # binary: the column is the second class's score
        return "head_column", labels[1:]
    return "head_column", labels[:n_columns]


def _assemble(variables, coords, attrs, chains: int = 1) -> az.InferenceData:
    """The one ArviZ-version-specific step: named arrays -> ``InferenceData`` (ArviZ 0.x).

    ``variables[group][name] = (dims, array)``; arrays of sampled groups have a leading draw
    axis of length ``S``, split into ``(chains, S / chains)``. With ArviZ 1.x this becomes
    ``xr.DataTree.from_dict`` over the same datasets.
    """
    datasets: dict[str, Any] = {}
    for group, entries in variables.items():
        data_vars = {}
        for name, (dims, value) in entries.items():
            if group != "observed_data":
                dims = ("chain", "draw", *dims)
                value = value.reshape(chains, value.shape[0] // chains, *value.shape[1:])
            data_vars[name] = (dims, value)
        used = {d for dims, _ in data_vars.values() for d in dims}
        group_coords = {k: v for k, v in coords.items() if k in used}
        if group != "observed_data":
            n_draws = next(iter(data_vars.values()))[1].shape[1]
            group_coords |= {"chain": np.arange(chains), "draw": np.arange(n_draws)}
        datasets[group] = xr.Dataset(data_vars, coords=group_coords, attrs=dict(attrs))
    return az.InferenceData(**datasets)


class ELPD(NamedTuple):
    """Expected log pointwise predictive density of one export.

    Attributes
    ----------
    elpd : float
        :math:`\\sum_i \\widehat{\\mathrm{elpd}}_i`.
    se : float
        Its standard error :math:`\\sqrt{n \\operatorname{Var}_i \\widehat{\\mathrm{elpd}}_i}`.
    pointwise : ndarray of shape (n,)
        :math:`\\widehat{\\mathrm{elpd}}_i = \\log \\tfrac1S \\sum_s e^{\\ell_{si}}`.
    """

    elpd: float
    se: float
    pointwise: np.ndarray


def _log_likelihood(idata, var_name: str) -> np.ndarray:
    """Pointwise log likelihood as ``(S, n)``, chains and draws stacked."""
    if not hasattr(idata, "log_likelihood"):
        raise ValueError("idata has no log_likelihood group: export it with the observations y")
    if var_name not in idata.log_likelihood:
        raise ValueError(f"log_likelihood has no variable {var_name!r}")
    da = idata.log_likelihood[var_name]
    values = da.values.reshape(da.sizes["chain"] * da.sizes["draw"], -1)
    return values


def elpd(idata, var_name: str = "y") -> ELPD:
    """Held-out expected log pointwise predictive density of an export (see module docstring).

    Parameters
    ----------
    idata : arviz.InferenceData
        From :func:`to_inference_data` on held-out ``(X, y)``; only its ``log_likelihood``
        group is used.
    var_name : str
        Variable of the ``log_likelihood`` group.
    """
    ll = _log_likelihood(idata, var_name)
    pointwise = logsumexp(ll, axis=0) - np.log(ll.shape[0])
    return ELPD(float(pointwise.sum()), float(np.sqrt(len(pointwise) * pointwise.var())), pointwise)


def compare(
    test: Mapping[str, az.InferenceData],
    *,
    train: Mapping[str, az.InferenceData] | None = None,
    var_name: str = "y",
    k_threshold: float = 0.7,
) -> pd.DataFrame:
    r"""Rank variants by held-out elpd, with standard errors of paired differences.

    For models :math:`A` (the best) and :math:`B`, the difference is
    :math:`\Delta = \sum_i (\widehat{\mathrm{elpd}}_{A,i} - \widehat{\mathrm{elpd}}_{B,i})` with
    :math:`\mathrm{dse} = \sqrt{n \operatorname{Var}_i(\cdot)}` over the same points, which is
    much smaller than the two ``se`` combined when the models err on the same points.

    Parameters
    ----------
    test : mapping of name to InferenceData
        Exports (:func:`to_inference_data`) of every variant on the same held-out points.
    train : mapping of name to InferenceData, optional
        Exports on each variant's training data: adds PSIS-LOO (``az.loo``) columns
        ``elpd_loo``, ``p_loo``, ``k_max`` and ``k_bad`` (number of points with
        :math:`\hat k >` ``k_threshold``), and warns about every variant with such points,
        since its LOO estimate is then unreliable.
    var_name : str
        Variable of the ``log_likelihood`` groups.
    k_threshold : float
        Pareto :math:`\hat k` above which a LOO estimate is flagged (0.7 is ArviZ's).

    Returns
    -------
    pandas.DataFrame
        Indexed by variant, best first, with columns ``rank``, ``elpd_test``, ``se``,
        ``elpd_diff``, ``dse``, ``n_points`` (and the LOO columns), as ``az.compare`` lays out
        its table; ``warning`` is True where LOO was computed and some :math:`\hat k` is bad.
    """
    if not isinstance(test, Mapping) or not test:
        raise ValueError("test must be a non-empty mapping of variant name to InferenceData")
    if train is not None and set(train) != set(test):
        raise ValueError(f"train must have the same variants as test, got {sorted(train)}")
    results = {name: elpd(idata, var_name) for name, idata in test.items()}
    sizes = {name: len(r.pointwise) for name, r in results.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"every export in test must cover the same points, got sizes {sizes}")
    _check_same_observations(test)
    order = sorted(results, key=lambda name: -results[name].elpd)
    best = results[order[0]].pointwise
    rows = []
    for rank, name in enumerate(order):
        r = results[name]
        diff = best - r.pointwise
        rows.append(
            {
                "rank": rank,
                "elpd_test": r.elpd,
                "se": r.se,
                "elpd_diff": float(diff.sum()),
                "dse": float(np.sqrt(len(diff) * diff.var())),
                "n_points": len(diff),
            }
        )
    table = pd.DataFrame(rows, index=pd.Index(order, name="variant"))
    if train is not None:
        loo = pd.DataFrame(
            {name: _loo(train[name], name, var_name, k_threshold) for name in order}
        ).T
        table = table.join(loo)
    return table


def _check_same_observations(test: Mapping[str, az.InferenceData]) -> None:
    observed = [
        (name, idata.observed_data["y"].values)
        for name, idata in test.items()
        if hasattr(idata, "observed_data") and "y" in idata.observed_data
    ]
    for name, values in observed[1:]:
        if values.shape != observed[0][1].shape or not np.array_equal(values, observed[0][1]):
            raise ValueError(
                f"test exports must be on the same held-out points: observed_data of {name!r} "
                f"differs from {observed[0][0]!r}"
            )


def _loo(idata, name: str, var_name: str, k_threshold: float) -> dict[str, float]:
    """PSIS-LOO summary of one export, warning when Pareto k is too high."""
    with warnings.catch_warnings():
        # ArviZ's own message is generic; ours below names the variant and the k values.
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        res = az.loo(idata, pointwise=True, var_name=var_name, reff=1.0)  # iid draws
    k = np.asarray(res.pareto_k)
    bad = int(np.sum(k > k_threshold))
    if bad:
        warnings.warn(
            f"PSIS-LOO of {name!r}: {bad} of {k.size} points have Pareto k > {k_threshold} "
            f"(max {k.max():.2f}); its elpd_loo is unreliable on this approximate posterior, "
            "prefer elpd_test on held-out data",
            UserWarning,
            stacklevel=3,
        )
    return {
        "elpd_loo": float(res.elpd_loo),
        "se_loo": float(res.se),
        "p_loo": float(res.p_loo),
        "k_max": float(k.max()),
        "k_bad": bad,
        "warning": bad > 0,
    }
