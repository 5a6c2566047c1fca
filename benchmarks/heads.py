"""Heads: one-hot Gaussian head vs probit vs logistic heads on digits, one pass.

    python benchmarks/heads.py                    # every head, one run each
    python benchmarks/heads.py --heads probit-adf logistic-laplace --repeats 3
    python benchmarks/heads.py --json out.json
    python benchmarks/heads.py --heads onehot probit-adf --seeds 5 --prior-precision 3
    python benchmarks/heads.py --heads onehot probit-laplace probit-adf logistic-laplace \
        --seeds 3 --prior-precision 3          # the shipped variants' settings (calibration)

Data and network as in benchmarks/core.py: sklearn's load_digits,
train_test_split(test_size=0.25, stratify=y, random_state=0), standardized on the training split;
64-100-10 ReLU, "unit" covariance, one pass, batch size 1, seeds 0..N-1 (``--seeds``; the seed
sets the prior mean and the visiting order), ``--prior-precision`` as given (default 1).

Cost: the fit's wall time is split into the head's share (``head.update`` including its ADVI
refits, plus the final ``flush``) and the body's (the rest: forward pass, target propagation,
hidden-layer updates). The PyMC model is compiled before training (``get_fitter``) and timed
separately; "compile" is cold only if ``~/.pytensor`` holds no compiled modules for it (use
``PYTENSOR_FLAGS=compiledir=<empty dir>`` to force a cold compile). Timings are medians over
``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from reference_data import digits_data
from sklearn.metrics import accuracy_score, log_loss

from bayeslayers import Network, heads, layers, metrics

# name: (head class, head kwargs, extra Network kwargs)
HEADS = {
    "onehot": (heads.OneHot, {}, {}),
    "probit-laplace": (heads.Probit, {"fit": "laplace"}, {}),
    "probit-adf": (heads.Probit, {"fit": "adf"}, {}),
    "probit-advi": (heads.Probit, {"fit": "advi"}, {}),
    "logistic-laplace": (heads.Logistic, {"fit": "laplace"}, {}),
    "logistic-advi": (heads.Logistic, {"fit": "advi"}, {}),
    # ablation: the body's target from the head after its update (the Gaussian head's rule)
    "probit-adf-after": (heads.Probit, {"fit": "adf", "body_target": "after"}, {}),
    # logistic without the curvature floor, larger damping of the target solve instead
    "logistic-laplace-damped": (heads.Logistic, {"curvature_floor": 0.0}, {"damping": 0.3}),
}

TIMES: dict[str, float] = defaultdict(float)


def _counted(call):
    """``call()``, its time added to ``TIMES["head"]`` unless inside another counted call."""
    start = time.perf_counter()
    TIMES["depth"] += 1
    try:
        return call()
    finally:
        TIMES["depth"] -= 1
        if not TIMES["depth"]:
            TIMES["head"] += time.perf_counter() - start


def timed(cls: type) -> type:
    """A subclass of head class ``cls`` that adds up its time in ``update`` (or
    ``score_and_update``, the training step's call, which also scores the batch) and ``flush``.

    ``TIMES["head"]``: all the head's work (updates, including the ADVI refits at chunk
    boundaries, and the final flush); ``TIMES["refit"]``: the ADVI refits alone.
    """

    @dataclass(frozen=True)
    class Timed(cls):
        def update(self, state, X, T, fraction):
            return _counted(lambda: super(Timed, self).update(state, X, T, fraction))

        def score_and_update(self, state, X, T, fraction):
            # a head whose call goes through update counts its time once
            return _counted(lambda: super(Timed, self).score_and_update(state, X, T, fraction))

        def flush(self, state):
            start = time.perf_counter()
            try:
                return super().flush(state)
            finally:
                elapsed = time.perf_counter() - start
                TIMES["refit"] += elapsed
                if not TIMES["depth"]:
                    TIMES["head"] += elapsed

    Timed.__name__ = cls.__name__
    return Timed


def compile_time(head) -> float:
    """Build (or fetch) the head's compiled ADVI model for this problem's shape."""
    from bayeslayers.heads.advi import get_fitter

    start = time.perf_counter()
    get_fitter(head.link, head.chunk_size, 101, head.n_columns(10), head.n_mc, head.learning_rate)
    return time.perf_counter() - start


def run(name: str, seed: int = 0, prior_precision: float = 1.0) -> dict:
    cls, kwargs, net_kwargs = HEADS[name]
    head = timed(cls)(**kwargs)
    out = {"compile_s": compile_time(head) if kwargs.get("fit") == "advi" else 0.0}
    Xtr, ytr, Xte, yte = digits_data()
    TIMES.clear()
    start = time.perf_counter()
    net = Network(
        [layers.ReLU(100)],
        head=head,
        covariance="unit",
        seed=seed,
        prior_precision=prior_precision,
        **net_kwargs,
    )
    net.fit(Xtr, ytr)
    total = time.perf_counter() - start
    proba = net.predict_proba(Xte)
    out.update(
        accuracy=float(accuracy_score(yte, net.classes_[proba.argmax(1)])),
        nll=float(log_loss(yte, proba, labels=net.classes_)),
        ece=metrics.ece(yte, proba, classes=net.classes_),
        fit_s=total,
        head_s=TIMES["head"],
        body_s=total - TIMES["head"],
        refit_s=TIMES["refit"],
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", nargs="+", choices=sorted(HEADS), default=list(HEADS))
    parser.add_argument("--repeats", type=int, default=1, help="runs per head and seed")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 (medians over all)")
    parser.add_argument("--prior-precision", type=float, default=1.0, help="Network's")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = {}
    print(
        "| head | accuracy | NLL | ECE | fit s | body s | head s | head / body | ADVI refits s "
        "| compile s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.heads:
        runs = [
            run(name, seed, args.prior_precision)
            for seed in range(args.seeds)
            for _ in range(args.repeats)
        ]
        med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
        med["compile_s"] = runs[0]["compile_s"]  # later runs reuse the compiled model
        results[name] = {"median": med, "runs": runs}
        print(
            f"| {name} | {med['accuracy']:.2%} | {med['nll']:.3f} | {med['ece']:.3f} "
            f"| {med['fit_s']:.1f} "
            f"| {med['body_s']:.1f} | {med['head_s']:.1f} | {med['head_s'] / med['body_s']:.2f} "
            f"| {med['refit_s']:.1f} | {med['compile_s']:.1f} |",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
