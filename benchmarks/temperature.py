"""The one-hot head's temperature chosen by prequential evidence, against temperature 1.

For each classification data set and seed (the splits and protocol of ``tuning_free.py``),
the estimator is fitted once with its one-hot head (``head="gaussian"``, whose default is
``heads.OneHot(temperature="evidence")``; ``head="auto"`` would race it against a probit
readout on two classes).
While it trains, every scored row's one-step-ahead log class probability at every temperature
of ``heads.gaussian.TEMPERATURES`` is recorded, with the number of rows it stands for (the
library's own scoring function is wrapped, not changed; it scores every row of the first
``SCORE_ALL`` and one in ``SCORE_STRIDE`` after them). The held-out NLL of the final network
is then computed at every temperature, and the temperature that each selection rule would
pick from the recorded scores is looked up in it:

* ``tau=1``: the regression noise itself (what ``temperature=None`` predicts);
* ``even``, ``linear``, ``square``: the highest evidence with every row weighted 1,
  ``i / N`` or ``(i / N)^2`` (``i`` its position in the stream of ``N`` rows), times the
  rows it stands for;
* ``grid``: ``square``, kept at 1 unless it beats 1 by ``evidence.STRONG`` nats (the
  library's rule before the refinement between octaves);
* ``default``: ``grid`` refined between octaves by ``gaussian.refined_temperature`` (the
  library's rule; the ``library`` column is what the fitted head actually uses);
* ``oracle``: the best temperature of the grid on the test split.

``OPENBLAS_NUM_THREADS=1 python benchmarks/temperature.py --seeds 5`` (``--datasets`` as in
``tuning_free.py``; classification only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tuning_free as tf

from bayeslayers import engine
from bayeslayers.evidence import STRONG
from bayeslayers.heads import gaussian
from bayeslayers.heads.argmax import argmax_log_proba
from bayeslayers.sklearn import BayesLayersClassifier

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASETS = [name for name, (task, _, _) in tf.DATASETS.items() if task == "classification"]
POWERS = {"even": 0.0, "linear": 1.0, "square": 2.0}
RULES = ["tau=1", *POWERS, "grid", "default", "library", "oracle"]


class _Recorder:
    """Wraps ``gaussian._log_proba_grid``: the same sums, the per-row scores kept."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []
        self._inner = gaussian._log_proba_grid

    def __call__(self, mean, var, label, weight):
        lp = gaussian.temperature_scores(mean, var, label)
        self.rows.append(lp.T)
        self.weights.append(np.asarray(weight, dtype=float))
        return lp @ weight


def run(name: str, seed: int, test_fraction: float) -> dict:
    _, hidden, _ = tf.DATASETS[name]
    Xtr, Xte, ytr, yte = tf.load(name, seed, test_fraction)
    recorder = _Recorder()
    gaussian._log_proba_grid = recorder
    try:
        model = BayesLayersClassifier(hidden, head="gaussian", random_state=seed).fit(Xtr, ytr)
    finally:
        gaussian._log_proba_grid = recorder._inner
    net = model.network_
    head, state = net.head, net.head_state_
    in_use = head.temperature_of(state)
    xh, _ = engine.forward(net.spec, net.posteriors_, model.network_features(Xte))
    mean, var = head.predictive(state, xh)
    var = var / in_use  # the predictive at temperature 1
    index = np.searchsorted(model.classes_, yte)
    grid = gaussian.TEMPERATURES

    def test_nll(tau: float) -> float:
        return float(-argmax_log_proba(mean, tau * var, index).mean())

    test = -gaussian.temperature_scores(mean, var, index).mean(axis=1)  # on the grid
    scores, weight = np.concatenate(recorder.rows), np.concatenate(recorder.weights)
    position = np.cumsum(weight) / weight.sum()  # each scored row stands for its weight
    unit = int(np.flatnonzero(grid == 1.0)[0])
    tau = {"tau=1": 1.0, "oracle": float(grid[np.argmin(test)])}
    for rule, power in POWERS.items():
        tau[rule] = float(grid[np.argmax((weight * position**power) @ scores)])
    square = (weight * position**2) @ scores
    strong = square.max() - square[unit] > STRONG
    tau["grid"] = tau["square"] if strong else 1.0
    tau["default"] = gaussian.refined_temperature(square) if strong else 1.0
    tau["library"] = in_use
    return {
        "dataset": name,
        "seed": seed,
        "accuracy": float(np.mean(np.argmax(mean, axis=1) == index)),
        "nll": {rule: test_nll(t) for rule, t in tau.items()},
        "tau": tau,
    }


def summary(rows: list[dict]) -> str:
    out = [
        "| dataset | accuracy | " + " | ".join(f"NLL {r}" for r in RULES) + " | default's tau |",
        "|---|---|" + "---|" * len(RULES) + "---|",
    ]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == name]
        cells = [f"{np.mean([r['accuracy'] for r in mine]):.4f}"]
        for rule in RULES:
            values = np.array([r["nll"][rule] for r in mine])
            cells.append(f"{values.mean():.4f}")
        taus = ", ".join(f"{r['tau']['default']:.3g}" for r in mine)
        out.append(f"| {name} | " + " | ".join(cells) + f" | {taus} |")
    return "\n".join(out)


def main(argv=None) -> int:
    description = __doc__.splitlines()[0]
    args = tf.arguments(description, DEFAULT_DATASETS, DEFAULT_DATASETS, "temperature.json", argv)
    print(summary(tf.collect(lambda *a: [run(*a)], args.datasets, args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
