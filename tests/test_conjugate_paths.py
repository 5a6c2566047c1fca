"""The fast paths of the conjugate core agree with each other and with closed-form updates.

``"unit"`` has a compiled row-by-row path (small layers) and a per-unit BLAS loop (large
layers); ``"shared"`` a compiled row-by-row path where every column takes part in every row
with slope one (a linear head) and a batch path otherwise; ``"diag"`` runs a compiled
row-by-row filter that skips zero inputs; ``overwrite=True`` updates in place. Each must give
the same posterior as the plain computation, for ReLU-like slopes (units active on some rows).
"""

import numpy as np
import pytest

from bayeslayers import Network, conjugate, layers

RTOL = 1e-10


def closed_form_unit(X, T, G, prior_mean, prior_var, noise):
    """Per column: Bayesian linear regression of t on g * x over the rows where g != 0."""
    D, m = prior_mean.shape
    means, covs = np.empty((D, m)), np.empty((m, D, D))
    for j in range(m):
        rows = G[:, j] != 0
        Phi = G[rows, j, None] * X[rows]
        precision = np.eye(D) / prior_var + Phi.T @ Phi / noise
        covs[j] = np.linalg.inv(precision)
        means[:, j] = covs[j] @ (prior_mean[:, j] / prior_var + Phi.T @ T[rows, j] / noise)
    return means, covs


def diag_reference(post, X, T, G, noise):
    """Per row and column: the dense Kalman step under the diagonal prior, then its diagonal."""
    mean, var = post.mean.copy(), post.cov.copy()
    for i in range(len(X)):
        for j in np.flatnonzero(G[i]):
            phi = G[i, j] * X[i]
            Sigma = np.diag(var[:, j])
            s = phi @ Sigma @ phi + noise
            gain = Sigma @ phi / s
            mean[:, j] += gain * (T[i, j] - phi @ mean[:, j])
            var[:, j] = np.diag(Sigma - np.outer(gain, phi @ Sigma))
    return mean, var


@pytest.fixture
def relu_batch():
    rng = np.random.default_rng(7)
    n, D, m = 23, 9, 6
    X = np.column_stack([rng.normal(size=(n, D - 1)), np.ones(n)])
    T = rng.normal(size=(n, m))
    G = (rng.uniform(size=(n, m)) > 0.5) * rng.uniform(0.5, 1.5, (n, m))
    G[:, 2] = 0.0  # one unit never takes part
    return X, T, G, rng.normal(size=(D, m))


