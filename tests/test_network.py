"""The network: closed-form limits, the original post's algorithm, bad input, atomicity."""

import numpy as np
import pytest

from bayeslayers import Network, conjugate, engine, heads, layers, predictive, training


def linear_data(n=60, d=3, seed=0, noise=0.2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + 0.5 + noise * rng.normal(size=n)
    return X, y


def blr(X, y, prior_precision, noise):
    Xb = np.column_stack([X, np.ones(len(X))])
    precision = prior_precision * np.eye(Xb.shape[1]) + Xb.T @ Xb / noise
    return np.linalg.solve(precision, Xb.T @ y / noise), np.linalg.inv(precision)


@pytest.mark.parametrize("batch_size", [1, 7, 60])
@pytest.mark.parametrize("covariance", ["unit", "shared"])
def test_no_hidden_layers_is_bayesian_linear_regression(batch_size, covariance):
    X, y = linear_data()
    net = Network([], covariance=covariance, prior_precision=2.0, noise=0.3)
    net.fit(X, y, batch_size=batch_size)
    mean, cov = blr(X, y, 2.0, 0.3)
    np.testing.assert_allclose(net.head_state_.post.mean[:, 0], mean, rtol=1e-9)
    Xb = np.column_stack([X, np.ones(len(X))])
    _, std = net.predict(X, return_std=True)
    np.testing.assert_allclose(std**2, np.einsum("nd,de,ne->n", Xb, cov, Xb) + 0.3, rtol=1e-9)


def test_several_passes_with_fraction_equal_one_pass_for_a_linear_model():
    X, y = linear_data()
    once = Network([], noise=0.3).fit(X, y)
    thrice = Network([], noise=0.3).fit(X, y, passes=3)
    np.testing.assert_allclose(thrice.head_state_.post.mean, once.head_state_.post.mean, rtol=1e-9)
    np.testing.assert_allclose(thrice.head_state_.post.cov, once.head_state_.post.cov, rtol=1e-9)


def test_one_step_reproduces_the_original_post():
    """batch_size=1, damping=0, shared covariance, noise=1: the original post's formulas."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(1, 3)), np.array([[0.7]])
    # the original post's head sees the hidden layer only (no skip connection)
    net = Network([layers.ReLU(6)], covariance="shared", damping=0.0, noise=1.0, skip=False, seed=3)
    net.partial_fit(x, y)  # one sample
    prior = Network([layers.ReLU(6)], covariance="shared", skip=False, seed=3)
    prior.initialize(x, y)
    W1, W2 = prior.posteriors_[0].mean, prior.head_state_.post.mean
    Lam1 = np.linalg.inv(prior.posteriors_[0].cov)
    Lam2 = np.linalg.inv(prior.head_state_.post.cov)
    x1 = np.column_stack([x, [[1.0]]])
    z = x1 @ W1
    s = (z > 0).ravel()
    a = np.maximum(z, 0)
    x2 = np.column_stack([a, [[1.0]]])
    # Head: w <- (X^T X + Lam)^{-1} (X^T Y + Lam w).
    W2n = np.linalg.solve(x2.T @ x2 + Lam2, x2.T @ y + Lam2 @ W2)
    # Target for the hidden layer over its active units: a + W (W^T W)^{-1} (Y - a W)^T.
    Wa = W2n[:-1][s]
    e = y - x2 @ W2n
    target = a.copy()
    target[:, s] += (Wa @ np.linalg.solve(Wa.T @ Wa, e.T)).T
    # Hidden layer: only active columns move, the shared precision grows once.
    W1n = W1.copy()
    W1n[:, s] = np.linalg.solve(x1.T @ x1 + Lam1, x1.T @ target[:, s] + Lam1 @ W1[:, s])
    np.testing.assert_allclose(net.head_state_.post.mean, W2n, rtol=1e-9)
    np.testing.assert_allclose(net.posteriors_[0].mean, W1n, rtol=1e-9)
    np.testing.assert_allclose(net.posteriors_[0].cov, np.linalg.inv(x1.T @ x1 + Lam1), rtol=1e-9)


def test_learned_noise_recovers_the_noise_variance():
    X, y = linear_data(n=3000, noise=0.5)
    net = Network([], head=heads.Gaussian(learn_noise=True), noise=1.0).fit(X, y)
    assert net.head.noise_variance(net.head_state_) == pytest.approx(0.25, rel=0.1)


def test_classifier_predicts_labels_and_probabilities():
    rng = np.random.default_rng(0)
    centers = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    labels = rng.integers(0, 3, 300)
    X = centers[labels] + 0.6 * rng.normal(size=(300, 2))
    names = np.array(["a", "b", "c"])[labels]
    net = Network([layers.ReLU(20)], head=heads.OneHot(), noise=0.1).fit(X, names)
    proba = net.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-9)
    assert np.mean(net.predict(X) == names) > 0.95
    drawn = net.predict_proba(X[:5], hidden="sample", n_samples=8)
    np.testing.assert_allclose(drawn.sum(axis=1), 1.0, rtol=1e-9)


def test_partial_fit_classes_and_unseen_labels():
    X = np.random.default_rng(1).normal(size=(10, 2))
    net = Network([layers.ReLU(4)], head=heads.OneHot())
    net.partial_fit(X[:5], [0, 1, 1, 0, 1], classes=[0, 1, 2])
    assert net.classes_.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"labels \[7\] not among the classes"):
        net.partial_fit(X[5:], [0, 1, 7, 0, 1])
    with pytest.raises(TypeError, match="non-integer floats"):
        net.partial_fit(X[5:], [0.5, 1, 1, 0, 1])


def snapshot(net):
    arrays = [p.mean.copy() for p in net.posteriors_] + [net.head_state_.post.mean.copy()]
    return arrays + [p.cov.copy() for p in net.posteriors_], net.n_samples_seen_


def assert_unchanged(net, before):
    arrays, seen = snapshot(net)
    assert seen == before[1]
    for a, b in zip(arrays, before[0], strict=True):
        np.testing.assert_array_equal(a, b)


X_GOOD, Y_GOOD = linear_data(n=20)


@pytest.mark.parametrize(
    ("X", "Y", "kwargs", "error", "match"),
    [
        (np.where(np.eye(20, 3) > 0, np.nan, X_GOOD), Y_GOOD, {}, ValueError, "X contains NaN"),
        (X_GOOD, np.full(20, np.inf), {}, ValueError, "Y contains NaN or infinite"),
        (X_GOOD[:, :2], Y_GOOD, {}, ValueError, "X has 2 features, but the model expects 3"),
        (X_GOOD, Y_GOOD[:5], {}, ValueError, "Y has 5 rows but X has 20"),
        (X_GOOD.astype(str), Y_GOOD, {}, TypeError, "X must be numeric"),
        (X_GOOD[:0], Y_GOOD[:0], {}, ValueError, "X is empty"),
        (X_GOOD[0], Y_GOOD[:1], {}, ValueError, "X must be a 2-D array"),
        (X_GOOD, np.ones((20, 2)), {}, ValueError, "Y has 2 outputs, but the model expects 1"),
        (X_GOOD, Y_GOOD, {"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        (X_GOOD, Y_GOOD, {"fraction": 2.0}, ValueError, "fraction must be a finite number in"),
    ],
)
def test_bad_input_raises_and_leaves_the_model_unchanged(X, Y, kwargs, error, match):
    net = Network([layers.ReLU(5)]).fit(X_GOOD, Y_GOOD)
    before = snapshot(net)
    with pytest.raises(error, match=match):
        net.partial_fit(X, Y, **kwargs)
    assert_unchanged(net, before)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"covariance": "full"}, ValueError, "covariance must be"),
        ({"noise": 0.0}, ValueError, "noise must be a finite number > 0"),
        ({"prior_precision": float("nan")}, ValueError, "prior_precision"),
        ({"damping": -1.0}, ValueError, "damping"),
        ({"dtype": "float16"}, ValueError, "dtype"),
        ({"layers": ["relu"]}, TypeError, r"layers\[0\] must be a Layer"),
        ({"init": "pca"}, ValueError, "init must be"),
        ({"sweeps": 0}, ValueError, "sweeps must be an int >= 1"),
        ({"sweeps": 1.5}, ValueError, "sweeps must be an int >= 1"),
        ({"skip": "yes"}, ValueError, "skip must be 'auto', True or False, got 'yes'"),
        ({"skip": 1}, TypeError, "skip must be 'auto', True or False, got int 1"),
        ({"skip": None}, TypeError, "skip must be 'auto', True or False, got NoneType"),
    ],
)
def test_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        Network(**({"layers": [layers.ReLU(3)]} | kwargs))


def test_failure_between_layers_leaves_the_model_unchanged(monkeypatch):
    X, y = linear_data(n=30)
    net = Network([layers.ReLU(5), layers.ReLU(4)]).fit(X[:10], y[:10])
    before = snapshot(net)
    calls = []
    real_update = conjugate.update

    def failing_update(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the top hidden layer was updated, the next one fails
            raise KeyboardInterrupt
        return real_update(*args, **kwargs)

    monkeypatch.setattr(conjugate, "update", failing_update)
    with pytest.raises(KeyboardInterrupt):
        net.partial_fit(X[10:], y[10:])
    assert_unchanged(net, before)


def test_failed_refit_keeps_the_previous_model():
    net = Network([layers.ReLU(5)]).fit(X_GOOD, Y_GOOD)
    before = snapshot(net)
    with pytest.raises(ValueError, match="X contains NaN"):
        net.fit(np.full((4, 3), np.nan), np.ones(4))
    assert_unchanged(net, before)


def test_unfitted_network_raises_on_predict():
    with pytest.raises(RuntimeError, match="not fitted"):
        Network([layers.ReLU(3)]).predict(X_GOOD)


def test_same_seed_same_predictions():
    a = Network([layers.ReLU(8)], seed=4).fit(X_GOOD, Y_GOOD)
    b = Network([layers.ReLU(8)], seed=4).fit(X_GOOD, Y_GOOD)
    np.testing.assert_array_equal(a.predict(X_GOOD), b.predict(X_GOOD))


@pytest.mark.parametrize("kind", ["relu", "taylor_tanh"])
@pytest.mark.parametrize("covariance", ["unit", "shared", "diag"])
def test_linearized_predictive_matches_sampling_for_a_tight_posterior(kind, covariance):
    """With small hidden covariances the first-order expansion is exact: both methods agree."""
    X, y = linear_data(n=40)
    net = Network(
        [layers.make_layer(kind, units=6), layers.make_layer(kind, units=5)],
        covariance=covariance,
        seed=2,
    ).fit(X, y)
    net.posteriors_ = [p._replace(cov=p.cov * 1e-6) for p in net.posteriors_]
    head_var = net.predict_moments(X, hidden="mean")[1]
    mean_lin, var_lin = net.predict_moments(X[:8])
    np.testing.assert_allclose(mean_lin, net.predict(X[:8])[:, None], rtol=1e-12)
    # Spread of the network output over draws of the hidden weights only.
    draws = predictive.head_inputs(net.spec, net.state, X[:8], 4000, net.seed)
    draws = draws @ net.head_state_.post.mean
    np.testing.assert_allclose(draws.mean(axis=0), mean_lin, atol=1e-3)
    body_lin = var_lin - head_var[:8]
    assert np.all(body_lin > 0)
    np.testing.assert_allclose(draws.var(axis=0), body_lin, rtol=0.15)


def test_unknown_hidden_mode():
    net = Network([layers.ReLU(3)]).fit(X_GOOD, Y_GOOD)
    with pytest.raises(ValueError, match="hidden must be one of"):
        net.predict(X_GOOD, return_std=True, hidden="laplace")


def test_n_samples_only_with_sampling():
    """``n_samples`` is the number of draws: given without ``hidden='sample'`` it is an error."""
    net = Network([layers.ReLU(3)]).fit(X_GOOD, Y_GOOD)
    with pytest.raises(ValueError, match="n_samples is the number of draws"):
        net.predict(X_GOOD, return_std=True, n_samples=5)
    few = net.predict(X_GOOD, return_std=True, hidden="sample", n_samples=2)[1]
    many = net.predict(X_GOOD, return_std=True, hidden="sample", n_samples=500)[1]
    assert not np.allclose(few, many)


def test_training_runs_with_the_requested_blas_threads(monkeypatch):
    """``blas_threads`` bounds BLAS inside a training pass; ``None`` leaves BLAS alone."""
    from threadpoolctl import threadpool_info

    from bayeslayers import conjugate

    seen = []
    update = conjugate.update

    def spy(*args, **kwargs):
        seen.append(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
        return update(*args, **kwargs)

    monkeypatch.setattr(conjugate, "update", spy)
    X = np.linspace(-1, 1, 8)[:, None]
    Network([layers.ReLU(4)], blas_threads=1).fit(X, np.sin(X[:, 0]))
    assert seen and set(seen) == {1}
    outside = max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
    seen.clear()
    Network([layers.ReLU(4)], blas_threads=None).fit(X, np.sin(X[:, 0]))
    assert set(seen) == {outside}


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_bad_blas_threads(value):
    with pytest.raises(ValueError, match="blas_threads"):
        Network([layers.ReLU(4)], blas_threads=value)


def test_sample_init_uses_centred_inputs_at_unit_spread():
    """``init="samples"``: each first-layer column is a centred input row at unit spread."""
    X, _ = linear_data(n=80, d=4)
    net = Network([layers.ReLU(6), layers.ReLU(5)], init="samples", bias_spread=0.0)
    net.initialize(X, np.zeros(len(X)))  # what the first fit / partial_fit call does
    W = net.posteriors_[0].mean
    Xc = X - X.mean(axis=0)
    for j in range(6):  # the column is parallel to one centred row
        cos = np.abs(Xc @ W[:-1, j]) / (np.linalg.norm(Xc, axis=1) * np.linalg.norm(W[:-1, j]))
        assert np.isclose(cos.max(), 1.0)
    z = np.column_stack([X, np.ones(len(X))]) @ W
    np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=1e-12)  # unit pre-activation spread
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)  # centred (bias_spread=0)
    again = Network([layers.ReLU(6), layers.ReLU(5)], init="samples", bias_spread=0.0)
    again.initialize(X, np.zeros(len(X)))
    np.testing.assert_array_equal(again.posteriors_[0].mean, W)  # a function of seed and X


def test_sample_init_falls_back_to_he_without_spread():
    """A single first row, or constant inputs, give the He prior mean."""
    X, _ = linear_data(n=5, d=3)
    he = Network([layers.ReLU(4)], init="he")
    he.initialize(X, np.zeros(len(X)))
    for rows in (X[:1], np.ones((5, 3))):
        net = Network([layers.ReLU(4)], init="samples")
        net.initialize(rows, np.zeros(len(rows)))
        np.testing.assert_array_equal(net.posteriors_[0].mean, he.posteriors_[0].mean)


def test_sample_init_learns_sine_better_than_he():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (600, 1))
    y = np.sin(3 * x[:, 0]) + 0.1 * rng.normal(size=600)
    rmse = {}
    for init in ("he", "samples"):
        net = Network([layers.ReLU(30)], init=init, noise=0.01, seed=1).fit(x[:400], y[:400])
        rmse[init] = float(np.sqrt(np.mean((net.predict(x[400:]) - y[400:]) ** 2)))
    assert rmse["samples"] < 0.2
    assert rmse["samples"] < 1.1 * rmse["he"]


def test_sweeps_leave_a_linear_model_unchanged_and_relinearize_a_network():
    X, y = linear_data()
    once = Network([], noise=0.3).fit(X, y, batch_size=5)
    twice = Network([], noise=0.3, sweeps=2).fit(X, y, batch_size=5)
    np.testing.assert_allclose(twice.head_state_.post.mean, once.head_state_.post.mean, rtol=1e-9)
    np.testing.assert_allclose(twice.head_state_.post.cov, once.head_state_.post.cov, rtol=1e-9)
    deep = [Network([layers.ReLU(8)], noise=0.3, sweeps=s, seed=3).fit(X, y) for s in (1, 2)]
    assert not np.allclose(deep[0].posteriors_[0].mean, deep[1].posteriors_[0].mean)
    err = [np.sqrt(np.mean((net.predict(X) - y) ** 2)) for net in deep]
    assert err[1] < 1.0 and err[0] < 1.0


def test_predictive_dof_is_the_student_t_s_and_only_for_regression():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    y = X @ [1.0, -1.0] + 0.1 * rng.normal(size=30)
    learned = Network([layers.ReLU(4)]).fit(X, y)
    assert np.isfinite(learned.predictive_dof()) and learned.predictive_dof() > 2
    assert learned.predictive_dof() == learned.head.dof(learned.head_state_)
    assert Network([layers.ReLU(4)], noise=0.1).fit(X, y).predictive_dof() == np.inf
    clf = Network([layers.ReLU(4)], head=heads.OneHot()).fit(X, (y > 0).astype(int))
    with pytest.raises(AttributeError, match="regression head"):
        clf.predictive_dof()
    with pytest.raises(RuntimeError, match="not fitted"):
        Network([layers.ReLU(4)]).predictive_dof()


def test_initialize_draws_the_sampled_first_layer_from_prior_rows():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 3))
    y = X[:, 0] + 0.1 * rng.normal(size=50)
    whole = Network([layers.ReLU(5)], seed=2).initialize(X, y)
    few = Network([layers.ReLU(5)], seed=2).initialize(X[:2], y[:2], prior_rows=X)
    np.testing.assert_array_equal(few.posteriors_[0].mean, whole.posteriors_[0].mean)
    plain = Network([layers.ReLU(5)], seed=2).initialize(X[:2], y[:2])
    assert not np.array_equal(plain.posteriors_[0].mean, whole.posteriors_[0].mean)
    he = Network([layers.ReLU(5)], seed=2, init="he")
    np.testing.assert_array_equal(  # "he" looks at no rows
        he.initialize(X[:2], y[:2], prior_rows=X).posteriors_[0].mean,
        Network([layers.ReLU(5)], seed=2, init="he").initialize(X, y).posteriors_[0].mean,
    )


# ----------------------------------------------------------------------- head prior
def _linear_rows(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, X @ np.array([1.0, -0.5, 0.25, 0.0]) + 0.3 * rng.normal(size=n)


def _sine_rows(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 1))
    return X, np.sin(3 * X[:, 0]) + 0.1 * rng.normal(size=n)


@pytest.mark.parametrize(
    ("data", "chosen"), [(_linear_rows(48), "fan_in"), (_sine_rows(40), "flat")]
)
def test_the_head_prior_race_keeps_the_winner_fitted_alone(data, chosen, monkeypatch):
    """head_prior="evidence" races the flat and the fan-in prior over a first call of no
    more rows than the head has inputs (here 50 units, the skip inputs and the bias): on a
    linear target the tighter prior on the 50 ReLU features wins, on a sine that the hidden
    layer must learn the flat one does. The kept network is the winner's own pass: the
    chosen prior fitted alone, with the same precision per block of head inputs."""
    X, y = data
    raced = Network([layers.ReLU(50)], head_prior="evidence", seed=1).fit(X, y)
    assert raced.head_prior_ == chosen and raced.spec.head_prior == chosen
    width = engine.head_width(raced.spec, X.shape[1])
    assert training.prior_race_rows(raced.spec, len(X), X.shape[1]) == len(X) <= width
    assert not np.array_equal(raced.head_state_.alpha, np.ones(3))  # updated from 32 rows
    monkeypatch.setattr(engine, "head_blocks", lambda spec, n_features: (50, n_features, 1))
    alone = Network([layers.ReLU(50)], head_prior=chosen, seed=1).fit(X, y)
    np.testing.assert_array_equal(alone.head_state_.alpha, raced.head_state_.alpha)
    np.testing.assert_allclose(raced.predict(X), alone.predict(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(raced.log_evidence_, alone.log_evidence_, rtol=1e-12)
    # a later call does not race again, and keeps the prior
    raced.partial_fit(X[:8], y[:8])
    assert raced.head_prior_ == chosen


@pytest.mark.parametrize(("data", "linear"), [(_linear_rows(600), True), (_sine_rows(600), False)])
def test_on_more_rows_the_evidence_prior_has_one_precision_per_block(data, linear):
    """On more rows than the head has inputs there is no race (the prior is flat), and the
    head's evidence prior has one precision per block (the 50 units, the skip inputs, the
    bias), each starting at the network's prior precision 1: on a linear target the evidence
    shrinks the hidden block (precision far above 1 and above the inputs'), which predicts
    better than one precision for every row; on a sine that only the hidden layer can fit
    the hidden block's precision falls below 1."""
    X, y = data
    net = Network([layers.ReLU(50)], head_prior="evidence", seed=1).fit(X, y)
    assert net.head_prior_ == "flat" and net.spec.head_blocks
    state = net.head_state_
    np.testing.assert_array_equal(state.blocks, [50, X.shape[1], 1])
    assert state.alpha.shape == (3,) and np.all(state.alpha > 0)
    np.testing.assert_array_equal(net.head_precision_, state.alpha)
    net.head_precision_[0] = -1.0  # a copy: the state is not touched
    assert state.alpha[0] > 0
    single = Network([layers.ReLU(50)], seed=1).fit(X, y)
    assert np.ndim(single.head_state_.alpha) == 0 and not len(single.head_state_.blocks)
    assert single.head_precision_ == single.head_state_.alpha
    if not linear:
        assert state.alpha[0] < 1.0
        return
    assert state.alpha[0] > 10.0 * max(state.alpha[1], 1.0)
    X_test, y_test = _linear_rows(400, seed=7)
    rmse = [np.sqrt(np.mean((m.predict(X_test) - y_test) ** 2)) for m in (net, single)]
    assert rmse[0] < rmse[1]


def test_the_head_prior_is_checked_when_the_network_is_built():
    with pytest.raises(ValueError, match="head_prior must be 'flat', 'fan_in' or 'evidence'"):
        Network([layers.ReLU(3)], head_prior="neal")
    with pytest.raises(TypeError, match="head_prior must be"):
        Network([layers.ReLU(3)], head_prior=1.0)  # type: ignore[arg-type]
    # the default is the flat prior, and a set-up network keeps it
    X, y = _linear_rows(20)
    net = Network([layers.ReLU(3)], head_prior="evidence").initialize(X, y)
    assert net.head_prior == "evidence" and net.spec.head_prior == "flat"
    assert Network([layers.ReLU(3)]).head_prior == "flat"
