"""The library's defaults on data nobody tuned for, against the usual baselines.

Every bayeslayers model here is an estimator with no argument but its layer sizes
(``BayesLayersRegressor(hidden=...)`` / ``BayesLayersClassifier(hidden=...)``): noise, pseudo
noise, structure, initialization, batch size and standardization are the defaults. Per dataset
and seed (the seed draws the random split and every model's initialization):

* ``bayeslayers``: the defaults, one pass;
* ``fixed``: the same estimator with every learned setting fixed instead (noise and hidden
  noise 1, the head's noise memory and prior not chosen by evidence, no hidden memory race,
  no iterate average, the hidden layers' predictive scale 1, the head's flat prior): the
  cost baseline of the tuning-free path (the one-hot head at temperature 1, also on two
  classes, where the defaults race it against a probit readout);
* ``tuned variant``: the shipped ``variants/*.toml`` for the dataset, where one exists;
* ``mlp-1epoch``: scikit-learn's MLP, same hidden sizes, batch size 1, one epoch (Adam);
* ``mlp-converged``: the same MLP with its default batch, up to 2,000 epochs with
  ``tol=1e-6`` and ``n_iter_no_change=20``;
* ``linear``: ``BayesianRidge`` (regression) or ``LogisticRegression`` (classification).

Protocol: random splits (``--test-fraction``), the baselines' features standardized with the
training statistics (bayeslayers standardizes internally), regression metrics in the target's
own units. RMSE and the Gaussian log-likelihood per row (the MLPs' from their training
residual variance; BayesianRidge's own ``return_std``); accuracy, NLL and ECE for classifiers.
``fit s`` is training time in the same process, after a warm-up compiling the kernels; for
``bayeslayers`` and ``fixed``, whose ratio is the cost of the tuning-free path, the median of
:data:`REPEATS` or more fits made in turn (deterministic: every fit gives the same model;
rounds are added, up to :data:`MAX_REPEATS`, until they took :data:`MIN_SECONDS`), since the
small data sets train in a tenth of a second, where one fit's time is mostly noise.
Means over seeds, with standard errors, go to a Markdown table on stdout and every row to
JSON (``--out``).

``python benchmarks/tuning_free.py --seeds 5`` runs the suite; ``--datasets`` picks some, and
``--datasets probes`` runs the probes: data sets no default was developed on (scikit-learn's
Friedman 1-3 regressions, moons, circles, iris and two ``make_classification`` tasks, one with
500 features), drawn once with ``random_state=0``, as a check that the defaults generalize.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn import datasets as skdata
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import BayesianRidge, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import StandardScaler

from bayeslayers import config, heads, metrics
from bayeslayers.datasets import load_dataset
from bayeslayers.sklearn import BayesLayersClassifier, BayesLayersRegressor

ROOT = Path(__file__).resolve().parents[1]

#: Dataset -> (task, hidden sizes, tuned variant or None).
DATASETS = {
    "sine-1d": ("regression", (50, 50), "sine-relu"),
    "wave-2d": ("regression", (50, 50), "wave-relu"),
    "diabetes": ("regression", (100,), None),
    "breast_cancer": ("classification", (100,), None),
    "wine": ("classification", (100,), None),
    "digits": ("classification", (100,), "digits-relu"),
    "mnist-5k": ("classification", (100,), "mnist-5k-relu"),
}
SKLEARN = {
    "diabetes": skdata.load_diabetes,
    "breast_cancer": skdata.load_breast_cancer,
    "wine": skdata.load_wine,
}
#: Probes: data sets no default was developed on (``--datasets probes``). Each generator is
#: drawn once with ``random_state=0``; the seed draws the split, as for the suite.
PROBES = {
    "friedman1": ("regression", lambda: skdata.make_friedman1(1000, noise=1.0, random_state=0)),
    "friedman1-10k": (
        "regression",
        lambda: skdata.make_friedman1(10000, noise=1.0, random_state=0),
    ),
    "friedman2": ("regression", lambda: skdata.make_friedman2(1000, noise=10.0, random_state=0)),
    "friedman3": ("regression", lambda: skdata.make_friedman3(1000, noise=0.1, random_state=0)),
    "moons": ("classification", lambda: skdata.make_moons(1000, noise=0.25, random_state=0)),
    "circles": (
        "classification",
        lambda: skdata.make_circles(1000, noise=0.1, factor=0.5, random_state=0),
    ),
    "iris": ("classification", lambda: skdata.load_iris(return_X_y=True)),
    "classification-40": (
        "classification",
        lambda: skdata.make_classification(
            3000, 40, n_informative=8, n_classes=4, flip_y=0.02, random_state=0
        ),
    ),
    "classification-500": (
        "classification",
        lambda: skdata.make_classification(
            2000, 500, n_informative=20, n_classes=3, flip_y=0.02, random_state=0
        ),
    ),
}


def _tiny_linear():
    """60 rows: a linear target on 4 features, noise sd 0.3."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    return X, X @ [1.0, -2.0, 0.5, 0.0] + 0.3 * rng.normal(size=60)


