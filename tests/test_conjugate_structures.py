"""The contract every registered covariance structure must meet (one record, these tests).

A new record in ``conjugate.STRUCTURES`` is picked up here: its prior equals ``init``, its update
is Bayesian linear regression where the record says it is exact, shards merged in natural
parameters equal one sequential update, ``inflate`` widens as documented, and the health of a
fresh prior is ok.
"""

import itertools

import numpy as np
import pytest

from bayeslayers import conjugate

NAMES = list(conjugate.STRUCTURES)
RTOL = 1e-9


def design(exact: str, n: int, D: int, m: int, rng) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows ``X`` and slopes ``G`` on which a structure with ``exact`` is exact."""
    if exact == "always":
        X = rng.normal(size=(n, D))
        G = rng.uniform(0.5, 2.0, (n, m)) * (rng.random((n, m)) > 0.3)
        return X, G
    if exact == "unit_slopes":
        return rng.normal(size=(n, D)), None
    if exact == "disjoint_rows":
        X = np.zeros((n, D))
        X[np.arange(n), rng.integers(0, D, n)] = rng.normal(size=n) * 3
        G = rng.uniform(0.5, 2.0, (n, m)) * (rng.random((n, m)) > 0.3)
        return X, G
    raise AssertionError(f"a structure declares an unknown exactness {exact!r}: add a design")


def closed_form(X, T, G, mean0, var0, noise):
    """Per-column BLR on the rows scaled by their slopes (PRML 3.53-3.54): means, covariances."""
    D, m = mean0.shape
    G = np.ones_like(T) if G is None else G
    means, covs = np.empty((D, m)), np.empty((m, D, D))
    for j in range(m):
        phi = G[:, j, None] * X
        precision = np.diag(1 / var0) + phi.T @ phi / noise
        covs[j] = np.linalg.inv(precision)
        means[:, j] = covs[j] @ (mean0[:, j] / var0 + phi.T @ T[:, j] / noise)
    return means, covs


@pytest.fixture
def problem():
    rng = np.random.default_rng(3)
    D, m = 4, 3
    return rng, rng.normal(size=(D, m)), np.linspace(0.5, 2.0, D)


def probe_variance(covs, P):
    return np.einsum("pd,mde,pe->pm", P, covs, P)


def test_every_record_is_complete_and_named_by_its_key():
    for name, record in conjugate.STRUCTURES.items():
        assert isinstance(record, conjugate.Structure)
        assert record.name == name
        assert all(callable(h) for h in record[2:])


@pytest.mark.parametrize("name", NAMES)
def test_prior_equals_init(name, problem):
    rng, mean0, var0 = problem
    post = conjugate.init(name, mean0, var0)
    record = conjugate.STRUCTURES[name]
    assert post.structure == name
    np.testing.assert_array_equal(post.mean, mean0)
    np.testing.assert_array_equal(post.cov, record.prior(var0, mean0.shape[1]))
    var = conjugate.variances(post)
    np.testing.assert_array_equal(np.unique(var), np.unique(var0))
    assert var.size in (len(var0), var0.size * mean0.shape[1])
    P = rng.normal(size=(5, len(var0)))
    np.testing.assert_allclose(
        conjugate.marginal_variance(post, P), np.repeat(((P**2) @ var0)[:, None], 3, axis=1)
    )
    delta = conjugate.natural_delta(post, post)
    assert not np.any(delta.precision) and not np.any(delta.shift) and delta.quad == 0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fraction", [1.0, 0.25])
def test_update_is_bayesian_linear_regression_where_exact(name, fraction, problem):
    rng, mean0, var0 = problem
    record = conjugate.STRUCTURES[name]
    X, G = design(record.exact, 30, *mean0.shape, rng)
    T = rng.normal(size=(30, mean0.shape[1]))
    post = conjugate.init(name, mean0, var0)
    for rows in np.array_split(np.arange(30), 4):
        post, _ = conjugate.update(
            post, X[rows], T[rows], None if G is None else G[rows], noise=0.4, fraction=fraction
        )
    means, covs = closed_form(X, T, G, mean0, var0, 0.4 / fraction)
    np.testing.assert_allclose(post.mean, means, rtol=RTOL, atol=1e-12)
    P = rng.normal(size=(6, len(var0)))
    np.testing.assert_allclose(
        conjugate.marginal_variance(post, P), probe_variance(covs, P), rtol=RTOL, atol=1e-12
    )


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("split", [[30], [10, 20], [3, 12, 1, 14]])
def test_merge_of_shards_equals_one_sequential_update(name, split, problem):
    rng, mean0, var0 = problem
    record = conjugate.STRUCTURES[name]
    X, G = design(record.exact, 30, *mean0.shape, rng)
    G = np.ones((30, mean0.shape[1])) if G is None else G
    T = rng.normal(size=(30, mean0.shape[1]))
    prior = conjugate.init(name, mean0, var0)
    sequential, _ = conjugate.update(prior, X, T, G, noise=0.4)
    edges = np.cumsum([0, *split])
    shards = [
        conjugate.update(prior, X[a:b], T[a:b], G[a:b], noise=0.4)[0]
        for a, b in itertools.pairwise(edges)
    ]
    merged = conjugate.merge(prior, shards)
    np.testing.assert_allclose(merged.mean, sequential.mean, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(merged.cov, sequential.cov, rtol=RTOL, atol=1e-12)
    # Deltas computed apart (as workers do) and given in any order: the same posterior.
    deltas = [conjugate.natural_delta(prior, s) for s in shards][::-1]
    again = conjugate.merge(prior, deltas)
    np.testing.assert_allclose(again.mean, merged.mean, rtol=1e-12, atol=1e-14)
    assert conjugate.covariance_health(merged).cholesky
    assert conjugate.merge(prior, []).cov.shape == prior.cov.shape


@pytest.mark.parametrize("name", NAMES)
def test_merge_refuses_a_non_positive_definite_result_and_mismatched_shards(name, problem):
    _, mean0, var0 = problem
    prior = conjugate.init(name, mean0, var0)
    d = conjugate.natural_delta(prior, prior)
    minus_two_priors = d._replace(
        precision=d.precision
        - 2 * conjugate.natural_delta(conjugate.init(name, mean0, 1e6 * var0), prior).precision
    )
    with pytest.raises(np.linalg.LinAlgError, match="not positive"):
        conjugate.merge(prior, [minus_two_priors])
    other = conjugate.init(name, mean0[:, :2], var0)
    with pytest.raises(ValueError, match="shape"):
        conjugate.merge(prior, [other])
    with pytest.raises(TypeError, match="NaturalDelta or WeightPosterior"):
        conjugate.merge(prior, [np.zeros(3)])
    wrong = next(s for s in NAMES if s != name)
    with pytest.raises(ValueError, match="structure"):
        conjugate.natural_delta(prior, conjugate.init(wrong, mean0, var0))


@pytest.mark.parametrize("name", NAMES)
def test_inflate_divides_by_the_forgetting_factor_and_adds_process_noise(name, problem):
    rng, mean0, var0 = problem
    X, G = design(conjugate.STRUCTURES[name].exact, 20, *mean0.shape, rng)
    post, _ = conjugate.update(
        conjugate.init(name, mean0, var0), X, rng.normal(size=(20, 3)), G, noise=0.5
    )
    same = conjugate.inflate(post)
    np.testing.assert_array_equal(same.cov, post.cov)
    q = np.array([0.1, 0.0, 0.2, 0.3])
    wide = conjugate.inflate(post, forgetting=0.8, process_noise=q)
    np.testing.assert_array_equal(wide.mean, post.mean)
    P = rng.normal(size=(5, 4))
    np.testing.assert_allclose(
        conjugate.marginal_variance(wide, P),
        conjugate.marginal_variance(post, P) / 0.8 + ((P**2) @ q)[:, None],
        rtol=1e-12,
    )
    # Forgetting alone scales the precision learned so far (prior included) by lambda.
    before = conjugate.natural_delta(conjugate.init(name, mean0, 1e300 * var0), post)
    after = conjugate.natural_delta(
        conjugate.init(name, mean0, 1e300 * var0), conjugate.inflate(post, forgetting=0.5)
    )
    np.testing.assert_allclose(after.precision, 0.5 * before.precision, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="forgetting"):
        conjugate.inflate(post, forgetting=0.0)
    with pytest.raises(ValueError, match="process_noise"):
        conjugate.inflate(post, process_noise=-1.0)
    with pytest.raises(ValueError, match="process_noise"):
        conjugate.inflate(post, process_noise=np.ones(3))


@pytest.mark.parametrize("name", NAMES)
def test_health_of_a_fresh_prior_is_ok(name, problem):
    _, mean0, var0 = problem
    health = conjugate.covariance_health(conjugate.init(name, mean0, var0))
    assert health.finite and health.symmetric and health.cholesky
    assert health.min_eigenvalue == pytest.approx(var0.min())


@pytest.mark.parametrize("name", NAMES)
def test_draws_have_the_posterior_moments(name, problem):
    rng, mean0, var0 = problem
    X, G = design(conjugate.STRUCTURES[name].exact, 10, *mean0.shape, rng)
    post, _ = conjugate.update(
        conjugate.init(name, mean0, var0), X, rng.normal(size=(10, 3)), G, noise=0.5
    )
    W = conjugate.sample(post, 40_000, np.random.default_rng(0))
    assert W.shape == (40_000, *mean0.shape)
    np.testing.assert_allclose(W.mean(axis=0), post.mean, atol=0.03)
    p = np.array([1.0, -1.0, 0.5, 2.0])
    np.testing.assert_allclose(
        (W.transpose(0, 2, 1) @ p).var(axis=0),
        conjugate.marginal_variance(post, p[None])[0],
        rtol=0.05,
    )


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("scale", [1e6, 1e10, 1e20, 1e60, 1e150])
def test_an_outlier_row_never_leaves_a_covariance_without_cholesky_factor(name, dtype, scale):
    rng = np.random.default_rng(1)
    D, m = 6, 3
    prior = conjugate.init(name, np.zeros((D, m), dtype), 1.0)
    post, _ = conjugate.update(prior, rng.normal(size=(20, D)), rng.normal(size=(20, m)), noise=1)
    X = rng.normal(size=(4, D))
    X[1] *= min(scale, float(np.sqrt(np.finfo(dtype).max)) / 10)
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            new, _ = conjugate.update(post, X.astype(dtype), rng.normal(size=(4, m)), noise=1)
        except np.linalg.LinAlgError as error:
            assert "not positive definite" in str(error)
            return
    health = conjugate.covariance_health(new)
    assert not health.finite or health.cholesky


def dense_covariances(post):
    """Each column's covariance ``(m, D, D)`` from ``marginal_variance`` alone (polarization)."""
    D = post.mean.shape[0]
    E = np.eye(D)
    v = conjugate.marginal_variance(post, (E[:, None] + E[None]).reshape(-1, D))
    v = v.reshape(D, D, -1)  # v[a, b] = (e_a + e_b)^T Sigma (e_a + e_b)
    diag = np.einsum("aam->am", v) / 4
    return ((v - diag[:, None] - diag[None]) / 2).transpose(2, 0, 1)


