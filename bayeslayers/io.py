"""Save and load fitted networks without pickle: NPZ arrays plus JSON metadata.

A model file is an uncompressed ``.npz`` archive. Its ``__meta__`` entry is a JSON document
with the format name and version, the package version, the network's constructor parameters
(layers and head as ``{kind, **fields}`` tables rebuilt through :data:`bayeslayers.layers.LAYERS`
and :data:`bayeslayers.heads.HEADS`), an optional run config, and a description of the fitted
state. Every other entry is one array of that state.

The state is described generically, so heads written later need no change here: a value is an
array (stored in the archive), a JSON scalar (``None``, bool, int, float, str), a list or tuple
of values, or a ``NamedTuple`` from a ``bayeslayers`` module (e.g.
:class:`bayeslayers.conjugate.WeightPosterior` or a head's state) whose fields are values.
Files are read with ``np.load(allow_pickle=False)``; truncated, corrupted, foreign or
wrong-version files raise :class:`ModelFileError`.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from bayeslayers import heads as _heads
from bayeslayers import layers as _layers
from bayeslayers.engine import NoiseState
from bayeslayers.network import Network

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "load", "read_metadata", "save"]

FORMAT = "bayeslayers-model"
FORMAT_VERSION = 1
_META = "__meta__"


class ModelFileError(ValueError):
    """A model file that cannot be read: missing, truncated, corrupted or of another version."""


# ---------------------------------------------------------------------------- encoding
def _encode(value: Any, key: str, arrays: dict[str, np.ndarray]) -> dict:
    """JSON description of ``value``; its arrays go to ``arrays`` under keys below ``key``."""
    if isinstance(value, np.ndarray | np.generic):
        arr = np.asarray(value)
        if arr.dtype == object:
            raise TypeError(f"cannot save {key}: object arrays need pickle")
        arrays[key] = arr
        return {"array": key, "scalar": isinstance(value, np.generic)}
    if value is None or isinstance(value, bool | int | float | str):
        return {"value": value}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        cls = type(value)
        if not cls.__module__.startswith("bayeslayers."):
            raise TypeError(f"cannot save {key}: {cls.__module__}.{cls.__qualname__} is not ours")
        return {
            "namedtuple": f"{cls.__module__}:{cls.__qualname__}",
            "fields": {f: _encode(getattr(value, f), f"{key}.{f}", arrays) for f in value._fields},
        }
    if isinstance(value, list | tuple):
        return {
            "list": [_encode(v, f"{key}.{i}", arrays) for i, v in enumerate(value)],
            "tuple": isinstance(value, tuple),
        }
    raise TypeError(f"cannot save {key}: unsupported type {type(value).__name__}")


def _decode(desc: dict, arrays: dict[str, np.ndarray]) -> Any:
    if "array" in desc:
        arr = arrays[desc["array"]]
        return arr[()] if desc.get("scalar") else arr
    if "value" in desc:
        return desc["value"]
    if "namedtuple" in desc:
        legacy = _heads.LEGACY_STATES.get(desc["namedtuple"])  # a state type moved or reshaped
        if legacy is not None:
            return legacy(**{f: _decode(d, arrays) for f, d in desc["fields"].items()})
        module, _, name = desc["namedtuple"].partition(":")
        if not module.startswith("bayeslayers."):
            raise ModelFileError(
                f"refusing to build {desc['namedtuple']!r}: not a bayeslayers type"
            )
        cls = getattr(importlib.import_module(module), name, None)
        if cls is None or not hasattr(cls, "_fields"):
            raise ModelFileError(f"state type {desc['namedtuple']!r} no longer exists")
        fields, given = list(cls._fields), list(desc["fields"])
        # a file from before a field with a default was added: the default fills it in
        if given != fields[: len(given)] or not set(fields[len(given) :]) <= set(
            cls._field_defaults
        ):
            raise ModelFileError(
                f"state type {desc['namedtuple']!r} has fields {list(cls._fields)}, "
                f"the file has {list(desc['fields'])}"
            )
        return cls(**{f: _decode(d, arrays) for f, d in desc["fields"].items()})
    if "list" in desc:
        items = [_decode(d, arrays) for d in desc["list"]]
        return tuple(items) if desc.get("tuple") else items
    raise ModelFileError(f"unknown state entry {desc!r}")


def _table(obj) -> dict:
    """A layer or head as ``{kind, **init fields}``."""
    fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}
    return {"kind": obj.kind, **fields}


def _network_params(net: Network) -> dict:
    names = [p for p in inspect.signature(Network.__init__).parameters if p != "self"]
    params = {n: getattr(net, n) for n in names if n not in ("layers", "head")}
    params = {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}
    params["layers"] = [_table(layer) for layer in net.layers]
    params["head"] = _table(net.head)
    return params


def _fitted_attributes(net: Network) -> dict[str, Any]:
    return {k: v for k, v in vars(net).items() if k.endswith("_") and not k.startswith("_")}


def save(net: Network, path: str | os.PathLike, config: dict | None = None) -> Path:
    """Write a fitted network (and optionally the run config it came from) to ``path``.

    Parameters
    ----------
    net : Network
        A fitted network.
    path : str or path-like
        Destination; written atomically (a temporary file renamed into place).
    config : dict, optional
        JSON-able description of the run (e.g. ``Config.to_dict()``), stored in the metadata.

    Returns
    -------
    Path
        The file written.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a Network, got {type(net).__name__}")
    if not net.is_fitted:
        raise ValueError("cannot save an unfitted Network: call fit or partial_fit first")
    from bayeslayers import __version__

    arrays: dict[str, Any] = {}  # np.ndarray values; Any for savez's keyword stub
    state = {k: _encode(v, k, arrays) for k, v in _fitted_attributes(net).items()}
    rng = getattr(net, "_rng", None)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "network": _network_params(net),
        "state": state,
        "rng": None if rng is None else rng.bit_generator.state,
        "config": config,
    }
    arrays[_META] = np.array(json.dumps(meta))
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------- decoding
def _read(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
        raise ModelFileError(
            f"{path}: not a readable model file, truncated or corrupted ({err})"
        ) from None
    if _META not in arrays:
        raise ModelFileError(f"{path}: not a bayeslayers model file (no metadata)")
    try:
        meta = json.loads(str(arrays.pop(_META)))
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{path}: corrupted metadata ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a bayeslayers model file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format version {meta.get('format_version')!r} (written by bayeslayers "
            f"{meta.get('package_version')}); this version reads format {FORMAT_VERSION}"
        )
    return meta, arrays


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata of a model file (format, versions, network parameters, config)."""
    return _read(Path(path))[0]


def _build(table: dict, registry: dict, what: str):
    table = dict(table)
    kind = table.pop("kind")
    if kind not in registry:
        raise ModelFileError(f"unknown {what} kind {kind!r}; this version has {sorted(registry)}")
    return registry[kind](**table)


def load(path: str | os.PathLike) -> Network:
    """Read a network written by :func:`save`; predictions are identical to the saved one's.

    Raises
    ------
    ModelFileError
        If the file is missing, truncated, corrupted, not a model file or of another format
        version.
    """
    path = Path(path)
    meta, arrays = _read(path)
    try:
        params = dict(meta["network"])
        layers = [_build(t, _layers.LAYERS, "layer") for t in params.pop("layers")]
        head = _build(params.pop("head"), _heads.HEADS, "head")
        net = Network(layers, head=head, **params)
        for name, desc in meta["state"].items():
            setattr(net, name, _decode(desc, arrays))
        if net.is_fitted and not hasattr(net, "noise_"):
            # a file from before the hidden noise was learned: its fixed resolved values
            net.noise_ = [
                NoiseState(1.0, layer.noise or net.hidden_noise or net.noise)
                for layer in net.layers
            ]
        if meta.get("rng") is not None:
            rng = np.random.default_rng()
            rng.bit_generator.state = meta["rng"]
            net._rng = rng
    except ModelFileError as err:
        raise ModelFileError(f"{path}: {err}") from None
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(
            f"{path}: inconsistent model file ({type(err).__name__}: {err})"
        ) from None
    return net