def _heavy_tail():
    """800 rows on 5 features: sin(x0) * 3 + x1^2 plus Student-t (2 dof) noise of scale 0.5."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 5))
    return X, 3 * np.sin(X[:, 0]) + X[:, 1] ** 2 + 0.5 * rng.standard_t(2, size=800)


#: Probes added after the first defaults were set on the others (robustness of the
#: calibration and of the linear part): imbalanced, overlapping and many classes, a linear
#: target, a tiny data set, heavy-tailed noise.
PROBES.update(
    {
        "imbalanced": (
            "classification",
            lambda: skdata.make_classification(
                2000, 10, n_informative=5, weights=[0.95], random_state=0
            ),
        ),
        "quantiles": (
            "classification",
            lambda: skdata.make_gaussian_quantiles(
                n_samples=1500, n_features=4, n_classes=3, random_state=0
            ),
        ),
        "classification-20c": (
            "classification",
            lambda: skdata.make_classification(
                3000, 30, n_informative=12, n_classes=20, n_clusters_per_class=1, random_state=0
            ),
        ),
        "linear-20": (
            "regression",
            lambda: skdata.make_regression(500, 20, n_informative=10, noise=10.0, random_state=0),
        ),
        "tiny-linear": ("regression", _tiny_linear),
        "heavy-tail": ("regression", _heavy_tail),
    }
)
#: Probes added with the hidden layers' predictive scale (``hidden_scale``): inputs wide
#: beside the rows, more features than training rows and a few informative among many.
PROBES.update(
    {
        "wide-linear": (
            "regression",
            lambda: skdata.make_regression(300, 500, n_informative=10, noise=10.0, random_state=0),
        ),
        "friedman1-wide": (
            "regression",
            lambda: skdata.make_friedman1(600, n_features=200, noise=1.0, random_state=0),
        ),
    }
)


def _cauchy_features():
    """800 rows of 4 Cauchy features: tanh(x0) + clip(x1, -2, 2) plus N(0, 0.1^2) noise."""
    rng = np.random.default_rng(0)
    X = rng.standard_cauchy(size=(800, 4))
    return X, np.tanh(X[:, 0]) + X[:, 1].clip(-2, 2) + 0.1 * rng.normal(size=800)


#: Probes added with the head's fan-in prior (``head_prior``): fewer rows than the head has
#: weights (scikit-learn's Linnerud, 20 rows, the first target; diabetes' first 100 rows),
#: and heavy-tailed features, which the standardization squeezes (left open).
PROBES.update(
    {
        "linnerud": (
            "regression",
            lambda: (skdata.load_linnerud().data, skdata.load_linnerud().target[:, 0]),
        ),
        "diabetes-100": (
            "regression",
            lambda: tuple(a[:100] for a in skdata.load_diabetes(return_X_y=True)),
        ),
        "cauchy-features": ("regression", _cauchy_features),
    }
)
DATASETS.update({name: (task, (100,), None) for name, (task, _) in PROBES.items()})
SUITE = [name for name in DATASETS if name not in PROBES]


def load(name: str, seed: int, test_fraction: float):
    """Raw (unstandardized) train/test split of a dataset."""
    if name in SKLEARN or name in PROBES:
        X, y = SKLEARN[name](return_X_y=True) if name in SKLEARN else PROBES[name][1]()
        stratify = y if DATASETS[name][0] == "classification" else None
        return train_test_split(X, y, test_size=test_fraction, random_state=seed, stratify=stratify)
    data = load_dataset(name, seed=seed, test_fraction=test_fraction, standardize=False)
    return data.X_train, data.X_test, data.y_train, data.y_test


def regression_scores(y, mean, std, dof=None) -> dict:
    """Scores of a Gaussian predictive, or a Student-t one with ``dof`` (a learned noise)."""
    interval = metrics.central_interval(mean, std, 0.9, dof=dof)
    return {
        "rmse": metrics.rmse(y, mean),
        "loglik": -metrics.nll_student_t(y, mean, std, dof),
        "coverage90": metrics.interval_coverage(y, *interval),
        "mean_sd": float(np.mean(std)),
    }


def classification_scores(y, proba, classes) -> dict:
    return {
        "accuracy": metrics.accuracy(y, proba, classes=classes),
        "nll": metrics.nll_classification(y, proba, classes=classes),
        "ece": metrics.ece(y, proba, classes=classes),
    }


def model_scores(model, X_test, y_test, classes, X_train, y_train) -> dict:
    """The task's scores of a fitted model on ``(X_test, y_test)``: a classifier's
    (``classes`` given) or a regressor's, an MLP's sd being its residual sd on the
    standardized training rows ``(X_train, y_train)``."""
    if classes is not None:
        return classification_scores(y_test, model.predict_proba(X_test), classes)
    if isinstance(model, MLPRegressor):
        sd = np.full(len(y_test), np.std(y_train - model.predict(X_train)))
        return regression_scores(y_test, model.predict(X_test), sd)
    dof = model.predictive_dof() if hasattr(model, "predictive_dof") else None
    return regression_scores(y_test, *model.predict(X_test, return_std=True), dof)


#: Timed fits of ``bayeslayers`` and of ``fixed``, made in turn: at least :data:`REPEATS`
#: rounds, and more (up to :data:`MAX_REPEATS`) until the rounds took :data:`MIN_SECONDS`.
REPEATS = 5
MIN_SECONDS = 3.0
MAX_REPEATS = 25


def timed(fit):
    start = time.perf_counter()
    model = fit()
    return model, time.perf_counter() - start


def timed_in_turn(*fits):
    """Each fit's model and the median of its times, the fits made in turn (so that both see
    the same state of the machine), for :data:`REPEATS` rounds or, on data small enough that
    those take under :data:`MIN_SECONDS`, for more rounds, up to :data:`MAX_REPEATS`."""
    times: list[list[float]] = [[] for _ in fits]
    models = [None] * len(fits)
    rounds, spent = 0, 0.0
    while rounds < REPEATS or (spent < MIN_SECONDS and rounds < MAX_REPEATS):
        for i, fit in enumerate(fits):
            models[i], t = timed(fit)
            times[i].append(t)
            spent += t
        rounds += 1
    return [(m, float(np.median(t))) for m, t in zip(models, times, strict=True)]


def run_models(name: str, seed: int, test_fraction: float) -> list[dict]:
    task, hidden, variant = DATASETS[name]
    Xtr, Xte, ytr, yte = load(name, seed, test_fraction)
    scaler = StandardScaler().fit(Xtr)
    Str, Ste = scaler.transform(Xtr), scaler.transform(Xte)
    rows = []

    def add(model_name, score, seconds, **extra):
        rows.append(
            {"dataset": name, "seed": seed, "model": model_name, "fit_s": seconds, **score, **extra}
        )

    regression = task == "regression"
    classes = None if regression else np.unique(ytr)

    def score(model, X):
        return model_scores(model, X, yte, classes, Str, ytr)

    Estimator = BayesLayersRegressor if regression else BayesLayersClassifier
    # the fixed-hyperparameter path; classifiers also fix the one-hot head's noise memory,
    # prior and temperature; no iterate average (its use is chosen by evidence)
    head = (
        "gaussian"
        if regression
        else heads.OneHot(noise_memory=None, prior_evidence=False, temperature=None)
    )
    (net, t), (fixed, t_fixed) = timed_in_turn(
        lambda: Estimator(hidden, random_state=seed).fit(Xtr, ytr),
        lambda: Estimator(
            hidden,
            head=head,
            random_state=seed,
            noise=1.0,
            hidden_noise=1.0,
            memory=None,
            average=False,
            hidden_scale=1.0,
            head_prior="flat",
        ).fit(Xtr, ytr),
    )
    evidence = {"log_evidence_per_row": net.network_.log_evidence_ / len(Xtr)}
    add("bayeslayers", score(net, Xte), t, **(evidence if regression else {}))
    add("fixed", score(fixed, Xte), t_fixed)
    MLP = MLPRegressor if regression else MLPClassifier
    for label, kwargs in (
        ("mlp-1epoch", {"batch_size": 1, "max_iter": 1}),
        ("mlp-converged", {"max_iter": 2000, "tol": 1e-6, "n_iter_no_change": 20}),
    ):
        mlp, t = timed(
            lambda kw=kwargs: MLP(hidden_layer_sizes=hidden, random_state=seed, **kw).fit(Str, ytr)
        )
        add(label, score(mlp, Ste), t, n_iter=mlp.n_iter_)
    linear = BayesianRidge() if regression else LogisticRegression(max_iter=5000)
    linear, t = timed(lambda: linear.fit(Str, ytr))
    add("linear", score(linear, Ste), t)
    if variant is not None:
        rows.append(run_variant(variant, name, seed, test_fraction))
    return rows


def run_variant(variant: str, name: str, seed: int, test_fraction: float) -> dict:
    """The shipped tuned variant on the same split (its own data preparation)."""
    cfg = config.load(ROOT / "variants" / f"{variant}.toml")
    data_kwargs = {k: v for k, v in cfg.data.items() if k not in ("name", "seed", "test_fraction")}
    data = load_dataset(name, seed=seed, test_fraction=test_fraction, **data_kwargs)
    net = config.build_network(cfg)
    net.seed = seed
    _, t = timed(
        lambda: net.fit(
            data.X_train,
            data.y_train,
            passes=cfg.train["passes"],
            batch_size=cfg.train["batch_size"],
        )
    )
    if data.task == "regression":
        # the variant's loader standardizes y; scores are in that variant's units
        mean, std = net.predict(data.X_test, return_std=True)
        score = regression_scores(data.y_test, mean, std, net.predictive_dof())
    else:
        score = classification_scores(data.y_test, net.predict_proba(data.X_test), net.classes_)
    return {"dataset": name, "seed": seed, "model": "tuned variant", "fit_s": t, **score}


def warm_up() -> None:
    """Compile the kernels once (numba), so that no timed fit pays for it."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 300))
    for structure in ("unit", "diag"):
        BayesLayersRegressor((5,), covariance=structure).fit(X[:, :4], X[:, 0])
        BayesLayersClassifier((5,), covariance=structure).fit(X, X[:, 0] > 0)
    BayesLayersClassifier((5,)).fit(X[:, :4], X[:, 0] > 0)  # the shared head's kernel


