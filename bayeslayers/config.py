r"""TOML variants: a file describing data, model and training, turned into objects by registries.

A variant has three tables (stdlib :mod:`tomllib`)::

    [data]   name = "digits"; test_fraction = 0.2; seed = 0      # see DATA_KEYS
    [model]  layers = [{kind = "relu", units = 100}]; head = {kind = "onehot"}
             covariance = "unit"; noise = 1.0; seed = 0          # Network's parameters
    [train]  passes = 1; batch_size = 1                          # see TRAIN_KEYS

Units: ``data.noise_sd`` is the *standard deviation* of the synthetic targets' noise (only
for ``sine-1d`` and ``wave-2d``); ``model.noise`` is the observation noise *variance* of the
network. Seeds: ``data.seed`` fixes the data (synthetic draws, subset, split), ``model.seed``
(:class:`~bayeslayers.Network`'s ``seed``) the prior draws, the order in which ``fit``
visits the rows in every pass, and the predictive draws; there is no separate training seed.

A CSV or NPZ file is ``name = "file"`` with ``path`` (relative paths are taken from the folder
of the variant file), ``target`` (the target column or array), ``task`` (``"regression"`` or
``"classification"``) and optionally ``features`` (default: every other column or array).

:func:`fit_variant` is the Python call that reproduces ``bayeslayers run CONFIG``: it loads the
data and fits the network exactly as the command does (the same ``Network.fit`` call), so the
two give bitwise the same model.

``[model]`` keys are exactly the parameters of :class:`bayeslayers.Network`; a layer table is
``kind`` (a key of :data:`bayeslayers.layers.LAYERS`) plus that class's fields, a head table
``kind`` (a key of :data:`bayeslayers.heads.HEADS`) plus its fields; without a head table the
head is ``onehot`` for classification data and ``gaussian`` for regression. Unknown tables, keys and
kinds, wrong types and out-of-range values raise :class:`ConfigError` naming the file, the key
and the allowed values, before any data is loaded or any training is done.

A parsed :class:`Config` holds every value, defaults filled in; :func:`dumps` writes it back as
TOML and ``parse(tomllib.loads(dumps(c))) == c`` (the round trip stored beside every run).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import math
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from bayeslayers import heads as _heads
from bayeslayers import layers as _layers
from bayeslayers.datasets import DATASETS, TASKS, Dataset, load_dataset
from bayeslayers.network import FitProgress, Network

__all__ = [
    "DATA_KEYS",
    "DEFAULT_VARIANT",
    "TRAIN_KEYS",
    "Config",
    "ConfigError",
    "build_head",
    "build_layers",
    "build_network",
    "dumps",
    "find_variants",
    "fit_variant",
    "load",
    "load_data",
    "parse",
    "upgrade",
    "variant_description",
]

DEFAULT_VARIANT = "default"


class ConfigError(ValueError):
    """A variant file or table that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class _Key:
    """One allowed key: its type, default (``None``: optional, absent) and a range check."""

    type: Any
    default: Any
    check: typing.Callable[[Any], bool] = lambda v: True
    expected: str = ""
    choices: tuple[str, ...] = ()


FILE_KEYS = ("path", "features", "target", "task")  # only for name = "file"
SYNTHETIC_KEYS = ("noise_sd",)  # only for the synthetic datasets

DATA_KEYS: dict[str, _Key] = {
    "name": _Key(str, "digits", choices=(*DATASETS, "file")),
    "test_fraction": _Key(float, 0.2, lambda v: 0 < v < 1, "a number in (0, 1)"),
    "seed": _Key(int, 0, lambda v: v >= 0, "an int >= 0"),
    "n_samples": _Key(int, None, lambda v: v >= 4, "an int >= 4"),
    "noise_sd": _Key(
        float,
        0.1,
        lambda v: math.isfinite(v) and v >= 0,
        "a finite number >= 0 (a standard deviation)",
    ),
    "standardize": _Key(bool, True),
    "path": _Key(str, None),
    "features": _Key(list[str], None),
    "target": _Key(str, None),
    "task": _Key(str, None, choices=TASKS),
}

