"""Predictive uncertainty, calibration and the cost of the ArviZ export.

    python benchmarks/uncertainty.py --part sine      # 90% interval coverage per structure
    python benchmarks/uncertainty.py --part digits    # ECE / NLL vs a converged MLP, 5 seeds
    python benchmarks/uncertainty.py --part digits --seeds 1 --digits-heads onehot probit-laplace
    python benchmarks/uncertainty.py --part export    # to_inference_data time and memory
    python benchmarks/uncertainty.py --part export --head gaussian --hidden sample
    python benchmarks/uncertainty.py                  # all three; add --out DIR for PNGs

Data are those of benchmarks/core.py (`reference_data.py`):
* sine: x ~ U(-2, 2), y = sin(3x) + N(0, 0.1^2); 2,000 draws with seed 0, the first 1,000
  train, the rest test; network 1-50-50-1 ReLU, noise 0.01, one pass, batch size 1.
* digits: load_digits, train_test_split(test_size=0.25, stratify=y, random_state=0),
  standardized on the training split; network 64-100-10 ReLU, one pass, batch size 1,
  ``--prior-precision`` (3) and ``--init`` (``"samples"``) as in the default variant; seeds
  0..N-1 for the network (prior mean, visiting order) and for the MLPs; per-seed rows, then
  medians.
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
import warnings

import numpy as np
from reference_data import digits_data, sine_data
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from bayeslayers import Network, heads, layers, metrics, plots
from bayeslayers.diagnostics import HIDDEN, compare, elpd, to_inference_data


def _fmt(d: dict) -> str:
    return " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in d.values())


def part_sine(out: str | None, batch_size: int) -> None:
    Xtr, ytr, Xte, yte = sine_data()
    print("\n### sine: 1-50-50-1 ReLU, noise 0.01, one pass, batch", batch_size)
    print(
        "| covariance | hidden layers | fit s | RMSE | NLL | CRPS | 90% cov. (quantiles) "
        "| 90% cov. (mean ± 1.645 sd) | mean 90% width |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    test_exports, train_exports = {}, {}
    for structure in ("unit", "shared", "diag"):
        net = Network([layers.ReLU(50), layers.ReLU(50)], covariance=structure, noise=0.01, seed=0)
        start = time.perf_counter()
        net.fit(Xtr, ytr, batch_size=batch_size)
        fit_s = time.perf_counter() - start
        predictives = {
            "linearized": dict(method="linearized"),
            "means": dict(method="sample", n_samples=None),
            "200 draws": dict(method="sample", n_samples=200),
        }
        for label, kw in predictives.items():
            mean, std = net.predict(Xte, return_std=True, **kw)
            lo, hi = net.predict_quantiles(Xte, [0.05, 0.95], **kw)
            row = {
                "covariance": structure,
                "hidden": label,
                "fit_s": fit_s,
                "rmse": metrics.rmse(yte, mean),
                "nll": metrics.nll_gaussian(yte, mean, std),
                "crps": metrics.crps_gaussian(yte, mean, std),
                "cov_q": metrics.interval_coverage(yte, lo, hi),
                "cov_gauss": metrics.interval_coverage(yte, *metrics.central_interval(mean, std)),
                "width": float(np.mean(hi - lo)),
            }
            print("| " + _fmt(row) + " |", flush=True)
        for hidden in HIDDEN:
            kw = dict(n_draws=500, max_units=5, hidden=hidden)
            test_exports[f"{structure}/{hidden}"] = to_inference_data(net, Xte, yte, **kw)
            train_exports[f"{structure}/{hidden}"] = to_inference_data(net, Xtr, ytr, **kw)
        if out:
            grid = np.linspace(-2.5, 2.5, 400)[:, None]
            q = net.predict_quantiles(grid, [0.05, 0.5, 0.95])
            plots.plot_fit_1d(
                grid[:, 0],
                q[1],
                q[0],
                q[2],
                x_obs=Xtr[:, 0],
                y_obs=ytr,
                truth=np.sin(3 * grid[:, 0]),
                title=f"sin(3x), {structure}",
                path=os.path.join(out, f"sine_{structure}.png"),
            )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = compare(test_exports, train=train_exports)
    print("\ncompare (held-out elpd on 1,000 test points, 500 draws; LOO on the training exports):")
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    for w in caught:
        if "Pareto" in str(w.message):
            print("warning:", w.message)
    if out:
        plots.plot_comparison(table, title="sin(3x)", path=os.path.join(out, "sine_compare.png"))


DIGITS_HEADS = {
    "onehot": dict(head=heads.OneHot()),  # learned noise (Normal-Inverse-Gamma), the default
    "onehot-fixed": dict(head=heads.OneHot(learn_noise=False), noise=1.0),
    "probit-laplace": dict(head=heads.Probit(fit="laplace")),
}


def _digits_predictives(net, X) -> dict[str, np.ndarray]:
    """Class probabilities of one fitted network under each way of treating the hidden layers.

    * "hidden means": ``predict_proba`` (hidden layers at their posterior means, head integrated);
    * "linearized": the head's probabilities of the linearized predictive moments of the
      outputs (hidden layers' weight uncertainty to first order, ``predict_moments``; one-hot
      head only, its outputs then have unequal variances);
    * "100 draws": ``predict_proba(n_samples=100)``, hidden weights sampled.
    """
    out = {"hidden means": net.predict_proba(X)}
    if isinstance(net.head, heads.OneHot):
        out["linearized"] = net.head.proba_from_moments(*net.predict_moments(X))
    out["100 draws"] = net.predict_proba(X, n_samples=100)
    return out


def part_digits(
    out: str | None,
    batch_size: int,
    seeds: int,
    prior_precision: float,
    head_names,
    init: str = "samples",
) -> None:
    Xtr, ytr, Xte, yte = digits_data()
    print(
        f"\n### digits: 64-100-10 ReLU, one pass, batch {batch_size}, prior_precision "
        f"{prior_precision}, init {init!r}, seeds 0..{seeds - 1}"
    )
    print("| model | seed | fit s | accuracy | NLL | Brier | ECE |")
    print("|---|---|---|---|---|---|---|")
    rows: dict[str, list[dict]] = {}
    export_nll: dict[str, list[float]] = {}

    def report(label: str, seed: int, fit_s: float, proba, classes) -> None:
        row = metrics.classification_metrics(yte, proba, classes=classes)
        rows.setdefault(label, []).append(row)
        print(f"| {label} | {seed} | {fit_s:.1f} | {_fmt(row)} |", flush=True)

    for name in head_names:
        for seed in range(seeds):
            net = Network(
                [layers.ReLU(100)],
                seed=seed,
                prior_precision=prior_precision,
                init=init,
                **DIGITS_HEADS[name],
            )
            start = time.perf_counter()
            net.fit(Xtr, ytr, batch_size=batch_size)
            fit_s = time.perf_counter() - start
            for label, proba in _digits_predictives(net, Xte).items():
                report(f"{name}, {label}", seed, fit_s, proba, net.classes_)
            for hidden in HIDDEN:  # the export's held-out elpd per point is minus an NLL
                idata = to_inference_data(net, Xte, yte, n_draws=200, hidden=hidden, seed=seed)
                export_nll.setdefault(f"{name}, export hidden={hidden}", []).append(
                    -elpd(idata).elpd / len(yte)
                )
                if out and seed == 0 and label == "hidden means":
                    plots.plot_reliability(
                        yte,
                        proba,
                        classes=net.classes_,
                        title=name,
                        path=os.path.join(out, f"digits_{name}.png"),
                    )
    mlps = {
        "MLP converged": dict(max_iter=2000),
        "MLP 1 epoch, batch 1": dict(max_iter=1, batch_size=1),
    }
    for label, kw in mlps.items():
        for seed in range(seeds):
            mlp = MLPClassifier(hidden_layer_sizes=(100,), random_state=seed, **kw)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                mlp.fit(Xtr, ytr)
            report(
                f"{label} (sklearn)",
                seed,
                time.perf_counter() - start,
                mlp.predict_proba(Xte),
                mlp.classes_,
            )
    print(f"\nmedians over {seeds} seeds:")
    print("| model | accuracy | NLL | Brier | ECE |\n|---|---|---|---|---|")
    for label, values in rows.items():
        med = {k: float(np.median([v[k] for v in values])) for k in values[0]}
        print(f"| {label} | {_fmt(med)} |")
    print("\nNLL = -elpd / n of to_inference_data exports (200 draws), per seed and median:")
    for label, values in export_nll.items():
        print(f"| {label} | {' | '.join(f'{v:.4f}' for v in values)} | {np.median(values):.4f} |")


def part_export(repeats: int, head: str, hidden: str) -> None:
    Xtr, ytr, Xte, yte = digits_data()
    if head == "gaussian":  # the same network regressing one-hot rows: a Gaussian likelihood
        ytr, yte = np.eye(10)[ytr], np.eye(10)[yte]
    net = Network([layers.ReLU(100)], head=heads.make_head(head), seed=0)
    net.fit(Xtr, ytr, batch_size=50)
    a = np.random.default_rng(0).standard_normal((1000, 1000))
    walls, cpus, bases = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(10):
            a @ a
        bases.append(time.perf_counter() - start)
        wall, cpu = time.perf_counter(), time.process_time()
        to_inference_data(net, Xte, yte, n_draws=1000, hidden=hidden)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    tracemalloc.start()
    idata = to_inference_data(net, Xte, yte, n_draws=1000, hidden=hidden)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = sum(ds.nbytes for ds in (idata[g] for g in idata.groups()))
    print(
        f"\n### export: 64-100-10 {head} head, hidden={hidden!r}, {len(Xte)} test points, "
        f"1,000 draws, {repeats} runs"
    )
    print(f"wall s median {np.median(walls):.2f} (runs {', '.join(f'{w:.2f}' for w in walls)})")
    print(
        f"CPU s median {np.median(cpus):.2f}; baseline 10x (1000x1000 GEMM) median "
        f"{np.median(bases):.2f} s; export / baseline = {np.median(walls) / np.median(bases):.1f}"
    )
    print(f"peak traced memory {peak / 2**20:.0f} MiB; InferenceData holds {size / 2**20:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["sine", "digits", "export", "all"], default="all")
    parser.add_argument("--out", help="directory for PNG figures")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=5, help="digits: seeds 0..N-1 (medians)")
    parser.add_argument(
        "--prior-precision", type=float, default=3.0, help="digits (the default variant's 3)"
    )
    parser.add_argument(
        "--init",
        default="samples",
        choices=["samples", "he"],
        help="digits: Network(init=...) (the default variant's 'samples')",
    )
    parser.add_argument("--digits-heads", nargs="+", choices=list(DIGITS_HEADS), default=["onehot"])
    parser.add_argument(
        "--head",
        choices=["onehot", "gaussian"],
        default="onehot",
        help="head of the exported network (--part export)",
    )
    parser.add_argument(
        "--hidden", choices=HIDDEN, default="linearized", help="to_inference_data's hidden="
    )
    args = parser.parse_args()
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    if args.part in ("sine", "all"):
        part_sine(args.out, args.batch_size)
    if args.part in ("digits", "all"):
        part_digits(
            args.out,
            args.batch_size,
            args.seeds,
            args.prior_precision,
            args.digits_heads,
            args.init,
        )
    if args.part in ("export", "all"):
        part_export(args.repeats, args.head, args.hidden)


if __name__ == "__main__":
    main()
