"""Type-II maximum likelihood of the head's prior precision against closed form."""

from __future__ import annotations

import numpy as np
import pytest

from bayeslayers import conjugate
from bayeslayers.evidence import BLOCK_RTOL, MAX_STEP, block_mackay_prior, mackay_prior


def data(n=200, d=5, seed=0, noise=0.3):
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(size=(n, d)), np.ones(n)])
    w = 0.5 * rng.normal(size=(d + 1, 2))
    return X, X @ w + noise * rng.normal(size=(n, 2))


@pytest.mark.parametrize("structure", ["unit", "shared"])
def test_rebased_posterior_is_the_closed_form_at_the_new_precision(structure):
    """After the step the posterior is exactly BLR with prior precision alpha' (relative)."""
    X, Y = data()
    post, _ = conjugate.update(conjugate.init(structure, np.zeros((6, 2)), 1.0), X, Y, noise=1.0)
    new, alpha = mackay_prior(post, 1.0, 0.09)
    precision = alpha * np.eye(6) + X.T @ X
    np.testing.assert_allclose(new.mean, np.linalg.solve(precision, X.T @ Y), atol=1e-10)
    covs = new.cov if structure == "unit" else new.cov[None]
    for cov in covs:
        np.testing.assert_allclose(cov, np.linalg.inv(precision), atol=1e-12)
        np.testing.assert_array_equal(cov, cov.T)
        assert np.linalg.eigvalsh(cov).min() > 0


def test_the_precision_is_the_map_fixed_point_under_the_gamma_hyperprior():
    """alpha' = gamma sigma^2 / (|m|^2 + 2 b0 sigma^2), b0 = 1 / alpha (the starting value)."""
    X, Y = data()
    post, _ = conjugate.update(conjugate.init("unit", np.zeros((6, 2)), 1.0), X, Y, noise=1.0)
    noise = 0.09
    _, alpha = mackay_prior(post, 1.0, noise, iterations=200)
    assert 1 / MAX_STEP < alpha < MAX_STEP  # an interior fixed point, not the trust bound
    lam = np.linalg.eigvalsh(X.T @ X)
    gamma = 2 * np.sum(lam / (lam + alpha))  # two outputs share the prior
    m = np.linalg.solve(alpha * np.eye(6) + X.T @ X, X.T @ Y)
    np.testing.assert_allclose(alpha, gamma * noise / (np.sum(m**2) + 2 * noise), rtol=1e-8)


def test_diag_rebases_every_weight_on_its_own():
    X, Y = data()
    post, _ = conjugate.update(conjugate.init("diag", np.zeros((6, 2)), 1.0), X, Y, noise=1.0)
    new, alpha = mackay_prior(post, 1.0, 0.09)
    data_precision = 1 / post.cov - 1.0
    np.testing.assert_allclose(1 / new.cov, data_precision + alpha, rtol=1e-10)
    np.testing.assert_allclose(new.mean, post.mean / post.cov / (data_precision + alpha))


def test_a_weak_signal_gets_a_strong_prior_within_the_trust_region():
    """Pure noise targets: the evidence shrinks the weights; one call moves alpha by at most
    MAX_STEP, and it never runs off to the degenerate alpha = inf."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 6))
    post, _ = conjugate.update(
        conjugate.init("unit", np.zeros((6, 1)), 1.0), X, rng.normal(size=(300, 1)), noise=1.0
    )
    _, alpha = mackay_prior(post, 1.0, 1.0)
    assert 1 < alpha <= MAX_STEP
    for _ in range(30):
        post, alpha = mackay_prior(post, alpha, 1.0)
    assert np.isfinite(alpha) and alpha < 1e6 and np.all(np.isfinite(post.mean))


def test_unit_columns_with_one_covariance_are_rebased_as_the_shared_structure():
    """Unit slopes leave every column of a "unit" posterior the same covariance: one
    eigendecomposition serves them all, and the result is the "shared" structure's."""
    X, Y = data()
    unit, _ = conjugate.update(conjugate.init("unit", np.zeros((6, 2)), 1.0), X, Y, noise=1.0)
    shared, _ = conjugate.update(conjugate.init("shared", np.zeros((6, 2)), 1.0), X, Y, noise=1.0)
    assert np.array_equal(unit.cov[0], unit.cov[1])
    new_unit, alpha_unit = mackay_prior(unit, 1.0, 0.09)
    new_shared, alpha_shared = mackay_prior(shared, 1.0, 0.09)
    np.testing.assert_allclose(alpha_unit, alpha_shared, rtol=1e-12)
    np.testing.assert_allclose(new_unit.mean, new_shared.mean, rtol=1e-10, atol=1e-14)
    for cov in new_unit.cov:
        np.testing.assert_allclose(cov, new_shared.cov, rtol=1e-10, atol=1e-14)
    # columns that differ get one basis each; the mean comes back in the same layout
    G = np.random.default_rng(2).uniform(0.5, 2.0, Y.shape)
    apart, _ = conjugate.update(conjugate.init("unit", np.zeros((6, 2)), 1.0), X, Y, G, noise=1.0)
    assert mackay_prior(apart, 1.0, 0.09)[0].mean.flags.f_contiguous
    assert new_unit.mean.flags.f_contiguous


