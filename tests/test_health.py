"""Numerical health: the per-step guard and the per-layer report."""

from __future__ import annotations

import numpy as np
import pytest

from bayeslayers import Network, conjugate, heads, layers
from bayeslayers.health import HealthReport, check_posteriors, report

STRUCTURES = ["unit", "shared", "diag"]
N_CHUNKS = 20


def _data(n=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2]


def _fitted(structure="unit", **kw):
    X, y = _data()
    net = Network([layers.ReLU(8), layers.TaylorTanh(5)], covariance=structure, seed=0, **kw)
    return net.fit(X, y, batch_size=6), X, y


def _min_eig_by_hand(post: conjugate.WeightPosterior) -> float:
    if post.structure == "diag":
        return float(post.cov.min())
    return float(
        min(np.linalg.eigvalsh(c).min() for c in np.reshape(post.cov, (-1, *post.cov.shape[-2:])))
    )


@pytest.mark.parametrize("structure", STRUCTURES)
def test_report_of_a_fitted_network(structure):
    net, _, _ = _fitted(structure)
    rep = net.health()
    assert isinstance(rep, HealthReport) and rep.ok
    posts = [*net.posteriors_, net.head_state_.post]
    assert [h.layer for h in rep.layers] == [
        "hidden 0 (ReLU)",
        "hidden 1 (TaylorTanh)",
        "head (Gaussian)",
    ]
    for h, post in zip(rep.layers, posts, strict=True):
        assert h.structure == structure
        assert h.min_eigenvalue == pytest.approx(_min_eig_by_hand(post), rel=1e-8)
        assert 0 < h.min_eigenvalue <= 1.0  # the prior variance is 1 and updates only shrink
        assert h.dead_units is None and h.max_correction is None
    assert "hidden 1 (TaylorTanh)" in str(rep)


@pytest.mark.parametrize("structure", ["unit", "shared"])
@pytest.mark.parametrize(
    ("corrupt", "flag"),
    [
        (lambda c: c.__setitem__((..., 0, 0), -1.0), "cholesky"),
        (lambda c: c.__setitem__((..., 0, 1), c[..., 0, 1] + 1e-3), "symmetric"),
        (lambda c: c.__setitem__((..., 1, 0), np.nan), "finite"),
    ],
    ids=["not-positive-definite", "asymmetric", "nan"],
)
def test_report_flags_a_corrupted_covariance(structure, corrupt, flag):
    net, _, _ = _fitted(structure)
    cov = net.posteriors_[1].cov.copy()
    corrupt(cov)
    net.posteriors_[1] = net.posteriors_[1]._replace(cov=cov)
    rep = net.health()
    assert not rep.ok and not rep.layers[1].ok
    assert getattr(rep.layers[1], flag) is False
    assert rep.layers[0].ok and rep.layers[2].ok


def test_report_flags_a_non_positive_diag_variance():
    net, _, _ = _fitted("diag")
    var = net.posteriors_[0].cov.copy()
    var[2, 3] = 0.0
    net.posteriors_[0] = net.posteriors_[0]._replace(cov=var)
    h = net.health().layers[0]
    assert not h.cholesky and h.min_eigenvalue == 0.0


def test_dead_units_are_counted_on_probe_inputs():
    net, X, _ = _fitted()
    post = net.posteriors_[0]
    mean = post.mean.copy()
    mean[:, [1, 4, 6]] = 0.0
    mean[-1, [1, 4, 6]] = -1.0  # zero weights, negative bias: these ReLUs never fire
    net.posteriors_[0] = post._replace(mean=mean)
    rep = net.health(X)
    assert rep.layers[0].dead_units == 3
    assert rep.layers[1].dead_units == 0  # a tanh only dies when saturated on every row
    assert rep.layers[2].dead_units == 0


def test_target_corrections_follow_clip_and_leave_the_network_alone():
    net, X, y = _fitted(clip=0.05)
    means = [p.mean.copy() for p in net.posteriors_]
    seen = net.n_samples_seen_
    rep = net.health(X, y)
    for h in rep.layers[:2]:
        assert 0 < h.max_correction <= 0.05
    assert rep.layers[2].max_correction is None
    for before, post in zip(means, net.posteriors_, strict=True):
        np.testing.assert_array_equal(before, post.mean)
    assert net.n_samples_seen_ == seen
    loose = _fitted()[0].health(X, y)
    assert max(h.max_correction for h in loose.layers[:2]) > 0.05


