"""Probit and logistic heads: closed-form fits, predictive, body targets, learning, bad input.

The ADVI fit is tested in tests/test_advi.py (it compiles PyMC models).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, log_ndtr, ndtr

from bayeslayers import Network, conjugate, heads, layers
from bayeslayers.heads.glm import GLMState, Logistic, Probit
from bayeslayers.propagation import solve_targets

GRID = np.linspace(-12.0, 12.0, 200_001)


def _tilted_moments(loglik, m: float, v: float) -> tuple[float, float, float]:
    """Mode, mean and variance of exp(loglik(eta)) N(eta | m, v) on a fine grid."""
    logp = loglik(GRID) - 0.5 * (GRID - m) ** 2 / v
    p = np.exp(logp - logp.max())
    p /= p.sum()
    mean = float(p @ GRID)
    return float(GRID[np.argmax(logp)]), mean, float(p @ (GRID - mean) ** 2)


def _one_row_state(head, n_classes: int, rng, structure: str = "unit"):
    """A head state with a random Gaussian posterior over 3 inputs + bias."""
    C = head.n_columns(n_classes)
    state = head.init(np.zeros((4, n_classes)), 1.0, structure, 1.0)
    A = rng.normal(size=(C, 4, 4))
    cov = A @ np.swapaxes(A, 1, 2) / 4 + 0.1 * np.eye(4)
    post = conjugate.WeightPosterior("unit", rng.normal(size=(4, C)), cov)
    return state._replace(post=post, before=post)


@pytest.mark.parametrize(
    ("head", "loglik"),
    [
        (Probit(fit="laplace"), lambda eta, y: log_ndtr((2 * y - 1) * eta)),
        (
            Logistic(fit="laplace"),
            lambda eta, y: np.where(y == 0, 1, 0) * eta - np.logaddexp(0, eta),
        ),
    ],
    ids=["probit", "logistic"],
)
@pytest.mark.parametrize("label", [0, 1])
def test_laplace_step_moves_predictor_to_the_one_row_mode(head, loglik, label):
    """Binary, one row: the updated mean of eta = x w is the mode of p(y | eta) N(eta | m, v)."""
    rng = np.random.default_rng(label)
    state = _one_row_state(head, 2, rng)
    x = np.append(rng.normal(size=3), 1.0)[None]
    T = np.eye(2)[[label]]
    m, v = head.predictive(state, x)
    new = head.update(state, x, T, 1.0)
    mode, _, _ = _tilted_moments(lambda eta: loglik(eta, label), m.item(), v.item())
    new_m, new_v = head.predictive(new, x)
    assert new_m.item() == pytest.approx(mode, abs=1e-4)
    assert 0 < new_v.item() < v.item()


@pytest.mark.parametrize("label", [0, 1])
def test_adf_step_matches_the_tilted_moments(label):
    """Binary probit, one row: ADF gives eta the exact mean and variance of the tilted density."""
    rng = np.random.default_rng(10 + label)
    head = Probit(fit="adf")
    state = _one_row_state(head, 2, rng)
    x = np.append(rng.normal(size=3), 1.0)[None]
    m, v = head.predictive(state, x)
    new = head.update(state, x, np.eye(2)[[label]], 1.0)
    _, mean, var = _tilted_moments(lambda eta: log_ndtr((2 * label - 1) * eta), m.item(), v.item())
    new_m, new_v = head.predictive(new, x)
    assert new_m.item() == pytest.approx(mean, abs=1e-5)
    assert new_v.item() == pytest.approx(var, rel=1e-4)


def test_multiclass_laplace_mean_is_the_joint_mode():
    """Multinomial logit, one row: the new logit means solve g(eta) = (eta - m) / v."""
    rng = np.random.default_rng(3)
    head = Logistic()
    state = _one_row_state(head, 4, rng)
    x = np.append(rng.normal(size=3), 1.0)[None]
    T = np.eye(4)[[1]]
    m, v = head.predictive(state, x)
    new_m, _ = head.predictive(head.update(state, x, T, 1.0), x)
    g, _ = head._grad_hess(new_m, T)
    np.testing.assert_allclose(g, (new_m - m) / v, atol=1e-8)


@pytest.mark.parametrize(
    "head",
    [Probit(), Probit(fit="adf"), Logistic()],
    ids=["probit-laplace", "probit-adf", "logistic-laplace"],
)
def test_fraction_tempers_the_update(head):
    """A tempered update moves the posterior less than a full one."""
    rng = np.random.default_rng(4)
    state = _one_row_state(head, 2, rng)
    x = np.append(rng.normal(size=3), 1.0)[None]
    T = np.eye(2)[[1]]
    _, v0 = head.predictive(state, x)
    _, v_half = head.predictive(head.update(state, x, T, 0.5), x)
    _, v_full = head.predictive(head.update(state, x, T, 1.0), x)
    assert v_full.item() < v_half.item() < v0.item()


def test_probit_proba_integrates_the_weights_exactly():
    """Binary probit: Phi(m / sqrt(1 + v)) equals the average of Phi(x w) over weight draws."""
    rng = np.random.default_rng(5)
    head = Probit()
    state = _one_row_state(head, 2, rng)
    X = np.c_[rng.normal(size=(6, 3)), np.ones(6)]
    draws = conjugate.sample(state.post, 200_000, rng)  # (S, D, 1)
    mc = ndtr(np.einsum("nd,sdc->snc", X, draws)).mean(axis=0)[:, 0]
    proba = head.proba(state, X)
    np.testing.assert_allclose(proba[:, 1], mc, atol=3e-3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_one_vs_rest_probit_proba_is_conditioned_on_exactly_one_class():
    """P(k) = P(y = e_k | exactly one y_j = 1) for independent y_j ~ Bernoulli(p_j), brute force,
    p_j the indicators' posterior predictive (Monte Carlo over the weights)."""
    import itertools

    rng = np.random.default_rng(5)
    head = Probit()
    state = _one_row_state(head, 3, rng)
    X = np.c_[rng.normal(size=(4, 3)), np.ones(4)]
    draws = conjugate.sample(state.post, 200_000, rng)
    p = ndtr(np.einsum("nd,sdc->snc", X, draws)).mean(axis=0)  # (4, 3)
    joint = {
        bits: np.prod(np.where(np.array(bits) == 1, p, 1 - p), axis=1)
        for bits in itertools.product((0, 1), repeat=3)
    }
    one_hot = np.stack([joint[tuple(np.eye(3, dtype=int)[k])] for k in range(3)], axis=1)
    expected = one_hot / one_hot.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(head.proba(state, X), expected, atol=3e-3)


