"""The link of the class probabilities: the one-hot head against ``heads.Choice``.

``heads.Choice`` keeps the one-hot head (which the hidden layers learn from) and a probit
readout of the same features fitted by assumed-density filtering; predictions come from the
one of larger prequential evidence. Per dataset and seed (``tuning_free.py``'s splits and
layer sizes, estimator defaults otherwise) this script fits ``BayesLayersClassifier`` with
``head="gaussian"`` (the one-hot head alone) and with ``head="choice"``, timed as in
``tuning_free.py`` (the median of fits made in turn, kernels compiled first), and records the
held-out accuracy, NLL and ECE of both, the readout the evidence chose, the evidence gap
(rival minus teacher, nats) and each readout's own held-out accuracy and NLL (the fitted
network with that readout made the leader), so that the choice can be checked against the
held-out NLL. The classifiers' default ``head="auto"`` is ``"choice"`` for two
classes and the one-hot head otherwise.

``OPENBLAS_NUM_THREADS=1 python benchmarks/head_choice.py --seeds 5`` (the suite's classifiers;
``--datasets probes`` adds the classification probes).
"""

from __future__ import annotations

import copy
import sys
import warnings

import numpy as np
import tuning_free as tf

from bayeslayers.sklearn import BayesLayersClassifier

CLASSIFIERS = [name for name, spec in tf.DATASETS.items() if spec[0] == "classification"]
SUITE = [name for name in CLASSIFIERS if name not in tf.PROBES]


def run(name: str, seed: int, test_fraction: float) -> list[dict]:
    hidden = tf.DATASETS[name][1]
    Xtr, Xte, ytr, yte = tf.load(name, seed, test_fraction)
    (onehot, t_onehot), (choice, t_choice) = tf.timed_in_turn(
        lambda: BayesLayersClassifier(hidden, head="gaussian", random_state=seed).fit(Xtr, ytr),
        lambda: BayesLayersClassifier(hidden, head="choice", random_state=seed).fit(Xtr, ytr),
    )
    state = choice.network_.head_state_
    rows = []
    for label, model, seconds in (("onehot", onehot, t_onehot), ("choice", choice, t_choice)):
        scores = tf.classification_scores(yte, model.predict_proba(Xte), model.classes_)
        rows.append(
            {
                "dataset": name,
                "seed": seed,
                "model": label,
                "classes": len(model.classes_),
                "fit_s": seconds,
                **scores,
            }
        )
    rows[1]["chosen"] = choice.network_.head.chosen(state)
    rows[1]["evidence_gap"] = float(state.log_evidence[1] - state.log_evidence[0])
    for who, evidence in (("teacher", [1.0, 0.0]), ("rival", [0.0, 1.0])):
        forced = copy.deepcopy(choice)  # the same network with this readout leading
        forced.network_.head_state_ = state._replace(log_evidence=np.array(evidence))
        scores = tf.classification_scores(yte, forced.predict_proba(Xte), choice.classes_)
        rows[1][f"{who}_accuracy"], rows[1][f"{who}_nll"] = scores["accuracy"], scores["nll"]
    return rows


def summary(rows: list[dict]) -> str:
    """Per dataset: means ± standard errors over seeds, the choice's paired differences and
    how often the probit readout was chosen."""
    lines = [
        "| dataset | classes | one-hot accuracy | choice accuracy | one-hot NLL | choice NLL "
        "| NLL difference | probit chosen | evidence gap | readout NLL, one-hot / probit "
        "| better readout chosen | time ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        one = [r for r in rows if r["dataset"] == name and r["model"] == "onehot"]
        two = [r for r in rows if r["dataset"] == name and r["model"] == "choice"]

        def cell(values):
            v = np.asarray(values, dtype=float)
            return f"{v.mean():.4f} ± {v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0:.4f}"

        diff = [b["nll"] - a["nll"] for a, b in zip(one, two, strict=True)]
        ratio = np.median([b["fit_s"] / a["fit_s"] for a, b in zip(one, two, strict=True)])
        picked = sum(r["chosen"] == "probit" for r in two)
        gap = np.median([r["evidence_gap"] for r in two])
        right = sum((r["rival_nll"] < r["teacher_nll"]) == (r["chosen"] == "probit") for r in two)
        lines.append(
            f"| {name} | {one[0]['classes']} | {cell([r['accuracy'] for r in one])} "
            f"| {cell([r['accuracy'] for r in two])} | {cell([r['nll'] for r in one])} "
            f"| {cell([r['nll'] for r in two])} | {cell(diff)} | {picked}/{len(two)} "
            f"| {gap:+.1f} | {np.mean([r['teacher_nll'] for r in two]):.4f} / "
            f"{np.mean([r['rival_nll'] for r in two]):.4f} | {right}/{len(two)} | {ratio:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = tf.arguments(
        __doc__.splitlines()[0], SUITE, [*CLASSIFIERS, "probes"], "head_choice.json", argv
    )
    warnings.filterwarnings("ignore")
    names = [n for n in args.datasets if n != "probes"]
    if "probes" in args.datasets:
        names += [n for n in CLASSIFIERS if n in tf.PROBES and n not in names]
    rows = tf.collect(run, names, args)
    print(f"`python benchmarks/head_choice.py {' '.join(argv or sys.argv[1:])}`\n")
    print(summary(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
