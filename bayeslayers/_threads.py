"""Threads: BLAS thread limits for the training loop, and one trainer at a time per network.

A training step is a long chain of small BLAS/LAPACK calls (a few rows against one layer). A
multithreaded BLAS wakes its threads for each of them, and on a machine whose cores are busy
the hand-offs cost far more than the arithmetic: one thread is several times faster for small
batches (``benchmarks/throughput.py --blas-threads 1 0``; figures in ``benchmarks/RESULTS.md``).

An update reads the fitted state, computes a new one and assigns it at the end; two threads
updating one network at the same time would each start from the same state and the second
assignment would discard the first's update. :func:`one_at_a_time` serializes the training
methods of each object with a reentrant lock (``fit`` calls ``partial_fit``). The locks live in
a module-level weak table keyed by the object, not in its ``__dict__``, so copying, pickling,
saving and the snapshot/restore of :mod:`bayeslayers._atomic` never see them, and a copy gets
its own lock.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from functools import cache
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["blas_threads", "one_at_a_time", "training_lock"]

_F = TypeVar("_F", bound=Callable[..., Any])


@cache
def _controller():
    """One :class:`threadpoolctl.ThreadpoolController` (building it scans loaded libraries)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


class blas_threads:  # lower case: used like a function, ``with blas_threads(1):``
    """Run the block with at most ``limit`` BLAS threads; ``None`` leaves BLAS as it is.

    A class rather than a generator, so that an interrupt arriving inside ``__exit__`` cannot
    leave a suspended generator that resets the limits later, whenever it is collected.
    """

    __slots__ = ("_limit", "_limiter")

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        self._limiter = None

    def __enter__(self) -> None:
        if self._limit is not None:
            limiter = _controller().limit(limits=self._limit, user_api="blas")
            limiter.__enter__()
            self._limiter = limiter

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter.__exit__(exc_type, exc, tb)


_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def training_lock(obj: object) -> threading.RLock:
    """The reentrant lock that serializes training of ``obj`` (created on first use)."""
    lock = _LOCKS.get(obj)
    if lock is None:
        with _LOCKS_GUARD:
            lock = _LOCKS.get(obj)
            if lock is None:
                lock = _LOCKS[obj] = threading.RLock()
    return lock


def one_at_a_time(method: _F) -> _F:
    """Decorate a method so that only one thread at a time runs it (or any other decorated
    method) on the same object; the others wait. Reentrant within a thread."""

    @functools.wraps(method)
    def serialized(self, *args, **kwargs):
        with training_lock(self):
            return method(self, *args, **kwargs)

    return serialized  # type: ignore[return-value]
