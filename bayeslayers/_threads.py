"""BLAS thread limits for the training loop.

A training step is a long chain of small BLAS/LAPACK calls (a few rows against one layer). A
multithreaded BLAS wakes its threads for each of them, and on a machine whose cores are busy
the hand-offs cost far more than the arithmetic: one thread is several times faster for small
batches (``benchmarks/throughput.py --blas-threads 1 0``; figures in ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cache

__all__ = ["blas_threads"]


@cache
def _controller():
    """One :class:`threadpoolctl.ThreadpoolController` (building it scans loaded libraries)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def blas_threads(limit: int | None) -> Iterator[None]:
    """Run the block with at most ``limit`` BLAS threads; ``None`` leaves BLAS as it is."""
    if limit is None:
        yield
        return
    with _controller().limit(limits=limit, user_api="blas"):
        yield
