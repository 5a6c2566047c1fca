"""The scale of the hidden layers' variance in the regression predictive, by evidence."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy import stats
from test_io import _tamper  # the model-file rewriter of the io tests

import bayeslayers
from bayeslayers import Network, engine, heads, hidden_scale, layers
from bayeslayers.evidence import STRONG
from bayeslayers.heads.gaussian import SCORE_STRIDE
from bayeslayers.hidden_scale import SCALES, HiddenScale
from bayeslayers.io import ModelFileError
from bayeslayers.sklearn import BayesLayersRegressor

RNG = np.random.default_rng(5)
X = RNG.normal(size=(120, 3))
Y = np.sin(2 * X[:, 0]) + 0.3 * X[:, 1] + 0.1 * RNG.normal(size=120)
UNIT = int(np.flatnonzero(SCALES == 1.0)[0])


def _net(scale="evidence", **kw):
    return Network([layers.ReLU(8), layers.ReLU(4)], hidden_scale=scale, seed=1, **kw)


def _record(evidence):
    return HiddenScale(np.asarray(evidence, dtype=float), 10, 10, 10)


def test_the_factor_is_the_grid_value_nearest_one_within_strong_evidence_of_the_best():
    spec = _net().spec
    flat = np.zeros(len(SCALES))
    assert hidden_scale.factor(spec, None) == 1.0
    assert hidden_scale.factor(spec, _record(flat)) == 1.0  # level: the posterior as it is
    falling = -np.arange(len(SCALES), dtype=float) * 2.0  # best at the smallest scale
    # within STRONG (3 nats) of the best: indices 0 and 1 (0 and -2), nearest 1 is index 1
    assert hidden_scale.factor(spec, _record(falling)) == SCALES[1]
    peaked = -np.abs(np.arange(len(SCALES)) - 4.0) * 10.0  # best at index 4, others far
    assert hidden_scale.factor(spec, _record(peaked)) == SCALES[4]
    rising = np.arange(len(SCALES), dtype=float) * 10.0
    assert hidden_scale.factor(spec, _record(rising)) == SCALES[-1]
    near = flat.copy()
    near[0] = STRONG - 1e-9  # not strong: 1 stays
    assert hidden_scale.factor(spec, _record(near)) == 1.0
    assert hidden_scale.factor(_net(0.25).spec, _record(peaked)) == 0.25  # a set factor


def test_the_record_is_the_weighted_sum_over_the_sampled_batches():
    """L = sum_b (s_b / s)^2 (r_b / n_b) l_b over the scored batches: the first and then
    one in SCORE_STRIDE."""
    spec = _net().spec
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 40, size=40)
    record, scored, seen = None, [], 0
    for b, n in enumerate(sizes):
        take = b % SCORE_STRIDE == 0
        assert hidden_scale.sampled(spec, record) == take
        scores = rng.normal(size=len(SCALES)) if take else None
        record = hidden_scale.update(spec, record, int(n), scores)
        seen += int(n)
        if take:
            scored.append((seen, int(n), scores))
    assert record.rows == seen and record.batches == len(sizes)
    expected, last, final = np.zeros(len(SCALES)), 0, scored[-1][0]
    for s_b, n_b, scores in scored:  # weights relative to the last scored batch's rows
        expected += (s_b / final) ** 2 * (s_b - last) / n_b * scores
        last = s_b
    np.testing.assert_allclose(record.evidence, expected, rtol=1e-12)
    assert record.last == scored[-1][0]


def test_a_batch_is_scored_by_the_linearized_student_t_at_every_scale():
    net = _net(average=False).fit(X, Y, batch_size=5)  # predictions at the posterior means
    spec, state = net.spec, net.state
    Xb, Tb = X[:7], Y[:7, None]
    got = hidden_scale.score(spec, state, engine.forward(spec, state.hidden, Xb), Tb)
    nu = spec.head.dof(state.head)
    for i in (0, UNIT, len(SCALES) - 1):
        fixed = copy.copy(net)
        fixed.hidden_scale = float(SCALES[i])
        mean, var = fixed.predict_moments(Xb)  # the Student-t's variance: scale^2 nu/(nu-2)
        scale2 = var[:, 0] * (nu - 2) / nu
        expected = stats.t.logpdf(Tb[:, 0], nu, mean[:, 0], np.sqrt(scale2)).sum()
        np.testing.assert_allclose(got[i], expected, rtol=1e-10)


def test_scale_zero_is_the_mean_predictive_and_training_never_reads_the_scale():
    nets = {s: _net(s).fit(X, Y, batch_size=1) for s in ("evidence", 1.0, 0.0)}
    for a, b in zip(nets["evidence"].posteriors_, nets[0.0].posteriors_, strict=True):
        assert a.mean.tobytes() == b.mean.tobytes() and a.cov.tobytes() == b.cov.tobytes()
    assert nets[1.0].hidden_scale_ is None and nets["evidence"].hidden_scale_ is not None
    lin = nets[0.0].predict(X, return_std=True)
    mean = nets[0.0].predict(X, return_std=True, hidden="mean")
    np.testing.assert_allclose(lin, mean, rtol=1e-12)
    one = nets[1.0].predict(X, return_std=True)[1]
    assert np.all(one > mean[1])  # at 1 the hidden layers add their variance


def test_wide_inputs_shrink_the_scale_and_calibrate_the_predictive():
    """More features than rows: new rows keep the hidden layers' prior variance in the
    directions no training row spans, and at scale 1 the predictive of a flat head prior is
    far too wide. The fan-in prior (``head_prior="fan_in"``) puts the head's weights on the
    top units at 1 / H of that variance: there the evidence keeps scale 1 and the predictive
    is better still."""
    rng = np.random.default_rng(1)
    Xw = rng.normal(size=(700, 150))
    yw = Xw[:, 0] + np.sin(Xw[:, 1]) + 0.5 * rng.normal(size=700)
    train, test = slice(0, 200), slice(200, None)

    def held_out(scale, head_prior="flat"):
        model = BayesLayersRegressor(
            (30,), random_state=0, hidden_scale=scale, head_prior=head_prior
        )
        model.fit(Xw[train], yw[train])
        mean, sd = model.predict(Xw[test], return_std=True)
        nu = model.predictive_dof()
        return model, stats.t.logpdf(yw[test], nu, mean, sd * np.sqrt((nu - 2) / nu)).mean()

    chosen, ll = held_out("evidence")
    _, ll_one = held_out(1.0)
    assert chosen.network_.hidden_factor_ < 0.1
    assert ll > ll_one + 0.2
    fan_in, ll_fan_in = held_out("evidence", "fan_in")
    assert fan_in.network_.hidden_factor_ == 1.0
    assert ll_fan_in > ll + 0.05


def test_on_a_smooth_low_dimensional_task_the_scale_moves_little_and_only_for_the_better():
    """sin(3x) + N(0, 0.1^2): from 1,000 rows the evidence keeps 1; from 300 it halves the
    hidden variance, and the held-out density agrees."""
    rng = np.random.default_rng(2)
    x = rng.uniform(-2, 2, size=(3000, 1))
    y = np.sin(3 * x[:, 0]) + 0.1 * rng.normal(size=3000)

    def fit(n, scale):
        net = Network([layers.ReLU(20)], seed=0, hidden_scale=scale)
        net.fit(x[:n], y[:n], batch_size=1)
        mean, sd = net.predict(x[2000:], return_std=True)
        nu = net.head.dof(net.head_state_)
        density = stats.t.logpdf(y[2000:], nu, mean, sd * np.sqrt((nu - 2) / nu)).mean()
        return net.hidden_factor_, density

    assert fit(1000, "evidence")[0] == 1.0
    factor, density = fit(300, "evidence")
    assert factor == 0.5 and density > fit(300, 1.0)[1]


def test_classifiers_and_networks_without_hidden_layers_keep_no_record():
    labels = (X[:, 0] > 0).astype(int)
    clf = _net(head=heads.OneHot()).fit(X, labels, batch_size=4)
    assert clf.hidden_scale_ is None and clf.hidden_factor_ == 1.0
    linear = Network([], seed=0).fit(X, Y, batch_size=4)
    assert linear.hidden_scale_ is None


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [("auto", ValueError, "hidden_scale must be 'evidence'"), (-1.0, ValueError, "hidden_scale")],
)
def test_bad_scales_are_refused_by_name(value, error, match):
    with pytest.raises(error, match=match):
        _net(value)
    with pytest.raises(error, match=match):
        BayesLayersRegressor((3,), hidden_scale=value).fit(X, Y)


def test_the_record_round_trips_and_a_tampered_one_is_refused(tmp_path):
    net = _net().fit(X, Y, batch_size=3)
    back = bayeslayers.load(net.save(tmp_path / "m.npz"))
    assert back.hidden_scale_.evidence.tobytes() == net.hidden_scale_.evidence.tobytes()
    assert back.hidden_scale_[1:] == net.hidden_scale_[1:]
    pairs = zip(back.predict(X, return_std=True), net.predict(X, return_std=True), strict=True)
    for a, b in pairs:
        assert a.tobytes() == b.tobytes()

    def fields(m):
        return m["state"]["hidden_scale_"]["fields"]

    bad = [
        (lambda m: fields(m).update(rows={"value": 0}), "must count >= 1"),
        (lambda m: fields(m).update(last={"value": 10_000}), r"last must lie in \[1, rows"),
        (lambda m: fields(m).pop("batches"), "has fields"),
    ]
    for k, (meta, match) in enumerate(bad):
        path = net.save(tmp_path / f"bad{k}.npz")
        _tamper(path, meta=meta)
        with pytest.raises(ModelFileError, match=match):
            bayeslayers.load(path)
    path = net.save(tmp_path / "nan.npz")
    _tamper(
        path, arrays=lambda a: a.update({"hidden_scale_.evidence": np.full(len(SCALES), np.nan)})
    )
    with pytest.raises(ModelFileError, match="non-finite"):
        bayeslayers.load(path)


def test_a_classifier_file_with_a_record_is_refused(tmp_path):
    labels = (X[:, 0] > 0).astype(int)
    clf = _net(head=heads.OneHot()).fit(X, labels, batch_size=4)
    clf.hidden_scale_ = _net().fit(X, Y, batch_size=4).hidden_scale_
    with pytest.raises(ModelFileError, match="only a regression network"):
        bayeslayers.load(clf.save(tmp_path / "clf.npz"))


def test_one_network_merged_gives_its_record_back_and_shards_add_their_gains():
    prior = _net().fit(X[:40], Y[:40], batch_size=2)
    shards = [copy.deepcopy(prior).partial_fit(X[a:b], Y[a:b]) for a, b in ((40, 80), (80, 120))]
    alone = bayeslayers.merge(prior, shards[:1])
    np.testing.assert_allclose(alone.hidden_scale_.evidence, shards[0].hidden_scale_.evidence)
    assert alone.hidden_scale_.rows == shards[0].hidden_scale_.rows
    merged = bayeslayers.merge(prior, shards).hidden_scale_
    base = prior.hidden_scale_
    gains = sum(
        s.hidden_scale_.evidence - (base.rows / s.hidden_scale_.rows) ** 2 * base.evidence
        for s in shards
    )
    expected = (base.rows / 120) ** 2 * base.evidence + gains
    np.testing.assert_allclose(merged.evidence, expected, rtol=1e-12)
    assert merged.rows == merged.last == 120