def test_probit_laplace_is_calibrated_on_digits():
    """Dividing by sum_j p_j gave ECE 0.17 here (confidence 0.80 at 97% accuracy)."""
    from sklearn.datasets import load_digits

    from bayeslayers import metrics

    X, y = load_digits(return_X_y=True)
    X = (X - X[:1300].mean(0)) / (X[:1300].std(0) + 1e-9)
    net = Network([layers.ReLU(100)], head=Probit(), covariance="unit", prior_precision=3.0)
    net.fit(X[:1300], y[:1300])
    proba = net.predict_proba(X[1300:])
    assert np.mean(proba.argmax(1) == y[1300:]) > 0.9
    assert metrics.ece(y[1300:], proba) < 0.06


def test_logistic_proba_averages_the_softmax_over_draws():
    """Multinomial logit: the head's average agrees with an independent Monte Carlo."""
    rng = np.random.default_rng(6)
    head = Logistic(n_draws=4000)
    state = _one_row_state(head, 3, rng)
    X = np.c_[rng.normal(size=(5, 3)), np.ones(5)]
    draws = conjugate.sample(state.post, 100_000, rng)
    eta = np.einsum("nd,sdc->snc", X, draws)
    logits = np.concatenate([eta, np.zeros((*eta.shape[:2], 1))], axis=-1)
    mc = np.exp(logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)).mean(axis=0)
    np.testing.assert_allclose(head.proba(state, X), mc, atol=0.02)


def test_logistic_binary_proba_without_uncertainty_is_the_sigmoid():
    head = Logistic()
    state = head.init(np.zeros((3, 2)), 1.0, "diag", 1.0)
    post = conjugate.WeightPosterior(
        "diag", np.array([[1.5], [-0.5], [0.2]]), np.full((3, 1), 1e-30)
    )
    X = np.array([[1.0, 2.0, 1.0], [-1.0, 0.5, 1.0]])
    proba = head.proba(state._replace(post=post), X)
    np.testing.assert_allclose(proba[:, 0], expit(X @ post.mean[:, 0]), rtol=1e-9)


