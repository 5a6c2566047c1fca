"""ArviZ export (dims, coords, draws), held-out elpd and comparison, predictive quantiles."""

from __future__ import annotations

import copy
import warnings

import arviz as az
import matplotlib
import numpy as np
import pytest
from scipy import stats
from scipy.special import ndtr

from bayeslayers import Network, heads, layers, metrics, predictive
from bayeslayers.diagnostics import compare, elpd, to_inference_data

matplotlib.use("Agg")

RNG = np.random.default_rng(0)
X = RNG.uniform(-1, 1, (30, 2))
Y2 = np.column_stack([np.sin(3 * X[:, 0]), X[:, 1] ** 2]) + 0.1 * RNG.standard_normal((30, 2))
LABELS = np.array(["a", "b", "c"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]


@pytest.fixture(scope="module")
def regressor():
    # the reference backward step and head: the sampled-vs-linearized comparison below is of
    # this fit (skip_regressor has the skip connection)
    net = Network(
        [layers.ReLU(4), layers.ReLU(3)], noise=0.1, seed=1, targets="min_norm", skip=False
    )
    return net.fit(X, Y2, batch_size=5)


@pytest.fixture(scope="module")
def skip_regressor():
    """The head sees [h, x, 1]: 3 top units, then the 2 inputs, then the bias."""
    net = Network([layers.ReLU(4), layers.ReLU(3)], noise=0.1, seed=1, skip=True)
    return net.fit(X, Y2, batch_size=5)


@pytest.fixture(scope="module")
def fan_in_regressor():
    """The fan-in head prior (the top output enters the head divided by sqrt(3)), skip on."""
    net = Network(
        [layers.ReLU(4), layers.ReLU(3)], noise=0.1, seed=1, skip=True, head_prior="fan_in"
    )
    return net.fit(X, Y2, batch_size=5)


@pytest.fixture(scope="module")
def classifier():
    return Network([layers.ReLU(5)], head=heads.OneHot(), seed=2).fit(X, LABELS, batch_size=5)


# ------------------------------------------------------------------------------ export
def test_regression_export_dims_and_coords(regressor):
    idata = to_inference_data(regressor, X, Y2, n_draws=48, chunk_size=16)
    assert set(idata.groups()) == {
        "posterior",
        "posterior_predictive",
        "log_likelihood",
        "observed_data",
    }
    post = idata.posterior
    assert post["layer0_w"].dims == ("chain", "draw", "in0", "unit0")
    assert post["layer0_w"].shape == (4, 12, 3, 4)
    assert post["layer1_w"].shape == (4, 12, 5, 3)
    assert post["head_w"].dims == ("chain", "draw", "in_head", "output")
    assert post["head_w"].shape == (4, 12, 4, 2)
    assert post["in0"].values.tolist() == ["0", "1", "bias"]
    assert post["unit1"].values.tolist() == [0, 1, 2]
    assert idata.posterior_predictive["y"].dims == ("chain", "draw", "obs", "output")
    assert idata.posterior_predictive["y"].shape == (4, 12, 30, 2)
    assert idata.log_likelihood["y"].shape == (4, 12, 30)
    np.testing.assert_array_equal(idata.observed_data["y"].values, Y2)
    # the two-output Gaussian head's columns share one covariance (defaults.head_structure)
    assert idata.posterior.attrs["covariance"] == ["unit", "unit", "shared"]
    assert idata.posterior.attrs["hidden"] == "linearized"
    assert idata.posterior.attrs["hidden_means"] == (
        "iterate average" if regressor.averaging_ else "posterior"
    )


def test_the_export_draws_around_the_means_predictions_use():
    """With the iterate average in use, the hidden draws are centred on the averaged means."""
    net = Network([layers.ReLU(4)], noise=0.1, seed=1, average=True).fit(X, Y2, batch_size=5)
    idata = to_inference_data(net, X, n_draws=400, groups=("posterior",), chunk_size=100)
    assert idata.posterior.attrs["hidden_means"] == "iterate average"
    draws = idata.posterior["layer0_w"].values.reshape(-1, *net.average_.means[0].shape)
    post = net.posteriors_[0]  # "unit": one (D, D) covariance per unit
    bound = 5 * np.sqrt(np.diagonal(post.cov, axis1=1, axis2=2).T / len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - net.average_.means[0]) < bound)
    assert np.any(np.abs(post.mean - net.average_.means[0]) > bound)  # not the posterior means


