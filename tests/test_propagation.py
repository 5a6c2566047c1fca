"""The damped minimum-norm target solve."""

import numpy as np
import pytest

from bayeslayers import propagation
from bayeslayers.propagation import solve_targets


def original_post(a, Y, W):
    """Y^l = a + W (W^T W)^{-1} (Y^{l+1} - a W)^T from the original post (one row)."""
    return a + (W @ np.linalg.solve(W.T @ W, (Y - a @ W).T)).T


def test_undamped_equals_original_post_formula():
    rng = np.random.default_rng(0)
    d, k, n = 8, 3, 5
    W = rng.normal(size=(d, k))
    a, Y = rng.normal(size=(n, d)), rng.normal(size=(n, k))
    delta = solve_targets(Y - a @ W, W, damping=0.0)
    np.testing.assert_allclose(a + delta, original_post(a, Y, W), rtol=1e-10)
    np.testing.assert_allclose((a + delta) @ W, Y, rtol=1e-10)  # reproduces the target


def test_masked_solve_equals_restricted_solve():
    """Zero rows (inputs that cannot move) and columns (units that did not take part)."""
    rng = np.random.default_rng(1)
    d, k = 7, 4
    W = rng.normal(size=(d, k))
    movable = np.array([1, 0, 1, 1, 0, 1, 1], bool)
    part = np.array([1, 1, 0, 1], bool)
    e = rng.normal(size=(1, k)) * part
    J = W * movable[:, None] * part[None, :]
    for damping in (0.0, 0.05):
        full = solve_targets(e, J, damping)
        Jr = W[np.ix_(movable, part)]
        gram = Jr.T @ Jr + damping * np.eye(part.sum())
        restricted = np.linalg.solve(gram, e[:, part].T).T @ Jr.T
        np.testing.assert_allclose(full[:, movable], restricted, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(full[:, ~movable], 0.0, atol=1e-12)


@pytest.mark.parametrize(("d", "k"), [(10, 3), (3, 10)])
def test_both_gram_forms_agree_with_pseudoinverse_limit(d, k):
    rng = np.random.default_rng(2)
    J = rng.normal(size=(4, d, k))
    E = rng.normal(size=(4, k))
    tiny = solve_targets(E, J, damping=1e-10)
    exact = solve_targets(E, J, damping=0.0)
    np.testing.assert_allclose(tiny, exact, rtol=1e-6, atol=1e-8)


def test_damping_bounds_the_correction():
    """Near-singular J: undamped corrections explode, damped ones stay bounded."""
    rng = np.random.default_rng(3)
    J = rng.normal(size=(6, 2)) * np.array([1.0, 1e-6])
    E = np.array([[1.0, 1.0]])
    norms = [np.linalg.norm(solve_targets(E, J, damping=lam)) for lam in (0.0, 1e-2, 1.0)]
    assert norms[0] > 1e4
    assert norms[1] < np.linalg.norm(E) / (2 * np.sqrt(1e-2))  # |e J^T (JJ^T+l)^-1| bound
    assert norms[2] < norms[1]


def test_clip_limits_every_entry():
    rng = np.random.default_rng(4)
    delta = solve_targets(rng.normal(size=(3, 2)) * 50, rng.normal(size=(5, 2)), 1e-2, clip=0.5)
    assert np.max(np.abs(delta)) <= 0.5


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"damping": -1.0}, "damping"), ({"clip": 0.0}, "clip")]
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        solve_targets(np.ones((1, 2)), np.ones((3, 2)), **kwargs)


@pytest.mark.parametrize("compact_min", [128, 0])
@pytest.mark.parametrize("damping", [0.0, 1e-2])
@pytest.mark.parametrize(("d", "k"), [(9, 4), (4, 9)])
def test_masks_equal_explicitly_masked_jacobian(monkeypatch, compact_min, damping, d, k):
    """``rows``/``cols`` give the zero-padded solve, batched or row by row (compacted)."""
    monkeypatch.setattr(propagation, "_COMPACT_MIN", compact_min)
    rng = np.random.default_rng(5)
    n = 6
    W = rng.normal(size=(d, k))
    rows = rng.random((n, d)) < 0.6
    rows[0] = False  # a row with nothing that can move
    cols = rng.normal(size=(n, k)) * (rng.random((n, k)) < 0.6)
    cols[1] = 0.0  # a row where no unit took part
    E = rng.normal(size=(n, k)) * (cols != 0)
    explicit = W[None] * rows[:, :, None] * cols[:, None, :]
    for J in (W, np.broadcast_to(W, (n, d, k)).copy()):
        got = solve_targets(E, J, damping, rows=rows, cols=cols)
        want = solve_targets(E, explicit, damping)
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(got[~rows], 0.0, atol=1e-12)
        np.testing.assert_allclose(got[:2], 0.0, atol=1e-12)