TRAIN_KEYS: dict[str, _Key] = {
    "passes": _Key(int, 1, lambda v: v >= 1, "an int >= 1"),
    "batch_size": _Key(int, 1, lambda v: v >= 1, "an int >= 1"),
    "fraction": _Key(float, None, lambda v: 0 < v <= 1, "a number in (0, 1] (default 1/passes)"),
    "eval_points": _Key(int, 10, lambda v: v >= 1, "an int >= 1 (learning-curve points)"),
}

# Keys that were renamed or removed: the error says what to write instead.
RETIRED_KEYS: dict[str, str] = {
    "data.noise": "renamed data.noise_sd (the standard deviation of the synthetic targets' "
    "noise; model.noise is the network's noise variance)",
    "train.seed": "removed: model.seed seeds the network and the order in which fit visits "
    "the rows, so set model.seed (or the --seed flag)",
}


@dataclass(frozen=True)
class Config:
    """A validated variant: plain TOML-able tables with every default filled in.

    Attributes
    ----------
    data, model, train : dict
        The three tables; ``model["layers"]`` is a list of ``{kind, ...}`` tables and
        ``model["head"]`` one table.
    source : str
        Where it came from (a file path, or ``"<string>"``); used in error messages.
    """

    data: dict
    model: dict
    train: dict
    source: str = "<string>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return (self.data, self.model, self.train) == (other.data, other.model, other.train)

    __hash__ = None  # type: ignore[assignment]

    def replace(self, table: str, **values) -> Config:
        """A new, re-validated config with ``values`` set in ``table`` (e.g. a seed override)."""
        if table not in ("data", "model", "train"):
            raise ValueError(f"table must be 'data', 'model' or 'train', got {table!r}")
        raw = self.to_dict()
        raw[table].update(values)
        return parse(raw, self.source)

    def to_dict(self) -> dict:
        """The three tables as nested plain dicts (deep copies)."""
        return json.loads(json.dumps({"data": self.data, "model": self.model, "train": self.train}))


