"""The damped minimum-norm target solve."""

import numpy as np
import pytest

from bayeslayers import propagation
from bayeslayers.propagation import solve_targets


def original_post(a, Y, W):
    """Y^l = a + W (W^T W)^{-1} (Y^{l+1} - a W)^T from the original post (one row)."""
    return a + (W @ np.linalg.solve(W.T @ W, (Y - a @ W).T)).T


def test_undamped_equals_original_post_formula():
    rng = np.random.default_rng(0)
    d, k, n = 8, 3, 5
    W = rng.normal(size=(d, k))
    a, Y = rng.normal(size=(n, d)), rng.normal(size=(n, k))
    delta = solve_targets(Y - a @ W, W, damping=0.0)
    np.testing.assert_allclose(a + delta, original_post(a, Y, W), rtol=1e-10)
    np.testing.assert_allclose((a + delta) @ W, Y, rtol=1e-10)  # reproduces the target


def test_masked_solve_equals_restricted_solve():
    """Zero rows (inputs that cannot move) and columns (units that did not take part)."""
    rng = np.random.default_rng(1)
    d, k = 7, 4
    W = rng.normal(size=(d, k))
    movable = np.array([1, 0, 1, 1, 0, 1, 1], bool)
    part = np.array([1, 1, 0, 1], bool)
    e = rng.normal(size=(1, k)) * part
    J = W * movable[:, None] * part[None, :]
    for damping in (0.0, 0.05):
        full = solve_targets(e, J, damping)
        Jr = W[np.ix_(movable, part)]
        gram = Jr.T @ Jr + damping * np.eye(part.sum())
        restricted = np.linalg.solve(gram, e[:, part].T).T @ Jr.T
        np.testing.assert_allclose(full[:, movable], restricted, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(full[:, ~movable], 0.0, atol=1e-12)


@pytest.mark.parametrize(("d", "k"), [(10, 3), (3, 10)])
def test_both_gram_forms_agree_with_pseudoinverse_limit(d, k):
    rng = np.random.default_rng(2)
    J = rng.normal(size=(4, d, k))
    E = rng.normal(size=(4, k))
    tiny = solve_targets(E, J, damping=1e-10)
    exact = solve_targets(E, J, damping=0.0)
    np.testing.assert_allclose(tiny, exact, rtol=1e-6, atol=1e-8)


def test_damping_bounds_the_correction():
    """Near-singular J: undamped corrections explode, damped ones stay bounded."""
    rng = np.random.default_rng(3)
    J = rng.normal(size=(6, 2)) * np.array([1.0, 1e-6])
    E = np.array([[1.0, 1.0]])
    norms = [np.linalg.norm(solve_targets(E, J, damping=lam)) for lam in (0.0, 1e-2, 1.0)]
    assert norms[0] > 1e4
    assert norms[1] < np.linalg.norm(E) / (2 * np.sqrt(1e-2))  # |e J^T (JJ^T+l)^-1| bound
    assert norms[2] < norms[1]


def test_clip_limits_every_entry():
    rng = np.random.default_rng(4)
    delta = solve_targets(rng.normal(size=(3, 2)) * 50, rng.normal(size=(5, 2)), 1e-2, clip=0.5)
    assert np.max(np.abs(delta)) <= 0.5


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"damping": -1.0}, "damping"), ({"clip": 0.0}, "clip")]
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        solve_targets(np.ones((1, 2)), np.ones((3, 2)), **kwargs)


@pytest.mark.parametrize("compact_min", [128, 0])
@pytest.mark.parametrize("damping", [0.0, 1e-2])
@pytest.mark.parametrize(("d", "k"), [(9, 4), (4, 9)])
def test_masks_equal_explicitly_masked_jacobian(monkeypatch, compact_min, damping, d, k):
    """``rows``/``cols`` give the zero-padded solve, batched or row by row (compacted)."""
    monkeypatch.setattr(propagation, "_COMPACT_MIN", compact_min)
    rng = np.random.default_rng(5)
    n = 6
    W = rng.normal(size=(d, k))
    rows = rng.random((n, d)) < 0.6
    rows[0] = False  # a row with nothing that can move
    cols = rng.normal(size=(n, k)) * (rng.random((n, k)) < 0.6)
    cols[1] = 0.0  # a row where no unit took part
    E = rng.normal(size=(n, k)) * (cols != 0)
    explicit = W[None] * rows[:, :, None] * cols[:, None, :]
    for J in (W, np.broadcast_to(W, (n, d, k)).copy()):
        got = solve_targets(E, J, damping, rows=rows, cols=cols)
        want = solve_targets(E, explicit, damping)
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(got[~rows], 0.0, atol=1e-12)
        np.testing.assert_allclose(got[:2], 0.0, atol=1e-12)
