r"""Probes of the one-pass learning signal of the hidden layers (issue 15), paired on seeds.

Each probe changes one thing against the library's defaults (``BayesLayersClassifier`` /
``BayesLayersRegressor`` with ``hidden=(width,) * depth`` and ``random_state=seed``, the
splits of ``benchmarks/depth.py``) and is scored on the same test split as the defaults:

``default``
    The defaults (``targets="gauss_newton"``).
``head-refit``
    Diagnostic, not one pass: the defaults, then the head refitted from its prior on the
    final hidden features of every training row (in the fit's batches; at the hidden means
    the network predicts at, the iterate average where in use), predicting with the
    refitted head. The gain is what the head loses by having accumulated its statistics
    from features that changed afterwards.
``target-step=S``
    ``"gauss_newton"`` with every target correction multiplied by ``S``.
``posterior``
    The ``"gauss_newton"`` target with its damping chosen per row by the uncertainties:
    :math:`\hat\delta_i = e_i A_i^\top (A_i A_i^\top + \lambda_i I)^{-1}` with
    :math:`\lambda_i = \bar s_i / \bar c_i`, the posterior mean of the change of the layer's
    output under the prior :math:`\delta_i \sim N(0, \bar c_i I)` (:math:`\bar c_i` the
    mean over the units that take part of the layer's predictive variance
    :math:`g_{ij}^2 x_i^\top \Sigma_j x_i`) given :math:`e_i = \delta_i A_i + N(0, \bar s_i
    I)` (:math:`\bar s_i` the mean of the updated head's residual variance: its tempered
    noise plus its weight variance, as ``"ekf"`` starts from).
``hidden-forgetting=M`` / ``hidden-process-noise=Q``
    Before every batch of ``n`` rows every hidden posterior is widened,
    :math:`\Sigma \leftarrow \Sigma / \lambda + n Q I` with :math:`\lambda = e^{-n / M}`
    (:func:`bayeslayers.conjugate.inflate`): the weights as a random walk.
``head-forgetting=M`` / ``head-power=K``
    The same for the head's weights before every batch, with :math:`\lambda = e^{-n / M}`,
    or :math:`\lambda = (N / (N + n))^{1 / K}` after ``N`` rows (a row seen at ``s`` then
    weighs :math:`(s / N)^{1/K}`: power-law forgetting).
``KEY=VALUE``, any other key
    An estimator parameter (``damping=0.1``, ``sweeps=3``, ``passes=3``, ...).
``A+B``
    Probes ``A`` and ``B`` together (``passes=3+head-refit``).

The inflation probes wrap the public :func:`bayeslayers.engine.train_step` (which
:func:`bayeslayers.training.run_pass` calls for every batch) and the strategy probes are
records added to :data:`bayeslayers.propagation.TARGETS`; the library is not changed.

``--depth-benchmark ARGS...`` instead runs ``benchmarks/depth.py`` with the ``posterior``
strategy registered (``--targets gauss_newton posterior --reference gauss_newton``).

Run ``OPENBLAS_NUM_THREADS=1 python benchmarks/one_pass_probes.py --probes default head-refit``
(``--help`` for the rest).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import depth

from bayeslayers import conjugate, engine, propagation
from bayeslayers.propagation import TARGETS, LayerView, Target, TargetStrategy, Upper
from bayeslayers.sklearn import BayesLayersClassifier, BayesLayersRegressor

GN = TARGETS["gauss_newton"]
EKF = TARGETS["ekf"]


def posterior_target(upper: Upper, layer: LayerView, fraction, damping, clip) -> Target:
    """The ``posterior`` probe's target (module docstring), row by row."""
    x, _, g, _, post = layer
    movable = g != 0
    c = np.where(movable, g * g * conjugate.marginal_variance(post, x), 0.0)
    c_bar = c.sum(axis=1) / np.maximum(movable.sum(axis=1), 1)
    s_bar = np.einsum("nkk->n", upper.S) / upper.S.shape[-1]
    J = np.broadcast_to(upper.J, (len(x), *np.shape(upper.J)[-2:]))
    delta = np.zeros_like(g)
    for i in np.flatnonzero(c_bar > 0):  # a row with no unit that can move keeps delta = 0
        delta[i] = propagation.solve_targets(
            upper.E[i : i + 1], J[i], s_bar[i] / c_bar[i], clip, rows=movable[i : i + 1]
        )[0]
    return Target(delta)


def posterior_down(upper: Upper, layer: LayerView, target: Target, new) -> Upper:
    """``"gauss_newton"``'s chained residual and Jacobian, the head's noise ``S`` kept."""
    return GN.down(upper, layer, target, new)._replace(S=upper.S)


def step_strategy(step: float) -> TargetStrategy:
    """``"gauss_newton"`` with every correction multiplied by ``step``."""

    def target(upper, layer, fraction, damping, clip) -> Target:
        got = GN.target(upper, layer, fraction, damping, clip)
        return got._replace(delta=step * got.delta)

    return TargetStrategy(f"target-step={step:g}", GN.start, target, GN.down)


def register(name: str) -> str:
    """Add the strategy of probe ``name`` to ``TARGETS``; its key."""
    if name == "posterior":
        TARGETS[name] = TargetStrategy(name, EKF.start, posterior_target, posterior_down)
    elif name.startswith("target-step="):
        TARGETS[name] = step_strategy(float(name.split("=")[1]))
    return name


