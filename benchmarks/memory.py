"""The hidden layers' memory (``memory=``) chosen by prequential evidence, against none.

For each data set and seed (the splits and protocol of ``tuning_free.py``), the estimator with
its defaults is fitted once per candidate memory in :data:`CANDIDATES` (rows per weight;
``None``: nothing forgotten, the default), on the same rows in the same order. The
``evidence`` row is the candidate with the largest prequential log evidence
(``network_.log_evidence_``), the choice :func:`bayeslayers.selection.select_by_evidence`
makes, which needs no held-out data; ``oracle`` is the candidate best on the test split.
Printed: mean ± standard error over seeds of the test metric (RMSE or accuracy) and NLL per
candidate, and the paired difference of the evidence's choice against no memory.

``OPENBLAS_NUM_THREADS=1 python benchmarks/memory.py --seeds 5`` (``--datasets`` as in
``tuning_free.py``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import tuning_free as tf

from bayeslayers.sklearn import BayesLayersClassifier, BayesLayersRegressor

ROOT = Path(__file__).resolve().parents[1]
#: Candidate memories in rows per weight of each hidden layer; None forgets nothing.
CANDIDATES = (None, 64.0, 16.0, 4.0)
DEFAULT_DATASETS = [
    "sine-1d",
    "wave-2d",
    "diabetes",
    "breast_cancer",
    "digits",
    "mnist-5k",
    "friedman1",
    "friedman1-10k",
    "friedman3",
    "classification-40",
]


def run(name: str, seed: int, test_fraction: float) -> list[dict]:
    task, hidden, _ = tf.DATASETS[name]
    Xtr, Xte, ytr, yte = tf.load(name, seed, test_fraction)
    Estimator = BayesLayersRegressor if task == "regression" else BayesLayersClassifier
    rows = []
    for memory in CANDIDATES:
        start = time.perf_counter()
        model = Estimator(hidden, random_state=seed, memory=memory).fit(Xtr, ytr)
        seconds = time.perf_counter() - start
        if task == "regression":
            mean, std = model.predict(Xte, return_std=True)
            score = tf.regression_scores(yte, mean, std, model.predictive_dof())
            metric, nll = score["rmse"], -score["loglik"]
        else:
            score = tf.classification_scores(yte, model.predict_proba(Xte), model.classes_)
            metric, nll = score["accuracy"], score["nll"]
        rows.append(
            {
                "dataset": name,
                "seed": seed,
                "memory": memory,
                "metric": metric,
                "nll": nll,
                "log_evidence_per_row": model.network_.log_evidence_ / len(Xtr),
                "fit_s": seconds,
            }
        )
    return rows


def _se(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def summary(rows: list[dict]) -> str:
    lines = [
        "| dataset | memory | metric | NLL | log evidence / row | fit s |",
        "|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == name]
        seeds = sorted({r["seed"] for r in mine})
        picks = {"evidence": [], "oracle": []}
        regression = tf.DATASETS[name][0] == "regression"
        for s in seeds:
            cands = [r for r in mine if r["seed"] == s]
            picks["evidence"].append(max(cands, key=lambda r: r["log_evidence_per_row"]))
            picks["oracle"].append(
                min(cands, key=lambda r: r["metric"] * (1 if regression else -1))
            )
        groups = {str(m): [r for r in mine if r["memory"] == m] for m in CANDIDATES}
        groups.update(picks)
        none = np.array([r["metric"] for r in groups["None"]])
        for label, rs in groups.items():
            m = np.array([r["metric"] for r in rs])
            n = np.array([r["nll"] for r in rs])
            ev = np.array([r["log_evidence_per_row"] for r in rs])
            t = np.array([r["fit_s"] for r in rs])
            cell = f"{m.mean():.4g} ± {_se(m):.2g}"
            if label == "evidence":
                d = m - none
                chosen = ", ".join(str(r["memory"]) for r in rs)
                cell += f" (paired {d.mean():+.3g} ± {_se(d):.2g}; chose {chosen})"
            lines.append(
                f"| {name} | {label} | {cell} | {n.mean():.4g} | {ev.mean():.4g} | {t.mean():.2f} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    description = __doc__.splitlines()[0]
    args = tf.arguments(description, DEFAULT_DATASETS, list(tf.DATASETS), "memory.json", argv)
    print(summary(tf.collect(run, args.datasets, args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