@pytest.mark.parametrize("name", NAMES)
def test_eig_and_from_eig_rebase_the_posterior_on_a_shifted_precision(name, problem):
    """``eig``: each column's covariance spectrum and its mean in that eigenbasis;
    ``from_eig`` inverts it, and with the eigenvalues of :math:`\\Lambda_j + \\delta I` (and
    :math:`\\Lambda_j \\mu_j` kept) gives that posterior, exactly symmetric (the evidence
    update's re-basing on a new prior precision)."""
    rng, mean0, var0 = problem
    record = conjugate.STRUCTURES[name]
    X, G = design(record.exact, 20, *mean0.shape, rng)
    post, _ = conjugate.update(
        conjugate.init(name, mean0, var0), X, rng.normal(size=(20, 3)), G, noise=0.4
    )
    values, coef, basis = record.eig(post)
    covs = dense_covariances(post)
    assert coef.shape == (3, 4) and values.shape[1] == 4 and 3 % len(values) == 0
    np.testing.assert_allclose(
        np.sort(np.broadcast_to(values, coef.shape)), np.linalg.eigvalsh(covs), rtol=1e-9
    )
    same = record.from_eig(post, basis, values, coef)
    np.testing.assert_allclose(same.mean, post.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dense_covariances(same), covs, rtol=1e-9, atol=1e-12)
    delta = 0.7
    shifted = 1.0 / (1.0 / values + delta)
    new = record.from_eig(post, basis, shifted, coef / values * shifted)
    assert new.structure == name and new.cov.shape == post.cov.shape
    for j, cov in enumerate(covs):
        precision = np.linalg.inv(cov) + delta * np.eye(4)
        eta = np.linalg.solve(cov, post.mean[:, j])
        np.testing.assert_allclose(new.mean[:, j], np.linalg.solve(precision, eta), rtol=1e-9)
        np.testing.assert_allclose(
            dense_covariances(new)[j], np.linalg.inv(precision), rtol=1e-9, atol=1e-12
        )
    health = conjugate.covariance_health(new, symmetry_tol=0.0)
    assert health.symmetric and health.cholesky
