"""Target solve for wide layers: zero-padded batched solve against per-row compacted solve.

Trains 784-400-400-10 (ReLU, one-hot head, mnist-5k rows, batch 32, one BLAS thread) with
``propagation._COMPACT_MIN`` set so that every target solve is either the zero-padded batched
one (``dense``) or the per-row solve over the movable block only (``compact``, the library's
choice for ``min(d, k) > 128``), alternating in one process; prints samples/s per run and the
medians. Run: ``python benchmarks/target_solve.py [--repeats 3] [--budget 1.5]``.
"""

from __future__ import annotations

import argparse

import numpy as np
from throughput import load_mnist, time_pass

from bayeslayers import propagation

MODES = {"dense": 10**9, "compact": propagation._COMPACT_MIN}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=1.5, help="seconds per timed pass")
    parser.add_argument("--structures", nargs="+", default=["shared", "diag"])
    args = parser.parse_args(argv)
    X, y = load_mnist()
    runs = {(mode, s): [] for mode in MODES for s in args.structures}
    try:
        for rep in range(args.repeats):
            for mode, threshold in MODES.items():
                propagation._COMPACT_MIN = threshold
                for s in args.structures:
                    rate, _ = time_pass((400, 400), s, 32, X, y, args.budget, "float64", 1)
                    runs[mode, s].append(rate)
                    print(f"run {rep}: {mode:<8}{s:<8}{rate:8.1f} samples/s", flush=True)
    finally:
        propagation._COMPACT_MIN = MODES["compact"]
    medians = {key: float(np.median(r)) for key, r in runs.items()}
    for s in args.structures:
        dense, compact = medians["dense", s], medians["compact", s]
        print(f"{s}: dense {dense:.0f}/s, compact {compact:.0f}/s, ratio {compact / dense:.2f}")
    return medians


if __name__ == "__main__":
    main()
