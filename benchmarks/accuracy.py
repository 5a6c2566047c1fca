"""One-pass accuracy of bayeslayers against backprop and a random-feature control.

For each dataset and seed (the seed draws the train/test split and the initialization):

* ``bayeslayers``: every requested layer variant and covariance structure, one pass and
  ``--passes`` passes (tempered, ``fraction = 1 / passes``);
* ``control``: the hidden layers frozen at their prior mean (random ReLU features with the same
  He-scaled weights and bias spread), only the head updated: Bayesian linear regression on
  random features;
* ``mlp-1epoch``: scikit-learn's MLP with the same hidden sizes, batch size 1, one epoch (Adam);
* ``mlp-converged``: the same MLP with its defaults (Adam, batch 200) until convergence.

Metrics on the test split: accuracy and negative log likelihood (classification), RMSE and
Gaussian NLL (regression; not for the MLP, which gives no predictive spread). Predictions use the
hidden layers' posterior means, the head's weight uncertainty integrated analytically. Mean and
standard deviation over seeds are printed as a Markdown table and written with every run to JSON.

With ``--set init=samples`` the control's features come from the same data-dependent prior
mean as the trained network's. (The prototypes of process noise, propagation order and
target step, all negative, were a ``--tweak`` option of this script up to commit ec954bc; the
two that worked became ``Network(init=..., sweeps=...)``.)

Run ``python benchmarks/accuracy.py --quick`` (two seeds, the ReLU variant only) or see
``--help``. ``--write-results`` replaces the generated table inside ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor

from bayeslayers import Network, engine, heads, layers
from bayeslayers.datasets import load_dataset
from bayeslayers.metrics import nll_gaussian, rmse

#: Per dataset: hidden sizes, batch size of the bayeslayers fits, Network keywords, and whether
#: to standardize the features (not MNIST pixels: rare pixels would get huge values). MNIST's
#: 784 pixels in [0, 1] give pre-activations of spread ~0.5, so its hidden biases get 0.1.
SETUPS = {
    "sine-1d": {"hidden": (50, 50), "batch": 1, "net": {"noise": 0.01}},
    "wave-2d": {"hidden": (50, 50), "batch": 1, "net": {"noise": 0.01}},
    "digits": {"hidden": (100,), "batch": 1, "net": {}},
    "mnist-5k": {"hidden": (100,), "batch": 32, "net": {"bias_spread": 0.1}, "standardize": False},
}
MARKERS = ("<!-- accuracy.py:begin -->", "<!-- accuracy.py:end -->")


def classification_scores(y, proba, classes) -> dict:
    index = np.searchsorted(classes, y)
    p = np.clip(proba[np.arange(len(y)), index], 1e-12, None)
    return {
        "accuracy": float(np.mean(classes[proba.argmax(1)] == y)),
        "nll": -float(np.log(p).mean()),
    }


def regression_scores(y, mean, std=None) -> dict:
    scores = {"rmse": rmse(y, mean)}
    if std is not None:
        scores["nll"] = nll_gaussian(y, mean, std)
    return scores


def score_network(net: Network, data) -> dict:
    if data.task == "classification":
        return classification_scores(data.y_test, net.predict_proba(data.X_test), net.classes_)
    # Hidden layers at their posterior means (as predict_proba does by default); the head's
    # weight uncertainty and the noise are integrated analytically.
    mean, var = net.predict_moments(data.X_test, n_samples=None)
    return regression_scores(data.y_test, mean[:, 0], np.sqrt(var[:, 0]))


#: Classification heads selectable with ``--head``.
CLASSIFIER_HEADS = {
    "onehot": heads.OneHot,
    "probit-adf": lambda: heads.Probit(fit="adf"),
    "logistic-laplace": lambda: heads.Logistic(fit="laplace"),
}


def make_head(task: str, kind: str = "onehot"):
    return CLASSIFIER_HEADS[kind]() if task == "classification" else heads.Gaussian()


def random_features(X, hidden, seed: int, bias_spread: float) -> np.ndarray:
    """ReLU features of the prior mean: He-scaled weights, biases with spread ``bias_spread``."""
    rng = np.random.default_rng(seed)
    A = X
    for units in hidden:
        W = rng.normal(0.0, np.sqrt(2.0 / A.shape[1]), (A.shape[1], units))
        A = np.maximum(A @ W + rng.normal(0.0, bias_spread, units), 0.0)
    return A


def run_bayeslayers(data, setup, variant, structure, passes, seed, overrides) -> dict:
    kwargs = setup["net"] | overrides
    layer_kwargs = setup.get("layer", {}) if variant == "leaky_relu" else {}
    hidden = [layers.make_layer(variant, units=u, **layer_kwargs) for u in setup["hidden"]]
    head = make_head(data.task, setup.get("head", "onehot"))
    if setup.get("head_covariance"):  # e.g. a mean-field body under a per-unit head
        head = dataclasses.replace(head, covariance=setup["head_covariance"])
    net = Network(hidden, head=head, covariance=structure, seed=seed, **kwargs)
    start = time.perf_counter()
    net.fit(data.X_train, data.y_train, passes=passes, batch_size=setup["batch"])
    return {"time_s": time.perf_counter() - start, **score_network(net, data)}


def run_control(data, setup, seed, overrides) -> dict:
    kwargs = setup["net"] | overrides
    bias_spread = kwargs.get("bias_spread", Network().bias_spread)
    if kwargs.get("init", "he") == "he":
        F_train, F_test = (
            random_features(X, setup["hidden"], seed, bias_spread)
            for X in (data.X_train, data.X_test)
        )
    else:  # the same data-dependent prior mean as the trained network's
        prior = Network([layers.ReLU(u) for u in setup["hidden"]], seed=seed, **kwargs)
        prior.initialize(data.X_train, np.zeros(len(data.X_train)))
        F_train, F_test = (
            engine.forward(prior.spec, prior.posteriors_, X)[0][:, :-1]
            for X in (data.X_train, data.X_test)
        )
    kwargs = {k: v for k, v in kwargs.items() if k not in ("init", "sweeps")}
    net = Network([], head=make_head(data.task, setup.get("head", "onehot")), seed=seed, **kwargs)
    start = time.perf_counter()
    net.fit(F_train, data.y_train, batch_size=setup["batch"])
    elapsed = time.perf_counter() - start
    if data.task == "classification":
        scores = classification_scores(data.y_test, net.predict_proba(F_test), net.classes_)
    else:
        mean, var = net.predict_moments(F_test, n_samples=None)
        scores = regression_scores(data.y_test, mean[:, 0], np.sqrt(var[:, 0]))
    return {"time_s": elapsed, **scores}


def run_mlp(data, setup, seed, converged: bool) -> dict:
    cls = MLPClassifier if data.task == "classification" else MLPRegressor
    options = {} if converged else {"batch_size": 1, "max_iter": 1, "shuffle": True}
    model = cls(hidden_layer_sizes=setup["hidden"], random_state=seed, max_iter=500)
    model.set_params(**options)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(data.X_train, data.y_train)
    elapsed = time.perf_counter() - start
    if data.task == "classification":
        scores = classification_scores(
            data.y_test, model.predict_proba(data.X_test), model.classes_
        )
    else:
        scores = regression_scores(data.y_test, model.predict(data.X_test))
    return {"time_s": elapsed, **scores}


def summarize(runs: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds of every metric, per (dataset, model)."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["dataset"], run["model"]), []).append(run)
    table = []
    for (dataset, model), items in groups.items():
        row = {"dataset": dataset, "model": model, "seeds": len(items)}
        for metric in ("accuracy", "nll", "rmse", "time_s"):
            values = [item[metric] for item in items if metric in item]
            if values:
                row[metric] = (float(np.mean(values)), float(np.std(values)))
        table.append(row)
    return table


def markdown(table: list[dict]) -> str:
    lines = [
        "| dataset | model | seeds | accuracy | NLL | RMSE | time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table:
        cells = []
        for metric, fmt in (
            ("accuracy", ".2%"),
            ("nll", ".3f"),
            ("rmse", ".4f"),
            ("time_s", ".1f"),
        ):
            if metric in row:
                mean, sd = row[metric]
                cells.append(f"{mean:{fmt}} ± {sd:{fmt}}")
            else:
                cells.append("")
        lines.append(
            f"| {row['dataset']} | {row['model']} | {row['seeds']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def write_results(text: str, path: Path = Path("benchmarks/RESULTS.md")) -> None:
    """Replace the generated block between the markers (appended to the section if absent)."""
    content = path.read_text()
    begin, end = MARKERS
    block = f"{begin}\n{text}\n{end}"
    if begin in content:
        head, rest = content.split(begin, 1)
        content = head + block + rest.split(end, 1)[1]
    else:
        anchor = "## New results (this session)\n"
        if anchor not in content:
            raise ValueError(f"{path} has no '{anchor.strip()}' section")
        content = content.replace(anchor, anchor + "\n" + block + "\n", 1)
    path.write_text(content)


def parse_setting(item: str) -> tuple[str, object]:
    """``KEY=VALUE`` with a JSON value, or a bare string (``init=pca``)."""
    key, value = item.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv=None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--variants", nargs="+", default=["relu", "leaky_relu", "taylor_tanh"])
    parser.add_argument("--structures", nargs="+", default=["unit", "shared", "diag"])
    parser.add_argument("--passes", type=int, default=3, help="k of the k-pass runs (0: none)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from here")
    parser.add_argument("--quick", action="store_true", help="2 seeds, ReLU only, no k passes")
    parser.add_argument("--no-baselines", action="store_true", help="skip MLP and control")
    parser.add_argument("--control-only", action="store_true", help="no MLP baselines")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="Network keyword overrides"
    )
    parser.add_argument("--batch", type=int, help="batch size (default: per dataset)")
    parser.add_argument("--head", default="onehot", choices=list(CLASSIFIER_HEADS))
    parser.add_argument(
        "--head-covariance",
        choices=["unit", "shared", "diag"],
        help="the head's covariance structure (default: that of the hidden layers)",
    )
    parser.add_argument("--alpha", type=float, help="LeakyReLU slope")
    parser.add_argument(
        "--scale",
        choices=["standardize", "unit"],
        default=None,
        help="features: standardized on the train split, or divided by their global max",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/accuracy.json"))
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.variants, args.passes = 2, ["relu"], 0
    overrides = dict(parse_setting(item) for item in args.set)

    runs = []
    for name in args.datasets:
        setup = SETUPS[name] | {"head": args.head, "head_covariance": args.head_covariance}
        if args.batch:
            setup["batch"] = args.batch
        if args.alpha is not None:
            setup["layer"] = {"alpha": args.alpha}
        standardize = setup.get("standardize", True)
        if args.scale:
            standardize = args.scale == "standardize"
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            data = load_dataset(name, seed=seed, standardize=standardize)
            if not standardize and args.scale == "unit":
                top = data.X_train.max()
                data = data._replace(X_train=data.X_train / top, X_test=data.X_test / top)
            jobs = []
            for variant in args.variants:
                for structure in args.structures:
                    for passes in sorted({1, args.passes} - {0}):
                        label = f"{variant}-{structure}-{passes}pass"
                        if args.head_covariance:
                            label += f" ({args.head_covariance} head)"
                        jobs.append(
                            (label, run_bayeslayers, (data, setup, variant, structure, passes))
                        )
            if not args.no_baselines:
                jobs += [("control (random features)", run_control, (data, setup))]
            if not (args.no_baselines or args.control_only):
                jobs += [
                    ("mlp-1epoch (batch 1)", run_mlp, (data, setup, seed, False)),
                    ("mlp-converged", run_mlp, (data, setup, seed, True)),
                ]
            for label, func, fargs in jobs:
                if func is run_mlp:
                    result = func(*fargs)
                else:
                    result = func(*fargs, seed, overrides)
                runs.append({"dataset": name, "model": label, "seed": seed, **result})
                print(json.dumps(runs[-1]), flush=True)
    table = summarize(runs)
    text = markdown(table)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"argv": argv, "overrides": overrides, "runs": runs, "table": table},
            indent=1,
        )
    )
    if args.write_results:
        write_results(text)
    return runs


if __name__ == "__main__":
    main()
