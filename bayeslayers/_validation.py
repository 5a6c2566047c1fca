"""Input checks shared by the public entry points (cheap; no scikit-learn import)."""

from __future__ import annotations

from typing import Literal, overload

import numpy as np

__all__ = [
    "as_float_array",
    "check_count",
    "check_features",
    "check_labels",
    "check_real",
    "check_seed",
    "check_targets",
]

_INF = float("inf")


def _is_real(value) -> bool:
    """A real number: Python or NumPy int/float, not a bool (nor a string, array, complex)."""
    return not isinstance(value, bool | np.bool_) and isinstance(
        value, int | float | np.integer | np.floating
    )


def check_real(
    value,
    name: str,
    low: float = -_INF,
    high: float = _INF,
    allow_none: bool = False,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float | None:
    """``value`` as a finite float in ``[low, high]`` (open ends as asked), else a ``ValueError``.

    NumPy scalars (``np.float32(0.5)``) are accepted; booleans, strings (``"0.5"``), NaN and
    infinities are refused. ``None`` passes if ``allow_none``. The message names ``name`` and
    the range, e.g. ``"damping must be a finite number >= 0, got inf"``.
    """
    if value is None and allow_none:
        return None
    ok = _is_real(value) and bool(np.isfinite(value))
    if ok:
        x = float(value)
        ok = (x > low if low_open else x >= low) and (x < high if high_open else x <= high)
    if not ok:
        if low > -_INF and high < _INF:
            bounds = f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low > -_INF:
            bounds = f" {'>' if low_open else '>='} {low:g}"
        else:
            bounds = f" {'<' if high_open else '<='} {high:g}" if high < _INF else ""
        expected = "a finite number" + bounds
        expected += " or None" if allow_none else ""
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return x


def check_seed(value, name: str = "seed") -> int:
    """``value`` as an int >= 0 (a NumPy integer too), else a ``ValueError`` naming ``name``.

    ``None`` is refused: predictions and the export derive their random streams from the seed,
    so a model must have one to be repeatable.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return int(value)


def _unmasked(x, name: str):
    """``x`` itself, or the data of a masked array without masked entries (else an error).

    A masked array's mask would otherwise be dropped silently by ``np.asarray``.
    """
    if isinstance(x, np.ma.MaskedArray):
        masked = int(np.ma.getmaskarray(x).sum())
        if masked:
            raise ValueError(
                f"{name} is a masked array with {masked} masked entries; the mask cannot be "
                "honoured: fill them (x.filled(...)) or drop those rows first"
            )
        return np.ma.getdata(x)
    return x


def _as_strings(arr: np.ndarray) -> np.ndarray:
    """An object array whose entries are all ``str`` as a NumPy string array, else itself.

    pandas gives object arrays for ``dtype=object`` Series and for its ``str`` dtype.
    """
    if arr.dtype == object and arr.size and all(isinstance(v, str) for v in arr.ravel()):
        return arr.astype(str)
    return arr


@overload
def check_count(value, name: str, allow_none: Literal[False] = False) -> int: ...
@overload
def check_count(value, name: str, allow_none: bool) -> int | None: ...
def check_count(value, name: str, allow_none: bool = False) -> int | None:
    """``value`` as an int >= 1 (``None`` passes if ``allow_none``), else a ``ValueError``.

    Booleans are refused although they are ints; NumPy integers are accepted.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        expected = "an int >= 1" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def check_batch_size(value) -> int:
    """``value`` as a batch size: a ``TypeError`` unless an int, a ``ValueError`` unless >= 1."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"batch_size must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"batch_size must be >= 1, got {value}")
    return int(value)


def as_float_array(x, name: str, dtype) -> np.ndarray:
    """A real, finite float array of ``dtype`` (TypeError for non-numeric, ValueError for NaN)."""
    arr = _as_strings(np.asarray(_unmasked(x, name)))
    if arr.dtype.kind in "US":
        raise TypeError(
            f"{name} must be numeric, got strings (dtype {arr.dtype}); class labels need a "
            "classification head (heads.OneHot(), heads.Probit() or heads.Logistic())"
        )
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    arr = arr.astype(dtype, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_features(X, n_features: int | None, dtype, name: str = "X") -> np.ndarray:
    """A finite 2-D float array with ``n_features`` columns (any count if None) and >= 1 row."""
    arr = as_float_array(X, name, dtype)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (n_samples, n_features), got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 samples")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 features")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, but the model expects {n_features}")
    return arr


def check_targets(Y, n_samples: int, n_outputs: int | None, dtype, name: str = "Y") -> np.ndarray:
    """Finite regression targets as a 2-D ``(n_samples, n_outputs)`` float array."""
    arr = as_float_array(Y, name, dtype)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} rows but X has {n_samples}")
    if n_outputs is not None and arr.shape[1] != n_outputs:
        raise ValueError(f"{name} has {arr.shape[1]} outputs, but the model expects {n_outputs}")
    return arr


def check_labels(y, n_samples: int, name: str = "y") -> np.ndarray:
    """1-D class labels (integers, strings or booleans; not floats with fractional parts)."""
    arr = _as_strings(np.asarray(_unmasked(y, name)))
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D class labels, got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} labels but X has {n_samples} rows")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite labels")
        if not np.all(arr == np.round(arr)):
            raise TypeError(
                f"{name} must hold class labels (integers or strings), got non-integer floats; "
                "use a regression head for continuous targets"
            )
    elif arr.dtype == object or np.iscomplexobj(arr):
        raise TypeError(f"{name} must hold integer, string or boolean labels, got {arr.dtype}")
    return arr


def check_classes(y, fitted: np.ndarray | None, classes=None) -> tuple[np.ndarray, np.ndarray]:
    """The class labels of a classifier and each row's index among them.

    Parameters
    ----------
    y : ndarray
        Checked labels of the rows (:func:`check_labels`).
    fitted : ndarray or None
        The classes a fitted network already knows; ``None`` on the first call, where they
        are ``classes`` (if given) or the labels seen in ``y``.
    classes : array-like, optional
        Every class label, as the caller declares them.

    Returns
    -------
    (ndarray, ndarray)
        The sorted class labels and the index of each row's label among them.
    """
    if fitted is None:
        known = np.unique(y) if classes is None else np.unique(np.asarray(classes))
        if len(known) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {known.tolist()}")
    else:
        known = fitted
        if classes is not None:
            given = np.unique(check_labels(classes, len(classes), "classes"))
            if not np.array_equal(given, fitted):
                raise ValueError(
                    f"classes={given.tolist()} differs from the classes "
                    f"{fitted.tolist()} this network was first fitted with"
                )
    unseen = np.setdiff1d(np.unique(y), known)
    if unseen.size:
        raise ValueError(
            f"y contains labels {unseen.tolist()} not among the classes "
            f"{known.tolist()} (pass classes= to the first partial_fit)"
        )
    return known, np.searchsorted(known, y)