@pytest.mark.parametrize("head", [Probit(), Logistic()], ids=["probit", "logistic"])
def test_proba_accepts_body_draws(head):
    """Head inputs (S, n, D) from body draws give probabilities (S, n, K)."""
    rng = np.random.default_rng(7)
    state = _one_row_state(head, 3, rng)
    X = np.concatenate([rng.normal(size=(2, 5, 3)), np.ones((2, 5, 1))], axis=-1)
    proba = head.proba(state, X)
    assert proba.shape == (2, 5, 3)
    np.testing.assert_allclose(proba[1], head.proba(state, X[1]))


@pytest.mark.parametrize(
    ("head", "n_classes"),
    [(Probit(), 2), (Probit(curvature_floor=0.0), 4), (Logistic(), 2), (Logistic(), 4)],
)
def test_residual_gives_the_levenberg_marquardt_step(head, n_classes):
    """solve_targets(E, J) equals g^T W^T (W (H + kappa I) W^T + lambda I)^{-1} for every row."""
    rng = np.random.default_rng(8)
    state = _one_row_state(head, n_classes, rng)
    X = np.c_[rng.normal(size=(5, 3)), np.ones(5)]
    T = np.eye(n_classes)[rng.integers(0, n_classes, 5)]
    E, J = head.residual(state, X, T)
    delta = solve_targets(E, J, damping=0.1)
    W = state.post.mean[:-1]
    g, H = head._grad_hess(X @ state.post.mean, head._targets(T))
    H += head.curvature_floor * np.eye(H.shape[1])
    for i in range(5):
        lhs = W @ H[i] @ W.T + 0.1 * np.eye(3)
        np.testing.assert_allclose(delta[i], np.linalg.solve(lhs, W @ g[i]), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("body_target", ["before", "after"])
def test_body_target_is_taken_before_or_after_the_update(body_target):
    rng = np.random.default_rng(9)
    head = Logistic(body_target=body_target)
    state = _one_row_state(head, 3, rng)
    X = np.c_[rng.normal(size=(2, 3)), np.ones(2)]
    T = np.eye(3)[[0, 2]]
    new = head.update(state, X, T, 1.0)
    assert new.before is state.post
    at = state.post if body_target == "before" else new.post
    expected = Logistic().residual(new._replace(before=at), X, T)
    for got, want in zip(head.residual(new, X, T), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def _blobs(n_classes: int, n: int, seed: int):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2.5, (n_classes, 2))
    y = rng.integers(0, n_classes, n)
    return centers[y] + rng.normal(size=(n, 2)), y


@pytest.mark.parametrize(
    "head",
    [Probit(), Probit(fit="adf"), Logistic()],
    ids=["probit-laplace", "probit-adf", "logistic-laplace"],
)
@pytest.mark.parametrize("n_classes", [2, 3])
def test_head_learns_a_small_problem(head, n_classes):
    X, y = _blobs(n_classes, 500, seed=n_classes)
    net = Network([layers.ReLU(20)], head=head, seed=0).fit(X[:400], y[:400])
    assert np.mean(net.predict(X[400:]) == y[400:]) > 0.9
    proba = net.predict_proba(X[400:])
    assert proba.shape == (100, n_classes)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    nll = -np.mean(np.log(proba[np.arange(100), y[400:]]))
    assert nll < 0.35


def test_string_labels_and_state_layout():
    X, y = _blobs(3, 60, seed=1)
    labels = np.array(["a", "b", "c"])[y]
    net = Network([layers.ReLU(5)], head=heads.Probit(fit="adf"), seed=0).fit(X, labels)
    assert set(net.predict(X)) <= {"a", "b", "c"}
    state = net.head_state_
    assert isinstance(state, GLMState)
    assert state.post.mean.shape == (5 + 2 + 1, 3)  # top units, inputs (skip="auto"), bias
    assert state.fit is None  # closed-form fits carry nothing beyond the posterior
    logit = Network([], head=heads.Logistic(), seed=0).fit(X, labels)
    assert logit.head_state_.post.mean.shape == (3, 2)  # reference class pinned


@pytest.mark.parametrize(
    ("y", "error", "match"),
    [
        (np.array([0.0, 1.5, 1.0, 0.0]), TypeError, "non-integer"),
        (np.array([0.0, np.nan, 1.0, 0.0]), ValueError, "NaN"),
        (np.array([0, 1, 1]), ValueError, "labels but X has 4 rows"),
    ],
)
@pytest.mark.parametrize("head", [Probit(), Logistic()], ids=["probit", "logistic"])
def test_bad_labels_raise(head, y, error, match):
    X = np.random.default_rng(0).normal(size=(4, 2))
    with pytest.raises(error, match=match):
        Network([layers.ReLU(3)], head=head).fit(X, y)


@pytest.mark.parametrize("head", [Probit(), Logistic()], ids=["probit", "logistic"])
def test_unseen_class_and_single_class_raise(head):
    X = np.random.default_rng(0).normal(size=(4, 2))
    net = Network([layers.ReLU(3)], head=head).fit(X, [0, 1, 0, 1])
    before = net.head_state_
    with pytest.raises(ValueError, match=r"labels \[2\] not among the classes"):
        net.partial_fit(X, [0, 1, 2, 1])
    assert net.head_state_ is before
    with pytest.raises(ValueError, match="at least 2 classes"):
        Network([layers.ReLU(3)], head=head).fit(X, [1, 1, 1, 1])


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (Logistic, {"fit": "adf"}, "fit must be one of"),
        (Probit, {"fit": "nuts"}, "fit must be one of"),
        (Probit, {"chunk_size": 0}, "chunk_size must be an int >= 1"),
        (Probit, {"n_steps": 2.5}, "n_steps must be an int >= 1"),
        (Logistic, {"n_mc": True}, "n_mc must be an int >= 1"),
        (Probit, {"learning_rate": -1.0}, "learning_rate must be a finite number > 0"),
        (Logistic, {"covariance": "full"}, "covariance must be one of"),
        (Logistic, {"n_draws": 0}, "n_draws must be an int >= 1"),
        (Probit, {"body_target": "middle"}, "body_target must be 'before' or 'after'"),
        (Logistic, {"curvature_floor": -0.1}, "curvature_floor must be a finite number >= 0"),
        (Logistic, {"curvature_floor": np.inf}, "curvature_floor must be a finite number >= 0"),
        (Probit, {"learning_rate": float("inf")}, "learning_rate must be a finite number > 0"),
        (Probit, {"learning_rate": True}, "learning_rate must be a finite number > 0"),
        (Probit, {"seed": -1}, "seed must be an int >= 0"),
        (Probit, {"seed": 1.5}, "seed must be an int >= 0"),
        (Logistic, {"seed": None}, "seed must be an int >= 0"),
    ],
)
def test_bad_parameters_raise(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_numpy_scalars_are_numbers():
    head = Probit(learning_rate=np.float32(0.05), curvature_floor=np.float64(0.1), seed=np.int64(3))
    assert head.seed == 3


def test_encode_needs_two_classes():
    with pytest.raises(ValueError, match="n_classes must be >= 2"):
        Probit().encode(np.array([0, 0]), 1)


@pytest.mark.parametrize("floor", [0.0, 0.1])
def test_logistic_structured_solves_match_the_dense_hessian(floor):
    """Newton solves and the whitened residual use diag(p) - p p^T in O(C), as the dense forms."""
    rng = np.random.default_rng(4)
    head = Logistic(curvature_floor=floor)
    eta = rng.normal(0, 3, (5, 6))
    Y = np.eye(7)[rng.integers(0, 7, 5)]
    g, q = head._grad_curv(eta, Y)
    H = head._dense_hessian(q)
    extra, rhs = rng.uniform(0.1, 2, (5, 6)), rng.normal(size=(5, 6))
    want = np.linalg.solve(H + extra[:, None, :] * np.eye(6), rhs[..., None])[..., 0]
    np.testing.assert_allclose(head._solve(q, extra, rhs), want, rtol=1e-10)
    W = rng.normal(size=(4, 6))
    E, J = head._whiten(g, q, W)
    H_floor = H + (floor + 1e-12) * np.eye(6)
    # J J^T = W H W^T and E J^T = g^T W^T: what the body's step depends on
    np.testing.assert_allclose(J @ np.swapaxes(J, 1, 2), W @ H_floor @ W.T, rtol=1e-10)
    np.testing.assert_allclose(np.einsum("nc,ndc->nd", E, J), g @ W.T, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(
        np.sum(E**2, axis=1),
        np.einsum("nc,nc->n", g, np.linalg.solve(H_floor, g[..., None])[..., 0]),
        rtol=1e-8,
    )


@pytest.mark.parametrize("head", [Probit(), Logistic()], ids=["probit", "logistic"])
def test_glm_heads_train_and_predict_1000_classes_without_dense_hessians(head):
    """O(C) per row: a dense (n, C, C) Hessian alone would be 8 MB per row here."""
    import time
    import tracemalloc

    rng = np.random.default_rng(0)
    K, n = 1000, 64
    state = head.init(np.zeros((6, K)), 1.0, "diag", 1.0)
    X = np.c_[rng.normal(size=(n, 5)), np.ones(n)]
    T = head.encode(rng.integers(0, K, n), K)
    start = time.perf_counter()
    tracemalloc.start()
    try:
        state = head.update(state, X, T, 1.0)
        E, J = head.residual(state, X, T)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 20
    assert peak < 200 * 2**20  # dense Hessians: n C^2 x 8 bytes = 512 MB, several times over
    assert E.shape == (n, head.n_columns(K)) and J.shape == (n, 5, head.n_columns(K))
    assert np.all(np.isfinite(E)) and np.all(np.isfinite(J))


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("scale", [1.0, 40.0])  # 40: predictors far out (log Phi below -300)
def test_adf_one_row_kernel_equals_the_batch_path(n_classes, scale):
    """The compiled one-row score and step (training's path at batch size 1) give the batch
    path's density and posterior, whatever the predictors' range."""
    from bayeslayers.heads import glm

    head = Probit(fit="adf")
    rng = np.random.default_rng(5)
    D = 6
    X = np.c_[rng.normal(size=(40, D - 1)) * scale, np.ones(40)]
    T = head.encode(rng.integers(0, n_classes, 40), n_classes)
    state = head.init(np.zeros((D, n_classes)), 0.7, "unit", 1.0)
    for i in range(len(X)):
        x, t = X[i : i + 1], T[i : i + 1]
        assert glm._one_row_kernel(state.post, x)
        before = state.post.mean.copy(), state.post.cov.copy()
        score, new = head.score_and_update(state, x, t, 0.5)
        np.testing.assert_array_equal(state.post.mean, before[0])  # new arrays, state intact
        np.testing.assert_array_equal(state.post.cov, before[1])
        ref = head.update(state, x, t, 0.5)
        assert score == pytest.approx(head.log_predictive(state, x, t), rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(new.post.mean, ref.post.mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(new.post.cov, ref.post.cov, rtol=1e-9, atol=1e-12)
        assert new.before is state.post
        state = new
    assert np.all(np.linalg.eigvalsh(state.post.cov) > 0)
    np.testing.assert_array_equal(state.post.cov, np.swapaxes(state.post.cov, 1, 2))


def test_adf_one_row_kernel_log_ndtr_through_its_three_regimes():
    """A one-column prior with unit variance scores the row by log Phi(s m / sqrt(1 + v));
    the kernel's log Phi agrees with SciPy's from z = 40 to z = -1e4."""
    head = Probit(fit="adf")
    for z in [40.0, 6.0, 0.3, 0.0, -0.3, -4.9, -5.1, -12.0, -40.0, -300.0, -1e4]:
        state = head.init(np.zeros((2, 2)), 1.0, "unit", 1.0)
        mean = np.array([[0.0], [z * np.sqrt(2.0)]])  # m = z sqrt(2), v = 1 at x = (0, 1)
        state = state._replace(post=state.post._replace(mean=mean))
        score, _ = head.score_and_update(state, np.array([[0.0, 1.0]]), np.array([[0.0, 1.0]]), 1)
        assert score == pytest.approx(float(log_ndtr(z)), rel=1e-12, abs=1e-15), z
