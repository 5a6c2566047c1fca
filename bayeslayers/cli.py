r"""The ``bayeslayers`` command: run, compare and list TOML variants.

::

    bayeslayers run [CONFIG] [--out DIR] [--seed N] [--force]  # default: embedded digits variant
    bayeslayers compare CONFIG_OR_RUN_DIR... [--out DIR]         # one table per dataset
    bayeslayers list                                             # variants and datasets

``run`` trains one variant through :func:`bayeslayers.config.fit_variant` (the same
``Network.fit`` call a Python user makes, so the model is bitwise the one
``fit_variant(cfg)`` returns), scoring the test split on copies of the network at
``eval_points`` checkpoints and at the end of every pass (the learning curve), then writes
into ``DIR`` (``runs/<variant>`` by default): ``config.toml`` (the resolved variant),
``model.npz`` (:func:`bayeslayers.io.save`), ``metrics.json`` and plots drawn by
:mod:`bayeslayers.plots`: ``learning_curve.png``; ``confusion_matrix.png`` and
``reliability.png`` for classification; ``fit.png`` for regression on 1 or 2 inputs (in the
data's own units, on a grid reaching a quarter of the training range beyond it). The folder
is checked (and created) before any data is loaded; a folder that already holds files is
refused unless ``--force`` is given. ``--seed`` sets ``model.seed``, which seeds the prior,
the order of the rows in every pass and the predictive draws; ``data.seed`` stays, so seeds
share one test set.

Held-out comparison uses the pointwise log predictive density on the test split,

.. math::

    \widehat{\mathrm{elpd}} = \sum_{i=1}^{n} \log p(y_i \mid x_i, \mathcal D), \qquad
    \mathrm{SE} = \sqrt{n \, \operatorname{Var}_i \log p(y_i \mid x_i, \mathcal D)},

and, between two variants on the same test set, the paired difference with
:math:`\mathrm{SE}_\Delta = \sqrt{n \operatorname{Var}_i(\ell^A_i - \ell^B_i)}` (the
``elpd_diff`` / ``dse`` columns of ArviZ's ``compare``). ``compare`` groups the variants by
test set (the whole ``[data]`` table) and pairs them only within a group: a regression log
density and classification log probabilities are never ranked against each other.

Exit codes: 0 success, 2 bad usage, bad config or unusable output folder, 1 any other
failure. Errors print one line; ``--debug`` shows the traceback. The command imports the
numerical libraries only once it has a command to run, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from matplotlib.figure import Figure

    from bayeslayers.config import Config
    from bayeslayers.datasets import Dataset
    from bayeslayers.network import FitProgress, Network

__all__ = ["CommandError", "evaluate", "main", "run_variant"]

_STARTED = time.perf_counter()  # when the command's module was imported
OUTPUTS = (
    "config.toml",
    "model.npz",
    "metrics.json",
    "learning_curve.png",
    "confusion_matrix.png",
    "reliability.png",
    "fit.png",
)


class CommandError(ValueError):
    """Bad use of the command itself (output folder, duplicate names): exit code 2."""


# ---------------------------------------------------------------------------- evaluation
def evaluate(net: Network, data: Dataset) -> tuple[dict[str, float], np.ndarray]:
    """Test-split metrics and the pointwise log predictive density ``(n,)``.

    Classification: accuracy, NLL, Brier, ECE from ``predict_proba``. Regression: RMSE of
    ``predict`` (posterior means), and NLL, CRPS and 90% interval coverage of the predictive
    distribution ``predict(return_std=True)`` (Student-t with ``predictive_dof()``). Both
    add ``elpd`` and ``elpd_se`` (module docstring) and ``log_evidence_per_row``, the
    training pass's prequential log evidence per row (``Network.log_evidence_``).
    """
    from bayeslayers import metrics

    if data.task == "classification":
        proba = net.predict_proba(data.X_test)
        out = metrics.classification_metrics(data.y_test, proba, classes=net.classes_)
        lpd = metrics.log_density_classification(data.y_test, proba, classes=net.classes_)
    else:
        mean, std = net.predict(data.X_test, return_std=True)
        dof = net.predictive_dof()  # Student-t with a learned noise
        out = metrics.regression_metrics(data.y_test, mean, std, dof=dof)
        out["rmse"] = metrics.rmse(data.y_test, net.predict(data.X_test))
        lpd = metrics.log_density_student_t(data.y_test, mean, std, dof)
    out["elpd"] = float(lpd.sum())
    out["elpd_se"] = float(math.sqrt(len(lpd) * lpd.var()))
    # the training pass's prequential evidence, per training row (comparable to elpd / n)
    evidence = getattr(net, "log_evidence_", math.nan)  # absent in files saved before it
    out["log_evidence_per_row"] = float(evidence / max(net.n_samples_seen_, 1))
    return out, lpd


def _quick_score(net: Network, data: Dataset) -> float:
    """The learning-curve metric: accuracy (classification) or RMSE of the mean (regression)."""
    import numpy as np

    from bayeslayers import metrics

    if data.task == "classification":
        return float(np.mean(net.predict(data.X_test) == data.y_test))
    return metrics.rmse(data.y_test, net.predict(data.X_test))


class _Checkpoints:
    """The ``fit`` callback of ``run``: learning curve on snapshots, progress bar, its own time.

    Checkpoints are ``eval_points`` evenly spaced counts of rows seen (over all passes) plus
    the end of every pass; at each, the test split is scored on ``progress.snapshot()`` (a
    copy), so the training itself is not touched.
    """

    def __init__(self, data: Dataset, passes: int, eval_points: int, progress: bool) -> None:
        n = len(data.X_train)
        total = passes * n
        marks = {math.ceil(total * k / eval_points) for k in range(1, eval_points + 1)}
        self.marks = sorted(marks | {n * (p + 1) for p in range(passes)})
        self.data = data
        self.curve: list[tuple[int, float]] = []
        self.seconds = 0.0  # spent in this callback (scoring, the bar), not training
        self._next = 0
        self._shown = 0
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="bayeslayers", unit="row", file=sys.stderr)

    def __call__(self, progress: FitProgress) -> None:
        t0 = time.perf_counter()
        seen = progress.pass_index * progress.n_rows + progress.rows_done
        if self.bar is not None:
            self.bar.update(seen - self._shown)
            self._shown = seen
        if self._next < len(self.marks) and seen >= self.marks[self._next]:
            self.curve.append((seen, _quick_score(progress.snapshot(), self.data)))
            while self._next < len(self.marks) and self.marks[self._next] <= seen:
                self._next += 1
        self.seconds += time.perf_counter() - t0

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------- plots
def _title(variant: str, data: Dataset) -> str:
    return f"{variant} on {Path(data.name).name}"


def _training(cfg: Config) -> str:
    passes, batch = cfg.train["passes"], cfg.train["batch_size"]
    return f"{passes} pass{'es' if passes > 1 else ''}, batch size {batch}"


def _plot_fit(net: Network, data: Dataset, cfg: Config, variant: str, path: Path) -> Figure:
    """``fit.png``: a 1-D band or 2-D maps in the data's units, a grid wider than the data."""
    import numpy as np

    from bayeslayers import metrics, plots
    from bayeslayers.datasets import DATASETS

    spec = DATASETS.get(data.name)
    truth = spec.truth if spec is not None else None
    X_train, X_test = data.unstandardize(data.X_train), data.unstandardize(data.X_test)
    lo, hi = X_train.min(axis=0), X_train.max(axis=0)
    pad = np.where(hi > lo, 0.25 * (hi - lo), 1.0)
    names = data.feature_names
    units = " (data units)" if data.x_mean is not None else ""
    target = str(cfg.data.get("target", "y"))
    rmse = metrics.rmse(data.y_test, net.predict(data.X_test))
    title = f"{_title(variant, data)}: test RMSE {rmse:.3f}"
    if X_train.shape[1] == 1:
        grid = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 400)
        inputs = data.standardize(grid[:, None])
        lower, upper = net.predict_quantiles(inputs, [0.05, 0.95])
        return plots.plot_fit_1d(
            grid,
            net.predict(inputs),
            lower,
            upper,
            x_obs=X_test[:, 0],
            y_obs=data.y_test,
            obs_label="test data",
            truth=None if truth is None else truth(grid[:, None]),
            train_range=(float(lo[0]), float(hi[0])),
            xlabel=f"{names[0]}{units}",
            ylabel=target,
            title=title,
            path=path,
        )
    x1 = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 90)
    x2 = np.linspace(lo[1] - pad[1], hi[1] + pad[1], 90)
    g1, g2 = np.meshgrid(x1, x2)
    points = np.column_stack([g1.ravel(), g2.ravel()])
    inputs = data.standardize(points)
    _, std = net.predict(inputs, return_std=True)
    return plots.plot_fit_2d(
        x1,
        x2,
        net.predict(inputs).reshape(g1.shape),
        std.reshape(g1.shape),
        truth=None if truth is None else truth(points).reshape(g1.shape),
        x_obs=X_train,
        train_box=(float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])),
        xlabel=f"{names[0]}{units}",
        ylabel=f"{names[1]}{units}",
        zlabel=target,
        title=title,
        path=path,
    )


