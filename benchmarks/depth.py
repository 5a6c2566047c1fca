"""Every backward strategy at every depth, one pass, against backprop and a random-feature control.

For each dataset, depth (number of equal-width ReLU hidden layers) and seed (the seed draws the
train/test split and the initialization):

* ``<strategy>``: ``Network(targets=<strategy>)`` for every requested key of
  ``bayeslayers.propagation.TARGETS``, one pass, the library's defaults plus the per-dataset
  settings of ``benchmarks/accuracy.py`` (noise 0.01 on the synthetic tasks, hidden biases of
  spread 0.1 and batch 32 on mnist-5k);
* ``control``: the hidden layers frozen at their prior mean (the same data-dependent prior as
  the trained networks, ``Network.initialize``), only the head updated;
* ``mlp-1epoch``: scikit-learn's MLP with the same hidden sizes, batch size 1, one epoch;
* ``mlp-converged``: the same MLP with its defaults until convergence (at most 500 epochs).

Metrics on the test split: accuracy, NLL and ECE (15 bins) for classification; RMSE, Gaussian
NLL and the coverage of the central 90 % interval for regression (the MLP gives no predictive
spread: RMSE only). Per-sample cost is the ``fit`` time divided by the training rows. Mean and
standard deviation over seeds are printed as a Markdown table and written with every run to JSON.

Run ``OPENBLAS_NUM_THREADS=1 python benchmarks/depth.py --seeds 3`` or see ``--help``.
"""

from __future__ import annotations

import argparse
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
from bayeslayers.metrics import (
    central_interval,
    ece,
    interval_coverage,
    nll_classification,
    nll_gaussian,
    rmse,
)
from bayeslayers.propagation import TARGETS

#: Per dataset: hidden width, batch size, Network keywords, whether to standardize the inputs.
SETUPS = {
    "sine-1d": {"width": 50, "batch": 1, "net": {"noise": 0.01}},
    "wave-2d": {"width": 50, "batch": 1, "net": {"noise": 0.01}},
    "digits": {"width": 100, "batch": 1, "net": {}},
    "mnist-5k": {"width": 100, "batch": 32, "net": {"bias_spread": 0.1}, "standardize": False},
}
METRICS = ("accuracy", "rmse", "nll", "ece", "coverage90", "us_per_sample")


def head_for(task: str):
    return heads.OneHot() if task == "classification" else heads.Gaussian()


def classification(y, proba, classes) -> dict:
    index = np.searchsorted(classes, y)
    return {
        "accuracy": float(np.mean(proba.argmax(1) == index)),
        "nll": nll_classification(index, proba),
        "ece": ece(index, proba),
    }


def regression(y, mean, std=None) -> dict:
    scores = {"rmse": rmse(y, mean)}
    if std is not None:
        scores["nll"] = nll_gaussian(y, mean, std)
        scores["coverage90"] = interval_coverage(y, *central_interval(mean, std, 0.9))
    return scores


def score(net: Network, X, y, task) -> dict:
    if task == "classification":
        return classification(y, net.predict_proba(X), net.classes_)
    mean, var = net.predict_moments(X)
    return regression(y, mean[:, 0], np.sqrt(var[:, 0]))


def timed_fit(model, X, y, **kwargs) -> float:
    start = time.perf_counter()
    model.fit(X, y, **kwargs)
    return time.perf_counter() - start


def run_strategy(data, setup, depth, targets, seed) -> dict:
    hidden = [layers.ReLU(setup["width"]) for _ in range(depth)]
    net = Network(hidden, head=head_for(data.task), targets=targets, seed=seed, **setup["net"])
    elapsed = timed_fit(net, data.X_train, data.y_train, batch_size=setup["batch"])
    scores = score(net, data.X_test, data.y_test, data.task)
    return {"us_per_sample": 1e6 * elapsed / len(data.X_train), **scores, **health(net, data)}


def health(net: Network, data) -> dict:
    """Finite posteriors, and the fewest units of any layer active on the test inputs."""
    finite = all(np.isfinite(p.mean).all() and np.isfinite(p.cov).all() for p in net.posteriors_)
    _, trace = engine.forward(net.spec, net.posteriors_, data.X_test)
    alive = min(int((t.g != 0).any(axis=0).sum()) for t in trace)
    return {"finite": bool(finite), "min_alive_units": alive}


def run_control(data, setup, depth, seed) -> dict:
    """Hidden layers frozen at the prior mean of the trained networks; only the head trained."""
    hidden = [layers.ReLU(setup["width"]) for _ in range(depth)]
    prior = Network(hidden, head=head_for(data.task), seed=seed, **setup["net"])
    prior.initialize(data.X_train, data.y_train)
    F_train, F_test = (
        engine.forward(prior.spec, prior.posteriors_, X)[0][:, :-1]
        for X in (data.X_train, data.X_test)
    )
    net = Network([], head=head_for(data.task), seed=seed, **setup["net"])
    elapsed = timed_fit(net, F_train, data.y_train, batch_size=setup["batch"])
    return {
        "us_per_sample": 1e6 * elapsed / len(F_train),
        **score(net, F_test, data.y_test, data.task),
    }


