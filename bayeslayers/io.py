r"""Save and load fitted networks without pickle: NPZ arrays plus JSON metadata.

A model file is an uncompressed ``.npz`` archive. Its ``__meta__`` entry is a JSON document
with the format name and version, the package version, the network's constructor parameters
(layers and head as ``{kind, **fields}`` tables rebuilt through :data:`bayeslayers.layers.LAYERS`
and :data:`bayeslayers.heads.HEADS`), an optional run config, and a description of the fitted
state. Every other entry is one array of that state.

The state is described generically: a value is an array (stored in the archive), a JSON scalar
(``None``, bool, int, float, str), a list or tuple of values, or a ``NamedTuple`` from a
``bayeslayers`` module (e.g. :class:`bayeslayers.conjugate.WeightPosterior` or a head's state)
whose fields are values. Only the fitted attributes listed in :data:`FITTED` are written.

Loading does not trust the file. It reads the metadata entry first, rebuilds the network from
its parameters (so they pass :class:`~bayeslayers.network.Network`'s own validation), accepts
only the attributes of :data:`FITTED`, and derives from the network the layout every one of
them must have: each hidden posterior's structure, shapes and dtype follow from the layers and
``n_features_in_``; the head's state must be of the type, fields and dtypes its head's ``init``
builds; the iterate average of the hidden means (``average_``: ``None`` or a
:class:`bayeslayers.averaging.Average`) holds one array per hidden layer, of that layer's
mean's shape and dtype; the evidence for the hidden layers' predictive scale
(``hidden_scale_``: ``None`` or a :class:`bayeslayers.hidden_scale.HiddenScale`, kept only by
a regression network with hidden layers) one float64 entry per scale of its grid. It then
reads only the archive entries the metadata names, each at
most once, and only after checking the entry (stored uncompressed, its size exactly that of
its ``.npy`` header's shape and dtype) and that header (shape and dtype as expected): the
arrays it reads add up to at most the file's own size, whatever other entries the file holds
(the layout check adds one initial head state, of the size of the head's entries already
read). Finally every value is checked: finite real arrays, positive variances and noise
scales, symmetric covariances that have a Cholesky factor, an average over :math:`s \ge 1`
rows and at least one batch, its last sampled batch at :math:`1 \le s' \le s` rows and
effective rows :math:`0 < Z \le s'`, a hidden scale's record over at least one row and batch
with its last scored batch at :math:`1 \le s' \le s` rows. Anything else raises
:class:`ModelFileError`, whatever the exception underneath.

A file of format 1, written before :func:`bayeslayers.defaults.head_structure` gave a
Gaussian head with several columns one shared covariance, loads with that head's
``covariance`` set to ``"unit"`` where it was left to a network with ``covariance="auto"``,
the structure it was fitted with (the same posterior; format 2 files resolve it by the
rule; under any other network-wide structure the head had that structure then as now).

A file from before the iterate average has no ``average_`` (and no ``average`` parameter): it
loads with ``average_ = None``, so it predicts at the posterior means as when it was saved,
and with the constructor's default ``average``, so a later ``partial_fit`` starts an average.
Likewise a file from before the hidden scale loads with ``hidden_scale_ = None`` (the factor
1 it predicted with) and the constructor's default ``hidden_scale``, and a file from before
the head's fan-in prior with the constructor's default ``head_prior="flat"``, the prior it
was fitted with.

Saving writes a unique temporary file in the destination folder, flushes it to disk and renames
it into place, so a reader (or a concurrent save) never sees a partial file; a destination that
exists and is not a regular file (a symbolic link, directory, FIFO or device) is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
import os
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bayeslayers import conjugate, hidden_scale
from bayeslayers import heads as _heads
from bayeslayers import layers as _layers
from bayeslayers._threads import training_lock
from bayeslayers._validation import check_real
from bayeslayers.averaging import Average
from bayeslayers.conjugate import WeightPosterior
from bayeslayers.engine import NoiseState, head_blocks, head_width
from bayeslayers.health import SYMMETRY_TOL
from bayeslayers.hidden_scale import SCALES, HiddenScale
from bayeslayers.network import Network

__all__ = ["FITTED", "FORMAT", "FORMAT_VERSION", "ModelFileError", "load", "read_metadata", "save"]

FORMAT = "bayeslayers-model"
FORMAT_VERSION = 2
#: Versions this one reads: 1 (before the head's shared covariance, below) and 2.
_READS = (1, 2)
_META = "__meta__"

#: The fitted attributes of a :class:`Network` that a model file holds (and the only ones
#: :func:`load` accepts). A new fitted attribute needs an entry here and a check in ``load``.
FITTED = (
    "posteriors_",
    "head_state_",
    "noise_",
    "n_features_in_",
    "n_outputs_",
    "classes_",
    "n_samples_seen_",
    "log_evidence_",
    "training_time_",
    "memory_",
    "average_",
    "hidden_scale_",
    "head_prior_",
)
_REQUIRED = ("posteriors_", "head_state_", "n_features_in_", "n_outputs_", "n_samples_seen_")
#: Largest metadata entry read (bytes of the stored ``.npy``; 4 bytes per JSON character).
_MAX_META_BYTES = 64 << 20
#: Largest ``.npy`` header read (``np.save`` writes a few hundred bytes).
_MAX_HEADER = 10_000
#: Units of a unit covariance stack checked by one Cholesky call (bounds the temporary).
_CHOLESKY_BLOCK = 16


class ModelFileError(ValueError):
    """A model file that cannot be read: missing, truncated, corrupted, of another version, or
    holding a state that does not fit the network it describes."""


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


def _table(obj, registry: dict, what: str) -> dict:
    """A layer or head as ``{kind, **init fields}`` (a registered kind only)."""
    if registry.get(getattr(obj, "kind", None)) is not type(obj):
        raise TypeError(
            f"cannot save a {what} of unregistered type {type(obj).__name__}: a model file names "
            f"its {what}s by registry kind (one of {sorted(registry)})"
        )
    fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}
    return {"kind": obj.kind, **fields}


def _network_params(net: Network) -> dict:
    names = [p for p in inspect.signature(Network.__init__).parameters if p != "self"]
    params = {n: getattr(net, n) for n in names if n not in ("layers", "head")}
    params = {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}
    params["layers"] = [_table(layer, _layers.LAYERS, "layer") for layer in net.layers]
    params["head"] = _table(net.head, _heads.HEADS, "head")
    return params


def _fitted_attributes(net: Network) -> dict[str, Any]:
    found = {
        k: v
        for k, v in vars(net).items()
        if k.endswith("_") and not k.startswith("_") and k != "rng_"  # saved on its own
    }
    unknown = sorted(set(found) - set(FITTED))
    if unknown:
        raise TypeError(
            f"cannot save the fitted attributes {unknown}: a model file holds only {FITTED} "
            "(add a new attribute to bayeslayers.io.FITTED, with its check in load)"
        )
    return found


def _check_destination(path: Path) -> os.stat_result | None:
    """``lstat`` of an existing regular file at ``path``, None if nothing is there."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(info.st_mode):
        return info
    what = (
        "a symbolic link"
        if stat.S_ISLNK(info.st_mode)
        else "a directory"
        if stat.S_ISDIR(info.st_mode)
        else "a FIFO"
        if stat.S_ISFIFO(info.st_mode)
        else "a device"
        if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
        else "not a regular file"
    )
    raise ValueError(
        f"path {str(path)!r} exists and is {what}; save writes only a new file or replaces a "
        "regular one (remove it or choose another path)"
    )


