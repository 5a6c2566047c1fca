"""Does the prequential evidence pick what held-out data would pick?

For each dataset and seed, candidates that differ in what cannot be learned in closed form
(hidden sizes, damping) are fitted side by side in one pass with
``bayeslayers.selection.select_by_evidence`` (library defaults otherwise). Reported: the
Spearman correlation over candidates between ``log_evidence_ / n`` and the held-out mean log
predictive density, and the regret of the evidence's choice (its held-out log density minus
the best candidate's). Features (and regression targets) standardized with training
statistics.

``python benchmarks/evidence_selection.py --seeds 3``
"""

from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np
from scipy.stats import spearmanr
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from bayeslayers import Network, heads, layers, metrics
from bayeslayers.datasets import load_dataset
from bayeslayers.selection import select_by_evidence

SIZES = [(10,), (50,), (200,), (50, 50)]
DAMPINGS = [1e-3, 1e-1]


def data(name: str, seed: int):
    if name == "diabetes":
        X, y = load_diabetes(return_X_y=True)
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=seed)
        sx, sy = StandardScaler().fit(Xtr), StandardScaler().fit(ytr[:, None])
        return (
            sx.transform(Xtr),
            sx.transform(Xte),
            sy.transform(ytr[:, None])[:, 0],
            sy.transform(yte[:, None])[:, 0],
            "regression",
        )
    d = load_dataset(name, seed=seed, test_fraction=0.25)
    return d.X_train, d.X_test, d.y_train, d.y_test, d.task


def held_out(net: Network, X, y, task: str) -> float:
    if task == "regression":
        mean, sd = net.predict(X, return_std=True)
        return -metrics.nll_gaussian(y, mean, sd)
    return -metrics.nll_classification(y, net.predict_proba(X), classes=net.classes_)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["sine-1d", "diabetes", "digits"])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"`python benchmarks/evidence_selection.py {' '.join(argv or sys.argv[1:])}`\n")
    print(
        "| dataset | seed | Spearman(evidence, held-out) | evidence's choice | held-out best "
        "| regret (nats/row) |"
    )
    print("|---|---|---|---|---|---|")
    for name in args.datasets:
        for seed in range(args.seeds):
            Xtr, Xte, ytr, yte, task = data(name, seed)
            grid = list(itertools.product(SIZES, DAMPINGS))
            head = heads.OneHot() if task == "classification" else None
            cands = [
                Network([layers.ReLU(u) for u in sizes], head=head, damping=damping, seed=seed)
                for sizes, damping in grid
            ]
            sel = select_by_evidence(cands, Xtr, ytr, batch_size=1)
            test = np.array([held_out(n, Xte, yte, task) for n in sel.networks])
            rho = spearmanr(sel.log_evidence, test).statistic
            best = int(np.argmax(test))
            label = [f"{s} d={d:g}" for s, d in grid]
            print(
                f"| {name} | {seed} | {rho:.2f} | {label[sel.chosen]} | {label[best]} "
                f"| {test[best] - test[sel.chosen]:.3f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
