"""scikit-learn estimators: the conformance suite, meta-estimators, heads, bad input,
determinism."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import sklearn.datasets
from sklearn.datasets import load_digits
from sklearn.linear_model import BayesianRidge
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from bayeslayers import heads, metrics, scaling
from bayeslayers.sklearn import BayesLayersClassifier, BayesLayersRegressor

# Small and batched, so the ~55 checks per estimator take seconds, not minutes.
SMALL = {"hidden": (8,), "batch_size": 16}
CHECKED = [
    BayesLayersRegressor(**SMALL),
    BayesLayersClassifier(**SMALL),
    BayesLayersClassifier(**SMALL, head="probit"),
]
# Other layers, structures and heads, sample by sample: about a minute more.
CHECKED_SLOW = [
    BayesLayersRegressor(
        hidden=(8, 4), activation="taylor_tanh", covariance="shared", batch_size=1
    ),
    BayesLayersClassifier(hidden=(8,), activation="leaky_relu", covariance="diag", passes=2),
    BayesLayersClassifier(**SMALL, head="logistic"),
]


def _run_check(estimator, check) -> None:
    if getattr(check, "func", check).__name__ == "check_array_api_input":
        pytest.skip(
            "needs SCIPY_ARRAY_API=1 before SciPy is imported: run in its own process by "
            "test_array_api_dispatch_with_numpy_inputs"
        )
    check(estimator)


@parametrize_with_checks(CHECKED)
def test_sklearn_conformance(estimator, check):
    _run_check(estimator, check)


@pytest.mark.slow
@parametrize_with_checks(CHECKED_SLOW)
def test_sklearn_conformance_more_configurations(estimator, check):
    _run_check(estimator, check)


_ARRAY_API_CHECK = """
from sklearn.utils.estimator_checks import check_array_api_input
from bayeslayers.sklearn import BayesLayersClassifier, BayesLayersRegressor
for est in [{estimators}]:
    check_array_api_input(type(est).__name__, est, array_namespace="numpy",
                          expect_only_array_outputs=False)
print("passed")
"""


@pytest.mark.parametrize(
    "estimators", [CHECKED, pytest.param(CHECKED_SLOW, marks=pytest.mark.slow)], ids=["", "slow"]
)
def test_array_api_dispatch_with_numpy_inputs(estimators):
    code = _ARRAY_API_CHECK.format(
        estimators=", ".join(repr(e).replace("\n", "") for e in estimators)
    )
    env = {**os.environ, "SCIPY_ARRAY_API": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "passed"


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:400], y[:400]


def test_classifier_in_pipeline_grid_search_and_cross_val(digits):
    X, y = digits
    pipe = make_pipeline(StandardScaler(), BayesLayersClassifier(hidden=(30,), batch_size=20))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.75
    grid = GridSearchCV(
        pipe, {"bayeslayersclassifier__covariance": ["unit", "diag"]}, cv=2, error_score="raise"
    ).fit(X, y)
    assert grid.best_params_["bayeslayersclassifier__covariance"] in ("unit", "diag")
    proba = grid.predict_proba(X[:5])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_classifier_with_sample_init_and_sweeps(digits):
    """``init`` and ``sweeps`` reach the network: a data-initialized first layer learns too."""
    X, y = digits
    Xs = StandardScaler().fit_transform(X)
    clf = BayesLayersClassifier(hidden=(30,), init="samples", sweeps=2, random_state=0)
    clf.fit(Xs[:300], y[:300])
    assert clf.network_.init == "samples" and clf.network_.sweeps == 2
    assert clf.score(Xs[300:], y[300:]) > 0.85


def test_regressor_learns_a_curve_with_calibrated_std():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (400, 1))
    y = np.sin(3 * X[:, 0]) + 0.1 * rng.normal(size=400)
    reg = BayesLayersRegressor(hidden=(40,), noise=0.01, random_state=0).fit(X[:300], y[:300])
    mean, std = reg.predict(X[300:], return_std=True, hidden="sample", n_samples=50)
    rmse = float(np.sqrt(np.mean((mean - y[300:]) ** 2)))
    assert rmse < 0.25
    assert mean.shape == std.shape == (100,) and np.all(std > 0)
    # Most held-out points lie within 3 predictive standard deviations.
    assert np.mean(np.abs(mean - y[300:]) < 3 * std) > 0.8
    assert reg.score(X[300:], y[300:]) > 0.8


def test_the_default_skip_connection_fits_a_linear_plus_nonlinear_target_better():
    """y = x w + sin(2 x_0): the head's linear part takes x w, the hidden layer the rest."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 8))
    y = X @ rng.normal(size=8) + np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=600)
    rmse = {}
    for skip in ("auto", False):
        reg = BayesLayersRegressor(hidden=(20,), random_state=0, skip=skip).fit(X[:400], y[:400])
        assert reg.network_.spec.skip is (skip == "auto")  # 8 features: on by default
        rmse[skip] = float(np.sqrt(np.mean((reg.predict(X[400:]) - y[400:]) ** 2)))
    assert rmse["auto"] < 0.85 * rmse[False]  # seen: 0.63 against 0.85