def test_a_skip_head_exports_its_input_rows_and_its_predictors(skip_regressor):
    """Head rows "0".."2" (top units), "x0", "x1" (inputs), "bias"; the sampled predictors are
    the nonlinear pass of the exported draws with the head on [h, x, 1], and the linearized
    draws have predict_moments' mean and variance."""
    net = skip_regressor
    idata = to_inference_data(net, X, Y2, n_draws=40, hidden="sample", seed=4)
    post = idata.posterior.stack(s=("chain", "draw")).transpose("s", ...)
    assert post["in_head"].values.tolist() == ["0", "1", "2", "x0", "x1", "bias"]
    W0, W1, Wh = (post[name].values for name in ("layer0_w", "layer1_w", "head_w"))
    ones = np.ones((40, len(X), 1))
    h = np.maximum(np.concatenate([np.broadcast_to(X, (40, *X.shape)), ones], -1) @ W0, 0)
    h = np.maximum(np.concatenate([h, ones], -1) @ W1, 0)
    F = np.concatenate([h, np.broadcast_to(X, (40, *X.shape)), ones], -1) @ Wh
    ll = stats.norm.logpdf(Y2, F, np.sqrt(0.1)).sum(axis=-1)  # the head's fixed noise
    got = idata.log_likelihood["y"].stack(s=("chain", "draw")).transpose("s", ...).values
    np.testing.assert_allclose(got, ll, rtol=1e-10)
    S = 4000
    lin = to_inference_data(net, X[:8], Y2[:8], n_draws=S, seed=3)
    y = lin.posterior_predictive["y"].stack(s=("chain", "draw")).transpose("s", ...).values
    mean, var = net.predict_moments(X[:8])
    assert np.all(np.abs(y.mean(axis=0) - mean) < 5 * np.sqrt(var / S))
    np.testing.assert_allclose(y.var(axis=0) / var, 1.0, atol=5 * np.sqrt(2 / S))


def test_export_is_reproducible_and_leaves_the_network_alone(regressor):
    state = copy.deepcopy(regressor.rng_.bit_generator.state)
    a = to_inference_data(regressor, X, Y2, n_draws=20, seed=3)
    b = to_inference_data(regressor, X, Y2, n_draws=20, seed=3, chunk_size=7)
    np.testing.assert_array_equal(a.posterior["layer1_w"], b.posterior["layer1_w"])
    np.testing.assert_array_equal(a.log_likelihood["y"], b.log_likelihood["y"])
    assert regressor.rng_.bit_generator.state == state


def test_classifier_export(classifier):
    idata = to_inference_data(classifier, X, LABELS, n_draws=40)
    assert idata.posterior["output"].values.tolist() == ["a", "b", "c"]
    assert idata.observed_data["y"].dims == ("obs",)
    np.testing.assert_array_equal(
        idata.observed_data["y"].values, np.searchsorted(["a", "b", "c"], LABELS)
    )
    pp = idata.posterior_predictive["y"].values
    assert pp.shape == (4, 10, 30) and set(np.unique(pp)) <= {0, 1, 2}
    assert np.all(idata.log_likelihood["y"].values <= 0)
    assert idata.posterior.attrs["classes"] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("head", "labels", "columns"),
    [
        (heads.Logistic(fit="laplace"), LABELS, ["a", "b"]),  # last class is the reference
        (heads.Probit(fit="adf"), np.where(LABELS == "a", "a", "z"), ["z"]),  # binary
    ],
)
def test_export_of_heads_with_fewer_columns_than_classes(head, labels, columns):
    net = Network([layers.ReLU(5)], head=head, seed=2).fit(X, labels, batch_size=5)
    idata = to_inference_data(net, X, labels, n_draws=12)
    assert idata.posterior["head_w"].dims == ("chain", "draw", "in_head", "head_column")
    assert idata.posterior["head_column"].values.tolist() == columns
    assert idata.log_likelihood["y"].shape == (4, 3, 30)


def test_selection_keeps_bias_row_and_spreads_units():
    Xw = RNG.standard_normal((20, 10))
    net = Network([layers.ReLU(8)], seed=0).fit(Xw, Xw[:, 0], batch_size=10)
    idata = to_inference_data(net, Xw, n_draws=12, max_units=3, max_inputs=4)
    assert idata.posterior["in0"].values.tolist() == ["0", "3", "6", "9", "bias"]
    assert idata.posterior["unit0"].values.tolist() == [0, 4, 7]
    assert idata.posterior["layer0_w"].shape == (4, 3, 5, 3)
    # max_inputs thins the head's inputs too; the head keeps every output
    assert idata.posterior["head_w"].shape == (4, 3, 5, 1)
    full = to_inference_data(net, Xw, n_draws=12).posterior["layer0_w"].values
    np.testing.assert_array_equal(
        idata.posterior["layer0_w"].values, full[:, :, [0, 3, 6, 9, 10]][..., [0, 4, 7]]
    )
    only_head = to_inference_data(net, Xw, n_draws=8, var_names=["head_w"])
    assert list(only_head.posterior.data_vars) == ["head_w"]
    # without y: the groups that need it are left out
    assert set(only_head.groups()) == {"posterior", "posterior_predictive"}