def run_mlp(data, setup, depth, seed, converged: bool) -> dict:
    cls = MLPClassifier if data.task == "classification" else MLPRegressor
    model = cls(hidden_layer_sizes=(setup["width"],) * depth, random_state=seed, max_iter=500)
    if not converged:
        model.set_params(batch_size=1, max_iter=1, shuffle=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        elapsed = timed_fit(model, data.X_train, data.y_train)
    if data.task == "classification":
        scores = classification(data.y_test, model.predict_proba(data.X_test), model.classes_)
    else:
        scores = regression(data.y_test, model.predict(data.X_test))
    return {"us_per_sample": 1e6 * elapsed / len(data.X_train), **scores}


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


def markdown(table: list[dict]) -> str:
    lines = [
        "| dataset | depth | model | seeds | accuracy / RMSE | NLL | ECE / 90 % cov. "
        "| µs / sample | finite, min. live units |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table:
        cells = []
        for metrics, fmt in (
            (("accuracy", "rmse"), None),
            (("nll",), ".3f"),
            (("ece", "coverage90"), ".3f"),
            (("us_per_sample",), ".0f"),
        ):
            cell = ""
            for metric in metrics:
                if metric in row:
                    mean, sd = row[metric]
                    f = fmt or (".2%" if metric == "accuracy" else ".4f")
                    cell = f"{mean:{f}} ± {sd:{f}}"
            cells.append(cell)
        health = f"{row['stable']}, {row['min_alive_units']}" if "stable" in row else ""
        lines.append(
            f"| {row['dataset']} | {row['depth']} | {row['model']} | {row['seeds']} | "
            + " | ".join(cells)
            + f" | {health} |"
        )
    return "\n".join(lines)


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
            f = ".2%" if metric == "accuracy" else ".0f" if metric == "us_per_sample" else ".4f"
            if metric in ("nll", "ece", "coverage90"):
                f = ".3f"
            out.append(f"{mean:{f}} ± {sd:{f}}")
        lines.append(f"| {dataset} | {depth} | " + " | ".join(out) + " |")
    return "\n".join(lines)


def paired(runs: list[dict], model: str, reference: str = "min_norm") -> str:
    """Per (dataset, depth): mean ± standard error over seeds of ``model - reference``."""
    keyed = {(r["dataset"], r["depth"], r["model"], r["seed"]): r for r in runs}
    lines = [
        f"| dataset | depth | accuracy / RMSE, {model} - {reference} | NLL |",
        "|---|---|---|---|",
    ]
    seen = sorted({(r["dataset"], r["depth"], r["seed"]) for r in runs if r["model"] == model})
    for dataset, depth in dict.fromkeys((d, k) for d, k, _ in seen):
        seeds = [s for d, k, s in seen if (d, k) == (dataset, depth)]
        out = []
        for metrics in (("accuracy", "rmse"), ("nll",)):
            first = keyed[(dataset, depth, model, seeds[0])]
            metric = next(m for m in metrics if m in first)
            diff = np.array(
                [
                    keyed[(dataset, depth, model, s)][metric]
                    - keyed[(dataset, depth, reference, s)][metric]
                    for s in seeds
                ]
            )
            se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
            f = "+.2%" if metric == "accuracy" else "+.4f"
            g = ".2%" if metric == "accuracy" else ".4f"
            out.append(f"{diff.mean():{f}} ± {se:{g}}")
        lines.append(f"| {dataset} | {depth} | " + " | ".join(out) + " |")
    return "\n".join(lines)


def report(runs: list[dict]) -> str:
    """The tables of ``benchmarks/RESULTS.md``: metrics side by side, paired differences, cost."""
    table = summarize(runs)
    models = list(dict.fromkeys(r["model"] for r in runs))
    strategies = [m for m in models if m in TARGETS]
    parts = [
        wide(table, ("accuracy", "rmse"), models),
        wide(table, ("nll",), [m for m in models if not m.startswith("mlp")] + models[-2:]),
        wide(table, ("ece", "coverage90"), models),
        wide(table, ("us_per_sample",), models),
    ]
    parts += [paired(runs, m) for m in strategies if m != "min_norm"]
    return "\n\n".join(parts)


def main(argv=None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--depths", nargs="+", type=int, default=[1, 2, 3, 4])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from here")
    parser.add_argument("--n-samples", type=int, help="a seeded subset of each data set")
    parser.add_argument("--no-baselines", action="store_true", help="skip MLP and control")
    parser.add_argument("--no-converged", action="store_true", help="skip the converged MLP")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/depth.json"))
    parser.add_argument(
        "--report", type=Path, metavar="JSON", help="print the RESULTS tables of a recorded run"
    )
    args = parser.parse_args(argv)
    if args.report:
        runs = json.loads(args.report.read_text())["runs"]
        print(report(runs))
        return runs

    runs = []
    for name in args.datasets:
        setup = SETUPS[name]
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            data = load_dataset(
                name,
                seed=seed,
                standardize=setup.get("standardize", True),
                n_samples=args.n_samples,
            )
            for depth in args.depths:
                jobs = [(t, run_strategy, (data, setup, depth, t, seed)) for t in args.targets]
                if not args.no_baselines:
                    jobs.append(
                        ("control (random features)", run_control, (data, setup, depth, seed))
                    )
                    jobs.append(
                        ("mlp-1epoch (batch 1)", run_mlp, (data, setup, depth, seed, False))
                    )
                    if not args.no_converged:
                        jobs.append(("mlp-converged", run_mlp, (data, setup, depth, seed, True)))
                for label, func, fargs in jobs:
                    result = func(*fargs)
                    runs.append(
                        {"dataset": name, "depth": depth, "model": label, "seed": seed, **result}
                    )
                    print(json.dumps(runs[-1]), flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps({"argv": argv, "runs": runs}, indent=1))
    table = summarize(runs)
    print(markdown(table))
    args.out.write_text(json.dumps({"argv": argv, "runs": runs, "table": table}, indent=1))
    return runs


if __name__ == "__main__":
    main()
