"""Online mean-field ADVI (PyMC) for the probit and logistic heads.

Every test shares one compiled fitter per link, shape (64 rows, 3 inputs, 1 column), with the
heads' default ``n_mc`` and ``learning_rate``, so the file compiles two PyTensor functions
(20-90 s each on the shared machine even with a warm ``~/.pytensor`` cache).

The reference is the exact posterior of the same small Bayesian probit / logistic regression,
computed on a 3-D grid. Tolerances (as in PyMC's own VI tests, stated in sd units of the exact
posterior): means within 0.25 sd; mean-field sds within 30% (ADVI's sds are marginal sds of a
factorized fit, so they may be smaller than the exact marginals when weights are correlated).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_expit, log_ndtr

from bayeslayers import Network, heads
from bayeslayers.heads.advi import get_fitter

# Compiling and running these takes minutes on the shared 2-core machine: kept out of the
# default run (pytest -m slow runs them).
pytestmark = pytest.mark.slow

N_ROWS, N_IN = 64, 3
DEFAULTS = heads.Probit()
LINKS = ("probit", "logistic")


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.c_[rng.normal(size=(N_ROWS, 2)), np.ones(N_ROWS)]
    y = (rng.random(N_ROWS) < 0.5 * (1 + np.tanh(X @ [1.5, -1.0, 0.3]))).astype(float)
    return X, y


def _targets(link: str, y: np.ndarray) -> np.ndarray:
    """Probit: indicator of class 1. Logistic: one-hot over (class 0, reference class 1)."""
    return y[:, None] if link == "probit" else np.c_[1 - y, y]


def _exact_posterior(link: str, X: np.ndarray, y: np.ndarray):
    """Mean and sd of the posterior under a N(0, I) prior, on a 91^3 grid."""
    g = np.linspace(-4.0, 5.0, 91)
    W = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    eta = W @ X.T
    if link == "probit":
        loglik = log_ndtr((2 * y - 1) * eta).sum(axis=1)
    else:  # the column is the logit of class 0 against the reference class 1
        loglik = ((1 - y) * log_expit(eta) + y * log_expit(-eta)).sum(axis=1)
    logp = loglik - 0.5 * np.sum(W**2, axis=1)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    mean = p @ W
    return mean, np.sqrt(p @ (W - mean) ** 2)


@pytest.fixture(scope="module", params=LINKS)
def link(request):
    return request.param


@pytest.fixture(scope="module")
def fitter(link):
    return get_fitter(link, N_ROWS, N_IN, 1, DEFAULTS.n_mc, DEFAULTS.learning_rate)


def _fit(fitter, X, Y, weights, mean, sd, seed=0, n_steps=1500):
    return fitter.fit(
        X, Y, weights, mean, sd, start_mean=mean, start_sd=sd, n_steps=n_steps, seed=seed
    )


def test_advi_matches_the_exact_posterior(link, fitter):
    X, y = _data()
    exact_mean, exact_sd = _exact_posterior(link, X, y)
    prior = np.zeros((N_IN, 1)), np.ones((N_IN, 1))
    result = _fit(fitter, X, _targets(link, y), np.ones(N_ROWS), *prior)
    assert np.all(np.abs(result.mean[:, 0] - exact_mean) < 0.25 * exact_sd)
    np.testing.assert_allclose(result.sd[:, 0], exact_sd, rtol=0.3)
    assert np.isfinite(result.loss)


def test_online_chunks_nearly_equal_one_fit(link, fitter):
    """Four chunks of 16 rows, each posterior the next prior, against one fit on all 64 rows.

    Tolerance: means within 0.6 exact sd, sds within 30% (online mean-field VI forgets the
    correlations between chunks, which costs a little more than one fit).
    """
    X, y = _data()
    Y = _targets(link, y)
    _, exact_sd = _exact_posterior(link, X, y)
    mean, sd = np.zeros((N_IN, 1)), np.ones((N_IN, 1))
    once = _fit(fitter, X, Y, np.ones(N_ROWS), mean, sd)
    for k in range(4):
        weights = np.zeros(N_ROWS)
        weights[16 * k : 16 * (k + 1)] = 1.0
        result = _fit(fitter, X, Y, weights, mean, sd, seed=k)
        mean, sd = result.mean, result.sd
    assert np.all(np.abs(mean - once.mean)[:, 0] < 0.6 * exact_sd)
    np.testing.assert_allclose(sd, once.sd, rtol=0.3)


def test_fit_depends_only_on_inputs_and_seed(link, fitter):
    """Same seed: identical result (optimizer state reset, draws reseeded); zero-weight rows
    do not matter whatever they hold; another seed gives another (close) result."""
    X, y = _data()
    Y = _targets(link, y)
    weights = np.r_[np.ones(40), np.zeros(N_ROWS - 40)]
    prior = np.zeros((N_IN, 1)), np.ones((N_IN, 1))
    a = _fit(fitter, X, Y, weights, *prior, n_steps=200)
    X2, Y2 = X.copy(), 1.0 - Y
    X2[40:] = 7.0
    b = _fit(fitter, X2, np.r_[Y[:40], Y2[40:]], weights, *prior, n_steps=200)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.sd, b.sd)
    c = _fit(fitter, X, Y, weights, *prior, n_steps=200, seed=1)
    assert not np.array_equal(a.mean, c.mean)
    np.testing.assert_allclose(a.mean, c.mean, atol=0.3)


def test_advi_head_in_a_network_with_fixed_features(link):
    """No hidden layers (fixed features): the head buffers, refits every 64 rows, flushes the
    last partial chunk at the end of fit, and lands near the exact posterior of all rows."""
    X, y = _data()
    X, y = np.r_[X, X[:36]], np.r_[y, y[:36]]  # 100 rows: one full chunk + 36 rows
    head = heads.make_head(link, fit="advi", chunk_size=N_ROWS)
    net = Network([], head=head, prior_precision=1.0)
    net.partial_fit(X[:, :2], y, classes=[0, 1])
    state = net.head_state_
    assert (state.fit.n_refits, state.fit.n_buffered) == (1, 36)
    assert state.post.structure == "diag"
    net.fit(X[:, :2], y)
    state = net.head_state_
    assert (state.fit.n_refits, state.fit.n_buffered) == (2, 0)
    exact_mean, exact_sd = _exact_posterior(link, X, y)
    # Tolerance 0.75 exact sd: two online mean-field chunks put the probit's first weight
    # 0.66 sd (200 steps per refit) or 0.63 sd (1000 steps) from the exact mean.
    assert np.all(np.abs(state.post.mean[:, 0] - exact_mean) < 0.75 * exact_sd)
    assert np.mean(net.predict(X[:, :2]) == y) > 0.7