def test_a_newly_registered_structure_is_rebased_through_its_own_hooks(monkeypatch):
    """The update reads the eigenbasis from the structure's record, not from its name."""
    record = conjugate.STRUCTURES["unit"]
    calls = []

    def eig(post):
        calls.append("eig")
        return record.eig(post)

    monkeypatch.setitem(
        conjugate.STRUCTURES, "unit-copy", record._replace(name="unit-copy", eig=eig)
    )
    X, Y = data()
    post, _ = conjugate.update(conjugate.init("unit-copy", np.zeros((6, 2)), 1.0), X, Y, noise=1.0)
    new, alpha = mackay_prior(post, 1.0, 0.09)
    reference, alpha_ref = mackay_prior(post._replace(structure="unit"), 1.0, 0.09)
    assert calls == ["eig"] and new.structure == "unit-copy" and alpha == alpha_ref
    np.testing.assert_array_equal(new.mean, reference.mean)
    np.testing.assert_array_equal(new.cov, reference.cov)


# ------------------------------------------------------------------ one precision per block
@pytest.mark.parametrize("structure", ["unit", "shared", "diag"])
def test_one_block_is_the_single_precision(structure):
    """A single block of every row is MacKay's single precision: one step gives the same
    precision and posterior, and the iterations reach the same fixed point (to the stopping
    tolerance)."""
    X, Y = data()
    post, _ = conjugate.update(conjugate.init(structure, np.zeros((6, 2)), 1.0), X, Y, noise=1.0)
    for iterations, rtol in ((1, 1e-12), (200, 10 * BLOCK_RTOL)):
        one, alpha = mackay_prior(post, 1.0, 0.09, iterations=iterations)
        block, alphas = block_mackay_prior(post, np.ones(1), np.array([6]), 0.09, iterations)
        assert block.structure == structure and block.cov.shape == post.cov.shape
        np.testing.assert_allclose(alphas, [alpha], rtol=rtol)
        np.testing.assert_allclose(block.mean, one.mean, rtol=rtol, atol=1e-12)
        np.testing.assert_allclose(block.cov, one.cov, rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("structure", ["unit", "shared"])
def test_blocks_rebase_on_the_closed_form_and_reach_their_fixed_points(structure):
    """Inputs 0-1 carry the signal, inputs 2-4 none: the evidence gives the empty block a
    far larger precision than the useful one. The re-based posterior is closed-form BLR
    with prior precision diag(alpha per row), and at convergence each block satisfies its
    own MAP fixed point (gamma_g sigma^2 / (|m_g|^2 + 2 b0_g sigma^2), b0_g = 1 / alpha_g of
    the start)."""
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.normal(size=(300, 5)), np.ones(300)])
    w = np.zeros((6, 2))
    w[:2] = [[1.0, -0.5], [0.5, 1.0]]
    Y = X @ w + 0.3 * rng.normal(size=(300, 2))
    post, _ = conjugate.update(conjugate.init(structure, np.zeros((6, 2)), 1.0), X, Y, noise=1.0)
    blocks, noise = np.array([2, 3, 1]), 0.09
    new, alpha = block_mackay_prior(post, np.ones(3), blocks, noise, iterations=500)
    assert alpha[1] > 3 * alpha[0] and 1 / MAX_STEP < alpha[1] < MAX_STEP  # interior
    rows = np.repeat(alpha, blocks)
    precision = np.diag(rows) + X.T @ X
    np.testing.assert_allclose(new.mean, np.linalg.solve(precision, X.T @ Y), atol=1e-10)
    covs = new.cov if structure == "unit" else new.cov[None]
    for cov in covs:
        np.testing.assert_allclose(cov, np.linalg.inv(precision), atol=1e-12)
        assert np.linalg.eigvalsh(cov).min() > 0
    S = np.linalg.inv(precision)
    for g, (start, size) in enumerate(zip([0, 2, 5], blocks, strict=True)):
        if not 1 / MAX_STEP < alpha[g] < MAX_STEP:
            continue  # held by the trust region, not at the fixed point
        part = slice(start, start + size)
        gamma = 2 * np.sum(1 - alpha[g] * np.diag(S)[part])
        expected = gamma * noise / (np.sum(new.mean[part] ** 2) + 2 * noise)
        np.testing.assert_allclose(alpha[g], expected, rtol=1e-8)


def test_a_newly_registered_structure_gets_block_precisions_through_its_merge_hook(monkeypatch):
    """A structure the evidence module does not know by name is re-based block by block
    through its own merge hook, to the dense path's precisions and posterior."""
    record = conjugate.STRUCTURES["unit"]
    calls = []

    def merge(prior, deltas):
        calls.append("merge")
        return record.merge(prior, deltas)

    monkeypatch.setitem(
        conjugate.STRUCTURES, "unit-copy", record._replace(name="unit-copy", merge=merge)
    )
    X, Y = data()
    post, _ = conjugate.update(conjugate.init("unit-copy", np.zeros((6, 2)), 1.0), X, Y, noise=1.0)
    blocks = np.array([3, 2, 1])
    new, alpha = block_mackay_prior(post, np.ones(3), blocks, 0.09)
    reference, alpha_ref = block_mackay_prior(
        post._replace(structure="unit"), np.ones(3), blocks, 0.09
    )
    assert len(calls) >= 2 and new.structure == "unit-copy"  # the moments and the re-basing
    np.testing.assert_allclose(alpha, alpha_ref, rtol=1e-10)
    np.testing.assert_allclose(new.mean, reference.mean, atol=1e-12)
    np.testing.assert_allclose(new.cov, reference.cov, atol=1e-12)
