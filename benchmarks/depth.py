"""Every backward strategy at every depth, one pass, against backprop and a random-feature control.

Everything runs with the library's defaults and nothing but the layer sizes: for each dataset,
depth (number of equal-width ReLU hidden layers) and seed (the seed draws the train/test split
and the initialization):

* ``<strategy>``: ``BayesLayersRegressor`` / ``BayesLayersClassifier`` with
  ``hidden=(width,) * depth``, ``random_state=seed`` and ``targets=<strategy>`` for every
  requested key of ``bayeslayers.propagation.TARGETS``, on the data in its own units (the
  estimator's own standardization, ``batch_size="auto"``, learned noises, ``init="samples"``,
  ``covariance="auto"``, one pass);
* ``control``: the same network with its hidden layers frozen at their initialization
  (``Network.initialize`` on the estimator's standardized inputs and targets, the defaults of
  ``Network``); only a default head is trained, on those frozen features, at the same batch size;
* ``mlp-1epoch``: scikit-learn's MLP with the same hidden sizes, batch size 1, one epoch;
* ``mlp-converged``: the same MLP with its defaults until convergence (at most 500 epochs).
  The MLPs see the inputs scikit-learn recommends: standardized features, MNIST's pixels in
  ``[0, 1]``.

Metrics on the test split: accuracy, NLL and ECE (15 bins) for classification; RMSE, NLL and
the coverage of the central 90 % interval of the library's Student-t predictive
(``predictive_dof()``) for regression (the MLP gives no predictive spread: RMSE only), and on
the synthetic tasks the RMSE against the noise-free function (``rmse_f``, whose floor is 0,
where the test RMSE's is the noise). Per-sample cost is the ``fit`` time divided by the
training rows. The printed report holds mean and standard deviation over seeds, and the paired
differences (mean and standard error over seeds, same splits) of every strategy against the
control, against ``min_norm`` and against ``--reference``; every run goes to JSON with the
library's commit.

Run ``OPENBLAS_NUM_THREADS=1 python benchmarks/depth.py --seeds 5`` or see ``--help``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor

from bayeslayers import Network, engine, heads, layers
from bayeslayers.datasets import DATASETS, load_dataset
from bayeslayers.metrics import (
    central_interval,
    ece,
    interval_coverage,
    nll_classification,
    nll_student_t,
    rmse,
)
from bayeslayers.propagation import TARGETS
from bayeslayers.sklearn import BayesLayersClassifier, BayesLayersRegressor, auto_batch_size

#: Hidden width per dataset (the only size given; everything else is a default).
WIDTHS = {"sine-1d": 50, "wave-2d": 50, "digits": 100, "mnist-5k": 100}
#: Datasets whose MLP inputs stay in their units (MNIST's pixels, already in [0, 1]).
RAW_FOR_MLP = ("mnist-5k",)
CONTROL = "control (random features)"
METRICS = ("accuracy", "rmse", "rmse_f", "nll", "ece", "coverage90", "us_per_sample")


def classification(y, proba, classes) -> dict:
    index = np.searchsorted(classes, y)
    return {
        "accuracy": float(np.mean(proba.argmax(1) == index)),
        "nll": nll_classification(index, proba),
        "ece": ece(index, proba),
    }


def regression(y, mean, std=None, dof=None, truth=None) -> dict:
    """RMSE (and to ``truth``); with ``std``, NLL and 90 % coverage of a Student-t (``dof``)."""
    scores = {"rmse": rmse(y, mean)}
    if truth is not None:
        scores["rmse_f"] = rmse(truth, mean)
    if std is not None:
        scores["nll"] = nll_student_t(y, mean, std, dof)
        lower, upper = central_interval(mean, std, 0.9, dof=dof)
        scores["coverage90"] = interval_coverage(y, lower, upper)
    return scores


class Split:
    r"""One seed's split: the data in its units for the library, and the MLP's inputs.

    ``frequency`` (sine-1d only) swaps the target for :math:`\sin(\omega x)` plus the same
    noise draw, on the same inputs and split: a harder 1-D task than :math:`\sin(3x)`.
    """

    def __init__(
        self,
        name: str,
        seed: int,
        n_samples: int | None,
        noise_sd: float,
        frequency: float | None = None,
    ) -> None:
        data = load_dataset(
            name,
            seed=seed,
            n_samples=n_samples,
            noise_sd=noise_sd,
            standardize=name not in RAW_FOR_MLP,
        )
        self.task = data.task
        self.X_train, self.X_test = (
            data.unstandardize(data.X_train),
            data.unstandardize(data.X_test),
        )
        self.mlp_train, self.mlp_test = data.X_train, data.X_test
        self.y_train, self.y_test = data.y_train, data.y_test
        truth = DATASETS[name].truth
        self.truth = None if truth is None else truth(self.X_test)
        if frequency is not None:  # main() allows it for sine-1d only
            self.y_train = (
                self.y_train - truth(self.X_train) + np.sin(frequency * self.X_train[:, 0])
            )
            self.y_test = self.y_test - self.truth + np.sin(frequency * self.X_test[:, 0])
            self.truth = np.sin(frequency * self.X_test[:, 0])

    def score(self, predict, classes=None, proba=None) -> dict:
        if self.task == "classification":
            return classification(self.y_test, proba, classes)
        return regression(self.y_test, *predict, truth=self.truth)


def timed_fit(model, X, y) -> float:
    start = time.perf_counter()
    model.fit(X, y)
    return time.perf_counter() - start


def run_strategy(
    split: Split, width: int, depth: int, targets: str, seed: int
) -> tuple[dict, BayesLayersClassifier | BayesLayersRegressor]:
    """The estimator with its defaults, scored; also returns it (its scaling serves the control)."""
    kind = BayesLayersClassifier if split.task == "classification" else BayesLayersRegressor
    est = kind(hidden=(width,) * depth, random_state=seed, targets=targets)
    elapsed = timed_fit(est, split.X_train, split.y_train)
    if split.task == "classification":
        scores = split.score(None, est.classes_, est.predict_proba(split.X_test))
    else:
        scores = split.score((*est.predict(split.X_test, return_std=True), est.predictive_dof()))
    X_test = est.network_features(split.X_test)
    return {
        "us_per_sample": 1e6 * elapsed / len(split.X_train),
        **scores,
        **health(est.network_, X_test),
    }, est


def health(net: Network, X) -> dict:
    """Finite posteriors, and the fewest units of any layer active on the inputs ``X``."""
    finite = all(np.isfinite(p.mean).all() and np.isfinite(p.cov).all() for p in net.posteriors_)
    _, trace = engine.forward(net.spec, net.posteriors_, X)
    alive = min((int((t.g != 0).any(axis=0).sum()) for t in trace), default=0)
    return {"finite": bool(finite), "min_alive_units": alive}


def run_control(split: Split, width: int, depth: int, seed: int, scaled) -> dict:
    """Hidden layers frozen at their initialization; only a default head trained.

    ``scaled`` is a fitted estimator of the same split: its standardization (statistics of
    the training split only) is applied, as the estimator applies it to its own network.
    """
    regression_task = split.task == "regression"
    head = heads.Gaussian if regression_task else heads.OneHot
    X_train, X_test = (scaled.network_features(X) for X in (split.X_train, split.X_test))
    y_train = split.y_train
    if regression_task:
        y_train = (y_train - scaled.y_mean_) / scaled.y_scale_
    start = time.perf_counter()
    prior = Network([layers.ReLU(width) for _ in range(depth)], head(), seed=seed)
    prior.initialize(X_train, y_train)
    F_train, F_test = (
        engine.forward(prior.spec, prior.posteriors_, X)[0][:, :-1] for X in (X_train, X_test)
    )
    net = Network([], head(), seed=seed)
    net.fit(F_train, y_train, batch_size=auto_batch_size(len(F_train)), shuffle=True)
    elapsed = time.perf_counter() - start
    if regression_task:
        mean, std = net.predict(F_test, return_std=True)
        scale = np.squeeze(scaled.y_scale_)
        prediction = (mean * scale + np.squeeze(scaled.y_mean_), std * scale, net.predictive_dof())
        scores = split.score(prediction)
    else:
        scores = split.score(None, net.classes_, net.predict_proba(F_test))
    return {"us_per_sample": 1e6 * elapsed / len(F_train), **scores}


def run_mlp(split: Split, width: int, depth: int, seed: int, converged: bool) -> dict:
    cls = MLPClassifier if split.task == "classification" else MLPRegressor
    model = cls(hidden_layer_sizes=(width,) * depth, random_state=seed, max_iter=500)
    if not converged:
        model.set_params(batch_size=1, max_iter=1, shuffle=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        elapsed = timed_fit(model, split.mlp_train, split.y_train)
    if split.task == "classification":
        scores = split.score(None, model.classes_, model.predict_proba(split.mlp_test))
    else:
        scores = split.score((model.predict(split.mlp_test),))
    return {"us_per_sample": 1e6 * elapsed / len(split.mlp_train), **scores}


def summarize(runs: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds of every metric, per (dataset, depth, model)."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["dataset"], run["depth"], run["model"]), []).append(run)
    table = []
    for (dataset, depth, model), items in groups.items():
        row: dict = {"dataset": dataset, "depth": depth, "model": model, "seeds": len(items)}
        for metric in METRICS:
            values = [item[metric] for item in items if metric in item]
            if values:
                row[metric] = (float(np.mean(values)), float(np.std(values)))
        if "finite" in items[0]:
            row["stable"] = all(item["finite"] for item in items)
            row["min_alive_units"] = min(item["min_alive_units"] for item in items)
        table.append(row)
    return table


def fmt(metric: str, signed: bool = False) -> str:
    if metric == "accuracy":
        return "+.2%" if signed else ".2%"
    if metric == "us_per_sample":
        return ".0f"
    if metric in ("rmse", "rmse_f"):
        return "+.4f" if signed else ".4f"
    return "+.3f" if signed else ".3f"


def wide(table: list[dict], metrics: tuple[str, ...], models: list[str]) -> str:
    """One row per (dataset, depth), one column per model: the first metric of ``metrics`` found."""
    cells: dict[tuple, dict] = {}
    for row in table:
        cells.setdefault((row["dataset"], row["depth"]), {})[row["model"]] = row
    lines = ["| dataset | depth | " + " | ".join(models) + " |", "|---" * (2 + len(models)) + "|"]
    for (dataset, depth), rows in cells.items():
        out = []
        for model in models:
            row = rows.get(model, {})
            metric = next((m for m in metrics if m in row), None)
            if metric is None:
                out.append("")
                continue
            mean, sd = row[metric]
            out.append(f"{mean:{fmt(metric)}} ± {sd:{fmt(metric)}}")
        if any(out):
            lines.append(f"| {dataset} | {depth} | " + " | ".join(out) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def paired(runs: list[dict], model: str, reference: str) -> str:
    """Per (dataset, depth): mean ± standard error over seeds of ``model - reference``."""
    keyed = {(r["dataset"], r["depth"], r["model"], r["seed"]): r for r in runs}
    lines = [
        f"| dataset | depth | seeds | accuracy / RMSE, {model} - {reference} | RMSE to f | NLL |",
        "|---|---|---|---|---|---|",
    ]
    seen = sorted(
        {
            (r["dataset"], r["depth"], r["seed"])
            for r in runs
            if r["model"] == model and (r["dataset"], r["depth"], reference, r["seed"]) in keyed
        }
    )
    for dataset, depth in dict.fromkeys((d, k) for d, k, _ in seen):
        seeds = [s for d, k, s in seen if (d, k) == (dataset, depth)]
        out = []
        for metrics in (("accuracy", "rmse"), ("rmse_f",), ("nll",)):
            first = keyed[(dataset, depth, model, seeds[0])]
            metric = next((m for m in metrics if m in first), None)
            if metric is None:
                out.append("")
                continue
            diff = np.array(
                [
                    keyed[(dataset, depth, model, s)][metric]
                    - keyed[(dataset, depth, reference, s)][metric]
                    for s in seeds
                ]
            )
            se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
            out.append(f"{diff.mean():{fmt(metric, True)}} ± {se:{fmt(metric)}}")
        lines.append(f"| {dataset} | {depth} | {len(seeds)} | " + " | ".join(out) + " |")
    return "\n".join(lines)


def stability(table: list[dict], strategies: list[str]) -> str:
    """Per (dataset, depth): every fit finite over seeds, and the fewest live units seen."""
    cells: dict[tuple, dict] = {}
    for row in table:
        if row["model"] in strategies:
            cells.setdefault((row["dataset"], row["depth"]), {})[row["model"]] = row
    lines = [
        "| dataset | depth | " + " | ".join(strategies) + " |",
        "|---" * (2 + len(strategies)) + "|",
    ]
    for (dataset, depth), rows in cells.items():
        out = [
            f"{rows[m]['stable']}, {rows[m]['min_alive_units']}" if m in rows else ""
            for m in strategies
        ]
        lines.append(f"| {dataset} | {depth} | " + " | ".join(out) + " |")
    return "\n".join(lines) if cells else ""


def report(runs: list[dict], reference: str | None = None) -> str:
    """The tables of ``benchmarks/RESULTS.md``: metrics side by side, paired differences, cost.

    Paired differences of every strategy against the control and ``min_norm``, and against
    ``reference`` where given and run.
    """
    table = summarize(runs)
    models = list(dict.fromkeys(r["model"] for r in runs))
    strategies = [m for m in models if m in TARGETS]
    spread = [m for m in models if not m.startswith("mlp")]
    parts = [
        wide(table, ("accuracy", "rmse"), models),
        wide(table, ("rmse_f",), models),
        wide(table, ("nll",), [*spread, *(m for m in models if m not in spread)]),
        wide(table, ("ece", "coverage90"), spread),
        wide(table, ("us_per_sample",), models),
    ]
    parts.append(stability(table, strategies))
    if CONTROL in models:
        parts += [paired(runs, m, CONTROL) for m in strategies]
    if "min_norm" in models:
        parts += [paired(runs, m, "min_norm") for m in strategies if m != "min_norm"]
    if reference in models and reference != "min_norm":
        parts += [paired(runs, m, reference) for m in strategies if m != reference]
    return "\n\n".join(part for part in parts if part)


def commit() -> str:
    """The library's commit, with ``-dirty`` and the changed files when the tree differs."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return out.stdout

    changed = git("status", "--porcelain", "--", "bayeslayers").splitlines()
    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    return head + (" dirty: " + ", ".join(c[3:] for c in changed) if changed else "")


