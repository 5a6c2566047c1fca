"""Save/load: identical predictions after a round trip, no pickle, clear errors on bad files."""

from __future__ import annotations

import io as io_module
import json
import multiprocessing
import os
import stat
import struct
import sys
import threading
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import bayeslayers
from bayeslayers import Network, heads, io, layers
from bayeslayers.heads.gaussian import SCORE_ROWS
from bayeslayers.io import ModelFileError

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 3))
Y_REG = np.sin(X[:, 0]) + 0.1 * X[:, 1]
Y_CLS = np.where(X[:, 0] > 0.3, "hi", np.where(X[:, 0] < -0.3, "lo", "mid"))


def _body(covariance):
    return [layers.ReLU(6), layers.TaylorTanh(4, covariance="diag"), layers.LeakyReLU(3)]


@pytest.mark.parametrize("covariance", ["unit", "shared", "diag"])
def test_regression_round_trip_identical(tmp_path, covariance):
    net = Network(
        _body(covariance),
        head=heads.Gaussian(learn_noise=True),
        covariance=covariance,
        clip=5.0,
        seed=3,
    )
    net.fit(X, Y_REG, batch_size=4)
    path = net.save(tmp_path / "m.npz")
    back = bayeslayers.load(path)
    assert repr(back) == repr(net) and back.clip == 5.0 and back.seed == 3
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    for a, b in zip(
        back.predict(X, return_std=True, hidden="sample", n_samples=20),
        net.predict(X, return_std=True, hidden="sample", n_samples=20),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert back.n_samples_seen_ == net.n_samples_seen_ == 40
    # Training continues identically (same state, same generator).
    net.partial_fit(X[:10], Y_REG[:10], shuffle=True)
    back.partial_fit(X[:10], Y_REG[:10], shuffle=True)
    np.testing.assert_array_equal(back.predict(X), net.predict(X))


CLASSIFIER_HEADS = sorted(k for k, cls in heads.HEADS.items() if cls.is_classifier)


@pytest.mark.parametrize("kind", CLASSIFIER_HEADS)
def test_classifier_round_trip_every_registered_head(tmp_path, kind):
    net = Network([layers.ReLU(5)], head=heads.make_head(kind)).fit(X, Y_CLS)
    back = bayeslayers.load(net.save(tmp_path / "c.npz"))
    np.testing.assert_array_equal(back.classes_, net.classes_)
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))
    np.testing.assert_array_equal(
        back.predict_proba(X, hidden="sample", n_samples=5),
        net.predict_proba(X, hidden="sample", n_samples=5),
    )
    assert type(back.head_state_) is type(net.head_state_)


def test_file_is_plain_npz_with_metadata(tmp_path):
    net = Network([layers.ReLU(4)]).fit(X, Y_REG)
    path = io.save(net, tmp_path / "m.npz", config={"train": {"passes": 1}})
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(str(arrays["__meta__"]))
    assert meta["format"] == io.FORMAT and meta["format_version"] == io.FORMAT_VERSION
    assert meta["package_version"] == bayeslayers.__version__
    assert meta["network"]["layers"] == [
        {"kind": "relu", "units": 4, "covariance": None, "noise": None}
    ]
    assert io.read_metadata(path)["config"] == {"train": {"passes": 1}}
    np.testing.assert_array_equal(arrays["posteriors_.0.mean"], net.posteriors_[0].mean)


def test_unfitted_or_wrong_object_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unfitted"):
        Network().save(tmp_path / "m.npz")
    with pytest.raises(TypeError, match="Network"):
        io.save("net", tmp_path / "m.npz")


@pytest.fixture
def saved(tmp_path):
    net = Network([layers.ReLU(4)]).fit(X, Y_REG)
    return net.save(tmp_path / "m.npz")


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupted"):
        bayeslayers.load(saved)


def test_corrupted_bytes(saved):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as z:
        info = z.getinfo("posteriors_.0.cov.npy")
    middle = info.header_offset + 100 + info.compress_size // 2
    data[middle : middle + 8] = b"\xff" * 8
    saved.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="truncated or corrupted"):
        bayeslayers.load(saved)


def _rewrite_meta(path, change):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(str(arrays["__meta__"]))
    change(meta)
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)


