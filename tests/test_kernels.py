"""The compiled kernels agree with plain NumPy linear algebra."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeslayers import _kernels


def masked_problem(seed: int, n: int, m: int, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2 * n))
    K = (X @ X.T).astype(dtype)
    G = ((rng.uniform(size=(n, m)) > 0.4) * rng.uniform(0.2, 1.5, (n, m))).astype(dtype)
    R = np.where(G.T != 0, rng.normal(size=(m, n)), 0.0).astype(dtype)
    return K, G, R


def solve_reference(K, G, R, s2):
    """Each unit's full ``n x n`` system, inactive rows included (they give zero)."""
    eye = np.eye(len(K))
    pairs = zip(G.T, R, strict=True)
    return np.stack([np.linalg.solve(np.outer(g, g) * K + s2 * eye, r) for g, r in pairs])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 12), m=st.integers(1, 5))
def test_masked_solves_match_dense_solves(seed, n, m):
    K, G, R = masked_problem(seed, n, m)
    V = _kernels.masked_solves(K, G, R, 0.3)
    np.testing.assert_allclose(V, solve_reference(K, G, R, 0.3), rtol=1e-9, atol=1e-12)
    assert np.all(V[G.T == 0] == 0.0)


def test_masked_solves_accept_float32():
    K, G, R = masked_problem(1, 8, 4, np.float32)
    V = _kernels.masked_solves(K, G, R, 0.3)
    np.testing.assert_allclose(V, solve_reference(*(a.astype(float) for a in (K, G, R)), 0.3), 1e-4)


def test_masked_solves_reject_an_indefinite_system():
    K, G, R = masked_problem(2, 6, 3)
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        _kernels.masked_solves(-K, np.ones_like(G), R, 0.3)
    K[0, 0] = np.nan
    with pytest.raises(np.linalg.LinAlgError):
        _kernels.masked_solves(K, np.ones_like(G), R, 0.3)


def test_diag_rows_skip_zero_inputs_exactly():
    """An input that is zero in every row leaves its weights' means and variances untouched."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(5, 4))
    X[:, 1] = 0.0
    mean, var = rng.normal(size=(4, 3)), rng.uniform(0.5, 2.0, (4, 3))
    new_mean, new_var = mean.copy(), var.copy()
    _kernels.diag_rows(new_mean, new_var, X, rng.normal(size=(5, 3)), np.ones((5, 3)), 0.2)
    np.testing.assert_array_equal(new_mean[1], mean[1])
    np.testing.assert_array_equal(new_var[1], var[1])
    assert np.all(new_var[[0, 2, 3]] < var[[0, 2, 3]])


def test_unit_rows_keep_covariances_exactly_symmetric_and_reject_indefinite_ones():
    rng = np.random.default_rng(5)
    X, T = rng.normal(size=(7, 4)), rng.normal(size=(7, 2))
    A = rng.normal(size=(2, 4, 4))
    prior = A @ np.swapaxes(A, -1, -2) + np.eye(4)
    mean, cov = np.zeros((4, 2)), prior.copy()
    _kernels.unit_rows(mean, cov, X, T, np.ones((7, 2)), 0.1)
    np.testing.assert_array_equal(cov, np.swapaxes(cov, -1, -2))
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        _kernels.unit_rows(mean, -prior, X, T, np.ones((7, 2)), 0.1)


def test_shared_rows_keep_the_covariance_exactly_symmetric_and_reject_an_indefinite_one():
    rng = np.random.default_rng(6)
    X, T = rng.normal(size=(7, 4)), rng.normal(size=(7, 3))
    A = rng.normal(size=(4, 4))
    prior = A @ A.T + np.eye(4)
    mean, cov = np.zeros((4, 3)), prior.copy()
    _kernels.shared_rows(mean, cov, X, T, 0.1)
    np.testing.assert_array_equal(cov, cov.T)
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        _kernels.shared_rows(mean, -prior, X, T, 0.1)


def test_the_scalar_helpers_match_scipy():
    """log Phi and the inverse Mills ratio, on both sides of the switch to the continued
    fraction at -5 and far into the tail (where scipy's own log_ndtr is asymptotic too)."""
    from scipy.special import erfcx, log_ndtr

    z = np.concatenate([np.linspace(-38, 9, 4701), -np.logspace(0.7, 4, 100)])
    _kernels.equal_orthant(np.zeros((1, 1)), np.zeros(1), np.zeros(1), 6.0)  # compiles helpers
    got = np.array([_kernels._log_ndtr(t) for t in z])
    np.testing.assert_allclose(got, log_ndtr(z), rtol=1e-13, atol=1e-15)
    mills = np.array([_kernels._mills(t) for t in z])
    # phi / Phi = sqrt(2 / pi) / erfcx(-t / sqrt 2), without the cancellation of exp(h - log Phi)
    np.testing.assert_allclose(mills, np.sqrt(2 / np.pi) / erfcx(-z / np.sqrt(2)), rtol=1e-12)


def test_equal_orthant_agrees_with_the_two_sided_rule_at_unit_slopes():
    """The compiled Laplace rule against the independent Gauss-Legendre rule of the unequal-
    variance path given slopes of exactly 1, on rows near, behind and far behind; far factors
    dropped, NaN kept, a row with no factor left is log 1."""
    from bayeslayers.heads import argmax

    rng = np.random.default_rng(3)
    b = np.concatenate(
        [rng.normal(0, 1, (60, 6)), rng.normal(-4, 3, (60, 6)), rng.normal(-300, 50, (10, 6))]
    )
    b[::7, 2] = 40.0  # a far factor
    got = _kernels.equal_orthant(b, argmax._GH_X, argmax._GH_LOGW, argmax._FAR)
    reference = argmax._log_orthant(b, np.ones_like(b))
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5)
    special = np.array([[np.nan, 0.0], [20.0, 30.0]])
    out = _kernels.equal_orthant(special, argmax._GH_X, argmax._GH_LOGW, argmax._FAR)
    assert np.isnan(out[0]) and out[1] == 0.0