#: The inflation in force for the next fit (probe key -> value), read by :func:`_step`.
INFLATE: dict[str, float] = {}
_train_step = engine.train_step


def _step(spec, state, X, T, fraction, **kwargs):
    """``engine.train_step`` after the inflation of :data:`INFLATE` (module docstring)."""
    n = len(X)
    if state.hidden and ("hidden-forgetting" in INFLATE or "hidden-process-noise" in INFLATE):
        lam = np.exp(-n / INFLATE.get("hidden-forgetting", np.inf))
        q = n * INFLATE.get("hidden-process-noise", 0.0)
        hidden = tuple(conjugate.inflate(p, forgetting=lam, process_noise=q) for p in state.hidden)
        state = state._replace(hidden=hidden)
    head = state.head
    lam = 1.0
    if "head-forgetting" in INFLATE:
        lam = float(np.exp(-n / INFLATE["head-forgetting"]))
    if "head-power" in INFLATE and head.seen > 0:
        lam = float((head.seen / (head.seen + n)) ** (1.0 / INFLATE["head-power"]))
    if lam < 1.0:
        state = state._replace(
            head=head._replace(post=conjugate.inflate(head.post, forgetting=lam))
        )
    return _train_step(spec, state, X, T, fraction, **kwargs)


engine.train_step = _step


def scores(split: depth.Split, est, head_state=None) -> dict:
    """Test scores of ``est`` (its head replaced by ``head_state`` if given)."""
    if head_state is not None:
        est = copy.deepcopy(est)
        est.network_.head_state_ = head_state
    if split.task == "classification":
        return split.score(None, est.classes_, est.predict_proba(split.X_test))
    return split.score((*est.predict(split.X_test, return_std=True), est.predictive_dof()))


def refit_head(split: depth.Split, est):
    """The head refitted from its prior on the final features of the training rows."""
    net = est.network_
    X = est.network_features(split.X_train)
    y = split.y_train
    if split.task == "regression":
        y = (y - est.y_mean_) / est.y_scale_
    prior = copy.deepcopy(net).initialize(X, y)
    _, T = prior.encode(X, y)
    xh, _ = engine.forward(net.spec, net.prediction_state.hidden, X)  # the means it predicts at
    state, size = prior.head_state_, depth.auto_batch_size(len(X))
    for start in range(0, len(X), size):
        rows = slice(start, start + size)
        state = net.head.update(state, xh[rows], T[rows], 1.0)
    return net.head.flush(state)


def run(split: depth.Split, probe: str, width: int, n_layers: int, seed: int) -> dict:
    """One probe on one split (``A+B``: probes ``A`` and ``B`` together)."""
    INFLATE.clear()
    params: dict = {}
    for part in probe.split("+"):
        key, _, value = part.partition("=")
        if part == "posterior" or key == "target-step":
            params["targets"] = register(part)
        elif key in ("hidden-forgetting", "hidden-process-noise", "head-forgetting", "head-power"):
            INFLATE[key] = float(value)
        elif value:
            params[key] = json.loads(value)
    kind = BayesLayersClassifier if split.task == "classification" else BayesLayersRegressor
    est = kind(hidden=(width,) * n_layers, random_state=seed, **params)
    est.fit(split.X_train, split.y_train)
    refit = "head-refit" in probe.split("+")
    return scores(split, est, refit_head(split, est) if refit else None)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--depth-benchmark"]:
        for name in ("posterior",):
            register(name)
        depth.main(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probes", nargs="+", default=["default", "head-refit"])
    parser.add_argument("--dataset", default="mnist-5k", choices=list(depth.WIDTHS))
    parser.add_argument("--depth", type=int, default=1, help="hidden layers")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/one-pass-probes.json"))
    args = parser.parse_args(argv)
    width = depth.WIDTHS[args.dataset]
    runs = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        split = depth.Split(args.dataset, seed, None, 0.1)
        for probe in dict.fromkeys(["default", *args.probes]):
            runs.append(
                {"probe": probe, "seed": seed, **run(split, probe, width, args.depth, seed)}
            )
            print(json.dumps(runs[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"argv": argv, "commit": depth.commit(), "runs": runs}
    args.out.write_text(json.dumps(record, indent=1))
    print(table(runs))


def table(runs: list[dict]) -> str:
    """Mean over seeds, and the paired difference to ``default`` (mean ± standard error)."""
    metric = "accuracy" if "accuracy" in runs[0] else "rmse"
    base = {r["seed"]: r for r in runs if r["probe"] == "default"}
    lines = [
        f"| probe | seeds | {metric} | NLL | {metric} - default | NLL - default |",
        "|---|---|---|---|---|---|",
    ]
    for probe in dict.fromkeys(r["probe"] for r in runs):
        rows = [r for r in runs if r["probe"] == probe]
        cells = [str(len(rows))]
        cells += [f"{np.mean([r[m] for r in rows]):.4f}" for m in (metric, "nll")]
        for m in (metric, "nll"):
            diff = np.array([r[m] - base[r["seed"]][m] for r in rows])
            se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
            cells.append(f"{diff.mean():+.4f} ± {se:.4f}")
        lines.append(f"| {probe} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