def test_wrong_format_version(saved):
    _rewrite_meta(saved, lambda m: m.update(format_version=99))
    with pytest.raises(ModelFileError, match="format version 99"):
        bayeslayers.load(saved)


def test_foreign_files(tmp_path, saved):
    other = tmp_path / "other.npz"
    np.savez(other, a=np.arange(3))
    with pytest.raises(ModelFileError, match="not a bayeslayers model file"):
        bayeslayers.load(other)
    with pytest.raises(ModelFileError, match="no such model file"):
        bayeslayers.load(tmp_path / "missing.npz")
    _rewrite_meta(
        saved,
        lambda m: m["state"].update(head_state_={"namedtuple": "os:stat_result", "fields": {}}),
    )
    with pytest.raises(ModelFileError, match="not a bayeslayers type"):
        bayeslayers.load(saved)


@pytest.mark.parametrize("bad", [-1.0, 1e999, "4", True])
def test_a_tampered_memory_choice_is_refused(tmp_path, bad):
    rng = np.random.default_rng(0)
    net = Network([layers.ReLU(3)], memory="evidence", seed=0)
    path = net.fit(rng.normal(size=(40, 2)), rng.normal(size=40)).save(tmp_path / "m.npz")
    assert bayeslayers.load(path).memory_ is None  # 40 rows: no race, the static posterior
    _rewrite_meta(path, lambda m: m["state"].update(memory_={"value": bad}))
    with pytest.raises(ModelFileError, match="memory_"):
        bayeslayers.load(path)


def test_the_head_prior_round_trips_and_a_tampered_choice_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    y = X @ np.array([1.0, -0.5, 0.25, 0.0]) + 0.3 * rng.normal(size=40)
    for prior in ("fan_in", "evidence"):
        net = Network([layers.ReLU(50)], head_prior=prior, seed=0).fit(X, y)
        back = bayeslayers.load(net.save(tmp_path / "m.npz"))
        assert back.head_prior == prior and back.spec.head_prior == "fan_in"
        assert getattr(back, "head_prior_", "unset") == getattr(net, "head_prior_", "unset")
        np.testing.assert_array_equal(back.predict(X), net.predict(X))
        net.partial_fit(X[:10], y[:10])
        back.partial_fit(X[:10], y[:10])
        np.testing.assert_array_equal(back.predict(X), net.predict(X))
    path = tmp_path / "m.npz"
    for bad in ("neal", 1.0, None, ["flat"]):
        net.save(path)
        _rewrite_meta(path, lambda m, bad=bad: m["state"].update(head_prior_={"value": bad}))
        with pytest.raises(ModelFileError, match="head_prior_"):
            bayeslayers.load(path)


def _rewrite_array(path, key, value):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays[key] = value
    np.savez(path, **arrays)


