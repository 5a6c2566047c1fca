"""BLAS thread limits for the training loop.

A training step is a long chain of small BLAS/LAPACK calls (a few rows against one layer). A
multithreaded BLAS wakes its threads for each of them, and on a machine whose cores are busy
the hand-offs cost far more than the arithmetic: on the 2-core reference machine a 784-100-10
network with ``"unit"`` covariance trained at 2 samples/s with the default two OpenBLAS threads
and at 23 samples/s with one (``benchmarks/throughput.py``, batch 1).
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
