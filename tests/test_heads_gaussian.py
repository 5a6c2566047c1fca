"""The Gaussian head's learned noise: memory chosen by evidence, prior by evidence."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bayeslayers import Network, _kernels, heads
from bayeslayers.evidence import STRONG
from bayeslayers.heads import gaussian
from bayeslayers.heads.argmax import argmax_log_proba


def drifting_noise(n=2000, seed=0):
    """A linear target whose noise drops from sd 1 to sd 0.1 after the first quarter."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    sd = np.where(np.arange(n) < n // 4, 1.0, 0.1)
    return X, X @ [1.0, -0.5, 0.2] + sd * rng.normal(size=n)


def test_evidence_picks_a_short_memory_when_the_residuals_shrink():
    X, y = drifting_noise()
    plain = Network([], head=heads.Gaussian(noise_memory=None)).fit(X, y, shuffle=False)
    chosen = Network([]).fit(X, y, shuffle=False)
    assert plain.head.noise_variance(plain.head_state_) > 0.2  # early residuals dominate
    assert 0.007 < chosen.head.noise_variance(chosen.head_state_) < 0.015  # true: 0.01


def test_a_stationary_stream_gets_the_noise_whatever_memory_wins():
    """Stationary noise: every memory predicts about as well, and the estimate is right."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 2))
    y = X @ [0.5, 1.0] + 0.3 * rng.normal(size=3000)
    net = Network([]).fit(X, y, shuffle=False)
    evidence = net.head_state_.memory[:, 2]
    assert evidence.max() - evidence[0] < 5.0  # the full memory is within a few nats
    np.testing.assert_allclose(net.head.noise_variance(net.head_state_), 0.09, rtol=0.15)


def test_fixed_noise_when_the_network_sets_it():
    net = Network([], noise=0.5)
    assert net.head.learn_noise is False
    assert Network([]).head.learn_noise is True
    assert Network([], head=heads.Gaussian(learn_noise=True), noise=0.5).head.learn_noise


def test_evidence_prior_shrinks_an_overparameterized_head():
    """Few rows, many weak features: the evidence prior predicts better than alpha = 1."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 60))
    y = X[:, 0] + 0.5 * rng.normal(size=120)
    Xt = rng.normal(size=(500, 60))
    fixed = Network([], head=heads.Gaussian(prior_evidence=False)).fit(X, y)
    tuned = Network([]).fit(X, y)
    assert tuned.head_state_.alpha > 2.0
    err = [np.mean((n.predict(Xt) - Xt[:, 0]) ** 2) for n in (fixed, tuned)]
    assert err[1] < err[0]


def test_block_precisions_start_at_32_rows_whatever_the_width():
    """The evidence re-estimates one precision at every doubling of the rows seen from as
    many rows as the head has inputs, one per block from EVIDENCE_START rows on: on 100
    rows of a 61-input head, the single precision is first updated at 64 rows, the blocks'
    at 32 (so their first step is already at its trust bound by then)."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(100, 60))
    y = X[:, 0] + 0.5 * rng.normal(size=100)
    head = heads.Gaussian(learn_noise=True, noise_memory=None)
    single = head.init(np.zeros((61, 1)), 1.0, "shared", 1.0)
    blocks = head.init(np.zeros((61, 1)), 1.0, "shared", 1.0, (1, 59, 1))
    design = np.column_stack([X, np.ones(100)])
    first = {}
    for i in range(100):
        single = head.update(single, design[i : i + 1], y[i : i + 1, None], 1.0)
        blocks = head.update(blocks, design[i : i + 1], y[i : i + 1, None], 1.0)
        if "single" not in first and single.alpha != 1.0:
            first["single"] = i + 1
        if "blocks" not in first and not np.array_equal(blocks.alpha, np.ones(3)):
            first["blocks"] = i + 1
    assert gaussian.EVIDENCE_START == 32
    assert first == {"single": 64, "blocks": 32}
    assert blocks.alpha[1] > blocks.alpha[0]  # the 59 useless inputs shrunk harder
    np.testing.assert_array_equal(blocks.blocks, [1, 59, 1])


@pytest.mark.parametrize("bad", ["sometimes", 3])
def test_bad_noise_memory(bad):
    with pytest.raises(ValueError, match="noise_memory"):
        heads.Gaussian(noise_memory=bad)


def test_each_memory_scores_the_student_t_predictive_of_the_batch_then_forgets():
    """Gain = log multivariate t_{2a}(r | 0, b/a I) after the decay e^{-n/M}; then
    a <- a + n/2, b <- b + q/2 (module docstring)."""
    rng = np.random.default_rng(0)
    memory = np.column_stack([rng.uniform(1, 50, 5), rng.uniform(0.1, 20, 5), rng.normal(size=5)])
    r = rng.normal(size=4)
    rows, _, _ = _kernels.noise_memories(memory, gaussian._decays(4.0), 4.0, float(r @ r))
    for (a_next, b_next, evidence), (a, b, before), M in zip(
        rows, memory, gaussian.NOISE_MEMORIES, strict=True
    ):
        a, b = a * np.exp(-4 / M), b * np.exp(-4 / M)
        t = stats.multivariate_t(np.zeros(4), b / a * np.eye(4), df=2 * a)
        np.testing.assert_allclose(evidence - before, t.logpdf(r), rtol=1e-12)
        np.testing.assert_allclose([a_next, b_next], [a + 2, b + r @ r / 2], rtol=1e-14)
    huge = _kernels.noise_memories(memory, gaussian._decays(1e6), 1e6, 1e5)  # decay underflows
    assert np.all(np.isfinite(huge[0])) and np.isfinite(huge[1:]).all()  # no 0 / 0


def test_the_noise_in_use_is_the_evidence_weighted_average():
    """After the batch the noise in use averages the memories by their evidence; with no
    batch (n = 0, unit decays) the memories stay as they are."""
    rng = np.random.default_rng(1)
    memory = np.array([[3.0, 1.5, -1000.0], [5.0, 1.0, -1001.0], [2.0, 8.0, -1e6]])
    for n, quad in ((0.0, 0.0), (3.0, 2.5)):
        decays = rng.uniform(0.5, 1.0, 3) if n else np.ones(3)
        rows, a, b = _kernels.noise_memories(memory, decays, n, quad)
        if not n:
            np.testing.assert_array_equal(rows, memory)
        w = np.exp(rows[:, 2] - rows[:, 2].max())
        w /= w.sum()
        np.testing.assert_allclose(a, w @ rows[:, 0], rtol=1e-14)
        np.testing.assert_allclose(b / a, w @ (rows[:, 1] / rows[:, 0]), rtol=1e-14)
    for k in range(3):  # a NaN anywhere, the first row's included
        bad = memory.copy()
        bad[k, 2] = np.nan
        assert np.isnan(_kernels.noise_memories(bad, np.ones(3), 1.0, 1.0)[1:]).all()


# ------------------------------------------------------------ one-hot head: temperature
def imbalanced(n=6400, seed=0):
    """Two overlapping classes, one in twenty rows in the rare one: a one-hot regression whose
    noise, learned from the mostly-zero indicators, is far too small for the class
    probabilities of the rows near the boundary."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(int)
    X = rng.normal(size=(n, 4)) + 1.2 * y[:, None] * np.array([1.0, 1.0, 0.0, 0.0])
    return X, y