@pytest.mark.parametrize("kernel_max_d", [0, 256], ids=["per-unit-loop", "compiled"])
@pytest.mark.parametrize("batch", [1, 4, 23])
def test_unit_paths_match_closed_form(relu_batch, monkeypatch, kernel_max_d, batch):
    X, T, G, m0 = relu_batch
    monkeypatch.setattr(conjugate, "_KERNEL_MAX_D", kernel_max_d)
    post = conjugate.init("unit", m0, 2.0)
    for start in range(0, len(X), batch):
        rows = slice(start, start + batch)
        post, _ = conjugate.update(post, X[rows], T[rows], G[rows], noise=0.5, overwrite=True)
    mean, covs = closed_form_unit(X, T, G, m0, 2.0, 0.5)
    np.testing.assert_allclose(post.mean, mean, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(post.cov, covs, rtol=RTOL, atol=1e-12)
    np.testing.assert_array_equal(post.cov, np.swapaxes(post.cov, -1, -2))


@pytest.mark.parametrize("kernel_max_d", [0, 256], ids=["batch", "compiled"])
@pytest.mark.parametrize("batch", [1, 4, 23])
def test_shared_paths_match_closed_form_for_a_linear_head(
    relu_batch, monkeypatch, kernel_max_d, batch
):
    X, T, _, m0 = relu_batch
    monkeypatch.setattr(conjugate, "_KERNEL_MAX_D", kernel_max_d)
    G = np.ones_like(T)  # a head: every column, every row, slope one
    post = conjugate.init("shared", m0, 2.0)
    quad = 0.0
    for start in range(0, len(X), batch):
        rows = slice(start, start + batch)
        post, info = conjugate.update(post, X[rows], T[rows], G[rows], noise=0.5, overwrite=True)
        quad += info.quad
    mean, covs = closed_form_unit(X, T, G, m0, 2.0, 0.5)
    np.testing.assert_allclose(post.mean, mean, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(post.cov, covs[0], rtol=RTOL, atol=1e-12)
    np.testing.assert_array_equal(post.cov, post.cov.T)
    # UpdateInfo.quad (noise times the sum of r^2 / s, each residual before its own row)
    # does not depend on the batching
    np.testing.assert_allclose(quad, 0.5 * sum_of_rows(X, T, m0), rtol=1e-9)


def sum_of_rows(X, T, m0, prior_var=2.0, noise=0.5):
    """Sum over rows and columns of r^2 / s for sequential exact updates (the reference)."""
    D = X.shape[1]
    mean, cov, quad = m0.copy(), prior_var * np.eye(D), 0.0
    for x, t in zip(X, T, strict=True):
        p = cov @ x
        s = noise + x @ p
        r = t - x @ mean
        quad += float(r @ r) / s
        mean += np.outer(p, r) / s
        cov -= np.outer(p, p) / s
    return quad


@pytest.mark.parametrize("batch", [1, 5, 23])
def test_diag_matches_reference_for_any_batch_split(relu_batch, batch):
    X, T, G, m0 = relu_batch
    X = X.copy()
    X[::3, 1:4] = 0.0  # zero inputs take the kernel's skip path
    prior = conjugate.init("diag", m0, np.linspace(0.5, 2.0, X.shape[1]))
    post = prior
    for start in range(0, len(X), batch):
        rows = slice(start, start + batch)
        post, _ = conjugate.update(post, X[rows], T[rows], G[rows], noise=0.5)
    mean, var = diag_reference(prior, X, T, G, 0.5)
    np.testing.assert_allclose(post.mean, mean, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(post.cov, var, rtol=RTOL, atol=1e-12)
    np.testing.assert_array_equal(post.mean[:, 2], m0[:, 2])  # unit 2 never takes part
    assert np.all(post.cov > 0)


def test_diag_quad_sums_residuals_before_each_row():
    """``quad`` sums the one-step-ahead :math:`r^2 / \\tilde s` (:math:`\\tilde s = s / \\sigma^2`).

    With one weight the diagonal filter is exact, and the prequential sum equals the batch
    :math:`\\sigma^2 r^\\top S^{-1} r` of the exact model (the chain rule of the evidence).
    """
    rng = np.random.default_rng(3)
    x, t = rng.normal(size=(6, 1)), rng.normal(size=(6, 1))
    post = conjugate.init("diag", np.zeros((1, 1)), 2.0)
    _, info = conjugate.update(post, x, t, noise=0.5)
    S = 2.0 * x @ x.T + 0.5 * np.eye(6)
    np.testing.assert_allclose(info.quad, 0.5 * t[:, 0] @ np.linalg.solve(S, t[:, 0]), rtol=RTOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_diag_keeps_the_dtype(relu_batch, dtype):
    X, T, G, m0 = relu_batch
    prior = conjugate.init("diag", m0.astype(dtype), 1.0)
    post, _ = conjugate.update(prior, X, T, G, noise=0.5)
    assert post.mean.dtype == post.cov.dtype == dtype
    mean, var = diag_reference(conjugate.init("diag", m0, 1.0), X, T, G, 0.5)
    np.testing.assert_allclose(post.mean, mean, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(post.cov, var, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("structure", conjugate.STRUCTURES)
def test_overwrite_reuses_arrays_and_gives_the_same_posterior(relu_batch, structure):
    X, T, G, m0 = relu_batch
    prior = conjugate.init(structure, m0, 1.5)
    copied, info = conjugate.update(prior, X, T, G, noise=0.3, fraction=0.5)
    assert not np.shares_memory(copied.cov, prior.cov)
    np.testing.assert_array_equal(prior.mean, m0)  # the default leaves its input alone
    work = conjugate.WeightPosterior(structure, prior.mean.copy(), prior.cov.copy())
    inplace, info2 = conjugate.update(work, X, T, G, noise=0.3, fraction=0.5, overwrite=True)
    assert inplace.cov is work.cov and inplace.mean is work.mean
    np.testing.assert_allclose(inplace.mean, copied.mean, rtol=RTOL)
    np.testing.assert_allclose(inplace.cov, copied.cov, rtol=RTOL)
    assert info2 == pytest.approx(info)


@pytest.mark.parametrize("structure", conjugate.STRUCTURES)
def test_float32_update_stays_close_to_float64(relu_batch, structure):
    X, T, G, m0 = relu_batch
    post64 = conjugate.update(conjugate.init(structure, m0, 1.0), X, T, G, noise=0.5)[0]
    prior32 = conjugate.init(structure, m0.astype(np.float32), 1.0)
    post32 = conjugate.update(prior32, X, T, G, noise=0.5)[0]
    assert post32.mean.dtype == np.float32 and post32.cov.dtype == np.float32
    np.testing.assert_allclose(post32.mean, post64.mean, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(post32.cov, post64.cov, rtol=1e-4, atol=1e-5)


def test_training_pass_does_not_touch_the_previous_posterior():
    """In-place updates run on a private copy: arrays held from before stay as they were."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.normal(size=40)
    net = Network([layers.ReLU(8)], noise=0.1).partial_fit(X[:20], y[:20], batch_size=4)
    before = [(p.mean, p.cov) for p in net.posteriors_]
    saved = [(m.copy(), c.copy()) for m, c in before]
    net.partial_fit(X[20:], y[20:], batch_size=4)
    for (mean, cov), (mean0, cov0) in zip(before, saved, strict=True):
        np.testing.assert_array_equal(mean, mean0)
        np.testing.assert_array_equal(cov, cov0)
    assert not np.array_equal(net.posteriors_[0].mean, saved[0][0])