def _new_file_mode() -> int:
    """``0o666`` less the process umask (what ``open(path, "w")`` would give)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


def _write_npz(fh, arrays: dict[str, np.ndarray]) -> None:
    """The ``np.savez`` layout: one stored (uncompressed) ``KEY.npy`` entry per array."""
    with zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, arr in arrays.items():
            with zf.open(f"{key}.npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (where the platform allows opening folders)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(net: Network, path: str | os.PathLike, config: dict | None = None) -> Path:
    """Write a fitted network (and optionally the run config it came from) to ``path``.

    The archive goes to a new temporary file with a unique name in the destination folder
    (``tempfile.mkstemp``), is flushed to disk (``fsync``) and renamed over ``path``
    (``os.replace``), so readers and concurrent saves only ever see a complete file; the
    temporary file is removed if anything fails. A ``path`` that exists and is not a regular
    file (a symbolic link, directory, FIFO or device) is refused, so a save never writes
    through a link or replaces a special file. The network's training lock is held while its
    state is serialized, so a save from another thread sees no update half done.

    Parameters
    ----------
    net : Network
        A fitted network.
    path : str or path-like
        Destination: a new file or an existing regular file (replaced).
    config : dict, optional
        JSON-able description of the run (e.g. ``Config.to_dict()``), stored in the metadata.

    Returns
    -------
    Path
        The file written.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a Network, got {type(net).__name__}")
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
    if not net.is_fitted:
        raise ValueError("cannot save an unfitted Network: call fit or partial_fit first")
    from bayeslayers import __version__

    path = Path(path)
    _check_destination(path)
    with training_lock(net):
        arrays: dict[str, np.ndarray] = {}
        state = {k: _encode(v, k, arrays) for k, v in _fitted_attributes(net).items()}
        rng = getattr(net, "rng_", None)
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
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with open(fd, "wb") as fh:
            _write_npz(fh, arrays)
            fh.flush()
            os.fsync(fh.fileno())
        existing = _check_destination(path)  # again: something may have appeared meanwhile
        os.chmod(tmp, stat.S_IMODE(existing.st_mode) if existing else _new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)
    return path


