"""Core figures: sin(3x) regression and digits classification after one pass.

Runs every layer variant and covariance structure, plus scikit-learn MLP baselines (batch size 1
for one epoch, and converged) on exactly the same data, and prints a Markdown table.

    python benchmarks/core.py            # full run (several minutes on 2 cores)
    python benchmarks/core.py --quick    # ReLU only, one seed

Data (`reference_data.py`):
* sine: x ~ U(-2, 2), y = sin(3x) + N(0, 0.1^2); 2,000 draws with seed 0, the first 1,000 train,
  the rest test; network 1-50-50-1, one pass, batch size 1.
* digits: sklearn's load_digits, train_test_split(test_size=0.25, stratify=y, random_state=0),
  standardized on the training split; network 64-100-10 with the one-hot Gaussian head.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
from reference_data import digits_data, sine_data
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, log_loss
from sklearn.neural_network import MLPClassifier, MLPRegressor

from bayeslayers import Network, conjugate, heads, layers


def run_sine(kind: str, structure: str, seed: int) -> dict:
    Xtr, ytr, Xte, yte = sine_data()
    net = Network(
        [layers.make_layer(kind, units=50), layers.make_layer(kind, units=50)],
        covariance=structure,
        noise=0.01,
        seed=seed,
    )
    start = time.perf_counter()
    net.fit(Xtr, ytr)
    seconds = time.perf_counter() - start
    rmse = float(np.sqrt(np.mean((net.predict(Xte) - yte) ** 2)))
    return {"rmse": rmse, "seconds": seconds}


def run_digits(kind: str, structure: str, seed: int) -> dict:
    Xtr, ytr, Xte, yte = digits_data()
    net = Network(
        [layers.make_layer(kind, units=100)], head=heads.OneHot(), covariance=structure, seed=seed
    )
    start = time.perf_counter()
    net.fit(Xtr, ytr)
    seconds = time.perf_counter() - start
    proba = net.predict_proba(Xte)
    return {
        "accuracy": float(accuracy_score(yte, net.classes_[proba.argmax(1)])),
        "nll": float(log_loss(yte, proba, labels=net.classes_)),
        "seconds": seconds,
    }


def mlp_baselines(seed: int) -> dict:
    out = {}
    Xtr, ytr, Xte, yte = sine_data()
    Dtr, dtr, Dte, dte = digits_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name, kw in {
            "one epoch, batch 1": {"batch_size": 1, "max_iter": 1},
            "converged": {"max_iter": 500},
        }.items():
            start = time.perf_counter()
            reg = MLPRegressor(hidden_layer_sizes=(50, 50), random_state=seed, **kw).fit(Xtr, ytr)
            rmse = float(np.sqrt(np.mean((reg.predict(Xte) - yte) ** 2)))
            out[f"sine MLP {name}"] = {"rmse": rmse, "seconds": time.perf_counter() - start}
            start = time.perf_counter()
            clf = MLPClassifier(hidden_layer_sizes=(100,), random_state=seed, **kw).fit(Dtr, dtr)
            proba = clf.predict_proba(Dte)
            out[f"digits MLP {name}"] = {
                "accuracy": float(accuracy_score(dte, proba.argmax(1))),
                "nll": float(log_loss(dte, proba)),
                "seconds": time.perf_counter() - start,
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ReLU only, one seed")
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the ReLU/unit rows")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args()
    kinds = ["relu"] if args.quick else ["relu", "leaky_relu", "taylor_tanh", "linear"]
    structures = ["unit"] if args.quick else list(conjugate.STRUCTURES)
    seeds = [0] if args.quick else list(range(args.seeds))
    results: dict[str, dict] = {}
    for kind in kinds:
        for structure in structures:
            use = seeds if (kind, structure) == ("relu", "unit") else [0]
            for task, fn in (("sine", run_sine), ("digits", run_digits)):
                runs = [fn(kind, structure, s) for s in use]
                row = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
                row["seeds"] = len(use)
                results[f"{task} {kind}/{structure}"] = row
                print(f"{task} {kind}/{structure}: {row}", flush=True)
    for name, row in mlp_baselines(0).items():
        row["seeds"] = 1
        results[name] = row
        print(f"{name}: {row}", flush=True)
    print("\n| run | RMSE | accuracy | NLL | train s | seeds (median) |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        cells = [f"{r[k]:.4f}" if k in r else "" for k in ("rmse", "accuracy", "nll")]
        print(f"| {name} | {' | '.join(cells)} | {r['seconds']:.1f} | {r['seeds']} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
