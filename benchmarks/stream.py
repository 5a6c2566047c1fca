"""A long stream through ``partial_fit``: time, peak memory, accuracy along the way.

A fixed random "teacher" network labels a stream of Gaussian inputs (10 features, 4 classes);
the model sees it once, in chunks, through ``Network.partial_fit`` and is scored on a held-out
set at checkpoints. Memory is traced with :mod:`tracemalloc` (NumPy reports its buffers to it),
so a growing footprint would show as a rising "current" column. The peak is taken over the
``partial_fit`` calls only (the held-out evaluation allocates its own temporaries).

    python benchmarks/stream.py                       # 1,000,000 samples, unit covariance
    python benchmarks/stream.py --n 100000 --covariance diag

BLAS runs single-threaded by default (``--blas-threads``): on a shared 2-core machine a
multi-threaded OpenBLAS spinning against other processes made the small batched solves of the
update over 100 times slower.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
import tracemalloc

import numpy as np
from threadpoolctl import threadpool_limits

from bayeslayers import Network, heads, layers

N_FEATURES, N_CLASSES, TEACHER_WIDTH = 10, 4, 20


def make_teacher(seed: int):
    """A function ``(n, rng) -> (X, y)`` sampling labelled rows from a fixed tanh network."""
    rng = np.random.default_rng(seed)
    W1 = rng.normal(0.0, 1.0 / np.sqrt(N_FEATURES), (N_FEATURES, TEACHER_WIDTH))
    b1 = rng.normal(0.0, 0.5, TEACHER_WIDTH)
    W2 = rng.normal(0.0, 1.0, (TEACHER_WIDTH, N_CLASSES))

    def draw(n: int, gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        X = gen.standard_normal((n, N_FEATURES))
        return X, np.argmax(np.tanh(X @ W1 + b1) @ W2, axis=1)

    return draw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="stream length")
    parser.add_argument("--chunk", type=int, default=10_000, help="rows per partial_fit call")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=50)
    parser.add_argument("--covariance", default="unit", choices=["unit", "shared", "diag"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blas-threads", type=int, default=1)
    args = parser.parse_args(argv)
    with threadpool_limits(args.blas_threads):
        run(args)


def run(args: argparse.Namespace) -> None:
    """Stream ``args.n`` samples and print the checkpoint table and the final figures."""
    draw = make_teacher(args.seed)
    X_test, y_test = draw(10_000, np.random.default_rng([args.seed, 1]))
    stream = np.random.default_rng([args.seed, 2])
    net = Network(
        [layers.ReLU(args.hidden)], head=heads.OneHot(), covariance=args.covariance, seed=args.seed
    )
    checkpoints = {10_000, 100_000, *range(0, args.n + 1, max(args.n // 10, args.chunk))}
    print(f"stream of {args.n:,} samples, chunks of {args.chunk:,}, batch_size={args.batch_size}")
    print(f"10-{args.hidden}-{N_CLASSES} ReLU, OneHot head, covariance={args.covariance}\n")
    print(f"{'seen':>10} {'accuracy':>9} {'elapsed s':>10} {'samples/s':>10} {'current MiB':>12}")
    tracemalloc.start()
    start = time.perf_counter()
    seen, train_peak = 0, 0.0
    while seen < args.n:
        n = min(args.chunk, args.n - seen)
        X, y = draw(n, stream)
        tracemalloc.reset_peak()
        net.partial_fit(X, y, batch_size=args.batch_size, classes=np.arange(N_CLASSES))
        train_peak = max(train_peak, tracemalloc.get_traced_memory()[1] / 2**20)
        seen += n
        if seen in checkpoints or seen == args.n:
            elapsed = time.perf_counter() - start
            gc.collect()  # count live memory only, not cyclic garbage awaiting collection
            current = tracemalloc.get_traced_memory()[0] / 2**20
            accuracy = float(np.mean(net.predict(X_test) == y_test))
            print(
                f"{seen:>10,} {accuracy:>9.4f} {elapsed:>10.1f} {seen / elapsed:>10.0f} "
                f"{current:>12.2f}",
                flush=True,
            )
    elapsed = time.perf_counter() - start
    tracemalloc.stop()
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before health()
    report = net.health(X_test[:1000], y_test[:1000])
    print(
        f"\ntotal {elapsed:.1f} s ({args.n / elapsed:.0f} samples/s, evaluations included); "
        f"traced peak during partial_fit {train_peak:.1f} MiB; "
        f"max RSS {max_rss:.0f} MiB (process, evaluations included)"
    )
    print(f"final accuracy {np.mean(net.predict(X_test) == y_test):.4f} on 10,000 held-out rows")
    print(f"health ok: {report.ok}\n{report}")


if __name__ == "__main__":
    main()
