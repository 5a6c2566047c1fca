"""All-or-nothing updates: restore an object's attributes if a block raises."""

from __future__ import annotations

import copy
from types import TracebackType

__all__ = ["unchanged_on_error"]


class unchanged_on_error:  # lower case: used like a function, ``with unchanged_on_error(obj):``
    """Restore every attribute of ``obj`` if the block raises (``KeyboardInterrupt`` too).

    The snapshot is shallow: attributes the block replaces rather than mutates (fitted state
    built anew, as every update here does) come back exactly. Attributes named in ``deep`` are
    copied first because the block mutates them in place (e.g. a random generator).

    A class, not a generator: a generator-based manager left suspended by an interrupt that
    arrives inside ``__exit__`` would restore its snapshot whenever the generator is
    garbage-collected (``GeneratorExit``), silently undoing every update made since. Here the
    snapshot is restored only from ``__exit__`` with an exception in flight, at most once, and
    dropped as soon as the block ends. The restore is a single attribute store
    (``obj.__dict__ = snapshot``), so an interrupt cannot leave the object half restored.
    """

    __slots__ = ("_deep", "_obj", "_snapshot")

    def __init__(self, obj: object, deep: tuple[str, ...] = ()) -> None:
        self._obj = obj
        self._deep = deep
        self._snapshot: dict | None = None

    def __enter__(self) -> None:
        if self._snapshot is not None:
            raise RuntimeError("unchanged_on_error is not reentrant: use a new one per block")
        self._snapshot = {
            k: copy.deepcopy(v) if k in self._deep else v for k, v in vars(self._obj).items()
        }

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        snapshot, self._snapshot = self._snapshot, None
        if exc_type is not None and snapshot is not None:
            self._obj.__dict__ = snapshot
