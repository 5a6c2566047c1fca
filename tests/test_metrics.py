"""Calibration metrics against values computed by hand on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from bayeslayers import metrics

# Two points, three classes; rows sum to one.
Y = np.array([0, 2])
P = np.array([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]])


def test_rmse_by_hand():
    # errors 1, -2, 0, 1 -> mean square 6/4
    assert metrics.rmse([1.0, 0.0, 2.0, 3.0], [0.0, 2.0, 2.0, 2.0]) == pytest.approx(np.sqrt(1.5))


def test_nll_gaussian_by_hand():
    # log N(1 | 0, 2^2) = -log 2 - 0.5 log 2pi - 1/8 ; log N(0 | 0, 1) = -0.5 log 2pi
    lp = np.array([-np.log(2) - 0.5 * np.log(2 * np.pi) - 0.125, -0.5 * np.log(2 * np.pi)])
    got = metrics.log_density_gaussian([1.0, 0.0], [0.0, 0.0], [2.0, 1.0])
    np.testing.assert_allclose(got, lp, rtol=1e-14)
    assert metrics.nll_gaussian([1.0, 0.0], [0.0, 0.0], [2.0, 1.0]) == pytest.approx(-lp.mean())


def test_log_density_gaussian_sums_outputs():
    y, mu, sd = np.array([[0.5, -1.0]]), np.array([[0.0, 0.0]]), np.array([[1.0, 3.0]])
    expected = stats.norm.logpdf(0.5) + stats.norm.logpdf(-1.0, scale=3.0)
    np.testing.assert_allclose(metrics.log_density_gaussian(y, mu, sd), [expected], rtol=1e-14)


def test_crps_gaussian_by_hand():
    # At y = mu the score is sigma (2 phi(0) - 1/sqrt(pi)) = sigma (sqrt(2) - 1) / sqrt(pi).
    assert metrics.crps_gaussian([0.0], [0.0], [2.0]) == pytest.approx(
        2 * (np.sqrt(2) - 1) / np.sqrt(np.pi), rel=1e-14
    )


def test_crps_gaussian_matches_integral():
    # CRPS = integral of (F(x) - [x >= y])^2 dx, by adaptive quadrature split at y.
    y, mu, sd = 1.3, 0.2, 0.7
    below = integrate.quad(lambda x: stats.norm.cdf(x, mu, sd) ** 2, -np.inf, y)[0]
    above = integrate.quad(lambda x: stats.norm.sf(x, mu, sd) ** 2, y, np.inf)[0]
    assert metrics.crps_gaussian([y], [mu], [sd]) == pytest.approx(below + above, rel=1e-8)


def test_crps_tends_to_absolute_error():
    assert metrics.crps_gaussian([3.0], [1.0], [1e-9]) == pytest.approx(2.0, rel=1e-6)


def test_central_interval_and_coverage():
    lo, hi = metrics.central_interval(np.zeros(3), np.ones(3), level=0.9)
    np.testing.assert_allclose(hi, stats.norm.ppf(0.95), rtol=1e-14)
    np.testing.assert_allclose(lo, -hi)
    # 0.0 inside, 1.6 inside (< 1.645), 1.7 outside; bounds count as inside.
    assert metrics.interval_coverage([0.0, 1.6, 1.7], lo, hi) == pytest.approx(2 / 3)
    assert metrics.interval_coverage([1.0], [1.0], [1.0]) == 1.0


def test_regression_metrics_dict():
    got = metrics.regression_metrics([0.0, 1.0], [0.0, 0.0], [1.0, 1.0], level=0.5)
    assert set(got) == {"rmse", "nll", "crps", "coverage"}
    assert got["coverage"] == 0.5  # 1.0 is outside the central 50% interval (+-0.674)


def test_nll_classification_by_hand():
    assert metrics.nll_classification(Y, P) == pytest.approx(-(np.log(0.7) + np.log(0.2)) / 2)


def test_nll_classification_floor_keeps_it_finite():
    got = metrics.nll_classification([1], [[1.0, 0.0]])
    assert got == pytest.approx(-np.log(1e-300))


def test_brier_by_hand():
    # (0.3^2 + 0.2^2 + 0.1^2 + 0.5^2 + 0.3^2 + 0.8^2) / 2
    assert metrics.brier(Y, P) == pytest.approx((0.09 + 0.04 + 0.01 + 0.25 + 0.09 + 0.64) / 2)


def test_accuracy_by_hand():
    assert metrics.accuracy(Y, P) == 0.5


def test_ece_by_hand():
    # Confidences 0.7 (correct) and 0.5 (wrong), in different bins of 10:
    # (1/2)|1 - 0.7| + (1/2)|0 - 0.5| = 0.4
    assert metrics.ece(Y, P, n_bins=10) == pytest.approx(0.4)
    # One bin: |mean acc - mean conf| = |0.5 - 0.6| = 0.1
    assert metrics.ece(Y, P, n_bins=1) == pytest.approx(0.1)


def test_reliability_curve_bins():
    conf, acc, count = metrics.reliability_curve(Y, P, n_bins=10)
    assert count.tolist() == [0, 0, 0, 0, 1, 0, 1, 0, 0, 0]  # 0.5 -> (0.4, 0.5], 0.7 -> (0.6, 0.7]
    assert conf[4] == pytest.approx(0.5) and acc[4] == 0.0
    assert conf[6] == pytest.approx(0.7) and acc[6] == 1.0
    assert np.isnan(conf[0]) and np.isnan(acc[0])


def test_perfect_calibration_has_zero_ece():
    proba = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert metrics.ece([0, 1], proba) == 0.0
    assert metrics.brier([0, 1], proba) == 0.0


def test_labels_with_classes():
    labels = np.array(["cat", "dog"])[[0, 1]]
    proba = np.array([[0.6, 0.4], [0.1, 0.9]])
    got = metrics.classification_metrics(labels, proba, classes=np.array(["cat", "dog"]))
    assert got["accuracy"] == 1.0
    assert got["nll"] == pytest.approx(-(np.log(0.6) + np.log(0.9)) / 2)
    # unsorted classes are mapped by value, not position
    swapped = metrics.nll_classification(["cat"], [[0.3, 0.7]], classes=np.array(["dog", "cat"]))
    assert swapped == pytest.approx(-np.log(0.7))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: metrics.rmse([1.0, 2.0], [1.0]), ValueError, "same shape"),
        (lambda: metrics.rmse([np.nan], [1.0]), ValueError, "NaN"),
        (lambda: metrics.rmse(["a"], [1.0]), TypeError, "numeric"),
        (lambda: metrics.nll_gaussian([1.0], [1.0], [0.0]), ValueError, "std must be > 0"),
        (lambda: metrics.central_interval([0.0], [1.0], level=1.5), ValueError, "level"),
        (lambda: metrics.interval_coverage([0.0], [1.0], [0.0]), ValueError, "lower must be"),
        (lambda: metrics.brier([0], [[0.5, 0.6]]), ValueError, "sum to 1"),
        (lambda: metrics.brier([2], [[0.5, 0.5]]), ValueError, r"\[0, 1\]"),
        (lambda: metrics.brier([0.0], [[0.5, 0.5]]), TypeError, "integer class indices"),
        (lambda: metrics.brier([0, 1], [[0.5, 0.5]]), ValueError, "one per row"),
        (lambda: metrics.brier(["x"], [[0.5, 0.5]], classes=["a", "b"]), ValueError, "not in"),
        (lambda: metrics.ece([0], [[0.5, 0.5]], n_bins=0), ValueError, "n_bins"),
        (lambda: metrics.nll_classification([0], [[1.0]]), ValueError, "K >= 2"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------------------------- Student-t predictives
def _t_scale(sd, nu):
    return sd * np.sqrt((nu - 2) / nu)


def test_log_density_student_t_is_scipy_s_with_std_as_the_standard_deviation():
    y, mu, sd, nu = np.array([0.3, -2.0, 4.0]), np.zeros(3), np.array([1.0, 2.0, 0.5]), 5.0
    got = metrics.log_density_student_t(y, mu, sd, nu)
    np.testing.assert_allclose(got, stats.t.logpdf(y, nu, mu, _t_scale(sd, nu)), rtol=1e-12)
    assert stats.t.std(nu, 0, _t_scale(sd, nu)) == pytest.approx(sd)
    assert metrics.nll_student_t(y, mu, sd, nu) == pytest.approx(-got.mean())
    # many degrees of freedom: the Gaussian; none given: the Gaussian exactly
    np.testing.assert_allclose(
        metrics.log_density_student_t(y, mu, sd, 1e9),
        metrics.log_density_gaussian(y, mu, sd),
        rtol=1e-7,
    )
    assert np.array_equal(
        metrics.log_density_student_t(y, mu, sd, None), metrics.log_density_gaussian(y, mu, sd)
    )


def test_crps_student_t_matches_its_defining_integral():
    """CRPS = int (F(x) - [x >= y])^2 dx, by quadrature, against the closed form."""
    nu, mu, sd = 4.0, 0.5, 1.5
    F = stats.t(nu, mu, _t_scale(sd, nu)).cdf
    for y in (-3.0, 0.5, 2.0):
        below, _ = integrate.quad(lambda x: F(x) ** 2, -np.inf, y)
        above, _ = integrate.quad(lambda x: (1 - F(x)) ** 2, y, np.inf)
        got = metrics.crps_student_t([y], [mu], [sd], nu)
        assert got == pytest.approx(below + above, rel=1e-7)
    assert metrics.crps_student_t([0.3], [0.0], [1.0], 1e8) == pytest.approx(
        metrics.crps_gaussian([0.3], [0.0], [1.0]), rel=1e-6
    )


def test_central_interval_with_dof_has_the_t_quantiles():
    lo, hi = metrics.central_interval(np.zeros(2), np.array([1.0, 3.0]), 0.9, dof=3.0)
    scale = _t_scale(np.array([1.0, 3.0]), 3.0)
    np.testing.assert_allclose(hi, stats.t.ppf(0.95, 3.0) * scale, rtol=1e-12)
    np.testing.assert_allclose(lo, -hi)
    wide = metrics.regression_metrics(np.zeros(2), np.zeros(2), np.ones(2), dof=3.0)
    assert set(wide) == {"rmse", "nll", "crps", "coverage"}
    assert wide["nll"] == pytest.approx(metrics.nll_student_t(np.zeros(2), 0 * hi, 1 + 0 * hi, 3))


@pytest.mark.parametrize(("dof", "error"), [(0.0, ValueError), (-1, ValueError), ("5", TypeError)])
def test_bad_dof_is_refused(dof, error):
    with pytest.raises(error, match="dof"):
        metrics.nll_student_t([0.0], [0.0], [1.0], dof)


def test_crps_student_t_needs_a_finite_mean():
    with pytest.raises(ValueError, match="dof > 1"):
        metrics.crps_student_t([0.0], [0.0], [1.0], 1.0)
