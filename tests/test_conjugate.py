"""The conjugate core against closed-form Bayesian linear regression."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeslayers import conjugate

RTOL = 1e-9


def closed_form(X, Y, prior_mean, prior_var, noise):
    """Batch posterior of Bayesian linear regression (PRML 3.53-3.54), column by column."""
    D = X.shape[1]
    precision = np.eye(D) / prior_var + X.T @ X / noise
    cov = np.linalg.inv(precision)
    mean = cov @ (prior_mean / prior_var + X.T @ Y / noise)
    return mean, cov


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    n, D, m = 40, 5, 3
    X = np.column_stack([rng.normal(size=(n, D - 1)), np.ones(n)])
    W = rng.normal(size=(D, m))
    Y = X @ W + 0.3 * rng.normal(size=(n, m))
    prior_mean = rng.normal(size=(D, m))
    return X, Y, prior_mean


def run(structure, X, Y, prior_mean, batches, noise=0.5, fraction=1.0, prior_var=2.0):
    post = conjugate.init(structure, prior_mean, prior_var)
    for rows in batches:
        post, _ = conjugate.update(post, X[rows], Y[rows], noise=noise, fraction=fraction)
    return post


def splits(n, sizes):
    edges = np.cumsum([0, *sizes])
    assert edges[-1] == n
    return [np.arange(a, b) for a, b in itertools.pairwise(edges)]


@pytest.mark.parametrize("structure", ["unit", "shared"])
@pytest.mark.parametrize(
    "batching", ["sequential", "one_batch", "permuted", "uneven_split", "permuted_split"]
)
def test_matches_closed_form_whatever_the_order_or_split(problem, structure, batching):
    X, Y, m0 = problem
    n = len(X)
    perm = np.random.default_rng(1).permutation(n)
    batches = {
        "sequential": [[i] for i in range(n)],
        "one_batch": [np.arange(n)],
        "permuted": [[i] for i in perm],
        "uneven_split": splits(n, [1, 7, 13, 2, 17]),
        "permuted_split": [perm[r] for r in splits(n, [9, 9, 22])],
    }[batching]
    post = run(structure, X, Y, m0, batches)
    mean, cov = closed_form(X, Y, m0, 2.0, 0.5)
    np.testing.assert_allclose(post.mean, mean, rtol=RTOL, atol=1e-12)
    covs = post.cov if structure == "unit" else post.cov[None]
    for c in covs:
        np.testing.assert_allclose(c, cov, rtol=RTOL, atol=1e-12)


def test_shared_equals_unit_when_every_unit_takes_part(problem):
    X, Y, m0 = problem
    G = np.ones_like(Y)  # every unit takes part with slope one
    unit = conjugate.update(conjugate.init("unit", m0, 1.0), X, Y, G, noise=0.3)[0]
    shared = conjugate.update(conjugate.init("shared", m0, 1.0), X, Y, G, noise=0.3)[0]
    np.testing.assert_allclose(unit.mean, shared.mean, rtol=RTOL)
    np.testing.assert_allclose(unit.cov[0], shared.cov, rtol=RTOL)


def test_unit_with_slopes_is_regression_on_scaled_rows(problem):
    """Column j with slopes g regresses t on g * x: the design of DESIGN 1.1."""
    X, Y, m0 = problem
    rng = np.random.default_rng(3)
    G = rng.uniform(0.2, 1.5, Y.shape) * (rng.uniform(size=Y.shape) > 0.3)
    post = conjugate.update(conjugate.init("unit", m0, 2.0), X, Y, G, noise=0.5)[0]
    for j in range(Y.shape[1]):
        rows = G[:, j] != 0
        mean, cov = closed_form(G[rows, j, None] * X[rows], Y[rows, j], m0[:, j], 2.0, 0.5)
        np.testing.assert_allclose(post.mean[:, j], mean, rtol=RTOL)
        np.testing.assert_allclose(post.cov[j], cov, rtol=RTOL)


def test_inactive_units_are_left_alone(problem):
    X, Y, m0 = problem
    G = np.ones_like(Y)
    G[:, 1] = 0.0
    for structure in ("unit", "diag"):
        prior = conjugate.init(structure, m0, 1.0)
        post = conjugate.update(prior, X, Y, G, noise=0.5)[0]
        np.testing.assert_array_equal(post.mean[:, 1], prior.mean[:, 1])
        cov_col = post.cov[1] if structure == "unit" else post.cov[:, 1]
        prior_col = prior.cov[1] if structure == "unit" else prior.cov[:, 1]
        np.testing.assert_array_equal(cov_col, prior_col)
    shared = conjugate.update(conjugate.init("shared", m0, 1.0), X, Y, G, noise=0.5)[0]
    np.testing.assert_array_equal(shared.mean[:, 1], m0[:, 1])


@pytest.mark.parametrize("structure", conjugate.STRUCTURES)
def test_tempered_updates_add_up_to_one_full_update(problem, structure):
    X, Y, m0 = problem
    k = 4
    once = run(structure, X, Y, m0, [np.arange(len(X))])
    tempered = run(structure, X, Y, m0, [np.arange(len(X))] * k, fraction=1 / k)
    if structure == "diag":  # ADF projection after each step: only approximately equal
        np.testing.assert_allclose(tempered.mean, once.mean, rtol=0.2, atol=0.05)
        return
    np.testing.assert_allclose(tempered.mean, once.mean, rtol=RTOL)
    np.testing.assert_allclose(tempered.cov, once.cov, rtol=RTOL, atol=1e-13)


@pytest.mark.parametrize("structure", conjugate.STRUCTURES)
def test_unfitted_posterior_equals_prior(problem, structure):
    X, Y, m0 = problem
    prior = conjugate.init(structure, m0, 3.0)
    post, info = conjugate.update(prior, X, Y, np.zeros_like(Y), noise=1.0)
    assert post is prior and info.n_obs == 0
    draws = conjugate.sample(prior, 4000, np.random.default_rng(0))
    np.testing.assert_allclose(draws.mean(0), m0, atol=0.2)
    np.testing.assert_allclose(draws.var(0), 3.0, rtol=0.1)


def test_rank_one_update_equals_direct_inversion(problem):
    """Sherman-Morrison (the covariance form) == inverting the updated precision."""
    X, Y, m0 = problem
    prior_cov = np.diag([1.0, 2.0, 0.5, 3.0, 1.5])
    post = conjugate.WeightPosterior("shared", m0, prior_cov)
    x, y = X[:1], Y[:1]
    new = conjugate.update(post, x, y, noise=0.7)[0]
    precision = np.linalg.inv(prior_cov) + x.T @ x / 0.7
    direct_cov = np.linalg.inv(precision)
    direct_mean = direct_cov @ (np.linalg.inv(prior_cov) @ m0 + x.T @ y / 0.7)
    np.testing.assert_allclose(new.cov, direct_cov, rtol=RTOL)
    np.testing.assert_allclose(new.mean, direct_mean, rtol=RTOL)


def test_diag_single_row_matches_exact_marginals(problem):
    """For one row the diagonal update keeps the exact mean and marginal variances."""
    X, Y, m0 = problem
    new = conjugate.update(conjugate.init("diag", m0, 2.0), X[:1], Y[:1], noise=0.5)[0]
    mean, cov = closed_form(X[:1], Y[:1], m0, 2.0, 0.5)
    np.testing.assert_allclose(new.mean, mean, rtol=RTOL)
    np.testing.assert_allclose(new.cov, np.repeat(np.diag(cov)[:, None], 3, 1), rtol=RTOL)


@pytest.mark.parametrize("structure", conjugate.STRUCTURES)
def test_covariances_stay_symmetric_positive_definite(structure):
    rng = np.random.default_rng(4)
    n, D, m = 2000, 6, 4
    X = np.column_stack([rng.normal(size=(n, D - 1)) * 10, np.ones(n)])
    Y = rng.normal(size=(n, m))
    G = (rng.uniform(size=(n, m)) > 0.5).astype(float)
    post = conjugate.init(structure, np.zeros((D, m)), 100.0)
    for i in range(0, n, 7):
        post, _ = conjugate.update(post, X[i : i + 7], Y[i : i + 7], G[i : i + 7], noise=1e-3)
    covs = {"unit": post.cov, "shared": post.cov[None], "diag": None}[structure]
    if covs is None:
        assert np.all(post.cov > 0)
        return
    np.testing.assert_array_equal(covs, np.swapaxes(covs, -1, -2))
    assert np.all(np.linalg.eigvalsh(covs) > 0)


def test_update_info_gives_residual_quadratic_form(problem):
    X, Y, m0 = problem
    post = conjugate.init("unit", m0, 2.0)
    _, info = conjugate.update(post, X[:5], Y[:5], noise=0.5, fraction=0.5)
    S = X[:5] @ (2.0 * np.eye(5)) @ X[:5].T / 0.5 + np.eye(5) / 0.5
    R = Y[:5] - X[:5] @ m0
    assert info.n_obs == pytest.approx(0.5 * 15)
    assert info.quad == pytest.approx(sum(r @ np.linalg.solve(S, r) for r in R.T), rel=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"noise": 0.0}, ValueError, "noise"),
        ({"noise": 1.0, "fraction": 0.0}, ValueError, "fraction"),
        ({"noise": 1.0, "fraction": 1.5}, ValueError, "fraction"),
        ({"noise": 1.0, "X": np.ones((3, 4))}, ValueError, "X must have shape"),
        ({"noise": 1.0, "T": np.ones((2, 3))}, ValueError, "T must have shape"),
        ({"noise": 1.0, "G": np.ones((3, 2))}, ValueError, "G must have shape"),
    ],
)
def test_bad_update_arguments(kwargs, error, match):
    post = conjugate.init("unit", np.zeros((5, 3)), 1.0)
    args = {"X": np.ones((3, 5)), "T": np.ones((3, 3))} | kwargs
    with pytest.raises(error, match=match):
        conjugate.update(post, args.pop("X"), args.pop("T"), **args)


def test_bad_init_arguments():
    with pytest.raises(ValueError, match="structure must be one of"):
        conjugate.init("full", np.zeros((3, 2)), 1.0)
    with pytest.raises(ValueError, match="prior_variance"):
        conjugate.init("unit", np.zeros((3, 2)), -1.0)
    with pytest.raises(ValueError, match="2-D"):
        conjugate.init("unit", np.zeros(3), 1.0)


@settings(max_examples=40, deadline=None)
@given(
    structure=st.sampled_from(list(conjugate.STRUCTURES)),
    n=st.integers(1, 6),
    D=st.integers(1, 6),
    m=st.integers(1, 4),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_shapes_and_dtypes_are_preserved(structure, n, D, m, dtype, seed):
    rng = np.random.default_rng(seed)
    prior = conjugate.init(structure, rng.normal(size=(D, m)).astype(dtype), 1.0)
    X = rng.normal(size=(n, D)).astype(dtype)
    T = rng.normal(size=(n, m)).astype(dtype)
    G = (rng.uniform(size=(n, m)) > 0.3).astype(dtype)
    post, info = conjugate.update(prior, X, T, G, noise=0.5, fraction=0.5)
    assert post.mean.shape == (D, m) and post.mean.dtype == dtype
    assert post.cov.shape == prior.cov.shape and post.cov.dtype == dtype
    assert np.all(np.isfinite(post.mean)) and np.all(np.isfinite(post.cov))
    assert info.quad >= 0
    var = conjugate.marginal_variance(post, X)
    assert var.shape == (n, m) and np.all(var >= 0)
    draws = conjugate.sample(post, 3, rng)
    assert draws.shape == (3, D, m) and draws.dtype == dtype