# ---------------------------------------------------------------------------- reading
@dataclasses.dataclass(frozen=True)
class _Expect:
    """An array the file must hold: its shape (only its length if not ``exact``) and dtype
    (or, if ``dtype`` is None, one of the dtype ``kinds``)."""

    shape: tuple[int, ...]
    dtype: np.dtype | None
    exact: bool = True
    kinds: str = "biuf"


_ANY: Any = object()  # a value whose layout is checked only after it is read (a legacy type)


class _Archive:
    """The members of an open model file, read on demand, each at most once, each only after
    its zip entry and ``.npy`` header have been checked."""

    def __init__(self, zf: zipfile.ZipFile, size: int) -> None:
        self.zf, self.size = zf, size
        self.seen: set[str] = set()

    def _entry(self, key: Any, where: str) -> zipfile.ZipInfo:
        if not isinstance(key, str):
            raise ModelFileError(f"{where}: malformed array reference {key!r}")
        member = f"{key}.npy"
        if member in self.seen:
            raise ModelFileError(f"{where}: the entry {member!r} is referenced twice")
        try:
            info = self.zf.getinfo(member)
        except KeyError:
            raise ModelFileError(f"{where}: the entry {member!r} is missing") from None
        if info.compress_type != zipfile.ZIP_STORED:
            raise ModelFileError(
                f"{where}: the entry {member!r} is compressed (method {info.compress_type}); "
                "model files store every entry uncompressed"
            )
        if info.flag_bits & 0x1:
            raise ModelFileError(f"{where}: the entry {member!r} is encrypted")
        if info.compress_size != info.file_size or info.file_size > self.size:
            raise ModelFileError(
                f"{where}: the entry {member!r} claims {info.file_size} bytes in a file of "
                f"{self.size}"
            )
        return info

    def array(self, key: Any, expect: _Expect | None, where: str) -> np.ndarray:
        """The array stored under ``key``, checked against ``expect`` before it is read."""
        info = self._entry(key, where)
        with self.zf.open(info) as fp:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(fp, max_header_size=_MAX_HEADER)
            elif version == (2, 0):
                header = np.lib.format.read_array_header_2_0(fp, max_header_size=_MAX_HEADER)
            else:
                raise ModelFileError(f"{where}: unsupported .npy format version {version}")
            data_start = fp.tell()
        shape, _, dtype = header
        if dtype.hasobject or dtype.names is not None or dtype.subdtype is not None:
            raise ModelFileError(f"{where}: unsupported dtype {dtype}")
        if dtype.itemsize == 0:
            raise ModelFileError(f"{where}: zero-size dtype {dtype}")
        if info.file_size != data_start + math.prod(shape) * dtype.itemsize:
            raise ModelFileError(
                f"{where}: the entry holds {info.file_size - data_start} data bytes, its header "
                f"says shape {shape} of {dtype}"
            )
        if expect is not None:
            if expect.dtype is not None and dtype != expect.dtype:
                raise ModelFileError(f"{where}: dtype {dtype}, expected {expect.dtype}")
            if expect.dtype is None and dtype.kind not in expect.kinds:
                raise ModelFileError(f"{where}: unsupported dtype {dtype}")
            if len(shape) != len(expect.shape) or (expect.exact and shape != expect.shape):
                want = expect.shape if expect.exact else f"{len(expect.shape)} dimensions"
                raise ModelFileError(f"{where}: shape {shape}, expected {want}")
        elif dtype.kind not in "biuf":
            raise ModelFileError(f"{where}: unsupported dtype {dtype}")
        self.seen.add(info.filename)
        with self.zf.open(info) as fp:
            arr = np.lib.format.read_array(fp, allow_pickle=False, max_header_size=_MAX_HEADER)
            if fp.read(1):  # reach the end of the entry, where its CRC is checked
                raise ModelFileError(f"{where}: trailing data after the array")
        return arr