# ---------------------------------------------------------------- the strategy registry
from bayeslayers import Network, conjugate, engine, heads, layers  # noqa: E402
from bayeslayers.propagation import TARGETS, LayerView, Upper  # noqa: E402


def sine_data(n=160, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 1))
    return X, np.sin(2 * X[:, 0]) + 0.05 * rng.normal(size=n)


@pytest.mark.parametrize("depth", [1, 2, 4])
@pytest.mark.parametrize("name", list(TARGETS))
def test_every_strategy_is_finite_learns_and_keeps_its_units(name, depth):
    """Contract: finite shapes and state, learns a small task, no dead stack up to depth 4."""
    X, y = sine_data()
    net = Network([layers.ReLU(12) for _ in range(depth)], targets=name, noise=0.01, seed=1)
    prior = Network([layers.ReLU(12) for _ in range(depth)], targets=name, noise=0.01, seed=1)
    prior.initialize(X, y)
    # the prior's spec: an unfitted network does not know the inputs' width (skip="auto")
    state, info = engine.train_step(prior.spec, prior.state, X[:5], y[:5, None], 1.0)
    assert len(info.layers) == len(info.corrections) == depth
    assert all(np.isfinite(c) for c in info.corrections)
    for before, after in zip(prior.state.hidden, state.hidden, strict=True):
        assert after.mean.shape == before.mean.shape and after.cov.shape == before.cov.shape
    net.fit(X, y)
    for post in net.posteriors_:
        assert np.all(np.isfinite(post.mean)) and np.all(np.isfinite(post.cov))
    assert all(np.isfinite(n.b / n.a) and n.b / n.a > 0 for n in net.noise_)
    mse = np.mean((net.predict(X) - y) ** 2)
    assert mse < 0.25 * np.var(y)  # the prior predicts zero: mse = var(y) + mean(y)^2
    _, trace = engine.forward(net.spec, net.posteriors_, X)
    for t in trace:  # every layer keeps units that are active on the data
        assert (t.g != 0).any(axis=0).sum() >= 2


def test_unknown_strategy_is_refused_with_the_names():
    with pytest.raises(ValueError, match=r"targets must be one of.*min_norm"):
        Network([layers.ReLU(3)], targets="newton")
    with pytest.raises(ValueError, match="targets"):
        propagation.check_targets(None)


