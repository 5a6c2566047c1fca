r"""Numerical health of a network's weight posteriors.

Two levels of checking:

* :func:`check_posteriors` is the cheap guard run after every training step: every mean entry
  must be finite and every variance (the diagonal of each covariance) positive and not NaN.
  It costs one compiled pass over the :math:`O(mD)` means and variances of each layer
  (:func:`bayeslayers._kernels.healthy`) and raises
  :class:`FloatingPointError` naming the layer, so a failing step is rolled back instead of
  leaving NaN in the model.
* :func:`report` (``Network.health()``) is the full examination: per layer, whether the
  covariances are symmetric, whether each one has a Cholesky factor
  :math:`\Sigma = L L^\top` (the test of positive definiteness), and the smallest eigenvalue
  :math:`\lambda_{\min}(\Sigma_j)` over the layer's covariances (the smallest variance for the
  ``"diag"`` structure). Given probe inputs ``X`` it counts dead units (slope
  :math:`g_{ij} = 0` on every probe row: a ReLU that never fires, a saturated tanh), and given
  targets ``Y`` too, the largest entry :math:`\max |\delta|` of the target correction that the
  next training step on ``(X, Y)`` would propagate into each hidden layer's output (computed on
  a copy of the state; the network is not changed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from bayeslayers import _kernels, conjugate, engine
from bayeslayers._validation import check_batch_size, check_features
from bayeslayers.conjugate import WeightPosterior

__all__ = [
    "HealthReport",
    "LayerHealth",
    "check_posteriors",
    "named_failure",
    "posterior_of",
    "report",
]

#: Largest relative asymmetry :math:`\max|\Sigma - \Sigma^\top| / \max|\Sigma|` still called
#: symmetric (updates re-symmetrize, so anything above rounding is a defect).
SYMMETRY_TOL = 1e-10


def posterior_of(state) -> WeightPosterior | None:
    """The Gaussian weight posterior inside a layer or head state (None if it has none)."""
    if isinstance(state, WeightPosterior):
        return state
    post = getattr(state, "post", None)
    return post if isinstance(post, WeightPosterior) else None


def _variances(post: WeightPosterior) -> np.ndarray:
    """Every weight's variance, through the structure's hook (:data:`conjugate.STRUCTURES`)."""
    return conjugate.variances(post)


@contextlib.contextmanager
def named_failure(name: str) -> Iterator[None]:
    r"""Re-raise a failed factorization inside an update with the layer's name.

    A Cholesky factorization of :math:`S = \tfrac{\sigma^2}{c} I + \Phi \Sigma \Phi^\top`
    can only fail if :math:`\Sigma` has lost positive definiteness (or holds NaN).
    """
    try:
        yield
    except np.linalg.LinAlgError as error:
        raise np.linalg.LinAlgError(
            f"the update of {name} failed ({error}): its covariance is no longer positive "
            "definite; the model was left unchanged (try a larger noise / hidden_noise)"
        ) from error


def check_posteriors(states, names) -> None:
    """Raise :class:`FloatingPointError` unless every mean is finite and every variance > 0.

    Parameters
    ----------
    states : iterable
        Weight posteriors, or head states holding one as ``.post`` (others are skipped); a
        head state with several readouts (``.readouts``, each holding one posterior) is
        checked readout by readout.
    names : iterable of str
        A name for each state, used in the message.
    """
    for state, name in zip(states, names, strict=True):
        readouts = getattr(state, "readouts", None)
        for i, part in enumerate((state,) if readouts is None else readouts):
            post = posterior_of(part)
            if post is None or _kernels.healthy(post.mean, _variances(post)):
                continue
            where = name if readouts is None else f"{name} (readout {i})"
            raise FloatingPointError(
                f"the update of {where} produced {_problem(post)}; the model was left "
                "unchanged (try a larger damping, a clip, or a larger noise / hidden_noise)"
            )


def _problem(post: WeightPosterior) -> str:
    """What is wrong with a weight posterior that failed :func:`_kernels.healthy`."""
    var = _variances(post)
    if not np.all(np.isfinite(post.mean)):
        return "non-finite weight means"
    if not np.all(np.isfinite(var)):
        return "non-finite variances"
    return f"a non-positive variance (min {float(var.min()):.3g})"


class LayerHealth(NamedTuple):
    """Health of one layer's weight posterior.

    Attributes
    ----------
    layer : str
        ``"hidden 0 (relu)"``, ..., ``"head (gaussian)"``.
    structure : str
        Covariance structure.
    finite : bool
        Every mean and covariance entry is finite.
    symmetric : bool
        Every covariance is symmetric to :data:`SYMMETRY_TOL` (always true for ``"diag"``).
    cholesky : bool
        Every covariance has a Cholesky factor (``"diag"``: every variance is > 0).
    min_eigenvalue : float
        Smallest eigenvalue over the layer's covariances (smallest variance for ``"diag"``).
    dead_units : int or None
        Units with zero slope on every probe row; None without probe inputs (0 for the head,
        whose outputs are linear).
    max_correction : float or None
        Largest :math:`|\\delta|` of the target correction into this layer's output on the
        probe batch; None without probe targets and for the head.
    """

    layer: str
    structure: str
    finite: bool
    symmetric: bool
    cholesky: bool
    min_eigenvalue: float
    dead_units: int | None
    max_correction: float | None

    @property
    def ok(self) -> bool:
        """Finite, symmetric and positive definite."""
        return self.finite and self.symmetric and self.cholesky


class HealthReport(NamedTuple):
    """Per-layer :class:`LayerHealth`, input side first, head last."""

    layers: tuple[LayerHealth, ...]

    @property
    def ok(self) -> bool:
        """Every layer is finite, symmetric and positive definite."""
        return all(layer.ok for layer in self.layers)

    def __str__(self) -> str:
        title = f"{'layer':<22}{'structure':<10}{'ok':<4}{'min eig':>11}{'dead':>6}"
        rows = [f"{title}{'max |delta|':>13}"]
        for h in self.layers:
            dead = "-" if h.dead_units is None else str(h.dead_units)
            corr = "-" if h.max_correction is None else f"{h.max_correction:.3g}"
            rows.append(
                f"{h.layer:<22}{h.structure:<10}{'yes' if h.ok else 'NO':<4}"
                f"{h.min_eigenvalue:>11.3g}{dead:>6}{corr:>13}"
            )
        return "\n".join(rows)


def _covariance_health(post: WeightPosterior) -> conjugate.CovarianceHealth:
    """``finite, symmetric, cholesky, min_eigenvalue`` of one posterior (the structure's hook)."""
    return conjugate.covariance_health(post, SYMMETRY_TOL)


def report(net, X=None, Y=None, batch_size: int = 100) -> HealthReport:
    """Examine every posterior of a fitted network (see the module docstring).

    Parameters
    ----------
    net : Network
        A fitted network; it is not modified.
    X : array-like of shape (n, d), optional
        Probe inputs for counting dead units.
    Y : array-like, optional
        Targets (or labels) for ``X``: also report the largest target correction.
    batch_size : int
        The corrections are those of a training step on ``batch_size`` probe rows at a time,
        every batch taken from the current state (this also bounds the memory of the
        per-unit batch solves, which grows with the square of the batch).

    Returns
    -------
    HealthReport
    """
    if not net.is_fitted:
        raise RuntimeError("this Network is not fitted yet: call fit or partial_fit first")
    if Y is not None and X is None:
        raise ValueError("Y was given without X: pass probe inputs X with the targets")
    batch_size = check_batch_size(batch_size)
    spec, state = net.spec, net.state
    dead: list[int | None] = [None] * len(net.layers)
    corrections: list[float | None] = [None] * len(net.layers)
    if X is not None:
        if Y is None:
            Xc = check_features(X, net.n_features_in_, net.dtype)
        else:
            Xc, T = net.encode(X, Y)
            largest = np.zeros(len(net.layers))
            for start in range(0, len(Xc), batch_size):
                batch = slice(start, start + batch_size)
                _, info = engine.train_step(spec, state, Xc[batch], T[batch], 1.0)
                largest = np.maximum(largest, info.corrections)
            corrections = [float(c) for c in largest]
        _, trace = engine.forward(spec, state.hidden, Xc)
        dead = [int(np.sum(~np.any(step.g != 0, axis=0))) for step in trace]
    rows = []
    for i, (layer, post) in enumerate(zip(net.layers, net.posteriors_, strict=True)):
        rows.append(
            LayerHealth(
                f"hidden {i} ({type(layer).__name__})",
                post.structure,
                *_covariance_health(post),
                dead[i],
                corrections[i],
            )
        )
    head_post = posterior_of(net.head_state_)
    if head_post is not None:
        rows.append(
            LayerHealth(
                f"head ({type(net.head).__name__})",
                head_post.structure,
                *_covariance_health(head_post),
                None if X is None else 0,
                None,
            )
        )
    return HealthReport(tuple(rows))