def test_partial_fit_stream_equals_fit_without_shuffle():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 4))
    y = X @ [1.0, -2.0, 0.5, 0.0]
    # the first call fixes the data-derived settings: only data-free ones make a stream = fit
    params = {"hidden": (6,), "batch_size": 5, "shuffle": False, "random_state": 2}
    params |= {"standardize": False, "init": "he"}
    full = BayesLayersRegressor(**params).fit(X, y)
    online = BayesLayersRegressor(**params)
    for chunk in np.array_split(np.arange(60), 4):  # chunks are multiples of the batch size
        online.partial_fit(X[chunk], y[chunk])
    np.testing.assert_allclose(online.predict(X), full.predict(X), rtol=1e-12, atol=1e-12)


def test_multi_output_regression():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 3))
    Y = np.column_stack([X[:, 0], -X[:, 1]])
    reg = BayesLayersRegressor(hidden=(10,), batch_size=8, random_state=0).fit(X, Y)
    mean, std = reg.predict(X, return_std=True, hidden="sample", n_samples=10)
    assert mean.shape == std.shape == (80, 2) and reg.n_outputs_ == 2


def test_classifier_partial_fit_with_string_labels():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(90, 2))
    y = np.where(X[:, 0] > 0, "right", "left")
    clf = BayesLayersClassifier(hidden=(10,), batch_size=10, random_state=0)
    clf.partial_fit(X[:30], y[:30], classes=["left", "right", "up"])
    clf.partial_fit(X[30:], y[30:])
    assert clf.classes_.tolist() == ["left", "right", "up"]
    assert clf.predict_proba(X).shape == (90, 3)
    assert set(clf.predict(X)) <= {"left", "right", "up"}
    assert clf.score(X, y) > 0.85


def test_head_names_go_through_the_registry():
    clf = BayesLayersClassifier(hidden=(4,), batch_size=10, random_state=0)
    X, y = np.random.default_rng(4).normal(size=(20, 2)), np.arange(20) % 2
    assert isinstance(clf.fit(X, y).network_.head, heads.Choice)  # "auto", two classes
    onehot = BayesLayersClassifier(hidden=(4,), head="gaussian", batch_size=10).fit(X, y)
    assert type(onehot.network_.head) is heads.OneHot  # "gaussian": one-hot regression
    classifier_kinds = sorted(k for k, cls in heads.HEADS.items() if cls.is_classifier)
    regressor_kinds = sorted(k for k, cls in heads.HEADS.items() if not cls.is_classifier)
    with pytest.raises(ValueError, match="head must be one of") as info:
        BayesLayersClassifier(head="nope").fit(X, y)
    for kind in classifier_kinds:
        assert repr(kind) in str(info.value)
    with pytest.raises(ValueError, match="head must be one of") as info:
        BayesLayersRegressor(head="onehot").fit(X, y)
    for kind in regressor_kinds:
        assert repr(kind) in str(info.value)
    learn = BayesLayersRegressor(hidden=(4,), head=heads.Gaussian(learn_noise=True)).fit(X, y)
    assert learn.network_.head.learn_noise


