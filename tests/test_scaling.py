"""The estimators' label-free standardization: moments, the tail transform and its choice."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bayeslayers import scaling
from bayeslayers.evidence import STRONG

RNG = np.random.default_rng(0)
N = 2000


def test_light_tailed_binary_and_sparse_columns_keep_their_standardization():
    A = np.column_stack(
        [
            RNG.normal(3.0, 2.0, N),  # Gaussian
            RNG.uniform(-1, 5, N),  # uniform
            RNG.integers(0, 2, N) * 4.0 + 1.0,  # binary
            np.where(RNG.uniform(size=N) < 0.8, 0.0, RNG.standard_cauchy(N)),  # sparse
        ]
    )
    mean, scale, lam = scaling.tails(A)
    np.testing.assert_array_equal(lam, np.inf)
    for got, want in zip((mean, scale), scaling.moments(A), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(scaling.standardize(A, mean, scale, lam), (A - mean) / scale)


@pytest.mark.parametrize(
    "column",
    [RNG.standard_cauchy(N), RNG.lognormal(0.0, 1.5, N), RNG.standard_t(1.5, N)],
    ids=["cauchy", "lognormal", "student-t-1.5"],
)
def test_heavy_tails_get_the_transform_the_likelihood_prefers(column):
    """The choice is the arg max over TAIL_SCALES of the Gaussian log-likelihood of the
    transformed column with the Jacobian (scipy's own densities), the z-score kept unless
    beaten by STRONG nats."""
    mean, scale, lam = scaling.tails(column[:, None])
    median = np.median(column)
    robust = (np.percentile(column, 75) - np.percentile(column, 25)) / 1.349
    z = (column - median) / robust

    def loglik(lam_):
        u = z if np.isinf(lam_) else lam_ * np.arcsinh(z / lam_)
        jacobian = 0.0 if np.isinf(lam_) else -0.5 * np.sum(np.log1p((z / lam_) ** 2))
        return stats.norm.logpdf(u, u.mean(), u.std()).sum() + jacobian

    scores = {lam_: loglik(lam_) for lam_ in scaling.TAIL_SCALES}
    best = max(scores, key=scores.get)
    assert scores[best] > loglik(np.inf) + STRONG  # these tails are far from Gaussian
    assert lam[0] == best
    assert mean[0] == pytest.approx(median) and scale[0] == pytest.approx(robust)
    u = scaling.standardize(column[:, None], mean, scale, lam)[:, 0]
    np.testing.assert_allclose(u, best * np.arcsinh(z / best))
    # the bulk of the rows spans the transformed scale, where the z-score squeezed it
    middle = (column > np.percentile(column, 10)) & (column < np.percentile(column, 90))
    squeezed = (column - column.mean()) / column.std()
    assert np.ptp(u[middle]) > 1.2 * np.ptp(squeezed[middle])


def test_the_transform_is_invariant_to_each_columns_units():
    A = np.column_stack([RNG.standard_cauchy(N), RNG.normal(size=N), RNG.lognormal(0, 1, N)])
    ref = scaling.standardize(A, *scaling.tails(A))
    for factor, shift in ((1e-3, 5.0), (1e3, -2.0)):
        B = A * factor + shift
        np.testing.assert_allclose(scaling.standardize(B, *scaling.tails(B)), ref, atol=1e-9)
    # new rows go through the first call's statistics
    stats_ = scaling.tails(A[:1000])
    np.testing.assert_allclose(
        scaling.standardize(A[1000:], *stats_), scaling.standardize(A, *stats_)[1000:]
    )


def test_standardize_without_tails_is_the_plain_z_score():
    A = RNG.normal(size=(10, 3))
    np.testing.assert_array_equal(scaling.standardize(A, 1.0, 2.0, None), (A - 1.0) / 2.0)


def _skewed(n=600, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.lognormal(0.0, 1.0, n), rng.normal(size=n), rng.normal(size=n)])


def test_the_linear_guard_keeps_the_z_score_of_a_column_the_target_is_linear_in():
    """A log-normal column is transformed without labels; a target linear in it as given
    (a unit conversion) brings its z-score back, a target linear in its log keeps the
    transform, and the light-tailed columns are never touched."""
    A = _skewed()
    mean, scale, lam = scaling.tails(A)
    assert np.isfinite(lam[0]) and not np.isfinite(lam[1:]).any()
    linear = 28.35 * A[:, 0] + A[:, 1]
    curved = np.log(A[:, 0]) + A[:, 1] + 0.1 * np.random.default_rng(1).normal(size=len(A))
    for y, keeps_transform in ((linear, False), (curved, True)):
        target = (y - y.mean()) / y.std()
        centres, scales, tails = scaling.linear_guard(A, target, mean, scale, lam)
        assert np.isfinite(tails[0]) == keeps_transform
        if not keeps_transform:
            centre, spread = scaling.moments(A)
            assert (centres[0], scales[0]) == (centre[0], spread[0])
        np.testing.assert_array_equal(tails[1:], lam[1:])
    assert np.isfinite(lam[0])  # the inputs are not modified
    plain = scaling.moments(A[:, 1:])
    unchanged = scaling.linear_guard(A[:, 1:], linear, *plain, np.full(2, np.inf))
    assert all(a is b for a, b in zip(unchanged[:2], plain, strict=True))


def test_a_regressor_reproduces_a_target_linear_in_a_skewed_feature():
    """End to end: 28.35 x (ounces to grams) of a log-normal x, no noise. With the z-score
    kept the skip connection fits it to a tiny fraction of the target's spread."""
    from bayeslayers.sklearn import BayesLayersRegressor

    A = _skewed(800)
    y = 28.35 * A[:, 0]
    model = BayesLayersRegressor((20,), random_state=0).fit(A[:600], y[:600])
    assert not np.isfinite(model.x_tail_[0])
    rmse = np.sqrt(np.mean((model.predict(A[600:]) - y[600:]) ** 2))
    assert rmse < 1e-3 * y.std()