def test_the_evidence_widens_overconfident_class_probabilities():
    X, y = imbalanced()
    Xt, yt = imbalanced(seed=1)
    fixed = Network([], head=heads.OneHot(temperature=None)).fit(X, y)
    chosen = Network([], head=heads.OneHot()).fit(X, y)
    assert fixed.head_state_.calibration is None
    assert fixed.head.temperature_of(fixed.head_state_) == 1.0
    assert chosen.head.temperature_of(chosen.head_state_) > 1.0
    nll = [-np.log(m.predict_proba(Xt)[np.arange(len(yt)), yt]).mean() for m in (fixed, chosen)]
    assert nll[1] < nll[0] - 0.01  # a held-out gain, not only the training rows' evidence
    # equal variances across the classes: the temperature leaves every arg max as it was
    np.testing.assert_array_equal(chosen.predict(Xt), fixed.predict(Xt))
    # the regression (the body's training signal) is the same model
    np.testing.assert_allclose(chosen.head_state_.post.mean, fixed.head_state_.post.mean)


def test_the_temperature_stays_at_one_without_strong_evidence():
    """Well-separated classes: every temperature predicts nearly alike, 1 is kept."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 300)
    X = rng.normal(size=(300, 2)) * 0.3 + np.eye(3)[y][:, :2] * 4.0
    net = Network([], head=heads.OneHot()).fit(X, y)
    evidence = net.head_state_.calibration.evidence
    unit = list(gaussian.TEMPERATURES).index(1.0)
    assert evidence.max() - evidence[unit] <= STRONG
    assert net.head.temperature_of(net.head_state_) == 1.0


@pytest.mark.parametrize("vertex", [-0.4, 0.0, 0.3, 1.45, 2.5])
def test_the_refined_temperature_is_the_vertex_of_a_quadratic_evidence(vertex):
    """Evidence quadratic in log2 tau: the refinement finds its maximum exactly."""
    log_tau = np.log2(gaussian.TEMPERATURES)
    evidence = -3.0 * (log_tau - vertex) ** 2 + 7.0
    assert gaussian.refined_temperature(evidence) == pytest.approx(2.0**vertex, rel=1e-12)


def test_the_refined_temperature_stays_within_half_an_octave_of_the_grid():
    rng = np.random.default_rng(4)
    grid = gaussian.TEMPERATURES
    for _ in range(200):
        evidence = rng.normal(size=len(grid)) * rng.uniform(0.01, 100.0)
        best = grid[np.argmax(evidence)]
        tau = gaussian.refined_temperature(evidence)
        assert best * 2.0**-0.5 - 1e-12 <= tau <= best * 2.0**0.5 + 1e-12


def test_the_refined_temperature_is_the_grid_value_at_the_ends_and_when_level():
    grid = gaussian.TEMPERATURES
    rising = np.arange(len(grid), dtype=float)
    assert gaussian.refined_temperature(rising) == grid[-1]
    assert gaussian.refined_temperature(-rising) == grid[0]
    plateau = np.zeros(len(grid))
    plateau[3:6] = 1.0  # the first of a plateau: half an octave towards the rest of it
    assert gaussian.refined_temperature(plateau) == pytest.approx(grid[3] * 2.0**0.5)
    # level to rounding: left - 2 mid + right rounds to 0 although left < mid
    level = np.zeros(len(grid))
    level[2:5] = [1.0 - 2.0**-53, 1.0, 1.0]
    assert level[2] < level[3] and level[2] - 2.0 * level[3] + level[4] == 0.0
    assert gaussian.refined_temperature(level) == grid[3]


def test_rows_are_held_then_scored_with_the_power_law_weights():
    """Scoring in chunks of SCORE_ROWS rows, each standing for w_i rows of the stream:
    L = (N_prev / N)^2 L_prev + sum_i w_i log P_tau(k_i) at every temperature (the quadrature
    of argmax_log_proba), N the rows stood for."""
    head, K = heads.OneHot(), 3
    rng = np.random.default_rng(3)
    state = head.init(np.zeros((2, K)), 1.0, "unit", 1.0)
    cal = state.calibration
    n, N = gaussian.SCORE_ROWS, 2 * gaussian.SCORE_ROWS + 5
    M = rng.normal(size=(N, K))
    V = rng.uniform(0.1, 1.0, (N, 1)) * np.ones((N, K))
    Y = rng.integers(0, K, N)
    W = rng.choice([1.0, 4.0], N)
    for i in range(N):
        cal = gaussian._record(cal, M[i : i + 1], V[i : i + 1], Y[i : i + 1], W[i : i + 1])
    assert cal.n_pending == 5 and cal.scored == W[: 2 * n].sum()
    cal = gaussian.score_pending(cal)

    def gain(block):
        return np.array(
            [
                argmax_log_proba(M[block], t * V[block], Y[block]) @ W[block]
                for t in gaussian.TEMPERATURES
            ]
        )

    first, second = W[:n].sum(), W[: 2 * n].sum()
    expected = (first / second) ** 2 * gain(slice(0, n)) + gain(slice(n, 2 * n))
    expected = (second / W.sum()) ** 2 * expected + gain(slice(2 * n, N))
    np.testing.assert_allclose(cal.evidence, expected, rtol=1e-10)
    assert cal.n_pending == 0 and cal.scored == W.sum()


def test_every_row_is_scored_then_one_in_a_stride():
    """The first SCORE_ALL rows of a stream are scored with weight 1, then one row in
    SCORE_STRIDE with weight SCORE_STRIDE; held rows wait for SCORE_ROWS or a flush."""
    X, y = imbalanced(n=700)
    first, stride = gaussian.SCORE_ALL, gaussian.SCORE_STRIDE
    few = Network([], head=heads.OneHot()).partial_fit(X[:40], y[:40], classes=[0, 1])
    cal = few.head_state_.calibration
    assert cal.offered == 40 and cal.n_pending == 40  # below SCORE_ROWS: held
    flushed = few.head.flush(few.head_state_)
    assert flushed.calibration.n_pending == 0 and flushed.calibration.scored == 40
    assert few.head.flush(flushed) is flushed
    net = Network([], head=heads.OneHot()).partial_fit(X, y, classes=[0, 1])
    cal = net.head_state_.calibration
    sampled = np.r_[np.arange(first), np.arange(first, 700, stride)]
    held = cal.n_pending
    np.testing.assert_array_equal(cal.label[:held], y[sampled[len(sampled) - held :]])
    np.testing.assert_array_equal(cal.weight[:held], stride)
    assert cal.offered == 700 and cal.scored + held * stride == first + stride * (
        len(sampled) - first
    )
    big = Network([], head=heads.OneHot()).partial_fit(X, y, classes=[0, 1], batch_size=700)
    assert big.head_state_.calibration.n_pending == 0  # one batch: scored at once
    assert big.head_state_.calibration.scored == first + stride * (len(sampled) - first)


@pytest.mark.parametrize("bad", ["auto", 1.0, True])
def test_bad_temperature(bad):
    with pytest.raises(ValueError, match="temperature must be 'evidence' or None"):
        heads.OneHot(temperature=bad)


def test_the_temperature_sample_is_the_same_row_by_row_and_in_batches():
    from bayeslayers.heads.gaussian import SCORE_ALL, SCORE_STRIDE, _sampled

    start, n = SCORE_ALL - 7, 40
    pick, weight = _sampled(start, n)
    single = [(i, w) for i in range(n) for w in _sampled(start + i, 1)[1]]
    assert pick.tolist() == [i for i, _ in single]
    assert weight.tolist() == [w for _, w in single]
    assert set(weight.tolist()) == {1.0, float(SCORE_STRIDE)}
    assert pick[:7].tolist() == list(range(7))  # every row before SCORE_ALL