@pytest.mark.parametrize("structure", ["unit", "shared", "diag"])
def test_draws_have_the_posterior_mean_and_covariance(structure):
    """Sample moments of 20,000 draws against the posterior (fixed seed).

    Tolerance: 5 standard errors, with se(mean) = sqrt(S_ii / n) and
    se(cov_ij) = sqrt((S_ii S_jj + S_ij^2) / n) for Gaussian draws.
    """
    Xs = RNG.standard_normal((6, 2))
    net = Network([layers.Linear(2)], covariance=structure, noise=0.3, seed=4, sweeps=1)
    net.fit(Xs, Xs @ [1.0, -1.0], batch_size=3)
    post = net.posteriors_[0]
    n = 20_000
    idata = to_inference_data(
        net, Xs[:1], n_draws=n, groups=["posterior"], var_names=["layer0_w"], seed=5
    )
    draws = (
        idata.posterior["layer0_w"].stack(s=("chain", "draw")).transpose("s", ...).values
    )  # (n, D=3, m=2)
    flat = draws.transpose(0, 2, 1).reshape(n, -1)  # columns w_0 then w_1
    if structure == "unit":
        cov = np.zeros((6, 6))
        cov[:3, :3], cov[3:, 3:] = post.cov[0], post.cov[1]
    elif structure == "shared":
        cov = np.kron(np.eye(2), post.cov)
    else:
        cov = np.diag(post.cov.T.ravel())
    # The posterior is not the prior: the check covers real correlations.
    if structure != "diag":
        assert np.abs(cov[0, 1]) > 0.01
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_array_less(np.abs(flat.mean(0) - post.mean.T.ravel()), 5 * sd / np.sqrt(n))
    se = np.sqrt((np.outer(sd**2, sd**2) + cov**2) / n)
    np.testing.assert_array_less(np.abs(np.cov(flat, rowvar=False) - cov), 5 * se)


BINARY = np.where(LABELS == "a", "a", "z")


@pytest.mark.parametrize(
    ("head", "labels"),
    [
        (heads.Gaussian(), None),
        (heads.OneHot(), LABELS),
        (heads.Probit(fit="adf"), BINARY),  # P = Phi(m / sqrt(1 + v)) exactly
        (heads.Logistic(fit="laplace", n_draws=20000), BINARY),  # E softmax([eta, 0]) by MC
    ],
    ids=["gaussian", "onehot", "probit", "logistic"],
)
def test_log_likelihood_averages_to_the_analytic_predictive(head, labels):
    """With no hidden layer the head's predictive is exact: mean_s p(y | W_s) -> p(y).

    The log likelihood is per draw for every head (probit and logistic heads too: the link at
    the drawn head weights), so it varies over the draws.
    """
    Xs, y = X[:12], (Y2[:12, 0] if labels is None else labels[:12])
    net = Network([], head=head, noise=0.5, seed=0).fit(Xs, y)
    ll = (
        to_inference_data(net, Xs, y, n_draws=4000, seed=1)
        .log_likelihood["y"]
        .stack(s=("chain", "draw"))
        .transpose("s", ...)
        .values
    )
    assert np.all(ll.std(axis=0) > 0)
    p = np.exp(ll)
    if head.is_classifier:
        exact = net.predict_proba(Xs)[np.arange(12), np.searchsorted(net.classes_, y)]
    else:
        mean, sd = net.predict(Xs, return_std=True)
        exact = stats.norm.pdf(y, mean, sd)
    tol = 5 * p.std(axis=0) / np.sqrt(len(p)) + (0.01 if head.kind == "logistic" else 1e-12)
    np.testing.assert_array_less(np.abs(p.mean(axis=0) - exact), tol)