# (estimator, parameters, exception, message): what each bad configuration raises at fit.
BAD_PARAMS = [
    (BayesLayersRegressor, {"hidden": "abc"}, TypeError, "hidden must be a tuple of ints"),
    (BayesLayersRegressor, {"hidden": (4, 0)}, ValueError, "hidden must hold ints >= 1"),
    (BayesLayersRegressor, {"hidden": (2.5,)}, ValueError, "hidden must hold ints >= 1"),
    (BayesLayersRegressor, {"activation": "sigmoid"}, ValueError, "activation must be one of"),
    (BayesLayersRegressor, {"head": 3}, TypeError, "head must be a name in"),
    (BayesLayersClassifier, {"head": heads.Gaussian()}, ValueError, "not a classification"),
    (BayesLayersRegressor, {"covariance": "full"}, ValueError, "covariance must be"),
    (BayesLayersRegressor, {"prior_precision": 0.0}, ValueError, "prior_precision must be"),
    (BayesLayersRegressor, {"noise": -1.0}, ValueError, "noise must be"),
    (BayesLayersRegressor, {"hidden_noise": 0.0}, ValueError, "hidden_noise must be"),
    (BayesLayersRegressor, {"damping": -1.0}, ValueError, "damping must be"),
    (BayesLayersRegressor, {"clip": 0.0}, ValueError, "clip must be"),
    (BayesLayersRegressor, {"bias_spread": -1.0}, ValueError, "bias_spread must be"),
    (BayesLayersRegressor, {"passes": 0}, ValueError, "passes must be"),
    (BayesLayersRegressor, {"batch_size": 0}, ValueError, "batch_size must be"),
    (BayesLayersRegressor, {"batch_size": 2.0}, TypeError, "batch_size must be an int"),
    (BayesLayersRegressor, {"shuffle": "yes"}, TypeError, "shuffle must be a bool"),
    (BayesLayersRegressor, {"dtype": "float16"}, ValueError, "dtype must be"),
    (BayesLayersRegressor, {"init": "pca"}, ValueError, "init must be"),
    (BayesLayersRegressor, {"sweeps": 0}, ValueError, "sweeps must be"),
    (BayesLayersRegressor, {"skip": "on"}, ValueError, "skip must be 'auto', True or False"),
    (BayesLayersClassifier, {"skip": 0}, TypeError, "skip must be 'auto', True or False"),
    (BayesLayersRegressor, {"head_prior": "neal"}, ValueError, "head_prior must be 'flat'"),
    (BayesLayersClassifier, {"head_prior": 2}, TypeError, "head_prior must be 'flat'"),
    (BayesLayersRegressor, {"random_state": -1}, ValueError, "random_state must be >= 0"),
    (BayesLayersRegressor, {"random_state": "seed"}, ValueError, "cannot be used to seed"),
]


@pytest.mark.parametrize(("cls", "params", "error", "match"), BAD_PARAMS)
def test_bad_parameters_raise_clear_errors(cls, params, error, match):
    X, y = np.random.default_rng(5).normal(size=(10, 2)), np.arange(10) % 2
    est = cls(**{"hidden": (3,), **params})
    with pytest.raises(error, match=match):
        est.fit(X, y)
    assert not hasattr(est, "network_") and not hasattr(est, "n_features_in_")


def test_classifier_partial_fit_class_errors():
    X, y = np.random.default_rng(6).normal(size=(10, 2)), np.arange(10) % 2
    clf = BayesLayersClassifier(hidden=(3,))
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        clf.partial_fit(X, y, classes=[0])
    clf.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match=r"labels \[7\] not among classes_"):
        clf.partial_fit(X, np.full(10, 7))
    with pytest.raises(ValueError, match="differs from classes_"):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="Unknown label type"):
        clf.partial_fit(X, np.linspace(0, 1, 10))


def _outputs(model, X) -> list[np.ndarray]:
    if isinstance(model, BayesLayersClassifier):
        return [
            model.predict(X),
            model.predict_proba(X),
            model.predict_proba(X, hidden="sample", n_samples=5),
        ]
    return [model.predict(X), *model.predict(X, return_std=True, hidden="sample", n_samples=5)]


@pytest.mark.parametrize("cls", [BayesLayersRegressor, BayesLayersClassifier])
def test_same_seed_gives_bitwise_identical_predictions(cls, tmp_path):
    X, y = load_digits(return_X_y=True)
    X, y = X[:150] / 16, y[:150]
    a, b = (cls(hidden=(12,), batch_size=10, random_state=7).fit(X, y) for _ in range(2))
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(a))
    loaded = pickle.loads(path.read_bytes())
    for out_a, out_b, out_loaded in zip(
        _outputs(a, X), _outputs(b, X), _outputs(loaded, X), strict=True
    ):
        assert out_a.tobytes() == out_b.tobytes() == out_loaded.tobytes()
    other = cls(hidden=(12,), batch_size=10, random_state=8).fit(X, y)
    assert _outputs(other, X)[-1].tobytes() != _outputs(a, X)[-1].tobytes()


