r"""Data-parallel training on Dask: broadcast, one pass per shard, natural-parameter merge.

:func:`fit` trains a :class:`~bayeslayers.Network` on data split into partitions (a Dask array
or DataFrame, or NumPy arrays it splits). The partitions are taken in ``rounds`` consecutive
groups; in each round

1. the driver broadcasts the current network to the workers;
2. the round's partitions are dealt into ``n_shards`` shards by where they are held (below),
   and each shard is one task, run on the worker that holds its partitions: a copy of the
   broadcast network makes the single pass (``Network.partial_fit``) over the shard's
   partitions, in their order, and returns what it learned in natural parameters
   (:func:`bayeslayers.merging.network_delta`);
3. the driver adds the changes up (:func:`bayeslayers.merging.apply_deltas`):

.. math::

    \Lambda \leftarrow \Lambda + \sum_k \Delta\Lambda_k, \qquad h \leftarrow h + \sum_k \Delta h_k .

For a network without hidden layers (a Gaussian or one-hot head on fixed features, with a
fixed noise, or a plain Normal-Inverse-Gamma one: ``noise_memory=None, prior_evidence=False``)
this is exactly the sequential posterior whatever
the partitioning, the number of shards and rounds (:mod:`bayeslayers.merging`). With hidden
layers each shard's targets come from its own copy of the body, so the merge is exact given
those targets: more shards per round means each shard sees less data before the merge; more
rounds synchronize more often.

Data stay where they are
-----------------------
A partition is tens of MB (6,250 rows of 784 float64 are 39 MB); the network and a delta of a
``diag`` or ``shared`` first layer are a few MB. So the computation goes to the data. The
shards are contiguous runs of each round's partitions, fixed by the partitioning alone (the
result does not depend on where Dask happens to put the data), and shard :math:`k` is meant
for worker :math:`k` (in address order, cycling). Partitions that are not in the cluster's
memory yet (NumPy inputs, lazy collections) are computed on the worker their shard is meant
for, so they never move; for partitions already held (persisted before the call) each shard
runs on the worker holding most of its bytes, balanced across the workers (:func:`_owners`),
and what is held elsewhere moves once. Only the network (broadcast once per round with
``client.scatter(..., broadcast=True)``) and the deltas travel each round.

The prior
---------
An unfitted network gets the prior that ``Network.fit`` would set from all the rows, not from
one partition: with ``init="samples"`` the first layer's prior mean
(:func:`bayeslayers.engine.sample_prior_mean`) reads the inputs' mean :math:`\bar x`, a few
rows drawn by index from all :math:`N`, and the spread over all rows of the drawn units'
pre-activations :math:`z = (x - \bar x) W`. :class:`_PartitionedRows` computes each of those on
the workers, partition by partition (sums and row counts; the picked rows; per partition the
count, mean and sum of squared deviations of :math:`z`, pooled exactly by Chan's formula
:math:`M_2 = \sum_p M_{2,p} + \sum_p n_p (\bar z_p - \bar z)^2`), so the prior equals the
sequential one to rounding. With the same prior, one shard reproduces the posterior of
``Network.fit`` with ``shuffle=False`` exactly (``batch_size=1``), and with several shards
the only difference left to the sequential pass is the sharding itself, not a different
random start: the hidden-layer networks' accuracy then stays close to that of one
sequential pass, seed by seed (``benchmarks/RESULTS.md``). The iterate average of the hidden means
(:mod:`bayeslayers.averaging`) does not merge (:mod:`bayeslayers.merging`): a distributed fit
ends with ``average_ = None`` and predicts at the merged posterior means, as a sequential fit
does where its evidence keeps the posterior means.

At the end the head finishes pending work (``head.flush``, as at the end of ``Network.fit``:
an ADVI refit, an evidence update of a Gaussian head's prior precision). The network is
changed only after the last round: if a worker fails, a partition does not
match, or a merged covariance is not positive definite, ``fit`` raises and the network is as
it was.

Clusters
--------
``client=None`` uses the current Dask client (:func:`distributed.get_client`), or starts a
``LocalCluster`` of single-threaded worker processes on this machine for the call. The same
code runs on any Dask cluster: pass a ``distributed.Client`` connected to it, e.g.
``Client("tcp://scheduler:8786")`` for an existing scheduler, a ``dask_jobqueue.SLURMCluster``
(or PBS, SGE, ...) for a batch system, or a ``dask_kubernetes`` cluster. Give the workers one
thread each (several worker processes per machine rather than threads: a shard's loop holds
the GIL) and :data:`WORKER_CONFIG` (no sampling profiler), e.g.
``distributed.worker.profile.enabled: false`` in the workers' Dask configuration. Dask's
nanny starts workers with ``MALLOC_TRIM_THRESHOLD_`` set, which makes glibc map and unmap
every array over 128 KiB; a shard's task raises the thresholds while it runs and restores them
after (:class:`_heap_blocks`), so that costs nothing on any cluster. Workers need
bayeslayers installed; the network travels to them by pickle (Dask's own serialization;
model files written by :func:`bayeslayers.io.save` remain pickle-free).
"""

