"""TOML variants: every shipped file loads and builds, round trips, and bad files fail clearly."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bayeslayers import Network, config, heads, layers
from bayeslayers.config import ConfigError

VARIANTS = sorted(config.find_variants().items())


@pytest.mark.parametrize(("name", "path"), VARIANTS, ids=[n for n, _ in VARIANTS])
def test_every_variant_loads_builds_and_round_trips(name, path):
    cfg = config.load(path)
    net = config.build_network(cfg)
    assert isinstance(net, Network)
    assert len(net.layers) == len(cfg.model["layers"])
    assert net.head.kind == cfg.model["head"]["kind"]
    assert config.variant_description(path), f"{path} needs a comment saying what it shows"
    text = config.dumps(cfg, "round trip")
    assert config.parse(tomllib.loads(text)) == cfg
    assert config.dumps(config.parse(tomllib.loads(text))) == config.dumps(cfg)


def test_default_is_embedded_and_matches_the_shipped_copy():
    found = config.find_variants()
    assert found[config.DEFAULT_VARIANT].parent.name == "variants"
    assert found[config.DEFAULT_VARIANT].parent.parent.name == "bayeslayers"
    assert config.load("default") == config.load(found["digits-relu"])


def test_kwargs_are_the_constructors_parameters():
    cfg = config.parse(
        {
            "model": {
                "layers": [
                    {"kind": "leaky_relu", "units": 7, "alpha": 0.2, "covariance": "diag"},
                    {"kind": "taylor_tanh", "units": 3, "floor": 0.01, "noise": 2},
                ],
                "head": {"kind": "gaussian", "learn_noise": True},
                "prior_precision": 2,
                "damping": 0.1,
            },
            "data": {"name": "sine-1d"},
        }
    )
    net = config.build_network(cfg)
    assert net.layers == [
        layers.LeakyReLU(7, covariance="diag", alpha=0.2),
        layers.TaylorTanh(3, noise=2.0, floor=0.01),
    ]
    assert net.head == heads.Gaussian(learn_noise=True)
    assert net.prior_precision == 2.0 and isinstance(cfg.model["prior_precision"], float)
    assert net.damping == 0.1


def test_skip_key_reaches_the_network():
    assert config.parse({}).model["skip"] == "auto"
    cfg = config.parse({"model": {"layers": [{"kind": "relu", "units": 3}], "skip": False}})
    assert cfg.model["skip"] is False and config.build_network(cfg).skip is False
    assert config.parse(tomllib.loads(config.dumps(cfg))).model["skip"] is False


def test_defaults_are_filled_and_replace_revalidates():
    cfg = config.parse({})
    assert cfg.data["name"] == "digits" and cfg.train["passes"] == 1
    assert cfg.model["head"] == {"kind": "onehot"}  # the head follows the data's task
    assert config.parse({"data": {"name": "sine-1d"}}).model["head"] == {"kind": "gaussian"}
    assert cfg.replace("model", seed=5).model["seed"] == 5
    with pytest.raises(ConfigError, match=r"train\.passes"):
        cfg.replace("train", passes=0)


def test_resolved_config_holds_only_settings_that_apply():
    digits = config.parse({"data": {"name": "digits"}})
    assert "noise_sd" not in digits.data and "noise_sd" not in config.dumps(digits)
    assert "seed" not in digits.train  # model.seed orders the rows: no second seed
    assert config.parse({"data": {"name": "sine-1d"}}).data["noise_sd"] == 0.1
    for name, path in VARIANTS:
        cfg = config.load(path)
        synthetic = cfg.data["name"] in ("sine-1d", "wave-2d")
        assert ("noise_sd" in cfg.data) == synthetic, name


def test_relative_data_path_is_taken_from_the_variant_folder(tmp_path, monkeypatch):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "table.csv").write_text("a,b,y\n1,2,3\n4,5,6\n")
    variant = folder / "v.toml"
    variant.write_text(
        '[data]\nname = "file"\npath = "table.csv"\ntarget = "y"\ntask = "regression"\n'
    )
    monkeypatch.chdir(tmp_path)
    cfg = config.load(variant)
    assert Path(cfg.data["path"]) == folder / "table.csv" and "features" not in cfg.data
    assert config.parse(tomllib.loads(config.dumps(cfg))) == cfg  # absolute once resolved
    variant.write_text(variant.read_text().replace("table.csv", "missing.csv"))
    with pytest.raises(ConfigError) as info:
        config.load(variant)
    assert "data.path" in str(info.value) and str(folder / "missing.csv") in str(info.value)


BAD = [
    ('[model]\nlayers = [{kind = "sigmoid", units = 3}]', ["model.layers[0].kind", "relu"]),
    ("[model]\nfoo = 1", ["model.foo", "unknown key", "prior_precision"]),
    ('[model]\nlayers = [{kind = "relu", units = "many"}]', ["layers[0].units", "an int"]),
    ('[model]\nlayers = [{kind = "relu", units = 0}]', ["layers[0]", "units must be >= 1"]),
    ('[model]\nlayers = [{kind = "relu", units = 5, colour = 1}]', ["colour", "allowed: kind"]),
    ('[model]\nlayers = [{kind = "leaky_relu", units = 5, alpha = 2.0}]', ["alpha", "(0, 1]"]),
    ('[model]\nlayers = {kind = "relu"}', ["model.layers", "list of tables"]),
    ('[model]\ncovariance = "full"', ["model.covariance:", "covariance must be", "unit"]),
    ("[model]\nnoise = -1.0", ["model.noise:", "noise must be"]),
    ('[model]\nskip = "on"', ["model.skip:", "skip must be 'auto', True or False"]),
    ("[model]\nskip = 1", ["model.skip", "true/false or a string"]),
    ("[model]\nnosie = 1.0", ["model.nosie", "did you mean 'noise'"]),
    ("[model]\nseed = -1", ["model.seed", "an int >= 0"]),
    ("[model]\nbias_spread = inf", ["model.bias_spread", "finite"]),
    ("[model]\ndamping = nan", ["model.damping", "finite"]),
    ('[model]\nlayers = [{kind = "rellu", units = 3}]', ["layers[0].kind", "did you mean 'relu'"]),
    ('[model]\nlayers = [{kind = "relu", units = 3, nosie = 1.0}]', ["did you mean 'noise'"]),
    ('[model]\nnoise = "big"', ["model.noise", "a number"]),
    ('[model]\nhead = {kind = "onehot", learn_noise = "yes"}', ["head.learn_noise", "true/false"]),
    ('[model]\nhead = {kind = "softmax"}', ["model.head.kind", "onehot"]),
    ('[model]\nhead = {kind = "gaussian"}', ["model.head.kind", "does not fit", "onehot"]),
    ('[data]\nname = "cifar"', ["data.name", "digits", "mnist-5k"]),
    ('[data]\nname = "digit"', ["data.name", "did you mean 'digits'"]),
    ('[data]\nname = "sine-1d"\nnoise = 0.1', ["data.noise", "renamed data.noise_sd"]),
    ("[data]\nnoise_sd = 0.1", ["data.noise_sd", "only to the synthetic", "'digits'"]),
    ('[data]\nname = "sine-1d"\nnoise_sd = -0.1', ["data.noise_sd", ">= 0"]),
    ("[data]\ntest_fraction = 1.5", ["data.test_fraction", "(0, 1)"]),
    ('[data]\nname = "file"', ["data.path", "required", "path, target, task", "features"]),
    ('[data]\ntask = "regression"', ["data.task", "only allowed"]),
    ("[train]\npasses = 0", ["train.passes", ">= 1"]),
    ("[train]\nbatchsize = 2", ["train.batchsize", "did you mean 'batch_size'", "passes"]),
    ("[train]\nfraction = 0", ["train.fraction", "(0, 1]"]),
    ("[train]\nseed = 1", ["train.seed", "removed", "model.seed"]),
    ("[extra]\na = 1", ["extra", "unknown table", "data, model, train"]),
    ("[modle]\na = 1", ["modle", "did you mean 'model'"]),
    ("data = 3", ["data", "expected a table"]),
    ("[model\n", ["not valid TOML"]),
]


@pytest.mark.parametrize(("content", "expected"), BAD, ids=[c for c, _ in BAD])
def test_bad_config_fails_naming_file_and_key(tmp_path, content, expected):
    path = tmp_path / "bad-variant.toml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert "bad-variant.toml" in message
    for part in expected:
        assert part in message


def test_unknown_variant_name_lists_known_ones():
    with pytest.raises(ConfigError, match=r"known variants: .*default"):
        config.load("no-such-variant")
    with pytest.raises(ConfigError, match=r"did you mean 'sine-relu'"):
        config.load("sine-rellu")


def test_dumps_writes_special_floats_and_strings(tmp_path):
    (tmp_path / 'a "q".csv').write_text("x,y\n1,2\n")
    cfg = config.parse(
        {
            "data": {
                "name": "file",
                "path": 'a "q".csv',
                "features": ["x"],
                "target": "y",
                "task": "regression",
            },
        },
        base=tmp_path,
    )
    back = config.parse(tomllib.loads(config.dumps(cfg)))
    assert back == cfg and back.data["path"].endswith('a "q".csv')
    special = config.Config({"a": float("inf"), "b": float("-inf")}, {}, {})
    table = tomllib.loads(config.dumps(special))["data"]
    assert table == {"a": float("inf"), "b": float("-inf")}