def test_learned_noise_is_drawn_jointly_with_the_head_weights():
    """With a learned noise (Normal-Inverse-Gamma) the export draws sigma^2 with the head's
    weights, so mean_s p(y | W_s, sigma_s) tends to the Student-t predictive that ``predict``
    reports, and the predictive draws have its variance (5 standard errors)."""
    head = heads.Gaussian(learn_noise=True, noise_memory=None, prior_evidence=False)
    Xs, y = X[:12], Y2[:12, 0]
    net = Network([], head=head, seed=0).fit(Xs, y)
    nu = net.predictive_dof()
    assert 2 < nu < 100  # a few rows: clearly heavier tails than a Gaussian
    S = 20_000
    idata = to_inference_data(net, Xs, y, n_draws=S, seed=1)
    ll = idata.log_likelihood["y"].stack(s=("chain", "draw")).transpose("s", ...).values
    p = np.exp(ll)
    mean, sd = net.predict(Xs, return_std=True)
    exact = np.exp(metrics.log_density_student_t(y, mean, sd, nu))
    np.testing.assert_array_less(np.abs(p.mean(axis=0) - exact), 5 * p.std(axis=0) / np.sqrt(S))
    draws = idata.posterior_predictive["y"].stack(s=("chain", "draw")).transpose("s", ...).values
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=5 * sd.max() / np.sqrt(S))
    # heavier tails than the plug-in Gaussian: more mass beyond 3 sd than its 0.27%
    z = np.abs(draws - mean) / sd
    assert np.mean(z > 3) > 1.5 * 2 * stats.norm.sf(3)


def test_linearized_draws_have_the_linearized_predictive_moments(regressor, fan_in_regressor):
    """hidden="linearized" (default): f_s is linear in the draws, so the predictive draws have
    the mean and variance of ``predict_moments`` (5 standard errors; var: sd sqrt(2/S)),
    under the flat and the fan-in head prior."""
    S = 4000
    for net in (regressor, fan_in_regressor):
        idata = to_inference_data(net, X[:8], Y2[:8], n_draws=S, seed=3)
        assert list(idata.posterior.data_vars) == ["layer0_w", "layer1_w", "head_w"]
        y = (
            idata.posterior_predictive["y"].stack(s=("chain", "draw")).transpose("s", ...).values
        )  # (S, 8, 2): f_s + noise
        mean, var = net.predict_moments(X[:8])
        assert np.all(np.abs(y.mean(axis=0) - mean) < 5 * np.sqrt(var / S))
        np.testing.assert_allclose(y.var(axis=0) / var, 1.0, atol=5 * np.sqrt(2 / S))
    # the nonlinear forward pass with sampled hidden weights differs (here: wider)
    sampled = to_inference_data(regressor, X[:8], Y2[:8], n_draws=S, hidden="sample", seed=3)
    assert (
        np.median(
            sampled.posterior_predictive["y"]
            .stack(s=("chain", "draw"))
            .transpose("s", ...)
            .values.var(axis=0)
            / var
        )
        > 1.2
    )


def test_the_fan_in_head_exports_the_weights_of_the_top_units_themselves(fan_in_regressor):
    """The head's rows for the top units are exported on the scale of h_L (the fitted
    weights of h_L / sqrt(H) times 1 / sqrt(H)); the skip rows and the bias as fitted. The
    sampled predictive recomputes f from them and the network's own inputs."""
    net = fan_in_regressor
    S = 20_000
    idata = to_inference_data(net, X[:8], n_draws=S, groups=["posterior"], seed=2)
    draws = idata.posterior["head_w"].stack(s=("chain", "draw")).transpose("s", ...).values
    mean = net.head_state_.post.mean.copy()
    mean[:3] /= np.sqrt(3)
    sd = np.sqrt(np.var(draws, axis=0))
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - mean), 5 * sd / np.sqrt(S) + 1e-12)
    assert idata.posterior["head_w"].coords["in_head"].values.tolist() == [
        "0",
        "1",
        "2",
        "x0",
        "x1",
        "bias",
    ]
    sampled = to_inference_data(net, X[:8], n_draws=2000, hidden="sample", seed=3)
    f = sampled.posterior_predictive["y"].stack(s=("chain", "draw")).values.mean(axis=-1)
    np.testing.assert_allclose(f, net.predict(X[:8]), atol=0.15)