from __future__ import annotations

import copy
import ctypes
import functools
import itertools
import platform
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from bayeslayers._validation import check_batch_size, check_count
from bayeslayers.merging import NetworkDelta, apply_deltas, network_delta
from bayeslayers.network import Network

__all__ = ["WORKER_CONFIG", "ShardError", "fit"]

#: Dask settings for workers that train (used for the ``LocalCluster`` :func:`fit` starts;
#: for another cluster, set them in its Dask configuration). A shard's task is a long loop of
#: small Python-level steps, and the worker's statistical profiler, which samples the running
#: thread's stack every 10 ms, slows such a loop measurably (``benchmarks/RESULTS.md``).
WORKER_CONFIG: dict[str, Any] = {"distributed.worker.profile.enabled": False}


class ShardError(RuntimeError):
    """A shard's task failed on a worker (the network was left unchanged)."""


def _dask():
    try:
        import dask
        import distributed
    except ImportError as error:  # pragma: no cover - the extra is part of [dev]
        raise ImportError(
            "bayeslayers.distributed needs Dask: pip install 'bayeslayers[distributed]'"
        ) from error
    return dask, distributed


def fit(
    network: Network,
    X,
    y,
    *,
    client=None,
    n_shards: int | None = None,
    rounds: int = 1,
    partitions: int | None = None,
    batch_size: int = 1,
    fraction: float = 1.0,
    classes=None,
    progress: bool = False,
) -> Network:
    """Train ``network`` with one pass over partitioned data on a Dask cluster.

    Parameters
    ----------
    network : Network
        Trained further if fitted (like ``partial_fit``); otherwise its prior is the one
        ``Network.fit`` would set from all the rows (shapes from the first partition; with
        ``init="samples"`` the inputs' statistics computed over all partitions, module
        docstring) and the classes from all partitions' labels.
    X : dask array, dask DataFrame or array-like of shape (n, d)
        Inputs. A Dask array is rechunked to whole rows; a NumPy array is split into
        ``partitions`` parts.
    y : dask array, dask Series/DataFrame or array-like of shape (n,) or (n, k)
        Targets or labels, partitioned like ``X`` (a NumPy ``y`` with a Dask ``X`` is chunked
        like it).
    client : distributed.Client, optional
        The cluster to use (module docstring). None: the current client, or a temporary
        ``LocalCluster``.
    n_shards : int, optional
        Tasks per round; the number of workers if omitted (at most the round's partitions).
        Each is a contiguous run of the round's partitions and runs where they are held
        (module docstring).
    rounds : int
        Consecutive groups of partitions, with a broadcast and a merge after each.
    partitions : int, optional
        Parts a NumPy ``X`` is split into (``n_shards * rounds`` if omitted); not for Dask
        inputs, whose own partitions are used.
    batch_size : int
        Rows per update inside each partition (``Network.partial_fit``).
    fraction : float
        Tempering fraction :math:`c \\in (0, 1]`.
    classes : array-like, optional
        All class labels (classification heads); found from the labels if omitted.
    progress : bool
        A progress bar over the shards of each round (tqdm).

    Returns
    -------
    Network
        ``network``, trained.

    Raises
    ------
    TypeError, ValueError
        For bad arguments or partitions that do not match (features, rows, classes), before
        the network is changed.
    ShardError
        If a shard's task failed on a worker for another reason (a lost worker, a failed
        factorization); the network is unchanged.
    numpy.linalg.LinAlgError
        If a merged covariance is not positive definite; the network is unchanged.
    """
    if not isinstance(network, Network):
        raise TypeError(f"network must be a Network, got {type(network).__name__}")
    if network.spec.memory is not None:  # a set memory, or one a memory race chose
        raise ValueError(
            f"the network forgets (memory {network.spec.memory!r} rows per weight): a shard "
            "that forgets does not send an additive change, so the merge would not be its "
            "posterior; use memory=None (memory='evidence' on an unfitted network keeps none)"
        )
    check_count(rounds, "rounds")
    check_count(n_shards, "n_shards", allow_none=True)
    check_count(partitions, "partitions", allow_none=True)
    batch_size = check_batch_size(batch_size)
    if isinstance(fraction, bool) or not (
        isinstance(fraction, int | float | np.number) and 0 < fraction <= 1
    ):
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    _, distributed = _dask()
    own = None
    if client is None:
        try:
            client = distributed.get_client()
        except ValueError:
            dask, _ = _dask()
            with dask.config.set(WORKER_CONFIG):
                own = distributed.Client(
                    distributed.LocalCluster(threads_per_worker=1, dashboard_address=None)
                )
            client = own
    elif not isinstance(client, distributed.Client):
        raise TypeError(f"client must be a distributed.Client or None, got {client!r}")
    try:
        return _fit(
            network,
            X,
            y,
            client,
            n_shards,
            rounds,
            partitions,
            batch_size,
            fraction,
            classes,
            progress,
        )
    finally:
        if own is not None:
            cluster = own.cluster
            own.close()
            cluster.close()


