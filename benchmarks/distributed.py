"""Data-parallel training: accuracy against the number of shards, throughput, communication.

Five parts (``--part``):

``shards``
    Accuracy / RMSE and log-likelihood against the number of shards K (1, 2, 4, 8, 16),
    simulated on one machine: the training split is cut into K contiguous shards, a copy of the
    prior (set from the whole training split, as one ``fit`` would) makes the single pass over
    each, and ``bayeslayers.merge`` adds the shards' changes up (what one round of
    ``bayeslayers.distributed.fit`` with K shards computes). K = 1 is one sequential pass.
    sine-1d (1-50-50-1), digits (64-100-10) and mnist-5k (784-100-10, diag first layer), over
    ``--seeds`` (each seed draws the split and the initialization). Also a model without hidden
    layers on digits, for which the merge is exact.
``digits``
    digits 64-100-10 (one-hot head) fitted by ``distributed.fit`` on a 2-process LocalCluster
    with 4 partitions (``--rounds``: 1 and 2; 4 rounds of 4 partitions would be one sequential
    pass) against one sequential pass, over ``--seeds``, paired by seed.
``throughput``
    A 50,000-row stream (mnist-5k training rows repeated with N(0, 0.02^2) noise added to the
    pixels), 784-100-10 with a diagonal first layer (as ``variants/mnist-5k-relu.toml``), one
    sequential ``Network.fit`` in this process and ``distributed.fit`` on a LocalCluster of 1
    and 2 single-threaded worker processes, in the same run. The stream lives in the workers'
    memory (a persisted Dask array) before the timed call; each cluster is warmed up first (the
    workers import the library and load the compiled kernels).
``ceiling``
    The machine's own limit for two processes, without Dask: in each repeat one process fits
    the whole stream of ``throughput`` (``Network.fit``), then two plain processes, released
    together by a barrier, each fit one contiguous half of it. The speed-up of the halves over
    the whole bounds what any two-process engine can reach on this machine for this work.
``bytes``
    Per structure of the first layer (unit, shared, diag) of 784-100-10: bytes broadcast per
    worker (the pickled network) and returned per shard (the pickled delta), the training time
    of a round's rows, the workers' natural-parameter conversion, and the driver's merge (one
    conversion per round plus one addition per shard); from these, a projected speed-up for
    8-64 workers (a stated network bandwidth at the driver, its sends and receives serialized).

Run ``OPENBLAS_NUM_THREADS=1 python benchmarks/distributed.py --part shards`` (or
``digits``, ``throughput``, ``ceiling``, ``bytes``, ``all``); results are printed as
Markdown tables and written to ``benchmarks/out/distributed-<part>.json``.
"""

from __future__ import annotations

# ruff: noqa: E402
import argparse
import copy
import functools
import itertools
import json
import pickle
import sys
import time
from pathlib import Path

# This file is named like Dask's ``distributed`` package: run as a script, its folder comes
# first on sys.path and would shadow the package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import numpy as np

import bayeslayers
from bayeslayers import Network, heads, layers
from bayeslayers.datasets import load_dataset
from bayeslayers.merging import apply_deltas, network_delta
from bayeslayers.metrics import nll_classification, nll_gaussian, rmse

OUT = Path(__file__).parent / "out"

#: Per dataset: hidden layers, batch size, Network keywords, load_dataset keywords.
SETUPS = {
    "sine-1d": {
        "hidden": lambda: [layers.ReLU(50), layers.ReLU(50)],
        "batch": 1,
        "net": {},
        "data": {},
    },
    "digits": {"hidden": lambda: [layers.ReLU(100)], "batch": 1, "net": {}, "data": {}},
    "mnist-5k": {
        "hidden": lambda: [layers.ReLU(100, covariance="diag")],
        "batch": 32,
        "net": {"bias_spread": 0.1, "sweeps": 2, "noise": 0.3, "damping": 0.1},
        "data": {"standardize": False},
    },
    "digits-linear": {"hidden": lambda: [], "batch": 1, "net": {}, "data": {}},
}