@pytest.mark.parametrize("head", [heads.Gaussian(), heads.Probit(fit="adf")])
def test_gauss_newton_is_min_norm_for_one_hidden_layer(head):
    """The chained output Jacobian of the top hidden layer is the head's own Jacobian."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int) if head.is_classifier else X[:, 0] ** 2
    nets = [
        Network([layers.LeakyReLU(6)], head=head, targets=t, seed=2).fit(X, y, batch_size=4)
        for t in ("min_norm", "gauss_newton")
    ]
    np.testing.assert_array_equal(nets[0].posteriors_[0].mean, nets[1].posteriors_[0].mean)
    np.testing.assert_array_equal(nets[0].posteriors_[0].cov, nets[1].posteriors_[0].cov)


def random_unit_posterior(rng, D, m):
    post = conjugate.init("unit", rng.normal(size=(D, m)), 1.0)
    B = rng.normal(size=(m, D, D))
    return post._replace(cov=B @ np.swapaxes(B, 1, 2) / D + 0.1 * np.eye(D))


def apply(post, view, target, noise=1.0, fraction=1.0):
    """The engine's pseudo-observation of a Target (slopes and values scaled by the weight)."""
    w = 1.0 if target.weight is None else target.weight
    values = (view.h + target.delta - view.b) * w
    return conjugate.update(post, view.x, values, view.g * w, noise=noise, fraction=fraction)[0]


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_ekf_row_is_the_joint_kalman_step_with_block_diagonal_prior(fraction):
    r"""One row: the per-unit pseudo-observations reproduce the EKF on all the layer's weights.

    Output :math:`f = f_0 + \sum_j a_j (x^\top (w_j - \mu_j))`, noise :math:`S_{up}`, prior
    :math:`\operatorname{blockdiag}(\Sigma_j)`: the joint Kalman gain on the stacked weights
    gives each unit's mean and (diagonal block of the) covariance exactly.
    """
    rng = np.random.default_rng(4)
    d, m, k = 3, 4, 2
    D = d + 1
    post = random_unit_posterior(rng, D, m)
    x = np.append(rng.normal(size=d), 1.0)[None]
    A = rng.normal(size=(m, k))
    B = rng.normal(size=(k, k))
    S_up = (B @ B.T + 0.5 * np.eye(k))[None]
    e = rng.normal(size=(1, k))
    h = x @ post.mean
    view = LayerView(x, h, np.ones((1, m)), np.zeros((1, m)), post)
    target = TARGETS["ekf"].target(Upper(e, A, None, S_up), view, fraction, 0.0, None)
    new = apply(post, view, target, fraction=fraction)

    H = np.concatenate([A[j][:, None] * x for j in range(m)], axis=1)  # (k, m D)
    P = scipy_block_diag(post.cov)
    K = P @ H.T @ np.linalg.inv(H @ P @ H.T + S_up[0])
    mean = post.mean.T.reshape(-1) + K @ e[0]
    cov = P - K @ H @ P
    np.testing.assert_allclose(new.mean, mean.reshape(m, D).T, rtol=1e-10, atol=1e-12)
    for j in range(m):
        block = cov[j * D : (j + 1) * D, j * D : (j + 1) * D]
        np.testing.assert_allclose(new.cov[j], block, rtol=1e-9, atol=1e-12)


def scipy_block_diag(blocks):
    import scipy.linalg

    return scipy.linalg.block_diag(*blocks)


def test_ekf_learns_less_where_the_layers_above_are_uncertain():
    rng = np.random.default_rng(5)
    d, m, k = 3, 5, 2
    post = random_unit_posterior(rng, d + 1, m)
    x = np.append(rng.normal(size=d), 1.0)[None]
    view = LayerView(x, x @ post.mean, np.ones((1, m)), np.zeros((1, m)), post)
    A, e = rng.normal(size=(m, k)), rng.normal(size=(1, k))
    A[2] = 0.0  # a unit the output does not see takes no part
    moves, weights = [], []
    for s in (0.1, 1.0, 10.0):
        target = TARGETS["ekf"].target(Upper(e, A, None, s * np.eye(k)[None]), view, 1, 0, None)
        new = apply(post, view, target)
        moves.append(np.abs(new.mean - post.mean).sum())
        weights.append(target.weight)
        assert target.weight[0, 2] == 0 and target.delta[0, 2] == 0
        np.testing.assert_array_equal(new.mean[:, 2], post.mean[:, 2])
    assert moves[0] > moves[1] > moves[2]
    assert np.all(weights[0][:, [0, 1, 3, 4]] > weights[2][:, [0, 1, 3, 4]])


def frozen_head_network(targets, a, R, damping=0.0, hidden_noise=1.0):
    """One linear hidden unit under a Gaussian head frozen at weight ``a`` (tiny prior)."""
    head = heads.Gaussian(learn_noise=False, noise_memory=None)
    spec = engine.NetSpec(
        (layers.Linear(1),), head, ("unit",), "unit", (hidden_noise,), damping, None, targets
    )
    hidden = conjugate.init("unit", np.zeros((3, 1)), 1.0)
    head_state = head.init(np.array([[a], [0.0]]), 1e-16, "unit", R)
    return spec, engine.NetState((hidden,), head_state, (engine.NoiseState(1.0, hidden_noise),))


