"""The head contract, run over every registered head (closed-form fits; ADVI in test_advi.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, optimize, stats
from scipy.special import log_ndtr

from bayeslayers import conjugate, heads

CASES = [
    ("gaussian", {}),
    ("gaussian", {"learn_noise": True}),
    ("onehot", {}),
    ("probit", {"fit": "laplace"}),
    ("probit", {"fit": "adf"}),
    ("logistic", {"fit": "laplace"}),
    ("choice", {}),
]
IDS = [f"{kind}-{'-'.join(map(str, kw.values())) or 'default'}" for kind, kw in CASES]
D, K, N = 4, 3, 6


def _problem(head, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.c_[rng.normal(size=(N, D - 1)), np.ones(N)]
    if head.is_classifier:  # linearly separable labels
        T = head.encode(np.argmax(X @ rng.normal(size=(D, K)), axis=1), K)
    else:
        T = head.encode(rng.normal(size=(N, K)))
    return X, T


def test_the_cases_cover_every_registered_head():
    assert {kind for kind, _ in CASES} == set(heads.HEADS)


@pytest.mark.parametrize(("kind", "kwargs"), CASES, ids=IDS)
def test_registry_builds_every_head(kind, kwargs):
    head = heads.make_head(kind, **kwargs)
    assert head.kind == kind
    assert isinstance(head, heads.Head)
    assert heads.HEADS[kind] is type(head)


@pytest.mark.parametrize(("kind", "kwargs"), CASES, ids=IDS)
def test_every_head_satisfies_the_protocol_it_declares(kind, kwargs):
    head = heads.make_head(kind, **kwargs)
    assert isinstance(head, heads.ClassifierHead) == head.is_classifier
    state = head.init(np.zeros((D, K)), 1.0, "unit", 0.5)
    assert head.flush(state) is state  # nothing pending in a closed-form head
    post = head.weight_posterior(state)
    assert isinstance(post, conjugate.WeightPosterior) and post.mean.shape[0] == D


@pytest.mark.parametrize(("kind", "kwargs"), CASES, ids=IDS)
def test_every_head_takes_the_blocks_of_its_inputs(kind, kwargs):
    """Every head accepts the rows per block of its inputs at init: the same prior and, before
    any evidence update, the same posterior as without them; a head whose prior has one
    precision per block (a Gaussian one with a learned noise and the evidence prior) keeps
    the blocks and one starting precision per block, the others ignore them."""
    head = heads.make_head(kind, **kwargs)
    X, T = _problem(head)
    plain = head.init(np.zeros((D, K)), 0.5, "unit", 1.0)
    blocked = head.init(np.zeros((D, K)), 0.5, "unit", 1.0, (D - 2, 1, 1))
    for a, b in (
        (plain, blocked),
        (head.update(plain, X, T, 1.0), head.update(blocked, X, T, 1.0)),
    ):
        np.testing.assert_allclose(head.weight_posterior(b).mean, head.weight_posterior(a).mean)
        np.testing.assert_allclose(head.weight_posterior(b).cov, head.weight_posterior(a).cov)
    teacher = getattr(blocked, "teacher", blocked)
    keeps = kind in ("onehot", "choice") or kwargs.get("learn_noise") is True
    assert bool(len(getattr(teacher, "blocks", ()))) == keeps
    if keeps:
        np.testing.assert_array_equal(teacher.blocks, [D - 2, 1, 1])
        np.testing.assert_array_equal(teacher.alpha, [2.0, 2.0, 2.0])


@pytest.mark.parametrize("name", ["gaussian", "onehot", "probit-adf", "logistic-laplace"])
def test_models_saved_before_the_heads_package_still_predict_the_same(name):
    from pathlib import Path

    from bayeslayers import load

    data = Path(__file__).parent / "data" / "models"
    # saved by the single-module heads (glm_heads.GLMState); the probit's expected probabilities
    # are that version's predictive moments under today's one-vs-rest conditioning
    net = load(data / f"{name}.npz")
    X = np.random.default_rng(0).standard_normal((40, 3))[:5]
    got = net.predict_proba(X) if net.head.is_classifier else net.predict(X)
    # to the argmax quadrature's accuracy (about 1e-6 in log P): the one-hot head's
    # probabilities moved by 9e-8 relative when its Laplace rule, summed in float32, became a
    # compiled float64 one (_kernels.equal_orthant); the other heads to rounding (NumPy's SIMD
    # loops for the CPU move the last bit)
    rtol = 1e-6 if name == "onehot" else 1e-14
    np.testing.assert_allclose(got, np.load(data / f"{name}-pred.npy"), rtol=rtol, atol=0)


def test_unknown_kind_lists_the_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown head kind 'softmax'; allowed: \["):
        heads.make_head("softmax")


@pytest.mark.parametrize(("kind", "kwargs"), CASES, ids=IDS)
@pytest.mark.parametrize("structure", conjugate.STRUCTURES)
def test_head_contract(kind, kwargs, structure):
    """init -> update -> residual / predictive / proba: shapes, immutability, prior = unfitted."""
    head = heads.make_head(kind, **kwargs)
    X, T = _problem(head)
    state = head.init(np.zeros((D, K)), 0.5, structure, 1.0)
    assert isinstance(state.post, conjugate.WeightPosterior)
    C = state.post.mean.shape[1]
    m0, v0 = head.predictive(state, X)
    assert m0.shape == v0.shape == (N, C)
    np.testing.assert_allclose(m0, 0.0)
    prior_var = conjugate.marginal_variance(state.post, X)
    np.testing.assert_allclose(prior_var, 0.5 * np.sum(X**2, axis=1, keepdims=True) * np.ones(C))

    frozen = [np.copy(a) for a in (state.post.mean, state.post.cov)]
    new = head.update(state, X, T, 1.0)
    assert type(new) is type(state)
    np.testing.assert_array_equal(state.post.mean, frozen[0])  # the old state is untouched
    np.testing.assert_array_equal(state.post.cov, frozen[1])
    assert not np.allclose(new.post.mean, state.post.mean)

    E, J = head.residual(new, X, T)
    assert E.shape == (N, C)
    assert J.shape in {(D - 1, C), (N, D - 1, C)}
    assert np.all(np.isfinite(E)) and np.all(np.isfinite(J))
    _, v1 = head.predictive(new, X)
    assert np.all(v1 > 0)
    if head.is_classifier:
        proba = head.proba(new, X)
        assert proba.shape == (N, K)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        assert np.all(proba >= 0)


@pytest.mark.parametrize(("kind", "kwargs"), CASES, ids=IDS)
def test_score_and_update_is_log_predictive_then_update(kind, kwargs):
    """The training step's one call gives the density before the update and the same state
    as the two calls (the one-hot head shares the moments with its calibration)."""
    head = heads.make_head(kind, **kwargs)
    X, T = _problem(head)
    state = head.init(np.zeros((D, K)), 0.5, "unit", 1.0)
    for _ in range(3):  # a few batches, so that a calibration has rows recorded
        score, new = head.score_and_update(state, X, T, 1.0)
        assert score == pytest.approx(head.log_predictive(state, X, T), rel=1e-12)
        ref = head.update(state, X, T, 1.0)
        np.testing.assert_allclose(new.post.mean, ref.post.mean, rtol=1e-12)
        np.testing.assert_allclose(new.post.cov, ref.post.cov, rtol=1e-12)
        cal = getattr(new, "calibration", None)
        if cal is not None:
            np.testing.assert_allclose(cal.mean, ref.calibration.mean, rtol=1e-12)
            np.testing.assert_allclose(cal.var, ref.calibration.var, rtol=1e-12)
            assert cal.n_pending == ref.calibration.n_pending > 0
        state = new


@pytest.mark.parametrize(("kind", "kwargs"), CASES, ids=IDS)
def test_sequential_updates_learn_the_training_labels(kind, kwargs):
    """Twenty passes of single-row updates fit the training data (labels, or least squares)."""
    head = heads.make_head(kind, **kwargs)
    X, T = _problem(head, seed=1)
    state = head.init(np.zeros((D, K)), 1.0, "unit", 0.01)
    for _ in range(20):
        for i in range(N):
            state = head.update(state, X[i : i + 1], T[i : i + 1], 1.0)
    if head.is_classifier:
        assert np.mean(head.proba(state, X).argmax(axis=1) == T.argmax(axis=1)) == 1.0
    else:  # N > D: the repeated data make the posterior mean the least-squares fit
        mean, _ = head.predictive(state, X)
        np.testing.assert_allclose(mean, X @ np.linalg.lstsq(X, T, rcond=None)[0], atol=0.15)


@pytest.mark.parametrize(
    ("kind", "kwargs"), [c for c in CASES if heads.HEADS[c[0]].is_classifier], ids=str
)
def test_classifier_encode_is_one_hot(kind, kwargs):
    head = heads.make_head(kind, **kwargs)
    np.testing.assert_array_equal(head.encode(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])


# ------------------------------------------------------- P(k = argmax) of independent Gaussians
def _reference_log_proba(mean, sd, k):
    """log P(f_k = max_j f_j) by adaptive quadrature around the mode of the log integrand."""
    j = np.arange(len(mean)) != k
    a, b = sd[k] / sd[j], (mean[k] - mean[j]) / sd[j]

    def h(z):
        return stats.norm.logpdf(z) + log_ndtr(a * z + b).sum()

    mode = optimize.minimize_scalar(lambda z: -h(z), bounds=(-50, 1000), method="bounded").x
    top = h(mode)
    val, _ = integrate.quad(
        lambda z: np.exp(h(z) - top),
        mode - 40,
        mode + 40,
        points=[mode],
        epsabs=0,
        epsrel=1e-12,
        limit=500,
    )
    return top + np.log(val)


# Differences d_j = (f_0 - f_j) / s with equal variances s^2; class 0 is the observed one.
EQUAL_CASES = [
    [0.0, 0.0, 0.0],  # ties: P = 1/4
    [3.0, 5.0, 9.0, 12.0],  # far ahead
    [0.5, 1.0, -2.0, 8.0],  # skewed integrand, P moderate
    [-0.3, 0.2, 0.1, -0.4, 0.0, 0.3, -0.2, 0.4, 0.05],  # ten classes, nearly tied
    [-30.0, 2.0, 5.0],  # far behind: log P about -226
    [-26.6, -16.0, -10.0, -7.3, -34.2, 0.8, 4.1, 7.7, 18.4],  # from the digits export
    [-300.0, -100.0, 20.0],  # log P about -2.5e4
    [11.5, 15.0, 40.0],  # every factor 1 to 1e-8: log P = 0
]


@pytest.mark.parametrize("d", EQUAL_CASES)
def test_argmax_log_proba_equal_variances_matches_adaptive_quadrature(d):
    s2 = 0.3
    mean = np.concatenate([[0.0], -np.asarray(d) * np.sqrt(s2)])
    got = heads.argmax_log_proba(mean[None, None], s2, np.array([0]))[0, 0]
    assert abs(got - _reference_log_proba(mean, np.full(len(mean), np.sqrt(s2)), 0)) < 1e-5


# (means, standard deviations): every class is checked, including those far behind.
UNEQUAL_CASES = [
    ([0.0, 0.0, 0.0], [1.0, 2.0, 0.5]),
    ([0.0, 1.0, -1.0, 0.3], [0.3, 1.2, 0.1, 2.0]),  # sd ratios up to 20
    ([0.0, -40.0, 5.0], [1.0, 3.0, 0.25]),  # one class far behind, sharp competitor
    ([0.0, -800.0, 3.0, -20.0], [2.0, 1.0, 0.5, 4.0]),  # log P about -1e5
    ([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1], np.linspace(0.2, 0.6, 10)),
]


@pytest.mark.parametrize(("mean", "sd"), UNEQUAL_CASES)
def test_argmax_log_proba_unequal_variances_matches_adaptive_quadrature(mean, sd):
    mean, sd = np.asarray(mean, float), np.asarray(sd, float)
    got = heads.argmax_log_proba(mean, sd**2)
    ref = [_reference_log_proba(mean, sd, k) for k in range(len(mean))]
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-4)
    # the quadrature sums to one by itself; argmax_probabilities renormalizes exactly
    assert abs(np.exp(got).sum() - 1.0) < 1e-5
    p = heads.argmax_probabilities(mean, sd**2)
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-14)
    np.testing.assert_allclose(p, np.exp(got), rtol=1e-4, atol=0)  # 0 where e^got underflows


def test_argmax_log_proba_random_rows_sum_to_one_and_match_single_rows():
    """A batch (equal and unequal rows, far ahead and behind) equals the rows one by one."""
    rng = np.random.default_rng(3)
    mean = rng.normal(0, 1, (3, 4, 6)) * np.array([0.01, 1.0, 30.0])[:, None, None]
    var = np.exp(rng.uniform(-2, 2, mean.shape))
    var[0] = 0.5  # equal variances: the Laplace rule
    whole = heads.argmax_log_proba(mean, var)
    single = [[heads.argmax_log_proba(mean[s, i], var[s, i]) for i in range(4)] for s in range(3)]
    np.testing.assert_allclose(whole, single, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.exp(whole).sum(axis=-1), 1.0, atol=1e-5)
    index = rng.integers(0, 6, (3, 4))
    picked = heads.argmax_log_proba(mean, var, index)
    np.testing.assert_allclose(picked, np.take_along_axis(whole, index[..., None], -1)[..., 0])


def test_argmax_log_proba_exact_cases():
    """Two classes: P = Phi(d / sqrt(v_0 + v_1)); K tied equal classes: P = 1 / K."""
    rng = np.random.default_rng(4)
    mean, var = rng.normal(0, 3, (50, 2)), rng.uniform(0.1, 3, (50, 2))
    mean[0] = [-300.0, 0.0]  # far behind: log P about -4e4, still exact
    exact = log_ndtr((mean[:, 0] - mean[:, 1]) / np.sqrt(var.sum(axis=1)))
    both = heads.argmax_log_proba(mean, var)
    np.testing.assert_allclose(both[:, 0], exact, rtol=1e-13)
    np.testing.assert_allclose(np.exp(both).sum(axis=1), 1.0, rtol=1e-13)
    picked = heads.argmax_log_proba(mean, var, np.zeros(50, dtype=int))
    np.testing.assert_array_equal(picked, both[:, 0])
    scalar = heads.argmax_log_proba(mean, 0.7)  # a common variance broadcasts
    np.testing.assert_allclose(scalar[:, 1], log_ndtr((mean[:, 1] - mean[:, 0]) / np.sqrt(1.4)))
    for K in (2, 3, 10):
        np.testing.assert_allclose(
            heads.argmax_log_proba(np.zeros(K), 1.0), np.log(1 / K), atol=1e-5
        )


@pytest.mark.parametrize(
    ("spread", "var_range"),
    [(0.1, (0.01, 0.01)), (1.0, (0.05, 0.5)), (3.0, (0.01, 0.3)), (0.5, (0.001, 0.04))],
)
def test_many_classes_shared_grid_matches_adaptive_quadrature(spread, var_range):
    """Above MANY_CLASSES the shared grid gives every class; checked on the leading classes."""
    from bayeslayers.heads.argmax import MANY_CLASSES

    rng = np.random.default_rng(1)
    K = MANY_CLASSES + 8
    m, s = rng.normal(0, spread, K), np.sqrt(rng.uniform(*var_range, K))
    p = heads.argmax_probabilities(m, s**2)
    assert p.shape == (K,) and abs(p.sum() - 1) < 1e-12
    for k in np.argsort(-m)[:4]:
        others_m, others_s = np.delete(m, k), np.delete(s, k)

        def f(x, k=k, om=others_m, os=others_s):
            return stats.norm.pdf(x, m[k], s[k]) * np.prod(stats.norm.cdf((x - om) / os))

        exact, _ = integrate.quad(
            f, m[k] - 12 * s[k], m[k] + 12 * s[k], epsabs=1e-15, epsrel=1e-13, limit=500
        )
        assert abs(p[k] - exact) < 1e-9


def _many_class_onehot(n_classes: int, n_in: int = 5):
    """A fixed OneHot head state with ``n_classes`` outputs (no training)."""
    rng = np.random.default_rng(0)
    head = heads.OneHot()
    state = head.init(rng.normal(0, 0.3, (n_in + 1, n_classes)), 0.01, "diag", 0.05)
    X = np.c_[rng.normal(size=(1000, n_in)), np.ones(1000)]
    return head, state, X


def test_onehot_predict_proba_with_many_classes_has_bounded_memory():
    import tracemalloc

    head, state, X = _many_class_onehot(1000)
    tracemalloc.start()
    try:
        p = head.proba(state, X[:100])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert p.shape == (100, 1000)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    assert peak < 300 * 2**20  # the per-class quadrature: about 145 bytes x rows x K^2 (14 GiB)


@pytest.mark.slow
def test_onehot_predicts_1000_rows_of_1000_classes_in_seconds():
    import time

    head, state, X = _many_class_onehot(1000)
    start = time.perf_counter()
    p = head.proba(state, X)
    assert time.perf_counter() - start < 30  # shared 2-core runner; about 5 s alone
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.slow  # imports PyMC in a fresh process
def test_pytensor_blas_notice_is_one_line_once():
    """PyTensor's four-line 'could not link to a BLAS' warning becomes at most one line."""
    import subprocess
    import sys

    code = (
        "from bayeslayers.heads.advi import check_blas\n"
        "check_blas(); check_blas()\n"
        "import pymc, pytensor\n"
        "pytensor.config.blas__ldflags\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, check=True
    )
    assert "could not link to a BLAS" not in out.stderr
    assert out.stderr.count("PyTensor found no BLAS") <= 1
