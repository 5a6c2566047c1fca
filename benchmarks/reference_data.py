"""The two reference tasks (sin(3x) regression, digits) shared by the benchmark scripts.

* sine: x ~ U(-2, 2), y = sin(3x) + N(0, 0.1^2); 2,000 draws with ``seed``, the first 1,000
  train and the rest test (inputs left in their own units).
* digits: sklearn's ``load_digits``, ``train_test_split(test_size=0.25, stratify=y,
  random_state=0)``, standardized with the training split's mean and standard deviation.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

__all__ = ["digits_data", "sine_data"]


def sine_data(seed: int = 0):
    """``X_train, y_train, X_test, y_test`` of the sin(3x) task."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (2000, 1))
    y = np.sin(3 * x[:, 0]) + rng.normal(0, 0.1, 2000)
    return x[:1000], y[:1000], x[1000:], y[1000:]


def digits_data():
    """``X_train, y_train, X_test, y_test`` of the digits task."""
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    scaler = StandardScaler().fit(Xtr)
    return scaler.transform(Xtr), ytr, scaler.transform(Xte), yte
