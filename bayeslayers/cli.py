r"""The ``bayeslayers`` command: run, compare and list TOML variants.

::

    bayeslayers run [CONFIG] [--out DIR] [--seed N]   # default: the embedded digits variant
    bayeslayers compare CONFIG_OR_RUN_DIR...            # one table across variants
    bayeslayers list                                    # variants and datasets

``run`` trains one variant with a progress bar, evaluating the test split at ``eval_points``
checkpoints (the learning curve), then writes into ``DIR`` (``runs/<variant>`` by default):
``config.toml`` (the resolved variant), ``model.npz`` (:func:`bayeslayers.io.save`),
``metrics.json`` and plots (``learning_curve.png``; ``confusion_matrix.png`` and
``reliability.png`` for classification; ``fit.png`` for regression on 1 or 2 inputs: the
prediction at the posterior means with the predictive 90% band (1-D) or beside a map of the
predictive standard deviation (2-D)). ``--seed`` overrides the model's and the training
order's seeds; the data split keeps its own seed, so seeds share one test set.

Held-out comparison uses the pointwise log predictive density on the test split,

.. math::

    \widehat{\mathrm{elpd}} = \sum_{i=1}^{n} \log p(y_i \mid x_i, \mathcal D), \qquad
    \mathrm{SE} = \sqrt{n \, \operatorname{Var}_i \log p(y_i \mid x_i, \mathcal D)},

and, between two variants on the same test set, the paired difference with
:math:`\mathrm{SE}_\Delta = \sqrt{n \operatorname{Var}_i(\ell^A_i - \ell^B_i)}` (the
``elpd_diff`` / ``dse`` columns of ArviZ's ``compare``).

Exit codes: 0 success, 2 bad usage or bad config, 1 any other failure. Errors print one line;
``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bayeslayers import config as _config
from bayeslayers import io as _io
from bayeslayers import metrics
from bayeslayers.datasets import DATASETS, Dataset, load_dataset

__all__ = ["evaluate", "main", "run_variant"]


# ---------------------------------------------------------------------------- evaluation
def evaluate(net, data: Dataset) -> tuple[dict[str, float], np.ndarray]:
    """Test-split metrics and the pointwise log predictive density ``(n,)``.

    Classification: accuracy, NLL, Brier, ECE from ``predict_proba``. Regression: RMSE of
    ``predict`` (posterior means), and NLL, CRPS and 90% interval coverage of the predictive
    distribution ``predict(return_std=True)`` (hidden weights sampled). Both add ``elpd`` and
    ``elpd_se`` (module docstring).
    """
    if data.task == "classification":
        proba = net.predict_proba(data.X_test)
        out = metrics.classification_metrics(data.y_test, proba, classes=net.classes_)
        lpd = metrics.log_density_classification(data.y_test, proba, classes=net.classes_)
    else:
        mean, std = net.predict(data.X_test, return_std=True)
        out = metrics.regression_metrics(data.y_test, mean, std)
        # RMSE of the point prediction (forward pass at the posterior means), as ``predict``
        # returns it; the Monte Carlo predictive mean can sit far from it when the hidden
        # layers' posteriors are wide.
        out["rmse"] = metrics.rmse(data.y_test, net.predict(data.X_test))
        lpd = metrics.log_density_gaussian(data.y_test, mean, std)
        lpd = lpd.sum(axis=1) if lpd.ndim == 2 else lpd
    out["elpd"] = float(lpd.sum())
    out["elpd_se"] = float(math.sqrt(len(lpd) * lpd.var()))
    return out, lpd


def _quick_score(net, data: Dataset) -> float:
    """The learning-curve metric: accuracy (classification) or RMSE of the mean (regression)."""
    if data.task == "classification":
        return float(np.mean(net.predict(data.X_test) == data.y_test))
    return metrics.rmse(data.y_test, net.predict(data.X_test))


def _train(net, cfg: _config.Config, data: Dataset, progress: bool):
    """Train with ``partial_fit`` in chunks, scoring the test split after each chunk.

    Returns the learning curve ``[(samples_seen, score), ...]`` and the training time (seconds,
    checkpoint scoring excluded).
    """
    train = cfg.train
    passes, batch = train["passes"], train["batch_size"]
    fraction = train.get("fraction", 1.0 / passes)
    n = len(data.X_train)
    chunk = max(batch, math.ceil(passes * n / train["eval_points"] / batch) * batch)
    classes = np.unique(data.y_train) if data.task == "classification" else None
    rng = np.random.default_rng(train["seed"])
    curve, elapsed = [], 0.0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=passes * n, desc="bayeslayers", unit="sample", file=sys.stderr)
    try:
        for _ in range(passes):
            order = rng.permutation(n)
            for start in range(0, n, chunk):
                rows = order[start : start + chunk]
                t0 = time.perf_counter()
                net.partial_fit(
                    data.X_train[rows],
                    data.y_train[rows],
                    batch_size=batch,
                    fraction=fraction,
                    classes=classes,
                )
                elapsed += time.perf_counter() - t0
                curve.append((int(net.n_samples_seen_), _quick_score(net, data)))
                if bar is not None:
                    bar.update(len(rows))
        flush = getattr(net.head, "flush", None)  # e.g. an ADVI head's last partial chunk
        if flush is not None:
            t0 = time.perf_counter()
            net.head_state_ = flush(net.head_state_)
            elapsed += time.perf_counter() - t0
    finally:
        if bar is not None:
            bar.close()
    net.training_time_ = elapsed
    return curve, elapsed


# ---------------------------------------------------------------------------------- plots
def _plot_learning_curve(curve, task: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    seen, score = zip(*curve, strict=True)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(seen, score, marker="o", ms=3)
    ax.set_xlabel("training samples seen")
    ax.set_ylabel("test accuracy" if task == "classification" else "test RMSE")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_confusion(net, data: Dataset, path: Path) -> None:
    import matplotlib.pyplot as plt

    classes = net.classes_
    pred = np.searchsorted(classes, net.predict(data.X_test))
    true = np.searchsorted(classes, data.y_test)
    counts = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(counts, (true, pred), 1)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(counts, cmap="Blues")
    for (i, j), c in np.ndenumerate(counts):
        if c:
            ax.text(j, i, str(c), ha="center", va="center", fontsize=7)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, [str(c) for c in classes])
    ax.set_yticks(ticks, [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_reliability(net, data: Dataset, path: Path) -> None:
    """Top-label accuracy against confidence (:func:`bayeslayers.metrics.reliability_curve`)."""
    import matplotlib.pyplot as plt

    proba = net.predict_proba(data.X_test)
    conf, acc, count = metrics.reliability_curve(
        data.y_test, proba, n_bins=10, classes=net.classes_
    )
    full = count > 0
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    ax.plot(conf[full], acc[full], marker="o", label="model")
    ax.set_xlabel("confidence (top class)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_fit_1d(net, data: Dataset, path: Path) -> None:
    """Point prediction and the 90% band of the predictive distribution, test points on top."""
    import matplotlib.pyplot as plt

    lo, hi = data.X_train.min(), data.X_train.max()
    grid = np.linspace(lo, hi, 300)[:, None]
    mean, std = net.predict(grid, return_std=True)
    z = 1.6448536269514722  # 95th percentile of N(0, 1)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.fill_between(
        grid[:, 0], mean - z * std, mean + z * std, alpha=0.3, label="90% predictive band"
    )
    ax.plot(grid[:, 0], net.predict(grid), label="prediction (posterior means)")
    ax.scatter(data.X_test[:, 0], data.y_test, s=6, c="k", label="test data")
    ax.set_xlabel(f"{data.feature_names[0]} (standardized)")
    ax.set_ylabel("y")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_fit_2d(net, data: Dataset, path: Path) -> None:
    """Point prediction and predictive standard deviation over the (standardized) inputs."""
    import matplotlib.pyplot as plt

    lo, hi = data.X_train.min(axis=0), data.X_train.max(axis=0)
    g1, g2 = np.meshgrid(np.linspace(lo[0], hi[0], 60), np.linspace(lo[1], hi[1], 60))
    grid = np.column_stack([g1.ravel(), g2.ravel()])
    _, std = net.predict(grid, return_std=True)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    titles = ("prediction (posterior means)", "predictive std")
    for ax, values, title in zip(axes, (net.predict(grid), std), titles, strict=True):
        im = ax.pcolormesh(g1, g2, values.reshape(g1.shape), shading="auto")
        fig.colorbar(im, ax=ax)
        ax.set_title(title)
        ax.set_xlabel(data.feature_names[0])
        ax.set_ylabel(data.feature_names[1])
    axes[1].scatter(*data.X_train.T, s=2, c="w", alpha=0.5)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_plots(net, data: Dataset, curve, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    written = ["learning_curve.png"]
    _plot_learning_curve(curve, data.task, out / written[0])
    if data.task == "classification":
        _plot_confusion(net, data, out / "confusion_matrix.png")
        _plot_reliability(net, data, out / "reliability.png")
        written += ["confusion_matrix.png", "reliability.png"]
    elif np.ndim(data.y_train) == 1 and data.X_train.shape[1] in (1, 2):
        plot = _plot_fit_1d if data.X_train.shape[1] == 1 else _plot_fit_2d
        plot(net, data, out / "fit.png")
        written.append("fit.png")
    return written


# ------------------------------------------------------------------------------ commands
def _with_seed(cfg: _config.Config, seed: int | None) -> _config.Config:
    if seed is None:
        return cfg
    return cfg.replace("model", seed=seed).replace("train", seed=seed)


def run_variant(
    cfg: _config.Config, out: str | Path, *, progress: bool = True
) -> tuple[dict, object, np.ndarray]:
    """Train one variant and write its results into ``out``.

    Returns
    -------
    metrics : dict
        What ``metrics.json`` holds.
    net : Network
        The trained network.
    lpd : ndarray
        Pointwise held-out log predictive density.
    """
    start = time.perf_counter()
    data = load_dataset(**cfg.data)
    net = _config.build_network(cfg)
    curve, train_time = _train(net, cfg, data, progress)
    scores, lpd = evaluate(net, data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(_config.dumps(cfg, f"resolved from {cfg.source}"))
    net.save(out / "model.npz", config=cfg.to_dict())
    plots = _write_plots(net, data, curve, out)
    result = {
        "variant": Path(cfg.source).stem,
        "dataset": data.name,
        "task": data.task,
        "n_train": len(data.X_train),
        "n_test": len(data.X_test),
        **scores,
        "train_time_s": train_time,
        "wall_time_s": time.perf_counter() - start,
        "learning_curve": [{"samples_seen": s, "score": v} for s, v in curve],
        "files": ["config.toml", "model.npz", "metrics.json", *plots],
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result, net, lpd


def _cmd_run(args) -> int:
    cfg = _config.load(args.config) if args.config else _config.load(_config.DEFAULT_VARIANT)
    cfg = _with_seed(cfg, args.seed)
    out = Path(args.out) if args.out else Path("runs") / Path(cfg.source).stem
    result, _, _ = run_variant(cfg, out, progress=not args.quiet)
    headline = (
        ("accuracy", "nll", "ece")
        if result["task"] == "classification"
        else ("rmse", "nll", "coverage")
    )
    rows = [(k, f"{result[k]:.4f}") for k in headline]
    rows += [
        ("elpd (test)", f"{result['elpd']:.1f} ± {result['elpd_se']:.1f}"),
        ("train time", f"{result['train_time_s']:.1f} s"),
        ("wall time", f"{time.perf_counter() - args.start:.1f} s"),
    ]
    print(
        f"{result['variant']} on {result['dataset']} ({result['n_train']} train / "
        f"{result['n_test']} test)"
    )
    for key, value in rows:
        print(f"  {key:<12} {value}")
    print(f"  results in {out}/")
    return 0


def _load_run(target: Path):
    """A finished run directory (or model file) -> (config, network)."""
    model = target / "model.npz" if target.is_dir() else target
    meta = _io.read_metadata(model)
    if not meta.get("config"):
        raise _config.ConfigError(f"{model}: the model file holds no run config to evaluate with")
    source = str(target / "config.toml") if target.is_dir() else str(model)
    return _config.parse(meta["config"], source), _io.load(model)


def _cmd_compare(args) -> int:
    rows = []
    for item in args.configs:
        target = Path(item)
        if target.is_dir() or target.suffix == ".npz":
            cfg, net = _load_run(target)
            data = load_dataset(**cfg.data)
            scores, lpd = evaluate(net, data)
            scores["train_time_s"] = getattr(net, "training_time_", float("nan"))
            name = target.stem if target.suffix == ".npz" else target.name
        else:
            cfg = _with_seed(_config.load(item), args.seed)
            name = Path(cfg.source).stem
            out = Path(args.out) / name if args.out else Path("runs") / name
            scores, _, lpd = run_variant(cfg, out, progress=not args.quiet)
        rows.append((name, cfg, scores, lpd))
    print(_comparison_table(rows))
    return 0


def _comparison_table(rows) -> str:
    best = max(range(len(rows)), key=lambda i: rows[i][2]["elpd"])
    best_lpd, best_data = rows[best][3], _split_key(rows[best][1])
    lines = [
        f"{'variant':<28} {'dataset':<10} {'acc/RMSE':>8} {'NLL':>7} {'elpd ± SE':>17} "
        f"{'Δelpd ± dSE':>17} {'time s':>7}"
    ]
    for name, cfg, s, lpd in sorted(rows, key=lambda r: -r[2]["elpd"]):
        score = s.get("accuracy", s.get("rmse"))
        if _split_key(cfg) == best_data and len(lpd) == len(best_lpd):
            d = lpd - best_lpd
            diff = f"{d.sum():.1f} ± {math.sqrt(len(d) * d.var()):.1f}"
        else:
            diff = "other data"
        lines.append(
            f"{name:<28} {cfg.data['name']:<10} {score:>8.4f} {s['nll']:>7.3f} "
            f"{s['elpd']:>9.1f} ± {s['elpd_se']:<5.1f} {diff:>17} {s['train_time_s']:>7.1f}"
        )
    return "\n".join(lines)


def _split_key(cfg: _config.Config) -> str:
    """Two runs share a test set when their data tables agree."""
    return json.dumps(cfg.data, sort_keys=True)


def _cmd_list(args) -> int:
    print("variants:")
    for name, path in sorted(_config.find_variants().items()):
        print(f"  {name:<28} {_config.variant_description(path)}")
    print("datasets:")
    for name, spec in DATASETS.items():
        print(f"  {name:<28} {spec.task:<15} {spec.description}")
    print(f"  {'file':<28} {'either':<15} a CSV or NPZ file (data.path, features, target, task)")
    return 0


# ----------------------------------------------------------------------------------- main
def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: the flags work before or after the command without overwriting each other.
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    common.add_argument(
        "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bar"
    )
    parser = argparse.ArgumentParser(
        prog="bayeslayers",
        description="Train gradient-free Bayesian networks from TOML variants.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[common], help="train one variant and write its results")
    run.add_argument("config", nargs="?", help="variant file or name (default: embedded digits)")
    run.add_argument("--out", help="results directory (default: runs/<variant>)")
    run.add_argument("--seed", type=int, help="override the model and training seeds")
    cmp_ = sub.add_parser("compare", parents=[common], help="compare variants or finished runs")
    cmp_.add_argument("configs", nargs="+", help="variant files/names, run directories or .npz")
    cmp_.add_argument("--out", help="parent directory for the runs it trains (default: runs/)")
    cmp_.add_argument("--seed", type=int, help="override the model and training seeds")
    sub.add_parser("list", parents=[common], help="show the known variants and datasets")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bayeslayers`` command; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for bad usage
        return int(exc.code or 0)
    args.start = time.perf_counter()
    args.debug = getattr(args, "debug", False)
    args.quiet = getattr(args, "quiet", False)
    command = {"run": _cmd_run, "compare": _cmd_compare, "list": _cmd_list}[args.command]
    try:
        return command(args)
    except Exception as err:
        if args.debug:
            raise
        code = 2 if isinstance(err, _config.ConfigError) else 1
        print(f"bayeslayers: error: {err}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("bayeslayers: interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