def _fit(
    network, X, y, client, n_shards, rounds, partitions, batch_size, fraction, classes, progress
) -> Network:
    _, distributed = _dask()
    start = time.perf_counter()
    if n_shards is None:
        n_shards = max(1, len(client.scheduler_info().get("workers", {})))
    n_parts = partitions or n_shards * rounds
    parts_X, parts_y, n_features = _partitions(X, y, n_parts, partitions is not None)
    if network.is_fitted and n_features != network.n_features_in_:
        raise ValueError(
            f"X has {n_features} features, but the model expects {network.n_features_in_}"
        )
    if len(parts_X) < rounds:
        raise ValueError(f"rounds={rounds} needs at least as many partitions, got {len(parts_X)}")
    groups = np.array_split(np.arange(len(parts_X)), rounds)
    workers = sorted(client.scheduler_info().get("workers", {}))
    plan, meant = _plan(groups, n_shards, workers)

    def compute(parts: Sequence, index) -> dict:
        """Futures of ``parts[i]``, each computed on the worker its shard is meant for."""
        return {
            int(i): client.compute(
                parts[i],
                workers=None if meant[int(i)] is None else [meant[int(i)]],
                allow_other_workers=True,
            )
            for i in index
        }

    # Targets are computed once (the classes need them all); inputs one round at a time, so
    # the cluster holds at most a round's partitions of X.
    futures_y = compute(parts_y, range(len(parts_y)))
    futures_X = compute(parts_X, groups[0])
    current = copy.deepcopy(network)
    if not current.is_fitted:
        sampled = current.init == "samples" and bool(current.layers)  # reads every row
        later = compute(parts_X, range(len(groups[0]), len(parts_X))) if sampled else {}
        _initialize(current, client, {**futures_X, **later}, futures_y, classes)
        del later  # released: their round computes them again
    current.head_state_ = current.head.flush(current.head_state_)
    for r, (group, shards) in enumerate(zip(groups, plan, strict=True)):
        if any(int(i) not in futures_X for i in group):
            futures_X = compute(parts_X, group)
        round_X = [futures_X[int(i)] for i in group]
        distributed.wait(round_X)
        owners = _owners(
            [[int(i) - int(group[0]) for i in shard] for shard in shards],
            client.who_has(round_X),
            client.nbytes(keys=[f.key for f in round_X], summary=False),
            [f.key for f in round_X],
            [meant[int(shard[0])] for shard in shards],
            workers,
        )
        broadcast = client.scatter(current, broadcast=True, hash=False)
        tasks = [
            client.submit(
                _train_shard,
                broadcast,
                [futures_X[int(i)] for i in shard],
                [futures_y[int(i)] for i in shard],
                [int(i) for i in shard],
                batch_size,
                fraction,
                pure=False,
                workers=None if owner is None else [owner],
                allow_other_workers=True,  # if the owner is lost, any worker may run it
            )
            for shard, owner in zip(shards, owners, strict=True)
        ]
        for i in group:  # a round's inputs leave the cluster with it
            futures_X.pop(int(i), None)
        del round_X
        deltas = _gather(client, tasks, shards, progress, f"round {r + 1}/{rounds}")
        current = apply_deltas(current, deltas)
    current.head_state_ = current.head.flush(current.head_state_)  # as at the end of fit
    current.training_time_ = time.perf_counter() - start
    vars(network).clear()
    vars(network).update(vars(current))
    return network