def test_hidden_mean_draws_only_the_head(regressor):
    """hidden="mean": mean_s p(y | W_s) -> the head's analytic predictive at the mean features."""
    idata = to_inference_data(regressor, X[:8], Y2[:8], n_draws=4000, hidden="mean", seed=2)
    assert list(idata.posterior.data_vars) == ["head_w"]
    assert idata.posterior.attrs["hidden"] == "mean"
    p = np.exp(idata.log_likelihood["y"].stack(s=("chain", "draw")).transpose("s", ...).values)
    mean, sd = regressor.predict(X[:8], return_std=True, hidden="mean")
    exact = stats.norm.pdf(Y2[:8], mean, sd).prod(axis=1)
    tol = 5 * p.std(axis=0) / np.sqrt(len(p))
    np.testing.assert_array_less(np.abs(p.mean(axis=0) - exact), tol)
    with pytest.raises(ValueError, match="not among the weights"):
        to_inference_data(regressor, X, hidden="mean", var_names=["layer0_w"])
    with pytest.raises(ValueError, match="hidden must be"):
        to_inference_data(regressor, X, hidden="median")


def test_export_has_several_chains_and_summary_warns_of_nothing(classifier):
    """Independent draws in 4 chains: az.summary's shape check passes and r_hat is near 1."""
    import warnings

    idata = to_inference_data(classifier, X, LABELS, n_draws=400, max_units=2, max_inputs=1)
    assert (idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]) == (4, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ArviZ warns "Shape validation failed" for one chain
        summary = az.summary(idata, var_names=["layer0_w", "head_w"])
    assert np.all(np.abs(summary["r_hat"] - 1) < 0.05)
    one = to_inference_data(classifier, X, LABELS, n_draws=400, chains=1, max_units=2, max_inputs=1)
    np.testing.assert_array_equal(  # the same draws, laid out in one chain
        one.posterior["layer0_w"].values.reshape(400, -1),
        idata.posterior["layer0_w"].values.reshape(400, -1),
    )
    with pytest.raises(ValueError, match="n_draws=10 must be a multiple of chains=4"):
        to_inference_data(classifier, X, LABELS, n_draws=10)


def test_arviz_functions_work_on_the_export(classifier):
    idata = to_inference_data(classifier, X, LABELS, n_draws=100, max_units=2, max_inputs=1)
    summary = az.summary(idata, var_names=["layer0_w"])
    assert len(summary) == 2 * 2  # (1 input + bias) x 2 units
    assert np.all(summary["ess_bulk"] > 50)  # 100 independent draws, not a sticky chain
    np.testing.assert_allclose(
        summary["mean"].values,
        idata.posterior["layer0_w"].mean(("chain", "draw")).values.ravel(),
        atol=1e-3,  # summary rounds to 3 decimals
    )
    axes = az.plot_forest(idata, var_names=["layer0_w"])
    assert len(axes) == 1
    assert az.plot_ppc(idata, num_pp_samples=20) is not None
    matplotlib.pyplot.close("all")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_draws": 0}, ValueError, "n_draws"),
        ({"chunk_size": 1.5}, ValueError, "chunk_size"),
        ({"max_units": 0}, ValueError, "max_units"),
        ({"groups": ["prior"]}, ValueError, "groups may contain only"),
        ({"var_names": ["layer7_w"]}, ValueError, "not among the weights"),
    ],
)
def test_bad_arguments(regressor, kwargs, error, match):
    with pytest.raises(error, match=match):
        to_inference_data(regressor, X, Y2, **kwargs)


def test_bad_data(regressor, classifier):
    with pytest.raises(ValueError, match="fitted"):
        to_inference_data(Network([layers.ReLU(2)]), X)
    with pytest.raises(ValueError, match="needs the observations"):
        to_inference_data(regressor, X, groups=["log_likelihood"])
    with pytest.raises(ValueError, match="features"):
        to_inference_data(regressor, X[:, :1], Y2)
    with pytest.raises(ValueError, match="not among the network's classes"):
        to_inference_data(classifier, X[:2], ["a", "z"])


# ------------------------------------------------------------------- elpd and compare
def _ll_data(values) -> az.InferenceData:
    values = np.asarray(values, dtype=float)
    return az.from_dict(log_likelihood={"y": values[None]})


def test_elpd_by_hand():
    # two draws, three points
    ll = np.log([[0.2, 0.5, 0.1], [0.4, 0.5, 0.3]])
    res = elpd(_ll_data(ll))
    pointwise = np.log([0.3, 0.5, 0.2])
    np.testing.assert_allclose(res.pointwise, pointwise, rtol=1e-14)
    assert res.elpd == pytest.approx(pointwise.sum())
    assert res.se == pytest.approx(np.sqrt(3 * pointwise.var()))