_FRESH_PROCESS = """
import numpy as np
from bayeslayers.sklearn import BayesLayersRegressor
rng = np.random.default_rng(0)
X = rng.normal(size=(50, 3))
reg = BayesLayersRegressor(hidden=(6,), batch_size=5, random_state=3).fit(X, np.sin(X[:, 0]))
mean, std = reg.predict(X, return_std=True, hidden="sample", n_samples=10)
print((mean.tobytes() + std.tobytes()).hex())
"""


def test_predictions_identical_in_a_fresh_process():
    namespace: dict = {}
    exec(_FRESH_PROCESS.replace("print(", "result = ("), namespace)
    run = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == namespace["result"]


def test_health_report_through_the_estimator():
    X, y = load_digits(return_X_y=True)
    clf = BayesLayersClassifier(hidden=(10,), batch_size=20, random_state=0).fit(
        X[:200] / 16, y[:200]
    )
    report = clf.health(X[:50] / 16, y[:50])
    assert report.ok and len(report.layers) == 2
    assert report.layers[0].dead_units is not None and report.layers[0].max_correction >= 0


# ------------------------------------------------------------- units never matter
def _wave(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 3))
    return X, np.sin(2 * X[:, 0]) * np.cos(X[:, 1]) + 0.1 * rng.normal(size=n)


def test_regressor_predictions_are_equivariant_to_the_units_of_y():
    X, y = _wave()
    base = BayesLayersRegressor((20,), random_state=0).fit(X, y)
    moved = BayesLayersRegressor((20,), random_state=0).fit(X, 1000 * y - 7.0)
    mean, sd = base.predict(X[:50], return_std=True)
    mean2, sd2 = moved.predict(X[:50], return_std=True)
    np.testing.assert_allclose(mean2, 1000 * mean - 7.0, rtol=1e-6, atol=1e-6 * 1000)
    np.testing.assert_allclose(sd2, 1000 * sd, rtol=1e-6)


@pytest.mark.parametrize("estimator", [BayesLayersRegressor, BayesLayersClassifier])
def test_predictions_are_invariant_to_the_units_of_each_feature(estimator):
    X, y = _wave()
    if estimator is BayesLayersClassifier:
        y = (y > 0).astype(int)
    scales = np.array([1e-3, 1.0, 1e3])
    base = estimator((20,), random_state=0).fit(X, y)
    scaled = estimator((20,), random_state=0).fit(X * scales, y)
    if estimator is BayesLayersClassifier:
        out, out2 = base.predict_proba(X[:50]), scaled.predict_proba(X[:50] * scales)
    else:
        out, out2 = base.predict(X[:50]), scaled.predict(X[:50] * scales)
    np.testing.assert_allclose(out2, out, rtol=1e-6, atol=1e-9)


def test_default_signature_needs_no_hyperparameter():
    """Only the layer sizes, activation, head and seed are positional; the rest is optional."""
    import inspect

    params = inspect.signature(BayesLayersRegressor).parameters.values()
    positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ["hidden", "activation", "head", "random_state"]


def test_both_estimators_race_the_head_prior_and_keep_one_precision_per_block():
    """``head_prior="evidence"`` (the default): on a first call of no more rows than the head
    has inputs (100 units, 4 skip inputs, the bias), a regressor and a classifier race the
    flat and the fan-in prior, and on 80 rows of a linear target (and of its sign) the
    tighter prior on the 100 ReLU features wins. On more rows the prior is flat, and the
    head's evidence prior has one precision per block of its inputs."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = X @ np.array([1.0, -0.5, 0.25, 0.0]) + 0.3 * rng.normal(size=80)
    reg = BayesLayersRegressor(random_state=0).fit(X, y)
    assert reg.network_.head_prior == "evidence" and reg.network_.head_prior_ == "fan_in"
    clf = BayesLayersClassifier(random_state=0).fit(X, y > 0)
    assert clf.network_.head_prior == "evidence" and clf.network_.head_prior_ == "fan_in"
    X2 = rng.normal(size=(300, 4))
    more = BayesLayersClassifier(random_state=0).fit(X2, X2[:, 0] > 0)
    assert more.network_.head_prior_ == "flat"
    assert more.network_.head_precision_.shape == (3,)  # top units, skip inputs, bias
    assert not np.allclose(more.network_.head_precision_, 1.0)  # moved by the evidence
    assert BayesLayersRegressor(head_prior="fan_in").fit(X, y).network_.spec.head_prior == (
        "fan_in"
    )


def test_on_few_rows_of_a_noisy_boundary_the_classifier_s_race_beats_the_flat_prior():
    """80 rows of a noisy linear boundary (P(y = 1) = sigmoid(x b)): 100 ReLU features under
    the flat prior overfit the one-hot head; the race picks the fan-in prior by the labels'
    evidence and predicts held-out classes better."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1080, 5))
    p = 1.0 / (1.0 + np.exp(-(X @ np.array([1.5, -1.0, 0.5, 0.0, 0.8]))))
    y = (rng.uniform(size=len(X)) < p).astype(int)
    default = BayesLayersClassifier(random_state=0).fit(X[:80], y[:80])
    flat = BayesLayersClassifier(random_state=0, head_prior="flat").fit(X[:80], y[:80])
    assert default.network_.head_prior_ == "fan_in"
    nll = [metrics.nll_classification(y[80:], m.predict_proba(X[80:])) for m in (default, flat)]
    assert nll[0] < nll[1] - 0.05


