r"""Online mean-field ADVI for the weights of a probit or logistic head (PyMC).

The head's weights :math:`W \in \mathbb R^{D \times C}` get a fully factorized Gaussian
posterior :math:`q(W) = \prod_{dc} \mathcal N(w_{dc} \mid \mu_{dc}, s_{dc}^2)`. Data arrive in
chunks; the posterior after one chunk is the prior of the next (online variational inference),
so each chunk maximizes the tempered evidence lower bound

.. math::

    \mathcal L(q) = \sum_{i=1}^{n} c_i\, \mathbb E_q\big[\log p(y_i \mid x_i^\top W)\big]
                    - \mathrm{KL}\big(q \,\|\, \mathcal N(\mu_0, \operatorname{diag} s_0^2)\big)

over ``(mu, s)`` with ``c_i`` the tempering fraction of row ``i`` (zero for padding rows), using
PyMC's ADVI objective (reparameterized Monte Carlo gradients, ``n_mc`` draws per step) and Adam.
The returned mean and standard deviation are Polyak averages of the iterates over the second
half of the steps, which removes most of the Monte Carlo jitter of the last iterate.

PyTensor compiles the model once per shape (``n_rows, D, C`` and the link): data, prior and
starting point are swapped through ``pm.Data`` and shared variables, the optimizer's state is
reset and the random stream reseeded before every chunk, so a fit depends only on its inputs
and ``seed``. Compiled fitters are cached for the life of the process (:func:`get_fitter`).
PyMC is imported only when a fitter is first built.

The likelihoods use the numerically stable forms: probit :math:`\log\Phi(s\,\eta)` with
:math:`s = 2y - 1` through ``erfcx`` (the naive ``Bernoulli(p=Phi(eta))`` gives NaN), logistic
:math:`\log\operatorname{softmax}([\eta, 0])` with the last class as the reference.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import NamedTuple

import numpy as np

__all__ = ["LINKS", "ADVIResult", "ChunkADVI", "check_blas", "get_fitter"]

_NO_BLAS = (
    "PyTensor found no BLAS to link its compiled code against (the OpenBLAS inside the NumPy "
    "and SciPy wheels exports renamed symbols), so its compiled matrix products take slower "
    "fallback paths; the fit itself is unaffected. A system BLAS (e.g. apt install "
    "libopenblas-dev) or PyTensor from conda-forge removes this message."
)


@lru_cache(maxsize=1)
def check_blas() -> bool:
    """Whether PyTensor links to a BLAS; resolves its BLAS flags once per process.

    Without one PyTensor warns, in four lines, whenever its flags are first needed (which is
    the middle of a training pass, under the progress bar). This resolves them up front
    (called when an ADVI head's state is built), with that warning replaced by one line
    saying what it means here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="PyTensor could not link to a BLAS", category=UserWarning
        )
        import pytensor

        flags = pytensor.config.blas__ldflags
    if not flags:
        warnings.warn(_NO_BLAS, UserWarning, stacklevel=2)
    return bool(flags)


LINKS = ("probit", "logistic")


class ADVIResult(NamedTuple):
    """Mean-field posterior of one chunk.

    Attributes
    ----------
    mean, sd : ndarray of shape (D, C)
        Posterior means and standard deviations of the weights.
    loss : float
        Negative ELBO averaged over the second half of the steps (in nats).
    """

    mean: np.ndarray
    sd: np.ndarray
    loss: float


def _loglik(link: str, eta, Y):
    """Per-row log-likelihood as a PyTensor expression."""
    import pytensor.tensor as pt
    from pymc.distributions.dist_math import normal_lcdf

    if link == "probit":
        return normal_lcdf(0.0, 1.0, (2.0 * Y - 1.0) * eta).sum(axis=1)
    logits = pt.concatenate([eta, pt.zeros((eta.shape[0], 1))], axis=1)
    return (Y * pt.special.log_softmax(logits, axis=1)).sum(axis=1)


def _softplus_inv(s: np.ndarray) -> np.ndarray:
    """:math:`\\rho` with :math:`\\log(1 + e^\\rho) = s` (PyMC's parameterization of the sd)."""
    return s + np.log(-np.expm1(-s))