def test_block_precisions_round_trip_and_tampered_blocks_are_refused(tmp_path):
    """head_prior="evidence" on more rows than head inputs: one precision per block (20
    units, 4 inputs, bias) saved and loaded; blocks that are not the network's head, or
    precisions that are not one positive number per block, are refused."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = X[:, 0] + 0.1 * rng.normal(size=300)
    net = Network([layers.ReLU(20)], head_prior="evidence", seed=0).fit(X, y)
    path = net.save(tmp_path / "m.npz")
    back = bayeslayers.load(path)
    np.testing.assert_array_equal(back.head_state_.blocks, [20, 4, 1])
    np.testing.assert_array_equal(back.head_state_.alpha, net.head_state_.alpha)
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    for key, bad, match in (
        ("head_state_.blocks", np.array([21, 3, 1]), "blocks"),
        ("head_state_.alpha", np.array([1.0, -1.0, 1.0]), "alpha"),
        ("head_state_.alpha", np.array([1.0, 1.0]), "alpha"),
    ):
        net.save(path)
        _rewrite_array(path, key, bad)
        with pytest.raises(ModelFileError, match=match):
            bayeslayers.load(path)


def test_a_skip_network_round_trips_and_a_changed_skip_is_refused(tmp_path):
    """The head's rows follow the saved skip (top units, inputs, bias); a file whose skip no
    longer fits its head is refused, and one without the key (saved before the skip
    connection) loads as a network without it."""
    net = Network([layers.ReLU(4)], skip="auto", seed=1).fit(X, Y_REG, batch_size=4)
    assert net.spec.skip and net.head_state_.post.mean.shape == (4 + 3 + 1, 1)
    path = net.save(tmp_path / "m.npz")
    back = bayeslayers.load(path)
    assert back.skip == "auto" and back.spec.skip
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    np.testing.assert_array_equal(
        back.predict(X, return_std=True)[1], net.predict(X, return_std=True)[1]
    )
    for skip in (False, "yes"):
        _rewrite_meta(path, lambda m, skip=skip: m["network"].update(skip=skip))
        with pytest.raises(ModelFileError, match="head_state_" if skip is False else "skip"):
            bayeslayers.load(path)
    _rewrite_meta(path, lambda m: m["network"].pop("skip"))
    with pytest.raises(ModelFileError, match="head_state_"):  # read as skip=False
        bayeslayers.load(path)
    plain = Network([layers.ReLU(4)], skip=False, seed=1).fit(X, Y_REG, batch_size=4)
    path = plain.save(tmp_path / "plain.npz")
    _rewrite_meta(path, lambda m: m["network"].pop("skip"))
    old = bayeslayers.load(path)
    assert old.skip is False and not old.spec.skip
    np.testing.assert_array_equal(old.predict(X), plain.predict(X))


def test_a_shared_head_round_trips_and_format_1_files_keep_their_per_unit_head(tmp_path):
    """Format 2 resolves a Gaussian head with several columns to one shared covariance; a
    format 1 file (written before that rule) loads with the per-unit head it was fitted with,
    predicts as before, and is saved again as format 2; a file claiming format 2 for a
    per-unit layout is refused, as is a format version that is not a plain integer."""
    net = Network([layers.ReLU(4)], heads.OneHot(), seed=1).fit(X, Y_CLS, batch_size=4)
    assert net.spec.head_structure == "shared"
    path = net.save(tmp_path / "shared.npz")
    back = bayeslayers.load(path)
    assert back.head.covariance is None and back.head_state_.post.cov.ndim == 2
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))

    per_unit = Network([layers.ReLU(4)], heads.OneHot(covariance="unit"), seed=1).fit(
        X, Y_CLS, batch_size=4
    )
    path = per_unit.save(tmp_path / "v1.npz")
    _rewrite_meta(  # what format 1 wrote: the head's covariance left to the network
        path, lambda m: (m.update(format_version=1), m["network"]["head"].update(covariance=None))
    )
    old = bayeslayers.load(path)
    assert old.head.covariance == "unit" and old.head_state_.post.cov.ndim == 3
    np.testing.assert_array_equal(old.predict_proba(X), per_unit.predict_proba(X))
    again = bayeslayers.load(old.save(tmp_path / "v2.npz"))
    assert io.read_metadata(tmp_path / "v2.npz")["format_version"] == io.FORMAT_VERSION
    np.testing.assert_array_equal(again.predict_proba(X), per_unit.predict_proba(X))

    _rewrite_meta(path, lambda m: m.update(format_version=2))
    with pytest.raises(ModelFileError, match="head_state_"):
        bayeslayers.load(path)

    # under a network-wide structure the head had it in format 1 too
    diag = Network([layers.ReLU(4)], heads.OneHot(), covariance="diag", seed=1)
    diag.fit(X, Y_CLS, batch_size=4)
    diag_path = diag.save(tmp_path / "v1-diag.npz")
    _rewrite_meta(diag_path, lambda m: m.update(format_version=1))
    old_diag = bayeslayers.load(diag_path)
    assert old_diag.head.covariance is None and old_diag.spec.head_structure == "diag"
    np.testing.assert_array_equal(old_diag.predict_proba(X), diag.predict_proba(X))
    for version in (True, 1.0, "1"):
        _rewrite_meta(path, lambda m, v=version: m.update(format_version=v))
        with pytest.raises(ModelFileError, match=f"format version {version!r}"):
            bayeslayers.load(path)


# ------------------------------------------------------------------ tampered files
def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def _write_members(path, members: dict[str, bytes], compressed=()) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            method = zipfile.ZIP_DEFLATED if name in compressed else zipfile.ZIP_STORED
            z.writestr(name, data, compress_type=method)


def _npy(arr) -> bytes:
    buf = io_module.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _npy_with_header(header: str, data: bytes = b"") -> bytes:
    """A version 1.0 ``.npy`` entry with a hand-written header (padded as numpy pads it)."""
    raw = header.encode("latin1")
    raw += b" " * (64 - (10 + len(raw) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(raw).to_bytes(2, "little") + raw + data


def _tamper(path, meta=None, arrays=None) -> None:
    """Rewrite a model file: ``meta(m)`` edits the metadata, ``arrays(a)`` the arrays."""
    with np.load(path, allow_pickle=False) as archive:
        stored = {k: archive[k] for k in archive.files}
    doc = json.loads(str(stored.pop("__meta__")))
    if meta is not None:
        meta(doc)
    if arrays is not None:
        arrays(stored)
    stored["__meta__"] = np.array(json.dumps(doc))
    np.savez(path, **stored)


def _set_array(key, value):
    def change(a):
        a[key] = value

    return change


@pytest.fixture(params=["unit", "shared", "diag"])
def saved_any(request, tmp_path):
    net = Network([layers.ReLU(4)], covariance=request.param, seed=1).fit(X, Y_REG, batch_size=8)
    return net.save(tmp_path / "m.npz")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: m["state"].update(sweeps={"value": 0}), "unknown fitted attributes"),
        (lambda m: m["state"].update(predict={"value": 1}), "unknown fitted attributes"),
        (lambda m: m["state"].pop("head_state_"), "missing fitted attributes"),
        (lambda m: m["state"].update(classes_=m["state"]["n_outputs_"]), "classes_ given"),
        (lambda m: m["network"].update(sweeps=0), "sweeps"),
        (lambda m: m["network"].update(damping=-5), "damping"),
        (lambda m: m["network"].update(noise=float("nan")), "noise"),
        (lambda m: m["network"].update(dtype="float16"), "dtype"),
        (lambda m: m["network"].update(bogus=1), "bogus"),
        (lambda m: m["network"]["layers"][0].update(units=5), r"expected \(4, 5\)"),
        (lambda m: m["network"]["layers"][0].update(kind="os"), "unknown layer kind"),
        (lambda m: m["network"].update(covariance="diag"), "posteriors_"),
        (lambda m: m["state"].update(n_features_in_={"value": 4}), "posteriors_"),
        (lambda m: m["state"].update(n_features_in_={"value": 0}), "n_features_in_"),
        (lambda m: m["state"].update(n_features_in_={"value": 2.5}), "n_features_in_"),
        (lambda m: m["state"].update(n_outputs_={"value": 10**15}), "n_outputs_"),
        (lambda m: m["state"].update(n_samples_seen_={"value": -1}), "n_samples_seen_"),
        (lambda m: m["state"].update(training_time_={"value": float("nan")}), "training_time_"),
        (lambda m: m["state"]["head_state_"]["fields"].update(b={"value": -1.0}), "must be > 0"),
        (
            lambda m: m["state"]["head_state_"]["fields"].update(a={"value": float("inf")}),
            "non-finite",
        ),
        (lambda m: m["state"]["head_state_"]["fields"].update(a={"value": "x"}), "float"),
        (
            lambda m: m["state"]["posteriors_"]["list"][0]["fields"].update(
                structure={"value": "diag"}
            ),
            "expected 'unit'",
        ),
        (lambda m: m["state"]["posteriors_"]["list"].append({"value": 1}), "list of 1"),
        (
            lambda m: m["state"].update(head_state_={"namedtuple": "os:stat_result", "fields": {}}),
            "not a bayeslayers type",
        ),
        (
            lambda m: m["state"].update(
                head_state_={"namedtuple": "bayeslayers.nowhere:GaussianState", "fields": {}}
            ),
            "fields",
        ),
        (lambda m: m.update(rng={"bit_generator": "MT19937", "state": {}}), "random generator"),
        (lambda m: m["rng"]["state"].update(state="x"), "inconsistent"),
        (lambda m: m["state"].update(posteriors_=[[[[]]]]), "malformed"),
    ],
)
def test_tampered_metadata_is_refused(tmp_path, change, match):
    net = Network([layers.ReLU(4)], covariance="unit").fit(X, Y_REG)
    path = net.save(tmp_path / "m.npz")
    _tamper(path, meta=change)
    with pytest.raises(ModelFileError, match=match):
        bayeslayers.load(path)


def _posterior_arrays(net):
    post = net.posteriors_[0]
    return post.mean, post.cov


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda mean, cov: (np.where(mean == mean.flat[0], np.nan, mean), cov), "non-finite"),
        (lambda mean, cov: (mean.astype(complex), cov), "dtype complex128"),
        (lambda mean, cov: (mean.astype(np.float32), cov), "dtype float32"),
        (lambda mean, cov: (mean[:, :2], cov), "shape"),
        (lambda mean, cov: (mean.ravel(), cov), "shape"),
        (lambda mean, cov: (mean, np.full_like(cov, np.inf)), "non-finite"),
        (lambda mean, cov: (mean, -cov), "non-positive variances"),
    ],
)
def test_tampered_posterior_arrays_are_refused(saved_any, edit, match):
    path = saved_any
    net = bayeslayers.load(path)
    mean, cov = edit(*_posterior_arrays(net))

    def change(a):
        a["posteriors_.0.mean"], a["posteriors_.0.cov"] = mean, cov

    _tamper(path, arrays=change)
    with pytest.raises(ModelFileError, match=match):
        bayeslayers.load(path)


@pytest.mark.parametrize("structure", ["unit", "shared"])
@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda c: c + np.triu(np.full(c.shape[-2:], 0.3), 1), "not symmetric"),
        # symmetric, positive diagonal, indefinite: [[1, 2], [2, 1]] blocks
        (lambda c: c + 2 * (np.eye(c.shape[-1], k=1) + np.eye(c.shape[-1], k=-1)), "definite"),
    ],
)
def test_covariance_must_be_symmetric_positive_definite(tmp_path, structure, edit, match):
    net = Network([layers.ReLU(4)], covariance=structure).fit(X, Y_REG)
    path = net.save(tmp_path / "m.npz")
    _tamper(path, arrays=_set_array("posteriors_.0.cov", edit(net.posteriors_[0].cov)))
    with pytest.raises(ModelFileError, match=match):
        bayeslayers.load(path)


def test_head_state_is_checked_like_the_hidden_layers(tmp_path):
    net = Network([layers.ReLU(4)], head=heads.Probit(fit="adf")).fit(X, Y_CLS)
    path = net.save(tmp_path / "m.npz")
    cov = net.head_state_.post.cov.copy()
    cov[0, 0, 0] = -1.0
    _tamper(path, arrays=_set_array("head_state_.post.cov", cov))
    with pytest.raises(ModelFileError, match=r"head_state_\.post: non-positive"):
        bayeslayers.load(path)


def test_classes_must_be_sorted_distinct_labels(tmp_path):
    net = Network([layers.ReLU(4)], head=heads.OneHot()).fit(X, Y_CLS)
    path = net.save(tmp_path / "m.npz")
    _tamper(path, arrays=_set_array("classes_", net.classes_[::-1].copy()))
    with pytest.raises(ModelFileError, match="classes_"):
        bayeslayers.load(path)
    _tamper(path, arrays=_set_array("classes_", net.classes_[:2].copy()))
    with pytest.raises(ModelFileError, match="classes_"):
        bayeslayers.load(path)


@pytest.mark.parametrize(
    ("entry", "cause"),
    [
        # a version 1.0 header that Python's tokenizer cannot read (TokenError underneath)
        (
            _npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), '''"),
            "TokenError",
        ),
        (
            _npy_with_header("{'descr': 'complex1024', 'fortran_order': False, 'shape': (3,), }"),
            "descr",
        ),
        (_npy_with_header("{'descr': 'O', 'fortran_order': False, 'shape': (3,), }"), "dtype"),
        (
            _npy_with_header(
                "{'descr': [('a', '<f8', (2,))], 'fortran_order': False, 'shape': (3,), }"
            ),
            "dtype",
        ),
        (
            _npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (10**12,), }"),
            "header",
        ),
        (b"\x93NUMPY\x09\x00garbage", "version"),
        (b"not an npy file", "magic string"),
    ],
    ids=["tokenizer", "descr", "object", "structured", "huge-shape", "npy-version", "no-magic"],
)
def test_crafted_npy_headers_raise_model_file_error(saved, entry, cause):
    members = _members(saved)
    members["posteriors_.0.mean.npy"] = entry
    _write_members(saved, members)
    with pytest.raises(ModelFileError, match=cause):
        bayeslayers.load(saved)


def test_recursion_and_memory_errors_become_model_file_errors(saved, tmp_path):
    meta = json.loads(str(np.load(saved)["__meta__"]))
    text = json.dumps(meta)[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    members = _members(saved)
    members["__meta__.npy"] = _npy(np.array(text))
    _write_members(saved, members)
    with pytest.raises(ModelFileError, match=r"RecursionError|corrupted metadata"):
        bayeslayers.load(saved)
    # An ADVI head asking for a buffer of 10^15 rows: refused, whatever numpy raises.
    net = Network([layers.ReLU(3)], head=heads.Probit(fit="adf")).fit(X, Y_CLS)
    path = net.save(tmp_path / "big.npz")
    _tamper(path, meta=lambda m: m["network"]["head"].update(fit="advi", chunk_size=10**15))
    with pytest.raises(ModelFileError):
        bayeslayers.load(path)


def test_random_corruption_only_ever_raises_model_file_error(tmp_path):
    """Flip bytes anywhere in a file (the header, the metadata, the arrays, the directory):
    load either succeeds or raises ModelFileError, never anything else."""
    net = Network([layers.ReLU(3)], head=heads.Probit(fit="adf")).fit(X, Y_CLS)
    good = net.save(tmp_path / "good.npz").read_bytes()
    rng = np.random.default_rng(0)
    path = tmp_path / "bad.npz"
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(300):
        data = bytearray(good)
        for pos in rng.integers(0, len(data), size=rng.integers(1, 4)):
            data[pos] = rng.integers(0, 256)
        path.write_bytes(bytes(data))
        try:
            bayeslayers.load(path)
            outcomes["loaded"] += 1
        except ModelFileError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0


def _junk_values():
    return [
        None,
        True,
        -1,
        0,
        2.5,
        float("nan"),
        float("inf"),
        10**400,
        "x",
        [],
        {},
        [1, 2],
        {"value": None},
    ]


def test_random_metadata_edits_only_ever_raise_model_file_error(tmp_path):
    """Replace one value anywhere in the metadata by junk: a valid network or ModelFileError."""
    net = Network([layers.ReLU(3)], head=heads.Gaussian(learn_noise=True)).fit(X, Y_REG)
    path = net.save(tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as archive:
        stored = {k: archive[k] for k in archive.files}
    meta = json.loads(str(stored.pop("__meta__")))

    def places(node, trail=()):
        if isinstance(node, dict):
            for k, v in node.items():
                yield (*trail, k)
                yield from places(v, (*trail, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield (*trail, i)
                yield from places(v, (*trail, i))

    spots = [s for s in places(meta) if s[0] != "config"]
    rng = np.random.default_rng(1)
    junk = _junk_values()
    for k in rng.choice(len(spots), size=min(150, len(spots)), replace=False):
        doc = json.loads(json.dumps(meta))
        node = doc
        for step in spots[k][:-1]:
            node = node[step]
        node[spots[k][-1]] = junk[rng.integers(len(junk))]
        try:
            text = json.dumps(doc)
        except ValueError:
            continue
        np.savez(path, __meta__=np.array(text), **stored)
        try:
            back = bayeslayers.load(path)
        except ModelFileError:
            continue
        assert np.all(np.isfinite(back.predict(X)))  # what loads is a working network


# ------------------------------------------------------------------ bombs and extra entries
def _deflated_zeros_member(name: str, n_bytes: int, chunk: int = 16 << 20):
    """``(local header + data, central entry)`` of a deflated ``.npy`` of ``n_bytes`` zeros,
    built from one compressed chunk repeated (never holding ``n_bytes`` in memory)."""
    header = _npy_with_header(
        f"{{'descr': '<f8', 'fortran_order': False, 'shape': ({n_bytes // 8},), }}"
    )
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = comp.compress(header) + comp.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(chunk)
    block = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    tail = comp.flush()
    n_chunks = n_bytes // chunk
    crc = zlib.crc32(header)
    for _ in range(n_chunks):
        crc = zlib.crc32(zeros, crc)
    data = head + block * n_chunks + tail
    size = len(header) + n_chunks * chunk
    return name.encode(), data, crc, size


def _append_member(path, name: bytes, data: bytes, crc: int, size: int) -> None:
    """Rewrite ``path`` (a zip of stored entries) with one more, deflated entry added raw."""
    members = _members(path)
    out, central = bytearray(), bytearray()
    entries = [(n.encode(), d, zlib.crc32(d), len(d), 0, len(d)) for n, d in members.items()]
    entries.append((name, data, crc, len(data), 8, size))
    for fname, body, c, csize, method, usize in entries:
        offset = len(out)
        out += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, c, csize, usize, len(fname), 0
        )
        out += fname + body
        central += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            20,
            20,
            0,
            method,
            0,
            0,
            c,
            csize,
            usize,
            len(fname),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += fname
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(out), 0
    )
    path.write_bytes(bytes(out + central + end))


def test_a_deflated_extra_entry_is_never_read(saved):
    """A 2 MiB file whose extra entry would inflate to 2 GiB loads in a few MiB."""
    _append_member(saved, *_deflated_zeros_member("bomb.npy", 2 << 30))
    assert saved.stat().st_size < 3 << 20
    with zipfile.ZipFile(saved) as z:
        assert z.getinfo("bomb.npy").file_size > 2 << 30 - 1
    tracemalloc.start()
    try:
        net = bayeslayers.load(saved)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"load allocated {peak / 2**20:.0f} MiB"
    assert net.is_fitted


def test_a_compressed_or_oversized_entry_that_is_named_is_refused(saved):
    members = _members(saved)
    _write_members(saved, members, compressed=("posteriors_.0.cov.npy",))
    with pytest.raises(ModelFileError, match="compressed"):
        bayeslayers.load(saved)
    # A header claiming 10^9 floats over a few bytes of data: refused before any allocation.
    members["posteriors_.0.cov.npy"] = _npy_with_header(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000,), }", b"\0" * 64
    )
    _write_members(saved, members)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="header says shape"):
            bayeslayers.load(saved)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_unused_entries_are_not_read_and_metadata_comes_first(saved):
    members = _members(saved)
    members["junk.npy"] = b"\x93NUMPY garbage that would fail to parse"
    _write_members(saved, members)
    assert bayeslayers.load(saved).is_fitted
    assert io.read_metadata(saved)["format"] == io.FORMAT


# ------------------------------------------------------------------ atomic, safe saves
def _nets(n):
    return [Network([layers.ReLU(3)], seed=s).fit(X, Y_REG) for s in range(n)]


def _matches_one_of(path, nets):
    got = bayeslayers.load(path).predict(X)
    return any(np.array_equal(got, n.predict(X)) for n in nets)


def test_concurrent_saves_from_threads_leave_a_valid_file(tmp_path):
    nets = _nets(4)
    path = tmp_path / "m.npz"
    nets[0].save(path)
    errors, stop = [], threading.Event()

    def writer(net):
        try:
            for _ in range(5):
                net.save(path)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    def reader():
        while not stop.is_set():
            try:
                bayeslayers.load(path)
            except BaseException as err:  # pragma: no cover - reported below
                errors.append(err)
                return

    threads = [threading.Thread(target=writer, args=(n,)) for n in nets]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in (*threads, *readers):
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors
    assert _matches_one_of(path, nets)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]  # no temporary files left


def _save_in_child(args):
    net, path = args
    for _ in range(5):
        net.save(path)
    return True


@pytest.mark.skipif(sys.platform != "linux", reason="uses the fork start method")
def test_concurrent_saves_from_processes_leave_a_valid_file(tmp_path):
    nets = _nets(4)
    path = tmp_path / "m.npz"
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        assert all(pool.map(_save_in_child, [(n, path) for n in nets]))
    assert _matches_one_of(path, nets)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_a_symlink_at_the_destination_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "m.npz"
    link.symlink_to(victim)
    net = _nets(1)[0]
    with pytest.raises(ValueError, match="symbolic link"):
        net.save(link)
    assert victim.read_text() == "keep me" and link.is_symlink()


def test_a_planted_link_at_the_old_temporary_name_redirects_nothing(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / ".m.npz.tmp").symlink_to(victim)
    path = _nets(1)[0].save(tmp_path / "m.npz")
    assert victim.read_text() == "keep me"
    assert bayeslayers.load(path).is_fitted


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_or_directory_at_the_destination_is_refused(tmp_path):
    fifo = tmp_path / "m.npz"
    os.mkfifo(fifo)
    net = _nets(1)[0]
    with pytest.raises(ValueError, match="FIFO"):
        net.save(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    with pytest.raises(ModelFileError, match="not a regular file"):
        bayeslayers.load(fifo)  # and load does not block opening it
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    with pytest.raises(ValueError, match="directory"):
        net.save(folder)


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_a_failed_save_leaves_no_temporary_file_and_the_old_file(tmp_path, monkeypatch, where):
    nets = _nets(2)
    path = nets[0].save(tmp_path / "m.npz")
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    target = {
        "write": (np.lib.format, "write_array"),
        "fsync": (os, "fsync"),
        "replace": (os, "replace"),
    }
    monkeypatch.setattr(*target[where], fail)
    with pytest.raises(OSError, match="disk full"):
        nets[1].save(path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]
    assert path.read_bytes() == before


def test_saved_file_permissions_follow_the_umask_or_the_replaced_file(tmp_path):
    net = _nets(1)[0]
    old = os.umask(0o027)
    try:
        path = net.save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    path.chmod(0o604)
    net.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o604


def test_unknown_fitted_attributes_are_not_saved_silently(tmp_path):
    net = _nets(1)[0]
    net.extra_ = 1
    with pytest.raises(TypeError, match="extra_"):
        net.save(tmp_path / "m.npz")


@pytest.mark.parametrize(
    ("key", "edit", "match"),
    [
        ("label", lambda a: np.full_like(a, 3), "classes must lie in"),
        ("label", lambda a: np.full_like(a, -1), "classes must lie in"),
        ("var", lambda a: -np.ones_like(a), "variances must be > 0"),
        ("weight", lambda a: -np.ones_like(a), "weights must be >= 0"),
        ("evidence", lambda a: np.full_like(a, np.nan), "non-finite"),
    ],
)
def test_the_temperature_evidence_round_trips_and_tampering_is_refused(tmp_path, key, edit, match):
    """A one-hot head's held rows and evidence are saved exactly; rows that cannot be scored
    (a class outside the head's, a non-positive variance) or non-finite evidence are refused."""
    net = Network([layers.ReLU(4)], head=heads.OneHot(), seed=2).partial_fit(
        X, Y_CLS, classes=np.unique(Y_CLS)
    )
    held = net.head_state_.calibration
    assert 0 < held.n_pending < SCORE_ROWS  # held, not yet scored
    path = net.save(tmp_path / "m.npz")
    back = bayeslayers.load(path).head_state_.calibration
    for field in ("evidence", "mean", "var", "label"):
        np.testing.assert_array_equal(getattr(back, field), getattr(held, field))
    assert (back.n_pending, back.scored) == (held.n_pending, held.scored)
    _tamper(
        path,
        arrays=lambda a: a.update(
            {f"head_state_.calibration.{key}": edit(a[f"head_state_.calibration.{key}"])}
        ),
    )
    with pytest.raises(ModelFileError, match=match):
        bayeslayers.load(path)


def test_more_held_rows_than_slots_is_refused(tmp_path):
    net = Network([layers.ReLU(4)], head=heads.OneHot(), seed=2).fit(X, Y_CLS)
    path = net.save(tmp_path / "m.npz")

    def change(meta):
        meta["state"]["head_state_"]["fields"]["calibration"]["fields"]["n_pending"] = {
            "value": 10**6
        }

    _tamper(path, meta=change)
    with pytest.raises(ModelFileError, match="n_pending"):
        bayeslayers.load(path)