def scores(net: Network, data) -> dict:
    if data.task == "classification":
        proba = net.predict_proba(data.X_test)
        acc = float(np.mean(net.classes_[proba.argmax(1)] == data.y_test))
        return {
            "accuracy": acc,
            "nll": nll_classification(data.y_test, proba, classes=net.classes_),
        }
    mean, std = net.predict(data.X_test, return_std=True)
    return {"rmse": rmse(data.y_test, mean), "nll": nll_gaussian(data.y_test, mean, std)}


def shard_fit(make, hidden, data, K: int, batch: int) -> Network:
    """One round of K shards from the prior, merged (K = 1: one sequential pass)."""
    prior = make(hidden()).initialize(data.X_train, data.y_train)
    edges = np.linspace(0, len(data.X_train), K + 1).round().astype(int)
    shards = [
        copy.deepcopy(prior).partial_fit(data.X_train[a:b], data.y_train[a:b], batch_size=batch)
        for a, b in itertools.pairwise(edges)
    ]
    merged = bayeslayers.merge(prior, shards)
    merged.head_state_ = merged.head.flush(merged.head_state_)
    return merged


def part_shards(args) -> dict:
    rows = []
    for name in args.datasets:
        setup = SETUPS[name]
        for seed in range(args.seeds):
            data = load_dataset(name.removesuffix("-linear"), seed=seed, **setup["data"])
            head = heads.OneHot() if data.task == "classification" else None
            make = functools.partial(Network, head=head, seed=seed, **setup["net"])
            for K in args.shards:
                start = time.perf_counter()
                net = shard_fit(make, setup["hidden"], data, K, setup["batch"])
                rows.append(
                    {
                        "dataset": name,
                        "seed": seed,
                        "K": K,
                        "seconds": time.perf_counter() - start,
                        **scores(net, data),
                    }
                )
                print(rows[-1], flush=True)
    table = ["| dataset | K | accuracy / RMSE | NLL | vs K=1 (paired) |", "|---|---|---|---|---|"]
    for name in args.datasets:
        mine = [r for r in rows if r["dataset"] == name]
        metric = "accuracy" if "accuracy" in mine[0] else "rmse"
        base = {r["seed"]: r for r in mine if r["K"] == 1}
        for K in args.shards:
            rs = [r for r in mine if r["K"] == K]
            m = np.array([r[metric] for r in rs])
            nll = np.array([r["nll"] for r in rs])
            diff = np.array([r[metric] - base[r["seed"]][metric] for r in rs])
            scale = 100 if metric == "accuracy" else 1
            table.append(
                f"| {name} | {K} | {scale * m.mean():.4g} ± {scale * m.std():.2g} | "
                f"{nll.mean():.4g} ± {nll.std():.2g} | {scale * diff.mean():+.3g} ± "
                f"{scale * diff.std():.2g} |"
            )
    print("\n".join(table))
    return {"rows": rows, "table": table}


# ------------------------------------------------------------------------------ throughput
@functools.lru_cache(maxsize=1)
def _mnist():
    return load_dataset("mnist-5k", seed=0, standardize=False)


def _stream_block(start: int, stop: int, noise: float = 0.02):
    """Rows ``start:stop`` of the stream: mnist-5k training rows cycled, plus seeded noise."""
    data = _mnist()
    index = np.arange(start, stop) % len(data.X_train)
    rng = np.random.default_rng(start)
    X = data.X_train[index] + noise * rng.standard_normal((stop - start, data.X_train.shape[1]))
    return X, data.y_train[index]


def _stream_net() -> Network:
    return Network(
        [layers.ReLU(100, covariance="diag")],
        head=heads.OneHot(),
        seed=0,
        **SETUPS["mnist-5k"]["net"],
    )