class ChunkADVI:
    """A compiled ADVI fitter for one link and one shape.

    Parameters
    ----------
    link : {"probit", "logistic"}
        ``"probit"``: targets ``Y`` are 0/1 indicators, one per weight column,
        :math:`\\log p = \\sum_c \\log\\Phi((2y_c - 1)\\eta_c)`. ``"logistic"``: ``Y`` is one-hot
        over ``C + 1`` classes, :math:`\\log p = y^\\top \\log\\operatorname{softmax}([\\eta, 0])`.
    n_rows, n_in, n_cols : int
        Chunk length ``n``, head input size ``D`` (with bias) and number of weight columns ``C``.
    n_mc : int
        Monte Carlo draws per gradient step.
    learning_rate : float
        Adam step size.
    """

    def __init__(
        self, link: str, n_rows: int, n_in: int, n_cols: int, n_mc: int, learning_rate: float
    ) -> None:
        if link not in LINKS:
            raise ValueError(f"link must be one of {LINKS}, got {link!r}")
        check_blas()
        import pymc as pm
        from pymc.pytensorf import compile as pm_compile
        from pytensor.tensor.random.type import RandomGeneratorType

        n_targets = n_cols if link == "probit" else n_cols + 1
        with pm.Model() as model:
            X = pm.Data("X", np.zeros((n_rows, n_in)))
            Y = pm.Data("Y", np.zeros((n_rows, n_targets)))
            weights = pm.Data("weights", np.zeros(n_rows))
            mu0 = pm.Data("mu0", np.zeros((n_in, n_cols)))
            sd0 = pm.Data("sd0", np.ones((n_in, n_cols)))
            W = pm.Normal("W", mu=mu0, sigma=sd0, shape=(n_in, n_cols))
            pm.Potential("loglik", (weights * _loglik(link, X @ W, Y)).sum())
        inference = pm.ADVI(model=model, random_seed=0)
        group = inference.approx.groups[0]
        self._mu, self._rho = group.params_dict["mu"], group.params_dict["rho"]
        updates = inference.objective.updates(
            obj_n_mc=n_mc, obj_optimizer=pm.adam(learning_rate=learning_rate)
        )
        self._step = pm_compile([], updates.loss, updates=updates, random_seed=0)
        shared = self._step.get_shared()
        self._rngs = [v for v in shared if isinstance(v.type, RandomGeneratorType)]
        self._optimizer_state = [
            (v, v.get_value(borrow=False))
            for v in updates
            if v not in (self._mu, self._rho) and v not in self._rngs
        ]
        self._model = model
        self.shape = (n_rows, n_in, n_cols)

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        weights: np.ndarray,
        prior_mean: np.ndarray,
        prior_sd: np.ndarray,
        *,
        start_mean: np.ndarray,
        start_sd: np.ndarray,
        n_steps: int,
        seed: int,
    ) -> ADVIResult:
        """Fit :math:`q` to one chunk.

        Parameters
        ----------
        X : ndarray of shape (n, D)
            Head inputs with the bias column.
        Y : ndarray of shape (n, C) or (n, C + 1)
            Targets as described for ``link``.
        weights : ndarray of shape (n,)
            Tempering fraction of each row (0 for unused rows).
        prior_mean, prior_sd : ndarray of shape (D, C)
            The prior (the previous chunk's posterior).
        start_mean, start_sd : ndarray of shape (D, C)
            Starting point of the optimization (warm start).
        n_steps : int
            Adam steps; the result averages the last ``n_steps - n_steps // 2`` iterates.
        seed : int
            Seed of the Monte Carlo draws.
        """
        import pymc as pm
        from pymc.pytensorf import reseed_rngs

        with self._model:
            pm.set_data({"X": X, "Y": Y, "weights": weights, "mu0": prior_mean, "sd0": prior_sd})
        self._mu.set_value(np.ascontiguousarray(start_mean).ravel())
        self._rho.set_value(_softplus_inv(np.ascontiguousarray(start_sd).ravel()))
        for var, value in self._optimizer_state:
            var.set_value(value.copy())
        reseed_rngs(self._rngs, seed)
        burn = n_steps // 2
        mu_sum = np.zeros_like(self._mu.get_value())
        sd_sum = np.zeros_like(mu_sum)
        loss = 0.0
        for i in range(n_steps):
            value = self._step()
            if i >= burn:
                mu_sum += self._mu.get_value(borrow=True)
                sd_sum += np.logaddexp(0.0, self._rho.get_value(borrow=True))
                loss += float(value)
        kept = n_steps - burn
        shape = np.shape(prior_mean)
        return ADVIResult(
            (mu_sum / kept).reshape(shape), (sd_sum / kept).reshape(shape), loss / kept
        )


@lru_cache(maxsize=16)
def get_fitter(
    link: str, n_rows: int, n_in: int, n_cols: int, n_mc: int, learning_rate: float
) -> ChunkADVI:
    """The process-wide compiled :class:`ChunkADVI` for these settings (built on first use)."""
    return ChunkADVI(link, n_rows, n_in, n_cols, n_mc, learning_rate)