# ------------------------------------------------------------------------------- types
def _type_name(tp) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(args[0])}"
    return {bool: "true/false", int: "an int", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _matches(value, tp) -> bool:
    """Whether a TOML value fits a (simple) annotation; unknown annotations accept anything."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp) if a is not type(None))
    if origin is list:
        return isinstance(value, list) and all(_matches(v, typing.get_args(tp)[0]) for v in value)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return True


def _coerce(value, tp):
    """TOML integers given for float parameters become floats (so the round trip is exact)."""
    if tp is float or (
        typing.get_origin(tp) in (typing.Union, types.UnionType) and float in typing.get_args(tp)
    ):
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
    return value


# ----------------------------------------------------------------------------- parsing
def _fail(source: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: {key}: {message}")


def did_you_mean(word: object, choices) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices`` (:mod:`difflib`), else ``""``."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key(source: str, key: str, allowed, what: str = "key") -> ConfigError:
    """An unknown (or retired) ``table.key``, with the allowed keys and the closest one."""
    if key in RETIRED_KEYS:
        return _fail(source, key, RETIRED_KEYS[key])
    word = key.rsplit(".", 1)[-1]
    return _fail(
        source, key, f"unknown {what}{did_you_mean(word, allowed)}; allowed: {', '.join(allowed)}"
    )


def _blame(source: str, where: str, err: Exception, names) -> ConfigError:
    """A constructor's error under the full key of the argument it names (``model.damping``)."""
    message = str(err)
    match = re.match(r"(\w+) ", message)
    if match and match.group(1) in names:
        return _fail(source, f"{where}.{match.group(1)}", message)
    return _fail(source, where, message)


def _check_table(source: str, where: str, value) -> Mapping:
    if not isinstance(value, Mapping):
        raise _fail(source, where, f"expected a table, got {type(value).__name__} {value!r}")
    return value


def _parse_plain(source: str, table: str, raw: Mapping, spec: dict[str, _Key]) -> dict:
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise _unknown_key(source, f"{table}.{unknown[0]}", list(spec))
    out = {}
    for key, rule in spec.items():
        if key not in raw:
            if rule.default is not None:
                out[key] = rule.default
            continue
        value = raw[key]
        if not _matches(value, rule.type):
            raise _fail(
                source, f"{table}.{key}", f"expected {_type_name(rule.type)}, got {value!r}"
            )
        value = _coerce(value, rule.type)
        if rule.choices and value not in rule.choices:
            raise _fail(
                source,
                f"{table}.{key}",
                f"unknown value {value!r}{did_you_mean(value, rule.choices)}; "
                f"allowed: {', '.join(rule.choices)}",
            )
        if not rule.check(value):
            raise _fail(source, f"{table}.{key}", f"expected {rule.expected}, got {value!r}")
        out[key] = value
    return out


def _parse_kind(source: str, where: str, raw, registry: Mapping[str, type], what: str) -> dict:
    """A ``{kind, **fields}`` table checked against the registered dataclass's fields."""
    raw = _check_table(source, where, raw)
    kind = raw.get("kind")
    if kind not in registry:
        raise _fail(
            source,
            f"{where}.kind",
            f"unknown {what} {kind!r}{did_you_mean(kind, registry)}; "
            f"allowed: {', '.join(registry)}",
        )
    cls = registry[kind]
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    out = {"kind": kind}
    for key, value in raw.items():
        if key == "kind":
            continue
        if key not in fields:
            raise _fail(
                source,
                f"{where}.{key}",
                f"unknown key for {what} {kind!r}{did_you_mean(key, fields)}; "
                "allowed: kind, " + ", ".join(fields),
            )
        if not _matches(value, hints.get(key, Any)):
            raise _fail(
                source, f"{where}.{key}", f"expected {_type_name(hints[key])}, got {value!r}"
            )
        out[key] = _coerce(value, hints.get(key, Any))
    try:
        cls(**{k: v for k, v in out.items() if k != "kind"})
    except (TypeError, ValueError) as err:
        raise _blame(source, where, err, fields) from None
    return out


def _network_params() -> tuple[dict[str, inspect.Parameter], dict[str, Any]]:
    params = dict(inspect.signature(Network.__init__).parameters)
    params.pop("self")
    return params, typing.get_type_hints(Network.__init__)


def _parse_model(source: str, raw: Mapping, default_head: str) -> dict:
    params, hints = _network_params()
    unknown = sorted(set(raw) - set(params))
    if unknown:
        raise _unknown_key(source, f"model.{unknown[0]}", list(params))
    layer_list = raw.get("layers", [])
    if not isinstance(layer_list, list):
        raise _fail(source, "model.layers", f"expected a list of tables, got {layer_list!r}")
    out: dict[str, Any] = {
        "layers": [
            _parse_kind(source, f"model.layers[{i}]", entry, _layers.LAYERS, "layer kind")
            for i, entry in enumerate(layer_list)
        ],
        "head": _parse_kind(
            source, "model.head", raw.get("head", {"kind": default_head}), _heads.HEADS, "head kind"
        ),
    }
    for key, param in params.items():
        if key in ("layers", "head"):
            continue
        value = raw.get(key, param.default)
        if value is None:
            continue
        if not _matches(value, hints.get(key, Any)):
            raise _fail(source, f"model.{key}", f"expected {_type_name(hints[key])}, got {value!r}")
        value = _coerce(value, hints.get(key, Any))
        if isinstance(value, float) and not math.isfinite(value) and key != "clip":
            raise _fail(source, f"model.{key}", f"expected a finite number, got {value!r}")
        if key == "seed" and value < 0:
            raise _fail(source, "model.seed", f"expected an int >= 0, got {value!r}")
        out[key] = value
    try:
        build_network(out)
    except (TypeError, ValueError) as err:
        raise _blame(source, "model", err, params) from None
    return out


def _parse_data(source: str, raw: Mapping, base: Path | None) -> dict:
    """The ``[data]`` table; only the keys that apply to the dataset are kept or filled in."""
    data = _parse_plain(source, "data", raw, DATA_KEYS)
    name = data["name"]
    synthetic = name in DATASETS and DATASETS[name].synthetic
    for key in SYNTHETIC_KEYS:
        if not synthetic:
            if key in raw:
                names = [n for n, spec in DATASETS.items() if spec.synthetic]
                raise _fail(
                    source,
                    f"data.{key}",
                    f"applies only to the synthetic datasets ({', '.join(names)}), not to {name!r}",
                )
            data.pop(key, None)
    if name != "file":
        extra = [k for k in FILE_KEYS if k in data]
        if extra:
            raise _fail(source, f"data.{extra[0]}", "only allowed when data.name = 'file'")
        return data
    for key in ("path", "target", "task"):
        if key not in data:
            raise _fail(
                source,
                f"data.{key}",
                "required when data.name = 'file' (required: path, target, task; "
                "optional: features, default every other column)",
            )
    path = Path(data["path"]).expanduser()
    if not path.is_absolute():
        path = (base if base is not None else Path.cwd()) / path
    path = path.absolute()
    if not path.is_file():
        raise _fail(
            source,
            "data.path",
            f"no such file {str(path)!r} (a relative path is taken from the variant file's folder)",
        )
    data["path"] = str(path)
    return data


def parse(raw: Mapping, source: str = "<string>", base: str | Path | None = None) -> Config:
    """Validate the tables of a variant (as read by :mod:`tomllib`) into a :class:`Config`.

    Parameters
    ----------
    raw : mapping
        The ``data``, ``model`` and ``train`` tables.
    source : str
        Named in error messages (the file).
    base : path-like, optional
        Folder a relative ``data.path`` is taken from (:func:`load` passes the variant file's
        folder; default: the working directory). The config stores the absolute path.

    Raises
    ------
    ConfigError
        Naming ``source``, the offending key and what was expected.
    """
    raw = _check_table(source, "<top level>", raw)
    tables = ("data", "model", "train")
    unknown = sorted(set(raw) - set(tables))
    if unknown:
        raise _unknown_key(source, unknown[0], tables, "table")
    data = _parse_data(
        source,
        _check_table(source, "data", raw.get("data", {})),
        None if base is None else Path(base),
    )
    task = data["task"] if data["name"] == "file" else DATASETS[data["name"]].task
    default_head = "onehot" if task == "classification" else "gaussian"
    model = _parse_model(source, _check_table(source, "model", raw.get("model", {})), default_head)
    is_classifier = _heads.HEADS[model["head"]["kind"]].is_classifier
    if is_classifier != (task == "classification"):
        wanted = task == "classification"
        allowed = [k for k, c in _heads.HEADS.items() if c.is_classifier == wanted]
        raise _fail(
            source,
            "model.head.kind",
            f"{model['head']['kind']!r} does not fit the {task} data {data['name']!r}; "
            f"allowed: {', '.join(allowed)}",
        )
    train = _parse_plain(
        source, "train", _check_table(source, "train", raw.get("train", {})), TRAIN_KEYS
    )
    return Config(data, model, train, source)


def upgrade(raw: Mapping) -> dict:
    """A copy of variant tables written before keys were retired, in today's keys.

    ``data.noise`` becomes ``data.noise_sd`` (kept only for the synthetic datasets, the only
    ones that used it) and ``train.seed`` is dropped (``model.seed`` orders the rows). For
    configs stored inside older model files; variant files should be edited instead.
    """
    out = json.loads(json.dumps(dict(raw)))
    data, train = out.get("data"), out.get("train")
    if isinstance(data, dict) and "noise" in data:
        noise = data.pop("noise")
        name = data.get("name", DATA_KEYS["name"].default)
        if name in DATASETS and DATASETS[name].synthetic and "noise_sd" not in data:
            data["noise_sd"] = noise
    if isinstance(train, dict):
        train.pop("seed", None)
    return out


def load(path: str | Path) -> Config:
    """Read and validate a variant file (a path, or the name of a known variant)."""
    path = _resolve(path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    return parse(raw, str(path), base=path.absolute().parent)


# ---------------------------------------------------------------------------- variants
def _variant_dirs() -> list[Path]:
    """Where named variants are looked up: ./variants, the source tree's, the embedded one."""
    here = Path(__file__).resolve().parent
    dirs = [Path.cwd() / "variants", here.parent / "variants", here / "variants"]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def find_variants() -> dict[str, Path]:
    """Known variants by name (file stem), first directory of :func:`_variant_dirs` winning."""
    found: dict[str, Path] = {}
    for d in _variant_dirs():
        for path in sorted(d.glob("*.toml")):
            found.setdefault(path.stem, path)
    embedded = resources.files("bayeslayers") / "variants" / f"{DEFAULT_VARIANT}.toml"
    found.setdefault(DEFAULT_VARIANT, Path(str(embedded)))
    return found


def _resolve(path: str | Path) -> Path:
    candidate = Path(path)
    if candidate.suffix == ".toml" or candidate.exists():
        return candidate
    known = find_variants()
    if str(path) in known:
        return known[str(path)]
    raise ConfigError(
        f"{path}: no such file or known variant{did_you_mean(str(path), known)}; "
        f"known variants: {', '.join(sorted(known))}"
    )


def variant_description(path: str | Path) -> str:
    """The first comment line of a variant file (what it demonstrates)."""
    for line in Path(path).read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


# ----------------------------------------------------------------------------- objects
def build_layers(model: Mapping) -> list:
    """Layer objects from the ``model.layers`` tables."""
    return [
        _layers.make_layer(t["kind"], **{k: v for k, v in t.items() if k != "kind"})
        for t in model.get("layers", [])
    ]


def build_head(model: Mapping):
    """The head object from the ``model.head`` table."""
    table = model.get("head", {"kind": "gaussian"})
    return _heads.make_head(table["kind"], **{k: v for k, v in table.items() if k != "kind"})


def build_network(model: Mapping | Config) -> Network:
    """An unfitted :class:`~bayeslayers.Network` from a ``[model]`` table or a config."""
    if isinstance(model, Config):
        model = model.model
    kwargs = {k: v for k, v in model.items() if k not in ("layers", "head")}
    return Network(build_layers(model), head=build_head(model), **kwargs)


def load_data(config: Config) -> Dataset:
    """The train/test split a config's ``[data]`` table describes (``load_dataset(**data)``)."""
    return load_dataset(**config.data)


def fit_variant(
    config: Config | str | Path,
    *,
    progress: bool = False,
    callback: typing.Callable[[FitProgress], None] | None = None,
    data: Dataset | None = None,
) -> tuple[Network, Dataset]:
    """Train a variant exactly as ``bayeslayers run`` does; return the network and its data.

    The data come from :func:`load_data`, the network from :func:`build_network`, and the
    training is one call

    ``net.fit(X_train, y_train, passes=train.passes, batch_size=train.batch_size,
    fraction=train.fraction)``

    (``fraction`` defaults to ``1 / passes``; the rows are shuffled in every pass with the
    network's ``seed``, ``model.seed``). The command makes this same call, with a callback
    that scores its learning curve on copies, so both give bitwise the same model.

    Parameters
    ----------
    config : Config, path or variant name
        A parsed config, or what :func:`load` accepts.
    progress : bool
        Show ``Network.fit``'s progress bar.
    callback : callable, optional
        Passed to ``Network.fit`` (called after every batch with a ``FitProgress``).
    data : Dataset, optional
        The split ``load_data(config)`` returns, if already loaded (it is not checked).

    Returns
    -------
    network : Network
        The fitted network.
    dataset : Dataset
        The split it was trained on (``X_train``, ``y_train``) and is evaluated on (``X_test``).
    """
    if not isinstance(config, Config):
        config = load(config)
    data = load_data(config) if data is None else data
    net = build_network(config)
    train = config.train
    net.fit(
        data.X_train,
        data.y_train,
        passes=train["passes"],
        batch_size=train["batch_size"],
        fraction=train.get("fraction"),
        progress=progress,
        callback=callback,
    )
    return net, data


# ----------------------------------------------------------------------------- writing
def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} {v!r} as TOML")


def dumps(config: Config, comment: str | None = None) -> str:
    """The config as TOML text (every value explicit), optionally under a comment line."""
    lines = [f"# {comment}", ""] if comment else []
    for table in ("data", "model", "train"):
        lines.append(f"[{table}]")
        items = getattr(config, table).items()
        lines.extend(f"{key} = {_value(value)}" for key, value in items)
        lines.append("")
    return "\n".join(lines)