def _persisted_stream(client, edges, dtype):
    """The stream as a Dask array built and kept on the workers (row blocks ``edges``).

    Loaded once, as a data set split over a cluster would be: block ``j`` of ``B`` is made on
    worker ``j W / B`` (in address order), so each worker holds a contiguous run of blocks,
    the run ``distributed.fit`` gives that worker's shard.
    """
    import operator

    import dask.array as da
    from distributed import wait

    workers = sorted(client.scheduler_info()["workers"])
    n_blocks = len(edges) - 1
    xs, ys = [], []
    for j, (a, b) in enumerate(itertools.pairwise(edges)):
        where = [workers[j * len(workers) // n_blocks]]
        block = client.submit(_stream_block, a, b, workers=where, pure=False)
        xs.append(client.submit(operator.itemgetter(0), block, workers=where))
        ys.append(client.submit(operator.itemgetter(1), block, workers=where))
    X = da.concatenate(
        [
            da.from_delayed(f, (b - a, 784), float)
            for f, a, b in zip(xs, edges[:-1], edges[1:], strict=True)
        ]
    )
    y = da.concatenate(
        [
            da.from_delayed(f, (b - a,), dtype)
            for f, a, b in zip(ys, edges[:-1], edges[1:], strict=True)
        ]
    )
    X, y = client.persist([X, y])
    wait([X, y])
    return X, y


def _cpu_seconds() -> float:
    return time.process_time()


def _minor_faults() -> int:
    """Minor page faults of this process so far (a page mapped in on first touch)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def part_throughput(args) -> dict:
    """Sequential and ``distributed.fit`` in turn, ``--repeats`` times, on one cluster per size.

    The workers run with ``bayeslayers.distributed.WORKER_CONFIG`` (no sampling profiler)
    unless ``--no-worker-config``. Per run: wall time; CPU seconds of the sequential process
    and of each worker process (``client.run``), so the share of a core each got under the
    machine's load is known; the minor page faults of the same processes (a process whose
    malloc maps each large array afresh faults on every page of it:
    ``bayeslayers.distributed._heap_blocks``); and from Dask's task stream the shard tasks'
    compute and transfer times: ``sum of compute / wall`` is the parallelism achieved,
    ``compute per row`` against the sequential fit's the worker's own overhead, and the
    sequential CPU seconds over the busiest worker's the speed-up the same work would have
    with a free core per process.
    """
    import os

    import dask
    from distributed import Client, LocalCluster, get_task_stream

    from bayeslayers import distributed as bd

    n, chunk = args.stream_rows, args.stream_rows // args.partitions
    edges = [*list(range(0, n, chunk)), n]
    Xs, ys = _stream_block(0, n)
    test = _mnist()
    out: dict = {
        "rows": n,
        "partitions": len(edges) - 1,
        "batch": 32,
        "worker_config": bd.WORKER_CONFIG if args.worker_config else {},
        "runs": [],
    }
    for w in args.workers:  # one cluster per size, started, loaded and warmed up untimed
        with (
            dask.config.set(bd.WORKER_CONFIG if args.worker_config else {}),
            LocalCluster(
                n_workers=w, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            client.run(_mnist)  # each worker loads mnist-5k once
            warm_X, warm_y = _stream_block(0, 256)
            bd.fit(_stream_net(), warm_X, warm_y, client=client, partitions=w, batch_size=32)
            _stream_net().fit(warm_X, warm_y, batch_size=32)  # the driver loads its kernels too
            X, y = _persisted_stream(client, edges, ys.dtype)
            for rep in range(args.repeats):
                run = {"workers": w, "repeat": rep, "load_1min": os.getloadavg()[0]}
                faults = _minor_faults()
                cpu, start = time.process_time(), time.perf_counter()
                seq = _stream_net().fit(Xs, ys, batch_size=32, shuffle=False)
                run["sequential_s"] = time.perf_counter() - start
                run["sequential_cpu_s"] = time.process_time() - cpu
                run["sequential_minor_faults"] = _minor_faults() - faults
                run["sequential_accuracy"] = float(np.mean(seq.predict(test.X_test) == test.y_test))
                before, faults = client.run(_cpu_seconds), client.run(_minor_faults)
                with get_task_stream(client) as stream:
                    start = time.perf_counter()
                    net = bd.fit(_stream_net(), X, y, client=client, batch_size=32)
                    run["distributed_s"] = time.perf_counter() - start
                after = client.run(_cpu_seconds)
                run["worker_cpu_s"] = [after[k] - before[k] for k in sorted(after)]
                after = client.run(_minor_faults)
                run["worker_minor_faults"] = [after[k] - faults[k] for k in sorted(after)]
                shards = [t for t in stream.data if "_train_shard" in str(t["key"])]
                run["shard_compute_s"] = [
                    sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "compute")
                    for t in shards
                ]
                run["shard_transfer_s"] = [
                    sum(
                        s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "transfer"
                    )
                    for t in shards
                ]
                run["distributed_accuracy"] = float(
                    np.mean(net.predict(test.X_test) == test.y_test)
                )
                run["speedup"] = run["sequential_s"] / run["distributed_s"]
                run["load_1min_after"] = os.getloadavg()[0]
                out["runs"].append(run)
                print(run, flush=True)
    table = [
        "| workers | sequential s | distributed s | speed-up (median) | runs | "
        "Σ shard compute / wall | worker compute per row / sequential | "
        "CPU share: sequential, workers | CPU-time speed-up | "
        "minor page faults per row: sequential, workers | load (1 min) | accuracy seq / dist |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in args.workers:
        rs = [r for r in out["runs"] if r["workers"] == w]
        med = lambda k, rs=rs: float(np.median([r[k] for r in rs]))  # noqa: E731
        par = np.median([sum(r["shard_compute_s"]) / r["distributed_s"] for r in rs])
        per_row = np.median([sum(r["shard_compute_s"]) / r["sequential_s"] for r in rs])
        seq_share = np.median([r["sequential_cpu_s"] / r["sequential_s"] for r in rs])
        work_share = np.median([sum(r["worker_cpu_s"]) / sum(r["shard_compute_s"]) for r in rs])
        # CPU seconds of the sequential fit over those of the busiest worker: the speed-up
        # with a free core per process, at the per-row costs measured in this run
        cpu_speedup = np.median([r["sequential_cpu_s"] / max(r["worker_cpu_s"]) for r in rs])
        seq_faults = np.median([r["sequential_minor_faults"] / n for r in rs])
        work_faults = np.median([sum(r["worker_minor_faults"]) / n for r in rs])
        speedups = ", ".join(f"{r['speedup']:.2f}" for r in rs)
        loads = ", ".join(f"{r['load_1min']:.1f}" for r in rs)
        acc = (
            f"{100 * rs[0]['sequential_accuracy']:.1f} / {100 * rs[0]['distributed_accuracy']:.1f}"
        )
        table.append(
            f"| {w} | {med('sequential_s'):.1f} | {med('distributed_s'):.1f} | "
            f"{med('speedup'):.2f} | {speedups} | {par:.2f} | {per_row:.2f} | "
            f"{seq_share:.2f}, {work_share:.2f} | {cpu_speedup:.2f} | "
            f"{seq_faults:.1f}, {work_faults:.1f} | {loads} | {acc} % |"
        )
    print("\n".join(table))
    out["table"] = table
    return out


def _fit_half(start: int, stop: int, barrier) -> float:
    """Fit rows ``start:stop`` of the stream after ``barrier`` releases; training seconds."""
    X, y = _stream_block(start, stop)
    _stream_net().fit(X[:64], y[:64], batch_size=32)  # load the compiled kernels untimed
    barrier.wait()
    begin = time.perf_counter()
    _stream_net().fit(X, y, batch_size=32, shuffle=False)
    return time.perf_counter() - begin


def part_ceiling(args) -> dict:
    """One process on the whole stream against two plain processes on its halves, in turn."""
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor

    n = args.stream_rows
    Xs, ys = _stream_block(0, n)
    _stream_net().fit(Xs[:64], ys[:64], batch_size=32)
    out: dict = {"rows": n, "batch": 32, "runs": []}
    context = mp.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(2, mp_context=context) as pool:
        for rep in range(args.repeats):
            run = {"repeat": rep, "load_1min": os.getloadavg()[0]}
            start = time.perf_counter()
            _stream_net().fit(Xs, ys, batch_size=32, shuffle=False)
            run["whole_s"] = time.perf_counter() - start
            barrier = manager.Barrier(2)
            halves = [(0, n // 2, barrier), (n // 2, n, barrier)]
            run["halves_s"] = list(pool.map(_fit_half, *zip(*halves, strict=True)))
            run["speedup"] = run["whole_s"] / max(run["halves_s"])
            out["runs"].append(run)
            print(run, flush=True)
    speedups = [r["speedup"] for r in out["runs"]]
    loads = ", ".join(f"{r['load_1min']:.1f}" for r in out["runs"])
    table = [
        "| whole s (median) | slower half s (median) | speed-up (median) | runs | load (1 min) |",
        "|---|---|---|---|---|",
        f"| {np.median([r['whole_s'] for r in out['runs']]):.1f} | "
        f"{np.median([max(r['halves_s']) for r in out['runs']]):.1f} | "
        f"{np.median(speedups):.2f} | {', '.join(f'{v:.2f}' for v in speedups)} | "
        f"{loads} |",
    ]
    print("\n".join(table))
    out["table"] = table
    return out


# ------------------------------------------------------------------------ digits on Dask
def part_digits(args) -> dict:
    """digits 64-100-10 on 4 partitions and 2 worker processes against one sequential pass."""
    from distributed import Client, LocalCluster

    from bayeslayers import distributed as bd

    rows = []
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        for seed in range(args.seeds):
            data = load_dataset("digits", seed=seed)
            make = lambda s=seed: Network([layers.ReLU(100)], head=heads.OneHot(), seed=s)  # noqa: E731
            row = {"seed": seed}
            seq = make().fit(data.X_train, data.y_train, batch_size=1, shuffle=False)
            row["sequential"] = scores(seq, data)
            for rounds in args.rounds:
                net = bd.fit(
                    make(), data.X_train, data.y_train, client=client, partitions=4, rounds=rounds
                )
                row[f"rounds_{rounds}"] = scores(net, data)
            rows.append(row)
            print(row, flush=True)
    table = [
        "| run | accuracy (mean ± sd) | paired Δ vs sequential (points) | worst seed Δ | NLL |",
        "|---|---|---|---|---|",
    ]
    base = np.array([r["sequential"]["accuracy"] for r in rows])
    labels = [("sequential", "one sequential pass")] + [
        (f"rounds_{r}", f"4 partitions, 2 workers, {r} round{'s' if r > 1 else ''}")
        for r in args.rounds
    ]
    for key, label in labels:
        acc = np.array([r[key]["accuracy"] for r in rows])
        nll = np.array([r[key]["nll"] for r in rows])
        d = 100 * (acc - base)
        table.append(
            f"| {label} | {100 * acc.mean():.2f} ± {100 * acc.std():.2f} % | "
            f"{d.mean():+.2f} ± {d.std():.2f} | {d.min():+.2f} | {nll.mean():.3f} |"
        )
    print("\n".join(table))
    return {"rows": rows, "table": table}


# ----------------------------------------------------------------------------------- bytes
def _timed(f, repeats: int = 3) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


def part_bytes(args) -> dict:
    data = _mnist()
    X, y = data.X_train, data.y_train
    rows, table = [], []
    for structure in ("diag", "shared", "unit"):
        # unit: 785 x 785 per unit; time and size measured on 10 units and scaled to 100.
        units = 10 if structure == "unit" else 100
        scale = 100 / units
        make = lambda s=structure, u=units: Network(  # noqa: E731
            [layers.ReLU(u, covariance=s)], head=heads.OneHot(), seed=0, **SETUPS["mnist-5k"]["net"]
        )
        prior = make().initialize(X, y)
        n_rows = 256 if structure == "unit" else 2048
        trained = copy.deepcopy(prior)
        start = time.perf_counter()
        trained.partial_fit(X[:n_rows], y[:n_rows], batch_size=32)
        rate = n_rows / (time.perf_counter() - start) / scale
        net_bytes = len(pickle.dumps(prior, protocol=5)) * scale
        delta_t = _timed(lambda p=prior, t=trained: network_delta(p, t), 1) * scale
        delta = network_delta(prior, trained)
        delta_bytes = len(pickle.dumps(delta, protocol=5)) * scale
        # The driver converts the prior and the sum once per round; each delta adds to the sum.
        merge_1 = _timed(lambda p=prior, d=delta: apply_deltas(p, [d]), 1) * scale
        merge_4 = _timed(lambda p=prior, d=delta: apply_deltas(p, [d] * 4), 1) * scale
        rows.append(
            {
                "structure": structure,
                "rows_per_s": rate,
                "broadcast_bytes": net_bytes,
                "delta_bytes": delta_bytes,
                "delta_s": delta_t,
                "merge_s": merge_1,
                "add_s": max(0.0, (merge_4 - merge_1) / 3),
            }
        )
        print(rows[-1], flush=True)
    N, B = args.round_rows, args.bandwidth
    head = [
        "| first layer | rows/s (1 process) | broadcast MB / worker | delta MB / shard | "
        "delta s (worker) | merge s / round (driver) | add s / shard (driver) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        head.append(
            f"| {r['structure']} | {r['rows_per_s']:,.0f} | "
            f"{r['broadcast_bytes'] / 1e6:.2f} | {r['delta_bytes'] / 1e6:.2f} | "
            f"{r['delta_s']:.3f} | {r['merge_s']:.3f} | {r['add_s']:.3f} |"
        )
    proj = [
        "| first layer | " + " | ".join(f"{w} workers" for w in args.project) + " |",
        "|---" * (len(args.project) + 1) + "|",
    ]
    for r in rows:
        seq = N / r["rows_per_s"]
        cells = []
        for w in args.project:
            # the driver sends w broadcasts and receives w deltas (serialized on its link),
            # adds w deltas and converts once; the workers train N / w rows and convert their
            # deltas in parallel
            comm = w * (r["broadcast_bytes"] + r["delta_bytes"]) / B
            driver = r["merge_s"] + w * r["add_s"]
            t = N / w / r["rows_per_s"] + r["delta_s"] + comm + driver
            cells.append(f"{seq / t:.1f}x")
        proj.append(f"| {r['structure']} | " + " | ".join(cells) + " |")
    table = [
        *head,
        "",
        f"Projected speed-up, {N:,} rows per round, {B / 1e9:g} GB/s at the driver:",
        "",
        *proj,
    ]
    print("\n".join(table))
    return {"rows": rows, "round_rows": N, "bandwidth": B, "table": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--part",
        choices=["shards", "digits", "throughput", "ceiling", "bytes", "all"],
        default="shards",
    )
    parser.add_argument(
        "--datasets", nargs="+", default=["sine-1d", "digits", "mnist-5k", "digits-linear"]
    )
    parser.add_argument("--shards", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", nargs="+", type=int, default=[1, 2], help="digits")
    parser.add_argument("--stream-rows", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--workers", nargs="+", type=int, default=[2])
    parser.add_argument("--repeats", type=int, default=3, help="throughput repeats")
    parser.add_argument(
        "--no-worker-config",
        dest="worker_config",
        action="store_false",
        help="throughput: Dask's default worker settings instead of distributed.WORKER_CONFIG",
    )
    parser.add_argument("--round-rows", type=int, default=50_000)
    parser.add_argument("--bandwidth", type=float, default=1e9, help="bytes/s at the driver")
    parser.add_argument("--project", nargs="+", type=int, default=[8, 16, 32, 64])
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    every = ["shards", "digits", "throughput", "ceiling", "bytes"]
    parts = every if args.part == "all" else [args.part]
    for part in parts:
        result = {
            "shards": part_shards,
            "digits": part_digits,
            "throughput": part_throughput,
            "ceiling": part_ceiling,
            "bytes": part_bytes,
        }[part](args)
        path = OUT / f"distributed-{part}.json"
        path.write_text(json.dumps(result, indent=1, default=float))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