def test_compare_by_hand():
    good = _ll_data(np.log([[0.5, 0.5, 0.4]]))
    bad = _ll_data(np.log([[0.25, 0.5, 0.1]]))
    table = compare({"bad": bad, "good": good})
    assert table.index.tolist() == ["good", "bad"]
    d = np.log([2.0, 1.0, 4.0])  # pointwise good - bad
    assert table.loc["bad", "elpd_diff"] == pytest.approx(d.sum())
    assert table.loc["bad", "dse"] == pytest.approx(np.sqrt(3 * d.var()))
    assert table.loc["good", "elpd_diff"] == 0 and table.loc["good", "dse"] == 0
    assert table["rank"].tolist() == [0, 1]
    assert table.loc["good", "elpd_test"] == pytest.approx(np.log([0.5, 0.5, 0.4]).sum())


def test_compare_refuses_different_points():
    with pytest.raises(ValueError, match="same points"):
        compare({"a": _ll_data([[0.0, 0.0]]), "b": _ll_data([[0.0]])})
    with pytest.raises(ValueError, match="non-empty mapping"):
        compare({})


def test_compare_reports_and_warns_about_pareto_k():
    rng = np.random.default_rng(0)
    heavy = _ll_data(rng.standard_normal((400, 20)) * 6.0)  # wildly varying weights: high k
    light = _ll_data(rng.standard_normal((400, 20)) * 0.01)
    with pytest.warns(UserWarning, match="Pareto k > 0.7") as record:
        table = compare({"h": light, "l": light}, train={"h": heavy, "l": light})
    assert sum("'h'" in str(w.message) for w in record) == 1
    assert table.loc["h", "k_bad"] > 0 and table.loc["h", "warning"]
    assert table.loc["l", "k_bad"] == 0 and not table.loc["l", "warning"]
    assert {"elpd_loo", "p_loo", "k_max"} <= set(table.columns)


# ---------------------------------------------------------------- predictive quantiles
def test_predict_quantiles_invert_the_mixture(regressor):
    q = np.array([0.05, 0.5, 0.95])
    out = regressor.predict_quantiles(X[:4], q, n_samples=30, hidden="sample")
    assert out.shape == (3, 4, 2)
    # Replay the same hidden-weight draws and evaluate the mixture CDF at the quantiles.
    state = regressor.prediction_state  # the averaged hidden means where in use
    F = predictive.head_inputs(regressor.spec, state, X[:4], 30, regressor.seed)
    mean, var = regressor.head.predictive(regressor.head_state_, F)
    cdf = ndtr((out[:, None] - mean) / np.sqrt(var)).mean(axis=1)
    np.testing.assert_allclose(cdf, np.broadcast_to(q[:, None, None], cdf.shape), atol=1e-12)


@pytest.mark.parametrize("kwargs", [{}, {"hidden": "mean"}], ids=["linearized", "hidden-means"])
def test_predict_quantiles_of_a_single_gaussian(regressor, kwargs):
    mean, sd = regressor.predict(X[:5], return_std=True, **kwargs)
    out = regressor.predict_quantiles(X[:5], [0.1, 0.9], **kwargs)
    np.testing.assert_allclose(out[0], mean + sd * stats.norm.ppf(0.1), rtol=1e-12)
    np.testing.assert_allclose(out[1], mean + sd * stats.norm.ppf(0.9), rtol=1e-12)


def test_predict_quantiles_rejects_bad_input(regressor, classifier):
    with pytest.raises(ValueError, match="quantiles"):
        regressor.predict_quantiles(X, [0.0, 0.5])
    with pytest.raises(ValueError, match="hidden"):
        regressor.predict_quantiles(X, hidden="exact")
    with pytest.raises(AttributeError, match="regression head"):
        classifier.predict_quantiles(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert regressor.predict_quantiles(X[:2], [0.5]).shape == (1, 2, 2)


def test_a_choice_head_exports_its_leading_readout():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] + 0.5 * rng.normal(size=200) > 0).astype(int)
    net = Network([layers.ReLU(5)], head=heads.Choice()).fit(X, y)
    chosen = net.head.chosen(net.head_state_)
    idata = to_inference_data(net, X[:20], y[:20], n_draws=8, chains=2, seed=0)
    assert idata.posterior.attrs["head"] == "choice"
    assert idata.posterior.attrs["readout"] == chosen
    leader = net.head.rival if chosen == "probit" else net.head.teacher
    expected = leader.weight_posterior(net.head_state_.readouts[chosen == "probit"]).mean
    assert idata.posterior["head_w"].shape[-2:] == expected.shape