def _plan(groups, n_shards: int, workers: Sequence[str]) -> tuple[list, dict[int, str | None]]:
    """Each round's contiguous shards and the worker each partition is meant for.

    The shards are fixed by the partitioning alone, so the result does not depend on where
    Dask put the data; shard ``k`` of each round is meant for worker ``k``.
    """
    plan = [[s for s in np.array_split(g, min(n_shards, len(g))) if len(s)] for g in groups]
    meant = {
        int(i): workers[k % len(workers)] if workers else None
        for shards in plan
        for k, shard in enumerate(shards)
        for i in shard
    }
    return plan, meant


def _initialize(net: Network, client, futures_X: dict, futures_y: dict, classes) -> None:
    """Set ``net``'s prior as ``Network.fit`` would from all the partitions' rows.

    Shapes and classes need two rows, not a partition; the sampled first layer reads every
    partition where it lies (:class:`_PartitionedRows`, module docstring).
    """
    if net.head.is_classifier and classes is None:
        labels = client.gather(client.map(_unique_labels, list(futures_y.values()), pure=False))
        classes = np.unique(np.concatenate(labels))
    x0, y0 = client.gather(
        [client.submit(_first_rows, f, pure=False) for f in (futures_X[0], futures_y[0])]
    )
    net.initialize(x0, y0, classes=classes)
    if net.init == "samples" and net.layers:
        rows = [futures_X[i] for i in range(len(futures_X))]
        try:
            net.initialize(x0, y0, classes=classes, prior_rows=_PartitionedRows(client, rows))
        except Exception as error:
            raise ShardError(
                f"setting the prior from the partitions failed ({type(error).__name__}: "
                f"{error}); the network was left unchanged"
            ) from error


def _gather(client, tasks, shards, progress: bool, desc: str) -> list[NetworkDelta]:
    """The shards' deltas in shard order; a failure cancels the rest and is re-raised."""
    _, distributed = _dask()
    pending = distributed.as_completed(tasks, loop=client.loop)  # this client, default or not
    if progress:
        from tqdm.auto import tqdm

        pending = tqdm(pending, total=len(tasks), desc=f"bayeslayers {desc}", unit="shard")
    failed = None
    for future in pending:
        if future.status == "error":
            failed = future
            break
    if failed is None:
        return client.gather(tasks)
    error = failed.exception()
    client.cancel(tasks)
    k = tasks.index(failed)
    notes = "".join(f", {note}" for note in getattr(error, "__notes__", ()))
    where = f"shard {k} (partitions {shards[k].tolist()}{notes})"
    if type(error) in (ValueError, TypeError):
        raise type(error)(f"{where}: {error}; the network was left unchanged") from error
    raise ShardError(
        f"{where} failed on a worker ({type(error).__name__}: {error}); "
        "the network was left unchanged"
    ) from error


