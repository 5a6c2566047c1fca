"""The head's covariance under ``covariance="auto"``: shared by its columns against per-unit.

``defaults.head_structure`` gives a Gaussian or one-hot head with several outputs one
covariance shared by its columns, which is the same posterior as the per-unit head (one
:math:`D \\times D` matrix instead of :math:`m` equal ones). This script measures what that
buys and checks that it changes nothing else: per dataset and seed, the estimator's one-hot
head (``BayesLayersClassifier(hidden, head="gaussian")``, the shared head) and the same with
``heads.OneHot(covariance="unit")``, both timed as in ``tuning_free.py`` (the median of fits
made in turn, in the same process, kernels compiled first), on ``tuning_free.py``'s splits.
It prints, per dataset, the median over seeds of the time ratio (shared / per-unit) and the
largest difference of their class probabilities on the test split.

``python benchmarks/head_structure.py --seeds 5``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tuning_free  # the suite's datasets, splits, timing and warm-up

from bayeslayers import heads
from bayeslayers.sklearn import BayesLayersClassifier

CLASSIFIERS = [name for name in tuning_free.SUITE if tuning_free.DATASETS[name][0] != "regression"]


def run(name: str, seed: int, test_fraction: float) -> dict:
    hidden = tuning_free.DATASETS[name][1]
    Xtr, Xte, ytr, _ = tuning_free.load(name, seed, test_fraction)
    (shared, t_shared), (unit, t_unit) = tuning_free.timed_in_turn(
        lambda: BayesLayersClassifier(hidden, head="gaussian", random_state=seed).fit(Xtr, ytr),
        lambda: BayesLayersClassifier(
            hidden, head=heads.OneHot(covariance="unit"), random_state=seed
        ).fit(Xtr, ytr),
    )
    assert shared.network_.spec.head_structure == "shared"
    difference = np.abs(shared.predict_proba(Xte) - unit.predict_proba(Xte)).max()
    return {
        "dataset": name,
        "seed": seed,
        "classes": len(shared.classes_),
        "fit_s_shared": t_shared,
        "fit_s_unit": t_unit,
        "max_proba_difference": float(difference),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=CLASSIFIERS, choices=CLASSIFIERS)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/head_structure.json"))
    args = parser.parse_args(argv)
    tuning_free.warm_up()
    rows = [run(n, s, args.test_fraction) for n in args.datasets for s in range(args.seeds)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print(
        "| dataset | classes | fit s, per-unit head | fit s, shared head | ratio (median) "
        "| largest probability difference |"
    )
    print("|---|---|---|---|---|---|")
    for name in args.datasets:
        mine = [r for r in rows if r["dataset"] == name]
        ratio = np.median([r["fit_s_shared"] / r["fit_s_unit"] for r in mine])
        print(
            f"| {name} | {mine[0]['classes']} | {np.median([r['fit_s_unit'] for r in mine]):.3f} "
            f"| {np.median([r['fit_s_shared'] for r in mine]):.3f} | {ratio:.2f} "
            f"| {max(r['max_proba_difference'] for r in mine):.1e} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