def test_ekf_one_unit_under_a_fixed_head_is_exact_bayesian_linear_regression():
    """y = a (x . v) + N(0, R): the EKF posterior of v is exact BLR on the design a x.

    ``min_norm`` without damping and with hidden noise R / a^2 is the same model and agrees.
    """
    rng = np.random.default_rng(6)
    a, R = 1.7, 0.2
    X = rng.normal(size=(30, 2))
    y = a * (X @ [0.8, -0.5] + 0.3) + np.sqrt(R) * rng.normal(size=30)
    Xb = np.column_stack([X, np.ones(30)])
    precision = np.eye(3) + a**2 * Xb.T @ Xb / R
    mean = np.linalg.solve(precision, a * Xb.T @ y / R)
    for targets, noise in (("ekf", 1.0), ("min_norm", R / a**2), ("gauss_newton", R / a**2)):
        spec, state = frozen_head_network(targets, a, R, hidden_noise=noise)
        for i in range(30):
            state, _ = engine.train_step(spec, state, X[i : i + 1], y[i : i + 1, None], 1.0)
        np.testing.assert_allclose(state.hidden[0].mean[:, 0], mean, rtol=1e-6)
        np.testing.assert_allclose(state.hidden[0].cov[0], np.linalg.inv(precision), rtol=1e-6)


def test_chained_residual_is_the_exact_output_residual_of_a_linear_network():
    """Linear layers: the output residual handed down is y - f at the updated upper weights."""
    rng = np.random.default_rng(7)
    n, d0, d1, d2, k = 4, 3, 5, 4, 2
    x1 = np.column_stack([rng.normal(size=(n, d0)), np.ones(n)])
    W1 = rng.normal(size=(d0 + 1, d1))
    h1 = x1 @ W1
    x2 = np.column_stack([h1, np.ones(n)])
    W2_old, W2_new = rng.normal(size=(2, d1 + 1, d2))
    Wh = rng.normal(size=(d2 + 1, k))
    T = rng.normal(size=(n, k))
    f_old = np.column_stack([x2 @ W2_old, np.ones(n)]) @ Wh
    ones = np.ones((n, d2))
    view = LayerView(x2, x2 @ W2_old, ones, 0 * ones, conjugate.init("unit", W2_old, 1.0))
    new = conjugate.init("unit", W2_new, 1.0)
    for name in ("gauss_newton", "ekf"):
        upper = Upper(T - f_old, Wh[:-1], None, np.broadcast_to(np.eye(k), (n, k, k)))
        down = TARGETS[name].down(upper, view, None, new)
        f_new = np.column_stack([x2 @ W2_new, np.ones(n)]) @ Wh
        np.testing.assert_allclose(down.E, T - f_new, rtol=1e-10)
        np.testing.assert_allclose(down.J, np.broadcast_to(W2_new[:-1] @ Wh[:-1], (n, d1, k)))
        if name == "ekf":
            c = conjugate.marginal_variance(new, x2)
            S = np.eye(k) + np.einsum("nm,mk,ml->nkl", c, Wh[:-1], Wh[:-1])
            np.testing.assert_allclose(down.S, S, rtol=1e-10)


def test_the_strategy_is_saved_with_the_model(tmp_path):
    import bayeslayers

    X, y = sine_data(60)
    net = Network([layers.ReLU(6), layers.ReLU(6)], targets="ekf", noise=0.01).fit(X, y)
    loaded = bayeslayers.load(net.save(tmp_path / "m.npz"))
    assert loaded.targets == "ekf" and loaded.spec.targets == "ekf"
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))


@pytest.mark.parametrize("structure", ["unit", "shared", "diag"])
@pytest.mark.parametrize("name", list(TARGETS))
def test_every_strategy_trains_under_every_structure_and_a_glm_head(name, structure):
    """Batches of 4, a TaylorTanh layer under a ReLU one, Gaussian and probit (whitened) heads."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(150, 4))
    regression = np.sin(X[:, 0]) + X[:, 1]
    labels = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int)
    for head, y in ((heads.Gaussian(), regression), (heads.Probit(fit="adf"), labels)):
        body = [layers.ReLU(8), layers.TaylorTanh(8)]
        net = Network(body, head=head, covariance=structure, targets=name, seed=0)
        net.fit(X, y, batch_size=4)
        assert all(np.isfinite(p.mean).all() and np.isfinite(p.cov).all() for p in net.posteriors_)
        if head.is_classifier:
            assert np.mean(net.predict(X) == y) > 0.7  # a constant predictor scores 0.5-0.6
        else:
            assert np.mean((net.predict(X) - y) ** 2) < 0.3 * np.var(y)
