"""All-or-nothing updates: restore an object's attributes if a block raises."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

__all__ = ["unchanged_on_error"]


@contextlib.contextmanager
def unchanged_on_error(obj: object, deep: tuple[str, ...] = ()) -> Iterator[None]:
    """Restore every attribute of ``obj`` if the block raises (``KeyboardInterrupt`` too).

    The snapshot is shallow: attributes the block replaces rather than mutates (fitted state
    built anew, as every update here does) come back exactly. Attributes named in ``deep`` are
    copied first because the block mutates them in place (e.g. a random generator).
    """
    snapshot = {k: copy.deepcopy(v) if k in deep else v for k, v in vars(obj).items()}
    try:
        yield
    except BaseException:
        vars(obj).clear()
        vars(obj).update(snapshot)
        raise