def _write_plots(
    net: Network, data: Dataset, cfg: Config, curve, variant: str, out: Path
) -> list[str]:
    import numpy as np

    from bayeslayers import plots

    seen, score = zip(*curve, strict=True)
    classify = data.task == "classification"
    floor = (
        {}
        if data.noise_sd is None
        else {f"noise floor (noise sd {data.noise_sd:g})": data.noise_sd}
    )
    plots.plot_learning_curve(
        seen,
        score,
        ylabel="test accuracy" if classify else "test RMSE",
        pass_length=len(data.X_train),
        references=floor,
        title=f"{_title(variant, data)}: {_training(cfg)}",
        path=out / "learning_curve.png",
    )
    written = ["learning_curve.png"]
    if classify:
        plots.plot_confusion(
            data.y_test,
            net.predict(data.X_test),
            classes=net.classes_,
            title=_title(variant, data),
            path=out / "confusion_matrix.png",
        )
        plots.plot_reliability(
            data.y_test,
            net.predict_proba(data.X_test),
            classes=net.classes_,
            title=_title(variant, data),
            path=out / "reliability.png",
        )
        written += ["confusion_matrix.png", "reliability.png"]
    elif np.ndim(data.y_train) == 1 and data.X_train.shape[1] in (1, 2):
        _plot_fit(net, data, cfg, variant, out / "fit.png")
        written.append("fit.png")
    return written


