"""Iterate averaging of the hidden means: bayeslayers.averaging and its use by Network."""

from __future__ import annotations

import numpy as np
import pytest

from bayeslayers import Network, averaging, engine, heads, layers, predictive, training
from bayeslayers.evidence import STRONG


def _regression(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 1))
    return X, np.sin(3 * X[:, 0]) + 0.1 * rng.normal(size=n)


def _classification(n=160, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, (X[:, 0] * X[:, 1] + X[:, 2] > 0).astype(int)


def _trajectory(spec, state, X, T, batch_size):
    """The pass's hidden means after every batch and the batch sizes, via ``on_batch``."""
    means: list[tuple[np.ndarray, ...]] = []
    sizes: list[int] = []
    last = [0]

    def record(s, rows):
        means.append(tuple(p.mean.copy() for p in s.hidden))
        sizes.append(rows - last[0])
        last[0] = rows

    out, _ = training.run_pass(
        spec, state, X, T, order=np.arange(len(X)), batch_size=batch_size, fraction=1.0,
        on_batch=record,
    )  # fmt: skip
    return out, means, sizes


@pytest.mark.parametrize("batch_size", [1, 7, 32])
def test_average_is_the_closed_form_weighted_mean_of_the_trajectory(batch_size):
    X, y = _regression()
    net = Network([layers.ReLU(6), layers.ReLU(5)], average=True).initialize(X, y)
    out, means, sizes = _trajectory(net.spec, net.state, X, net.head.encode(y), batch_size)
    seen = np.cumsum(sizes)
    # the first batch, then one in k = max(4, ceil(16 / n)); r_b rows since the last sampled
    k = max(averaging.STRIDE, -(-averaging.SAMPLE_ROWS // batch_size))
    picked = [b for b in range(len(sizes)) if b == 0 or b % k == 0]
    r = np.diff([0, *seen[picked]])
    w = r * seen[picked].astype(float) ** 2  # w_b = r_b s_b^2
    for layer in range(2):
        expected = sum(wb * means[b][layer] for wb, b in zip(w, picked, strict=True)) / w.sum()
        np.testing.assert_allclose(out.average.means[layer], expected, rtol=1e-10, atol=1e-12)
    assert out.average.rows == len(X) and out.average.batches == len(sizes)
    assert out.average.last == seen[picked[-1]]
    z = sum(rb * (s / seen[picked[-1]]) ** 2 for rb, s in zip(r, seen[picked], strict=True))
    assert out.average.weight == pytest.approx(z, rel=1e-12)


def test_margin_is_the_weighted_sum_of_sampled_log_bayes_factors():
    """M = sum over sampled batches c of (s_c / s_B)^2 (r_c / n_c) Delta_c."""
    spec = engine.NetSpec(
        (layers.ReLU(2),), heads.Gaussian(), ("unit",), "unit", (1.0,), 0, None, average="evidence"
    )
    rng = np.random.default_rng(0)
    n, n_batches = 3, 40  # a batch of 3 rows is sampled once in ceil(16 / 3) = 6 batches
    avg, terms = None, []
    for _ in range(n_batches):
        state = engine.NetState((_Post(rng.normal(size=(3, 2))),), None, (), avg)
        delta = float(rng.normal())
        picked = avg is not None and averaging.sampled(avg, n)
        # score() returns the averaged model's log density only for the sampled batches
        last = 0 if avg is None else avg.last
        avg = averaging.update(spec, state, n, 0.0, delta if picked else None)
        if picked:
            terms.append((avg.rows, (avg.rows - last) / n * delta))
    assert avg.margin == pytest.approx(sum((s / avg.last) ** 2 * d for s, d in terms), rel=1e-12)
    assert len(terms) == (n_batches - 1) // 6


class _Post:
    """The part of a WeightPosterior that averaging.update reads."""

    def __init__(self, mean):
        self.mean = mean


def test_score_follows_the_systematic_sample():
    X, y = _classification(n=40)
    net = Network([layers.ReLU(5)], heads.OneHot()).initialize(X, y)
    spec, state = net.spec, net.state
    T = net.head.encode(y, 2)
    assert averaging.score(spec, state, X[:4], T[:4]) is None  # no average yet
    avg = averaging.Average(tuple(p.mean for p in state.hidden), 20, 10.0, 0.0, 5, 16)
    assert averaging.score(spec, state._replace(average=avg), X[:4], T[:4]) is None
    avg = avg._replace(batches=8)
    value = averaging.score(spec, state._replace(average=avg), X[:4], T[:4])
    # the averaged means equal the posterior means here: the head's own log predictive
    xh, _ = engine.forward(spec, state.hidden, X[:4])
    assert value == pytest.approx(net.head.log_predictive(state.head, xh, T[:4]), rel=1e-12)
    off = spec._replace(average=True)  # nothing to decide: never scored
    assert averaging.score(off, state._replace(average=avg), X[:4], T[:4]) is None


@pytest.mark.parametrize("margin, used", [(STRONG + 1e-9, True), (STRONG, False), (-5.0, False)])
def test_evidence_uses_the_average_only_above_the_strong_bar(margin, used):
    spec = engine.NetSpec((), heads.Gaussian(), (), "unit", (), 0, None, average="evidence")
    avg = averaging.Average((np.zeros((2, 2)),), 10, 5.0, margin, 3, 8)
    assert averaging.in_use(spec, avg) is used
    assert averaging.in_use(spec._replace(average=True), avg)
    assert not averaging.in_use(spec._replace(average=False), avg)
    assert not averaging.in_use(spec, None)


def test_training_never_reads_the_average():
    """Posteriors, head and evidence are bitwise the same with and without the average."""
    X, y = _classification()
    nets = [
        Network([layers.ReLU(6)], heads.OneHot(), average=a, seed=3).fit(X, y, batch_size=4)
        for a in ("evidence", True, False)
    ]
    for net in nets[1:]:
        np.testing.assert_array_equal(net.posteriors_[0].mean, nets[0].posteriors_[0].mean)
        np.testing.assert_array_equal(net.posteriors_[0].cov, nets[0].posteriors_[0].cov)
        np.testing.assert_array_equal(net.head_state_.post.mean, nets[0].head_state_.post.mean)
        assert net.log_evidence_ == nets[0].log_evidence_
    assert nets[2].average_ is None and not nets[2].averaging_
    np.testing.assert_array_equal(nets[0].average_.means[0], nets[1].average_.means[0])


def test_predictions_use_the_averaged_means_when_in_use():  # every predictive
    X, y = _regression()
    net = Network([layers.ReLU(8)], average=True).fit(X, y, batch_size=4)
    assert net.averaging_
    posterior = Network([layers.ReLU(8)], average=False).fit(X, y, batch_size=4)
    hidden = [p._replace(mean=m) for p, m in zip(net.posteriors_, net.average_.means, strict=True)]
    xh, _ = engine.forward(net.spec, hidden, X)
    np.testing.assert_allclose(net.predict(X), (xh @ net.head_state_.post.mean)[:, 0], rtol=1e-12)
    assert not np.allclose(net.predict(X), posterior.predict(X))
    mean, var = net.predict_moments(X, hidden="mean")
    ref_mean, ref_var = net.head.predictive(net.head_state_, xh)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12)
    np.testing.assert_allclose(var, ref_var * predictive.student_t_factor(net.spec, net.state))


def test_a_stream_of_partial_fits_continues_one_average():
    X, y = _regression(n=90)
    whole = Network([layers.ReLU(6)], init="he", average=True).partial_fit(X, y, batch_size=5)
    parts = Network([layers.ReLU(6)], init="he", average=True)
    for rows in (slice(0, 30), slice(30, 90)):
        parts.partial_fit(X[rows], y[rows], batch_size=5)
    for a, b in zip(whole.average_, parts.average_, strict=True):
        if isinstance(a, tuple):
            np.testing.assert_allclose(a[0], b[0], rtol=1e-12)
        else:
            assert a == pytest.approx(b, rel=1e-12)


def test_no_average_without_hidden_layers():
    X, y = _regression()
    net = Network([]).fit(X, y)
    assert net.average_ is None and not net.averaging_


def test_the_average_learns():
    """Predicting at the averaged means fits a noisy sine far better than its mean."""
    X, y = _regression(n=600, seed=1)
    net = Network([layers.ReLU(30), layers.ReLU(30)], average=True).fit(X, y, batch_size=8)
    Xt, yt = _regression(n=300, seed=2)
    rmse = float(np.sqrt(np.mean((net.predict(Xt) - yt) ** 2)))
    assert net.averaging_ and rmse < 0.3 * np.std(yt)


@pytest.mark.parametrize("value, error", [("yes", ValueError), (1, TypeError), (None, TypeError)])
def test_bad_average_is_refused_by_name(value, error):
    with pytest.raises(error, match="average"):
        Network([layers.ReLU(3)], average=value)