def main(argv=None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(WIDTHS), choices=list(WIDTHS))
    parser.add_argument("--depths", nargs="+", type=int, default=[1, 2, 3, 4])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from here")
    parser.add_argument("--width", type=int, help="hidden width for every dataset")
    parser.add_argument("--n-samples", type=int, help="a seeded subset of each data set")
    parser.add_argument(
        "--noise-sd", type=float, default=0.1, help="noise of the synthetic targets"
    )
    parser.add_argument(
        "--frequency", type=float, help="sine-1d only: the target sin(frequency * x) instead"
    )
    parser.add_argument("--no-baselines", action="store_true", help="skip MLP and control")
    parser.add_argument("--no-mlp", action="store_true", help="skip the MLPs (keep the control)")
    parser.add_argument("--no-converged", action="store_true", help="skip the converged MLP")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/depth.json"))
    parser.add_argument(
        "--reference", help="also print every strategy's paired difference to this one"
    )
    parser.add_argument(
        "--report", type=Path, nargs="+", metavar="JSON", help="print the tables of recorded runs"
    )
    args = parser.parse_args(argv)
    if args.frequency is not None and args.datasets != ["sine-1d"]:
        parser.error(f"--frequency applies to sine-1d only, got --datasets {args.datasets}")
    if args.report:
        runs = [run for path in args.report for run in json.loads(path.read_text())["runs"]]
        print(report(runs, args.reference))
        return runs

    record = {"argv": argv, "commit": commit(), "runs": []}
    runs = record["runs"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.datasets:
        width = args.width or WIDTHS[name]
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            split = Split(name, seed, args.n_samples, args.noise_sd, args.frequency)
            for depth in args.depths:
                results = []
                for targets in args.targets:
                    result, fitted = run_strategy(split, width, depth, targets, seed)
                    results.append((targets, result))
                if not args.no_baselines:
                    results.append((CONTROL, run_control(split, width, depth, seed, fitted)))
                if not (args.no_baselines or args.no_mlp):
                    results.append(
                        ("mlp-1epoch (batch 1)", run_mlp(split, width, depth, seed, False))
                    )
                    if not args.no_converged:
                        results.append(("mlp-converged", run_mlp(split, width, depth, seed, True)))
                for label, result in results:
                    runs.append(
                        {
                            "dataset": name,
                            "depth": depth,
                            "width": width,
                            "model": label,
                            "seed": seed,
                            **result,
                        }
                    )
                    print(json.dumps(runs[-1]), flush=True)
                args.out.write_text(json.dumps(record, indent=1))
    print(report(runs, args.reference))
    return runs


if __name__ == "__main__":
    main()