def test_a_few_rows_of_a_linear_target_are_fitted_about_as_well_as_by_bayesian_ridge():
    """60 rows: 100 ReLU features and the skip connection under a flat head prior overfit
    (the prior variance of the head's output grows with the width); the evidence's choice
    of the fan-in prior brings the default close to Bayesian linear regression."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 5))
    y = X @ rng.normal(size=5) + 0.5 * rng.normal(size=120)
    Xt, yt = X[60:], y[60:]
    default = BayesLayersRegressor(random_state=0).fit(X[:60], y[:60])
    flat = BayesLayersRegressor(random_state=0, head_prior="flat").fit(X[:60], y[:60])
    linear = BayesianRidge().fit(X[:60], y[:60])
    errors = [metrics.rmse(yt, m.predict(Xt)) for m in (default, flat, linear)]
    assert errors[0] < 0.9 * errors[1] and errors[0] < 1.15 * errors[2]


def test_heavy_tailed_features_get_the_tail_transform_and_are_learned():
    """Cauchy features: the z-score squeezes the bulk of the rows into a sliver, and the
    network learns little more than the linear model; the tail transform the standardization
    chooses (``x_tail_``) lets it learn the curve. Gaussian features keep their z-score."""
    rng = np.random.default_rng(0)
    X = rng.standard_cauchy(size=(800, 4))
    y = np.tanh(X[:, 0]) + X[:, 1].clip(-2, 2) + 0.1 * rng.normal(size=800)
    reg = BayesLayersRegressor(random_state=0).fit(X[:600], y[:600])
    assert np.all(np.isfinite(reg.x_tail_))
    np.testing.assert_allclose(
        reg.network_features(X[600:]),
        scaling.standardize(X[600:], reg.x_mean_, reg.x_scale_, reg.x_tail_),
    )
    scaler = StandardScaler().fit(X[:600])
    linear = BayesianRidge().fit(scaler.transform(X[:600]), y[:600])
    baseline = metrics.rmse(y[600:], linear.predict(scaler.transform(X[600:])))
    assert metrics.rmse(y[600:], reg.predict(X[600:])) < 0.5 * baseline
    gaussian = BayesLayersRegressor(random_state=0).fit(rng.normal(size=(300, 3)), y[:300])
    assert np.all(np.isinf(gaussian.x_tail_))


@pytest.mark.parametrize("make", ["make_friedman2", "make_friedman3"])
def test_defaults_are_calibrated_on_data_nobody_tuned_for(make):
    """No argument but the data: the learned noise gives held-out 90% intervals that cover
    about 90% and a smaller error than Bayesian linear regression (Friedman 2's features and
    target span scales of 1 to 1,000)."""
    noise = {"make_friedman2": 10.0, "make_friedman3": 0.1}[make]
    X, y = getattr(sklearn.datasets, make)(1000, noise=noise, random_state=0)
    reg = BayesLayersRegressor(random_state=0).fit(X[:750], y[:750])
    mean, std = reg.predict(X[750:], return_std=True)
    low, high = metrics.central_interval(mean, std, 0.9, dof=reg.predictive_dof())
    assert 0.84 <= metrics.interval_coverage(y[750:], low, high) <= 0.96
    scaler = StandardScaler().fit(X[:750])
    linear = BayesianRidge().fit(scaler.transform(X[:750]), y[:750])
    baseline = metrics.rmse(y[750:], linear.predict(scaler.transform(X[750:])))
    assert metrics.rmse(y[750:], mean) < 0.7 * baseline