def _train_shard(
    net: Network,
    xs: Sequence,
    ys: Sequence,
    index: Sequence[int],
    batch_size: int,
    fraction: float,
) -> NetworkDelta:
    """On a worker: one pass of a copy of ``net`` over the partitions, then its delta."""
    with _heap_blocks():
        trained = copy.deepcopy(net)
        for i, x, yv in zip(index, xs, ys, strict=True):
            try:
                trained.partial_fit(
                    _as_array(x), _as_array(yv), batch_size=batch_size, fraction=fraction
                )
            except Exception as error:
                error.add_note(f"in partition {i}")
                raise
        return network_delta(net, trained, name="the shard's network")


#: Environment variables that fix glibc malloc's thresholds when a process starts (any one of
#: them turns off glibc's adjustment of the mmap threshold).
_MALLOC_ENV = (
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_GLIBC_THRESHOLD = 128 * 1024  # glibc's default for both


@functools.cache
def _fixed_malloc() -> tuple[Any, dict[int, int]] | None:
    """glibc's ``mallopt`` and the thresholds to restore, if this process started with fixed ones.

    Read from the environment the process started with (``/proc/self/environ``), which is the
    one glibc read, not from ``os.environ``: a Dask nanny adds its variables to its own
    process's ``os.environ`` when it spawns a worker, where they have no effect on malloc.
    """
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        with open("/proc/self/environ", "rb") as f:
            start = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
    except OSError:
        return None
    if not any(name.encode() in start for name in _MALLOC_ENV):
        return None
    restore = {
        option: int(start.get(name.encode(), _GLIBC_THRESHOLD))
        for option, name in (
            (_M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_"),
            (_M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_"),
        )
    }
    return ctypes.CDLL(None).mallopt, restore


class _heap_blocks:  # lower case: used like a function, ``with _heap_blocks():``
    r"""While a shard trains, serve its arrays from the heap, where a worker's malloc would not.

    Dask's nanny starts each worker process with ``MALLOC_TRIM_THRESHOLD_=65536``
    (``distributed.nanny.pre-spawn-environ``) so that freed memory goes back to the operating
    system. Setting it also stops glibc from raising its mmap threshold, which otherwise
    grows past the size of each block freed, up to 32 MiB. The threshold stays at 128 KiB, and
    a training step's arrays (a 784 x 100 layer's means and variances are 627 KB each) are
    each a fresh ``mmap``: every page is faulted in and zeroed on first use, and unmapped on
    ``free``. On the 50,000-row stream of ``benchmarks/distributed.py`` that is about 18
    minor page faults per row and 15-25 % of a shard's CPU time (``benchmarks/RESULTS.md``);
    a process started without the variable, like the sequential fit, has next to none.

    Inside the block, in a process started with any variable that fixes the thresholds
    (:data:`_MALLOC_ENV`, :func:`_fixed_malloc`), the mmap threshold is 32 MiB and the trim
    threshold 64 MiB (the values glibc's own adjustment reaches, the trim at
    :math:`2 \times` the mmap threshold); on exit both go back to the values the process
    started with, or glibc's default of 128 KiB, so between shards the worker returns memory
    as Dask configured it. Threads running shards at the same time share the setting; the
    last one to leave restores it. Elsewhere (no such variable, so glibc adapts by itself;
    another C library) nothing is changed.
    """

    _active = 0  # blocks entered and not yet left, over all threads
    _lock = threading.Lock()

    def __enter__(self) -> None:
        fixed = _fixed_malloc()
        if fixed is not None:
            with _heap_blocks._lock:
                _heap_blocks._active += 1
                if _heap_blocks._active == 1:
                    fixed[0](_M_MMAP_THRESHOLD, 32 * 2**20)
                    fixed[0](_M_TRIM_THRESHOLD, 64 * 2**20)

    def __exit__(self, *exc_info: object) -> None:
        fixed = _fixed_malloc()
        if fixed is not None:
            mallopt, restore = fixed
            with _heap_blocks._lock:
                _heap_blocks._active -= 1
                if _heap_blocks._active == 0:
                    for option, value in restore.items():
                        mallopt(option, value)


def _owners(
    shards: Sequence[Sequence[int]],
    who_has: dict,
    nbytes: dict,
    keys: Sequence,
    meant: Sequence[str | None],
    workers: Sequence[str],
) -> list[str | None]:
    r"""The worker each shard runs on: the one holding most of its bytes, balanced.

    ``shards`` hold positions into ``keys`` (the round's input partitions). Shard by shard,
    the owner is the worker holding the most bytes of the shard's partitions among the
    workers that have fewer than :math:`\lceil S / W \rceil` shards so far (``W`` the
    workers holding data), ties going to the worker the shard was meant for (``meant``); a
    shard none of whose partitions is held anywhere keeps its meant worker. So data computed
    where its shard was meant to run never moves, and data placed elsewhere (persisted before
    the call) moves as little as balance allows.
    """
    holders = sorted({*workers, *(w for k in keys for w in who_has.get(k, ()))})
    cap = -(-len(shards) // max(1, len(workers)))
    taken: dict[str, int] = {}
    owners: list[str | None] = []
    for shard, hint in zip(shards, meant, strict=True):
        held: dict[str, int] = {}
        for j in shard:
            for w in who_has.get(keys[j], ())[:1]:
                held[w] = held.get(w, 0) + int(nbytes.get(keys[j], 0))
        free = [w for w in holders if taken.get(w, 0) < cap]
        if not free:
            owners.append(hint)
            continue
        best = max(free, key=lambda w: (held.get(w, 0), w == hint))
        owner = best if held.get(best, 0) or hint is None or hint not in free else hint
        taken[owner] = taken.get(owner, 0) + 1
        owners.append(owner)
    return owners


class _PartitionedRows:
    r"""The rows of partitioned inputs, as :func:`bayeslayers.engine.sample_prior_mean` reads them.

    That function takes ``len(X)``, ``X.mean(axis=0)``, ``X[pick]`` and
    ``((X - mu) @ W).std(axis=0)``; each is computed here on the workers, partition by
    partition, so the prior equals the one set from the whole array (module docstring).
    """

    def __init__(self, client, parts: Sequence) -> None:
        self._client, self._parts = client, list(parts)
        stats = client.gather(client.map(_row_sums, self._parts, pure=False))
        self._sizes = np.array([n for n, _ in stats], dtype=np.int64)
        self._sum = np.sum([s for _, s in stats], axis=0)
        self.shape = (int(self._sizes.sum()), len(self._sum))

    def __len__(self) -> int:
        return self.shape[0]

    def mean(self, axis: int = 0) -> np.ndarray:
        if axis != 0:
            raise ValueError("only the mean over rows is computed")
        return self._sum / len(self)

    def __getitem__(self, pick) -> np.ndarray:
        pick = np.asarray(pick, dtype=np.int64)
        edges = np.concatenate([[0], np.cumsum(self._sizes)])
        part = np.searchsorted(edges, pick, side="right") - 1
        used = np.unique(part)
        tasks = [
            self._client.submit(_take, self._parts[p], pick[part == p] - edges[p], pure=False)
            for p in used
        ]
        out = np.empty((len(pick), self.shape[1]))
        for p, rows in zip(used, self._client.gather(tasks), strict=True):
            out[part == p] = rows
        return out

    def __sub__(self, mu) -> _Centred:
        return _Centred(self, np.asarray(mu))


class _Centred:
    """``X - mu`` of :class:`_PartitionedRows`, kept lazy until it is projected."""

    def __init__(self, rows: _PartitionedRows, mu: np.ndarray) -> None:
        self._rows, self._mu = rows, mu

    def __matmul__(self, W) -> _Projected:
        return _Projected(self._rows, self._mu, np.asarray(W))


class _Projected:
    """``(X - mu) @ W`` of :class:`_PartitionedRows`; only its column spread is computed."""

    def __init__(self, rows: _PartitionedRows, mu: np.ndarray, W: np.ndarray) -> None:
        self._rows, self._mu, self._W = rows, mu, W

    def std(self, axis: int = 0) -> np.ndarray:
        """Population standard deviation over rows, pooled from the partitions (Chan)."""
        if axis != 0:
            raise ValueError("only the spread over rows is computed")
        client = self._rows._client
        mu, W = client.scatter([self._mu, self._W], broadcast=True, hash=False)
        stats = client.gather(
            [client.submit(_moments, p, mu, W, pure=False) for p in self._rows._parts]
        )
        n = np.array([s[0] for s in stats], dtype=np.float64)
        means = np.array([s[1] for s in stats])
        total = n.sum()
        mean = (n[:, None] * means).sum(axis=0) / total
        m2 = sum(s[2] for s in stats) + (n[:, None] * (means - mean) ** 2).sum(axis=0)
        return np.sqrt(m2 / total)


def _row_sums(x) -> tuple[int, np.ndarray]:
    x = np.asarray(_as_array(x), dtype=np.float64)
    return len(x), x.sum(axis=0)


def _take(x, index: np.ndarray) -> np.ndarray:
    return np.asarray(_as_array(x)[index], dtype=np.float64)


def _moments(x, mu: np.ndarray, W: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Rows, mean and sum of squared deviations of the columns of ``(x - mu) @ W``."""
    z = (np.asarray(_as_array(x), dtype=np.float64) - mu) @ W
    if not len(z):
        return 0, np.zeros(W.shape[1]), np.zeros(W.shape[1])
    m = z.mean(axis=0)
    return len(z), m, ((z - m) ** 2).sum(axis=0)


def _first_rows(part, k: int = 2) -> np.ndarray:
    return _as_array(part)[:k]


def _unique_labels(y) -> np.ndarray:
    return np.unique(_as_array(y))


def _as_array(part) -> np.ndarray:
    """A partition (NumPy, pandas) as a NumPy array; pandas string labels as ``str``."""
    if hasattr(part, "to_numpy"):
        part = part.to_numpy()
    arr = np.asarray(part)
    if arr.dtype == object and arr.size and all(isinstance(v, str) for v in arr.ravel()):
        arr = arr.astype(str)
    return arr


def _partitions(X, y, n_parts: int, explicit: bool) -> tuple[list[Any], list[Any], int]:
    """Delayed partitions of ``X`` and ``y`` (row-aligned) and the number of features."""
    dask, _ = _dask()
    import dask.array as da
    import dask.dataframe as dd

    lazy_X, lazy_y = dask.is_dask_collection(X), dask.is_dask_collection(y)
    if not lazy_X and not lazy_y:
        X, y = np.asarray(X), np.asarray(y)
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-D array (n_samples, n_features), got shape {X.shape}")
        if len(y) != len(X):
            raise ValueError(f"y has {len(y)} rows but X has {len(X)}")
        if n_parts > len(X):
            raise ValueError(f"cannot split {len(X)} rows into {n_parts} partitions")
        edges = np.linspace(0, len(X), n_parts + 1).round().astype(int)
        parts = list(itertools.pairwise(edges))
        delayed = dask.delayed
        return (
            [delayed(X[a:b]) for a, b in parts],
            [delayed(y[a:b]) for a, b in parts],
            X.shape[1],
        )
    if explicit:
        raise ValueError("partitions applies to NumPy inputs only; Dask inputs keep their own")
    if isinstance(X, dd.DataFrame):
        if not isinstance(y, dd.DataFrame | dd.Series):
            raise TypeError(
                f"y must be a Dask Series or DataFrame with a Dask DataFrame X, "
                f"got {type(y).__name__}"
            )
        if X.npartitions != y.npartitions:
            raise ValueError(f"X has {X.npartitions} partitions but y has {y.npartitions}")
        return list(X.to_delayed()), list(y.to_delayed()), len(X.columns)
    if not isinstance(X, da.Array):
        X = da.from_array(np.asarray(X), chunks=(y.chunks[0], -1))
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n_samples, n_features), got shape {X.shape}")
    X = X.rechunk({1: -1})
    if not isinstance(y, da.Array):
        y = da.from_array(
            np.asarray(y), chunks=X.chunks[0] if np.ndim(y) == 1 else (X.chunks[0], -1)
        )
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y has {y.shape[0]} rows but X has {X.shape[0]}")
    y = y.rechunk({0: X.chunks[0], **({1: -1} if y.ndim == 2 else {})})
    return list(X.to_delayed().ravel()), list(y.to_delayed().ravel()), X.shape[1]