def test_probit_adf_row_past_the_bound_takes_no_step():
    """A column past the floating-point bound: the score, the arrays given (unchanged) and
    ``False``, so that the caller takes the factorized batch path instead."""
    rng = np.random.default_rng(3)
    mean = rng.normal(size=(4, 2))
    A = rng.normal(size=(2, 4, 4))
    cov = A @ np.swapaxes(A, 1, 2) + np.eye(4)
    kept = mean.copy(), cov.copy()
    x, Y = rng.normal(size=4), np.array([1.0, 0.0])
    score, new_mean, new_cov, ok = _kernels.probit_adf_row(mean, cov, x, Y, 1.0, 0.0)
    assert not ok and new_mean is mean and new_cov is cov and np.isfinite(score)
    np.testing.assert_array_equal(mean, kept[0])
    np.testing.assert_array_equal(cov, kept[1])
    _, stepped_mean, stepped_cov, ok = _kernels.probit_adf_row(mean, cov, x, Y, 1.0, np.inf)
    assert ok and not np.array_equal(stepped_mean, mean)
    np.testing.assert_array_equal(stepped_cov, np.swapaxes(stepped_cov, 1, 2))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_healthy_is_every_mean_finite_and_every_variance_positive(dtype):
    """As NumPy says it, on arrays and on strided diagonal views of covariance stacks."""
    rng = np.random.default_rng(4)
    mean = rng.normal(size=(5, 3)).astype(dtype)
    cov = np.stack([np.eye(5, dtype=dtype)] * 3)
    views = (cov.diagonal(0, -2, -1), cov[0].diagonal(), np.ones((5, 3), dtype=dtype))
    assert not views[0].flags.c_contiguous and not views[1].flags.c_contiguous
    for var in views:
        assert _kernels.healthy(mean, var)
    for bad in (np.nan, np.inf, -np.inf):
        broken = mean.copy()
        broken[2, 1] = bad
        assert not _kernels.healthy(broken, views[0])
    for bad in (np.nan, 0.0, -1e-30):
        broken = cov.copy()
        broken[2, 4, 4] = bad
        var = broken.diagonal(0, -2, -1)
        expected = bool(np.all(var > 0))
        assert _kernels.healthy(mean, var) is expected is False
    assert _kernels.healthy(mean, np.full(3, np.inf, dtype=dtype))  # as var > 0 says


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unit_quadratic_matches_the_full_quadratic_form(dtype):
    rng = np.random.default_rng(6)
    A = rng.normal(size=(7, 5, 5))
    cov = (A @ np.swapaxes(A, 1, 2) + np.eye(5)).astype(dtype)
    x = rng.normal(size=5).astype(dtype)
    x[2] = 0.0  # a zero input is skipped exactly
    expected = np.einsum("d,mde,e->m", x.astype(np.float64), cov.astype(np.float64), x)
    got = _kernels.unit_quadratic(cov, x)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, rtol=1e-12 if dtype == np.float64 else 1e-5)