# -------------------------------------------------------------------------- output folders
def safe_name(stem: str) -> str:
    """A variant's name as a folder name: letters, digits, ``.``, ``_``, ``-`` only."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-")
    return name or "variant"


def _variant_name(cfg: Config) -> str:
    return safe_name(Path(cfg.source).stem)


def prepare_out(out: Path, *, force: bool, flag: str = "--out") -> Path:
    """Check (and create) an output folder before any work; refuse one holding files.

    With ``force`` the files a run writes (:data:`OUTPUTS`) are removed first, so the folder
    shows only this run's results; other files are left alone.
    """
    if out.exists() and not out.is_dir():
        raise CommandError(f"{flag} {out}: exists and is not a folder")
    if out.is_dir():
        present = sorted(p.name for p in out.iterdir())
        if present and not force:
            shown = ", ".join(present[:4]) + (", ..." if len(present) > 4 else "")
            raise CommandError(
                f"{flag} {out}: the folder is not empty ({shown}); pass --force to replace "
                "its results, or choose another folder"
            )
        for name in OUTPUTS:
            target = out / name
            if target.is_file() or target.is_symlink():
                target.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CommandError(f"{flag} {out}: cannot create the folder ({err.strerror})") from None
    return out


# ------------------------------------------------------------------------------ commands
def run_variant(
    cfg: Config, out: str | Path, *, progress: bool = True, prepared: bool = False
) -> tuple[dict, Network, np.ndarray]:
    """Train one variant and write its results into ``out``.

    ``out`` must be an empty or missing folder unless ``prepared`` (already checked by
    :func:`prepare_out`).

    Returns
    -------
    metrics : dict
        What ``metrics.json`` holds.
    net : Network
        The trained network.
    lpd : ndarray
        Pointwise held-out log predictive density.
    """
    from bayeslayers import config as _config

    out = Path(out)
    if not prepared:
        prepare_out(out, force=False)
    start = time.perf_counter()
    variant = _variant_name(cfg)
    data = _config.load_data(cfg)
    checkpoints = _Checkpoints(data, cfg.train["passes"], cfg.train["eval_points"], progress)
    try:
        net, _ = _config.fit_variant(cfg, callback=checkpoints, data=data)
    finally:
        checkpoints.close()
    train_time = net.training_time_ - checkpoints.seconds
    net.training_time_ = train_time
    scores, lpd = evaluate(net, data)
    (out / "config.toml").write_text(_config.dumps(cfg, f"resolved from {cfg.source}"))
    net.save(out / "model.npz", config=cfg.to_dict())
    plots = _write_plots(net, data, cfg, checkpoints.curve, variant, out)
    result = {
        "variant": variant,
        "dataset": data.name,
        "task": data.task,
        "n_train": len(data.X_train),
        "n_test": len(data.X_test),
        **scores,
        "train_time_s": train_time,
        "wall_time_s": time.perf_counter() - start,
        "learning_curve": [{"samples_seen": s, "score": v} for s, v in checkpoints.curve],
        "files": ["config.toml", "model.npz", "metrics.json", *plots],
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result, net, lpd


def _with_seed(cfg: Config, seed: int | None) -> Config:
    return cfg if seed is None else cfg.replace("model", seed=seed)


def _load_config(item: str | None) -> Config:
    from bayeslayers import config as _config

    return _config.load(item if item else _config.DEFAULT_VARIANT)


def _cmd_run(args) -> int:
    cfg = _with_seed(_load_config(args.config), args.seed)
    out = Path(args.out) if args.out else Path("runs") / _variant_name(cfg)
    prepare_out(out, force=args.force, flag="--out" if args.out else "output folder")
    result, _, _ = run_variant(cfg, out, progress=not args.quiet, prepared=True)
    headline = (
        ("accuracy", "nll", "ece")
        if result["task"] == "classification"
        else ("rmse", "nll", "coverage")
    )
    print(
        f"{result['variant']} on {result['dataset']} ({result['n_train']} train / "
        f"{result['n_test']} test)"
    )
    for key in headline:
        print(f"  {key:<12} {result[key]:.4f}")
    print(f"  {'elpd (test)':<12} {result['elpd']:.1f} ± {result['elpd_se']:.1f}")
    print(f"  {'evidence/row':<12} {result['log_evidence_per_row']:.3f}  (prequential, training)")
    total = time.perf_counter() - _STARTED
    print(
        f"  {'time':<12} {total:.1f} s for the whole command (start-up, data, training, "
        f"scoring, plots), of which training {result['train_time_s']:.1f} s"
    )
    print(f"  results in {out}/")
    return 0


def _load_run(target: Path):
    """A finished run directory (or model file) -> (config, network)."""
    from bayeslayers import config as _config
    from bayeslayers import io as _io

    model = target / "model.npz" if target.is_dir() else target
    meta = _io.read_metadata(model)
    if not meta.get("config"):
        raise _config.ConfigError(f"{model}: the model file holds no run config to evaluate with")
    source = str(target / "config.toml") if target.is_dir() else str(model)
    return _config.parse(_config.upgrade(meta["config"]), source), _io.load(model)


def _cmd_compare(args) -> int:
    from bayeslayers import config as _config

    jobs: list[tuple[str, Config | None, Path]] = []  # (name, cfg or None, target)
    for item in args.configs:
        target = Path(item)
        if target.is_dir() or target.suffix == ".npz":
            name = safe_name(target.stem if target.suffix == ".npz" else target.name)
            jobs.append((name, None, target))
        else:
            loaded = _with_seed(_config.load(item), args.seed)
            jobs.append((_variant_name(loaded), loaded, target))
    seen: dict[str, str] = {}
    for name, _, target in jobs:
        if name in seen:
            raise CommandError(
                f"two inputs are named {name!r} ({seen[name]} and {target}); their runs "
                "would share one folder and one row: rename one"
            )
        seen[name] = str(target)
    parent = Path(args.out) if args.out else Path("runs")
    for name, cfg, _ in jobs:  # every folder checked before anything is trained
        if cfg is not None:
            prepare_out(parent / name, force=args.force, flag="output folder")
    rows = []
    for name, cfg, target in jobs:
        if cfg is None:
            cfg, net = _load_run(target)
            data = _config.load_data(cfg)
            scores, lpd = evaluate(net, data)
            scores["train_time_s"] = getattr(net, "training_time_", float("nan"))
        else:
            scores, _, lpd = run_variant(cfg, parent / name, progress=not args.quiet, prepared=True)
        rows.append((name, cfg, scores, lpd))
    print(comparison_table(rows))
    return 0


def comparison_table(rows) -> str:
    """Rows ``(name, config, scores, lpd)`` as one table per test set, paired within each.

    Variants whose ``[data]`` tables agree share a test set; within such a group the best
    elpd is the reference and every other row gets its paired difference ``Δelpd ± dSE``.
    Groups are never ranked against each other.
    """
    groups: dict[str, list] = {}
    for row in rows:
        groups.setdefault(_split_key(row[1]), []).append(row)
    blocks = []
    for members in groups.values():
        cfg, scores = members[0][1], members[0][2]
        classify = "accuracy" in scores
        metric = "accuracy" if classify else "RMSE"
        n_test = len(members[0][3])
        name = Path(str(cfg.data.get("path", cfg.data["name"]))).name
        lines = [
            f"{name} ({'classification' if classify else 'regression'}, {n_test} test rows): "
            "Δelpd paired against the best of this group",
            f"  {'variant':<28} {metric:>8} {'NLL':>7} {'elpd ± SE':>17} {'Δelpd ± dSE':>17} "
            f"{'train s':>7}",
        ]
        ranked = sorted(members, key=lambda r: -r[2]["elpd"])
        best_lpd = ranked[0][3]
        for row_name, _, s, lpd in ranked:
            d = lpd - best_lpd
            diff = f"{d.sum():.1f} ± {math.sqrt(len(d) * d.var()):.1f}"
            score = s["accuracy"] if classify else s["rmse"]
            lines.append(
                f"  {row_name:<28} {score:>8.4f} {s['nll']:>7.3f} "
                f"{s['elpd']:>9.1f} ± {s['elpd_se']:<5.1f} {diff:>17} {s['train_time_s']:>7.1f}"
            )
        blocks.append("\n".join(lines))
    if len(blocks) > 1:
        blocks.append(
            f"{len(blocks)} test sets: elpd is compared only within each group (different "
            "data, and a log density is not comparable to log probabilities)"
        )
    return "\n\n".join(blocks)


def _split_key(cfg: Config) -> str:
    """Two runs share a test set when their data tables agree."""
    return json.dumps(cfg.data, sort_keys=True)


def _cmd_list(args) -> int:
    from bayeslayers import config as _config
    from bayeslayers.datasets import DATASETS

    print("variants:")
    for name, path in sorted(_config.find_variants().items()):
        print(f"  {name:<28} {_config.variant_description(path)}")
    print("datasets:")
    for name, spec in DATASETS.items():
        print(f"  {name:<28} {spec.task:<15} {spec.description}")
    print(
        f"  {'file':<28} {'either':<15} a CSV or NPZ file: data.path, target, task "
        "(features: default every other column)"
    )
    return 0


# ----------------------------------------------------------------------------------- main
def _seed(text: str) -> int:
    """``--seed``: an int >= 0 (argparse names the flag in the error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with a "did you mean" for a mistyped command."""

    def error(self, message: str) -> NoReturn:
        match = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if match:
            choices = re.findall(r"'([^']*)'", match.group(2))
            close = difflib.get_close_matches(match.group(1), choices, n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
        super().error(message)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: the flags work before or after the command without overwriting each other.
    for flag, text in (("--debug", "show tracebacks"), ("--quiet", "no progress bar")):
        common.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=text)
    parser = _Parser(
        prog="bayeslayers",
        description="Train gradient-free Bayesian networks from TOML variants.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=argparse.ArgumentParser)
    run = sub.add_parser("run", parents=[common], help="train one variant and write its results")
    run.add_argument("config", nargs="?", help="variant file or name (default: embedded digits)")
    run.add_argument("--out", help="results folder (default: runs/<variant>)")
    cmp_ = sub.add_parser("compare", parents=[common], help="compare variants or finished runs")
    cmp_.add_argument("configs", nargs="+", help="variant files/names, run folders or .npz")
    cmp_.add_argument("--out", help="parent folder of the runs it trains (default: runs/)")
    for p in (run, cmp_):
        p.add_argument("--seed", type=_seed, help="set model.seed (prior, row order, draws)")
        p.add_argument("--force", action="store_true", help="replace results in a used folder")
    sub.add_parser("list", parents=[common], help="show the known variants and datasets")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bayeslayers`` command; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for bad usage
        return int(exc.code or 0)
    args.debug = getattr(args, "debug", False)
    args.quiet = getattr(args, "quiet", False)
    command = {"run": _cmd_run, "compare": _cmd_compare, "list": _cmd_list}[args.command]
    try:
        return command(args)
    except Exception as err:
        if args.debug:
            raise
        from bayeslayers.config import ConfigError

        code = 2 if isinstance(err, ConfigError | CommandError) else 1
        print(f"bayeslayers: error: {err}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("bayeslayers: interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