def table(rows: list[dict]) -> str:
    keys = ["rmse", "loglik", "coverage90", "mean_sd", "accuracy", "nll", "ece", "fit_s"]
    lines = ["| dataset | model | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["model"]), []).append(r)
    for (ds, model), rs in groups.items():
        cells = []
        for k in keys:
            vals = np.array([r[k] for r in rs if k in r], dtype=float)
            if not len(vals):
                cells.append("")
                continue
            se = vals.std(ddof=1) / np.sqrt(len(vals)) if len(vals) > 1 else 0.0
            cells.append(f"{vals.mean():.4g} ± {se:.2g}")
        lines.append(f"| {ds} | {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def arguments(description: str, datasets: list[str], choices: list[str], out: str, argv=None):
    """The command line shared by the benchmarks on this protocol: ``--datasets``
    (default ``datasets``), ``--seeds``, ``--test-fraction`` and ``--out`` (a JSON file under
    ``benchmarks/out`` by default)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--datasets", nargs="+", default=datasets, choices=choices)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / out)
    return parser.parse_args(argv)


def collect(run, names: list[str], args) -> list[dict]:
    """The rows of ``run(name, seed, test_fraction)`` (a list per call) for every data set and
    seed of ``args``, after :func:`warm_up`; also written to ``args.out`` as JSON."""
    warm_up()
    rows = []
    for name in names:
        for seed in range(args.seeds):
            rows.extend(run(name, seed, args.test_fraction))
            print(f"{name} seed {seed} done", file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    return rows


def main(argv=None) -> int:
    description = __doc__.splitlines()[0] + " ('probes' adds every probe)"
    args = arguments(description, SUITE, [*DATASETS, "probes"], "tuning_free.json", argv)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    names = [n for n in args.datasets if n != "probes"]
    if "probes" in args.datasets:
        names += [n for n in PROBES if n not in names]
    rows = collect(run_models, names, args)
    print(
        f"`python benchmarks/tuning_free.py {' '.join(argv or sys.argv[1:])}` "
        f"({args.seeds} seeds, means ± standard errors)\n"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