def test_corrections_are_the_largest_over_probe_batches():
    net, X, y = _fitted()
    whole = report(net, X, y, batch_size=7)
    parts = [report(net, X[i : i + 7], y[i : i + 7], batch_size=7) for i in range(0, len(X), 7)]
    for k in range(2):
        assert whole.layers[k].max_correction == max(p.layers[k].max_correction for p in parts)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        report(net, X, y, batch_size=0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        report(net, X, y, batch_size=2.5)


def test_report_needs_a_fitted_network_and_x_with_y():
    X, y = _data()
    with pytest.raises(RuntimeError, match="not fitted"):
        report(Network([layers.ReLU(3)]))
    net, _, _ = _fitted()
    with pytest.raises(ValueError, match="Y was given without X"):
        net.health(None, y)
    with pytest.raises(ValueError, match="features"):
        net.health(X[:, :2])


def test_classifier_report_uses_labels():
    X, y = _data()
    net = Network([layers.ReLU(6)], head=heads.OneHot(), seed=0).fit(X, y > 0, batch_size=10)
    rep = net.health(X, y > 0)
    assert rep.ok and rep.layers[-1].layer == "head (OneHot)" and rep.layers[0].max_correction > 0


def _post(structure, mean_value=0.0, var_value=1.0):
    post = conjugate.init(structure, np.full((3, 2), mean_value), 1.0)
    if structure == "diag":
        return post._replace(cov=np.full((3, 2), var_value))
    cov = post.cov.copy()
    cov[..., 1, 1] = var_value
    return post._replace(cov=cov)


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize(
    ("mean_value", "var_value", "message"),
    [
        (np.nan, 1.0, "non-finite weight means"),
        (0.0, np.nan, "non-finite variances"),
        (0.0, 0.0, "a non-positive variance"),
        (0.0, -1e-9, "a non-positive variance"),
    ],
)
def test_check_posteriors_refuses_broken_states(structure, mean_value, var_value, message):
    good = _post(structure)
    check_posteriors([good, None], ["a", "b"])  # a state without a posterior is skipped
    bad = _post(structure, mean_value, var_value)
    with pytest.raises(FloatingPointError, match=f"update of layer X produced {message}"):
        check_posteriors([good, heads.GaussianState(bad, 1.0, 1.0)], ["good", "layer X"])


@pytest.mark.slow
@pytest.mark.parametrize("structure", STRUCTURES)
def test_long_stream_stays_healthy_with_flat_memory(structure):
    """100,000 samples through partial_fit: no NaN, SPD covariances, no memory growth."""
    import gc
    import tracemalloc

    rng = np.random.default_rng(0)
    net = Network([layers.ReLU(20)], head=heads.OneHot(), covariance=structure, seed=0)

    def chunk(n):
        X = rng.normal(size=(n, 5))
        return X, (np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] > 0).astype(int)

    X_test, y_test = chunk(2000)
    tracemalloc.start()
    try:
        current = []
        for _ in range(N_CHUNKS):
            X, y = chunk(5000)
            net.partial_fit(X, y, batch_size=50, classes=[0, 1])
            gc.collect()  # live memory only, not cyclic garbage awaiting collection
            current.append(tracemalloc.get_traced_memory()[0])
            assert net.health().ok
    finally:
        tracemalloc.stop()
    assert net.n_samples_seen_ == 5000 * N_CHUNKS
    # The state is allocated once: after the first chunk the traced footprint stays flat.
    assert max(current[1:]) - current[0] < 256 * 1024
    rep = net.health(X_test[:500], y_test[:500])
    assert rep.ok and all(h.min_eigenvalue > 0 for h in rep.layers)
    assert np.mean(net.predict(X_test) == y_test) > 0.7  # majority class: about 0.5


def _posterior_arrays(net) -> list[np.ndarray]:
    posts = [*net.posteriors_, net.head_state_.post]
    return [a.copy() for p in posts for a in (p.mean, p.cov)]


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("hidden", [0, 1])
def test_an_outlier_row_is_refused_or_leaves_every_covariance_positive_definite(structure, hidden):
    """One row scaled by 1e10 ... 1e150 inside a normal batch (the adversarial sweep).

    Either the update raises an error naming the layer and leaves the model bitwise unchanged,
    or every covariance still has a Cholesky factor and sampled predictions work.
    """
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 5))
    y = X.sum(axis=1) + 0.1 * rng.normal(size=64)
    body = [layers.ReLU(6)] * hidden
    refused = 0
    for exponent in range(10, 151, 20):
        net = Network(body, covariance=structure, seed=0).fit(X, y, batch_size=8)
        before = _posterior_arrays(net)
        seen = net.n_samples_seen_
        Xo = X[:8].copy()
        Xo[3] *= 10.0**exponent
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                net.partial_fit(Xo, y[:8], batch_size=8)
        except (np.linalg.LinAlgError, FloatingPointError) as error:
            refused += 1
            assert "head" in str(error) or "hidden layer" in str(error)
            assert net.n_samples_seen_ == seen
            for a, b in zip(before, _posterior_arrays(net), strict=True):
                np.testing.assert_array_equal(a, b)
            continue
        assert net.health().ok, f"scale 1e{exponent}: a covariance lost positive definiteness"
        for post in net.posteriors_:
            conjugate.sample(post, 2, np.random.default_rng(0))
    if structure != "diag":
        assert refused > 0  # the dense downdate cannot represent such a row in float64


def test_check_posteriors_looks_into_every_readout_of_a_head():
    state = heads.Choice().init(np.zeros((3, 2)), 1.0, "shared", 1.0)
    check_posteriors([state], ["the head"])  # a healthy prior passes
    rival = state.rival._replace(post=state.rival.post._replace(mean=np.full((3, 1), np.nan)))
    with pytest.raises(FloatingPointError, match=r"the head \(readout 1\)"):
        check_posteriors([state._replace(rival=rival)], ["the head"])