def _open_meta(zf: zipfile.ZipFile, size: int) -> dict:
    archive = _Archive(zf, size)
    if f"{_META}.npy" not in zf.namelist():
        raise ModelFileError("not a bayeslayers model file (no metadata)")
    info = zf.getinfo(f"{_META}.npy")
    if info.file_size > _MAX_META_BYTES:
        raise ModelFileError(f"metadata of {info.file_size} bytes (at most {_MAX_META_BYTES})")
    text = archive.array(_META, _Expect((), None, kinds="U"), "metadata")
    try:
        meta = json.loads(str(text[()]))
    except json.JSONDecodeError as err:
        raise ModelFileError(f"corrupted metadata ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError("not a bayeslayers model file")
    version = meta.get("format_version")
    if type(version) is not int or version not in _READS:  # not a bool, a float, ...
        raise ModelFileError(
            f"model format version {version!r} (written by bayeslayers "
            f"{meta.get('package_version')}); this version reads formats {_READS}"
        )
    return meta


def _guarded(path: Path, read: Callable[[zipfile.ZipFile, int], Any]) -> Any:
    """Run ``read(zipfile, size)`` on ``path``; every failure becomes a ModelFileError."""
    try:
        info = path.stat()
    except OSError:
        raise ModelFileError(f"{path}: no such model file") from None
    if not stat.S_ISREG(info.st_mode):
        raise ModelFileError(f"{path}: not a regular file")
    size = info.st_size
    try:
        with zipfile.ZipFile(path) as zf:
            return read(zf, size)
    except ModelFileError as err:
        raise ModelFileError(f"{path}: {err}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise ModelFileError(
            f"{path}: not a readable model file, truncated or corrupted ({err})"
        ) from None
    except OSError as err:
        raise ModelFileError(f"{path}: cannot read the model file ({err})") from None
    except Exception as err:  # a crafted file can raise nearly anything underneath
        raise ModelFileError(
            f"{path}: inconsistent model file ({type(err).__name__}: {err})"
        ) from None


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata of a model file (format, versions, network parameters, config).

    Only the metadata entry is read (checked as in :func:`load`).
    """
    return _guarded(Path(path), _open_meta)


# ---------------------------------------------------------------------------- decoding
def _is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(value, "_fields")


def _layout(value: Any, exact: bool) -> Any:
    """``value`` with every array replaced by the :class:`_Expect` of its shape and dtype."""
    if isinstance(value, np.ndarray):
        return _Expect(value.shape, value.dtype, exact)
    if _is_namedtuple(value):
        return type(value)(*(_layout(v, exact) for v in value))
    if isinstance(value, list | tuple):
        return type(value)(_layout(v, exact) for v in value)
    return value


def _cov_shape(structure: str, n_in: int, m: int, dtype: np.dtype) -> tuple[int, ...]:
    """Shape of the covariance of a ``(n_in, m)`` weight posterior of ``structure``."""
    known = {"unit": (m, n_in, n_in), "shared": (n_in, n_in), "diag": (n_in, m)}
    if structure in known:
        return known[structure]
    return conjugate.init(structure, np.zeros((n_in, m), dtype), 1.0).cov.shape


def _posterior_layout(structure: str, n_in: int, m: int, dtype: np.dtype) -> WeightPosterior:
    return WeightPosterior(
        structure,
        _Expect((n_in, m), dtype),  # type: ignore[arg-type]  # a layout, not a posterior
        _Expect(_cov_shape(structure, n_in, m, dtype), dtype),  # type: ignore[arg-type]
    )


def _exact_posteriors(layout: Any, n_in: int) -> Any:
    """A head layout built with one input row, with every weight posterior at ``n_in`` rows."""
    if isinstance(layout, WeightPosterior):
        return _posterior_layout(layout.structure, n_in, layout.mean.shape[1], layout.mean.dtype)
    if _is_namedtuple(layout):
        return type(layout)(*(_exact_posteriors(v, n_in) for v in layout))
    if isinstance(layout, list | tuple):
        return type(layout)(_exact_posteriors(v, n_in) for v in layout)
    return layout


def _number(value: Any, ref: Any, where: str) -> Any:
    """``value`` if it is a scalar of the kind of ``ref`` (``_ANY``: any scalar; a string
    ``ref`` must be matched exactly)."""
    if ref is _ANY:
        if value is None or isinstance(value, bool | int | float | str | np.generic):
            return value
    elif ref is None:
        if value is None:
            return None
    elif isinstance(ref, bool | np.bool_):
        if isinstance(value, bool | np.bool_):
            return value
    elif isinstance(ref, int | np.integer):
        if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
            return value
    elif isinstance(ref, float | np.floating):
        if isinstance(value, float | np.floating):
            return value
        if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
            return float(value)
    elif isinstance(ref, str):  # a name fixed by the network (e.g. a covariance structure)
        if value == ref:
            return value
        raise ModelFileError(f"{where}: expected {ref!r}, got {value!r}")
    raise ModelFileError(f"{where}: expected {type(ref).__name__}, got {value!r}")


class _Decoder:
    """Rebuilds values from their JSON descriptions, each against the layout it must have."""

    def __init__(self, archive: _Archive) -> None:
        self.archive = archive

    def __call__(self, desc: Any, ref: Any, where: str) -> Any:
        if not isinstance(desc, dict):
            raise ModelFileError(f"{where}: malformed state entry {desc!r}")
        if isinstance(ref, _Expect) or (ref is _ANY and "array" in desc and not desc.get("scalar")):
            if "array" not in desc or desc.get("scalar"):
                raise ModelFileError(f"{where}: expected an array")
            return self.archive.array(desc["array"], None if ref is _ANY else ref, where)
        if _is_namedtuple(ref) or (ref is _ANY and "namedtuple" in desc):
            return self._namedtuple(desc, ref, where)
        if isinstance(ref, list | tuple) or (ref is _ANY and "list" in desc):
            items = desc.get("list")
            if not isinstance(items, list) or (ref is not _ANY and len(items) != len(ref)):
                want = "a list" if ref is _ANY else f"a list of {len(ref)}"
                raise ModelFileError(f"{where}: expected {want}")
            refs = [_ANY] * len(items) if ref is _ANY else list(ref)
            out = [
                self(d, r, f"{where}[{i}]")
                for i, (d, r) in enumerate(zip(items, refs, strict=True))
            ]
            if ref is _ANY:
                return tuple(out) if desc.get("tuple") else out
            return type(ref)(out)
        if "array" in desc and desc.get("scalar"):
            arr = self.archive.array(desc["array"], _Expect((), None), where)
            return _number(arr[()], ref, where)
        if "value" in desc:
            return _number(desc["value"], ref, where)
        raise ModelFileError(f"{where}: malformed state entry")

    def _namedtuple(self, desc: dict, ref: Any, where: str) -> Any:
        name, fields = desc.get("namedtuple"), desc.get("fields")
        if not isinstance(name, str) or not isinstance(fields, dict):
            raise ModelFileError(f"{where}: malformed state entry")
        module, _, qualname = name.partition(":")
        if not module.startswith("bayeslayers."):
            raise ModelFileError(f"{where}: refusing to build {name!r}: not a bayeslayers type")
        cls = WeightPosterior if ref is _ANY else type(ref)
        legacy = _heads.LEGACY_STATES.get(name)
        if legacy is not None and ref is not _ANY:  # an older type: rebuilt, checked after
            value = legacy(**{f: self(d, _ANY, f"{where}.{f}") for f, d in fields.items()})
            if type(value) is not cls:
                raise ModelFileError(f"{where}: {name!r} does not give a {cls.__qualname__}")
            return value
        if qualname == cls.__qualname__:
            given, names = list(fields), list(cls._fields)
            # a file from before a field with a default was added: the default fills it in
            if given != names[: len(given)] or not set(names[len(given) :]) <= set(
                cls._field_defaults
            ):
                raise ModelFileError(f"{where}: {name!r} has fields {names}, the file has {given}")
            refs = [_ANY] * len(given) if ref is _ANY else list(ref)
            return cls(
                *(self(fields[f], r, f"{where}.{f}") for f, r in zip(given, refs, strict=False))
            )
        raise ModelFileError(f"{where}: expected a {cls.__qualname__}, the file has {name!r}")


def _same_layout(value: Any, layout: Any, where: str) -> None:
    """Raise unless ``value`` has the types, shapes and dtypes of ``layout`` (fields a file
    from an older version left at their defaults are not compared)."""
    if isinstance(layout, _Expect):
        if not isinstance(value, np.ndarray) or value.dtype != layout.dtype:
            raise ModelFileError(f"{where}: expected an array of {layout.dtype}")
        if value.shape != layout.shape:
            raise ModelFileError(f"{where}: shape {value.shape}, expected {layout.shape}")
    elif _is_namedtuple(layout):
        if type(value) is not type(layout):
            raise ModelFileError(f"{where}: expected {type(layout).__qualname__}")
        for f in layout._fields:
            default = type(layout)._field_defaults.get(f, _ANY)
            if default is not _ANY and getattr(value, f) is default:
                continue
            _same_layout(getattr(value, f), getattr(layout, f), f"{where}.{f}")
    elif isinstance(layout, list | tuple):
        if not isinstance(value, list | tuple) or len(value) != len(layout):
            raise ModelFileError(f"{where}: expected {len(layout)} items")
        for i, (v, r) in enumerate(zip(value, layout, strict=True)):
            _same_layout(v, r, f"{where}[{i}]")
    else:
        _number(value, layout, where)


# ---------------------------------------------------------------------------- value checks
def _check_posterior(post: WeightPosterior, where: str) -> None:
    """Finite mean; positive variances; covariances symmetric with a Cholesky factor."""
    mean, cov = post.mean, post.cov
    if not np.all(np.isfinite(mean)):
        raise ModelFileError(f"{where}: non-finite weight means")
    if not np.all(np.isfinite(cov)):
        raise ModelFileError(f"{where}: non-finite covariance entries")
    if post.structure == "diag":
        if not np.all(cov > 0):
            raise ModelFileError(f"{where}: non-positive variances")
        return
    if post.structure not in ("unit", "shared"):
        health = conjugate.covariance_health(post, SYMMETRY_TOL)
        if not (health.finite and health.symmetric and health.cholesky):
            raise ModelFileError(f"{where}: covariance not symmetric positive definite")
        return
    if not np.all(np.diagonal(cov, axis1=-2, axis2=-1) > 0):
        raise ModelFileError(f"{where}: non-positive variances")
    stack = cov.reshape(-1, *cov.shape[-2:])
    tol = max(SYMMETRY_TOL, 100 * np.finfo(cov.dtype).eps)
    for start in range(0, len(stack), _CHOLESKY_BLOCK):
        block = stack[start : start + _CHOLESKY_BLOCK]
        scale = max(float(np.abs(block).max(initial=0.0)), np.finfo(cov.dtype).tiny)
        if np.abs(block - np.swapaxes(block, -1, -2)).max(initial=0.0) > tol * scale:
            raise ModelFileError(f"{where}: covariance not symmetric")
        try:
            np.linalg.cholesky(block)
        except np.linalg.LinAlgError:
            raise ModelFileError(f"{where}: covariance not positive definite") from None


#: Fields checked by name wherever they appear in a state: positive scale parameters.
_POSITIVE = ("a", "b")


def _check_values(value: Any, where: str, name: str = "") -> None:
    """Finite real numbers everywhere; the known fields checked by name (see the module)."""
    if isinstance(value, WeightPosterior):
        _check_posterior(value, where)
    elif _is_namedtuple(value):
        defaults = type(value)._field_defaults
        for f in value._fields:
            if f in defaults and getattr(value, f) is defaults[f]:
                continue  # not in the file (it predates the field): the code's own default
            _check_values(getattr(value, f), f"{where}.{f}", f)
        if "n_pending" in value._fields:  # rows waiting to be scored for the temperature
            if not value.n_pending <= len(value.label):
                raise ModelFileError(f"{where}.n_pending: more rows than the buffer holds")
            if not np.all((value.label >= 0) & (value.label < value.mean.shape[-1])):
                raise ModelFileError(
                    f"{where}.label: classes must lie in [0, {value.mean.shape[-1]})"
                )
            if not np.all(value.var[: value.n_pending] > 0):
                raise ModelFileError(f"{where}.var: predictive variances must be > 0")
            if not np.all(value.weight >= 0):
                raise ModelFileError(f"{where}.weight: row weights must be >= 0")
        if "n_buffered" in value._fields:  # a buffer of rows waiting for a refit
            weight = getattr(value, "weight", getattr(value, "buffer_weight", None))
            if weight is not None:
                if not value.n_buffered <= len(weight):
                    raise ModelFileError(f"{where}.n_buffered: more rows than the buffer holds")
                if not np.all((weight >= 0) & (weight <= 1)):
                    raise ModelFileError(f"{where}: tempering fractions must lie in [0, 1]")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_values(v, f"{where}[{i}]", name)
    elif isinstance(value, np.ndarray | float | np.floating | int | np.integer):
        arr = np.asarray(value)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ModelFileError(f"{where}: non-finite values")
        if arr.dtype.kind in "iu" and arr.ndim == 0 and not arr >= 0:
            raise ModelFileError(f"{where}: a count must be >= 0, got {value}")
        if name in _POSITIVE and not np.all(arr > 0):
            raise ModelFileError(f"{where}: must be > 0, got {value}")


def _check_blocks(value: Any, blocks: tuple[int, ...] | None, where: str) -> None:
    """Raise unless every state's ``blocks`` (rows per prior block) are the network's and
    its ``alpha`` has one positive precision per block (states nested in a state too)."""
    if not _is_namedtuple(value):
        return
    if "blocks" in value._fields and len(value.blocks):
        if blocks is None or not np.array_equal(value.blocks, blocks):
            raise ModelFileError(
                f"{where}.blocks: {value.blocks.tolist()}, the network's head has {blocks}"
            )
        alpha = np.asarray(value.alpha)
        if alpha.shape != (len(blocks),) or not np.all(alpha > 0):
            raise ModelFileError(f"{where}.alpha: expected {len(blocks)} precisions > 0")
    for f in value._fields:
        _check_blocks(getattr(value, f), blocks, f"{where}.{f}")


# ---------------------------------------------------------------------------- loading
def _build(table: Any, registry: dict, what: str):
    if not isinstance(table, dict):
        raise ModelFileError(f"malformed {what} table {table!r}")
    table = dict(table)
    kind = table.pop("kind", None)
    if not isinstance(kind, str) or kind not in registry:
        raise ModelFileError(f"unknown {what} kind {kind!r}; this version has {sorted(registry)}")
    return registry[kind](**table)


def _network(meta: dict) -> Network:
    params = meta.get("network")
    if not isinstance(params, dict):
        raise ModelFileError("malformed network parameters")
    params = dict(params)
    tables = params.pop("layers", None)
    if not isinstance(tables, list):
        raise ModelFileError("malformed network parameters: layers must be a list")
    layers = [_build(t, _layers.LAYERS, "layer") for t in tables]
    head = _build(params.pop("head", None), _heads.HEADS, "head")
    params.setdefault("skip", False)  # a file from before the skip connection had none
    old_auto = meta["format_version"] == 1 and params.get("covariance", "auto") == "auto"
    if old_auto and head.covariance is None and head.shares_covariance:
        # format 1 predates defaults.head_structure: under "auto" such a head was per-unit
        head = dataclasses.replace(head, covariance="unit")
    return Network(layers, head=head, **params)  # the constructor validates every parameter


def _rng(state: Any) -> np.random.Generator:
    if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
        raise ModelFileError("malformed random generator state")
    bit_generator = np.random.PCG64()
    bit_generator.state = state  # type: ignore[assignment]  # checked by the setter
    return np.random.Generator(bit_generator)


def _head_prior(desc: Any) -> str:
    """``head_prior_`` as read: ``"flat"`` or ``"fan_in"``, stored as a plain value."""
    value = desc.get("value") if isinstance(desc, dict) else None
    if not isinstance(value, str) or value not in ("flat", "fan_in"):
        raise ModelFileError(f"head_prior_ must be 'flat' or 'fan_in', got {desc!r}")
    return value


def _memory(memory: Any) -> float | None:
    """``memory_`` as read: ``None`` or a finite number of rows per weight above 0."""
    try:
        return check_real(memory, "memory_", 0, allow_none=True, low_open=True)
    except ValueError as error:
        raise ModelFileError(str(error)) from None


def _average_layout(hidden: list[WeightPosterior]) -> Average:
    """The layout of ``average_``: one mean per hidden layer, shaped and typed as its mean."""
    return Average(tuple(p.mean for p in hidden), 0, 0.0, 0.0, 0, 0)


def _check_average(average: Average | None) -> None:
    r"""The counts of an average as :func:`bayeslayers.averaging.update` keeps them: at least
    one row and one batch, the rows at the last sampled batch :math:`1 \le s' \le s`,
    effective rows :math:`0 < Z \le s'` (finiteness is checked with the other values)."""
    if average is None:
        return
    if not average.means:
        raise ModelFileError("average_: a network without hidden layers keeps no average")
    if average.rows < 1:
        raise ModelFileError(f"average_.rows must be >= 1, got {average.rows}")
    if average.batches < 1:
        raise ModelFileError(f"average_.batches must be >= 1, got {average.batches}")
    if not 1 <= average.last <= average.rows:
        raise ModelFileError(
            f"average_.last must lie in [1, rows = {average.rows}], got {average.last}"
        )
    if not 0 < average.weight <= average.last:
        raise ModelFileError(
            f"average_.weight must lie in (0, last = {average.last}], got {average.weight}"
        )


def _check_hidden_scale(record: HiddenScale | None, keeps: bool) -> None:
    r"""A hidden scale's record as :func:`bayeslayers.hidden_scale.update` keeps it: only
    where the network keeps one (``keeps``), over at least one row and one batch, its last
    scored batch at :math:`1 \le s' \le s` rows (finiteness is checked with the other
    values)."""
    if record is None:
        return
    if not keeps:
        raise ModelFileError(
            "hidden_scale_: only a regression network with hidden layers and "
            "hidden_scale='evidence' keeps the evidence for the hidden layers' scale"
        )
    if record.rows < 1 or record.batches < 1:
        raise ModelFileError(
            f"hidden_scale_ must count >= 1 rows and batches, got {record.rows} and "
            f"{record.batches}"
        )
    if not 1 <= record.last <= record.rows:
        raise ModelFileError(
            f"hidden_scale_.last must lie in [1, rows = {record.rows}], got {record.last}"
        )


def _load(zf: zipfile.ZipFile, size: int) -> Network:
    meta = _open_meta(zf, size)
    net = _network(meta)
    state = meta.get("state")
    if not isinstance(state, dict):
        raise ModelFileError("malformed fitted state")
    unknown = sorted(set(state) - set(FITTED))
    if unknown:
        raise ModelFileError(f"unknown fitted attributes {unknown}; a model file holds {FITTED}")
    classifier = net.head.is_classifier
    required = (*_REQUIRED, "classes_") if classifier else _REQUIRED
    missing = [k for k in required if k not in state]
    if missing:
        raise ModelFileError(f"missing fitted attributes {missing}")
    if not classifier and "classes_" in state:
        raise ModelFileError(f"classes_ given for the regression head {net.head!r}")

    decode = _Decoder(_Archive(zf, size))
    dtype = np.dtype(net.dtype)
    out: dict[str, Any] = {}
    for name, low in (("n_features_in_", 1), ("n_outputs_", 1), ("n_samples_seen_", 0)):
        out[name] = decode(state[name], 0, name)
        if out[name] < low:
            raise ModelFileError(f"{name} must be >= {low}, got {out[name]}")
    if "training_time_" in state:
        out["training_time_"] = decode(state["training_time_"], 0.0, "training_time_")
        if not (np.isfinite(out["training_time_"]) and out["training_time_"] >= 0):
            raise ModelFileError(
                f"training_time_ must be finite and >= 0, got {out['training_time_']}"
            )
    if "log_evidence_" in state:  # finite (checked below), of any sign
        out["log_evidence_"] = decode(state["log_evidence_"], 0.0, "log_evidence_")
    if "memory_" in state:  # the memory a race chose: None or rows per weight
        out["memory_"] = _memory(decode(state["memory_"], _ANY, "memory_"))
    if "head_prior_" in state:  # the head prior a race chose
        out["head_prior_"] = _head_prior(state["head_prior_"])
    n_features, n_outputs = out["n_features_in_"], out["n_outputs_"]
    if n_outputs > size // dtype.itemsize + 1:  # the head's mean alone needs more bytes
        raise ModelFileError(f"n_outputs_ = {n_outputs} in a file of {size} bytes")
    if classifier:
        classes = decode(state["classes_"], _Expect((n_outputs,), None, kinds="biufUS"), "classes_")
        if classes.dtype.kind == "f" and not np.all(np.isfinite(classes)):
            raise ModelFileError("classes_: non-finite labels")
        if len(classes) < 2 or not np.all(classes[1:] > classes[:-1]):
            raise ModelFileError("classes_ must be at least 2 sorted, distinct labels")
        out["classes_"] = classes

    net.n_features_in_ = n_features  # the structure of the first layer may depend on it,
    net.n_outputs_ = n_outputs  # and the head's on it
    spec = net.spec
    fan_ins = [n_features, *(layer.units for layer in net.layers)]
    hidden = [
        _posterior_layout(structure, fan_in + 1, layer.units, dtype)
        for structure, fan_in, layer in zip(spec.structures, fan_ins[:-1], net.layers, strict=True)
    ]
    out["posteriors_"] = decode(state["posteriors_"], hidden, "posteriors_")

    # The head's layout: its types, fields, dtypes and column counts from an initial state with
    # one input row; its weight posteriors at the real number of rows. Arrays outside them are
    # compared exactly once read, with a full initial state (now no larger than the file).
    n_in = head_width(spec, n_features)  # the skip connection's rows included
    blocks = head_blocks(spec, n_features)
    one_row = net.head.init(np.zeros((1, n_outputs), dtype), 1.0, spec.head_structure, 1.0, blocks)
    head_layout = _exact_posteriors(_layout(one_row, exact=False), n_in)
    head_state = decode(state["head_state_"], head_layout, "head_state_")
    full = net.head.init(np.zeros((n_in, n_outputs), dtype), 1.0, spec.head_structure, 1.0, blocks)
    _same_layout(head_state, _layout(full, exact=True), "head_state_")
    _check_blocks(head_state, blocks, "head_state_")
    out["head_state_"] = head_state

    if "noise_" in state:
        noise_layout = [NoiseState(1.0, 1.0)] * len(net.layers)
        out["noise_"] = decode(state["noise_"], noise_layout, "noise_")
    else:  # a file from before the hidden noise was learned: its fixed resolved values
        out["noise_"] = [
            NoiseState(1.0, layer.noise or net.hidden_noise or net.noise or 1.0)
            for layer in net.layers
        ]

    desc = state.get("average_", {"value": None})
    if isinstance(desc, dict) and "value" in desc and desc["value"] is None:
        out["average_"] = None  # none kept, or a file from before the iterate average
    else:
        out["average_"] = decode(desc, _average_layout(hidden), "average_")

    desc = state.get("hidden_scale_", {"value": None})
    if isinstance(desc, dict) and "value" in desc and desc["value"] is None:
        out["hidden_scale_"] = None  # none kept, or a file from before the hidden scale
    else:
        evidence = _Expect((len(SCALES),), np.dtype(np.float64))
        layout = HiddenScale(evidence, 0, 0, 0)  # type: ignore[arg-type]  # a layout
        out["hidden_scale_"] = decode(desc, layout, "hidden_scale_")

    for name, value in out.items():
        _check_values(value, name)
    _check_average(out["average_"])
    _check_hidden_scale(out["hidden_scale_"], hidden_scale.kept(spec))
    rng = None if meta.get("rng") is None else _rng(meta["rng"])
    for name in FITTED:
        if name in out:
            setattr(net, name, out[name])
    if rng is not None:
        net.rng_ = rng
    return net


def load(path: str | os.PathLike) -> Network:
    """Read a network written by :func:`save`; predictions are identical to the saved one's.

    The file is checked before it is trusted (see the module docstring): only the metadata and
    the entries it names are read, each checked before it is read; the parameters pass the
    network's validation; every fitted attribute must be one of :data:`FITTED` and fit the
    network it describes (types, shapes, dtypes, finite values, positive variances and noise,
    symmetric positive definite covariances, the iterate average's counts).

    Raises
    ------
    ModelFileError
        If the file is missing, truncated, corrupted, not a model file, of another format
        version, or holds anything that does not fit the network (whatever the error
        underneath).
    """
    return _guarded(Path(path), _load)
