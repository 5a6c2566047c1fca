"""The pure training core: train_step, learned pseudo-noise, prequential evidence."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from bayeslayers import Network, engine, heads, layers, predictive
from bayeslayers.conjugate import UpdateInfo


def sine(n=400, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (n, 1))
    return x, np.sin(3 * x[:, 0]) + noise * rng.normal(size=n)


def test_train_step_is_pure_and_reports_every_layer():
    X, y = sine(60)
    net = Network([layers.ReLU(8), layers.ReLU(6)]).initialize(X, y)
    spec, state = net.spec, net.state
    before = [p.mean.copy() for p in state.hidden]
    T = net.head.encode(y)
    new, info = engine.train_step(spec, state, X[:10], T[:10], 1.0)
    for p, m in zip(state.hidden, before, strict=True):
        np.testing.assert_array_equal(p.mean, m)  # the input state is untouched
    assert len(info.layers) == len(info.corrections) == 2
    assert all(i.n_obs > 0 for i in info.layers) and all(c > 0 for c in info.corrections)
    assert np.isfinite(info.log_predictive)
    assert not np.array_equal(new.hidden[0].mean, before[0])


def test_sweeps_relinearize_the_hidden_layers_and_update_the_head_once():
    X, y = sine(60)
    net = Network([layers.ReLU(8), layers.ReLU(6)]).initialize(X, y)
    spec, state, T = net.spec, net.state, net.head.encode(y)
    before = [(p.mean.copy(), p.cov.copy()) for p in state.hidden]
    one, info1 = engine.train_step(spec, state, X[:10], T[:10], 1.0)
    two, info2 = engine.train_step(spec, state, X[:10], T[:10], 1.0, sweeps=2)
    for p, (m, c) in zip(state.hidden, before, strict=True):  # pure with several sweeps too
        np.testing.assert_array_equal(p.mean, m)
        np.testing.assert_array_equal(p.cov, c)
    # the head sees the batch once, from the same forward pass: its state (noise statistics
    # included) does not depend on the sweeps
    np.testing.assert_array_equal(two.head.post.mean, one.head.post.mean)
    assert (two.head.a, two.head.b) == (one.head.a, one.head.b)
    assert info2.log_predictive == info1.log_predictive
    # the hidden layers are relinearized: a different fit, the same tempered weight of data
    assert not np.allclose(two.hidden[0].mean, one.hidden[0].mean)
    for a, b in zip(info1.layers, info2.layers, strict=True):
        assert b.n_obs == pytest.approx(a.n_obs, rel=0.5)
    # "auto" makes two sweeps on a batch of several rows and one on a single row
    auto, _ = engine.train_step(spec, state, X[:10], T[:10], 1.0, sweeps="auto")
    np.testing.assert_array_equal(auto.hidden[0].mean, two.hidden[0].mean)
    single = [engine.train_step(spec, state, X[:1], T[:1], 1.0, sweeps=k)[0] for k in (1, "auto")]
    np.testing.assert_array_equal(single[0].hidden[0].mean, single[1].hidden[0].mean)
    with pytest.raises(ValueError, match="sweeps must be an int >= 1 or 'auto'"):
        Network([layers.ReLU(8)], sweeps="twice")


def test_learned_noise_has_calibrated_innovations_as_fixed_point():
    """Innovations exactly as large as predicted leave the estimate where it is."""
    noise = engine.NoiseState(3.0, 3.0 * 0.2)
    calibrated = UpdateInfo(n_obs=10.0, quad=10.0 * 0.2)  # q = sigma^2 sum r^2 / S, r^2 = S
    after = engine.learn_noise(noise, calibrated, 1.0)
    np.testing.assert_allclose(after.b / after.a, 0.2)
    larger = engine.learn_noise(noise, UpdateInfo(10.0, 10.0 * 0.8), 1.0)
    assert larger.b / larger.a > 0.2
    assert engine.learn_noise(noise, UpdateInfo(0.0, 0.0), 1.0) is noise


def test_hidden_noise_is_learned_only_where_not_set():
    X, y = sine()
    learned = Network([layers.ReLU(10), layers.ReLU(10, noise=0.5)]).fit(X, y)
    assert learned.noise_[1] == engine.NoiseState(1.0, 0.5)  # a layer's own noise is fixed
    assert learned.noise_[0].b / learned.noise_[0].a < 0.5  # learned: small residual targets
    fixed = Network([layers.ReLU(10)], hidden_noise=0.3).fit(X, y)
    assert fixed.noise_[0] == engine.NoiseState(1.0, 0.3)
    clf = Network([layers.ReLU(10)], head=heads.OneHot()).fit(X, (y > 0).astype(int))
    assert clf.noise_[0].b / clf.noise_[0].a == 1.0  # the classification default


def test_log_evidence_is_the_marginal_likelihood_of_linear_regression():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X @ [1.0, -1.0, 0.5] + 0.3 * rng.normal(size=40)
    net = Network([], noise=0.09, prior_precision=2.0).fit(X, y, shuffle=False)
    Xb = np.column_stack([X, np.ones(40)])
    exact = multivariate_normal(np.zeros(40), Xb @ Xb.T / 2.0 + 0.09 * np.eye(40)).logpdf(y)
    np.testing.assert_allclose(net.log_evidence_, exact, rtol=1e-12)
    online = Network([], noise=0.09, prior_precision=2.0)
    for rows in np.array_split(np.arange(40), 3):
        online.partial_fit(X[rows], y[rows])
    np.testing.assert_allclose(online.log_evidence_, exact, rtol=1e-12)


def test_log_evidence_tracks_the_held_out_density_on_sine():
    """Per row, the prequential evidence is close to the held-out mean log density."""
    X, y = sine(1000, seed=3)
    net = Network([layers.ReLU(50), layers.ReLU(50)]).fit(X[:800], y[:800])
    mean, sd = net.predict(X[800:], return_std=True)
    held_out = np.mean(-0.5 * np.log(2 * np.pi * sd**2) - 0.5 * ((y[800:] - mean) / sd) ** 2)
    assert abs(net.log_evidence_ / 800 - held_out) < 0.25


def test_resolve_spec_applies_the_label_free_rules_and_the_layers_own_settings():
    body = [layers.ReLU(300), layers.ReLU(8, covariance="shared", noise=0.5), layers.ReLU(4)]
    spec = engine.resolve_spec(
        body,
        heads.OneHot(),
        covariance="auto",
        hidden_noise=None,
        n_features=1000,
        n_outputs=10,
        skip="auto",
        damping=0.1,
        clip=None,
        targets="min_norm",
    )
    # 1001-wide rows: diag; the second keeps its own (its 301-wide rows would be diag); 9: unit
    assert spec.structures == ("diag", "shared", "unit")
    assert spec.head_structure == "shared"  # ten one-hot columns, one covariance
    assert spec.noises == (1.0, 0.5, 1.0)  # the classifier default, except the layer's own
    assert not spec.skip  # 1001-wide inputs: beyond the head's per-unit budget
    unknown = engine.resolve_spec(
        body[:1],
        heads.Gaussian(),
        covariance="auto",
        hidden_noise=None,
        n_features=None,
        n_outputs=None,
        skip="auto",
        damping=0.1,
        clip=None,
        targets="min_norm",
    )
    assert unknown.structures == ("unit",) and unknown.noises == (None,)  # learned
    assert unknown.head_structure == "unit"  # the outputs are not known yet
    assert not unknown.skip  # the inputs' width is not known yet


# ------------------------------------------------------------------- skip connection
def skip_data(n=200, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, 2.0 * X @ rng.normal(size=d) + np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=n)


def test_a_skip_head_is_bayesian_linear_regression_on_hidden_outputs_and_inputs():
    """One step on the whole batch: the head's posterior is BLR on [h(x), x, 1] at the prior's
    hidden means (prior precision 2, noise 0.3); the prediction is [h(x), x, 1] W at the new
    means."""
    X, y = skip_data(50)
    head = heads.Gaussian(learn_noise=False, noise_memory=None)
    kwargs = {"head": head, "noise": 0.3, "prior_precision": 2.0, "skip": True, "seed": 4}
    prior = Network([layers.ReLU(6)], **kwargs).initialize(X, y)
    net = Network([layers.ReLU(6)], **kwargs).fit(X, y, batch_size=len(X), shuffle=False)
    ones = np.ones((len(X), 1))
    H = np.maximum(np.hstack([X, ones]) @ prior.posteriors_[0].mean, 0.0)
    design = np.hstack([H, X, ones])
    precision = 2.0 * np.eye(6 + 4 + 1) + design.T @ design / 0.3
    np.testing.assert_allclose(
        net.head_state_.post.mean[:, 0], np.linalg.solve(precision, design.T @ y / 0.3), rtol=1e-8
    )
    np.testing.assert_allclose(net.head_state_.post.cov[0], np.linalg.inv(precision), rtol=1e-8)
    H_new = np.maximum(np.hstack([X, ones]) @ net.posteriors_[0].mean, 0.0)
    np.testing.assert_allclose(
        net.predict(X), np.hstack([H_new, X, ones]) @ net.head_state_.post.mean[:, 0], rtol=1e-10
    )


@pytest.mark.parametrize("targets", ["min_norm", "gauss_newton", "ekf"])
def test_the_hidden_layers_learn_through_the_head_rows_of_their_top_units_only(targets):
    """A skip head whose input rows are pinned at zero (prior variance 1e-30) trains the hidden
    layers as the same network without the skip connection: the backward step reads the
    head's rows of the top units, not those of the inputs."""
    X, y = skip_data(30, d=3)
    head = heads.Gaussian(learn_noise=False, noise_memory=None)
    net = Network(
        [layers.ReLU(5), layers.ReLU(4)], head=head, noise=0.1, skip=False, targets=targets
    )
    net.initialize(X, y)
    spec, state = net.spec, net.state
    pinned = np.r_[np.ones(4), np.full(3, 1e-30), 1.0]  # top units, inputs, bias
    skip_state = state._replace(head=head.init(np.zeros((8, 1)), pinned, "unit", 0.1))
    plain, _ = engine.train_step(spec, state, X, y[:, None], 1.0)
    skip, _ = engine.train_step(spec._replace(skip=True), skip_state, X, y[:, None], 1.0)
    np.testing.assert_allclose(skip.head.post.mean[[0, 1, 2, 3, 7]], plain.head.post.mean)
    assert np.abs(skip.head.post.mean[4:7]).max() < 1e-20
    for a, b in zip(skip.hidden, plain.hidden, strict=True):
        np.testing.assert_allclose(a.mean, b.mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(a.cov, b.cov, rtol=1e-9, atol=1e-12)
    assert not np.allclose(plain.hidden[1].mean, state.hidden[1].mean)  # the layers did learn


# ----------------------------------------------------------------------- head prior
@pytest.mark.parametrize("targets", ["min_norm", "gauss_newton", "ekf"])
@pytest.mark.parametrize("skip", [False, True])
def test_the_fan_in_prior_is_the_flat_design_with_prior_variance_over_width(targets, skip):
    """head_prior="fan_in" (top hidden output divided by sqrt(H) in the head's inputs, an
    isotropic prior) is the flat design with prior variance 1 / (alpha H) on the rows of the
    top units: the same hidden updates, the same predictions, the head's weights rescaled."""
    X, y = skip_data(30, d=3)
    head = heads.Gaussian(learn_noise=True, noise_memory=None, prior_evidence=False)
    kwargs = {"head": head, "prior_precision": 2.0, "skip": skip, "targets": targets}
    net = Network([layers.ReLU(5), layers.ReLU(4)], **kwargs).initialize(X, y)
    spec, state = net.spec, net.state
    fan_in = spec._replace(head_prior="fan_in")
    H, width = 4, engine.head_width(spec, 3)
    c = engine.top_scale(fan_in)
    assert c == 0.5 and engine.top_scale(spec) == 1.0
    variance = np.full(width, 0.5)
    variance[:H] = 0.5 / H  # 1 / (alpha H) on the top units' rows
    flat_state = state._replace(head=head.init(np.zeros((width, 1)), variance, "unit", 1.0))
    T = y[:, None]
    a, _ = engine.train_step(fan_in, state, X[:20], T[:20], 1.0, sweeps=2)
    a, _ = engine.train_step(fan_in, a, X[20:], T[20:], 1.0)
    b, _ = engine.train_step(spec, flat_state, X[:20], T[:20], 1.0, sweeps=2)
    b, _ = engine.train_step(spec, b, X[20:], T[20:], 1.0)
    for p, q in zip(a.hidden, b.hidden, strict=True):
        np.testing.assert_allclose(p.mean, q.mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(p.cov, q.cov, rtol=1e-9, atol=1e-12)
    scale = np.ones(width)
    scale[:H] = c  # w_flat = c w_fan on the top rows
    np.testing.assert_allclose(a.head.post.mean * scale[:, None], b.head.post.mean, rtol=1e-9)
    np.testing.assert_allclose(
        a.head.post.cov * np.outer(scale, scale), b.head.post.cov, rtol=1e-9, atol=1e-15
    )
    xa, _ = engine.forward(fan_in, a.hidden, X)
    xb, _ = engine.forward(spec, b.hidden, X)
    np.testing.assert_allclose(xa @ a.head.post.mean, xb @ b.head.post.mean, rtol=1e-10)
    # df / dh_L: the head's top rows times the factor
    np.testing.assert_allclose(
        engine.top_jacobian(fan_in, a.head.post.mean), b.head.post.mean[:H], rtol=1e-9
    )
    # the linearized predictive, hidden layers' part included
    for got, want in zip(
        predictive.linearized_moments(fan_in, a, X),
        predictive.linearized_moments(spec, b, X),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-9)


def test_the_fan_in_prior_keeps_the_prior_function_variance_whatever_the_width():
    """Under the fan-in prior the prior variance of W_h^T h_L is the mean of h_j^2 over the
    units (over alpha), so it does not grow with the width; under the flat prior it is their
    sum."""
    X, y = skip_data(200, d=3)
    for width in (10, 1000):
        variances = {}
        for prior in ("flat", "fan_in"):
            net = Network([layers.ReLU(width)], head_prior=prior, skip=False).initialize(X, y)
            xh, trace = engine.forward(net.spec, net.posteriors_, X)
            h2 = np.mean(np.sum(trace[0].h ** 2, axis=1))
            # top rows only: the prior covariance is 1/alpha I on the head's inputs
            variances[prior] = np.mean(np.sum(xh[:, :width] ** 2, axis=1))
            expected = h2 / width if prior == "fan_in" else h2
            np.testing.assert_allclose(variances[prior], expected, rtol=1e-12)
        assert variances["flat"] == pytest.approx(width * variances["fan_in"])


def test_skip_sizes_the_head_and_forward_appends_the_inputs():
    X, y = skip_data(40, d=3)
    net = Network([layers.ReLU(5)], skip=True).initialize(X, y)
    assert net.spec.skip and net.head_state_.post.mean.shape == (5 + 3 + 1, 1)
    assert engine.head_width(net.spec, 3) == 9
    xh, trace = engine.forward(net.spec, net.posteriors_, X)
    np.testing.assert_array_equal(xh, np.hstack([trace[0].h, X, np.ones((40, 1))]))
    # nothing to skip without hidden layers: the head sees [x, 1] once
    linear = Network([], skip=True).initialize(X, y)
    assert not linear.spec.skip and linear.head_state_.post.mean.shape == (4, 1)
